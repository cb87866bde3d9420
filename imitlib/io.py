"""Files that must survive interruption: atomic writes and the one checkpoint format every learner uses.

A file is written through a temporary file in the same folder and renamed into place, so a reader (or a resumed
run) never sees half of it. A checkpoint is a ``torch.save`` of tensors and plain numbers plus a JSON ``meta``
string saying which run wrote it; it is read with ``weights_only=True`` (no pickle). A checkpoint belongs to one run
(one config, one set of seeds, one game): resuming a different run from it would mix two experiments silently, so
every learner refuses it with :class:`CheckpointMismatchError`, which the CLI reports in one line.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for a different run (game, network, seeds or config) than the one resuming."""


def atomic_write_bytes(path: Path, write: Callable[[Any], None], sync: bool = True) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file.

    ``sync`` also flushes the file to the disk before the rename (survives a power cut, not only a killed
    process), at a millisecond or so per call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Store tensors/numbers ``state`` and the JSON-able ``meta`` (which run wrote it) atomically."""
    buf = io.BytesIO()
    torch.save({**state, "meta": json.dumps(meta)}, buf)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents with ``meta`` decoded, loaded without pickle; a damaged file is one clear error."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["meta"] = json.loads(state["meta"])
    except (OSError, RuntimeError, KeyError, ValueError, EOFError) as err:
        raise CheckpointMismatchError(f"{path}: unreadable checkpoint ({err}); delete it to start over") from err
    return state


def differences(ours: dict[str, Any], theirs: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """What a checkpoint's config says differently from ours, one "key: theirs vs ours" per entry."""
    ours, theirs = json.loads(json.dumps(ours)), json.loads(json.dumps(theirs))  # tuples vs lists compare equal
    return [f"{k}: {theirs.get(k)!r} in the checkpoint vs {v!r} now" for k, v in ours.items()
            if k not in ignore and theirs.get(k) != v]
