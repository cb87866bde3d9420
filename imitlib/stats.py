"""Statistics across seeds: bootstrap confidence intervals of the mean, and the IQM for aggregates.

Every curve in the book is a mean over independent seeds with a 95% percentile-bootstrap interval from
:func:`scipy.stats.bootstrap`. With 5-10 seeds such intervals are somewhat too narrow (the bootstrap
cannot see tails it was not shown), so read them as "the plausible range given these runs".
The interquartile mean (IQM, Agarwal et al. 2021) is the mean of the middle 50% of runs: robust to one
lucky or broken seed, yet less noisy than the median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

N_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval (arrays for curves, floats for scalars)."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def __str__(self) -> str:
        return f"{float(self.estimate):.2f} [{float(self.low):.2f}, {float(self.high):.2f}]"

    def __neg__(self) -> Interval:
        """The same interval for the opposite difference (b - a instead of a - b): bounds swap."""
        return Interval(-self.estimate, -self.high, -self.low)


def iqm(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of values along ``axis``."""
    return sps.trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def _check(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
    if x.ndim == 0 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 seeds along axis 0 for a confidence interval, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or inf: drop or fix the broken runs first")
    return x


def bootstrap_ci(
    samples: np.ndarray, *, statistic: str = "mean", confidence: float = 0.95, seed: int = 0
) -> Interval:
    """95% bootstrap CI of the mean (or IQM) across seeds; ``samples`` has seeds on axis 0.

    Works on scalars per seed, shape ``(seeds,)``, or on whole curves, ``(seeds, T)``, in one call.
    """
    x = _check(samples)
    fn = {"mean": np.mean, "iqm": iqm}.get(statistic)
    if fn is None:
        raise ValueError(f"statistic must be 'mean' or 'iqm', got {statistic!r}")
    estimate = fn(x, axis=0)
    if np.all(x == x[:1]):  # every seed identical: the interval is that value, not a warning
        return Interval(estimate, estimate.copy(), estimate.copy())
    res = sps.bootstrap(
        (x,), fn, axis=0, confidence_level=confidence, n_resamples=N_RESAMPLES, method="percentile",
        vectorized=True, rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    # columns where every seed agrees give a degenerate (nan) interval: that value is the interval
    low = np.where(np.isnan(low), estimate, low)
    high = np.where(np.isnan(high), estimate, high)
    return Interval(estimate, low, high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, *, confidence: float = 0.95, seed: int = 0) -> Interval:
    """P(X > Y): how often a run of ``x`` beats a run of ``y`` (ties count half), as rliable defines it (Agarwal et
    al. 2021), with a percentile-bootstrap CI resampling each set's runs independently. 0.5: no difference."""
    a, b = _check(np.ravel(x)), _check(np.ravel(y))

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        a, b = np.moveaxis(a, axis, -1)[..., :, None], np.moveaxis(b, axis, -1)[..., None, :]
        return (a > b).mean(axis=(-2, -1)) + 0.5 * (a == b).mean(axis=(-2, -1))

    estimate = np.asarray(statistic(a, b))
    if np.all(a == a[0]) and np.all(b == b[0]):
        return Interval(estimate, estimate.copy(), estimate.copy())
    res = sps.bootstrap((a, b), statistic, confidence_level=confidence, n_resamples=N_RESAMPLES, method="percentile",
                        vectorized=True, rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return Interval(estimate, np.asarray(low), np.asarray(high))


def running_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` entries of the last axis: entry i covers i .. i+window-1 of the input, so a
    point stands at the end of its window and nothing is averaged in before it happened."""
    return np.lib.stride_tricks.sliding_window_view(np.asarray(x, dtype=float), window, axis=-1).mean(-1)
