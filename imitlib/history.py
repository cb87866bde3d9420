"""Learning histories on disk: what a learner saw and did, episode by episode, as it learned.

**Format 5: numpy chunks.** A history is a folder with ``manifest.json`` and numbered chunk folders. A chunk holds
whole episodes, one after another (episode-major), as plain ``.npy`` files: the seven per-step fields of
:data:`FIELDS` (actions as one byte when the game has at most 256) and three per-episode ones (``run``,
``episode``, ``length``). An episode's steps are one slice of each per-step file, so a window of consecutive
episodes reads through memory maps only the pages that hold it. No pickle, no compression, nothing beyond numpy.

**Safety.** Episodes are buffered in memory and written a chunk at a time: the chunk folder is written under a
temporary name and renamed, then the manifest (listing each chunk with the CRC-32 of every file's data) is
replaced atomically. A recording killed anywhere leaves every listed chunk readable. A reader checks every
checksum when it opens a history, so a damaged file raises :class:`HistoryError` naming it instead of being
read. Opening an existing history for writing is refused unless ``mode="append"`` or ``mode="overwrite"`` says
what to do with it. Histories of older formats are refused with the command that records them anew (data are
rebuilt from seeds; Dark Room's take seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imitlib.io import atomic_write_bytes

FORMAT_VERSION = 5
FIELDS = {  # name -> dtype, per step, as episodes read back; obs is (steps, obs_bytes) uint8, the rest (steps,)
    "obs": np.uint8,
    "action": np.int16,
    "reward": np.float32,
    "terminated": np.bool_,
    "truncated": np.bool_,
    "update": np.int32,
    "epsilon": np.float32,
}
EPISODE_FIELDS = ("run", "episode", "length")  # per episode, int64
CHUNK_BYTES = 8 << 20  # per-step data per chunk unless chunk_steps says otherwise: few files, little memory
RECORD = "python -m imitlib record"  # what re-records a dataset (see ``python -m imitlib record --help``)


def record_command(manifest: dict[str, Any] | None = None) -> str:
    """The command that records a history like this one anew (its scale is the reader's to choose)."""
    kind = (manifest or {}).get("obs_kind")
    if kind == "darkroom":
        return f"{RECORD} darkroom --scale SCALE"
    games = {task.get("game") for task in (manifest or {}).get("runs", {}).values()} - {None}
    return f"{RECORD} minatar --env {games.pop()} --scale SCALE" if len(games) == 1 else f"{RECORD} ..."


class HistoryError(RuntimeError):
    """A history on disk is missing, damaged, of an older format, or would be overwritten by accident."""


@dataclass(frozen=True)
class Episode:
    """One recorded episode of one run, as the writer receives it. Arrays are per step."""

    run: int
    episode: int  # index of the episode within its run's learning history (not of the recorded subset)
    obs: np.ndarray  # (T, obs_bytes) uint8, already encoded
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    update: np.ndarray  # the learner's update count when each action was chosen
    epsilon: np.ndarray  # its exploration rate then


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(arr)).cast("B"))


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (not fsync'd: the checksums catch what a power cut leaves half-written)."""
    text = json.dumps(manifest).encode()
    atomic_write_bytes(path / "manifest.json", lambda f: f.write(text), sync=False)


class HistoryWriter:
    """Append episodes to a history folder, one atomic chunk at a time."""

    def __init__(self, path: str | Path, *, obs_kind: str, obs_shape: Sequence[int], n_actions: int,
                 mode: str = "create", chunk_steps: int | None = None, meta: dict[str, Any] | None = None) -> None:
        if mode not in ("create", "append", "overwrite"):
            raise ValueError(f"mode must be 'create', 'append' or 'overwrite', got {mode!r}")
        self.path, self.chunk_steps = Path(path), chunk_steps
        if self.path.exists() and any(self.path.iterdir()):
            if mode == "create":
                raise HistoryError(f"{self.path} already holds a history: pass mode='append' to add to it or "
                                   "mode='overwrite' to replace it")
            if mode == "overwrite":
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        want = {"obs_kind": obs_kind, "obs_shape": list(obs_shape), "n_actions": n_actions}
        if (self.path / "manifest.json").exists():  # append
            self.manifest = HistoryReader(self.path).manifest
            have = {k: self.manifest[k] for k in want}
            if have != want:
                raise HistoryError(f"{self.path} holds {have}, cannot append {want}")
        else:
            self.manifest = {"format_version": FORMAT_VERSION, **want, "runs": {}, "chunks": [], "meta": meta or {}}
            _write_manifest(self.path, self.manifest)
        self.action_dtype = np.dtype(np.uint8 if n_actions <= 256 else FIELDS["action"])
        self._queued: list[dict[str, np.ndarray]] = []  # per queued episode: its per-step fields, and its run/number
        self._queued_steps = 0

    def set_run(self, run: int, **task: Any) -> None:
        """Describe a run (its goal or game, its seed, ...): stored in the manifest."""
        self.manifest["runs"][str(run)] = task

    def add(self, episode: Episode) -> None:
        """Queue one episode; a chunk is written once enough steps are queued."""
        fields = {f: np.asarray(getattr(episode, f)) for f in FIELDS}
        n = len(fields["action"])
        if fields["obs"].dtype != np.uint8 or fields["obs"].ndim != 2 or len(fields["obs"]) != n:
            raise ValueError(f"obs must be (steps, bytes) uint8 with one row per action, got "
                             f"{fields['obs'].shape} {fields['obs'].dtype}")
        for f in FIELDS:
            if f != "obs" and fields[f].shape != (n,):
                raise ValueError(f"{f} must have one value per step ({n}), got shape {fields[f].shape}")
        ends = fields["terminated"] | fields["truncated"]
        if ends[:-1].any():
            raise ValueError("terminated or truncated is set before an episode's last step: an episode ends at its "
                             "first terminated or truncated step, so record the rest as the next episode")
        action = fields["action"]
        if n and (action.min() < 0 or action.max() >= self.manifest["n_actions"]):
            raise ValueError(f"actions must lie in 0..{self.manifest['n_actions'] - 1} (n_actions), got "
                             f"{action.min()}..{action.max()}")
        # copied: a recorder may hand over views of buffers its learner reuses, and a view would pin them
        stored = {f: np.array(v, self.action_dtype if f == "action" else FIELDS[f]) for f, v in fields.items()}
        stored.update(run=np.int64(episode.run), episode=np.int64(episode.episode), length=np.int64(n))
        self._queued.append(stored)
        self._queued_steps += n
        if self.chunk_steps is None:  # about CHUNK_BYTES of per-step data per chunk
            row = sum(v[:1].nbytes for f, v in stored.items() if f in FIELDS)
            self.chunk_steps = max(1, CHUNK_BYTES // max(row, 1))
        if self._queued_steps >= self.chunk_steps:
            self.flush()

    def add_block(self, runs: Sequence[int], episodes: Sequence[int] | int, fields: dict[str, np.ndarray]) -> None:
        """Queue B episodes of equal length at once: ``fields[name]`` is ``(B, T, ...)``, ``episodes`` each one's
        index in its run's history (or one number for all)."""
        n = len(runs)
        numbers = np.broadcast_to(np.asarray(episodes), (n,))
        for b in range(n):
            self.add(Episode(run=int(runs[b]), episode=int(numbers[b]), **{f: fields[f][b] for f in FIELDS}))

    def flush(self) -> None:
        """Write the queued episodes as one chunk: a folder under a temporary name, renamed, then listed."""
        if not self._queued:
            return
        name = f"{len(self.manifest['chunks']):06d}"
        arrays = {f: np.concatenate([e[f] for e in self._queued]) for f in FIELDS}
        arrays.update({f: np.array([e[f] for e in self._queued], np.int64) for f in EPISODE_FIELDS})
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{name}."))
        for field, arr in arrays.items():
            np.save(tmp / f"{field}.npy", arr, allow_pickle=False)
        tmp.chmod(0o755)
        os.replace(tmp, self.path / name)
        self.manifest["chunks"].append({"name": name, "steps": self._queued_steps, "episodes": len(self._queued),
                                        "crc32": {f: _crc(a) for f, a in arrays.items()}})
        _write_manifest(self.path, self.manifest)
        self._queued, self._queued_steps = [], 0

    def rewind(self, chunks: int) -> None:
        """Keep only the first ``chunks`` chunks, dropping the rest and anything queued: a resumed recorder
        continues from its checkpoint, which counted that many."""
        have = len(self.manifest["chunks"])
        if chunks > have:
            raise HistoryError(f"{self.path} lists {have} chunks, but its recorder's checkpoint counted {chunks}: "
                               "delete the history and its checkpoint to record anew")
        self.manifest["chunks"] = self.manifest["chunks"][:chunks]
        self._queued, self._queued_steps = [], 0
        listed = {c["name"] for c in self.manifest["chunks"]}
        for path in self.path.iterdir():  # later chunks, and temporary ones a kill left behind
            if path.is_dir() and path.name not in listed:
                shutil.rmtree(path)
        _write_manifest(self.path, self.manifest)

    def close(self) -> None:
        """Write what is queued and leave a complete manifest."""
        self.flush()
        _write_manifest(self.path, self.manifest)

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load(file: Path, crc: int) -> np.ndarray:
    """One array of a chunk, memory-mapped, after checking it against the manifest's checksum."""
    if not file.exists():
        raise HistoryError(f"{file}: missing (the history is damaged; re-record it with `{RECORD} ...`)")
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise HistoryError(f"{file}: unreadable ({err}); re-record it with `{RECORD} ...`") from err
    if _crc(arr) != crc:
        raise HistoryError(f"{file}: checksum does not match the manifest (damaged; re-record it with `{RECORD} ...`)")
    return arr


class HistoryReader:
    """Memory-mapped access to a history: episodes by index, and windows of consecutive episodes of a run.

    Episodes are indexed in (run, episode) order; ``episodes`` holds per episode its ``run``, ``episode``,
    ``length``, and its ``chunk`` and first row there (``start``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        file = self.path / "manifest.json"
        if not file.exists():
            raise HistoryError(f"{file} not found: {self.path} is not a history (record one with `{RECORD} ...`)")
        try:
            self.manifest = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise HistoryError(f"{file}: not valid JSON ({err})") from err
        version = self.manifest.get("format_version", 1)
        if version != FORMAT_VERSION:
            raise HistoryError(f"{self.path} is a format-{version} history; this imitlib reads format "
                               f"{FORMAT_VERSION}: re-record it with `{record_command(self.manifest)}`")
        self._chunks: list[dict[str, np.ndarray]] = []
        columns: list[np.ndarray] = []
        for c, chunk in enumerate(self.manifest["chunks"]):
            arrays = {f: _load(self.path / chunk["name"] / f"{f}.npy", chunk["crc32"][f])
                      for f in (*FIELDS, *EPISODE_FIELDS)}
            length = np.asarray(arrays["length"])
            if length.sum() != len(arrays["action"]) or any(len(arrays[f]) != len(length) for f in EPISODE_FIELDS):
                raise HistoryError(f"{self.path / chunk['name']}: episode table and steps disagree (the history is "
                                   f"damaged; re-record it with `{RECORD} ...`)")
            starts = np.cumsum(length) - length
            columns.append(np.column_stack([arrays["run"], arrays["episode"], length, np.full(len(length), c),
                                            starts]).astype(np.int64).reshape(-1, 5))
            self._chunks.append(arrays)
        table = np.concatenate(columns) if columns else np.zeros((0, 5), np.int64)  # (episodes, 5)
        table = table[np.lexsort((table[:, 1], table[:, 0]))]  # by run, then episode
        self.episodes = {k: table[:, i] for i, k in enumerate(("run", "episode", "length", "chunk", "start"))}
        runs, first = np.unique(self.episodes["run"], return_index=True)
        self._run_first = dict(zip(runs.tolist(), first.tolist(), strict=True))
        self._run_count = dict(zip(runs.tolist(), np.diff(np.append(first, len(table))).tolist(), strict=True))
        lengths = self.episodes["length"]
        self._run_steps = {r: np.concatenate([[0], np.cumsum(lengths[f:f + self._run_count[r]])])
                           for r, f in self._run_first.items()}  # per run: step offset of each recorded episode

    @property
    def n_steps(self) -> int:
        return int(self.episodes["length"].sum())

    @property
    def n_episodes(self) -> int:
        return len(self.episodes["run"])

    def summary(self) -> str:
        """How much is here: what a reader needs to know after an interrupted recording."""
        return (f"{self.path}: {self.n_steps:,} steps in {self.n_episodes:,} episodes of {len(self._run_count)} runs, "
                f"{len(self.manifest['chunks'])} chunk(s)")

    def runs(self) -> list[int]:
        return sorted(self._run_count)

    def task(self, run: int) -> dict[str, Any]:
        return self.manifest["runs"].get(str(run), {})

    def run_episodes(self, run: int) -> int:
        """How many recorded episodes ``run`` has."""
        return self._run_count.get(run, 0)

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """The ``index``-th episode in (run, episode) order, with its run and episode numbers per step."""
        arrays = self._chunks[int(self.episodes["chunk"][index])]
        lo, n = int(self.episodes["start"][index]), int(self.episodes["length"][index])
        out = {f: np.asarray(arrays[f][lo:lo + n]).astype(dtype, copy=False) for f, dtype in FIELDS.items()}
        out["run"] = np.full(n, self.episodes["run"][index])
        out["episode"] = np.full(n, self.episodes["episode"][index])
        return out

    def window(self, run: int, first: int, k: int) -> dict[str, np.ndarray]:
        """Recorded episodes ``first .. first + k - 1`` of ``run`` (never mixing runs), concatenated."""
        count = self._run_count.get(run, 0)
        if not 0 <= first or first + k > count:
            raise IndexError(f"run {run} has {count} recorded episodes; asked for {first}..{first + k - 1}")
        parts = [self.episode(self._run_first[run] + first + i) for i in range(k)]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def step_window(self, run: int, start: int, n: int) -> dict[str, np.ndarray]:
        """``n`` consecutive recorded steps of ``run`` from its ``start``-th recorded step (across episodes)."""
        offsets = self._run_steps.get(run)
        if offsets is None or not 0 <= start or start + n > offsets[-1]:
            total = 0 if offsets is None else int(offsets[-1])
            raise IndexError(f"run {run} has {total} recorded steps; asked for {start}..{start + n - 1}")
        first = int(np.searchsorted(offsets, start, side="right") - 1)
        last = int(np.searchsorted(offsets, start + n, side="left"))
        joined = self.window(run, first, last - first)
        lo = start - int(offsets[first])
        return {key: v[lo:lo + n] for key, v in joined.items()}

    def windows(self, k: int, n: int, seed: int, runs: Sequence[int] | None = None,
                by_task: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """``n`` windows of ``k`` consecutive recorded episodes, drawn uniformly over all possible windows
        (or uniformly over runs first, ``by_task=True``); deterministic for a seed."""
        for run, first in self._draw(self._run_count, k, n, seed, runs, by_task, "episodes"):
            yield self.window(run, first, k)

    def step_windows(self, n_steps: int, n: int, seed: int, runs: Sequence[int] | None = None,
                     by_task: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """``n`` windows of ``n_steps`` consecutive recorded steps, drawn like :meth:`windows`."""
        steps = {r: int(offsets[-1]) for r, offsets in self._run_steps.items()}
        for run, first in self._draw(steps, n_steps, n, seed, runs, by_task, "steps"):
            yield self.step_window(run, first, n_steps)

    def _draw(self, sizes: dict[int, int], k: int, n: int, seed: int, runs: Sequence[int] | None, by_task: bool,
              unit: str) -> Iterator[tuple[int, int]]:
        """``n`` (run, first) pairs of windows of ``k`` of a run's ``sizes`` units, uniform over windows or runs."""
        pool = [r for r in (runs if runs is not None else self.runs()) if sizes.get(r, 0) >= k]
        if not pool:
            raise ValueError(f"no run has {k} recorded {unit}")
        counts = np.array([sizes[r] - k + 1 for r in pool], dtype=float if unit == "steps" else None)
        rng = np.random.default_rng(seed)
        for _ in range(n):
            i = rng.integers(len(pool)) if by_task else rng.choice(len(pool), p=counts / counts.sum())
            yield pool[i], int(rng.integers(counts[i]))

    def steps(self, field: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per chunk: ``field`` for every step, and each step's row in ``episodes`` (for per-episode sums)."""
        if field not in FIELDS:
            raise ValueError(f"field must be one of {list(FIELDS)}, got {field!r}")
        for c, arrays in enumerate(self._chunks):
            mine = np.flatnonzero(self.episodes["chunk"] == c)
            order = mine[np.argsort(self.episodes["start"][mine])]  # this chunk's episodes as stored
            yield np.asarray(arrays[field]), np.repeat(order, self.episodes["length"][order])


def context_dataset(reader: HistoryReader, *, episodes: int | None = None, steps: int | None = None,
                    runs: Sequence[int] | None = None, by_task: bool = False, seed: int = 0,
                    length: int = 1 << 62) -> Any:
    """A PyTorch ``IterableDataset`` of context windows: ``episodes`` consecutive recorded episodes, or ``steps``
    consecutive recorded steps, of one run at a time; endless (up to ``length``) and deterministic for a seed.

    Each item is a dict of tensors of one window; ``torch.utils.data.default_collate`` stacks equal-length
    windows into a batch. With several DataLoader workers, each worker draws its own stream (seed + worker id).
    """
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    if (episodes is None) == (steps is None):
        raise ValueError("give exactly one of episodes= (whole episodes) or steps= (fixed-length windows)")

    class ContextWindows(IterableDataset):
        def __iter__(self) -> Iterator[dict[str, Any]]:
            info = get_worker_info()
            stream = seed if info is None else seed * 1000 + info.id
            if episodes is not None:
                source = reader.windows(k=episodes, n=length, seed=stream, runs=runs, by_task=by_task)
            else:
                source = reader.step_windows(steps, length, stream, runs, by_task)
            for window in source:
                yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in window.items()}

    return ContextWindows()


def shuffle_episodes(reader: HistoryReader, path: str | Path, seed: int = 0) -> HistoryReader:
    """A copy of a history with each run's episodes in a random order (renumbered 0, 1, ...): the same data,
    but no learning progress along it."""
    rng = np.random.default_rng(seed)
    m = reader.manifest
    with HistoryWriter(path, obs_kind=m["obs_kind"], obs_shape=m["obs_shape"], n_actions=m["n_actions"],
                       mode="overwrite", meta={**m["meta"], "shuffled_episodes": True, "shuffle_seed": seed}) as w:
        for run in reader.runs():
            w.set_run(run, **reader.task(run))
            first = int(np.searchsorted(reader.episodes["run"], run))  # its first episode's index
            for new, old in enumerate(rng.permutation(reader.run_episodes(run))):
                ep = reader.episode(first + int(old))
                w.add(Episode(run=run, episode=new, **{f: ep[f] for f in FIELDS}))
    return HistoryReader(path)


def episode_totals(reader: HistoryReader, field: str = "reward") -> np.ndarray:
    """Per recorded episode (in ``reader.episodes`` order), the sum of ``field``: e.g. the episode's return."""
    out = np.zeros(reader.n_episodes)
    for values, rows in reader.steps(field):
        out += np.bincount(rows, weights=values.astype(np.float64), minlength=reader.n_episodes)
    return out


def per_run(reader: HistoryReader, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrange per-episode ``values`` as ``(runs, recorded episodes)`` (NaN-padded) with the run ids."""
    runs = np.array(reader.runs())
    out = np.full((len(runs), max(reader.run_episodes(r) for r in runs)), np.nan)
    for i, r in enumerate(runs):
        first, n = int(np.searchsorted(reader.episodes["run"], r)), reader.run_episodes(r)
        out[i, :n] = values[first:first + n]
    return runs, out


def action_shares(reader: HistoryReader, edges: np.ndarray, n_actions: int) -> np.ndarray:
    """Share of each action among the steps of recorded episodes whose index falls in each ``edges`` bin."""
    counts = np.zeros((len(edges) - 1, n_actions))
    for actions, rows in reader.steps("action"):
        bins = np.digitize(reader.episodes["episode"][rows], edges) - 1
        ok = (bins >= 0) & (bins < len(edges) - 1)
        np.add.at(counts, (bins[ok], actions[ok].astype(int)), 1)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def bytes_per_step(reader: HistoryReader) -> float:
    """Bytes on disk per recorded step, every array file included (what a dataset costs to keep)."""
    return sum(f.stat().st_size for f in reader.path.rglob("*.npy")) / max(reader.n_steps, 1)
