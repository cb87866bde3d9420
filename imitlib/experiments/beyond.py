"""Chapter 6 (Question 2): can a frozen student keep improving past the history it imitated?

Parts built so far:

* ``long``: chapter 4's AD students (trained on whole 400-episode histories at ``lab``) rolled out frozen on the
  held-out goals for ``scale.beyond.long_factor`` times as many episodes as a history holds (5 at ``lab``:
  2,000 episodes after 400-episode histories).
* ``truncated``: AD students trained on only the first fraction f of every training history (same model and update
  budget), rolled out just as long. Beside each: the **data ceiling** of the kept part (the best level its
  recorded behaviour reached, and the source's greedy policy at the cut) and the **source continuing** past the cut.

A verdict compares the student's plateau (its mean over the last :data:`PLATEAU_SHARE` of the rollout) with the
data ceiling under the same decoding: sampled student against recorded (epsilon-greedy) behaviour, greedy student
against the source's greedy policy. The thresholds were fixed before any lab run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import imitlib.history
import imitlib.tabular
from imitlib import artifacts, stats
from imitlib.experiments.common import CLI, _student_folder, load_or_explain
from imitlib.experiments.histories import darkroom_histories, goal_split, history_sources, source_runs
from imitlib.experiments.students import (
    DARKROOM_STUDENT_CODE,
    DarkRoomStudents,
    darkroom_students_artifact,
    darkroom_students_config,
    student_goals,
    student_network,
)
from imitlib.scale import Scale

FRACTIONS = (0.1, 0.25, 0.5)  # truncated histories: the first 10%, 25% and 50% of every training history
PLATEAU_SHARE = 0.1  # a student's plateau: its mean return over the last 10% of the rollout (lab: 200 episodes)
CEILING_WINDOW = 10  # the data's best level: the best 10-episode running mean of the kept part (one lucky
#                      episode is not a level the data reached)
MODES = ("sampled", "greedy")  # how the frozen student acts; compared with the data under the same decoding


@dataclass(frozen=True)
class BeyondTest:
    """Frozen AD students on the held-out goals for a long rollout; ``fraction`` < 1 trains them on truncated
    histories first (1: chapter 4's stored students)."""

    students: DarkRoomStudents
    fraction: float
    episodes: int  # per rollout
    repeats: int = 2  # rollouts per held-out goal


def beyond_config(scale: Scale, fraction: float = 1.0) -> BeyondTest:
    """The test at a scale: chapter 4's AD recipe, rollouts ``long_factor`` times a history's length."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    students = darkroom_students_config(scale, "ad")
    return BeyondTest(students=students, fraction=fraction,
                      episodes=scale.beyond.long_factor * students.data.episodes)


def kept_episodes(n: int, fraction: float) -> int:
    """Episodes kept of an ``n``-episode history: the first ``fraction`` of it, rounded to the nearest episode."""
    return max(1, math.floor(fraction * n + 0.5))


def truncate_history(reader: Any, path: str | Path, fraction: float) -> Any:
    """A copy of a history keeping only the first ``fraction`` of each run's recorded episodes (runs unmixed)."""
    counts = {run: kept_episodes(reader.run_episodes(run), fraction) for run in reader.runs()}
    return keep_first(reader, path, counts, {"truncated_to": fraction})


def keep_first(reader: Any, path: str | Path, counts: dict[int, int], note: dict[str, Any]) -> Any:
    """A copy of a history keeping the first ``counts[run]`` recorded episodes of every run (runs unmixed), with
    ``note`` added to its metadata."""
    from imitlib.history import Episode, HistoryReader, HistoryWriter

    m = reader.manifest
    with HistoryWriter(path, obs_kind=m["obs_kind"], obs_shape=m["obs_shape"], n_actions=m["n_actions"],
                       mode="overwrite", meta={**m["meta"], **note}) as w:
        for run in reader.runs():
            w.set_run(run, **reader.task(run))
            first = int(np.searchsorted(reader.episodes["run"], run))  # the run's first episode (sorted by run)
            for i in range(counts[run]):
                ep = reader.episode(first + i)
                w.add(Episode(run=run, episode=int(ep["episode"][0]),
                              **{f: ep[f] for f in imitlib.history.FIELDS}))
    return HistoryReader(path)


def beyond_name(test: BeyondTest) -> str:
    """The artifact name: chapter 6, and the share of each history the students saw."""
    return "ch06_long_ad" if test.fraction == 1 else f"ch06_truncated{round(100 * test.fraction)}_ad"


def train_frozen(name: str, student: Any, seeds: Sequence[int], history: Path, goals: Sequence[int],
                 root: Path | None, progress: bool) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Train one student per seed on the runs of ``history`` whose goal is in ``goals`` (resumable under ``root``;
    None at ``ci``), then freeze them: the models, and their loss, accuracy and wall time per seed. One sweep unit
    per seed, here or as Ray tasks under ``--ray`` (:mod:`imitlib.sweep`)."""
    from imitlib import sweep

    units = [sweep.Unit(f"{name} seed {seed}", train_frozen_seed,
                        (student, str(history), [int(g) for g in goals], seed,
                         None if root is None else str(root / f"seed{seed}"), progress)) for seed in seeds]
    trained = sweep.run(units)
    return [t.model for t in trained], {"loss": np.array([t.loss for t in trained]),
                                        "accuracy": np.array([t.accuracy for t in trained]),
                                        "wall_seconds": np.array([t.wall_seconds for t in trained])}


def train_frozen_seed(student: Any, history: str, goals: list[int], seed: int, run_dir: str | None,
                      progress: bool = True) -> Any:
    """One seed's student, a sweep unit: it opens the history itself (a path every worker sees)."""
    from imitlib.history import HistoryReader
    from imitlib.imitation import train_student

    reader = HistoryReader(history)
    runs = [r for r in reader.runs() if reader.task(r)["goal"] in set(goals)]
    return train_student(replace(student, seed=seed), reader, runs, run_dir, progress=progress)


def stored_students(exp: DarkRoomStudents, scale: Scale, progress: bool) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Chapter 4's AD students (trained on whole histories), frozen, with their training loss and accuracy."""
    art = darkroom_students_artifact(exp, scale, progress)
    return [student_network(art, exp.student, i) for i in range(len(exp.seeds))], {
        "loss": art["loss"], "accuracy": art["accuracy"]}


def frozen_students(test: BeyondTest, scale: Scale, progress: bool) -> tuple[list[Any], dict[str, np.ndarray]]:
    """The frozen students: chapter 4's (whole histories), or trained here on the truncated ones (resumable)."""
    from imitlib.history import HistoryReader

    exp = test.students
    if test.fraction == 1:
        return stored_students(exp, scale, progress)
    folder = darkroom_histories(exp.data, scale)
    part = folder / f"learning-first{round(100 * test.fraction)}"
    if not (part / "manifest.json").exists():
        truncate_history(HistoryReader(folder / "learning"), part.with_name(part.name + ".partial"), test.fraction)
        os.replace(part.with_name(part.name + ".partial"), part)
    root = None if scale.name == "ci" else _student_folder(beyond_name(test), test, scale)
    return train_frozen(beyond_name(test), exp.student, exp.seeds, part, student_goals(exp), root, progress)


def source_continuing(test: BeyondTest, goals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The recorded source learners on ``goals`` (every recorded run of each), learning on for as long as the
    students play: behaviour and greedy return per episode, each ``(runs, episodes)``. Same seeds and settings as
    the recording, so its first episodes are the recorded ones."""
    data = test.students.data
    qcfg = history_sources(data.episodes)[data.source]  # the schedule the data was recorded with
    runs, seeds = source_runs(data, goals)
    result = imitlib.tabular.q_learning(qcfg, runs, seeds, test.episodes, evaluate_greedy=True)
    return result.returns.T, result.greedy_returns.T


def run_beyond(test: BeyondTest, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Roll every seed's frozen student out on the held-out goals, sampled and greedy, and the source beside it."""
    from imitlib.imitation import darkroom_rollout

    models, out = frozen_students(test, scale, progress)
    _, held = goal_split(test.students.data)
    goals = np.repeat(held, test.repeats)
    out["goals"] = goals
    for mode in MODES:  # returns are whole numbers 0..horizon: stored as bytes
        out[f"{mode}_returns"] = np.stack([
            darkroom_rollout(model, goals, test.episodes, context_episodes=test.students.student.context_episodes,
                             greedy=mode == "greedy", seed=6000 + i)["returns"] for i, model in enumerate(models)
        ]).astype(np.uint8)  # (seeds, goals * repeats, episodes)
    behaviour, greedy = source_continuing(test, held)
    out["source_sampled"], out["source_greedy"] = behaviour.astype(np.uint8), greedy.astype(np.uint8)
    out["kept"] = np.array(kept_episodes(test.students.data.episodes, test.fraction))
    return out


def beyond_artifact(test: BeyondTest, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """A part's stored result, or computed and stored (trains the truncated students first)."""
    return artifacts.cached(beyond_name(test), test, lambda: run_beyond(test, scale, progress), scale=scale.name,
                            code=(*DARKROOM_STUDENT_CODE, kept_episodes, truncate_history, keep_first, beyond_name,
                                  frozen_students, train_frozen, train_frozen_seed, stored_students, source_runs,
                                  source_continuing, run_beyond))


def beyond_command(fraction: float) -> str:
    """The command that computes a part (``{scale}`` left for :func:`load_or_explain`)."""
    part = "long" if fraction == 1 else f"truncated --fraction {fraction}"
    return f"{CLI} beyond --part {part} --scale {{scale}}"


def load_beyond(scale: Scale, fraction: float) -> artifacts.Artifact | None:
    """A part's stored result (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: beyond_artifact(beyond_config(scale, fraction), scale), scale,
                           beyond_command(fraction))


# --------------------------------------------------------------------------------------------------
# Reading a result: plateau, data ceiling, verdict


def per_seed(art: Any, mode: str) -> np.ndarray:
    """Mean return per training seed and episode over the held-out goals and repeats: ``(seeds, episodes)``."""
    return np.asarray(art[f"{mode}_returns"], dtype=float).mean(axis=1)


def plateau_per_seed(curves: np.ndarray) -> np.ndarray:
    """Each seed's mean return over the last :data:`PLATEAU_SHARE` of its rollout (empty bins skipped)."""
    n = max(1, round(PLATEAU_SHARE * curves.shape[1]))
    return np.nanmean(np.asarray(curves, dtype=float)[:, -n:], axis=1)


def plateau(curves: np.ndarray) -> stats.Interval:
    """Mean return over the last :data:`PLATEAU_SHARE` of each seed's rollout, with its 95% CI across seeds."""
    return stats.bootstrap_ci(plateau_per_seed(curves))


def rise_after_cut(curves: np.ndarray, kept: int) -> stats.Interval:
    """Did the curve keep rising after the episode count it was trained on? Per seed, the plateau minus the mean
    over the same number of episodes right after episode ``kept``, with its 95% CI across seeds."""
    n = max(1, round(PLATEAU_SHARE * curves.shape[1]))
    return stats.bootstrap_ci(curves[:, -n:].mean(axis=1) - curves[:, kept:kept + n].mean(axis=1))


def side(interval: stats.Interval, value: float = 0.0) -> str:
    """Where a 95% CI lies against ``value``: "above" or "below" only when all of it does, else "contains";
    "missing" when it was not measured. Every verdict of chapter 6 is this rule in its own words."""
    if not np.isfinite(float(interval.estimate)):
        return "missing"
    if float(interval.low) > value:
        return "above"
    if float(interval.high) < value:
        return "below"
    return "contains"


def trend(rise: stats.Interval) -> str:
    """Words for :func:`rise_after_cut`: rising or falling only when the whole 95% CI is on that side of zero."""
    return {"missing": "was not measured at this scale yet", "above": "kept rising", "below": "fell",
            "contains": "held level (no change beyond its 95% CI)"}[side(rise)]


def data_ceiling(source: np.ndarray, kept: int) -> float:
    """The best level the source reached within its first ``kept`` episodes: the highest
    :data:`CEILING_WINDOW`-episode running mean of its mean-over-runs return (``source`` is ``(runs, episodes)``)."""
    mean = np.asarray(source, dtype=float)[:, :kept].mean(axis=0)
    return float(stats.running_mean(mean, min(CEILING_WINDOW, kept)).max())


def verdict(student: stats.Interval, ceiling: float) -> str:
    """Where the plateau sits against the data ceiling: above it only if the whole 95% CI is above it."""
    return {"missing": "not measured at this scale yet",
            "above": "beyond its data: the plateau's 95% CI lies above the data ceiling",
            "below": "below its data: the plateau's 95% CI lies below the data ceiling",
            "contains": "at its data: the plateau's 95% CI contains the data ceiling"}[side(student, ceiling)]


def summary(art: Any) -> dict[str, dict[str, Any]]:
    """Per decoding: the student's plateau, the data ceiling under that decoding, the source at the same episode,
    and the verdict."""
    kept = int(art["kept"])
    out = {}
    for mode in MODES:
        student = plateau(per_seed(art, mode))
        source = np.asarray(art[f"source_{mode}"], dtype=float)
        ceiling = data_ceiling(source, kept)
        n = max(1, round(PLATEAU_SHARE * source.shape[1]))
        out[mode] = {"plateau": student, "ceiling": ceiling, "source_end": float(source[:, -n:].mean()),
                     "rise": rise_after_cut(per_seed(art, mode), kept), "verdict": verdict(student, ceiling)}
    return out


def references(art: Any) -> dict[str, float]:
    """The floor and the ceiling every figure shows: uniform random play and the optimal return, averaged over the
    goals the students were tested on."""
    from imitlib.envs.darkroom import optimal_return, random_policy_return

    goals = np.asarray(art["goals"]).tolist()
    return {"random": float(np.mean([random_policy_return(g) for g in goals])),
            "optimal": float(np.mean([optimal_return(g) for g in goals]))}


def context_success(art: Any, mode: str, context_episodes: int) -> np.ndarray:
    """Per seed and episode, the share of the episodes in the student's context (the ``context_episodes - 1``
    before it) that reached the goal: what the student had to go on. ``(seeds, episodes - context + 1)``."""
    found = (np.asarray(art[f"{mode}_returns"]) > 0).astype(float)  # (seeds, rollouts, episodes)
    k = max(1, context_episodes - 1)
    return stats.running_mean(found, k).mean(axis=1)[:, :-1]  # entry i: episodes i .. i+k-1, the context of i+k


SMOOTH_POINTS = 100  # curves smoothed to about 100 points: a 2,000-episode rollout averages 20 episodes a point


def plot_part(ax: Any, art: Any, mode: str, title: str, legend: bool = True) -> None:
    """A frozen student's return along its long rollout beside the source learning on, with the data ceiling,
    the cut (where its training history ended), random play and the optimum."""
    from imitlib import plots

    curves = per_seed(art, mode)
    smooth = max(1, curves.shape[1] // SMOOTH_POINTS)
    source = np.asarray(art[f"source_{mode}"], dtype=float)
    plots.curve_with_ci(ax, curves, label=f"frozen AD student ({mode})", color=plots.COLORS["ad"], smooth=smooth)
    plots.curve_with_ci(ax, source, label=f"source learner, learning on ({mode})", color=plots.COLORS["learner"],
                        smooth=smooth, linestyle="--")
    kept = int(art["kept"])
    ax.axhline(data_ceiling(source, kept), color=plots.COLORS["alt"], lw=1.2, ls=":", label="data ceiling")
    plots.event_line(ax, kept, label="end of its training history")
    refs = references(art)
    plots.reference_line(ax, refs["random"], label="random policy", role="random")
    plots.reference_line(ax, refs["optimal"], label="optimal", role="optimal")
    plots.label(ax, "episode of the rollout", "return", title, legend=legend)


TABLE_HEADER = ["students trained on", "decoding", "student plateau [95% CI]", "data ceiling", "source then",
                "verdict"]


def table_rows(arts: dict[float, Any]) -> list[list[Any]]:
    """One row per part and decoding: what the chapter's table shows."""
    rows = []
    for fraction, art in sorted(arts.items()):
        what = "whole histories" if fraction == 1 else f"first {fraction:.0%} of each history"
        for mode, row in summary(art).items():
            rows.append([what, mode, str(row["plateau"]), f"{row['ceiling']:.2f}", f"{row['source_end']:.2f}",
                         row["verdict"].split(":")[0]])
    return rows


PARTS = (1.0, *FRACTIONS)  # the chapter's parts: whole histories, then each truncation


def parts(scale: Scale) -> tuple[float, ...]:
    """The parts a scale computes: whole histories, then the scale's truncations (ci: one, to stay quick)."""
    return (1.0, *scale.beyond.fractions)


def setup_numbers(scale: Scale) -> dict[str, Any]:
    """The chapter's settings, as the prose states them (before any result is read)."""
    test = beyond_config(scale)
    return {"ch6_history_episodes": test.students.data.episodes, "ch6_rollout_episodes": test.episodes,
            "ch6_long_factor": scale.beyond.long_factor, "ch6_plateau_share": PLATEAU_SHARE,
            "ch6_plateau_episodes": max(1, round(PLATEAU_SHARE * test.episodes)),
            "ch6_ceiling_window": CEILING_WINDOW, "ch6_seeds": len(test.students.seeds),
            "ch6_context_episodes": test.students.student.context_episodes,
            "ch6_updates": test.students.student.updates, "ch6_train_goals": test.students.data.train_goals}


def numbers(arts: dict[float, Any], context_episodes: int) -> dict[str, Any]:
    """What the prose cites, under chapter 6's names; a part not computed yet reads as NaN and "not computed"."""
    from imitlib.experiments.common import MISSING

    out: dict[str, Any] = {}
    for fraction in PARTS:
        key = "long" if fraction == 1 else f"trunc{round(100 * fraction)}"
        art = arts.get(fraction)
        if art is None:
            for mode in MODES:
                out.update({f"ch6_{key}_{mode}_{k}": float("nan") for k in ("plateau", "ceiling", "source")})
                out[f"ch6_{key}_{mode}_verdict"] = MISSING
                out[f"ch6_{key}_{mode}_rise"] = MISSING
                out[f"ch6_{key}_{mode}_trend"] = MISSING
            out.update({f"ch6_{key}_episodes": 0, f"ch6_{key}_kept": 0, f"ch6_{key}_context_success_end": float("nan")})
            continue
        for mode, row in summary(art).items():
            out[f"ch6_{key}_{mode}_plateau"] = float(row["plateau"].estimate)
            out[f"ch6_{key}_{mode}_ceiling"] = row["ceiling"]
            out[f"ch6_{key}_{mode}_source"] = row["source_end"]
            out[f"ch6_{key}_{mode}_verdict"] = row["verdict"]
            out[f"ch6_{key}_{mode}_rise"] = str(row["rise"])
            out[f"ch6_{key}_{mode}_trend"] = trend(row["rise"])
        out[f"ch6_{key}_episodes"] = int(np.asarray(art["sampled_returns"]).shape[-1])
        out[f"ch6_{key}_kept"] = int(art["kept"])
        success = context_success(art, "sampled", context_episodes)
        out[f"ch6_{key}_context_success_end"] = float(success[:, -max(1, success.shape[1] // 10):].mean())
    return out


def plot_context(ax: Any, art: Any, context_episodes: int) -> None:
    """The share of the episodes in the student's sliding context that found the goal, along the rollout."""
    from imitlib import plots

    for mode, color in zip(MODES, (plots.COLORS["ad"], plots.COLORS["alt"]), strict=True):
        success = context_success(art, mode, context_episodes)
        smooth = max(1, success.shape[1] // SMOOTH_POINTS)
        plots.curve_with_ci(ax, success, x=np.arange(context_episodes - 1, success.shape[1] + context_episodes - 1),
                            label=mode, color=color, smooth=smooth)
    plots.event_line(ax, int(art["kept"]), label="end of its training history")
    plots.label(ax, "episode of the rollout", "share of context episodes\nthat found the goal", "What it had to go on")
