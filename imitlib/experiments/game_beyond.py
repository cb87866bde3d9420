"""Chapter 6, part 5: the essay's own thought experiment at CPU scale, on MinAtar Breakout.

AD students read the recorded learning histories of chapter 2's DQN teachers (student i reads teacher seed i's
history, as chapter 4's ED students read its expert episodes): once the whole history, once only the episodes
played in the first :data:`CUT` of training. Each then plays frozen for as many environment steps as its teacher
trained after the cut, beside the teacher's own curve over those steps: the teacher kept training, and the
recorded run shows how far that took it.

The context holds ``scale.beyond.game_context_steps`` steps: at ``lab`` 128, about ten episodes of the early
history (11 steps each on average), two or three around the cut (about 48) and one or two late (about 90). Twice
that would hold more late episodes but costs 4.6x as much per update on one CPU core (2.2 s against 0.48 s, measured
with ``bf16`` at batch 64): 73 minutes per student instead of 16. The curves are read in bins of environment steps:
sampled students against the teacher's training behaviour (epsilon-greedy, epsilon 0.1 by then), greedy students
against the teacher's evaluations (epsilon 0.05): the same decoding, as near as the recorded curves allow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from imitlib import artifacts, stats
from imitlib.experiments.beyond import MODES, PLATEAU_SHARE, keep_first, plateau_per_seed, side, verdict
from imitlib.experiments.common import CLI, _student_folder, load_or_explain
from imitlib.experiments.game_students import GAME_STUDENT_CODE, GameStudents, game_students_config
from imitlib.experiments.teacher import minatar_histories, teacher_artifact
from imitlib.scale import Scale

CUT = 0.3  # the truncated students read the episodes of the first 30% of their teacher's training
BINS = 20  # rollout curves in 20 bins of environment steps


@dataclass(frozen=True)
class GameBeyond:
    """AD students on a MinAtar teacher's learning histories, whole (``cut`` 1) or cut early, played frozen."""

    students: GameStudents  # chapter 4's game recipe, with the AD kind and a longer context
    cut: float  # share of the teacher's training whose episodes the students read
    num_envs: int  # environments per student rollout, stepped together


def game_beyond_config(scale: Scale, cut: float = CUT) -> GameBeyond:
    """The part at a scale: chapter 4's game students as AD, with the scale's longer context."""
    if not 0 < cut <= 1:
        raise ValueError(f"cut must be in (0, 1], got {cut}")
    ed = game_students_config(scale)
    steps = scale.beyond.game_context_steps
    student = replace(ed.student, kind="ad", context_steps=steps, model=replace(ed.student.model, block_size=steps))
    return GameBeyond(students=replace(ed, student=student), cut=cut, num_envs=scale.beyond.game_envs)


def game_beyond_name(test: GameBeyond) -> str:
    """The artifact name: the game, and the share of training its students read."""
    game = test.students.teacher.dqn.env_id.replace("/", "_")
    return f"ch06_game_ad_{game}" if test.cut == 1 else f"ch06_game_ad_{game}_cut{round(100 * test.cut)}"


def cut_update(test: GameBeyond) -> float:
    """The teacher's update count at the cut: updates start after ``learning_starts`` steps, one per
    ``train_every`` environment steps."""
    dqn = test.students.teacher.dqn
    return max(0.0, (test.cut * dqn.steps - dqn.learning_starts) / dqn.train_every)


def episodes_before(reader: Any, update: float) -> dict[int, int]:
    """Per run, how many recorded episodes began before the teacher had made ``update`` updates."""
    counts = {}
    for run in reader.runs():
        first = int(np.searchsorted(reader.episodes["run"], run))
        starts = [int(reader.episode(first + i)["update"][0]) for i in range(reader.run_episodes(run))]
        counts[run] = int(np.searchsorted(np.asarray(starts), update, side="left"))
    return counts


def student_history(test: GameBeyond, folder: Any, scale: Scale) -> Any:
    """The history the students read: the teachers' learning histories in ``folder``, whole or cut (written once,
    beside it; at ``ci`` the histories are recorded afresh, so the cut is too)."""
    import os
    import shutil

    from imitlib.history import HistoryReader

    whole = HistoryReader(folder / "learning")
    if test.cut == 1:
        return whole
    part = folder / f"learning-cut{round(100 * test.cut)}"
    if scale.name == "ci" or not (part / "manifest.json").exists():
        tmp = part.with_name(part.name + ".partial")
        keep_first(whole, tmp, episodes_before(whole, cut_update(test)), {"cut_at_update": cut_update(test)})
        shutil.rmtree(part, ignore_errors=True)
        os.replace(tmp, part)
    return HistoryReader(part)


def ci_teachers(test: GameBeyond, scale: Scale) -> tuple[dict[str, np.ndarray], Any]:
    """At ``ci`` nothing is stored, so the teachers' curves and their recorded histories would each cost a training:
    record the histories once here and keep the curves that training produced (and the folder)."""
    from imitlib.experiments.teacher import recorded_minatar

    exp = test.students.teacher
    folder, teacher = recorded_minatar(exp, scale, test.students.every)
    if teacher is None:  # this process recorded them earlier: train the teachers' curves once more
        return teacher_artifact(exp, scale).data, folder
    return teacher, folder


def step_curve(returns: np.ndarray, ends: np.ndarray, num_envs: int, edges: np.ndarray) -> np.ndarray:
    """Mean return of the episodes ending in each bin of environment steps (``edges``), NaN for an empty bin."""
    done = ends >= 0
    steps = (ends[done] + 1) * num_envs  # every environment has taken this many steps when the episode ends
    which = np.digitize(steps, edges[1:-1], right=True)  # bins (lo, hi]: an episode ending at hi is in it
    total = np.bincount(which, weights=returns[done], minlength=len(edges) - 1)
    count = np.bincount(which, minlength=len(edges) - 1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def train_game_seed(student: Any, history: str, seed: int, run_dir: str | None, progress: bool = True) -> Any:
    """Student ``seed`` on run ``seed`` of the history at ``history`` (teacher i's): opens the history itself, from
    a path every worker sees."""
    from imitlib.history import HistoryReader
    from imitlib.imitation import train_student

    return train_student(replace(student, seed=seed), HistoryReader(history), [seed], run_dir, progress=progress)


def game_seed(student: Any, history: str, seed: int, run_dir: str | None, progress: bool, *, env_id: str,
              num_envs: int, episodes: int, budget: int, edges: np.ndarray) -> dict[str, Any]:
    """A sweep unit: student ``seed`` trained, then rolled out frozen, sampled and greedy, over the teacher's steps
    after the cut. The rollouts are half a student's time, so they run in the unit (on a Ray worker under
    ``--ray``), not in the driver; each is seeded by the student's index, so the order does not change a number."""
    from imitlib.imitation import game_rollout

    run = train_game_seed(student, history, seed, run_dir, progress)
    out: dict[str, Any] = {"loss": run.loss}
    for mode in MODES:
        roll = game_rollout(run.model, env_id, num_envs=num_envs, episodes=episodes,
                            context_steps=student.context_steps, seed=9000 + seed, greedy=mode == "greedy",
                            max_steps=budget // num_envs)
        out[f"{mode}_curve"] = step_curve(roll["returns"], roll["ends"], num_envs, edges)
    return out


def run_game_beyond(test: GameBeyond, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Train student i on teacher i's (cut) history, roll it out frozen for the teacher's steps after the cut,
    sampled and greedy, and keep the teacher's curves over the same steps."""
    from imitlib import sweep

    exp, dqn = test.students, test.students.teacher.dqn
    if scale.name == "ci":
        teachers, folder = ci_teachers(test, scale)
    else:
        teachers = teacher_artifact(exp.teacher, scale, progress)
        folder = minatar_histories(exp.teacher, scale, every=exp.every)
    reader = student_history(test, folder, scale)
    root = _student_folder(game_beyond_name(test), test, scale)
    budget = round((1 - CUT) * dqn.steps)  # every student plays what its teacher trained after the cut
    edges = np.linspace(0, budget, BINS + 1)
    most_episodes = budget // test.num_envs // 2 + 1  # no episode is shorter than 2 steps: room for every one
    out: dict[str, list] = {f"{mode}_curve": [] for mode in MODES} | {"loss": [], "episodes_read": []}
    units = [sweep.Unit(f"{game_beyond_name(test)} seed {i}", game_seed,
                        (exp.student, str(reader.path), i, None if scale.name == "ci" else str(root / f"seed{i}"),
                         progress), {"env_id": dqn.env_id, "num_envs": test.num_envs, "episodes": most_episodes,
                                     "budget": budget, "edges": edges}) for i in range(len(exp.teacher.seeds))]
    for i, run in enumerate(sweep.run(units)):  # here one after another, or as Ray tasks under --ray
        for key in out:
            out[key].append(reader.run_episodes(i) if key == "episodes_read" else run[key])
    cut_step = CUT * dqn.steps  # both sets are read over the steps the teacher trained after the 30% point
    steps, evals = np.asarray(teachers["train_steps"]), np.asarray(teachers["eval_steps"])
    after, later = steps > cut_step, evals > cut_step
    return {**{k: np.array(v) for k, v in out.items()}, "edges": edges,
            "teacher_steps": steps[after] - cut_step,
            "teacher_sampled": np.asarray(teachers["train_returns"])[:, after],
            "teacher_eval_steps": evals[later] - cut_step,
            "teacher_greedy": np.asarray(teachers["eval_means"])[:, later],
            "teacher_read": np.asarray(teachers["train_returns"])[:, steps <= test.cut * dqn.steps]}


def game_beyond_artifact(test: GameBeyond, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """The part's stored result, or computed and stored (trains the students first: hours at ``lab``)."""
    return artifacts.cached(game_beyond_name(test), test, lambda: run_game_beyond(test, scale, progress),
                            scale=scale.name, code=(*GAME_STUDENT_CODE, keep_first, game_beyond_config, cut_update,
                                                    episodes_before, student_history, ci_teachers, step_curve,
                                                    train_game_seed, run_game_beyond))


def game_beyond_command(cut: float) -> str:
    """The command that computes a set (``{scale}`` left for :func:`load_or_explain`)."""
    return f"{CLI} beyond --part minatar{'' if cut == 1 else f' --cut {cut}'} --scale {{scale}}"


GAME_SETS = (1.0, CUT)  # the whole history; its first 30%


def game_sets(scale: Scale) -> tuple[float, ...]:
    """The sets a scale computes (ci: the cut one only, to stay quick)."""
    return scale.beyond.game_cuts


def load_game_beyond(scale: Scale, cut: float) -> artifacts.Artifact | None:
    """A set's stored result (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: game_beyond_artifact(game_beyond_config(scale, cut), scale), scale,
                           game_beyond_command(cut))


# --------------------------------------------------------------------------------------------------
# Reading the result


def game_plateau(art: Any, mode: str) -> stats.Interval:
    """The student's mean return over the last :data:`PLATEAU_SHARE` of its steps (at least one bin), across
    students."""
    return stats.bootstrap_ci(plateau_per_seed(art[f"{mode}_curve"]))


def game_ceiling(art: Any) -> float:
    """The best level the teachers' behaviour reached in the part the students read: the highest bin of their
    mean training return up to the cut (the whole run for the whole history)."""
    return float(np.nanmax(np.nanmean(np.asarray(art["teacher_read"], dtype=float), axis=0)))


def teacher_end(art: Any, mode: str) -> float:
    """Where the teachers were at the end of training, under the decoding: behaviour (sampled) or evaluation."""
    curve = np.asarray(art["teacher_sampled" if mode == "sampled" else "teacher_greedy"], dtype=float)
    n = max(1, round(PLATEAU_SHARE * curve.shape[1]))
    return float(np.nanmean(curve[:, -n:]))


def summary(art: Any) -> dict[str, dict[str, Any]]:
    """Per decoding: plateau, the data ceiling, the teacher at the end, and the verdict. The recorded histories are
    behaviour (epsilon-greedy), so only the sampled students are read against the data ceiling; a greedy student
    against it would credit denoising as improvement, so the greedy ones are read against the teachers' final
    evaluations (epsilon 0.05), the nearest greedy reference the records hold."""
    out = {}
    for mode in MODES:
        plateau, end = game_plateau(art, mode), teacher_end(art, mode)
        ceiling = game_ceiling(art) if mode == "sampled" else float("nan")
        words = verdict(plateau, ceiling) if mode == "sampled" else against_teachers(plateau, end)
        out[mode] = {"plateau": plateau, "ceiling": ceiling, "teacher_end": end, "verdict": words}
    return out


def against_teachers(plateau: stats.Interval, end: float) -> str:
    """Where a greedy plateau sits against the teachers' final evaluations: above or below only when its whole 95%
    CI is."""
    return {"missing": "not measured at this scale yet",
            "above": "above the teachers' final evaluations (its 95% CI lies above them)",
            "below": "below the teachers' final evaluations (its 95% CI lies below them)",
            "contains": "level with the teachers' final evaluations (its 95% CI contains them)"}[side(plateau, end)]


def plot_game_beyond(ax: Any, art: Any, mode: str, title: str, legend: bool = True) -> None:
    """The frozen students' return against environment steps after the cut, beside their teachers' curves."""
    from imitlib import plots

    edges = np.asarray(art["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    plots.curve_with_ci(ax, np.asarray(art[f"{mode}_curve"], dtype=float), x=centres,
                        label=f"frozen AD student ({mode})", color=plots.COLORS["ad"])
    key, steps = ("teacher_sampled", "teacher_steps") if mode == "sampled" else ("teacher_greedy",
                                                                                 "teacher_eval_steps")
    plots.curve_with_ci(ax, np.asarray(art[key], dtype=float), x=np.asarray(art[steps]),
                        label="teacher, training on" + (" (ε-greedy)" if mode == "sampled" else " (ε = 0.05)"),
                        color=plots.COLORS["teacher"], linestyle="--")
    ax.axhline(game_ceiling(art), color=plots.COLORS["alt"], lw=1.2, ls=":", label="data ceiling (behaviour)")
    ax.set_xlim(0, edges[-1])
    plots.label(ax, "environment steps after the cut", "return per episode", title, legend=legend)


def setup_numbers(scale: Scale) -> dict[str, Any]:
    """The part's settings, as the prose states them."""
    test = game_beyond_config(scale, CUT)
    dqn = test.students.teacher.dqn
    return {"ch6_game_cut": CUT, "ch6_game_context": test.students.student.context_steps,
            "ch6_game_budget": round((1 - CUT) * dqn.steps), "ch6_game_teacher_steps": dqn.steps,
            "ch6_game_seeds": len(test.students.teacher.seeds)}


def numbers(arts: dict[float, Any]) -> dict[str, Any]:
    """What the prose cites, under chapter 6's names; a set not computed reads as NaN and "not computed"."""
    from imitlib.experiments.common import MISSING

    out: dict[str, Any] = {}
    for cut in GAME_SETS:
        key = "whole" if cut == 1 else f"cut{round(100 * cut)}"
        rows = summary(arts[cut]) if cut in arts else {}
        for mode in MODES:
            row = rows.get(mode)
            out[f"ch6_game_{key}_{mode}_plateau"] = float(row["plateau"].estimate) if row else float("nan")
            out[f"ch6_game_{key}_{mode}_ceiling"] = row["ceiling"] if row else float("nan")
            out[f"ch6_game_{key}_{mode}_teacher"] = row["teacher_end"] if row else float("nan")
            out[f"ch6_game_{key}_{mode}_verdict"] = row["verdict"] if row else MISSING
        out[f"ch6_game_{key}_sentence"] = game_sentence(arts.get(cut), "the whole history" if cut == 1 else
                                                        f"the first {cut:.0%} of training")
    return out


def game_sentence(art: Any | None, read: str) -> str:
    """The prose's sentence on one set: sampled and greedy plateaus beside the data and the teachers, or that the
    set is not computed yet."""
    if art is None:
        return f"The students reading {read} are not computed at this scale yet."
    rows = summary(art)
    s, g = rows["sampled"], rows["greedy"]
    return (f"Reading {read}, the sampled students end at {float(s['plateau'].estimate):.2f} against a data ceiling "
            f"of {s['ceiling']:.2f} ({s['verdict']}), while their teachers, training on, reached "
            f"{s['teacher_end']:.2f}. Greedy, they end at {float(g['plateau'].estimate):.2f}: {g['verdict']}, "
            f"which averaged {g['teacher_end']:.2f}.")
