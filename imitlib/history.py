"""Learning histories on disk: what a learner saw and did, episode by episode, as it learned.

**Format: numpy shards.** A history is a folder with ``manifest.json`` and numbered chunk folders, each holding
one ``.npy`` file per stored field plus a small episode table. Observations, actions and rewards are stored per
step, actions as one byte when the game has at most 256 of them, and rewards in the dtype the recorder gives
when that dtype is a small integer (exact in ``float32``; Dark Room's 0/1 rewards take a byte), else as
``float32``. The end flags (terminated, truncated) are stored once per episode, since only an episode's last step can
carry them. The learner's update count and epsilon are stored per step, or, when the recorder knows they change
by a fixed amount per step within an episode (tabular Q-learning: one update per step, one epsilon per episode),
as two numbers per episode (:class:`PerEpisode`); the reader expands both back to per-step arrays, so every
episode reads back with the same seven fields and dtypes. Format 1 histories (every field per step) and format 2
(actions as ``int16``, rewards as ``float32``, an ``int64`` episode table) still read.

We chose plain ``.npy`` shards over HDF5, zarr or Minari because they need nothing beyond numpy, open
memory-mapped (a context window reads only its own bytes, no decompression), append by adding a folder, and
contain no pickle. Compression buys little here: observations are already compact
(a Dark Room cell is one byte; a MinAtar frame is bit-packed into 50 bytes), so a chunk is stored as is.

**Crash safety.** Episodes are buffered in memory (about 8 MB of per-step data) and written a chunk at a time:
the chunk folder is written under a temporary name and renamed, then the manifest (which lists chunks with their
file sizes and the CRC-32 of each array's data) is replaced atomically. A recording interrupted anywhere leaves
every chunk the manifest lists readable; ``HistoryReader`` says how many steps and episodes were kept. Opening an
existing history for writing is refused unless ``mode="append"`` or ``mode="overwrite"`` says what to do with it.
A truncated or corrupted chunk raises :class:`HistoryError` naming the file.

**Why no writer thread.** Writing on a background thread measured no faster here (within this machine's
noise): the learner this is built for (lockstep tabular Q-learning, millions of steps per second) makes a numpy
call every few microseconds, and every Python step of a writer thread takes the GIL from it. Writing in place is
simpler, and a chunk costs a few milliseconds, well under the learner's own time for the same steps
(``benchmarks/history_io.py``).

**Layout.** Rows are steps; the steps of one episode are contiguous, so an episode is a ``(start, length)``
range and a window of K episodes of one run is K slices.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from imitlib.artifacts import atomic_write_bytes

FORMAT_VERSION = 3
FIELDS = {  # name -> dtype, as episodes read back; obs is (steps, obs_bytes) uint8, every other field is (steps,)
    "obs": np.uint8,
    "action": np.int16,
    "reward": np.float32,
    "terminated": np.bool_,
    "truncated": np.bool_,
    "update": np.int32,
    "epsilon": np.float32,
}
EPISODE_FIELDS = ("run", "episode", "start", "length")
CHUNK_BYTES = 8 << 20  # per-step data per chunk unless chunk_steps says otherwise: few files, little memory
END_BITS = {"terminated": 1, "truncated": 2}  # stored as one byte per episode ("ends"): its last step's flags
AFFINE_FIELDS = ("update", "epsilon")  # per step, or per episode as first value + change per step
NARROW_REWARDS = tuple(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16))  # float32-exact


class PerEpisode(NamedTuple):
    """A field that changes by a fixed amount per step within each episode: its value at each episode's first
    step and the change per step (arrays of one value per episode, or scalars). Stored as two numbers per episode
    instead of one per step."""

    first: np.ndarray | float
    step: np.ndarray | float = 0


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
    """Replace a manifest atomically. Not fsync'd, like the chunk files it lists: a history survives a killed
    process (what the tests check), and the checksums catch what a power cut could leave half-written."""
    text = json.dumps(obj).encode()  # no indent: the C encoder is many times faster
    atomic_write_bytes(path, lambda f: f.write(text), sync=False)


def _stored(arrays: dict[str, np.ndarray], field: str) -> bool:
    """Whether a chunk holds ``field`` per step or in one of its per-episode forms."""
    return (field in arrays or (field in END_BITS and "ends" in arrays)
            or (field in AFFINE_FIELDS and f"{field}_first" in arrays and f"{field}_step" in arrays))


def _expand(arrays: dict[str, np.ndarray], field: str, row: int, lo: int, length: int) -> np.ndarray:
    """One episode's per-step values of ``field`` (chunk table row ``row``, steps ``lo .. lo + length``)."""
    if field in arrays:  # stored narrower than it reads back (format 3), or as it reads back
        return np.asarray(arrays[field][lo:lo + length]).astype(FIELDS[field], copy=False)
    if field in END_BITS:
        out = np.zeros(length, np.bool_)
        out[-1] = bool(arrays["ends"][row] & END_BITS[field])
        return out
    first, step = arrays[f"{field}_first"][row], arrays[f"{field}_step"][row]
    return (first + step * np.arange(length, dtype=FIELDS[field])).astype(FIELDS[field])


def _episode_sums(arrays: dict[str, np.ndarray], field: str) -> np.ndarray:
    """Per episode of a chunk (table order), the sum of ``field`` over its steps."""
    table = np.asarray(arrays["episodes"])
    starts, lengths = table[:, 2], table[:, 3].astype(np.float64)
    if field in arrays:
        return np.add.reduceat(np.asarray(arrays[field], dtype=np.float64), starts) if len(starts) else lengths
    if field in END_BITS:
        return (np.asarray(arrays["ends"]) & END_BITS[field] > 0).astype(np.float64)
    first = np.asarray(arrays[f"{field}_first"], np.float64)
    step = np.asarray(arrays[f"{field}_step"], np.float64)
    return lengths * first + step * lengths * (lengths - 1) / 2


def _checksum_ok(arr: np.ndarray, chunk: dict[str, Any], field: str) -> bool:
    """Whether an array's bytes match the manifest: CRC-32 (the writer's checksum) or SHA-256 (older histories)."""
    data = memoryview(np.ascontiguousarray(arr)).cast("B")
    if "crc32" in chunk:
        return zlib.crc32(data) == chunk["crc32"][field]
    return hashlib.sha256(data).hexdigest() == chunk["sha256"][field]


class _Block(NamedTuple):
    """The per-episode part of one ``add_block`` call, assembled into the chunk's tables when it is written."""

    runs: Sequence[int]
    episodes: Sequence[int] | int
    keep: int
    length: int
    last: dict[str, np.ndarray]  # end flags of each episode's last step, (B,)
    per_episode: dict[str, PerEpisode]


def _is_scalar(value: Any) -> bool:
    """A Python or numpy number, or a 0-d array (cheaper than ``np.isscalar``: called once per block)."""
    return isinstance(value, int | float | np.generic) or getattr(value, "ndim", 1) == 0


def _column(values: list[Any], keeps: list[int], dtype: Any) -> np.ndarray:
    """One value per episode of a chunk, from each block's value: a scalar for all its episodes, or one per episode.

    Lockstep recorders pass scalars, or the same array for every block, so a chunk of hundreds of blocks takes a
    few numpy calls rather than a few per block."""
    first = values[0]
    if all(v is first for v in values):
        if _is_scalar(first):
            return np.full(sum(keeps), first, dtype)
        if all(k == len(first) for k in keeps):
            return np.tile(np.asarray(first, dtype), len(values))
    if all(_is_scalar(v) for v in values):
        return np.repeat(np.array(values, dtype), keeps)
    return np.concatenate([np.full(k, v, dtype) if _is_scalar(v) else np.asarray(v, dtype)[:k]
                           for v, k in zip(values, keeps, strict=True)])


class HistoryWriter:
    """Append episodes to a history folder, one atomic chunk at a time.

    ``add_block`` copies the per-step arrays into the chunk at once (into buffers reused from chunk to chunk) and
    keeps references to the small per-episode ones (run ids, episode numbers, end flags, :class:`PerEpisode`
    values) until the chunk is written: do not modify those afterwards (the recorders never do).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        obs_kind: str,
        obs_shape: Sequence[int],
        n_actions: int,
        mode: str = "create",
        chunk_steps: int | None = None,
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
        self._buffers: dict[str, np.ndarray] | None = None  # per-step arrays of the chunk being filled
        self._blocks: list[_Block] = []  # the per-episode part of the chunk being filled
        self._encoding: dict[str, np.dtype] | None = None  # the chunk's per-step fields and their stored dtypes
        self._action_dtype = np.dtype(np.uint8 if n_actions <= 256 else FIELDS["action"])
        self._pending_steps = 0
        self.steps_written = sum(c["steps"] for c in self.manifest["chunks"])  # in chunks on disk
        self._chunks_written = len(self.manifest["chunks"])
        self.dropped_episodes = 0

    def set_run(self, run: int, **task: Any) -> None:
        """Describe a run (its goal or game, its seed, ...): stored in the manifest."""
        self.manifest["runs"][str(run)] = task

    def add(self, episode: Episode) -> bool:
        """Queue one episode; returns False (and drops it) once the size cap is reached."""
        fields = {f: np.asarray(getattr(episode, f), bool if f in END_BITS else None)[None] for f in FIELDS}
        return self.add_block([episode.run], [episode.episode], fields) == 1

    def add_block(self, runs: Sequence[int], episodes: Sequence[int] | int,
                  fields: dict[str, np.ndarray | PerEpisode]) -> int:
        """Queue B episodes of equal length T at once: the fast path for learners that run in lockstep.

        ``runs`` and ``episodes`` give each episode's run and its index in that run's history (``episodes`` may be
        one number for all). ``fields[name]`` is ``(B, T, ...)`` per step; ``terminated`` / ``truncated`` may be
        ``(B,)``, the flags of each episode's last step, and ``update`` / ``epsilon`` a :class:`PerEpisode`.
        Returns how many episodes were kept under the size cap."""
        n_eps, length = fields["action"].shape[:2]
        if fields["obs"].dtype != np.uint8 or fields["obs"].shape[:2] != (n_eps, length):
            raise ValueError(f"obs must be (B={n_eps}, T={length}, bytes) uint8, got {fields['obs'].shape} "
                             f"{fields['obs'].dtype}")
        room = n_eps if self.max_steps is None else max(
            0, (self.max_steps - self.steps_written - self._pending_steps) // length)
        keep = min(n_eps, room)
        self.dropped_episodes += n_eps - keep
        if not keep:
            return 0
        last = {}  # the end flags of each kept episode's last step
        for flag in END_BITS:
            values = fields[flag]
            if values.dtype != np.bool_:
                raise ValueError(f"{flag} must be bool, got {values.dtype}")
            if values.ndim == 2:
                values = values[:keep]
                if np.count_nonzero(values) != np.count_nonzero(values[:, -1]):
                    raise ValueError(f"{flag} is set before an episode's last step: an episode ends at its first "
                                     f"terminated or truncated step, so record the rest as the next episode")
                values = values[:, -1]
            last[flag] = values[:keep]
        reward = fields["reward"].dtype
        encoding = {"obs": np.dtype(np.uint8), "action": self._action_dtype,
                    "reward": reward if reward in NARROW_REWARDS else np.dtype(FIELDS["reward"])}
        encoding.update({f: np.dtype(FIELDS[f]) for f in AFFINE_FIELDS if type(fields[f]) is not PerEpisode})
        action = fields["action"]  # checked before anything is queued or flushed
        if not np.can_cast(action.dtype, encoding["action"], "safe") and (
                action.min() < 0 or action.max() >= self.manifest["n_actions"]):
            raise ValueError(f"actions must lie in 0..{self.manifest['n_actions'] - 1} (n_actions), got "
                             f"{action.min()}..{action.max()}")
        steps = keep * length
        if self.chunk_steps is None:  # about CHUNK_BYTES of per-step data per chunk
            row = fields["obs"][0, 0].nbytes + sum(d.itemsize for f, d in encoding.items() if f != "obs")
            self.chunk_steps = max(1, CHUNK_BYTES // row)
        capacity = 0 if self._buffers is None else len(self._buffers["action"])
        if (self._pending_steps + steps > capacity or encoding != self._encoding
                or fields["obs"].shape[2:] != self._buffers["obs"].shape[1:]):
            self.flush()  # chunks end on episode boundaries, and store each field one way
            self._allocate(max(self.chunk_steps, steps), fields["obs"].shape[2:], encoding)
        rows = slice(self._pending_steps, self._pending_steps + steps)
        for f in encoding:  # cast and copy in one pass, straight into the chunk (any strides)
            values = fields[f] if keep == n_eps else fields[f][:keep]
            np.copyto(self._buffers[f][rows].reshape(values.shape), values, casting="unsafe")
        self._blocks.append(_Block(runs, episodes, keep, length, last,
                                   {f: fields[f] for f in AFFINE_FIELDS if f not in encoding}))
        self._pending_steps += steps
        if self._pending_steps >= self.chunk_steps:
            self.flush()
        return keep

    def _allocate(self, steps: int, obs_tail: tuple[int, ...], encoding: dict[str, np.dtype]) -> None:
        """Arrays for the next chunk: the last chunk's when they fit (no fresh pages to fault in)."""
        old = self._buffers
        if not (old is not None and len(old["action"]) >= steps and old["obs"].shape[1:] == obs_tail
                and all(f in old and old[f].dtype == d for f, d in encoding.items())):
            self._buffers = {f: np.empty((steps, *obs_tail) if f == "obs" else (steps,), d)
                             for f, d in encoding.items()}
        self._encoding = encoding

    def flush(self) -> None:
        """Write the queued episodes as one chunk."""
        if not self._blocks:
            return
        n = self._pending_steps
        arrays = {f: self._buffers[f][:n] for f in self._encoding}
        self._write_chunk({**arrays, **self._tables(self._blocks)}, f"{self._chunks_written:06d}")
        self.steps_written += n
        self._blocks, self._pending_steps, self._encoding = [], 0, None
        self._chunks_written += 1

    @staticmethod
    def _tables(blocks: list[_Block]) -> dict[str, np.ndarray]:
        """The chunk's per-episode arrays: the episode table, the end flags, and the :class:`PerEpisode` fields."""
        keeps = [b.keep for b in blocks]
        lengths = np.repeat([b.length for b in blocks], keeps)
        starts = np.zeros_like(lengths)
        np.cumsum(lengths[:-1], out=starts[1:])
        cols = [_column([b.runs for b in blocks], keeps, np.int64),
                _column([b.episodes for b in blocks], keeps, np.int64), starts, lengths]
        small = all(-(1 << 31) <= c.min() and c.max() < 1 << 31 for c in cols)  # int32 halves the table (format 3)
        out = {"episodes": np.stack(cols, axis=1, dtype=np.int32 if small else np.int64, casting="unsafe")}
        ends = [_column([b.last[flag] for b in blocks], keeps, np.uint8) * np.uint8(bit)
                for flag, bit in END_BITS.items()]
        out["ends"] = ends[0] | ends[1]
        for f in blocks[0].per_episode:  # the same fields in every block of a chunk
            for part in ("first", "step"):
                out[f"{f}_{part}"] = _column([getattr(b.per_episode[f], part) for b in blocks], keeps, FIELDS[f])
        return out

    def _write_chunk(self, arrays: dict[str, np.ndarray], name: str) -> None:
        """Write one chunk folder under a temporary name, rename it, then record it in the manifest."""
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{name}."))
        sizes, sums = {}, {}
        for field, arr in arrays.items():
            np.save(tmp / f"{field}.npy", arr, allow_pickle=False)
            sizes[field] = (tmp / f"{field}.npy").stat().st_size
            sums[field] = zlib.crc32(memoryview(arr).cast("B"))
        tmp.chmod(0o755)
        os.replace(tmp, self.path / name)
        self.manifest["format_version"] = FORMAT_VERSION  # appended chunks may use this version's encodings
        self.manifest["chunks"].append({"name": name, "steps": len(arrays["action"]),
                                        "episodes": len(arrays["episodes"]), "sizes": sizes, "crc32": sums})
        _write_json_atomic(self.path / "manifest.json", self.manifest)

    def close(self) -> None:
        """Write what is queued and leave a complete manifest."""
        self.flush()
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
        if self.manifest.get("format_version", 1) > FORMAT_VERSION:
            raise HistoryError(f"{manifest}: format {self.manifest['format_version']} is newer than this imitlib "
                               f"reads ({FORMAT_VERSION}); upgrade imitlib")
        self._chunks: list[dict[str, np.ndarray]] = []
        tables = []
        offset = 0
        for chunk in self.manifest["chunks"]:
            arrays = {}
            for field in chunk["sizes"]:  # format 1: every field per step; format 2: see the module docstring
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
            lacking = [f for f in ("episodes", *FIELDS) if not _stored(arrays, f)]
            if lacking:
                raise HistoryError(f"{self.path / chunk['name']}: no data for {lacking} (the manifest lists "
                                   f"{sorted(chunk['sizes'])}; the history is damaged, re-record it)")
            table = np.array(arrays["episodes"], dtype=np.int64)  # int32 on disk where it fits
            table[:, 2] += offset
            tables.append(np.column_stack([table, np.full(len(table), len(self._chunks)), np.arange(len(table))]))
            offset += chunk["steps"]
            self._chunks.append(arrays)
        self._bounds = np.cumsum([0] + [c["steps"] for c in self.manifest["chunks"]])
        table = np.concatenate(tables) if tables else np.zeros((0, 6), np.int64)
        order = np.lexsort((table[:, 1], table[:, 0]))  # by run, then episode
        self.episodes = {k: table[order, i] for i, k in enumerate(EPISODE_FIELDS)}
        self._place = table[order, 4:]  # per episode: its chunk, and its row in that chunk's table
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

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """The ``index``-th episode in (run, episode) order, with its run and episode numbers."""
        start, length = int(self.episodes["start"][index]), int(self.episodes["length"][index])
        c, row = self._place[index]
        arrays, lo = self._chunks[c], start - int(self._bounds[c])
        out = {f: _expand(arrays, f, row, lo, length) for f in FIELDS}
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

    Dark Room observations are stored as the cell index and rewards (0 or 1) as they come, one byte each. ``update``
    is the number of Q-updates the run had made before the step (one per step), ``epsilon`` the exploration rate of
    that episode; both are stored per episode (:class:`PerEpisode`), as are the flags (every episode is truncated at
    the horizon).
    """

    def __init__(self, writer: HistoryWriter, run_ids: Sequence[int], every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.writer, self.every = writer, every
        self.run_ids = np.asarray(run_ids, dtype=np.int64)
        n = len(self.run_ids)
        self._terminated = np.zeros(n, bool)  # each episode's last step: the same every episode, built once
        self._truncated = np.ones(n, bool)  # (every episode ends at the horizon)

    def __call__(self, batch: Any) -> None:  # batch: imitlib.tabular.EpisodeBatch
        if batch.episode % self.every:
            return
        if batch.observations.dtype != np.uint8:
            raise ValueError(f"TabularRecorder stores a cell in one byte: rooms of up to 256 cells, got cells as "
                             f"{batch.observations.dtype}")
        h = batch.actions.shape[1]
        fields = {
            "obs": batch.observations[..., None], "action": batch.actions, "reward": batch.rewards,
            "terminated": self._terminated, "truncated": self._truncated,
            "update": PerEpisode(first=batch.episode * h, step=1), "epsilon": PerEpisode(first=batch.epsilon),
        }
        self.writer.add_block(self.run_ids, batch.episode, fields)


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
    if field not in FIELDS:
        raise ValueError(f"field must be one of {list(FIELDS)}, got {field!r}")
    sums = [_episode_sums(arrays, field) for arrays in reader._chunks]
    out = np.zeros(reader.n_episodes)
    for c, values in enumerate(sums):
        mine = np.flatnonzero(reader._place[:, 0] == c)
        out[mine] = values[reader._place[mine, 1]]
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


def bytes_per_step(reader: HistoryReader) -> float:
    """Bytes on disk per recorded step, every array file included (what a dataset costs to keep)."""
    return sum(f.stat().st_size for f in reader.path.rglob("*.npy")) / max(reader.n_steps, 1)


def stats_table(readers: dict[str, HistoryReader]) -> str:
    """A markdown table of dataset statistics: size, and the mean return early and late in each history."""
    rows = ["| dataset | runs | recorded episodes | steps | bytes per step | first-10% return | last-10% return |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, reader in readers.items():
        runs, returns = per_run(reader, episode_totals(reader))
        k = max(1, returns.shape[1] // 10)
        early, late = np.nanmean(returns[:, :k]), np.nanmean(returns[:, -k:])
        rows.append(f"| {label} | {len(runs)} | {reader.n_episodes:,} | {reader.n_steps:,} | "
                    f"{bytes_per_step(reader):.1f} | {early:.2f} | {late:.2f} |")
    return "\n".join(rows)
