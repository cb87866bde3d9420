"""Chapter 4's Dark Room students: frozen ED and AD students (trained here) against a snapshot of their teacher,
with the numbers, verdicts and figures the chapter shows. The game's students are in ``game_students``."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

import imitlib.envs.darkroom
import imitlib.imitation
import imitlib.recorders
import imitlib.tabular
import imitlib.transformer
from imitlib import artifacts, book, plots, stats
from imitlib.envs.darkroom import HORIZON, SIZE, optimal_return, random_policy_return
from imitlib.experiments.common import CLI, RECOVERY_BAR, _student_folder, load_or_explain
from imitlib.experiments.histories import (
    DarkRoomHistories,
    darkroom_histories,
    darkroom_histories_config,
    goal_split,
    greedy_episodes,
    history_sources,
    record_darkroom,
    source_returns,
)
from imitlib.scale import Scale


@dataclass(frozen=True)
class DarkRoomStudents:
    """ED or AD students on a Dark Room dataset: one per seed, same architecture and budget for both kinds."""

    data: DarkRoomHistories
    student: imitlib.imitation.StudentConfig  # the seed-0 student; seed i differs only in its seed
    seeds: tuple[int, ...]
    eval_episodes: int  # episodes per rollout in the snapshot test
    eval_repeats: int = 2  # rollouts per goal
    train_goals: int | None = None  # ablation: only this many of the training goals (a fixed random subset)
    shuffled: bool = False  # ablation: every history's episodes in a random order


def darkroom_students_config(scale: Scale, kind: str, source: str = "knowledge", context_episodes: int = 4,
                             train_goals: int | None = None, shuffled: bool = False) -> DarkRoomStudents:
    """AD (learning histories) or ED (expert episodes) students at a scale; AD's Dark Room recipe otherwise."""
    from imitlib.imitation import StudentConfig
    from imitlib.transformer import TransformerConfig

    s = scale.student
    model = TransformerConfig(obs_kind="darkroom", n_actions=5, block_size=context_episodes * HORIZON,
                              n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd)
    student = StudentConfig(model=model, kind=kind, context_episodes=context_episodes, updates=s.updates,
                            batch_size=s.batch_size, warmup=max(1, s.updates // 20),
                            checkpoint_every=max(1, min(250, s.updates // 4)), bf16=s.bf16)
    return DarkRoomStudents(data=darkroom_histories_config(scale, source), student=student,
                            seeds=tuple(range(s.seeds)), eval_episodes=s.eval_episodes, train_goals=train_goals,
                            shuffled=shuffled)


def students_name(exp: DarkRoomStudents) -> str:
    """The artifact name of a set of Dark Room students: kind, source, and any ablation."""
    parts = [f"ch04_darkroom_{exp.student.kind}_{exp.data.source}"]
    if exp.student.context_episodes != 4:
        parts.append(f"ctx{exp.student.context_episodes}")
    if exp.train_goals is not None:
        parts.append(f"goals{exp.train_goals}")
    if exp.shuffled:
        parts.append("shuffled")
    return "_".join(parts)


def student_goals(exp: DarkRoomStudents) -> np.ndarray:
    """The goals the students train on: the training split, or a fixed random subset of it (ablation)."""
    train, _ = goal_split(exp.data)
    if exp.train_goals is None:
        return train
    if not 1 <= exp.train_goals <= len(train):
        raise ValueError(f"train_goals must be between 1 and {len(train)}, got {exp.train_goals}")
    return np.sort(np.random.default_rng(exp.data.split_seed + 1).permutation(train)[: exp.train_goals])


def student_data(exp: DarkRoomStudents, scale: Scale) -> Any:
    """The history the students read: learning histories (AD), expert episodes (ED), or the shuffled copy."""
    from imitlib.history import HistoryReader, shuffle_episodes

    folder = darkroom_histories(exp.data, scale)
    if exp.student.kind == "ed":
        return HistoryReader(folder / "expert")
    if not exp.shuffled:
        return HistoryReader(folder / "learning")
    if not (folder / "learning-shuffled" / "manifest.json").exists():
        tmp = folder / "learning-shuffled.partial"
        shuffle_episodes(HistoryReader(folder / "learning"), tmp, seed=exp.data.seed)
        os.replace(tmp, folder / "learning-shuffled")
    return HistoryReader(folder / "learning-shuffled")


def train_darkroom_students(exp: DarkRoomStudents, scale: Scale, progress: bool = True) -> list[Any]:
    """Train every seed's student (resuming under ``runs/`` except at ``ci``) on the training goals' windows: one
    sweep unit per seed, here or as Ray tasks under ``--ray`` (:mod:`imitlib.sweep`)."""
    from imitlib import sweep

    return sweep.run([sweep.Unit(f"{students_name(exp)} seed {seed}", train_darkroom_student,
                                 (exp, scale.name, seed, progress)) for seed in exp.seeds])


def train_darkroom_student(exp: DarkRoomStudents, scale_name: str, seed: int, progress: bool = True) -> Any:
    """One seed's student, a sweep unit: it reads (or rebuilds, in seconds) the Dark Room histories itself."""
    from imitlib.imitation import train_student
    from imitlib.scale import get_scale

    scale = get_scale(scale_name)
    reader = student_data(exp, scale)
    goals = set(student_goals(exp).tolist())
    runs = [r for r in reader.runs() if reader.task(r)["goal"] in goals]
    root = _student_folder(students_name(exp), exp, scale)
    return train_student(replace(exp.student, seed=seed), reader, runs,
                         None if scale.name == "ci" else root / f"seed{seed}", progress=progress)


def optimal_actions(cells: np.ndarray, goals: np.ndarray, size: int = SIZE) -> np.ndarray:
    """``(..., 5)`` booleans: which actions move closer to the goal (or stay on it), i.e. what a converged
    Q-learner's greedy policy may do from each cell."""
    nxt = imitlib.envs.darkroom.transition_table(size)
    goals = np.broadcast_to(np.asarray(goals).reshape(-1, *[1] * (cells.ndim - 1)), cells.shape)
    dist = np.abs(nxt[cells] // size - goals[..., None] // size) + np.abs(nxt[cells] % size - goals[..., None] % size)
    return dist == dist.min(-1, keepdims=True)


def snapshot_test(model: Any, goals: np.ndarray, exp: DarkRoomStudents, seed: int) -> dict[str, np.ndarray]:
    """The frozen student on ``goals`` (``eval_repeats`` rollouts each), sampled and greedy: returns
    ``(goals * repeats, episodes)`` and how often it took an optimal action."""
    from imitlib.imitation import darkroom_rollout

    g = np.repeat(goals, exp.eval_repeats)
    out = {}
    for mode in ("sampled", "greedy"):
        roll = darkroom_rollout(model, g, exp.eval_episodes, context_episodes=exp.student.context_episodes,
                                greedy=mode == "greedy", seed=seed)
        ok = optimal_actions(roll["cells"], g)
        taken = np.take_along_axis(ok, roll["actions"][..., None].astype(np.int64), -1)[..., 0]
        out[f"{mode}_returns"] = roll["returns"]
        out[f"{mode}_optimal_share"] = taken.mean(axis=(1, 2))
    return out


def run_darkroom_students(exp: DarkRoomStudents, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Train the students, then the snapshot test on 16 training goals and on the 16 held-out goals."""
    train_goals, held_out = goal_split(exp.data)
    tested = {"train": train_goals[np.linspace(0, len(train_goals) - 1, len(held_out)).astype(int)],
              "held_out": held_out}
    runs = train_darkroom_students(exp, scale, progress)
    out: dict[str, Any] = {"goals/train": tested["train"], "goals/held_out": tested["held_out"],
                           "loss": np.array([r.loss for r in runs]), "accuracy": np.array([r.accuracy for r in runs]),
                           "wall_seconds": np.array([r.wall_seconds for r in runs])}
    for split, goals in tested.items():
        results = [snapshot_test(r.model, goals, exp, seed=1000 + i) for i, r in enumerate(runs)]
        for key in results[0]:
            out[f"{split}/{key}"] = np.stack([x[key] for x in results])
    for name in runs[0].model.state_dict():
        out[f"weights/{name}"] = np.stack([r.model.state_dict()[name].numpy() for r in runs])
    return out


def darkroom_students_artifact(exp: DarkRoomStudents, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 4's Dark Room students and their snapshot test: stored if present, else trained and stored."""
    return artifacts.cached(students_name(exp), exp, lambda: run_darkroom_students(exp, scale, progress),
                            scale=scale.name, code=DARKROOM_STUDENT_CODE)


def student_network(art: artifacts.Artifact, cfg: Any, seed_index: int = 0) -> Any:
    """One stored student as a frozen ``Student``."""
    from imitlib.transformer import Student

    model = Student(cfg.model)
    model.load_state_dict({k[len("weights/"):]: torch.as_tensor(v[seed_index]) for k, v in art.data.items()
                           if k.startswith("weights/")})
    return model.eval()


def teacher_snapshot_returns(data: DarkRoomHistories, goals: np.ndarray) -> np.ndarray:
    """The Dark Room teacher *as it is at the end*: each recorded source run's final greedy return, for ``goals``
    (``(goals, runs_per_goal)``)."""
    _, greedy = source_returns(data)
    final = greedy[:, -1].reshape(SIZE * SIZE, data.runs_per_goal)
    return final[np.asarray(goals)]


DARKROOM_STUDENT_CODE = (  # the source a Dark Room student set's numbers depend on
    imitlib.transformer, imitlib.imitation, imitlib.history, imitlib.recorders, imitlib.tabular, imitlib.envs.darkroom,
    history_sources, darkroom_histories_config, darkroom_histories, record_darkroom, greedy_episodes, goal_split,
    darkroom_students_config, train_darkroom_students, train_darkroom_student, students_name, student_goals,
    student_data, snapshot_test,
    run_darkroom_students, optimal_actions,
)

KINDS = {"ED": "ed", "AD": "ad"}  # student name -> kind (and plot colour), in the order the prose names them
SPLITS = ("train", "held_out")  # the snapshot test's goal sets: goals the students trained on, and unseen ones
MODES = ("sampled", "greedy")  # how a frozen student acts: from its distribution (as trained) or its argmax
TABLE_HEADER = ["who", "goals", "actions", "return, mean [95% CI over seeds]", "optimal actions",
                "P(AD seed beats ED seed) [95% CI]"]


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


def ad_beats_ed(snap: Snapshot, split: str, mode: str, name: str) -> str:
    """On AD's rows: the probability that an AD seed scores more than an ED seed (ties half), with its 95% CI."""
    ed, ad = snap.score.get(("ED", split, mode)), snap.score.get(("AD", split, mode))
    if name != "AD" or ed is None or ad is None:
        return "—"
    p = stats.probability_of_improvement(ad, ed)
    return f"{float(p.estimate):.2f} [{float(p.low):.2f}, {float(p.high):.2f}]"


def snapshot_rows(snap: Snapshot) -> list[list[Any]]:
    """One row per student, split and action mode, then the teacher snapshot's row for each split."""
    rows: list[list[Any]] = []
    for split in SPLITS:
        for (name, s, mode), per_seed in snap.score.items():
            if s == split:
                rows.append([name, split_label(split), mode, ci_text(per_seed),
                             f"{snap.optimal_share[(name, s, mode)]:.0%}", ad_beats_ed(snap, split, mode, name)])
        rows.append(["teacher snapshot", split_label(split), "greedy", f"{snap.teacher[split].mean():.2f}", "—", "—"])
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


def snapshot_verdict(best_train: float) -> str:
    """Question 1 on Dark Room: does the best frozen student recover most of the teacher snapshot's return?"""
    if not np.isfinite(best_train):
        return "not measured at this scale yet (the Dark Room students are not trained)"
    if best_train >= RECOVERY_BAR:
        return "yes: on the goals it was trained on, a frozen student recovers most of the teacher snapshot's return"
    return (f"not on Dark Room: no frozen student recovers {RECOVERY_BAR:.0%} of the teacher snapshot's return, "
            "even on the goals it was trained on")


def answer_numbers(best_train: float, share: float) -> dict[str, str]:
    """The answer to Question 1, for Dark Room and for the game, under the prose's names."""
    from imitlib.experiments.game_students import game_verdict

    return {"ch4_verdict": snapshot_verdict(best_train), "ch4_game_verdict": game_verdict(share)}
