"""Chapter 1's numbers: what the prose cites about Q-learning from scratch and after the goal moves.

The pipeline itself (:func:`imitlib.experiments.tabular_experiment`, :func:`~imitlib.experiments.tabular_artifact`)
stays in the package's ``__init__`` until the restructure moves it here with its artifacts re-stamped.
"""

from __future__ import annotations

from typing import Any

from imitlib import artifacts, stats
from imitlib.experiments import episodes_to_reach, reach_summary

LEARNERS = ("plain", "optimistic")  # glue-name suffixes, in the order of the experiment's learners
REACHED = 0.9  # "has learned": greedy return within 10% of optimal (the greedy policy has no ε to hold it back)
RECOVERED = 0.8  # "has recovered": behaviour return at 80% of the new optimum (ε = 0.05 keeps behaviour below 90%)
FINAL_EPISODES = 50  # the behaviour return "at the end" of learning from scratch
BEFORE, AFTER, END = 20, 10, 20  # episodes just before / just after the move, and at the end of the run


def ci_text(ci: stats.Interval) -> str:
    """An interval as the prose writes it: estimate (95% CI low–high)."""
    return f"{float(ci.estimate):.2f} (95% CI {float(ci.low):.2f}–{float(ci.high):.2f})"


def learning_numbers(art: artifacts.Artifact) -> dict[str, Any]:
    """Learning from scratch: references, episodes until the greedy return reaches 90% of optimal, final return."""
    optimal = float(art["optimal"])
    out: dict[str, Any] = {"ch1_optimal": optimal, "ch1_random": float(art["random"])}
    for key, greedy, behaviour in zip(LEARNERS, art["learn_greedy"], art["learn_returns"], strict=True):
        out[f"ch1_reach_{key}"] = reach_summary(episodes_to_reach(greedy, REACHED * optimal))
        out[f"ch1_final_{key}"] = ci_text(stats.bootstrap_ci(behaviour[:, -FINAL_EPISODES:].mean(1)))
    return out


def switch_numbers(art: artifacts.Artifact, n: int) -> dict[str, Any]:
    """After the goal moves at episode ``n``: return before, just after and at the end; episodes to recover."""
    out: dict[str, Any] = {"ch1_switch_at": n, "ch1_random_moved": float(art["random_moved"])}
    target = RECOVERED * float(art["optimal_moved"])
    for key, curves in zip(LEARNERS, art["switch_returns"], strict=True):
        windows = {"before": curves[:, n - BEFORE:n], "after": curves[:, n:n + AFTER], "end": curves[:, -END:]}
        for when, window in windows.items():
            out[f"ch1_{when}_{key}"] = float(stats.bootstrap_ci(window.mean(1)).estimate)
        out[f"ch1_recover_{key}"] = reach_summary(episodes_to_reach(curves[:, n:], target))
    return out

