"""Atomic files and the one checkpoint format (imitlib.io)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from imitlib import io

LEARNERS = ("dqn", "imitation", "history", "tabular", "transformer")


def test_a_checkpoint_round_trips_its_tensors_and_meta(tmp_path):
    path = tmp_path / "run" / "ckpt.pt"
    io.save_checkpoint(path, {"w": torch.arange(3.0), "updates": 7}, {"config": {"lr": 0.1, "sizes": (1, 2)}})
    state = io.read_checkpoint(path)
    assert state["w"].tolist() == [0.0, 1.0, 2.0] and state["updates"] == 7
    assert state["meta"] == {"config": {"lr": 0.1, "sizes": [1, 2]}}
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_a_damaged_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "ckpt.pt"
    io.save_checkpoint(path, {"w": torch.zeros(100)}, {})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(io.CheckpointMismatchError, match=r"unreadable checkpoint.*delete it"):
        io.read_checkpoint(path)


def test_differences_name_each_changed_key():
    assert io.differences({"lr": 0.1, "sizes": (1, 2)}, {"lr": 0.1, "sizes": [1, 2]}) == []
    assert io.differences({"lr": 0.1, "steps": 5}, {"lr": 0.2, "steps": 9}, ignore=("steps",)) == [
        "lr: 0.2 in the checkpoint vs 0.1 now"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    io.atomic_write_bytes(path, lambda f: f.write(b"old"))

    def crash(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.atomic_write_bytes(path, crash)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("module", LEARNERS)
def test_learners_do_not_import_the_artifact_store(module):
    source = (Path(io.__file__).parent / f"{module}.py").read_text()
    names = {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom | ast.Import)
             for a in n.names} | {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert not {"artifacts", "imitlib.artifacts"} & names
