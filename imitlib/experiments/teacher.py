"""Chapter 2's numbers and figures: the teacher's learning curves, its play, and what changes underneath.

The pipeline itself (:func:`imitlib.experiments.teacher_experiment`, :func:`~imitlib.experiments.teacher_artifact`)
stays in the package's ``__init__``; this module only reads what it stores, so editing it marks no teacher stale.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from imitlib import anchors, artifacts, dqn, plots, stats
from imitlib.envs.games import GameSpec
from imitlib.experiments import TeacherExperiment, teacher_artifact, teacher_experiment, teacher_network
from imitlib.experiments.common import CLI, load_or_explain
from imitlib.experiments.tabular import ci_text
from imitlib.scale import get_scale

STRIP_FRAMES = 8  # frames shown per episode: enough to follow the ball, few enough to fit the page's width
FULL_SCALE = "full"  # the scale whose teachers play ALE Atari Breakout (trained on a GPU machine, never here)
TEACHER_COMMAND = f"{CLI} teacher --scale {{scale}}"  # what trains (and stores) a scale's teachers


def frame_picks(n_frames: int, count: int = STRIP_FRAMES) -> np.ndarray:
    """``count`` frame indices spread evenly over an episode, first and last included, so a strip shows all of it."""
    return np.linspace(0, n_frames - 1, count).astype(int)


def strip(frames: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The picked MinAtar frames as RGB images, one row of :func:`imitlib.plots.frame_strip`."""
    return np.stack([plots.minatar_rgb(frames[i]) for i in picks])


def random_numbers(scores: np.ndarray) -> dict[str, Any]:
    """The random policy's mean score: the floor every later score is read against."""
    return {"ch2_random": float(scores.mean())}


def settings(exp: TeacherExperiment) -> dict[str, Any]:
    """The DQN settings that are set at this scale (unset ones would only add noise to the printout)."""
    return {k: v for k, v in exp.dqn.__dict__.items() if v is not None}


def finished_bins(curves: np.ndarray) -> np.ndarray:
    """Bins of the training curve in which every seed finished an episode (only those have a mean over seeds)."""
    return ~np.isnan(curves).any(0)


def plot_learning(ax: plt.Axes, art: artifacts.Artifact, exp: TeacherExperiment, random_mean: float) -> None:
    """Training and evaluation return over steps, against the random policy and the MinAtar paper's DQN."""
    steps, curves = art["train_steps"], art["train_returns"]
    seen = finished_bins(curves)
    plots.curve_with_ci(ax, curves[:, seen], x=steps[seen], label="training episodes",
                        color=plots.COLORS["teacher"])
    plots.curve_with_ci(ax, art["eval_means"], x=art["eval_steps"], label="evaluation (ε=0.05)",
                        color=plots.COLORS["alt"])
    plots.reference_line(ax, random_mean, label="random policy", role="random")
    plots.reference_line(ax, anchors.MINATAR_DQN_5M[exp.dqn.env_id], label="MinAtar paper DQN, 5M frames",
                         role="optimal")
    plots.label(ax, "environment steps (per seed)", "return (raw score)", f"DQN on {exp.dqn.env_id}")


def final_eval(art: artifacts.Artifact) -> stats.Interval:
    """The last evaluation's mean return across seeds, with its 95% bootstrap interval."""
    return stats.bootstrap_ci(art["eval_means"][:, -1])


def eval_line(art: artifacts.Artifact) -> str:
    """One printed line: the final evaluation return, overall and per seed (the spread the interval hides)."""
    return (f"evaluation return after {int(art['env_steps']):,} steps: {final_eval(art)}; per seed "
            f"{np.round(art['eval_means'][:, -1], 2)}")


def learning_numbers(art: artifacts.Artifact, exp: TeacherExperiment) -> dict[str, Any]:
    """What the prose cites about the learning curves: steps, seeds, final returns, time and the paper's number."""
    curves = art["train_returns"]
    steps_done, secs = int(art["env_steps"]), float(art["wall_seconds"])
    return {"ch2_steps": f"{steps_done:,}", "ch2_seeds": len(exp.seeds), "ch2_eval": ci_text(final_eval(art)),
            "ch2_train": float(curves[:, finished_bins(curves)][:, -1].mean()), "ch2_minutes": secs / 60,
            "ch2_rate": steps_done * len(exp.seeds) / secs, "ch2_paper": anchors.MINATAR_DQN_5M[exp.dqn.env_id]}


def snapshot_rows(art: artifacts.Artifact, exp: TeacherExperiment, spec: GameSpec, seed: int) -> dict[str, np.ndarray]:
    """One episode per kept snapshot of the first seed, as strip rows labelled by training steps and score."""
    rows = {}
    for i, step in enumerate(art["snapshot_steps"]):
        frames, _, rewards = dqn.play(teacher_network(art, exp, snapshot=i), exp.dqn, spec, seed=seed)
        rows[f"{step:,} steps\nscore {rewards.sum():.0f}"] = strip(frames, frame_picks(len(frames)))
    return rows


def plot_drift(ax: plt.Axes, steps: np.ndarray, drift: dict[str, np.ndarray]) -> None:
    """Each layer's distance from the first kept snapshot, relative to its norm there."""
    for layer, moved in drift.items():
        ax.plot(steps, moved, marker="o", label=layer)
    plots.label(ax, "environment steps", "‖W − W_first‖ / ‖W_first‖", "Weights move")


def plot_values(ax: plt.Axes, art: artifacts.Artifact, probe_q: np.ndarray) -> None:
    """max_a Q on fixed states per snapshot, beside the Q-value of the actions taken while training."""
    ax.plot(art["snapshot_steps"], probe_q, marker="o", color=plots.COLORS["alt"],
            label="max_a Q, fixed states (seed 1)")
    plots.curve_with_ci(ax, art["mean_q"], x=art["loss_steps"], label="Q of actions taken",
                        color=plots.COLORS["teacher"])
    plots.label(ax, "environment steps", "Q-value", "Values")


def drift_text(drift: dict[str, np.ndarray]) -> str:
    """How far each layer moved by the last snapshot, in percent: "conv 160%, hidden layer 384%, ..."."""
    return ", ".join(f"{k} {100 * v[-1]:.0f}%" for k, v in drift.items())


def change_numbers(drift: dict[str, np.ndarray], probe_q: np.ndarray) -> dict[str, Any]:
    """What the prose cites about the change underneath: first and last probe values, and the weights' drift."""
    return {"ch2_q_first": float(probe_q[0]), "ch2_q_last": float(probe_q[-1]), "ch2_drift": drift_text(drift)}


def full_scale_artifact() -> artifacts.Artifact | None:
    """The ALE Breakout teachers of a ``full``-scale run if this copy stores them (never trained here), else None."""
    full = get_scale(FULL_SCALE)
    return load_or_explain(lambda: teacher_artifact(teacher_experiment(full), full), full, TEACHER_COMMAND)


def plot_ale(ax: plt.Axes, art: artifacts.Artifact) -> None:
    """Our ALE Breakout evaluation curve against CleanRL's published one."""
    ax.plot(art["eval_steps"], art["eval_means"].T, color=plots.COLORS["teacher"], label="ours")
    ref_steps, ref_scores = np.array(anchors.CLEANRL_BREAKOUT_CURVE).T
    ax.plot(ref_steps, ref_scores, "o--", color=plots.COLORS["optimal"], label="CleanRL (published)")
    plots.label(ax, "environment steps", "score", "DQN on ALE Breakout")
