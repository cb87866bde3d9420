"""Chapter 1's numbers: what the prose cites about Q-learning from scratch and after the goal moves.

The pipeline itself (:func:`imitlib.experiments.tabular_experiment`, :func:`~imitlib.experiments.tabular_artifact`)
stays in the package's ``__init__`` until the restructure moves it here with its artifacts re-stamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import imitlib.envs.darkroom
import imitlib.stats
import imitlib.tabular
from imitlib import artifacts, stats
from imitlib.envs.darkroom import HORIZON, SIZE, optimal_return, random_policy_return
from imitlib.scale import Scale
from imitlib.tabular import QLearningConfig, q_learning

LEARNERS: tuple[tuple[str, QLearningConfig], ...] = (
    ("ε-greedy, Q₀ = 0", QLearningConfig()),
    ("ε-greedy, optimistic Q₀ = 10", QLearningConfig(q_init=10.0)),
)


@dataclass(frozen=True)
class TabularExperiment:
    """Chapter 1's experiment: learn Dark Room from scratch, then keep learning after the goal moves."""

    seeds: int
    goals: int  # how many of the 81 goals (a fixed random subset) each seed learns
    episodes: int  # episodes of the from-scratch learning curve
    switch_episodes: int  # episodes before, and again after, the goal moves
    learners: tuple[tuple[str, QLearningConfig], ...] = LEARNERS
    showcase_goal: tuple[int, int] = (1, 7)  # the single run the heatmaps and the explorer show
    showcase_learner: int = 1
    showcase_snapshots: int = 60
    seed: int = 0


def tabular_experiment(scale: Scale, seed: int = 0) -> TabularExperiment:
    """Chapter 1's sizes at the given scale."""
    t = scale.tabular
    return TabularExperiment(seeds=t.seeds, goals=t.goals, episodes=t.episodes,
                             switch_episodes=t.switch_episodes, seed=seed)


def mirrored_goal(cell: int, size: int = SIZE) -> int:
    """The cell opposite ``cell`` through the centre: where the goal moves to, as far as it can get."""
    row, col = divmod(cell, size)
    return (size - 1 - row) * size + (size - 1 - col)


def experiment_goals(exp: TabularExperiment, size: int = SIZE) -> np.ndarray:
    """The goals every seed learns: a fixed random subset, never the centre (its mirror is itself)."""
    cells = np.array([c for c in range(size * size) if c != mirrored_goal(c, size)])
    order = np.random.default_rng(exp.seed).permutation(cells)
    return np.sort(order[: min(exp.goals, len(cells))])


def seed_goal_grid(n_seeds: int, goals: np.ndarray, seed: int, tag: int) -> tuple[np.ndarray, np.ndarray]:
    """All (seed, goal) runs of an experiment, flattened, with one random stream per run."""
    seed_idx, goal = np.meshgrid(np.arange(n_seeds), goals, indexing="ij")
    seeds = np.stack([np.full(seed_idx.size, seed), seed_idx.ravel(), goal.ravel(), np.full(seed_idx.size, tag)], 1)
    return goal.ravel(), seeds


def per_seed(x: np.ndarray, n_seeds: int) -> np.ndarray:
    """(E, seeds * goals) -> (seeds, E): average over goals within each seed."""
    return x.reshape(x.shape[0], n_seeds, -1).mean(2).T


def run_tabular_experiment(exp: TabularExperiment, progress: bool = False) -> dict[str, np.ndarray]:
    """Learning curves from scratch, then the goal-switch experiment, for every learner and seed."""
    goals = experiment_goals(exp)
    moved = np.array([mirrored_goal(g) for g in goals])
    out: dict[str, np.ndarray] = {"goals": goals, "moved_goals": moved}
    learn_goal, learn_seeds = seed_goal_grid(exp.seeds, goals, exp.seed, tag=0)
    sw_goal, sw_seeds = seed_goal_grid(exp.seeds, goals, exp.seed, tag=1)
    sw_plan = np.concatenate([np.broadcast_to(sw_goal, (exp.switch_episodes, sw_goal.size)),
                              np.broadcast_to(np.array([mirrored_goal(g) for g in sw_goal]),
                                              (exp.switch_episodes, sw_goal.size))])
    keys = ("returns", "greedy", "update")
    parts: dict[str, list[np.ndarray]] = {f"{p}_{k}": [] for p in ("learn", "switch") for k in keys}
    for _, cfg in exp.learners:
        for prefix, plan, seeds, n_ep in (("learn", learn_goal, learn_seeds, exp.episodes),
                                          ("switch", sw_plan, sw_seeds, 2 * exp.switch_episodes)):
            res = q_learning(cfg, plan, seeds, n_ep, evaluate_greedy=True, progress=progress)
            for k, arr in zip(keys, (res.returns, res.greedy_returns, res.update_size), strict=True):
                parts[f"{prefix}_{k}"].append(per_seed(arr, exp.seeds))
    out.update({k: np.stack(v) for k, v in parts.items()})  # (learners, seeds, episodes)
    out["epsilon_learn"] = np.array([exp.learners[0][1].epsilon(e) for e in range(exp.episodes)])
    out["optimal"] = np.array(np.mean([optimal_return(int(g)) for g in goals]))
    out["optimal_moved"] = np.array(np.mean([optimal_return(int(g)) for g in moved]))
    out["random"] = np.array(np.mean([random_policy_return(int(g)) for g in goals]))
    out["random_moved"] = np.array(np.mean([random_policy_return(int(g)) for g in moved]))
    out.update(showcase_run(exp))
    return out


def tabular_artifact(exp: TabularExperiment, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 1's results: stored ones if present (``lab``/``full``), else computed and stored."""
    return artifacts.cached(
        "ch01_tabular", exp, lambda: run_tabular_experiment(exp, progress=progress), scale=scale.name,
        code=(imitlib.tabular, imitlib.envs.darkroom, tabular_experiment, run_tabular_experiment, showcase_run,
              experiment_goals, mirrored_goal, greedy_path, seed_goal_grid, per_seed),
    )


def showcase_run(exp: TabularExperiment) -> dict[str, np.ndarray]:
    """One learner, one seed, one goal, moved half-way: value maps and greedy paths to scrub through."""
    _, cfg = exp.learners[exp.showcase_learner]
    goal = exp.showcase_goal[0] * SIZE + exp.showcase_goal[1]
    n = 2 * exp.switch_episodes
    plan = np.array([goal] * exp.switch_episodes + [mirrored_goal(goal)] * exp.switch_episodes)[:, None]
    half = exp.switch_episodes
    # evenly spaced for the slider, plus log-spaced points after the start and after the move, where it changes fast
    early = np.geomspace(1, half, exp.showcase_snapshots // 4)
    at = np.unique(np.concatenate([np.linspace(0, n, exp.showcase_snapshots + 1), early, half + early]).astype(int))
    res = q_learning(cfg, plan, [(exp.seed, 0, goal, 2)], n, snapshot_at=tuple(at), evaluate_greedy=True)
    values = np.stack([res.snapshots[e][0].max(1) for e in at])  # (snapshots, cells)
    paths = np.stack([greedy_path(res.snapshots[e][0]) for e in at])
    return {
        "showcase_at": at,
        "showcase_values": values,
        "showcase_paths": paths,
        "showcase_goals": plan[np.minimum(at, n - 1), 0],
        "showcase_returns": res.returns[:, 0],
        "showcase_greedy": res.greedy_returns[:, 0],
    }


def greedy_path(q: np.ndarray, size: int = SIZE, horizon: int = HORIZON) -> np.ndarray:
    """Cells the greedy policy of one table ``(cells, actions)`` visits from the start (ties -> lowest action)."""
    return imitlib.tabular.greedy_rollouts(q[None], np.zeros(1, np.int64), size, horizon)[0][0]


def by_learner(exp: TabularExperiment, array: np.ndarray) -> dict[str, np.ndarray]:
    """Label a ``(learners, ...)`` result array with the learners' names, for plotting."""
    return dict(zip((name for name, _ in exp.learners), array, strict=True))


def episodes_to_reach(curves: np.ndarray, level: float, window: int = 10) -> np.ndarray:
    """First episode at which each seed's ``window``-episode running mean reaches ``level`` (NaN: never)."""
    above = imitlib.stats.running_mean(curves, window) >= level  # (seeds, episodes - window + 1)
    return np.where(above.any(1), above.argmax(1) + window - 1, np.nan)


def reach_summary(episodes: np.ndarray) -> str:
    """Words for :func:`episodes_to_reach` across seeds: the median over seeds that got there, and how many did."""
    ok = episodes[~np.isnan(episodes)]
    if ok.size == 0:
        return f"never within the budget (0 of {episodes.size} seeds)"
    return f"{np.median(ok):.0f} episodes (median; {ok.size} of {episodes.size} seeds got there)"



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

