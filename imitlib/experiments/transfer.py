"""Chapter 7 (Question 3): can a frozen student learn a game it never saw? The reading every part shares.

The parts (each its own module) put several learners on a new game and keep their return against experience:

* ``teacher`` (:mod:`~imitlib.experiments.transplant`): the DQN moves. A fresh DQN learns Space Invaders from
  scratch (chapter 2's recorded teachers) and each Breakout teacher is transplanted: its weights copied into a DQN
  that keeps learning on Space Invaders with the same settings.
* ``students`` (:mod:`~imitlib.experiments.new_game`): the Breakout ED and AD students play Space Invaders frozen,
  for as many environment steps as the teacher trains.
* ``darkroom`` (:mod:`~imitlib.experiments.relabelled_room`): the cheap analogue, Dark Room with its action labels
  permuted, where the chapter-4 AD students play frozen beside the Q-learner learning from scratch.

One verdict, fixed before any run, reads them all. A learner **learns the new game** when its return over the last
:data:`EDGE_SHARE` of its experience is above its return over the first :data:`EDGE_SHARE`, with the 95% bootstrap
CI of the per-seed difference above 0, *and* the CI of its end lies above the random policy's return.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from imitlib import stats
from imitlib.experiments.beyond import side

EDGE_SHARE = 0.1  # "start" and "end" of a curve: its first and last 10% of experience (steps or episodes)
NEW_GAME = "MinAtar/SpaceInvaders-v0"  # the game no student saw (ci, lab)
ALE_NEW_GAME = "ALE/SpaceInvaders-v5"  # ... at ``full``, where the teachers learn ALE Breakout
PARTS = ("teacher", "students", "leave-one-out", "darkroom")


def edge_means(curves: np.ndarray, share: float = EDGE_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (seed), the mean of the first and of the last ``share`` of its curve (at least one point each);
    empty bins (NaN) are skipped."""
    x = np.asarray(curves, dtype=float)
    n = max(1, round(share * x.shape[1]))
    return np.nanmean(x[:, :n], axis=1), np.nanmean(x[:, -n:], axis=1)


def start_end(curves: np.ndarray) -> dict[str, stats.Interval] | None:
    """Start, end and the per-seed gain (end minus start), each with its 95% CI across seeds; seeds with no finished
    episode at either edge are left out, and None if fewer than two remain."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty edge is a NaN here, dropped below
        start, end = edge_means(curves)
    keep = np.isfinite(start) & np.isfinite(end)
    if keep.sum() < 2:
        return None
    start, end = start[keep], end[keep]
    return {"start": stats.bootstrap_ci(start), "end": stats.bootstrap_ci(end), "gain": stats.bootstrap_ci(end - start)}


def learns(curves: np.ndarray, random: float) -> bool:
    """The chapter's verdict: the gain's CI lies above 0 and the end's CI above random play."""
    edges = start_end(curves)
    return edges is not None and side(edges["gain"]) == "above" and side(edges["end"], random) == "above"


def learns_text(curves: np.ndarray | None, random: float) -> str:
    """:func:`learns` in words, saying which half of the test failed (or that nothing was measured)."""
    if curves is None:
        return "not measured at this scale yet"
    edges = start_end(curves)
    if edges is None:
        return "cannot be read: too few episodes finished in its first or last tenth"
    gain, above = side(edges["gain"]), side(edges["end"], random)
    if gain == "above" and above == "above":
        return "learns: it ends higher than it started, and above random play (95% CIs)"
    if gain == "above":
        return "improves, but does not end clearly above random play"
    return {"below": "gets worse over the run (95% CI of the change below 0)",
            "contains": "does not improve (the 95% CI of its change contains 0)"}[gain]


def summary_text(curves: np.ndarray | None, random: float) -> str:
    """One clause for the prose: where the learner started and ended, and the verdict; or that it is missing."""
    edges = None if curves is None else start_end(curves)
    if edges is None:
        return learns_text(curves, random)
    start, end = float(edges["start"].estimate), float(edges["end"].estimate)
    return f"from {start:.2f} over the first tenth to {end:.2f} over the last, {learns_text(curves, random)}"


def prose(key: str, curves: np.ndarray | None, random: float) -> dict[str, str]:
    """A learner's clause under ``key`` and its verdict alone under ``key_verdict``, for a sentence beside a table
    that already shows the numbers."""
    return {key: summary_text(curves, random), f"{key}_verdict": learns_text(curves, random)}


def compare(a: np.ndarray, b: np.ndarray) -> stats.Interval:
    """Paired per-seed difference of two sets' mean return over the whole run (same seeds, same streams)."""
    return stats.bootstrap_ci(np.nanmean(np.asarray(a, float), axis=1) - np.nanmean(np.asarray(b, float), axis=1))


def row(name: str, curves: np.ndarray | None, random: float) -> list[Any]:
    """One line of a part's table: start, end and gain with their CIs, and the verdict."""
    edges = None if curves is None else start_end(curves)
    if edges is None:
        return [name, "", "", "", learns_text(curves, random)]
    return [name, str(edges["start"]), str(edges["end"]), str(edges["gain"]), learns_text(curves, random)]


def new_game(scale: Any) -> str:
    """The game no student saw, in the scale's world: MinAtar's Space Invaders beside MinAtar Breakout, ALE's
    beside ALE Breakout (18 actions in both, so networks and students move between them)."""
    from imitlib.experiments.teacher import teacher_experiment

    return ALE_NEW_GAME if teacher_experiment(scale).dqn.env_id.startswith("ALE/") else NEW_GAME


def random_return(env_id: str) -> float:
    """Mean return of uniformly random play on a game (chapter 4's floor: 100 episodes, fixed seed)."""
    from imitlib.experiments.game_students import random_game_returns

    return float(random_game_returns(env_id).mean())


def setup_numbers(scale: Any, random: float) -> dict[str, Any]:
    """The chapter's settings as the prose states them."""
    from imitlib.experiments.teacher import teacher_experiment

    teacher = teacher_experiment(scale, new_game(scale))
    return {"ch7_edge_share": EDGE_SHARE, "ch7_steps": teacher.dqn.steps, "ch7_seeds": len(teacher.seeds),
            "ch7_random": random, "ch7_game_envs": scale.transfer.game_envs,
            "ch7_eps_decay": teacher.dqn.eps_decay_steps, "ch7_learning_starts": teacher.dqn.learning_starts,
            "ch7_ale": ale_sentence(scale)}


def ale_sentence(scale: Any) -> str:
    """Part 5's state in words ("This copy ..."): whether it stores the chapter's ALE results (``full`` scale)."""
    from imitlib import artifacts
    from imitlib.experiments import new_game as students
    from imitlib.experiments import transplant
    from imitlib.scale import get_scale

    if new_game(scale) == ALE_NEW_GAME:
        return "is the full scale's: the games above are ALE's"
    full = get_scale("full")
    parts = {"the transplanted teachers": (transplant.TRANSPLANT_NAME,
                                           transplant.transplant_config(full, ALE_NEW_GAME)),
             "the frozen students": (students.FROZEN_NAME, students.frozen_config(full, ALE_NEW_GAME))}
    stored = [label for label, (name, cfg) in parts.items() if artifacts.is_stored(name, cfg, full.name)]
    if stored:
        return f"stores {' and '.join(stored)} on ALE: set IMITLIB_SCALE=full to read them here"
    return "stores neither of those ALE results: they need a GPU"


TABLE_HEADER = ["learner", "start (first 10%)", "end (last 10%)", "gain (end - start)", "verdict"]
