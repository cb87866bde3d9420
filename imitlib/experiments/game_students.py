"""Chapter 4's students on a MinAtar game: ED students imitating each teacher seed's expert episodes, read
against their teachers and random play. Chapter 7's transfer students build on these."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

import imitlib.envs.games
import imitlib.history
import imitlib.imitation
import imitlib.recorders
import imitlib.transformer
from imitlib import artifacts, plots
from imitlib.experiments.common import CLI, RECOVERY_BAR, _student_folder, load_or_explain
from imitlib.experiments.teacher import (
    TEACHER_CODE,
    TeacherExperiment,
    minatar_histories,
    random_returns,
    record_minatar,
    recorded_minatar,
    teacher_artifact,
    teacher_experiment,
    teacher_network,
)
from imitlib.scale import Scale

GAME_COMMAND = f"{CLI} student --kind ed --data minatar --scale {{scale}}"  # trains (and stores) the game's students
RANDOM_EPISODES = 100  # random-play episodes on the game: enough for a floor steady to about ±0.1
RANDOM_SEED = 7  # the random floor's seed, fixed so the number the prose quotes never moves
GAME_SEEDS_MISSING = 2  # NaN placeholders per missing game score (the shape the figure and numbers expect)
GAP_MARGIN = 0.2  # agreement above return share by 20 points is far beyond seed noise: worth a sentence
GAP_NOTE = ("Agreement state by state is far higher than the share of return kept: a few wrong actions per "
            "episode are enough to lose the ball, and once the student drifts into states its teacher's good play "
            "rarely visited, the expert data has little to say about them (the compounding error of behaviour "
            "cloning).")


@dataclass(frozen=True)
class GameStudents:
    """ED students on a MinAtar teacher's expert episodes: student i imitates teacher seed i."""

    teacher: TeacherExperiment
    student: imitlib.imitation.StudentConfig
    every: int  # the dataset's subsampling of learning episodes (part of its name)
    eval_episodes: int  # per environment
    num_envs: int = 4


def game_students_config(scale: Scale, env_id: str | None = None) -> GameStudents:
    """ED on the scale's teacher game (MinAtar Breakout at ci/lab)."""
    from imitlib.imitation import StudentConfig
    from imitlib.transformer import TransformerConfig

    s = scale.student
    teacher = teacher_experiment(scale, env_id)
    spec = imitlib.envs.games.game_spec(teacher.dqn.env_id, full_action_space=teacher.dqn.full_action_space,
                                        channels=teacher.dqn.channels)
    model = TransformerConfig(obs_kind=spec.kind, obs_shape=spec.obs_shape if spec.kind == "minatar"
                              else spec.obs_shape[-2:], n_actions=spec.n_actions, block_size=s.game_context_steps,
                              n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd)
    student = StudentConfig(model=model, kind="ed", context_steps=s.game_context_steps, updates=s.game_updates,
                            batch_size=s.batch_size, warmup=max(1, s.game_updates // 20),
                            checkpoint_every=max(1, min(250, s.game_updates // 4)), bf16=s.bf16)
    return GameStudents(teacher=teacher, student=student, every=10, eval_episodes=s.game_eval_episodes)


def run_game_students(exp: GameStudents, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Train one ED student per teacher seed on that teacher's expert episodes; roll each out beside its teacher."""
    from imitlib.history import HistoryReader
    from imitlib.imitation import game_rollout, train_student

    reader = HistoryReader(minatar_histories(exp.teacher, scale, every=exp.every) / "expert")
    teachers = teacher_artifact(exp.teacher, scale, progress=progress)
    root = _student_folder(f"ch04_ed_{exp.teacher.dqn.env_id.replace('/', '_')}", exp, scale)
    out: dict[str, list] = {"returns": [], "agreement": [], "loss": [], "accuracy": [], "wall_seconds": []}
    for i in range(len(exp.teacher.seeds)):
        cfg = replace(exp.student, seed=i)
        run = train_student(cfg, reader, [i], None if scale.name == "ci" else root / f"seed{i}", progress=progress)
        roll = game_rollout(run.model, exp.teacher.dqn.env_id, num_envs=exp.num_envs, episodes=exp.eval_episodes,
                            context_steps=cfg.context_steps, seed=2000 + i,
                            teacher=teacher_network(teachers, exp.teacher, i))
        for key, value in (("returns", roll["returns"].ravel()), ("agreement", roll["agreement"]),
                           ("loss", run.loss), ("accuracy", run.accuracy), ("wall_seconds", run.wall_seconds)):
            out[key].append(value)
    return {"teacher_returns": teachers["eval_returns"][:, -1], **{k: np.array(v) for k, v in out.items()}}


def game_students_name(exp: GameStudents) -> str:
    """The artifact name of the ED students of a game's teachers."""
    return f"ch04_ed_{exp.teacher.dqn.env_id.replace('/', '_')}"


def game_students_artifact(exp: GameStudents, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 4's ED students on the teacher's game: stored if present, else trained and stored."""
    return artifacts.cached(game_students_name(exp), exp,
                            lambda: run_game_students(exp, scale, progress), scale=scale.name, code=GAME_STUDENT_CODE)


GAME_STUDENT_CODE = (  # the source a game's student set's numbers depend on
    imitlib.transformer, imitlib.imitation, imitlib.history, imitlib.recorders,
    *TEACHER_CODE, record_minatar, recorded_minatar, minatar_histories,  # the games' data, the rollout's frames
    game_students_config, run_game_students,
)


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


def game_verdict(share: float) -> str:
    """Question 1 on the game: how much of their teachers' return the ED students recover."""
    if not np.isfinite(share):
        return "not measured at this scale yet (the MinAtar students are not trained)"
    if share >= RECOVERY_BAR:
        return f"yes: the ED students recover {share:.0%} of their teachers' return"
    return f"only partly: the ED students recover {share:.0%} of their teachers' return"
