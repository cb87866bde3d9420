"""Chapter 6's experiments: truncated histories, long rollouts, data ceilings and the verdicts read from them."""

import numpy as np
import pytest

from imitlib import stats
from imitlib.experiments import beyond, histories
from imitlib.history import Episode, HistoryReader, HistoryWriter
from imitlib.scale import get_scale


def _history(path, runs=3, episodes=10):
    """Episode i of run r has observation 10 * r + i in every step, so windows show where they came from."""
    with HistoryWriter(path, obs_kind="test", obs_shape=(1,), n_actions=5) as w:
        for r in range(runs):
            w.set_run(r, goal=r)
            for i in range(episodes):
                t = 3
                w.add(Episode(run=r, episode=i, obs=np.full((t, 1), 10 * r + i, np.uint8), action=np.zeros(t),
                              reward=np.zeros(t), terminated=np.zeros(t, bool), truncated=np.arange(t) == t - 1,
                              update=np.zeros(t), epsilon=np.zeros(t)))
    return HistoryReader(path)


@pytest.mark.parametrize("fraction, kept", [(0.1, 1), (0.25, 3), (0.5, 5), (1.0, 10)])
def test_truncation_keeps_exactly_the_first_fraction_of_every_run(tmp_path, fraction, kept):
    short = beyond.truncate_history(_history(tmp_path / "h"), tmp_path / "t", fraction)
    assert short.runs() == [0, 1, 2] and all(short.run_episodes(r) == kept for r in short.runs())
    for r in short.runs():
        window = short.window(r, 0, kept)
        np.testing.assert_array_equal(np.unique(window["obs"]), 10 * r + np.arange(kept))  # its own, first ones
        assert short.task(r) == {"goal": r}
    for w in short.windows(k=1, n=20, seed=0):  # never a window across runs
        assert len(set(w["run"])) == 1


def test_kept_episodes_round_to_the_nearest_episode():
    assert [beyond.kept_episodes(400, f) for f in beyond.FRACTIONS] == [40, 100, 200]
    assert beyond.kept_episodes(60, 0.25) == 15 and beyond.kept_episodes(3, 0.1) == 1


def test_the_data_ceiling_is_the_best_running_mean_within_the_kept_part():
    source = np.zeros((2, 100))
    source[:, 20:30] = 8.0  # a level held for 10 episodes inside the kept part
    source[0, 5] = 20.0  # one lucky episode: not a level
    source[:, 60:] = 15.0  # after the cut: not in the data
    assert beyond.data_ceiling(source, kept=50) == 8.0
    assert beyond.data_ceiling(source, kept=100) == 15.0


@pytest.mark.parametrize("low, high, says", [(9.0, 11.0, "beyond"), (5.0, 7.9, "below"), (7.0, 9.0, "at"),
                                             (8.0, 9.0, "at")])
def test_the_verdict_needs_the_whole_interval_on_one_side(low, high, says):
    interval = stats.Interval(np.array((low + high) / 2), np.array(low), np.array(high))
    assert beyond.verdict(interval, ceiling=8.0).startswith(says)
    assert beyond.verdict(stats.Interval(np.array(np.nan), np.array(np.nan), np.array(np.nan)), 8.0).startswith("not")


def test_the_plateau_is_the_last_tenth_of_every_seed():
    curves = np.tile(np.r_[np.zeros(90), np.full(10, 5.0)], (3, 1))
    curves[1, -10:] = 7.0
    p = beyond.plateau(curves)
    assert float(p.estimate) == pytest.approx(17 / 3) and float(p.low) >= 5.0 and float(p.high) <= 7.0


def test_the_continuing_source_replays_the_recorded_runs_first():
    scale = get_scale("ci")
    test = beyond.beyond_config(scale, 0.5)
    _, held = beyond.goal_split(test.students.data)
    behaviour, greedy = beyond.source_continuing(test, held[:2])
    assert behaviour.shape == (2 * test.students.data.runs_per_goal, test.episodes)
    reader = HistoryReader(beyond.darkroom_histories(test.students.data, scale) / "learning")
    from imitlib.history import episode_totals, per_run

    runs, recorded = per_run(reader, episode_totals(reader))
    goal_of = np.array([reader.task(int(r))["goal"] for r in runs])
    mine = np.concatenate([np.flatnonzero(goal_of == g) for g in held[:2]])
    np.testing.assert_array_equal(behaviour[:, :recorded.shape[1]], recorded[mine])
    assert greedy.shape == behaviour.shape


@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_a_part_runs_end_to_end_at_ci(fraction):
    scale = get_scale("ci")
    test = beyond.beyond_config(scale, fraction)
    out = beyond.run_beyond(test, scale, progress=False)
    seeds, n = len(test.students.seeds), 2 * 16
    assert out["sampled_returns"].shape == out["greedy_returns"].shape == (seeds, n, test.episodes)
    assert out["source_sampled"].shape[1] == test.episodes == scale.beyond.long_factor * test.students.data.episodes
    assert int(out["kept"]) == beyond.kept_episodes(test.students.data.episodes, fraction)
    numbers = beyond.summary(out)
    assert set(numbers) == set(beyond.MODES) and all("verdict" in v for v in numbers.values())
    refs = beyond.references(out)
    assert 0 <= refs["random"] < refs["optimal"] <= 20


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        beyond.beyond_config(get_scale("ci"), 0.0)


def test_a_move_plan_moves_every_goal_the_asked_number_of_times_to_another_cell():
    plan = histories.move_plan(np.array([3, 40, 80]), episodes=100, moves=4, seed=0)
    assert plan.shape == (100, 3) and (plan[0] == [3, 40, 80]).all()
    changes = np.flatnonzero((np.diff(plan, axis=0) != 0).any(axis=1)) + 1
    np.testing.assert_array_equal(changes, [20, 40, 60, 80])  # evenly spaced, the same episodes for every column
    assert (np.diff(plan, axis=0)[changes - 1] != 0).all(), "every goal moves at every move, never in place"
    assert ((plan >= 0) & (plan < 81)).all()
    np.testing.assert_array_equal(plan, histories.move_plan(np.array([3, 40, 80]), 100, 4, seed=0))
    assert (histories.move_plan(np.array([5]), 10, 0, seed=1) == 5).all()
    with pytest.raises(ValueError, match=r"moves must be in 0\.\.9"):
        histories.move_plan(np.array([5]), 10, 10, seed=1)


def test_a_move_plan_keeps_every_goal_within_its_split():
    among = np.array([2, 7, 11, 50])
    plan = histories.move_plan(np.array([7, 50, 2]), episodes=60, moves=9, seed=3, among=among)
    assert np.isin(plan, among).all()
    changes = np.flatnonzero((np.diff(plan, axis=0) != 0).any(axis=1)) + 1
    assert len(changes) == 9 and (np.diff(plan, axis=0)[changes - 1] != 0).all()
    assert len(np.unique(plan)) == 4, "over nine moves every cell of the split is visited"
    with pytest.raises(ValueError, match="every goal must be one of"):
        histories.move_plan(np.array([3]), 10, 2, seed=0, among=among)


@pytest.mark.parametrize("low, high, says", [(0.1, 0.5, "kept rising"), (-0.5, -0.1, "fell"), (-0.1, 0.3, "held"),
                                             (0.0, 0.3, "held")])
def test_a_trend_needs_the_whole_interval_on_one_side_of_zero(low, high, says):
    assert beyond.trend(stats.Interval(np.array((low + high) / 2), np.array(low), np.array(high))).startswith(says)


def test_the_rise_compares_the_plateau_with_the_episodes_right_after_the_cut():
    curves = np.tile(np.r_[np.zeros(50), np.linspace(0, 1, 50)], (3, 1))  # 100 episodes; trained on 50
    rise = beyond.rise_after_cut(curves, kept=50)
    assert float(rise.estimate) == pytest.approx(curves[0, -10:].mean() - curves[0, 50:60].mean())
    assert beyond.trend(rise) == "kept rising"
