"""Chapter 4's numbers, verdicts and figures: frozen ED and AD students against a snapshot of their teacher.

The training pipelines (:func:`imitlib.experiments.darkroom_students_artifact`,
:func:`~imitlib.experiments.game_students_artifact`) stay in the package's ``__init__``; this module only reads
what they store, so editing it marks no student stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from imitlib import artifacts, book, plots, stats
from imitlib.envs.darkroom import optimal_return, random_policy_return
from imitlib.experiments import (
    DarkRoomHistories,
    DarkRoomStudents,
    GameStudents,
    darkroom_students_artifact,
    darkroom_students_config,
    game_students_artifact,
    random_returns,
    teacher_snapshot_returns,
)
from imitlib.experiments.common import CLI, load_or_explain
from imitlib.scale import Scale

KINDS = {"ED": "ed", "AD": "ad"}  # student name -> kind (and plot colour), in the order the prose names them
SPLITS = ("train", "held_out")  # the snapshot test's goal sets: goals the students trained on, and unseen ones
MODES = ("sampled", "greedy")  # how a frozen student acts: from its distribution (as trained) or its argmax
GAME_COMMAND = f"{CLI} student --kind ed --data minatar --scale {{scale}}"  # trains (and stores) the game's students
RANDOM_EPISODES = 100  # random-play episodes on the game: enough for a floor steady to about ±0.1
RANDOM_SEED = 7  # the random floor's seed, fixed so the number the prose quotes never moves
GAME_SEEDS_MISSING = 2  # NaN placeholders per missing game score (the shape the figure and numbers expect)
RECOVERY_BAR = 0.8  # "recovers most of the teacher's return": 80%, the share the essay calls a working copy
GAP_MARGIN = 0.2  # agreement above return share by 20 points is far beyond seed noise: worth a sentence
TABLE_HEADER = ["who", "goals", "actions", "return, mean [95% CI over seeds]", "optimal actions"]
GAP_NOTE = ("Agreement state by state is far higher than the share of return kept: a few wrong actions per "
            "episode are enough to lose the ball, and once the student drifts into states its teacher's good play "
            "rarely visited, the expert data has little to say about them (the compounding error of behaviour "
            "cloning).")


def student_command(kind: str) -> str:
    """The command that trains (and stores) a kind of Dark Room student (``{scale}`` left for load_or_explain)."""
    return f"{CLI} student --kind {kind} --scale {{scale}}"


def student_configs(scale: Scale) -> dict[str, DarkRoomStudents]:
    """ED and AD students at a scale: same architecture and budget, different data."""
    return {name: darkroom_students_config(scale, kind) for name, kind in KINDS.items()}


def load_students(scale: Scale, configs: dict[str, DarkRoomStudents]) -> dict[str, artifacts.Artifact]:
    """The stored students (computed at ``ci``); a missing kind is left out after one line saying how to train it."""
    loaded = {name: load_or_explain(lambda cfg=cfg: darkroom_students_artifact(cfg, scale), scale,
                                    student_command(KINDS[name])) for name, cfg in configs.items()}
    return {name: art for name, art in loaded.items() if art is not None}


def setup_numbers(cfg: DarkRoomStudents, arts: dict[str, artifacts.Artifact]) -> dict[str, Any]:
    """What the prose says about the students' size and budget (minutes NaN when none is stored)."""
    from imitlib.transformer import Student

    minutes = float(np.mean([a["wall_seconds"].mean() for a in arts.values()]) / 60) if arts else float("nan")
    return {"ch4_params": f"{Student(cfg.student.model).n_params():,}", "ch4_updates": f"{cfg.student.updates:,}",
            "ch4_batch": cfg.student.batch_size, "ch4_minutes": minutes}


def plot_training(axes: Any, arts: dict[str, artifacts.Artifact], configs: dict[str, DarkRoomStudents]) -> None:
    """Training loss and accuracy of each student kind (two axes), against updates."""
    for name, art in arts.items():
        x = (np.arange(art["loss"].shape[1]) + 1) * configs[name].student.checkpoint_every
        color = plots.COLORS[KINDS[name]]
        plots.curve_with_ci(axes[0], art["loss"], x=x, label=name, color=color)
        plots.curve_with_ci(axes[1], art["accuracy"], x=x, label=name, color=color)
    plots.label(axes[0], "update", "cross-entropy (nats)", "Training loss")
    plots.label(axes[1], "update", "share of recorded actions predicted", "Training accuracy")


@dataclass(frozen=True)
class Snapshot:
    """The snapshot test read out: each student's per-seed return beside references on the same goals."""

    score: dict[tuple[str, str, str], np.ndarray]  # (student, split, mode) -> mean return per seed
    optimal_share: dict[tuple[str, str, str], float]  # (student, split, mode) -> share of optimal actions
    teacher: dict[str, np.ndarray]  # split -> teacher snapshot's mean final greedy return per goal
    random: dict[str, np.ndarray]  # split -> random policy's expected return per goal
    optimal: dict[str, np.ndarray]  # split -> best achievable return per goal


def references(data: DarkRoomHistories, goals: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Teacher snapshot, random and optimal return per goal of each split: what a student's return is read against."""
    return {"teacher": {s: teacher_snapshot_returns(data, g).mean(1) for s, g in goals.items()},
            "random": {s: np.array([random_policy_return(int(x)) for x in g]) for s, g in goals.items()},
            "optimal": {s: np.array([optimal_return(int(x)) for x in g]) for s, g in goals.items()}}


def tested_goals(arts: dict[str, artifacts.Artifact]) -> dict[str, np.ndarray]:
    """The goals of each split the students were tested on (the same for every kind: one dataset, one split)."""
    art = arts.get("AD", next(iter(arts.values())))
    return {split: art[f"goals/{split}"] for split in SPLITS}


def snapshot_from(arts: dict[str, artifacts.Artifact], refs: dict[str, dict[str, np.ndarray]]) -> Snapshot:
    """The snapshot test's scores from stored students and the references of :func:`references`."""
    keys = [(name, split, mode) for split in SPLITS for mode in MODES for name in arts]
    score = {(n, s, m): arts[n][f"{s}/{m}_returns"].mean(axis=(1, 2)) for n, s, m in keys}
    share = {(n, s, m): float(arts[n][f"{s}/{m}_optimal_share"].mean()) for n, s, m in keys}
    return Snapshot(score, share, refs["teacher"], refs["random"], refs["optimal"])


def snapshot(data: DarkRoomHistories, arts: dict[str, artifacts.Artifact]) -> Snapshot | None:
    """The snapshot test of the stored students against their teacher; None when no student is stored."""
    return snapshot_from(arts, references(data, tested_goals(arts))) if arts else None


def split_label(split: str) -> str:
    """A split's name as the page prints it ("held-out", not "held_out")."""
    return split.replace("_", "-")


def ci_text(per_seed: np.ndarray) -> str:
    """Mean over seeds with its 95% bootstrap interval, as one table cell."""
    ci = stats.bootstrap_ci(per_seed)
    return f"{ci.estimate:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def snapshot_rows(snap: Snapshot) -> list[list[Any]]:
    """One row per student, split and action mode, then the teacher snapshot's row for each split."""
    rows: list[list[Any]] = []
    for split in SPLITS:
        for (name, s, mode), per_seed in snap.score.items():
            if s == split:
                rows.append([name, split_label(split), mode, ci_text(per_seed),
                             f"{snap.optimal_share[(name, s, mode)]:.0%}"])
        rows.append(["teacher snapshot", split_label(split), "greedy", f"{snap.teacher[split].mean():.2f}", "—"])
    return rows


def snapshot_table(snap: Snapshot) -> Any:
    """The snapshot test as a book table: every student's return and share of optimal actions, and the teacher's."""
    return book.table(TABLE_HEADER, snapshot_rows(snap))


def plot_snapshot(ax: plt.Axes, snap: Snapshot, split: str, legend: bool) -> None:
    """Each student's return on one split (hollow: greedy), against teacher snapshot, optimal and random play."""
    shown = [(n, m) for n in dict.fromkeys(k[0] for k in snap.score) for m in MODES]
    for i, (name, mode) in enumerate(shown):
        plots.point_with_ci(ax, i, snap.score[(name, split, mode)], color=plots.COLORS[KINDS[name]],
                            hollow=mode == "greedy")
    ax.set_xticks(range(len(shown)), [f"{n}\n{m}" for n, m in shown])
    plots.reference_line(ax, snap.teacher[split].mean(), label="teacher snapshot", role="teacher")
    plots.reference_line(ax, snap.optimal[split].mean(), label="optimal", role="optimal")
    plots.reference_line(ax, snap.random[split].mean(), label="random policy", role="random")
    plots.label(ax, "", "return per episode", f"{split_label(split)} goals", legend=False)
    if legend:
        ax.legend(loc="upper left", fontsize=8, framealpha=0.8)


def ratio(snap: Snapshot, name: str, split: str, mode: str = "sampled") -> float:
    """A student's mean return as a share of the teacher snapshot's on the same goals."""
    return float(snap.score[(name, split, mode)].mean() / snap.teacher[split].mean())


def snapshot_numbers(snap: Snapshot | None) -> dict[str, float]:
    """What the prose cites from the snapshot test; NaN for what is not stored, so the text says nan, not a guess."""
    names = {n for n, _, _ in snap.score} if snap else set()
    out = {}
    for name in KINDS:
        for split in SPLITS:
            out[f"ch4_{name}_{split}_ratio"] = ratio(snap, name, split) if name in names else np.nan
            out[f"ch4_{name}_{split}_greedy_ratio"] = ratio(snap, name, split, "greedy") if name in names else np.nan
    out["ch4_teacher_train"] = float(snap.teacher["train"].mean()) if snap else np.nan
    out["ch4_random_train"] = float(snap.random["train"].mean()) if snap else np.nan
    for split, key in (("train", "ch4_best_train"), ("held_out", "ch4_best_held")):
        out[key] = max((ratio(snap, n, split, m) for n in names for m in MODES), default=np.nan)
    return out


@dataclass(frozen=True)
class GameScores:
    """The game's ED students beside their teachers: return per seed, and how often they chose as the teacher."""

    student: np.ndarray  # mean return per student (seed)
    teacher: np.ndarray  # final evaluation return per teacher (seed)
    agreement: float  # share of visited states where the student took its teacher's greedy action


def load_game(scale: Scale, cfg: GameStudents) -> artifacts.Artifact | None:
    """The stored ED students of the game (computed at ``ci``), or None and the command that trains them."""
    return load_or_explain(lambda: game_students_artifact(cfg, scale), scale, GAME_COMMAND)


def random_game_returns(env_id: str) -> np.ndarray:
    """Returns of uniformly random play on the game: the floor both student and teacher are read against."""
    return random_returns(env_id, episodes=RANDOM_EPISODES, seed=RANDOM_SEED)


def game_scores(game: artifacts.Artifact | None) -> GameScores:
    """Student and teacher returns per seed and the agreement; NaN when the students are not trained yet."""
    if game is None:
        missing = np.full(GAME_SEEDS_MISSING, np.nan)
        return GameScores(missing, missing, float("nan"))
    return GameScores(np.nanmean(game["returns"], axis=1), game["teacher_returns"].mean(axis=1),
                      float(game["agreement"].mean()))


def game_ratio(scores: GameScores) -> float:
    """The students' mean return as a share of their teachers'."""
    return float(scores.student.mean() / scores.teacher.mean())


def plot_game(ax: plt.Axes, scores: GameScores, random_mean: float, env_id: str) -> None:
    """Teacher and ED student return (each seed, mean and 95% CI) against random play; missing ones left out."""
    for i, (name, values, role) in enumerate([("teacher (final, ε = 0.05)", scores.teacher, "teacher"),
                                              ("ED student", scores.student, "ed")]):
        if np.isfinite(values).all():
            plots.point_with_ci(ax, i, values, color=plots.COLORS[role], label=f"{name}, mean and 95% CI")
    ax.set_xticks([0, 1], ["teacher", "ED student"])
    plots.reference_line(ax, random_mean, label="random policy", role="random")
    plots.label(ax, "", "return per episode", env_id)


def gap_note(agreement: float, share: float) -> str:
    """The compounding-error sentence when agreement far exceeds the share of return kept, else nothing."""
    return GAP_NOTE if agreement - share > GAP_MARGIN else ""


def game_numbers(scores: GameScores, random_scores: np.ndarray) -> dict[str, Any]:
    """What the prose cites about the game's students (NaN, and no note, when they are not trained)."""
    share = game_ratio(scores)
    return {"ch4_game_student": float(scores.student.mean()), "ch4_game_teacher": float(scores.teacher.mean()),
            "ch4_game_ratio": share, "ch4_game_agreement": scores.agreement,
            "ch4_game_random": float(random_scores.mean()), "ch4_game_gap_note": gap_note(scores.agreement, share)}


def snapshot_verdict(best_train: float) -> str:
    """Question 1 on Dark Room: does the best frozen student recover most of the teacher snapshot's return?"""
    if not np.isfinite(best_train):
        return "not measured at this scale yet (the Dark Room students are not trained)"
    if best_train >= RECOVERY_BAR:
        return "yes: on the goals it was trained on, a frozen student recovers most of the teacher snapshot's return"
    return (f"not on Dark Room: no frozen student recovers {RECOVERY_BAR:.0%} of the teacher snapshot's return, "
            "even on the goals it was trained on")


def game_verdict(share: float) -> str:
    """Question 1 on the game: how much of their teachers' return the ED students recover."""
    if not np.isfinite(share):
        return "not measured at this scale yet (the MinAtar students are not trained)"
    if share >= RECOVERY_BAR:
        return f"yes: the ED students recover {share:.0%} of their teachers' return"
    return f"only partly: the ED students recover {share:.0%} of their teachers' return"


def answer_numbers(best_train: float, share: float) -> dict[str, str]:
    """The answer to Question 1, for Dark Room and for the game, under the prose's names."""
    return {"ch4_verdict": snapshot_verdict(best_train), "ch4_game_verdict": game_verdict(share)}
