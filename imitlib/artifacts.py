"""Load-if-present / compute-and-save for expensive results, with provenance.

An artifact is a dict of numpy arrays saved as ``data.npz`` (no pickle; split into ``data-1.npz``, ... so that no
file exceeds a few MB, which keeps every file in git small) beside ``provenance.json``
(config, imitlib version and git commit, date, scale, compute time, SHA-256 of the data). Its folder
is ``results/<name>/<scale>-<config hash>/``, so changing any config value computes a new artifact
instead of silently loading a stale one. Writes are atomic (temporary file, then rename), so an
interrupted run leaves either the old artifact or none. At ``ci`` scale results are always computed
(CI must exercise the code, not the cache) and never written into ``results/``.

The config hash cannot see code changes, so the provenance also records a hash of the source of the modules
the pipeline names (``code=``). Loading an artifact whose code has changed since still works (recomputing a
day of training for an edited comment would be wrong), but warns, and the book's provenance line says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import inspect
import json
import os
import subprocess
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from imitlib.io import atomic_write_bytes

RESULTS_ENV = "IMITLIB_RESULTS"
RECOMPUTE_ENV = "IMITLIB_RECOMPUTE"


class ArtifactError(RuntimeError):
    """A stored artifact is unreadable or does not match its recorded checksum."""


class StaleArtifactWarning(UserWarning):
    """A stored artifact was computed by a different version of the code that produces it."""


@dataclass
class Artifact:
    """Arrays plus where they came from."""

    data: dict[str, np.ndarray]
    provenance: dict[str, Any]
    path: Path | None
    loaded: bool  # True when read from disk, False when computed in this process
    stale: bool = False  # loaded, but the producing code has changed since

    def __getitem__(self, key: str) -> np.ndarray:
        return self.data[key]

    def provenance_markdown(self) -> str:
        """One paragraph for the book saying where these numbers came from."""
        p = self.provenance
        how = "loaded from a stored artifact" if self.loaded else "computed just now"
        commit = p.get("commit") or "unknown commit"
        where = f" (`{_display_path(self.path)}`)" if self.path else ""
        stale = (" **The code that produces it has changed since; rerun with `IMITLIB_RECOMPUTE=1` to refresh "
                 "it.**" if self.stale else "")
        restamped = "".join(f" Re-stamped on {r['date']} at `{r['commit']}` after `{r['after']}` (code changed, "
                            f"results proven unchanged)." for r in p.get("restamped", []))
        return (
            f"**Provenance.** `{p['name']}` at scale `{p['scale']}`, {how}{where}: "
            f"imitlib {p['imitlib_version']} at `{commit}`, created {p['created']}, "
            f"{p['compute_seconds']:.1f} s to compute, config hash `{p['config_hash']}`.{restamped}{stale}"
        )


@dataclass(frozen=True)
class Status:
    """What :func:`cached` found for one artifact during a :func:`dry_run`."""

    name: str
    folder: Path
    state: str  # "stored", "stale" (stored, made by other code) or "missing"
    seconds: float | None  # how long the stored one took to compute
    code_hash: str = ""  # the hash of today's code for it (what a re-stamp writes)


class NotStored(LookupError):
    """Raised inside a :func:`dry_run` where :func:`cached` would have to compute."""


_dry: list[Status] | None = None  # set while a dry run is active


@contextmanager
def dry_run() -> Iterator[list[Status]]:
    """Inside this block :func:`cached` computes nothing: it loads what is stored, raises :class:`NotStored` for
    what is not, and appends each artifact's :class:`Status` to the list it yields (to report a build's plan)."""
    global _dry
    outer, _dry = _dry, []
    try:
        yield _dry
    finally:
        _dry = outer


def _display_path(path: Path) -> str:
    """Path relative to the repository when it lies inside it, else absolute."""
    try:
        return str(path.relative_to(results_root().parent))
    except ValueError:
        return str(path)


def results_root() -> Path:
    """Where artifacts live: ``$IMITLIB_RESULTS`` or the repository's ``results/`` folder."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "results"


def to_jsonable(obj: Any) -> Any:
    """Turn configs (dataclasses, tuples, numpy scalars) into canonical JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__, **{f.name: to_jsonable(getattr(obj, f.name)) for f in
                                                      dataclasses.fields(obj)}}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot put {type(obj).__name__} into an artifact config: use dataclasses of plain values")


def config_hash(name: str, config: Any, scale: str) -> str:
    """Stable short hash of everything that determines an artifact's contents.

    A ``device`` field is hashed as ``"cpu"`` whatever it holds: where a run computes is not what it computes, so
    a teacher trained on a GPU is stored, and found, under the same name as one trained on the CPU (its provenance
    records the device it used)."""
    blob = json.dumps({"name": name, "scale": scale, "config": _device_blind(to_jsonable(config))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _device_blind(value: Any) -> Any:
    """A jsonable config with every ``device`` entry set to ``"cpu"``."""
    if isinstance(value, dict):
        return {k: "cpu" if k == "device" else _device_blind(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_device_blind(v) for v in value]
    return value


def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` if its code has uncommitted changes; stored results under
    ``results/`` are outputs, not code), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":!/results"],
                               cwd=here, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def code_hash(code: Sequence[ModuleType | type | Callable[..., Any]]) -> str:
    """Short hash of the source text of the modules, classes and functions that compute an artifact."""
    h = hashlib.sha256()
    for obj in code:
        name = obj.__name__ if isinstance(obj, ModuleType) else f"{obj.__module__}.{obj.__qualname__}"
        if name.rsplit(".", 1)[-1].startswith("_"):
            raise ValueError(f"code list names the private {name}: declare its module or a public function instead")
        h.update(name.encode())
        h.update(inspect.getsource(obj).encode())
    return h.hexdigest()[:12]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


SHARD_BYTES = 4 << 20  # uncompressed bytes per data file, at most (a single larger array gets a file of its own)


def _shards(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Group arrays, in order, into files of at most SHARD_BYTES each."""
    shards: list[dict[str, np.ndarray]] = [{}]
    for key, arr in arrays.items():
        if shards[-1] and sum(a.nbytes for a in shards[-1].values()) + arr.nbytes > SHARD_BYTES:
            shards.append({})
        shards[-1][key] = arr
    return shards


def save(folder: Path, data: Mapping[str, np.ndarray], provenance: dict[str, Any]) -> dict[str, Any]:
    """Store arrays and provenance atomically; checksums tie the two together. Returns the provenance written."""
    arrays = {k: np.asarray(v) for k, v in data.items()}
    bad = [k for k, v in arrays.items() if v.dtype == object]
    if bad:
        raise TypeError(f"artifact arrays must not be object arrays (no pickle): {bad}")
    files = {}
    for i, shard in enumerate(_shards(arrays)):
        name = "data.npz" if i == 0 else f"data-{i}.npz"
        atomic_write_bytes(folder / name, lambda f, shard=shard: np.savez_compressed(f, **shard))
        files[name] = sha256_file(folder / name)
    provenance = {k: v for k, v in provenance.items() if k not in ("sha256", "files")}
    provenance = {**provenance, "files": files}
    text = json.dumps(provenance, indent=2, sort_keys=True).encode()
    atomic_write_bytes(folder / "provenance.json", lambda f: f.write(text))
    return provenance


def load(folder: Path) -> Artifact:
    """Read an artifact, refusing one whose data is truncated, corrupted or does not match provenance."""
    prov_path = folder / "provenance.json"
    fix = f"delete {folder} to recompute it"
    try:
        provenance = json.loads(prov_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{prov_path}: unreadable provenance ({err}); {fix}") from err
    files = provenance.get("files") or {"data.npz": provenance.get("sha256")}  # older artifacts: one file
    data: dict[str, np.ndarray] = {}
    for name, recorded in files.items():
        data_path = folder / name
        if not data_path.exists():
            raise ArtifactError(f"{data_path}: missing although {prov_path.name} lists it; {fix}")
        digest = sha256_file(data_path)
        if digest != recorded:
            raise ArtifactError(
                f"{data_path}: checksum {digest[:12]} does not match the recorded "
                f"{str(recorded)[:12]} (file truncated or corrupted); {fix}"
            )
        try:
            with np.load(data_path, allow_pickle=False) as z:
                data.update({k: z[k] for k in z.files})
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ArtifactError(f"{data_path}: not a readable .npz ({err}); {fix}") from err
    return Artifact(data=data, provenance=provenance, path=folder, loaded=True)


def cached(
    name: str,
    config: Any,
    compute: Callable[[], Mapping[str, np.ndarray]],
    *,
    scale: str,
    code: Sequence[ModuleType | type | Callable[..., Any]] = (),
    root: Path | None = None,
) -> Artifact:
    """Return the stored artifact for (name, config, scale) if present, else compute it and store it.

    ``code`` names the modules, classes or functions whose source produces the artifact (name the functions
    that matter, so unrelated edits do not mark it stale); a stored artifact made by other source is still
    loaded, with a :class:`StaleArtifactWarning`.
    """
    from imitlib import __version__

    key = config_hash(name, config, scale)
    folder = (root or results_root()) / name / f"{scale}-{key}"
    source = code_hash(code)
    always = scale == "ci" or os.environ.get(RECOMPUTE_ENV, "") not in ("", "0")
    if _dry is not None:
        return _dry_load(name, folder, source)
    if not always and (folder / "provenance.json").exists():
        art = load(folder)
        if art.provenance.get("code_hash") != source:
            art.stale = True
            warnings.warn(f"{folder}: computed by different code (code hash {art.provenance.get('code_hash')} "
                          f"now {source}); set {RECOMPUTE_ENV}=1 to recompute", StaleArtifactWarning, stacklevel=2)
        return art
    start = time.perf_counter()
    data = {k: np.asarray(v) for k, v in compute().items()}
    provenance = {
        "name": name,
        "scale": scale,
        "config": to_jsonable(config),
        "config_hash": key,
        "code_hash": source,
        "imitlib_version": __version__,
        "commit": git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "compute_seconds": time.perf_counter() - start,
    }
    if scale == "ci":
        return Artifact(data=data, provenance=provenance, path=None, loaded=False)
    return Artifact(data=data, provenance=save(folder, data, provenance), path=folder, loaded=False)


def _dry_load(name: str, folder: Path, source: str) -> Artifact:
    """:func:`cached` during a dry run: record what is there, load it if stored, never compute."""
    assert _dry is not None
    if not (folder / "provenance.json").exists():
        _dry.append(Status(name, folder, "missing", None, source))
        raise NotStored(f"{name} is not stored in {folder.parent}")
    art = load(folder)
    art.stale = art.provenance.get("code_hash") != source
    _dry.append(Status(name, folder, "stale" if art.stale else "stored", art.provenance.get("compute_seconds"),
                       source))
    return art


def is_stored(name: str, config: Any, scale: str, root: Path | None = None) -> bool:
    """Whether the artifact for exactly this (name, config, scale) has been computed and stored."""
    folder = (root or results_root()) / name / f"{scale}-{config_hash(name, config, scale)}"
    return (folder / "provenance.json").exists()


def stored(name: str, scale: str | None = None, root: Path | None = None) -> list[Artifact]:
    """Every stored artifact called ``name`` (optionally of one scale), whatever its config: newest first."""
    base = (root or results_root()) / name
    if not base.is_dir():
        return []
    found = [load(d) for d in base.iterdir() if (d / "provenance.json").exists()
             and (scale is None or d.name.startswith(f"{scale}-"))]
    return sorted(found, key=lambda a: a.provenance["created"], reverse=True)
