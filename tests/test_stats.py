import numpy as np
import pytest

from imitlib.stats import Interval, bootstrap_ci, iqm, probability_of_improvement, running_mean


def test_iqm_ignores_the_tails():
    assert iqm(np.array([0.0, 1, 1, 1, 1, 1, 1, 100])) == pytest.approx(1.0)


def test_ci_contains_the_mean_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)
    small, big = rng.normal(5, 1, 5), rng.normal(5, 1, 200)
    a, b = bootstrap_ci(small), bootstrap_ci(big)
    assert a.low < a.estimate < a.high and b.low < 5 < b.high
    assert (b.high - b.low) < (a.high - a.low)


def test_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    samples = rng.normal(0, 1, (30, 400))  # 400 independent experiments of 30 seeds, in one call
    ci = bootstrap_ci(samples)
    coverage = np.mean((ci.low <= 0) & (0 <= ci.high))
    assert 0.88 < coverage < 0.99


def test_curves_and_constant_columns():
    x = np.array([[1.0, 2.0, 3.0], [1.0, 4.0, 5.0], [1.0, 3.0, 4.0]])
    ci = bootstrap_ci(x)
    assert ci.estimate.shape == (3,)
    assert ci.low[0] == ci.high[0] == 1.0, "identical seeds give a zero-width interval, not NaN"
    assert ci.low[1] < 3.0 < ci.high[1]


def test_errors():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        bootstrap_ci(np.array([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci(np.array([1.0, 2.0]), statistic="median")


def test_running_mean_is_trailing_and_batched():
    x = np.array([[0.0, 2, 4, 6], [1, 1, 1, 1]])
    assert np.array_equal(running_mean(x, 2), [[1, 3, 5], [1, 1, 1]])
    assert np.array_equal(running_mean(x[0], 1), x[0])


def test_probability_of_improvement_matches_a_hand_count_and_has_a_sane_interval():
    # pairs (x, y): 1 beats only 0; 2 ties both 2s and beats 0; 3 beats all: (1 + 2 + 3) / 9
    pi = probability_of_improvement(np.array([1, 2, 3]), np.array([2, 2, 0]))
    assert float(pi.estimate) == pytest.approx(6 / 9)
    assert 0 <= float(pi.low) <= 6 / 9 <= float(pi.high) <= 1
    far = probability_of_improvement(np.arange(10) + 100.0, np.arange(10.0))
    assert float(far.estimate) == float(far.low) == float(far.high) == 1.0  # every resample: x always wins
    same = probability_of_improvement(np.full(5, 3.0), np.full(5, 3.0))
    assert float(same.estimate) == 0.5
    with pytest.raises(ValueError, match="at least 2 seeds"):
        probability_of_improvement(np.array([1.0]), np.array([1.0, 2.0]))


def test_negating_an_interval_swaps_its_bounds():
    neg = -Interval(np.float64(2.0), np.float64(1.0), np.float64(4.0))
    assert (float(neg.estimate), float(neg.low), float(neg.high)) == (-2.0, -4.0, -1.0)
