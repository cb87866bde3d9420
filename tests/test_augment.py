"""Relabelling augmentation: a bijection per history, applied the same way to every window of it."""

import numpy as np
import pytest
import torch

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


def tiny_student(seed: int = 0):
    from imitlib.transformer import Student, TransformerConfig

    torch.manual_seed(seed)
    return Student(TransformerConfig(obs_kind="darkroom", n_actions=5, block_size=40, n_layer=1, n_head=1,
                                     n_embd=16))


def test_derangements_move_every_label_and_are_distinct_and_fixed_by_seed():
    perms = augment.derangements(10, 5, seed=3)
    assert perms.shape == (10, 5) and (np.sort(perms, 1) == np.arange(5)).all()
    assert (perms != np.arange(5)).all() and len({tuple(p) for p in perms}) == 10
    assert (augment.derangements(10, 5, seed=3) == perms).all() and (augment.derangements(10, 5, seed=4) != perms).any()
    assert len(augment.derangements(44, 5, seed=0)) == 44  # every derangement of five labels
    with pytest.raises(ValueError, match="there are 44"):
        augment.derangements(45, 5, seed=0)


def test_a_relabelled_student_reads_and_answers_in_the_games_labels():
    model, moves = tiny_student().eval(), augment.derangements(3, 5, seed=1)
    wrapped = augment.RelabelledStudent(model, moves)
    inverse = np.argsort(moves, 1)
    obs = torch.randint(0, 81, (3, 7, 1), dtype=torch.uint8)
    game_actions = torch.randint(0, 6, (3, 7))  # 5: the start token
    reward = torch.rand(3, 7)
    theirs = torch.as_tensor(np.concatenate([inverse, np.full((3, 1), 5)], 1)).gather(1, game_actions)
    expected = model(obs, theirs, reward)
    got = wrapped(obs, game_actions, reward)
    for b in range(3):
        for m in range(5):  # the game's action m is the student's label inverse[b, m]
            torch.testing.assert_close(got[b, :, m], expected[b, :, inverse[b, m]])
    with pytest.raises(ValueError, match="a permutation of the actions"):
        augment.RelabelledStudent(model, np.array([[0, 0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="holds 3 permutations"):
        wrapped(obs[:2], game_actions[:2], reward[:2])


def test_the_identity_relabelling_plays_exactly_as_the_student_and_the_cache_changes_nothing():
    from imitlib.imitation import darkroom_rollout

    model, goals = tiny_student(2), np.array([3, 40, 77])
    plain = darkroom_rollout(model, goals, 4, context_episodes=2, seed=5)
    same = darkroom_rollout(augment.RelabelledStudent(model, np.tile(np.arange(5), (3, 1))), goals, 4,
                            context_episodes=2, seed=5)
    assert (plain["actions"] == same["actions"]).all() and (plain["returns"] == same["returns"]).all()
    moved = augment.RelabelledStudent(model, augment.derangements(3, 5, seed=0))
    cached = darkroom_rollout(moved, goals, 4, context_episodes=2, seed=5)
    uncached = darkroom_rollout(moved, goals, 4, context_episodes=2, seed=5, use_cache=False)
    assert (cached["actions"] == uncached["actions"]).all()
