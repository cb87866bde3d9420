"""Learning histories on disk: what a learner saw and did, episode by episode, as it learned.

**Format: numpy shards.** A history is a folder with ``manifest.json`` and numbered chunk folders, each holding
one ``.npy`` file per stored field plus small per-episode arrays. Observations, actions and rewards are stored per
step, actions as one byte when the game has at most 256 of them, and rewards in the dtype the recorder gives
when that dtype is a small integer (exact in ``float32``; Dark Room's 0/1 rewards take a byte), else as
``float32``. The end flags (terminated, truncated) are stored once per episode, since only an episode's last step can
carry them. The learner's update count and epsilon are stored per step, or, when the recorder knows they change
by a fixed amount per step within an episode (tabular Q-learning: one update per step, one epsilon per episode),
as two numbers per episode (:class:`PerEpisode`). Each per-episode array (run, episode number, where the episode's
steps are, end flags, :class:`PerEpisode` values) is stored as one value when it is the same for the whole chunk.
The reader expands all of it back, so every episode reads back with the same seven per-step fields and dtypes.
Histories of formats 1 to 3 still read: format 1 stored every field per step, format 2 an ``int64`` episode
table (actions ``int16``, rewards ``float32``), format 3 a narrowed table as one array.

We chose plain ``.npy`` shards over HDF5, zarr or Minari because they need nothing beyond numpy, open
memory-mapped (a context window reads only the pages holding its steps, no decompression), append by adding a
folder, and contain no pickle. Compression buys little here: observations are already compact
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

**Layout.** Rows are steps. An episode is ``(start, length, stride)``: its steps are rows ``start``,
``start + stride``, ... An episode given on its own, or in a block of episodes laid out episode by episode, has
stride 1 (its steps are contiguous). A lockstep learner's block of B episodes given time-major (step by step,
the layout it computes in) is stored as it comes, so each of its episodes has stride B (or the number kept, when
the size cap keeps only the first episodes of a block): recording then copies the learner's arrays as they are
instead of transposing them (a byte at a time, the slowest copy in the recording path). Either way, a window
of K episodes of one run is K slices.
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

from imitlib.envs.observations import encode
from imitlib.io import atomic_write_bytes

FORMAT_VERSION = 4
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
HUGE_PAGE = 2 << 20  # bytes in an x86-64 transparent huge page
CHUNK_BYTES = 8 << 20  # per-step data per chunk unless chunk_steps says otherwise: few files, little memory
END_BITS = {"terminated": 1, "truncated": 2}  # stored as one byte per episode ("ends"): its last step's flags
AFFINE_FIELDS = ("update", "epsilon")  # per step, or per episode as first value + change per step
PER_EPISODE = (*EPISODE_FIELDS, "stride", "ends", *(f"{f}_{p}" for f in AFFINE_FIELDS for p in ("first", "step")))
NARROW_REWARDS = tuple(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16))  # float32-exact


class PerEpisode(NamedTuple):
    """A field that changes by a fixed amount per step within each episode: its value at each episode's first
    step and the change per step (arrays of one value per episode, or scalars). Stored as two numbers per episode
    instead of one per step, or one per chunk where every episode of the chunk shares them."""

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
    """Whether a chunk holds ``field`` per step or in one of its per-episode forms (or, for ``episodes``, the
    episode table: one array up to format 3, a column per entry since)."""
    if field == "episodes":
        return "episodes" in arrays or all(k in arrays for k in (*EPISODE_FIELDS, "stride"))
    return (field in arrays or (field in END_BITS and "ends" in arrays)
            or (field in AFFINE_FIELDS and f"{field}_first" in arrays and f"{field}_step" in arrays))


def _expand(arrays: dict[str, np.ndarray], field: str, row: int, lo: int, length: int, stride: int = 1) -> np.ndarray:
    """One episode's per-step values of ``field`` (chunk table row ``row``, steps ``lo``, ``lo + stride``, ...)."""
    if field in arrays:  # stored narrower than it reads back (format 3 on), or as it reads back
        steps = arrays[field][lo:lo + (length - 1) * stride + 1:stride]
        return np.asarray(steps).astype(FIELDS[field], copy=False)
    if field in END_BITS:
        out = np.zeros(length, np.bool_)
        out[-1] = bool(arrays["ends"][row] & END_BITS[field])
        return out
    first, step = arrays[f"{field}_first"][row], arrays[f"{field}_step"][row]
    return (first + step * np.arange(length, dtype=FIELDS[field])).astype(FIELDS[field])


def _chunk_table(arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
    """A chunk's episode table as ``(n, 5)`` int64: run, episode, start (within the chunk), length, stride."""
    if "episodes" in arrays:  # up to format 3: one (n, 4) array, every episode's steps contiguous
        return np.column_stack([np.asarray(arrays["episodes"], np.int64), np.ones(n, np.int64)])
    return np.column_stack([arrays[k] for k in (*EPISODE_FIELDS, "stride")]).astype(np.int64)


def _step_rows(table: np.ndarray, steps: int) -> np.ndarray:
    """For each step of a chunk, the row of the episode it belongs to (episodes may interleave: stride > 1)."""
    lengths = table[:, 3]
    rows = np.repeat(np.arange(len(table)), lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    where = np.repeat(table[:, 2], lengths) + np.repeat(table[:, 4], lengths) * (np.arange(len(rows)) - first)
    out = np.empty(steps, np.int64)
    out[where] = rows
    return out


def _episode_sums(arrays: dict[str, np.ndarray], table: np.ndarray, field: str) -> np.ndarray:
    """Per episode of a chunk (rows of ``table``, from :func:`_chunk_table`), the sum of ``field`` over its steps."""
    starts, lengths = table[:, 2], table[:, 3].astype(np.float64)
    if field in arrays:
        values = np.asarray(arrays[field], dtype=np.float64)
        if (table[:, 4] == 1).all():  # contiguous episodes in order: one reduction
            return np.add.reduceat(values, starts) if len(starts) else lengths
        return np.bincount(_step_rows(table, len(values)), weights=values, minlength=len(table))
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
    stride: int  # steps between one step of an episode and its next: 1, or the episodes of a time-major block
    last: dict[str, np.ndarray]  # end flags of each episode's last step, (B,)
    per_episode: dict[str, PerEpisode]


def _is_scalar(value: Any) -> bool:
    """A Python or numpy number, or a 0-d array (cheaper than ``np.isscalar``: called once per block)."""
    return isinstance(value, int | float | np.generic) or getattr(value, "ndim", 1) == 0


def _column(values: list[Any], keeps: list[int], dtype: Any) -> np.ndarray:
    """One value per episode of a chunk, from each block's value: a scalar for all its episodes, or one per episode;
    a single value when that is the same for every episode (how the chunk stores it).

    Lockstep recorders pass scalars, or the same array for every block, so a chunk of hundreds of blocks takes a
    few numpy calls rather than a few per block, and a value shared by the chunk is never spelled out per episode
    (a temporary array of a few MB costs hundreds of page faults)."""
    first = values[0]
    if all(v is first for v in values):
        if _is_scalar(first):
            return np.array([first], dtype)
        first = _compact(np.asarray(first, dtype))  # narrowed before it is repeated
        if len(first) == 1:
            return first
        if all(k == len(first) for k in keeps):
            return np.tile(first, len(values))
    if all(_is_scalar(v) for v in values):
        per_block = _compact(np.array(values, dtype))
        return per_block if len(per_block) == 1 else np.repeat(per_block, keeps)
    return np.concatenate([np.full(k, v, dtype) if _is_scalar(v) else np.asarray(v, dtype)[:k]
                           for v, k in zip(values, keeps, strict=True)])


def _compact(column: np.ndarray) -> np.ndarray:
    """A per-episode column as stored: one value when it is the same for every episode of the chunk (the
    reader broadcasts it back), and integers as ``int32`` wherever they fit."""
    bits = column.view(f"u{column.itemsize}") if column.dtype.kind == "f" else column  # -0.0 is not 0.0 here
    if len(column) > 1 and bits[0] == bits[-1] and (bits == bits[0]).all():
        column = column[:1]
    if column.dtype == np.int64 and -(1 << 31) <= column.min() and column.max() < 1 << 31:
        column = column.astype(np.int32)
    return column


def _carve(shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, np.ndarray]:
    """Arrays of these shapes and dtypes as views of one allocation. One block of several MB gets huge pages
    from numpy (it asks the kernel for them above 4 MB), so filling a chunk faults in a few pages instead of
    thousands; on this machine the faults of separate 4 KB-paged buffers cost more than the copies into them."""
    sizes = {f: -(-int(np.prod(shape)) * np.dtype(d).itemsize // 64) * 64 for f, (shape, d) in shapes.items()}
    raw = np.empty(sum(sizes.values()) + HUGE_PAGE, np.uint8)
    skip = (HUGE_PAGE - raw.ctypes.data % HUGE_PAGE) % HUGE_PAGE  # start on a huge page boundary: all pages huge
    block = raw[skip:]
    out, at = {}, 0
    for f, (shape, d) in shapes.items():
        n = int(np.prod(shape)) * np.dtype(d).itemsize
        out[f] = block[at:at + n].view(d).reshape(shape)
        at += sizes[f]
    return out


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
        self._encodings: dict[tuple, dict[str, np.dtype]] = {}  # see _encoding_of
        self._safe_actions: dict[np.dtype, bool] = {}  # action dtype -> fits the stored dtype without a check
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
                  fields: dict[str, np.ndarray | PerEpisode], *, time_major: bool = False) -> int:
        """Queue B episodes of equal length T at once: the fast path for learners that run in lockstep.

        ``runs`` and ``episodes`` give each episode's run and its index in that run's history (``episodes`` may be
        one number for all). ``fields[name]`` is ``(B, T, ...)`` per step, or ``(T, B, ...)`` with
        ``time_major=True``: then the block is stored as it comes, step by step (an episode's steps as many rows
        apart as the block keeps episodes), with no transposition. ``terminated`` / ``truncated`` may be ``(B,)``,
        the flags of each episode's last step, and ``update`` / ``epsilon`` a :class:`PerEpisode`. Returns how many
        episodes were kept under the size cap."""
        lead = fields["action"].shape[:2]
        n_eps, length = lead[::-1] if time_major else lead
        layout = f"(T={length}, B={n_eps})" if time_major else f"(B={n_eps}, T={length})"
        obs = fields["obs"]
        if obs.dtype != np.uint8 or obs.shape[:2] != lead:
            raise ValueError(f"obs must be {layout[:-1]}, bytes) uint8 like action, got {obs.shape} {obs.dtype}")
        for f in ("reward", *END_BITS, *AFFINE_FIELDS):  # a (B, T) array given as (T, B) would read back scrambled
            value = fields[f]
            if type(value) is PerEpisode or (f in END_BITS and np.shape(value) == (n_eps,)):
                continue
            if np.shape(value)[:2] != lead:
                raise ValueError(f"{f} must be {layout} like action{', or (B,)' if f in END_BITS else ''}, "
                                 f"got {np.shape(value)}")
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
                values = (values.T if time_major else values)[:keep]  # (B, T)
                if np.count_nonzero(values) != np.count_nonzero(values[:, -1]):
                    raise ValueError(f"{flag} is set before an episode's last step: an episode ends at its first "
                                     f"terminated or truncated step, so record the rest as the next episode")
                values = values[:, -1]
            last[flag] = values if keep == len(values) else values[:keep]  # the same array each block: cheap to tile
        encoding = self._encoding_of(fields)
        self._check_actions(fields["action"])  # before anything is queued or flushed
        steps = keep * length
        if self.chunk_steps is None:  # about CHUNK_BYTES of per-step data per chunk
            row = obs[0, 0].nbytes + sum(d.itemsize for f, d in encoding.items() if f != "obs")
            self.chunk_steps = max(1, CHUNK_BYTES // row)
        capacity = 0 if self._buffers is None else len(self._buffers["action"])
        if (self._pending_steps + steps > capacity or encoding is not self._encoding
                or obs.shape[2:] != self._buffers["obs"].shape[1:]):
            self.flush()  # chunks end on episode boundaries, and store each field one way
            self._allocate(max(self.chunk_steps, steps), obs.shape[2:], encoding)
        at = self._pending_steps
        for f in encoding:  # cast and copy in one pass, straight into the chunk (any strides)
            values = fields[f]
            if keep < n_eps:
                values = values[:, :keep] if time_major else values[:keep]
            np.copyto(self._buffers[f][at:at + steps].reshape(values.shape), values, casting="unsafe")
        self._blocks.append(_Block(runs, episodes, keep, length, keep if time_major else 1, last,
                                   {f: fields[f] for f in AFFINE_FIELDS if f not in encoding}))
        self._pending_steps += steps
        if self._pending_steps >= self.chunk_steps:
            self.flush()
        return keep

    def _encoding_of(self, fields: dict[str, np.ndarray | PerEpisode]) -> dict[str, np.dtype]:
        """The per-step fields a block stores and their dtypes on disk; the same dict object for the same answer,
        so a lockstep recorder's blocks are compared by identity."""
        key = (fields["reward"].dtype, *(type(fields[f]) for f in AFFINE_FIELDS))
        encoding = self._encodings.get(key)
        if encoding is None:
            reward = key[0] if key[0] in NARROW_REWARDS else np.dtype(FIELDS["reward"])
            encoding = {"obs": np.dtype(np.uint8), "action": self._action_dtype, "reward": reward}
            encoding.update({f: np.dtype(FIELDS[f]) for f in AFFINE_FIELDS if type(fields[f]) is not PerEpisode})
            for known in self._encodings.values():  # one dict per distinct encoding: compared by identity
                if known == encoding:
                    encoding = known
            self._encodings[key] = encoding
        return encoding

    def _check_actions(self, action: np.ndarray) -> None:
        """Refuse actions outside ``0..n_actions-1`` when storing them in a narrower dtype could wrap them."""
        safe = self._safe_actions.get(action.dtype)
        if safe is None:
            safe = self._safe_actions[action.dtype] = bool(np.can_cast(action.dtype, self._action_dtype, "safe"))
        if not safe and (action.min() < 0 or action.max() >= self.manifest["n_actions"]):
            raise ValueError(f"actions must lie in 0..{self.manifest['n_actions'] - 1} (n_actions), got "
                             f"{action.min()}..{action.max()}")

    def _allocate(self, steps: int, obs_tail: tuple[int, ...], encoding: dict[str, np.dtype]) -> None:
        """Arrays for the next chunk: the last chunk's when they fit (no fresh pages to fault in)."""
        old = self._buffers
        if not (old is not None and len(old["action"]) >= steps and old["obs"].shape[1:] == obs_tail
                and all(f in old and old[f].dtype == d for f, d in encoding.items())):
            self._buffers = _carve({f: ((steps, *obs_tail) if f == "obs" else (steps,), d)
                                    for f, d in encoding.items()})
        self._encoding = encoding

    def flush(self) -> None:
        """Write the queued episodes as one chunk."""
        if not self._blocks:
            return
        n = self._pending_steps
        arrays = {f: self._buffers[f][:n] for f in self._encoding}
        self._write_chunk({**arrays, **self._tables(self._blocks)}, f"{self._chunks_written:06d}",
                          sum(b.keep for b in self._blocks))
        self.steps_written += n
        self._blocks, self._pending_steps, self._encoding = [], 0, None
        self._chunks_written += 1

    @staticmethod
    def _tables(blocks: list[_Block]) -> dict[str, np.ndarray]:
        """The chunk's per-episode arrays (format 4): where each episode's steps are (``start``, ``length``,
        ``stride``), its ``run`` and ``episode`` number, its end flags, and the :class:`PerEpisode` fields; each
        stored as one value when it is the same for the whole chunk."""
        keeps = [b.keep for b in blocks]
        steps = np.cumsum([0] + [b.keep * b.length for b in blocks])  # where each block's steps begin in the chunk
        rows = np.cumsum([0, *keeps[:-1]])  # its first episode's row
        apart = np.array([1 if b.stride > 1 else b.length for b in blocks])  # from one episode's first step to the next
        # episode i of block k starts at steps[k] + (i - rows[k]) * apart[k]
        index = np.int32 if steps[-1] < 1 << 31 else np.int64
        starts = np.repeat((steps[:-1] - rows * apart).astype(index), keeps)
        shared = (apart == apart[0]).all()  # lockstep chunks: one spacing for all, no per-episode array of it
        starts += np.arange(sum(keeps), dtype=index) * (int(apart[0]) if shared else np.repeat(apart, keeps))
        out = {"run": _column([b.runs for b in blocks], keeps, np.int64),
               "episode": _column([b.episodes for b in blocks], keeps, np.int64), "start": starts,
               "length": _column([b.length for b in blocks], keeps, np.int64),
               "stride": _column([b.stride for b in blocks], keeps, np.int64)}
        ends = [_column([b.last[flag] for b in blocks], keeps, np.uint8) * np.uint8(bit)
                for flag, bit in END_BITS.items()]
        out["ends"] = ends[0] | ends[1]
        for f in blocks[0].per_episode:  # the same fields in every block of a chunk
            for part in ("first", "step"):
                out[f"{f}_{part}"] = _column([getattr(b.per_episode[f], part) for b in blocks], keeps, FIELDS[f])
        return {k: _compact(v) for k, v in out.items()}

    def _write_chunk(self, arrays: dict[str, np.ndarray], name: str, episodes: int) -> None:
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
        self.manifest["chunks"].append({"name": name, "steps": len(arrays["action"]), "episodes": episodes,
                                        "sizes": sizes, "crc32": sums})
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
        self._tables: list[np.ndarray] = []  # per chunk: its episode table (see _chunk_table)
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
            n = len(arrays["episodes"]) if "episodes" in arrays else chunk["episodes"]
            for k in PER_EPISODE:  # format 4 stores a value shared by the whole chunk once
                if k in arrays and len(arrays[k]) != n:
                    if len(arrays[k]) != 1 or k == "start":  # no two episodes start at the same step
                        raise HistoryError(f"{self.path / chunk['name'] / k}.npy: {len(arrays[k])} values for {n} "
                                           "episodes (the history is damaged; re-record it)")
                    arrays[k] = np.broadcast_to(arrays[k], n)
            table = _chunk_table(arrays, n)
            self._tables.append(table)
            table = table.copy()
            table[:, 2] += offset
            tables.append(np.column_stack([table, np.full(n, len(self._chunks)), np.arange(n)]))
            offset += chunk["steps"]
            self._chunks.append(arrays)
        self._bounds = np.cumsum([0] + [c["steps"] for c in self.manifest["chunks"]])
        table = np.concatenate(tables) if tables else np.zeros((0, 7), np.int64)
        order = np.lexsort((table[:, 1], table[:, 0]))  # by run, then episode
        # per episode: its steps are rows start, start + stride, ... (start counted across chunks)
        self.episodes = {k: table[order, i] for i, k in enumerate((*EPISODE_FIELDS, "stride"))}
        self._place = table[order, 5:]  # per episode: its chunk, and its row in that chunk's table
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
        arrays, lo, stride = self._chunks[c], start - int(self._bounds[c]), int(self.episodes["stride"][index])
        out = {f: _expand(arrays, f, row, lo, length, stride) for f in FIELDS}
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
    that episode; both are given per episode (:class:`PerEpisode`), as are the flags (every episode is truncated at
    the horizon), and stored once per chunk where they are the same for all its episodes (the flags, the update
    step, a constant epsilon). Steps are recorded in the learner's time-major layout (see the module docstring).
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
        fields = {  # time-major (H, B): the learner's own layout, stored without a transposition
            "obs": batch.observations.T[..., None], "action": batch.actions.T, "reward": batch.rewards.T,
            "terminated": self._terminated, "truncated": self._truncated,
            "update": PerEpisode(first=batch.episode * h, step=1), "epsilon": PerEpisode(first=batch.epsilon),
        }
        self.writer.add_block(self.run_ids, batch.episode, fields, time_major=True)


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

    def on_step(self, step: Any) -> None:  # step: imitlib.dqn.StepInfo
        n_seeds, n_envs = step.actions.shape
        frames = encode(step.obs.reshape(n_seeds * n_envs, *step.obs.shape[2:])).reshape(n_seeds, n_envs, -1)
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
    sums = [_episode_sums(arrays, table, field) for arrays, table in zip(reader._chunks, reader._tables, strict=True)]
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
    for arrays, table in zip(reader._chunks, reader._tables, strict=True):
        episode_of_row = table[_step_rows(table, len(arrays["action"])), 1]
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
