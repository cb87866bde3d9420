"""Relabelling augmentation: a bijection per history, applied the same way to every window of it."""

import numpy as np
import pytest

from imitlib import augment
from imitlib.envs.observations import encode

SHAPE = (10, 10, 10)


def frames(t: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((t, *SHAPE)) < 0.1


def test_a_relabelling_is_a_bijection_fixed_per_history():
    a = augment.relabelling(seed=3, run=7, n_channels=10, n_actions=6)
    assert sorted(a.channels.tolist()) == list(range(10)) and sorted(a.actions.tolist()) == list(range(6))
    b = augment.relabelling(seed=3, run=7, n_channels=10, n_actions=6)
    np.testing.assert_array_equal(a.channels, b.channels)
    others = [augment.relabelling(seed=3, run=r, n_channels=10, n_actions=6) for r in range(8)]
    assert len({tuple(o.actions) for o in others}) > 1, "different histories get different relabellings"


def test_channels_move_to_their_new_place_and_back():
    grid = frames()
    label = augment.relabelling(seed=0, run=1, n_channels=10, n_actions=6)
    moved = augment.relabel_frames(encode(grid), label.channels, SHAPE)
    back = np.unpackbits(moved, axis=-1, count=1000).reshape(len(grid), *SHAPE).astype(bool)
    for c in range(10):
        np.testing.assert_array_equal(back[..., label.channels[c]], grid[..., c])
    inverse = np.argsort(label.channels)
    np.testing.assert_array_equal(augment.relabel_frames(moved, inverse, SHAPE), encode(grid))


def test_a_window_keeps_its_other_fields_and_maps_its_actions():
    label = augment.relabelling(seed=0, run=2, n_channels=10, n_actions=6)
    window = {"obs": encode(frames(4)), "action": np.array([0, 5, 5, 2]), "reward": np.array([0.0, 1.0, 0.0, 0.0])}
    out = augment.relabel_window(window, label, SHAPE)
    np.testing.assert_array_equal(out["action"], label.actions[[0, 5, 5, 2]])
    assert out["reward"] is window["reward"]
    with pytest.raises(ValueError, match=r"actions must lie in 0\.\.5"):
        augment.relabel_window({**window, "action": np.array([6])}, label, SHAPE)
