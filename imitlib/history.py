"""Learning histories on disk: what a learner saw and did, episode by episode, as it learned.

**Format: numpy shards.** A history is a folder with ``manifest.json`` and numbered chunk folders, each holding
one ``.npy`` file per field (observations, actions, rewards, flags, episode index, the learner's update count
and epsilon) plus a small episode table. We chose plain ``.npy`` shards over HDF5, zarr or Minari because they
need nothing beyond numpy, open memory-mapped (a context window reads only its own bytes, no decompression),
append by adding a folder, and contain no pickle. Compression buys little here: observations are already compact
(a Dark Room cell is one byte; a MinAtar frame is bit-packed into 50 bytes), so a chunk is stored as is.

**Crash safety.** Episodes are buffered in memory and written a chunk at a time, on a background thread so
the learner keeps computing (at most one chunk in flight): the chunk folder is written under a temporary name
and renamed, then the manifest (which lists chunks with their file sizes and the CRC-32 of each array's data)
is replaced atomically. A recording interrupted anywhere leaves every chunk the manifest lists readable;
``HistoryReader`` says how many steps and episodes were kept. Opening an existing history for writing is refused unless
``mode="append"`` or ``mode="overwrite"`` says what to do with it. A truncated or corrupted chunk raises
:class:`HistoryError` naming the file.

**Layout.** Rows are steps; the steps of one episode are contiguous, so an episode is a ``(start, length)``
range and a window of K episodes of one run is K slices.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imitlib.artifacts import atomic_write_bytes

FORMAT_VERSION = 1
FIELDS = {  # name -> dtype; obs is (steps, obs_bytes) uint8, every other field is (steps,)
    "obs": np.uint8,
    "action": np.int16,
    "reward": np.float32,
    "terminated": np.bool_,
    "truncated": np.bool_,
    "update": np.int32,
    "epsilon": np.float32,
}
EPISODE_FIELDS = ("run", "episode", "start", "length")


class HistoryError(RuntimeError):
    """A history on disk is missing, damaged, or would be overwritten by accident."""


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


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    text = json.dumps(obj).encode()  # no indent: the C encoder is many times faster
    atomic_write_bytes(path, lambda f: f.write(text))


def _checksum_ok(arr: np.ndarray, chunk: dict[str, Any], field: str) -> bool:
    """Whether an array's bytes match the manifest: CRC-32 (the writer's checksum) or SHA-256 (older histories)."""
    data = memoryview(np.ascontiguousarray(arr)).cast("B")
    if "crc32" in chunk:
        return zlib.crc32(data) == chunk["crc32"][field]
    return hashlib.sha256(data).hexdigest() == chunk["sha256"][field]


class HistoryWriter:
    """Append episodes to a history folder, one atomic chunk at a time."""

    def __init__(
        self,
        path: str | Path,
        *,
        obs_kind: str,
        obs_shape: Sequence[int],
        n_actions: int,
        mode: str = "create",
        chunk_steps: int = 1 << 18,
        max_steps: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ("create", "append", "overwrite"):
            raise ValueError(f"mode must be 'create', 'append' or 'overwrite', got {mode!r}")
        self.path = Path(path)
        self.chunk_steps, self.max_steps = chunk_steps, max_steps
        manifest = self.path / "manifest.json"
        if self.path.exists() and any(self.path.iterdir()):
            if mode == "create":
                raise HistoryError(f"{self.path} already holds a history: pass mode='append' to add to it or "
                                   "mode='overwrite' to replace it")
            if mode == "overwrite":
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        if manifest.exists():  # append
            self.manifest = HistoryReader(self.path).manifest
            want = {"obs_kind": obs_kind, "obs_shape": list(obs_shape), "n_actions": n_actions}
            have = {k: self.manifest[k] for k in want}
            if have != want:
                raise HistoryError(f"{self.path} holds {have}, cannot append {want}")
        else:
            self.manifest = {
                "format_version": FORMAT_VERSION, "obs_kind": obs_kind, "obs_shape": list(obs_shape),
                "n_actions": n_actions, "runs": {}, "chunks": [], "meta": meta or {},
            }
            _write_json_atomic(manifest, self.manifest)
        self._buffers: dict[str, np.ndarray] | None = None  # the chunk being filled, allocated at its first block
        self._spare: dict[str, np.ndarray] | None = None  # the last chunk's arrays, reused once it is on disk
        self._tables: list[np.ndarray] = []  # (run, episode, length) rows of the chunk being filled
        self._pending_steps = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-writer")  # one: chunks stay in order
        self._last: Future | None = None
        self._lock = threading.Lock()  # the manifest is written by the writer thread
        self.steps_written = sum(c["steps"] for c in self.manifest["chunks"])  # flushed (written or being written)
        self._chunks_submitted = len(self.manifest["chunks"])
        self.dropped_episodes = 0

    def set_run(self, run: int, **task: Any) -> None:
        """Describe a run (its goal or game, its seed, ...): stored in the manifest."""
        with self._lock:
            self.manifest["runs"][str(run)] = task

    def add(self, episode: Episode) -> bool:
        """Queue one episode; returns False (and drops it) once the size cap is reached."""
        fields = {f: np.asarray(getattr(episode, f))[None] for f in FIELDS}
        return self.add_block([episode.run], [episode.episode], fields) == 1

    def add_block(self, runs: Sequence[int], episodes: Sequence[int], fields: dict[str, np.ndarray]) -> int:
        """Queue B episodes of equal length T at once (``fields[name]`` is ``(B, T, ...)``): the fast path for
        learners that run in lockstep. Returns how many were kept under the size cap."""
        n_eps, length = fields["action"].shape[:2]
        if fields["obs"].dtype != np.uint8 or fields["obs"].shape[:2] != (n_eps, length):
            raise ValueError(f"obs must be (B={n_eps}, T={length}, bytes) uint8, got {fields['obs'].shape} "
                             f"{fields['obs'].dtype}")
        room = n_eps if self.max_steps is None else max(
            0, (self.max_steps - self.steps_written - self._pending_steps) // length)
        keep = min(n_eps, room)
        self.dropped_episodes += n_eps - keep
        if keep:
            steps = keep * length
            capacity = 0 if self._buffers is None else len(self._buffers["action"])
            if self._pending_steps + steps > capacity:
                self.flush()  # chunks end on episode boundaries
                self._allocate(max(self.chunk_steps, steps), fields["obs"].shape[2:])
            rows = slice(self._pending_steps, self._pending_steps + steps)
            for f in FIELDS:  # cast and copy in one pass, straight into the chunk
                self._buffers[f][rows] = fields[f][:keep].reshape(steps, *fields[f].shape[2:])
            table = np.empty((keep, 3), np.int64)
            table[:, 0], table[:, 1], table[:, 2] = runs[:keep], episodes[:keep], length
            self._tables.append(table)
            self._pending_steps += steps
            if self._pending_steps >= self.chunk_steps:
                self.flush()
        return keep

    def _allocate(self, steps: int, obs_tail: tuple[int, ...]) -> None:
        """Arrays for the next chunk: the spare set when it is big enough (no fresh pages to fault in)."""
        spare, self._spare = self._spare, None
        if spare is not None and len(spare["action"]) >= steps and spare["obs"].shape[1:] == obs_tail:
            self._buffers = spare
        else:
            self._buffers = {f: np.empty((steps, *obs_tail) if f == "obs" else (steps,), d) for f, d in FIELDS.items()}

    def flush(self, wait: bool = False) -> None:
        """Hand the filled part of the chunk to the writer thread; ``wait`` until it is on disk."""
        if self._last is not None:
            self._spare = self._last.result()  # one chunk in flight at most; a failed write re-raises here
            self._last = None
        if self._pending_steps:
            n, tables = self._pending_steps, self._tables
            arrays = {f: a[:n] for f, a in self._buffers.items()}
            self._last = self._io.submit(self._write_chunk, arrays, tables, self._buffers,
                                         f"{self._chunks_submitted:06d}")
            self.steps_written += n
            self._buffers, self._tables, self._pending_steps = None, [], 0
            self._chunks_submitted += 1
        if wait and self._last is not None:
            self._spare = self._last.result()
            self._last = None

    def _write_chunk(self, arrays: dict[str, np.ndarray], tables: list[np.ndarray], buffers: dict[str, np.ndarray],
                     name: str) -> dict[str, np.ndarray]:
        """Write one chunk folder under a temporary name, rename it, then record it in the manifest; returns
        ``buffers`` for reuse."""
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{name}."))
        eps = np.concatenate(tables)  # (n, 3): run, episode, length
        lengths = eps[:, 2]
        table = np.stack([eps[:, 0], eps[:, 1], np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths], axis=1)
        sizes, sums = {}, {}
        for field, arr in {"episodes": table, **arrays}.items():
            np.save(tmp / f"{field}.npy", arr, allow_pickle=False)
            sizes[field] = (tmp / f"{field}.npy").stat().st_size
            sums[field] = zlib.crc32(memoryview(arr).cast("B"))
        tmp.chmod(0o755)
        os.replace(tmp, self.path / name)
        with self._lock:
            self.manifest["chunks"].append({"name": name, "steps": int(lengths.sum()), "episodes": len(table),
                                            "sizes": sizes, "crc32": sums})
            _write_json_atomic(self.path / "manifest.json", self.manifest)
        return buffers

    def close(self) -> None:
        """Write what is queued, wait for the writer thread, and leave a complete manifest."""
        self.flush(wait=True)
        self._io.shutdown(wait=True)
        _write_json_atomic(self.path / "manifest.json", self.manifest)

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HistoryReader:
    """Memory-mapped access to a history: episodes by index, and windows of consecutive episodes of a run."""

    def __init__(self, path: str | Path, verify: bool = False) -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            raise HistoryError(f"{manifest} not found: {self.path} is not a history (record one first)")
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as err:
            raise HistoryError(f"{manifest}: not valid JSON ({err})") from err
        self._chunks: list[dict[str, np.ndarray]] = []
        tables = []
        offset = 0
        for chunk in self.manifest["chunks"]:
            arrays = {}
            for field in ("episodes", *FIELDS):
                file = self.path / chunk["name"] / f"{field}.npy"
                if not file.exists():
                    raise HistoryError(f"{file}: missing (the history is damaged; re-record it)")
                if file.stat().st_size != chunk["sizes"][field]:
                    raise HistoryError(f"{file}: {file.stat().st_size} bytes, the manifest says "
                                       f"{chunk['sizes'][field]} (truncated or corrupted; re-record it)")
                try:
                    arrays[field] = np.load(file, mmap_mode="r", allow_pickle=False)
                except ValueError as err:
                    raise HistoryError(f"{file}: unreadable ({err}); re-record it") from err
                if verify and not _checksum_ok(arrays[field], chunk, field):
                    raise HistoryError(f"{file}: checksum does not match the manifest (corrupted; re-record it)")
            table = np.array(arrays["episodes"])
            table[:, 2] += offset
            tables.append(table)
            offset += chunk["steps"]
            self._chunks.append(arrays)
        self._bounds = np.cumsum([0] + [c["steps"] for c in self.manifest["chunks"]])
        table = np.concatenate(tables) if tables else np.zeros((0, 4), np.int64)
        order = np.lexsort((table[:, 1], table[:, 0]))  # by run, then episode
        self.episodes = {k: table[order, i] for i, k in enumerate(EPISODE_FIELDS)}
        runs, first = np.unique(self.episodes["run"], return_index=True)
        self._run_first = dict(zip(runs.tolist(), first.tolist(), strict=True))
        self._run_count = dict(zip(runs.tolist(), np.diff(np.append(first, len(order))).tolist(), strict=True))
        lengths = self.episodes["length"]
        self._run_steps = {r: np.concatenate([[0], np.cumsum(lengths[f:f + self._run_count[r]])])
                           for r, f in self._run_first.items()}  # per run: step offset of each recorded episode

    @property
    def n_steps(self) -> int:
        return int(self._bounds[-1])

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

    def _rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Steps [start, stop) in global row order; an episode never spans chunks."""
        c = int(np.searchsorted(self._bounds, start, side="right") - 1)
        lo, hi = start - self._bounds[c], stop - self._bounds[c]
        return {field: self._chunks[c][field][lo:hi] for field in FIELDS}

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """The ``index``-th episode in (run, episode) order, with its run and episode numbers."""
        start, length = int(self.episodes["start"][index]), int(self.episodes["length"][index])
        out = {k: np.asarray(v) for k, v in self._rows(start, start + length).items()}
        out["run"] = np.full(length, self.episodes["run"][index])
        out["episode"] = np.full(length, self.episodes["episode"][index])
        return out

    def window(self, run: int, first: int, k: int) -> dict[str, np.ndarray]:
        """Recorded episodes ``first .. first + k - 1`` of ``run`` (never mixing runs), concatenated."""
        count = self._run_count.get(run, 0)
        if not 0 <= first or first + k > count:
            raise IndexError(f"run {run} has {count} recorded episodes; asked for {first}..{first + k - 1}")
        base = self._run_first[run] + first
        parts = [self.episode(base + i) for i in range(k)]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def step_window(self, run: int, start: int, n: int) -> dict[str, np.ndarray]:
        """``n`` consecutive recorded steps of ``run`` from its ``start``-th recorded step (across episodes)."""
        offsets = self._run_steps.get(run)
        if offsets is None or not 0 <= start or start + n > offsets[-1]:
            total = 0 if offsets is None else int(offsets[-1])
            raise IndexError(f"run {run} has {total} recorded steps; asked for {start}..{start + n - 1}")
        first = int(np.searchsorted(offsets, start, side="right") - 1)
        last = int(np.searchsorted(offsets, start + n, side="left"))
        parts = [self.episode(self._run_first[run] + i) for i in range(first, last)]
        joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        lo = start - int(offsets[first])
        return {key: v[lo:lo + n] for key, v in joined.items()}

    def windows(self, k: int, n: int, seed: int, runs: Sequence[int] | None = None,
                by_task: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """``n`` windows of ``k`` consecutive recorded episodes, drawn uniformly over all possible windows
        (or uniformly over runs first, ``by_task=True``); deterministic for a seed."""
        pool = [r for r in (runs if runs is not None else self.runs()) if self._run_count.get(r, 0) >= k]
        if not pool:
            raise ValueError(f"no run has {k} recorded episodes")
        counts = np.array([self._run_count[r] - k + 1 for r in pool])
        rng = np.random.default_rng(seed)
        for _ in range(n):
            i = rng.integers(len(pool)) if by_task else rng.choice(len(pool), p=counts / counts.sum())
            yield self.window(pool[i], int(rng.integers(counts[i])), k)


class TabularRecorder:
    """Attach to :func:`imitlib.tabular.q_learning` (``on_episode=recorder``) and record every k-th episode.

    Dark Room observations are stored as the cell index (one byte). ``update`` is the number of Q-updates the
    run had made before the step (one per step), ``epsilon`` the exploration rate of that episode.
    """

    def __init__(self, writer: HistoryWriter, run_ids: Sequence[int], every: int = 1, horizon: int = 20) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.writer, self.every, self.horizon = writer, every, horizon
        self.run_ids = np.asarray(run_ids, dtype=np.int64)
        n = len(self.run_ids)
        self._terminated = np.zeros((n, horizon), bool)  # the same every episode: built once
        self._truncated = np.zeros((n, horizon), bool)
        self._truncated[:, -1] = True
        self._steps = np.broadcast_to(np.arange(horizon, dtype=np.int32), (n, horizon))

    def __call__(self, batch: Any) -> None:  # batch: imitlib.tabular.EpisodeBatch
        if batch.episode % self.every:
            return
        n, h = batch.actions.shape
        fields = {
            "obs": batch.observations.astype(np.uint8)[..., None], "action": batch.actions, "reward": batch.rewards,
            "terminated": self._terminated, "truncated": self._truncated,
            "update": self._steps + np.int32(batch.episode * h),
            "epsilon": np.full((n, h), batch.epsilon, np.float32),
        }
        self.writer.add_block(self.run_ids, np.full(n, batch.episode), fields)


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
                source = _step_windows(reader, steps, length, stream, runs, by_task)
            for window in source:
                yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in window.items()}

    return ContextWindows()


def _step_windows(reader: HistoryReader, n_steps: int, n: int, seed: int, runs: Sequence[int] | None,
                  by_task: bool) -> Iterator[dict[str, np.ndarray]]:
    """Uniform (over windows, or over runs first) ``n_steps``-step windows."""
    pool = [r for r in (runs if runs is not None else reader.runs()) if reader._run_steps[r][-1] >= n_steps]
    if not pool:
        raise ValueError(f"no run has {n_steps} recorded steps")
    counts = np.array([reader._run_steps[r][-1] - n_steps + 1 for r in pool], dtype=float)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        i = rng.integers(len(pool)) if by_task else rng.choice(len(pool), p=counts / counts.sum())
        yield reader.step_window(pool[i], int(rng.integers(counts[i])), n_steps)


class DQNRecorder:
    """Attach to :func:`imitlib.dqn.train` (``Hooks(on_step=recorder.on_step)``): record every k-th episode of
    every seed. MinAtar frames are bit-packed; ALE observations keep only their newest frame (stacks are
    rebuilt from consecutive frames). Episodes cut by a segment boundary are recorded as truncated."""

    def __init__(self, writer: HistoryWriter, run_ids: Sequence[int], every: int = 1) -> None:
        self.writer, self.run_ids, self.every = writer, list(run_ids), every
        self._open: dict[tuple[int, int], list[tuple]] = {}
        self._count: dict[int, int] = {}

    @staticmethod
    def encode(obs: np.ndarray) -> np.ndarray:
        """``(N, *obs_shape)`` -> ``(N, bytes)``: bit-packed bool frames, or the newest uint8 frame."""
        n = obs.shape[0]
        if obs.dtype == np.bool_:
            return np.packbits(obs.reshape(n, -1), axis=-1)
        return obs[:, -1].reshape(n, -1)

    def on_step(self, step: Any) -> None:  # step: imitlib.dqn.StepInfo
        n_seeds, n_envs = step.actions.shape
        frames = self.encode(step.obs.reshape(n_seeds * n_envs, *step.obs.shape[2:])).reshape(n_seeds, n_envs, -1)
        for s in range(n_seeds):
            for e in range(n_envs):
                rows = self._open.setdefault((s, e), [])
                rows.append((frames[s, e], step.actions[s, e], step.rewards[s, e], step.terminated[s, e],
                             step.truncated[s, e], step.updates, step.epsilon))
                if step.terminated[s, e] or step.truncated[s, e]:
                    self._finish(s, e)

    def _finish(self, s: int, e: int) -> None:
        rows = self._open.pop((s, e))
        index = self._count.get(s, 0)
        self._count[s] = index + 1
        if index % self.every:
            return
        cols = list(zip(*rows, strict=True))
        self.writer.add(Episode(
            run=self.run_ids[s], episode=index, obs=np.stack(cols[0]).astype(np.uint8), action=np.array(cols[1]),
            reward=np.array(cols[2], np.float32), terminated=np.array(cols[3]), truncated=np.array(cols[4]),
            update=np.array(cols[5]), epsilon=np.array(cols[6], np.float32),
        ))


def shuffle_episodes(reader: HistoryReader, path: str | Path, seed: int = 0) -> HistoryReader:
    """A copy of a history with each run's episodes in a random order (renumbered 0, 1, ...): the same data,
    but no learning progress along it. Runs must have equal-length episodes (Dark Room)."""
    rng = np.random.default_rng(seed)
    m = reader.manifest
    with HistoryWriter(path, obs_kind=m["obs_kind"], obs_shape=m["obs_shape"], n_actions=m["n_actions"],
                       mode="overwrite", meta={**m["meta"], "shuffled_episodes": True, "shuffle_seed": seed}) as w:
        for run in reader.runs():
            w.set_run(run, **reader.task(run))
            n = reader.run_episodes(run)
            rows = reader.window(run, 0, n)
            if len(rows["action"]) % n:
                raise ValueError(f"run {run}: episodes differ in length; shuffling needs equal-length episodes")
            order = rng.permutation(n)
            fields = {f: np.asarray(rows[f]).reshape(n, -1, *np.shape(rows[f])[1:])[order] for f in FIELDS}
            w.add_block([run] * n, list(range(n)), fields)
    return HistoryReader(path)


def episode_totals(reader: HistoryReader, field: str = "reward") -> np.ndarray:
    """Per recorded episode (in ``reader.episodes`` order), the sum of ``field``: e.g. the episode's return."""
    out = np.zeros(reader.n_episodes)
    starts = reader.episodes["start"]
    for c, arrays in enumerate(reader._chunks):
        lo, hi = reader._bounds[c], reader._bounds[c + 1]
        inside = np.flatnonzero((starts >= lo) & (starts < hi))
        if inside.size:
            values = np.asarray(arrays[field], dtype=np.float64)
            order = np.argsort(starts[inside])
            sums = np.add.reduceat(values, starts[inside][order] - lo)
            out[inside[order]] = sums
    return out


def per_run(reader: HistoryReader, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrange per-episode ``values`` as ``(runs, recorded episodes)`` (NaN-padded) with the run ids."""
    runs = np.array(reader.runs())
    width = max(reader.run_episodes(r) for r in runs)
    out = np.full((len(runs), width), np.nan)
    for i, r in enumerate(runs):
        first = reader._run_first[r]
        out[i, : reader.run_episodes(r)] = values[first: first + reader.run_episodes(r)]
    return runs, out


def action_shares(reader: HistoryReader, edges: np.ndarray, n_actions: int) -> np.ndarray:
    """Share of each action among the steps of recorded episodes whose index falls in each ``edges`` bin."""
    counts = np.zeros((len(edges) - 1, n_actions))
    for arrays in reader._chunks:
        table = np.asarray(arrays["episodes"])  # run, episode, start (in chunk), length
        episode_of_row = np.repeat(table[:, 1], table[:, 3])
        bins = np.digitize(episode_of_row, edges) - 1
        ok = (bins >= 0) & (bins < len(edges) - 1)
        np.add.at(counts, (bins[ok], np.asarray(arrays["action"])[ok].astype(int)), 1)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def stats_table(readers: dict[str, HistoryReader]) -> str:
    """A markdown table of dataset statistics: size, and the mean return early and late in each history."""
    rows = ["| dataset | runs | recorded episodes | steps | bytes per step | first-10% return | last-10% return |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, reader in readers.items():
        runs, returns = per_run(reader, episode_totals(reader))
        k = max(1, returns.shape[1] // 10)
        size = sum(f.stat().st_size for f in reader.path.rglob("*.npy"))
        early, late = np.nanmean(returns[:, :k]), np.nanmean(returns[:, -k:])
        rows.append(f"| {label} | {len(runs)} | {reader.n_episodes:,} | {reader.n_steps:,} | "
                    f"{size / reader.n_steps:.1f} | {early:.2f} | {late:.2f} |")
    return "\n".join(rows)
