"""What every experiment module shares: loading a stored result or saying how to compute it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imitlib import artifacts
from imitlib.scale import Scale

_RECORDED_HERE: set[Path] = set()  # datasets this process recorded: ci records each once per process, not per call


def recorded_dataset(name: str, cfg: Any, scale: Scale, record: Any, resumable: bool = False) -> Path:
    """``data/<name>-<scale>-<config hash>``, recorded by ``record(folder)`` first if absent (at ``ci``: if this
    process has not recorded it yet) into a temporary folder that is renamed when complete, with provenance beside
    the histories. A ``resumable`` recorder gets the same partial folder after an interruption, to continue what
    it holds; one process records it at a time (the others wait, then read it)."""
    key = artifacts.config_hash(name, cfg, scale.name)
    folder = artifacts.results_root().parent / "data" / f"{name}-{scale.name}-{key}"
    if _complete(folder, scale):
        return folder
    if not resumable:  # one temporary folder per process: sweeps may record at once
        return _record_into(folder, folder.with_name(f"{folder.name}.partial-{os.getpid()}"), cfg, scale, record)
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f"{folder.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its process dies
        if _complete(folder, scale):  # recorded by the process we waited for
            return folder
        return _record_into(folder, folder.with_name(f"{folder.name}.partial"), cfg, scale, record, fresh=False)


def _complete(folder: Path, scale: Scale) -> bool:
    return (folder / "provenance.json").exists() and (scale.name != "ci" or folder in _RECORDED_HERE)


def _record_into(folder: Path, tmp: Path, cfg: Any, scale: Scale, record: Any, fresh: bool = True) -> Path:
    """Record into ``tmp`` (emptied first unless the recorder resumes it), then rename it to ``folder``."""
    import json
    import shutil

    if fresh:
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    timings = record(tmp)
    prov = {"config": artifacts.to_jsonable(cfg), "scale": scale.name, "commit": artifacts.git_commit(), **timings}
    (tmp / "provenance.json").write_text(json.dumps(prov, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished the same recording first: the same seeds, the same data; keep it
        shutil.rmtree(tmp, ignore_errors=True)
    _RECORDED_HERE.add(folder)
    return folder


def _student_folder(name: str, cfg: Any, scale: Scale) -> Path:
    """Where a student's resumable checkpoints live while it trains (``runs/``, not committed)."""
    key = artifacts.config_hash(name, cfg, scale.name)
    return artifacts.results_root().parent / "runs" / f"{name}-{scale.name}-{key}"


def ready(name: str, cfg: Any, scale: Scale) -> bool:
    """Whether the book can show an artifact without hours of training: always at ``ci``, else if it is stored."""
    return scale.name == "ci" or artifacts.is_stored(name, cfg, scale.name)



CLI = "python -m imitlib"
RECOVERY_BAR = 0.8  # "recovers most of the teacher's return": 80%, the share the essay calls a working copy
MISSING = "not computed at this scale yet"  # what a sentence says in place of a verdict without its numbers


def load_or_explain(get: Callable[[], artifacts.Artifact], scale: Scale, command: str) -> artifacts.Artifact | None:
    """The stored result ``get`` loads (at ``ci``: computed now); if it is not stored, None and one printed line
    naming the command that computes it, so a chapter never starts hours of training by surprise."""
    if scale.name == "ci":
        return get()
    with artifacts.dry_run():
        try:
            return get()
        except artifacts.NotStored as err:
            print(f"not computed yet at {scale.name} scale: {err}; run `{command.format(scale=scale.name)}`")
            return None
