"""What every experiment module shares: loading a stored result or saying how to compute it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imitlib import artifacts
from imitlib.scale import Scale

_RECORDED_HERE: set[Path] = set()  # datasets this process recorded: ci records each once per process, not per call


def recorded_dataset(name: str, cfg: Any, scale: Scale, record: Any) -> Path:
    """``data/<name>-<scale>-<config hash>``, recorded by ``record(folder)`` first if absent (at ``ci``: if this
    process has not recorded it yet) into a temporary folder that is renamed when complete, with provenance beside
    the histories."""
    import json
    import shutil

    key = artifacts.config_hash(name, cfg, scale.name)
    folder = artifacts.results_root().parent / "data" / f"{name}-{scale.name}-{key}"
    if (folder / "provenance.json").exists() and (scale.name != "ci" or folder in _RECORDED_HERE):
        return folder
    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")  # one per process: sweeps may record at once
    shutil.rmtree(tmp, ignore_errors=True)
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
