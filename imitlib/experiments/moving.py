"""Chapter 6, part 3: continual learning proper. The goal moves during a long rollout, more often than in any
history the student read; does the frozen student recover after each move, as the Q-learner does?

Two student sets meet the same moves on the held-out goals (each goal moves within the held-out split):

* chapter 4's AD students, trained on histories where the goal never moved;
* AD students trained on histories recorded *with* :data:`TRAIN_MOVES` goal moves (their best chance), tested
  with :data:`TEST_MOVES`, more than they saw.

Beside them, the source Q-learner meets the same plan, learning from scratch as the students start from an empty
context. Recovery is read two ways: episodes after a move until the return reaches :data:`RECOVERED` of the new
optimum (chapter 1's measure), and where each learner settles at the end of every stretch between moves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import imitlib.tabular
from imitlib import artifacts, stats
from imitlib.envs.darkroom import optimal_return, random_policy_return
from imitlib.experiments.beyond import MODES, SMOOTH_POINTS, side, stored_students, train_frozen, train_frozen_seed
from imitlib.experiments.common import CLI, _student_folder, load_or_explain, recorded_dataset
from imitlib.experiments.histories import (
    DarkRoomHistories,
    goal_split,
    history_sources,
    move_plan,
    record_darkroom,
    source_runs,
)
from imitlib.experiments.students import (
    DARKROOM_STUDENT_CODE,
    DarkRoomStudents,
    darkroom_students_config,
    student_goals,
)
from imitlib.experiments.tabular import RECOVERED, episodes_to_reach
from imitlib.scale import Scale

TRAIN_MOVES = 2  # goal moves in every history the moves-trained students read
TEST_MOVES = 4  # goal moves in a test rollout: more than any history held
SETTLED_SHARE = 0.25  # where a learner settled between moves: its mean over the last quarter of the stretch
PLAN_SEED = 11  # the test's goal moves (the same plan for students and learner)


@dataclass(frozen=True)
class MovingTest:
    """Frozen AD students and the source Q-learner on held-out goals that move ``test_moves`` times."""

    students: DarkRoomStudents
    train_moves: int  # goal moves in the students' training histories (0: chapter 4's students)
    test_moves: int
    episodes: int  # per rollout: as many as a history holds
    repeats: int = 2  # rollouts per held-out goal
    plan_seed: int = PLAN_SEED


def moving_config(scale: Scale, train_moves: int = 0) -> MovingTest:
    """The part at a scale: chapter 4's AD recipe; rollouts as long as a history, with :data:`TEST_MOVES` moves."""
    if not 0 <= train_moves < TEST_MOVES:
        raise ValueError(f"train_moves must be in 0..{TEST_MOVES - 1} (fewer than the test's {TEST_MOVES}), "
                         f"got {train_moves}")
    students = darkroom_students_config(scale, "ad")
    return MovingTest(students=students, train_moves=train_moves, test_moves=TEST_MOVES,
                      episodes=students.data.episodes)


def moving_name(test: MovingTest) -> str:
    """The artifact name: how many moves the students' histories held."""
    return "ch06_moves_ad" if test.train_moves == 0 else f"ch06_moves_trained{test.train_moves}_ad"


def moving_histories(data: DarkRoomHistories, moves: int, scale: Scale) -> Path:
    """Chapter 3's Dark Room histories recorded again with ``moves`` goal moves per run (seconds)."""
    from imitlib.history import FORMAT_VERSION

    return recorded_dataset(f"darkroom-{data.source}-moves{moves}-v{FORMAT_VERSION}", data, scale,
                            lambda folder: record_darkroom(data, folder, moves=moves))


def moving_students(test: MovingTest, scale: Scale, progress: bool) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Chapter 4's students, or students trained here on histories with goal moves (resumable)."""
    if test.train_moves == 0:
        return stored_students(test.students, scale, progress)
    history = moving_histories(test.students.data, test.train_moves, scale) / "learning"
    root = None if scale.name == "ci" else _student_folder(moving_name(test), test, scale)
    return train_frozen(moving_name(test), test.students.student, test.students.seeds, history,
                        student_goals(test.students), root, progress)


def test_plan(test: MovingTest) -> np.ndarray:
    """``(episodes, 16)``: every held-out goal and where it moves, within the held-out goals."""
    _, held = goal_split(test.students.data)
    return move_plan(held, test.episodes, test.test_moves, seed=test.plan_seed, among=held)


def run_moving(test: MovingTest, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """The students (sampled and greedy) and the source learner (behaviour and greedy) on the same moving goals."""
    from imitlib.imitation import darkroom_rollout

    models, out = moving_students(test, scale, progress)
    plan = test_plan(test)
    columns = np.repeat(np.arange(plan.shape[1]), test.repeats)
    for mode in MODES:  # returns are whole numbers 0..horizon: stored as bytes
        out[f"{mode}_returns"] = np.stack([
            darkroom_rollout(model, plan[:, columns], test.episodes, greedy=mode == "greedy", seed=8000 + i,
                             context_episodes=test.students.student.context_episodes)["returns"]
            for i, model in enumerate(models)]).astype(np.uint8)  # (seeds, goals * repeats, episodes)
    data = replace(test.students.data, runs_per_goal=len(models))  # one learner per student seed, on every goal
    _, seeds = source_runs(data, plan[0])  # the first runs replay the recorded ones until the first move
    learner = imitlib.tabular.q_learning(history_sources(data.episodes)[data.source],
                                         plan[:, np.repeat(np.arange(plan.shape[1]), len(models))], seeds,
                                         test.episodes, evaluate_greedy=True)
    out["source_sampled"], out["source_greedy"] = (learner.returns.T.astype(np.uint8),
                                                   learner.greedy_returns.T.astype(np.uint8))  # (runs, episodes)
    out["plan"] = plan.astype(np.uint8)
    return out


def moving_artifact(test: MovingTest, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """A set's stored result, or computed and stored (records histories and trains students first if needed)."""
    return artifacts.cached(moving_name(test), test, lambda: run_moving(test, scale, progress), scale=scale.name,
                            code=(*DARKROOM_STUDENT_CODE, move_plan, source_runs, train_frozen, train_frozen_seed,
                                  stored_students, moving_histories, moving_students, test_plan, run_moving))


def moving_command(train_moves: int) -> str:
    """The command that computes a set (``{scale}`` left for :func:`load_or_explain`)."""
    return f"{CLI} beyond --part moves --train-moves {train_moves} --scale {{scale}}"


MOVING_SETS = (0, TRAIN_MOVES)  # chapter 4's students; students trained on histories with moves


def load_moving(scale: Scale, train_moves: int) -> artifacts.Artifact | None:
    """A set's stored result (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: moving_artifact(moving_config(scale, train_moves), scale), scale,
                           moving_command(train_moves))


# --------------------------------------------------------------------------------------------------
# Reading the result


def stretches(art: Any) -> list[tuple[int, int]]:
    """The episodes between moves: ``[(start, end), ...]``, the first before any move."""
    plan = np.asarray(art["plan"])
    starts = [0, *(np.flatnonzero((np.diff(plan, axis=0) != 0).any(1)) + 1).tolist()]
    return list(zip(starts, [*starts[1:], plan.shape[0]], strict=True))


def curves(art: Any, who: str, mode: str) -> np.ndarray:
    """``(seeds, episodes)``: the students' mean return over goals per seed; the learner's per recorded run index
    (its runs are its seeds)."""
    if who == "student":
        return np.asarray(art[f"{mode}_returns"], dtype=float).mean(axis=1)
    runs = np.asarray(art[f"source_{mode}"], dtype=float)  # (goals * runs_per_goal, episodes)
    per_goal = int(len(runs) // np.asarray(art["plan"]).shape[1])
    return runs.reshape(-1, per_goal, runs.shape[1]).mean(axis=0)  # run r of every goal: one learner seed


def optimum(art: Any) -> np.ndarray:
    """The best return at every episode, averaged over the held-out goals as they stand then."""
    plan = np.asarray(art["plan"])
    table = np.array([optimal_return(int(g)) for g in range(81)])
    return table[plan].mean(axis=1)


def recovery(art: Any, who: str, mode: str) -> np.ndarray:
    """``(seeds, moves)``: episodes after each move until the 10-episode running mean reaches :data:`RECOVERED`
    of the new optimum (NaN: not before the next move)."""
    best = optimum(art)
    return np.stack([episodes_to_reach(curves(art, who, mode)[:, a:b], RECOVERED * best[a])
                     for a, b in stretches(art)[1:]], axis=1)


def settled(art: Any, who: str, mode: str) -> np.ndarray:
    """``(seeds, stretches)``: the mean return over the last :data:`SETTLED_SHARE` of every stretch, as a share of
    the optimum there. (A share, not a raw return: after a move the goals sit at other distances from the start,
    so raw returns would compare easier goals with harder ones. The first reading used raw returns; this one was
    chosen after the first lab result showed the optimum itself changing between stretches.)"""
    c, best = curves(art, who, mode), optimum(art)
    ends = [slice(b - max(1, round(SETTLED_SHARE * (b - a))), b) for a, b in stretches(art)]
    return np.stack([c[:, e].mean(1) / best[e].mean() for e in ends], 1)


def drop_after_moves(art: Any, who: str, mode: str) -> stats.Interval:
    """Where it settled before the first move minus where it settled after the moves (mean over the later
    stretches), per seed, with its 95% CI."""
    levels = settled(art, who, mode)
    return stats.bootstrap_ci(levels[:, 0] - levels[:, 1:].mean(1))


def moves_verdict(drop: stats.Interval) -> str:
    """Words for :func:`drop_after_moves`: lower or higher only when the whole 95% CI is on that side of zero."""
    return {"missing": "not measured at this scale yet",
            "above": "settles lower after the moves than before the first (the 95% CI of the drop lies above 0)",
            "below": "settles higher after the moves than before the first (the 95% CI of the drop lies below 0)",
            "contains": "settles where it stood before the first move (the drop's 95% CI contains 0)"}[side(drop)]


WHO = (("student", "sampled"), ("student", "greedy"), ("source", "sampled"), ("source", "greedy"))


def summary(art: Any) -> dict[str, dict[str, Any]]:
    """Per learner and decoding: where it settled before the first move and after, the drop and its verdict, and
    the episodes it took to recover after a move."""
    out = {}
    for who, mode in WHO:
        levels, drop = settled(art, who, mode), drop_after_moves(art, who, mode)
        out[f"{who}_{mode}"] = {"before": float(levels[:, 0].mean()), "after": float(levels[:, 1:].mean()),
                                "drop": drop, "verdict": moves_verdict(drop),
                                "recovery": recovery_text(recovery(art, who, mode))}
    return out


def recovery_text(episodes: np.ndarray) -> str:
    """Words for :func:`recovery` ``(seeds, moves)``, to follow "recovers": the median over the moves it recovered
    from, and how many."""
    ok = episodes[~np.isnan(episodes)]
    if ok.size == 0:
        return f"never before the next move (0 of {episodes.size} moves over all seeds)"
    return f"in {np.median(ok):.0f} episodes (median; recovered from {ok.size} of {episodes.size} moves over all seeds)"


def plot_moving(ax: Any, art: Any, mode: str, title: str, legend: bool = True) -> None:
    """Return along the rollout for the frozen students and the learner, with the moves, the optimum of the goals
    as they stand, and random play."""
    from imitlib import plots

    smooth = max(1, art["plan"].shape[0] // SMOOTH_POINTS)
    plots.curve_with_ci(ax, curves(art, "student", mode), label=f"frozen AD student ({mode})",
                        color=plots.COLORS["ad"], smooth=smooth)
    plots.curve_with_ci(ax, curves(art, "source", mode), label=f"Q-learner ({mode})", color=plots.COLORS["learner"],
                        smooth=smooth, linestyle="--")
    ax.plot(optimum(art), color=plots.COLORS["optimal"], ls="--", lw=1.2, label="optimal (goals as they stand)")
    plan = np.asarray(art["plan"])
    plots.reference_line(ax, float(np.mean([random_policy_return(int(g)) for g in plan.ravel()])),
                         label="random policy", role="random")
    for i, (start, _) in enumerate(stretches(art)[1:]):
        plots.event_line(ax, start, label="the goal moves" if i == 0 else "_move")
    plots.label(ax, "episode of the rollout", "return", title, legend=legend)


TABLE_HEADER = ["students trained on", "who", "settled before the first move (share of optimum)", "after the moves",
                "drop in share [95% CI]", f"recovers to {RECOVERED:.0%} of the optimum"]
SET_LABELS = {0: "histories without moves", TRAIN_MOVES: f"histories with {TRAIN_MOVES} moves"}


def table_rows(arts: dict[int, Any]) -> list[list[Any]]:
    """One row per student set and learner/decoding (the Q-learner once, from the first set)."""
    rows = []
    for i, (moves, art) in enumerate(arts.items()):
        for who, row in summary(art).items():
            if who.startswith("source") and i > 0:
                continue  # the same learner on the same plan: shown once
            name = "Q-learner" if who.startswith("source") else "frozen AD student"
            rows.append([SET_LABELS.get(moves, f"{moves} moves") if name != "Q-learner" else "(learns)",
                         f"{name}, {who.split('_')[1]}", f"{row['before']:.0%}", f"{row['after']:.0%}",
                         str(row["drop"]), row["recovery"]])
    return rows


def numbers(arts: dict[int, Any]) -> dict[str, Any]:
    """What the prose cites, under chapter 6's names; a set not computed reads as NaN and "not computed"."""
    from imitlib.experiments.common import MISSING

    out: dict[str, Any] = {"ch6_test_moves": TEST_MOVES, "ch6_train_moves": TRAIN_MOVES, "ch6_recovered": RECOVERED,
                           "ch6_settled_share": SETTLED_SHARE}
    for moves in MOVING_SETS:
        art = arts.get(moves)
        rows = summary(art) if art is not None else {}
        for who, mode in WHO:
            row = rows.get(f"{who}_{mode}")
            key = f"ch6_moves{moves}_{who}_{mode}"
            out[f"{key}_before"] = row["before"] if row else float("nan")
            out[f"{key}_after"] = row["after"] if row else float("nan")
            out[f"{key}_drop"] = str(row["drop"]) if row else MISSING
            out[f"{key}_verdict"] = row["verdict"] if row else MISSING
            out[f"{key}_recovery"] = row["recovery"] if row else MISSING
    out[f"ch6_moves{TRAIN_MOVES}_sentence"] = moves_sentence(arts.get(TRAIN_MOVES), arts.get(0))
    return out


def moves_sentence(art: Any | None, without: Any | None = None) -> str:
    """The prose's sentence on the students trained with moves, against chapter 4's students (``without``) where
    both are stored, or that they are not computed (and how)."""
    if art is None:
        return "The students trained on histories with moves are not computed at this scale yet."
    row = summary(art)["student_sampled"]
    text = (f"Trained on histories with moves, the students settle at {row['before']:.0%} of the optimum before the "
            f"first move and {row['after']:.0%} after: the student {row['verdict']}, recovering "
            f"{row['recovery']}.")
    return text if without is None else f"{text} {training_moves_effect(art, without)}"


def training_moves_effect(art: Any, without: Any) -> str:
    """Did seeing moves in training help? The probability that a student trained with moves settles higher after
    the moves than one trained without (sampled), with its 95% CI; "helped" or "hurt" only when the CI excludes
    0.5 (the chapter's rule: the whole interval on one side)."""
    after = {k: settled(a, "student", "sampled")[:, 1:].mean(1) for k, a in (("with", art), ("without", without))}
    chance = stats.probability_of_improvement(after["with"], after["without"])
    word = {"above": "helped", "below": "hurt", "contains": "made no difference we can resolve",
            "missing": "was not measured"}[side(chance, 0.5)]
    other = summary(without)["student_sampled"]
    return (f"Against chapter 4's students ({other['before']:.0%} before, {other['after']:.0%} after; recovering "
            f"{other['recovery']}), seeing moves in training {word}: a student trained with them settles higher "
            f"after the moves with probability {chance} (0.5: no difference).")
