"""Chapter 7, part 1: the teacher moves. A DQN on Space Invaders, from scratch and transplanted from Breakout.

From scratch is chapter 2's recorded Space Invaders teachers. The transplant copies Breakout teacher i's final
weights (its online network; the target starts as their copy) into a DQN that then learns Space Invaders with
exactly the from-scratch settings and seed i's streams: a fresh replay buffer, a fresh optimiser, and exploration
restarting from epsilon 1, decaying over the same steps. The two runs of a seed differ only in the weights they start
from, so their difference is what Breakout pre-training does: help, hurt, or nothing. Before it learns anything on
the new game, the transplanted network is also evaluated there as it arrives (the Breakout teacher playing Space
Invaders zero-shot), the "terrible at first" of the essay.

Both games share MinAtar's six actions and the ten-channel observation space (:mod:`imitlib.envs.games`), so every
weight has a place to go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import imitlib.dqn
from imitlib import artifacts, plots, stats
from imitlib.experiments import transfer
from imitlib.experiments.common import CLI, _student_folder, load_or_explain
from imitlib.experiments.teacher import TEACHER_CODE, TeacherExperiment, teacher_artifact, teacher_experiment
from imitlib.scale import Scale

ARRIVAL = 10**6  # the arrival evaluation's random streams: a segment number no training run reaches


@dataclass(frozen=True)
class Transplant:
    """Breakout teachers' final weights, moved into DQNs that learn the new game."""

    source: TeacherExperiment  # the teachers whose weights move (their seeds pair with the target's, in order)
    target: TeacherExperiment  # the new game's settings and seeds: those of its from-scratch teachers


def transplant_config(scale: Scale, new_game: str = transfer.NEW_GAME) -> Transplant:
    """The scale's teacher game (Breakout at ci/lab) moved into ``new_game``, same settings and seeds."""
    return Transplant(source=teacher_experiment(scale), target=teacher_experiment(scale, new_game))


def source_weights(art: artifacts.Artifact) -> dict[str, torch.Tensor]:
    """Every seed's final weights from a teacher artifact, as the stacked state dict ``dqn.train(init=...)`` takes."""
    return {k.removeprefix("weights/"): torch.as_tensor(v) for k, v in art.data.items() if k.startswith("weights/")}


def run_transplant(test: Transplant, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Evaluate the moved networks on the new game as they arrive, then train them on it (resumably)."""
    dqn, seeds = test.target.dqn, test.target.seeds
    init = source_weights(teacher_artifact(test.source, scale, progress))
    learner = imitlib.dqn.Learner.new(dqn, seeds, imitlib.dqn.Hooks())
    learner.q.online.load_state_dict(init)
    arrival = imitlib.dqn.evaluate(learner.q, learner.spec, dqn, seeds, segment=ARRIVAL)  # (S, episodes), zero-shot
    run_dir = None if scale.name == "ci" else _student_folder(TRANSPLANT_NAME, test, scale)
    run = imitlib.dqn.train(dqn, seeds, run_dir=run_dir, init=init, progress=progress)
    train_steps, train_returns = run.train_curve(max(dqn.segment_steps // 5, dqn.num_envs))
    eval_steps, eval_means = run.eval_curve()
    return {"seeds": np.array(seeds), "arrival_returns": arrival, "train_steps": train_steps,
            "train_returns": train_returns, "eval_steps": eval_steps, "eval_means": eval_means,
            "wall_seconds": np.array(run.state.wall_seconds)}


TRANSPLANT_NAME = "ch07_transplant"


def transplant_artifact(test: Transplant, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """The part's stored result, or computed and stored (a teacher's training on the new game: about an hour)."""
    return artifacts.cached(TRANSPLANT_NAME, test, lambda: run_transplant(test, scale, progress), scale=scale.name,
                            code=(*TEACHER_CODE, transplant_config, source_weights, run_transplant))


COMMAND = f"{CLI} transfer --part teacher --scale {{scale}}"


def load_teachers(scale: Scale) -> dict[str, artifacts.Artifact]:
    """From scratch (chapter 2's teachers on the new game) and transplanted, those that are stored (at ``ci``:
    computed); a missing one is named with the command that computes it."""
    test = transplant_config(scale, transfer.new_game(scale))
    out = {"scratch": load_or_explain(lambda: teacher_artifact(test.target, scale), scale,
                                      f"{CLI} record minatar --env {test.target.dqn.env_id} --scale {{scale}}"),
           "transplant": load_or_explain(lambda: transplant_artifact(test, scale), scale, COMMAND)}
    return {k: v for k, v in out.items() if v is not None}


# --------------------------------------------------------------------------------------------------
# Reading the result

LABELS = {"scratch": "DQN from scratch", "transplant": "DQN transplanted from Breakout"}


def curves(arts: dict[str, Any], mode: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per set, ``(steps, returns (seeds, points))``: training behaviour (sampled: epsilon-greedy) or the
    evaluations (greedy: epsilon 0.05)."""
    keys = ("train_steps", "train_returns") if mode == "sampled" else ("eval_steps", "eval_means")
    return {k: (np.asarray(a[keys[0]]), np.asarray(a[keys[1]], dtype=float)) for k, a in arts.items()}


def pretraining_effect(arts: dict[str, Any]) -> stats.Interval | None:
    """Transplanted minus from scratch, per seed: mean evaluation return over the whole run (paired seeds)."""
    if len(arts) < 2:
        return None
    c = curves(arts, "greedy")
    return transfer.compare(c["transplant"][1], c["scratch"][1])


def pretraining_text(effect: stats.Interval | None) -> str:
    """Words for :func:`pretraining_effect`: helps or hurts only when its whole 95% CI says so."""
    from imitlib.experiments.beyond import side

    if effect is None:
        return "not measured at this scale yet"
    against = "than learning from scratch, per evaluation averaged over the run"
    return {"above": f"helps: {effect} more return {against}",
            "below": f"hurts: {-effect} less return {against}",
            "contains": f"makes no clear difference ({effect} per evaluation, the 95% CI contains 0)",
            "missing": "not measured at this scale yet"}[side(effect)]


def plot_teachers(ax: Any, arts: dict[str, Any], mode: str, random: float, title: str, legend: bool = True) -> None:
    """Return against environment steps on the new game, from scratch and transplanted, with random play."""
    styles = {"scratch": ("teacher", "-"), "transplant": ("alt", "-")}
    for key, (steps, returns) in curves(arts, mode).items():
        color, ls = styles[key]
        plots.curve_with_ci(ax, returns, x=steps, label=LABELS[key], color=plots.COLORS[color], linestyle=ls)
    if "transplant" in arts and mode == "greedy":
        arrival = np.asarray(arts["transplant"]["arrival_returns"], dtype=float).mean(axis=1)
        plots.point_with_ci(ax, 0, arrival, color=plots.COLORS["alt"], label="Breakout teacher on arrival")
    plots.reference_line(ax, random, label="random policy", role="random")
    plots.label(ax, "environment steps on the new game", "return per episode", title, legend=legend)


DECODING = {"sampled": "training behaviour, ε-greedy", "greedy": "evaluations, ε = 0.05"}


def table_rows(arts: dict[str, Any], mode: str, random: float, sets: tuple[str, ...] = tuple(LABELS)
               ) -> list[list[Any]]:
    """The part's table under one decoding: start, end, gain and verdict of each set (of ``sets``)."""
    c = curves(arts, mode)
    return [transfer.row(f"{LABELS[k]} ({DECODING[mode]})", c[k][1] if k in c else None, random) for k in sets]


def numbers(arts: dict[str, Any], random: float) -> dict[str, Any]:
    """What the prose cites: each set's summary per decoding, the arrival score, the pre-training effect."""
    out: dict[str, Any] = {}
    for mode in ("sampled", "greedy"):
        c = curves(arts, mode)
        for key in LABELS:
            out[f"ch7_teacher_{key}_{mode}"] = transfer.summary_text(c[key][1] if key in c else None, random)
    arrival = np.asarray(arts["transplant"]["arrival_returns"], float) if "transplant" in arts else None
    out["ch7_teacher_arrival"] = f"{arrival.mean():.2f}" if arrival is not None else "(not computed yet)"
    out["ch7_teacher_pretraining"] = pretraining_text(pretraining_effect(arts))
    return out
