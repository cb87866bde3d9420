import numpy as np
import pytest

from imitlib.envs import ENV_IDS, game_spec, make_vec_env
from imitlib.envs.games import MINATAR_GAMES


def test_unknown_id_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid ids are MinAtar/Breakout-v0"):
        make_vec_env("ALE/Pong-v5", 1)


def test_every_minatar_game_shares_one_observation_and_action_space():
    specs = [game_spec(g) for g in MINATAR_GAMES]
    assert {s.frame_shape for s in specs} == {(10, 10, 10)} and {s.n_actions for s in specs} == {6}
    assert game_spec("MinAtar/Breakout-v0", channels=4).frame_shape == (10, 10, 4), "the game's own channels"
    with pytest.raises(ValueError, match="fewer than the game's 6"):
        game_spec("MinAtar/SpaceInvaders-v0", channels=4)


def test_padding_keeps_the_game_and_adds_empty_channels():
    own, _ = make_vec_env("MinAtar/SpaceInvaders-v0", 1, channels=6).reset(seed=[3])
    padded, _ = make_vec_env("MinAtar/SpaceInvaders-v0", 1).reset(seed=[3])
    np.testing.assert_array_equal(padded[..., :6], own)
    assert not padded[..., 6:].any()


def test_minatar_vector_env_is_seeded_and_autoresets_in_the_same_step():
    envs = make_vec_env("MinAtar/Breakout-v0", 2)
    a, _ = envs.reset(seed=[1, 2])
    b, _ = make_vec_env("MinAtar/Breakout-v0", 2).reset(seed=[1, 2])
    np.testing.assert_array_equal(a, b)
    assert a.dtype == bool and a.shape == (2, 10, 10, 10)
    rng = np.random.default_rng(0)
    for _ in range(500):
        _, _, terminated, _, info = envs.step(rng.integers(6, size=2))
        if terminated.any():
            assert "final_obs" in info, "same-step autoreset hands back the final observation"
            break
    else:
        pytest.fail("a random Breakout player should lose the ball within 500 steps")


def test_padding_adds_empty_channels():
    obs, _ = make_vec_env("MinAtar/Breakout-v0", 1, channels=6).reset(seed=0)
    assert obs.shape == (1, 10, 10, 6) and not obs[..., 4:].any()
    with pytest.raises(ValueError, match="fewer than"):
        make_vec_env("MinAtar/SpaceInvaders-v0", 1, channels=4).reset(seed=0)


def test_ale_breakout_frames_actions_and_raw_rewards():
    spec = game_spec("ALE/Breakout-v5", full_action_space=True)
    assert spec.n_actions == 18 and spec.obs_shape == (4, 84, 84) and spec.in_channels == 4
    envs = make_vec_env("ALE/Breakout-v5", 2, full_action_space=True)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and "lives" in info
    assert not obs[:, :3].any() and obs[:, 3].any(), "a new episode's stack is zero but for its first frame"
    total = 0.0
    for _ in range(300):
        obs, reward, *_ = envs.step(np.full(2, 1))  # FIRE
        total += float(np.sum(reward))
    assert total >= 0 and envs.single_action_space.n == 18
    envs.close()
    assert set(ENV_IDS) >= {"ALE/SpaceInvaders-v5", "MinAtar/SpaceInvaders-v0"}
