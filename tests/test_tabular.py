import numpy as np
import pytest

from imitlib.envs import optimal_return
from imitlib.tabular import QLearningConfig, greedy_returns, q_learning, q_learning_loop, transition_table


def test_batched_equals_loop_for_the_same_seeds():
    cfg = QLearningConfig(q_init=1.0, eps_decay_episodes=10)
    goals, seeds = np.array([0, 13, 40, 80, 44]), np.arange(5)
    batched = q_learning(cfg, goals, seeds, 25)
    loop = q_learning_loop(cfg, goals, seeds, 25)
    np.testing.assert_array_equal(batched.returns, loop.returns)
    np.testing.assert_array_equal(batched.q, loop.q)
    np.testing.assert_array_equal(batched.update_size, loop.update_size)


def test_batched_equals_loop_across_refills_of_the_uniforms():
    """70 episodes: the batched learner draws its uniforms 32 episodes at a time into one reused array, and only
    6 in its last draw."""
    cfg = QLearningConfig(eps_decay_episodes=40)
    batched = q_learning(cfg, [3, 50, 77], [7, 8, 9], 70)
    loop = q_learning_loop(cfg, [3, 50, 77], [7, 8, 9], 70)
    np.testing.assert_array_equal(batched.returns, loop.returns)
    np.testing.assert_array_equal(batched.q, loop.q)


def test_batched_equals_loop_when_the_goal_moves():
    cfg = QLearningConfig()
    plan = np.array([[3, 70]] * 6 + [[77, 10]] * 6)
    batched = q_learning(cfg, plan, [(1, 2), (3, 4)], 12)
    loop = q_learning_loop(cfg, plan, [(1, 2), (3, 4)], 12)
    np.testing.assert_array_equal(batched.q, loop.q)


def test_a_run_does_not_depend_on_its_batch():
    cfg = QLearningConfig()
    alone = q_learning(cfg, [17], [(0, 17)], 30)
    batch = q_learning(cfg, [5, 17, 60], [(0, 5), (0, 17), (0, 60)], 30)
    np.testing.assert_array_equal(alone.q[0], batch.q[1])


def test_same_seed_same_numbers_different_seed_different_numbers():
    cfg = QLearningConfig()
    a = q_learning(cfg, [10, 10], [1, 2], 40)
    b = q_learning(cfg, [10, 10], [1, 2], 40)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns[:, 0], a.returns[:, 1])


def test_reaches_optimal_return_on_a_small_room():
    cfg = QLearningConfig(size=5, horizon=12, eps_decay_episodes=60)
    goals = np.arange(25)
    res = q_learning(cfg, goals, np.arange(25), 300, evaluate_greedy=True)
    best = np.array([optimal_return(int(g), size=5, horizon=12) for g in goals])
    np.testing.assert_array_equal(res.greedy_returns[-1], best)
    assert res.returns[-20:].mean() > 0.85 * best.mean(), "behaviour near optimal once epsilon is small"
    assert res.returns[:5].mean() < 0.3 * best.mean(), "and it had to learn: early episodes are poor"


def test_greedy_return_of_a_hand_made_table():
    q = np.zeros((1, 81, 5))
    q[0, :, 2] = 1.0  # always "down": from the centre, reach row 8 after 4 steps and stay
    assert greedy_returns(q, np.array([8 * 9 + 4]))[0] == 17
    assert greedy_returns(q, np.array([0]))[0] == 0


def test_snapshots_and_hook():
    seen = []
    res = q_learning(QLearningConfig(), [3], [0], 10, snapshot_at=(0, 5, 10), on_episode=seen.append)
    assert sorted(res.snapshots) == [0, 5, 10]
    assert np.all(res.snapshots[0] == 0) and np.array_equal(res.snapshots[10], res.q)
    assert [b.episode for b in seen] == list(range(10))
    assert seen[0].observations.shape == (1, 20) and seen[0].observations[0, 0] == 40
    np.testing.assert_array_equal([b.rewards.sum() for b in seen], res.returns[:, 0])


def test_hook_batches_are_consistent_and_stay_valid():
    """Every batch is its own arrays (a recorder may keep them), and its steps follow the room's transitions."""
    seen = []
    res = q_learning(QLearningConfig(), [3, 70], [0, 1], 6, on_episode=seen.append)
    nxt = transition_table(9)
    for b in seen:
        assert b.observations.shape == b.actions.shape == b.rewards.shape == (2, 20)
        assert b.observations.dtype == b.actions.dtype == b.rewards.dtype == np.uint8, "a byte each: 81 cells"
        np.testing.assert_array_equal(b.observations[:, 1:], nxt[b.observations[:, :-1], b.actions[:, :-1]])
        last = nxt[b.observations[:, -1], b.actions[:, -1]]
        np.testing.assert_array_equal(b.rewards, np.column_stack([b.observations[:, 1:], last]) == b.goals[:, None])
    np.testing.assert_array_equal(np.stack([b.rewards.sum(1) for b in seen]), res.returns)


def test_epsilon_schedule():
    cfg = QLearningConfig(eps_start=1.0, eps_end=0.1, eps_decay_episodes=10)
    assert cfg.epsilon(0) == 1.0 and cfg.epsilon(10) == pytest.approx(0.1) and cfg.epsilon(500) == pytest.approx(0.1)
    assert cfg.epsilon(5) == pytest.approx(0.55)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0.0}, "alpha"), ({"gamma": 1.0}, "gamma"), ({"eps_end": 1.5}, "eps_end"),
    ({"eps_decay_episodes": -1}, "eps_decay_episodes"),
])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QLearningConfig(**kwargs)


def test_bad_goals_and_seeds_are_refused():
    cfg = QLearningConfig()
    with pytest.raises(ValueError, match=r"0\.\.80"):
        q_learning(cfg, [81], [0], 3)
    with pytest.raises(ValueError, match="one seed per run"):
        q_learning_loop(cfg, [1, 2], [0], 3)
    with pytest.raises(ValueError, match="shape"):
        q_learning(cfg, np.zeros((2, 1), int), [0], 3)
    with pytest.raises(ValueError, match="snapshot_at"):
        q_learning(cfg, [1], [0], 3, snapshot_at=(4,))


def test_greedy_rollouts_agree_with_greedy_returns():
    from imitlib.tabular import greedy_rollouts

    res = q_learning(QLearningConfig(), [3, 70, 40], [0, 1, 2], 40)
    cells, actions, rewards = greedy_rollouts(res.q, np.array([3, 70, 40]))
    assert cells.shape == (3, 21) and actions.shape == rewards.shape == (3, 20) and (cells[:, 0] == 40).all()
    np.testing.assert_array_equal(rewards.sum(1), greedy_returns(res.q, np.array([3, 70, 40])))


def test_hook_cells_of_rooms_larger_than_a_byte_stay_exact():
    """A 17 x 17 room has 289 cells: the hook gets them as int32 (not wrapped to a byte), still the room's path."""
    seen = []
    q_learning(QLearningConfig(size=17, horizon=100), [288] * 8, list(range(8)), 3, on_episode=seen.append)
    nxt = transition_table(17)
    for b in seen:
        assert b.observations.dtype == np.int32 and b.actions.dtype == np.uint8
        np.testing.assert_array_equal(b.observations[:, 1:], nxt[b.observations[:, :-1], b.actions[:, :-1]])
    assert max(int(b.observations.max()) for b in seen) > 255, "the runs reached cells a byte cannot hold"
