"""Chapter 7, part 3: in-context RL's best shot at a new game. Leave one game out.

DQN teachers learn four MinAtar games with the recorder attached (chapter 2's settings and seeds, chapter 3's
recording): Breakout, Asterix, Freeway and Seaquest. AD students train on all four games' learning histories
together (chapter 6's game recipe: same model, context and update budget) and then play Space Invaders, which none of
them saw, frozen, for as many environment steps as a teacher trains there; and, as the reference for what they can do
at all, a quarter as long on Breakout, which they saw. A second set trains on the same histories with every history
relabelled its own way (channels and actions permuted, :mod:`imitlib.multigame`), so that nothing but the history
itself can tell the student what a channel or an action means (Kirsch et al. 2023; Headless-AD).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import imitlib.multigame
from imitlib import artifacts, plots
from imitlib.experiments import transfer
from imitlib.experiments.beyond import MODES, side
from imitlib.experiments.common import CLI, _student_folder, load_or_explain
from imitlib.experiments.game_beyond import game_beyond_config
from imitlib.experiments.game_students import GAME_STUDENT_CODE
from imitlib.experiments.new_game import BINS, midpoint_curve
from imitlib.experiments.teacher import TeacherExperiment, minatar_histories, teacher_experiment
from imitlib.imitation import StudentConfig
from imitlib.scale import Scale

TRAIN_GAMES = ("MinAtar/Breakout-v0", "MinAtar/Asterix-v0", "MinAtar/Freeway-v0", "MinAtar/Seaquest-v0")
SEEN_GAME = "MinAtar/Breakout-v0"  # the reference: a game the students saw
SEEN_SHARE = 0.25  # ... played for a quarter of the new game's budget
RELABEL_COPIES = 4  # relabelled set: every history shown four times, each copy permuted its own way
RELABEL_SEED = 0


@dataclass(frozen=True)
class LeaveOneOut:
    """AD students on several games' learning histories, tested frozen on one they never saw."""

    teachers: tuple[TeacherExperiment, ...]  # one per training game, chapter 2's settings
    student: StudentConfig  # chapter 6's game AD recipe (seed 0; student i has seed i)
    seeds: tuple[int, ...]
    relabel: bool  # every history relabelled (per copy) or read as recorded
    every: int  # the recordings' subsampling (part of their names)
    new_game: str
    steps: int  # environment steps on the new game per student and decoding (a teacher's budget)
    num_envs: int


def leave_one_out_config(scale: Scale, relabel: bool) -> LeaveOneOut:
    """The part at a scale: the scale's teachers on the four training games, chapter 6's AD recipe."""
    game = game_beyond_config(scale, 1.0).students
    teachers = tuple(teacher_experiment(scale, env) for env in TRAIN_GAMES[:scale.transfer.leave_one_out_games])
    return LeaveOneOut(teachers=teachers, student=game.student, seeds=tuple(range(len(game.teacher.seeds))),
                       relabel=relabel, every=game.every, new_game=transfer.NEW_GAME, steps=game.teacher.dqn.steps,
                       num_envs=scale.transfer.game_envs)


def training_history(test: LeaveOneOut, scale: Scale) -> imitlib.multigame.MultiGameHistory:
    """Every training game's recorded learning histories as one dataset (recording any game not yet recorded: a
    teacher training each)."""
    from imitlib.history import HistoryReader

    readers = [HistoryReader(minatar_histories(t, scale, every=test.every) / "learning") for t in test.teachers]
    if test.relabel:
        return imitlib.multigame.MultiGameHistory(readers, relabel_seed=RELABEL_SEED, copies=RELABEL_COPIES)
    return imitlib.multigame.MultiGameHistory(readers)


def student_unit(test: LeaveOneOut, scale_name: str, seed: int, progress: bool = True) -> dict[str, np.ndarray]:
    """One seed, a sweep unit: train on every training game (resumable), then play the new and the seen game
    frozen; its curves and training loss."""
    from imitlib.imitation import game_rollout, train_student
    from imitlib.scale import get_scale

    scale = get_scale(scale_name)
    data = training_history(test, scale)
    root = _student_folder(leave_one_out_name(test), test, scale)
    run = train_student(replace(test.student, seed=seed), data, None,
                        None if scale.name == "ci" else root / f"seed{seed}", progress=progress)
    out: dict[str, np.ndarray] = {"loss": np.asarray(run.loss)}
    for game, env_id in (("new", test.new_game), ("seen", SEEN_GAME)):
        edges = np.linspace(0, budgets(test)[game], BINS + 1)
        vector_steps = budgets(test)[game] // test.num_envs
        for mode in MODES:
            roll = game_rollout(run.model, env_id, num_envs=test.num_envs, episodes=vector_steps // 2 + 1,
                                context_steps=test.student.context_steps, seed=9700 + seed, greedy=mode == "greedy",
                                max_steps=vector_steps)
            out[f"{game}_{mode}_curve"] = midpoint_curve(roll["returns"], roll["ends"], test.num_envs, edges)
    return out


def budgets(test: LeaveOneOut) -> dict[str, int]:
    """Environment steps per student and decoding: a teacher's budget on the new game, a quarter on the seen one."""
    return {"new": test.steps, "seen": round(SEEN_SHARE * test.steps)}


def record_game(teacher: TeacherExperiment, scale_name: str, every: int) -> str:
    """A sweep unit: one training game's recorded histories (a teacher's training if absent; else at once)."""
    from imitlib.scale import get_scale

    return str(minatar_histories(teacher, get_scale(scale_name), every=every))


def run_leave_one_out(test: LeaveOneOut, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Every seed's student (one sweep unit each: in process, or Ray tasks under ``--ray``), stacked by seed. The
    games are recorded first, one unit each, so that two workers never train the same teacher at once."""
    from imitlib import sweep

    sweep.run([sweep.Unit(f"record {t.dqn.env_id}", record_game, (t, scale.name, test.every)) for t in test.teachers])
    root = _student_folder(leave_one_out_name(test), test, scale)
    code = artifacts.code_hash(leave_one_out_code())  # a finished unit's kept result is read back only by this code
    units = [sweep.Unit(f"leave-one-out student {i}", student_unit, (test, scale.name, i, progress),
                        keep=None if scale.name == "ci" else str(root / f"seed{i}" / f"result-{code}.npz"))
             for i in test.seeds]
    seeds = sweep.run(units)
    out = {f"{game}_edges": np.linspace(0, steps, BINS + 1) for game, steps in budgets(test).items()}
    return out | {k: np.stack([s[k] for s in seeds]) for k in seeds[0]}


def leave_one_out_name(test: LeaveOneOut) -> str:
    """The artifact name: the held-out game, and whether the histories were relabelled."""
    return f"ch07_leave_one_out{'_relabelled' if test.relabel else ''}"


def leave_one_out_artifact(test: LeaveOneOut, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """The set's stored result, or computed and stored (records the games' teachers first: hours at ``lab``)."""
    return artifacts.cached(leave_one_out_name(test), test, lambda: run_leave_one_out(test, scale, progress),
                            scale=scale.name, code=leave_one_out_code())


def leave_one_out_code() -> tuple:
    """What computes a set's artifact (its code hash), and so what a kept unit result must have been computed by."""
    return (*GAME_STUDENT_CODE, imitlib.multigame, imitlib.augment, midpoint_curve, leave_one_out_config,
            training_history, record_game, student_unit, budgets, run_leave_one_out)


def command(relabel: bool) -> str:
    """The command that computes a set (``{scale}`` left for :func:`load_or_explain`)."""
    return f"{CLI} transfer --part leave-one-out{' --relabel' if relabel else ''} --scale {{scale}}"


SETS = (False, True)  # as recorded; relabelled per history


def runs_at(scale: Scale) -> bool:
    """The part trains on MinAtar's games (:data:`TRAIN_GAMES`), so it runs where the scale's teachers are MinAtar's
    (ci, lab), not at ``full`` (ALE)."""
    return teacher_experiment(scale).dqn.env_id in TRAIN_GAMES


def load_leave_one_out(scale: Scale) -> dict[bool, artifacts.Artifact]:
    """The scale's sets that are stored (at ``ci``: computed); a missing one is named with its command."""
    if not runs_at(scale):
        print(f"leave one game out is a MinAtar experiment: not run at {scale.name} scale (ALE); see it at lab")
        return {}
    out = {r: load_or_explain(lambda r=r: leave_one_out_artifact(leave_one_out_config(scale, r), scale), scale,
                              command(r)) for r in scale.transfer.leave_one_out_sets}
    return {r: art for r, art in out.items() if art is not None}


# --------------------------------------------------------------------------------------------------
# Reading the result

LABELS = {False: "AD on other games, as recorded", True: "AD on other games, relabelled"}


def plot_leave_one_out(ax: Any, arts: dict[bool, Any], game: str, mode: str, random: float, title: str,
                       legend: bool = True, teachers: dict[str, Any] | None = None) -> None:
    """The students' return against environment steps on the new (or the seen) game, one decoding, with random
    play's and, on the new game, the DQN learning it from scratch (part 1's ``teachers``) under the same decoding."""
    from imitlib.experiments import transplant

    if game == "new" and teachers and "scratch" in teachers:
        steps, returns = transplant.curves({"scratch": teachers["scratch"]}, mode)["scratch"]
        plots.curve_with_ci(ax, returns, x=steps, label=transplant.LABELS["scratch"], color=plots.COLORS["teacher"])
    for relabel, art in arts.items():
        c = np.asarray(art[f"{game}_{mode}_curve"], dtype=float)
        edges = np.asarray(art[f"{game}_edges"], dtype=float)
        ok = np.isfinite(c).all(axis=0)
        if ok.any():
            plots.curve_with_ci(ax, c[:, ok], x=((edges[:-1] + edges[1:]) / 2)[ok], label=LABELS[relabel],
                                color=plots.COLORS["ad" if not relabel else "alt"])
    plots.reference_line(ax, random, label="random policy", role="random")
    plots.label(ax, "environment steps", "return per episode", title, legend=legend)


GAME_NAMES = {"new": "Space Invaders, unseen", "seen": "Breakout, seen"}


def table_rows(arts: dict[bool, Any], game: str, mode: str, random: float) -> list[list[Any]]:
    """Each set's start, end, gain and verdict on a game under one decoding (``random``: that game's)."""
    return [transfer.row(f"{LABELS[r]}: {GAME_NAMES[game]} ({mode})", np.asarray(arts[r][f"{game}_{mode}_curve"],
                                                                             dtype=float) if r in arts else None,
                         random) for r in SETS]


WAYS = {False: "trained on the histories as recorded", True: "trained relabelled"}


def against_random(arts: dict[bool, Any], random: float, game: str = "new", mode: str = "sampled") -> str:
    """Where each stored set's end (its 95% CI across students) sits against random play on a game, in words."""
    from imitlib.experiments.new_game import WHERE_WORDS

    where = []
    for relabel, art in sorted(arts.items()):
        edges = transfer.start_end(np.asarray(art[f"{game}_{mode}_curve"], dtype=float))
        end = "missing" if edges is None else side(edges["end"], random)
        where.append(f"{WAYS[relabel]}, they end {WHERE_WORDS[end]}")
    return "; ".join(where) + f" ({random:.2f})" if where else "not measured at this scale yet"


def setup_numbers(scale: Scale) -> dict[str, Any]:
    """The part's settings as the prose states them."""
    test = leave_one_out_config(scale, True)
    names = [t.dqn.env_id.removeprefix("MinAtar/").removesuffix("-v0") for t in test.teachers]
    return {"ch7_loo_games": ", ".join(names[:-1]) + f" and {names[-1]}", "ch7_loo_n_games": len(names),
            "ch7_loo_copies": RELABEL_COPIES, "ch7_loo_seen_share": SEEN_SHARE}


def numbers(arts: dict[bool, Any], randoms: dict[str, float]) -> dict[str, Any]:
    """What the prose cites: each set's summary per game and decoding; ``randoms``: random play's return on the
    ``new`` and the ``seen`` game."""
    out = {f"ch7_loo_vs_random_{game}": against_random(arts, randoms[game], game) for game in ("new", "seen")}
    for r, game, mode in itertools.product(SETS, ("new", "seen"), MODES):
        curves = np.asarray(arts[r][f"{game}_{mode}_curve"], float) if r in arts else None
        out |= transfer.prose(f"ch7_loo_{'relabelled' if r else 'plain'}_{game}_{mode}", curves, randoms[game])
    return out
