"""Chapter 6, part 3: goals that move during a frozen student's rollout."""

import numpy as np
import pytest

from imitlib import stats
from imitlib.envs.darkroom import optimal_return
from imitlib.experiments import moving
from imitlib.experiments.histories import goal_split
from imitlib.scale import get_scale


def hand_made(student: np.ndarray, source: np.ndarray, plan: np.ndarray) -> dict[str, np.ndarray]:
    """An artifact: student curves (seeds, episodes) on one goal column, the learner's the same, one plan."""
    return {"sampled_returns": student[:, None, :], "greedy_returns": student[:, None, :],
            "source_sampled": source, "source_greedy": source, "plan": plan[:, None]}


def test_stretches_follow_the_plan_and_recovery_counts_episodes_after_each_move():
    plan = np.r_[np.full(40, 0), np.full(40, 80)]  # corner to corner: optimum 13 at both
    best = optimal_return(0)
    rising = np.r_[np.full(40, best), np.zeros(10), np.full(30, best)]
    art = hand_made(np.stack([rising, rising]), np.stack([rising, rising]), plan)
    assert moving.stretches(art) == [(0, 40), (40, 80)]
    # the 10-episode running mean reaches 80% of the optimum 8 episodes after the return comes back
    np.testing.assert_array_equal(moving.recovery(art, "student", "sampled"), [[17], [17]])
    levels = moving.settled(art, "student", "greedy")
    np.testing.assert_allclose(levels, [[1.0, 1.0]] * 2)  # settled at the optimum: all of it


def test_where_a_learner_settles_is_read_as_a_share_of_the_optimum_there():
    plan = np.r_[np.full(40, 0), np.full(40, 13)]  # a far goal (optimum 13), then a near one (optimum 18)
    curve = np.r_[np.full(40, 6.5), np.full(40, 9.0)]  # half of the optimum in both stretches
    art = hand_made(np.stack([curve, curve]), np.stack([curve, curve]), plan)
    assert optimal_return(0) == 13 and optimal_return(13) == 18
    np.testing.assert_allclose(moving.settled(art, "student", "sampled"), [[0.5, 0.5]] * 2)
    assert moving.moves_verdict(moving.drop_after_moves(art, "student", "sampled")).startswith("settles where")


def test_the_learner_curves_group_its_runs_by_seed():
    plan = np.zeros((4, 2), np.int64)
    source = np.array([[1, 1, 1, 1], [3, 3, 3, 3], [5, 5, 5, 5], [7, 7, 7, 7]])  # goal-major: 2 goals x 2 runs
    art = {"source_sampled": source, "plan": plan}
    np.testing.assert_array_equal(moving.curves(art, "source", "sampled"), [[3] * 4, [5] * 4])


@pytest.mark.parametrize(("low", "high", "says"), [(0.5, 2.0, "settles lower"), (-2.0, -0.5, "settles higher"),
                                                    (-0.5, 0.5, "settles where it stood")])
def test_the_moves_verdict_needs_the_whole_interval_on_one_side(low, high, says):
    drop = stats.Interval(np.array((low + high) / 2), np.array(low), np.array(high))
    assert moving.moves_verdict(drop).startswith(says)


def test_the_test_plan_keeps_every_goal_among_the_held_out_goals():
    test = moving.moving_config(get_scale("ci"))
    plan = moving.test_plan(test)
    _, held = goal_split(test.students.data)
    assert plan.shape == (test.episodes, len(held)) and np.isin(plan, held).all()
    assert len(moving.stretches({"plan": plan})) == moving.TEST_MOVES + 1


def test_students_trained_with_moves_run_end_to_end_at_ci():
    scale = get_scale("ci")
    test = moving.moving_config(scale, train_moves=moving.TRAIN_MOVES)
    out = moving.run_moving(test, scale, progress=False)
    seeds = len(test.students.seeds)
    assert out["sampled_returns"].shape == (seeds, 32, test.episodes)
    assert out["source_greedy"].shape == (16 * seeds, test.episodes)
    rows = moving.summary(out)
    assert set(rows) == {f"{w}_{m}" for w, m in moving.WHO} and all("verdict" in r for r in rows.values())


def test_as_many_training_moves_as_the_test_are_refused():
    with pytest.raises(ValueError, match="train_moves must be in"):
        moving.moving_config(get_scale("ci"), moving.TEST_MOVES)


@pytest.mark.parametrize("shift, word, chance", [(0.2, "helped", "1.00"), (-0.2, "hurt", "0.00"),
                                                 (0.0, "made no difference", "0.50")])
def test_whether_seeing_moves_in_training_helped_needs_the_whole_interval_off_one_half(shift, word, chance):
    plan = np.r_[np.full(40, 0), np.full(40, 13)]
    levels = np.array([5.0, 6.0, 7.0, 8.0, 9.0])[:, None]  # five seeds, each level held over both stretches
    without = np.tile(np.r_[np.full(40, 6.5), np.full(40, 9.0)], (5, 1)) * levels / 10
    with_moves = without + np.r_[np.full(40, 13.0), np.full(40, 18.0)] * (shift * 3)  # every seed clear of all
    text = moving.training_moves_effect(hand_made(with_moves, without, plan), hand_made(without, without, plan))
    assert f"seeing moves in training {word}" in text and f"probability {chance} [" in text
