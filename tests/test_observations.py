"""One observation vocabulary (imitlib.envs.observations), shared by replay, recorder and student."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch

import imitlib
from imitlib.envs import observations as ob
from imitlib.envs.games import game_spec


def test_minatar_frames_round_trip_through_125_bytes():
    spec = game_spec("MinAtar/SpaceInvaders-v0")
    frames = np.random.default_rng(0).random((4, *spec.frame_shape)) < 0.3
    packed = ob.encode(frames)
    assert packed.shape == (4, ob.frame_bytes(spec)) == (4, 125)
    assert np.array_equal(ob.decode_minatar(packed, spec), frames)


def test_ale_keeps_the_newest_frame_of_a_stack():
    stacks = np.random.default_rng(0).integers(0, 255, (2, 4, 84, 84), dtype=np.uint8)
    assert np.array_equal(ob.encode(stacks), stacks[:, -1].reshape(2, -1))


def test_network_input_is_channels_first_for_minatar_and_scaled_for_ale():
    spec = game_spec("MinAtar/Breakout-v0")
    x = ob.network_input(spec, torch.ones(3, *spec.frame_shape, dtype=torch.bool))
    assert x.shape == (3, spec.frame_shape[-1], 10, 10) and x.dtype == torch.float32
    ale = game_spec("ALE/Breakout-v5")
    assert ale.kind == "ale"  # the name the history and the student use
    assert ob.network_input(ale, torch.full((1, 4, 84, 84), 255, dtype=torch.uint8)).max() == 1.0


def test_the_student_never_imports_the_teacher():
    for module in ("imitation", "transformer"):
        tree = ast.parse((Path(imitlib.__file__).parent / f"{module}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m and m.endswith("dqn")}, module
