"""Chapter 6, part 4: the noise-distilled histories (AD^eps) and the verdicts read from them."""

import numpy as np
import pytest

from imitlib import stats
from imitlib.envs.darkroom import SIZE, optimal_return, transition_table
from imitlib.experiments import noise
from imitlib.history import HistoryReader
from imitlib.scale import get_scale


def test_epsilon_falls_linearly_per_step_to_the_floor_then_stays():
    cfg = noise.NoiseHistories(runs_per_goal=1, episodes=100, floor=0.5, decay_share=0.45)
    eps = noise.epsilon_schedule(cfg, horizon=20)
    assert eps.shape == (100, 20)
    flat = eps.ravel()
    assert flat[0] == 1.0
    assert flat[900] == pytest.approx(0.5)  # 45% of 2,000 steps
    assert flat[450] == pytest.approx(0.75)  # halfway down
    assert np.all(np.diff(flat[:901]) == pytest.approx(-0.5 / 900))  # one equal step down per environment step
    np.testing.assert_array_equal(flat[900:], 0.5)


def test_a_fixed_epsilon_never_changes():
    eps = noise.epsilon_schedule(noise.NoiseHistories(runs_per_goal=1, episodes=7, fixed=1.0))
    np.testing.assert_array_equal(eps, 1.0)


def test_the_hand_coded_agent_walks_rows_first_and_is_optimal():
    goals = np.arange(SIZE * SIZE)
    rng = np.random.default_rng(0)
    ep = noise.noisy_episode(goals, np.zeros(20), rng)
    np.testing.assert_array_equal(ep["reward"].sum(1), [optimal_return(int(g)) for g in goals])
    start = ep["obs"][:, 0, 0].astype(int)
    first = ep["action"][:, 0]
    rows_differ = goals // SIZE != start // SIZE
    assert np.all(np.isin(first[rows_differ], [1, 2]))  # up or down while the row is wrong
    assert np.all(first[goals == start] == 0)  # stays on the goal


def test_noise_makes_a_share_of_actions_random_at_the_asked_rate():
    goals = np.full(20_000, 0)
    ep = noise.noisy_episode(goals, np.full(20, 0.5), np.random.default_rng(1))
    optimal = noise.optimal_action(ep["obs"][..., 0].astype(int), goals[:, None])
    off = (ep["action"] != optimal).mean()
    assert off == pytest.approx(0.5 * 4 / 5, abs=0.01)  # a random action is the optimal one 1 time in 5
    cells = transition_table(SIZE)[ep["obs"][:, :-1, 0].astype(int), ep["action"][:, :-1]]
    np.testing.assert_array_equal(cells, ep["obs"][:, 1:, 0])  # recorded cells follow the dynamics


def test_the_recorded_history_follows_the_schedule(tmp_path):
    cfg = noise.NoiseHistories(runs_per_goal=1, episodes=10)
    noise.record_noise(cfg, tmp_path)
    reader = HistoryReader(tmp_path / "learning")
    assert len(reader.runs()) == SIZE * SIZE
    window = reader.window(reader.runs()[3], 0, 10)
    np.testing.assert_allclose(window["epsilon"], noise.epsilon_schedule(cfg).ravel(), rtol=1e-6)
    held = [r for r in reader.runs() if reader.task(r)["split"] == "held_out"]
    assert len(held) == 16


@pytest.mark.parametrize(("low", "high", "says"), [(3.0, 4.0, "more than denoising"), (0.5, 0.9, "below"),
                                                    (1.5, 2.5, "no better than denoising")])
def test_the_denoising_verdict_needs_the_intervals_apart(low, high, says):
    control = stats.Interval(np.array(1.5), np.array(1.0), np.array(2.0))
    student = stats.Interval(np.array((low + high) / 2), np.array(low), np.array(high))
    assert noise.denoising_verdict(student, control).startswith(says)


def test_the_part_runs_end_to_end_at_ci():
    scale = get_scale("ci")
    test = noise.noise_config(scale)
    out = noise.run_noise(test, scale, progress=False)
    assert out["sampled_returns"].shape == (len(test.seeds), 32, test.episodes)
    assert out["source_sampled"].shape == (16 * test.data.runs_per_goal, test.data.episodes)
    goals = sorted(set(out["goals"].tolist()))
    assert np.all(out["source_greedy"].max(1) == np.repeat([optimal_return(g) for g in goals], 1))
    arts = {None: out, 1.0: out}
    numbers = noise.summary(arts)
    assert numbers["denoising"] is None and numbers["greedy"]["fixed100"] is not None
    assert numbers["greedy"]["best"] == pytest.approx(np.mean([optimal_return(g) for g in goals]))


def test_bad_epsilons_are_refused():
    with pytest.raises(ValueError, match=r"fixed epsilon must be in \[0, 1\]"):
        noise.noise_config(get_scale("ci"), 1.5)


def _greedy_art(returns: np.ndarray) -> dict[str, np.ndarray]:
    """A hand-made noise artifact: greedy returns (seeds, rollouts, episodes) on goals 3, 3, 8, 8."""
    return {"greedy_returns": returns, "goals": np.array([3, 3, 8, 8])}


def test_greedy_fixity_counts_goals_reached_and_context_blind_rollouts():
    returns = np.zeros((3, 4, 5))
    returns[:, 0, :] = 14  # every seed reaches goal 3 in every episode: a fixed route
    returns[0, 2, 3:] = 9  # seed 0 learns goal 8 late: its return changes, so that rollout is not fixed
    fixity = noise.greedy_fixity(_greedy_art(returns))
    assert fixity == {"reached": 1.0, "goals": 2.0, "fixed": 11 / 12}  # seeds reach 2, 1, 1 goals: median 1


def test_greedy_sentence_calls_a_fixed_route_only_when_both_sets_are_context_blind():
    fixed = np.zeros((2, 4, 5))
    fixed[:, 0, :] = 14
    changing = fixed.copy()
    changing[:, 1:, 2:] = 9  # three of four rollouts change: 25% fixed
    both = noise.greedy_sentence({None: _greedy_art(fixed), noise.FLOOR: _greedy_art(fixed)})
    assert "reach 1 of 2 held-out goals" in both and "100%" in both and "one fixed route" in both
    one = noise.greedy_sentence({None: _greedy_art(fixed), noise.FLOOR: _greedy_art(changing)})
    assert "control: 2 of 2, and 25%" in one and "fixed route" not in one
    assert noise.greedy_sentence({noise.FLOOR: _greedy_art(fixed)}) == noise.MISSING
