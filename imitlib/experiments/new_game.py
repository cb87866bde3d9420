"""Chapter 7, part 2: the frozen students move. Breakout's ED and AD students play Space Invaders, never having seen
it, for as many environment steps as a teacher trains there.

The students are the ones earlier chapters trained, resumed from the same checkpoints (``runs/``) or retrained
identically: chapter 4's ED students (teacher i's expert episodes) and chapter 6's AD students (teacher i's whole
learning history). They keep their sliding context, so whatever they can learn in context from their own play on the
new game, they have every chance to: a million steps at ``lab``, thousands of episodes. Their return is read in bins
of environment steps (each episode in the bin of its midpoint, :func:`midpoint_curve`) beside part 1's teachers:
sampled students against the teachers' training behaviour, greedy students against their evaluations. Their
Breakout returns (chapters 4 and 6) are the reference for what each student can do in the game it learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imitlib import artifacts, plots
from imitlib.experiments import transfer
from imitlib.experiments.beyond import MODES, side
from imitlib.experiments.common import CLI, _student_folder, load_or_explain
from imitlib.experiments.game_beyond import (
    GameBeyond,
    game_beyond_config,
    game_beyond_name,
    student_history,
    train_game_seed,
)
from imitlib.experiments.game_students import (
    GAME_STUDENT_CODE,
    GameStudents,
    game_students_config,
    game_students_name,
)
from imitlib.experiments.teacher import minatar_histories
from imitlib.scale import Scale

BINS = 20  # curves in 20 bins of environment steps, as chapter 6's game part
KINDS = ("ed", "ad")


@dataclass(frozen=True)
class FrozenOnNewGame:
    """The teacher game's ED and AD students, frozen, on another game."""

    ed: GameStudents  # chapter 4's ED students
    ad: GameBeyond  # chapter 6's AD students on whole histories
    env_id: str  # the game they play, which none of them saw
    steps: int  # environment steps per student and decoding: as many as a teacher trains
    num_envs: int  # environments per rollout, stepped together


def frozen_config(scale: Scale, env_id: str = transfer.NEW_GAME) -> FrozenOnNewGame:
    """The part at a scale: every student plays for the scale's teacher budget in ``scale.transfer.game_envs``
    environments."""
    ed = game_students_config(scale)
    return FrozenOnNewGame(ed=ed, ad=game_beyond_config(scale, 1.0), env_id=env_id, steps=ed.teacher.dqn.steps,
                           num_envs=scale.transfer.game_envs)


def student_readers(test: FrozenOnNewGame, scale: Scale) -> dict[str, Any]:
    """What each kind read: the teachers' expert episodes (ED) and whole learning histories (AD), one dataset."""
    from imitlib.history import HistoryReader

    if test.ad.students.teacher != test.ed.teacher or test.ad.students.every != test.ed.every:
        raise ValueError("the ED and AD students must read the same teachers' recording")
    folder = minatar_histories(test.ed.teacher, scale, every=test.ed.every)
    return {"ed": HistoryReader(folder / "expert"), "ad": student_history(test.ad, folder, scale)}


def midpoint_curve(returns: np.ndarray, ends: np.ndarray, num_envs: int, edges: np.ndarray) -> np.ndarray:
    """Mean return of the episodes whose midpoint falls in each bin of environment steps (NaN for an empty bin).

    Binning by the end would leave the first bins only the episodes short enough to have ended already, and a frozen
    policy would seem to improve; by the midpoint, an episode near either edge must be short to count, the same
    censoring at the start as at the end, so a policy that does not change reads as flat."""
    done = ends >= 0  # (envs, episodes); an environment's episodes end in order
    starts = np.concatenate([np.zeros((len(ends), 1), np.int64), ends[:, :-1] + 1], axis=1)
    mid = (starts[done] + ends[done] + 1) / 2 * num_envs  # environment steps, all environments together
    which = np.clip(np.digitize(mid, edges[1:-1], right=True), 0, len(edges) - 2)
    total = np.bincount(which, weights=returns[done], minlength=len(edges) - 1)
    count = np.bincount(which, minlength=len(edges) - 1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def frozen_seed(student: Any, history: str, seed: int, run_dir: str | None, progress: bool, *, env_id: str,
                num_envs: int, steps: int, edges: np.ndarray) -> dict[str, np.ndarray]:
    """A sweep unit: student ``seed`` of either kind, from the checkpoint its own chapter trained (or trained now,
    identically), then rolled out frozen on the new game, sampled and greedy. The rollouts are a quarter (AD) to a
    half (ED) of a unit's time at lab, so they run in the unit (on a Ray worker under ``--ray``); each is seeded by
    the student's index, so neither the order nor the machine changes a number."""
    from imitlib.imitation import game_rollout

    model = train_game_seed(student, history, seed, run_dir, progress).model
    vector_steps = steps // num_envs
    ale = {"full_action_space": True} if env_id.startswith("ALE/") else {}  # all 18 actions, as the students were
    out = {}
    for mode in MODES:
        roll = game_rollout(model, env_id, num_envs=num_envs, episodes=vector_steps // 2 + 1,
                            context_steps=student.context_steps, seed=9500 + seed, greedy=mode == "greedy",
                            max_steps=vector_steps, **ale)
        out[mode] = midpoint_curve(roll["returns"], roll["ends"], num_envs, edges)
    return out


def run_frozen(test: FrozenOnNewGame, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Every student of both kinds on the new game, sampled and greedy, read in bins of environment steps: one sweep
    unit per student (AD first, the longer ones, so two workers finish together)."""
    from imitlib import sweep

    edges = np.linspace(0, test.steps, BINS + 1)
    readers = student_readers(test, scale)
    students = {"ed": (test.ed.student, game_students_name(test.ed), test.ed),
                "ad": (test.ad.students.student, game_beyond_name(test.ad), test.ad)}
    units, keys = [], []
    for kind in sorted(KINDS):  # "ad" before "ed"
        student, name, exp = students[kind]
        root = _student_folder(name, exp, scale)
        for i in range(len(test.ed.teacher.seeds)):
            units.append(sweep.Unit(f"{name} seed {i} on {test.env_id}", frozen_seed,
                                    (student, str(readers[kind].path), i,
                                     None if scale.name == "ci" else str(root / f"seed{i}"), progress),
                                    {"env_id": test.env_id, "num_envs": test.num_envs, "steps": test.steps,
                                     "edges": edges}))
            keys.append(kind)
    out: dict[str, Any] = {"edges": edges} | {f"{k}_{m}_curve": [] for k in KINDS for m in MODES}
    for kind, curves in zip(keys, sweep.run(units), strict=True):  # here one after another, or as Ray tasks
        for mode in MODES:
            out[f"{kind}_{mode}_curve"].append(curves[mode])
    return {k: np.asarray(v) for k, v in out.items()}


FROZEN_NAME = "ch07_frozen_students"


def frozen_artifact(test: FrozenOnNewGame, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """The part's stored result, or computed and stored (trains the students first if their checkpoints are gone)."""
    from imitlib.experiments.beyond import keep_first
    from imitlib.experiments.game_beyond import cut_update, episodes_before

    return artifacts.cached(FROZEN_NAME, test, lambda: run_frozen(test, scale, progress), scale=scale.name,
                            code=(*GAME_STUDENT_CODE, keep_first, game_beyond_config, cut_update, episodes_before,
                                  student_history, midpoint_curve, frozen_config, student_readers, train_game_seed,
                                  frozen_seed, run_frozen))


COMMAND = f"{CLI} transfer --part students --scale {{scale}}"


def load_frozen(scale: Scale) -> artifacts.Artifact | None:
    """The stored result (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: frozen_artifact(frozen_config(scale, transfer.new_game(scale)), scale), scale,
                           COMMAND)


# --------------------------------------------------------------------------------------------------
# Reading the result

LABELS = {"ed": "ED student (frozen)", "ad": "AD student (frozen)"}


def centres(art: Any) -> np.ndarray:
    """The middle of every step bin."""
    edges = np.asarray(art["edges"], dtype=float)
    return (edges[:-1] + edges[1:]) / 2


def plot_frozen(ax: Any, art: Any, mode: str) -> None:
    """The frozen students' return against environment steps on the new game (to draw beside the teachers)."""
    for kind in KINDS:
        c = np.asarray(art[f"{kind}_{mode}_curve"], dtype=float)
        ok = np.isfinite(c).all(axis=0)  # bins where every student finished an episode
        if ok.any():
            plots.curve_with_ci(ax, c[:, ok], x=centres(art)[ok], label=LABELS[kind],
                                color=plots.COLORS[kind], linestyle=":")


def plot_new_game(ax: Any, teachers: dict[str, Any], art: Any | None, mode: str, random: float, title: str,
                  legend: bool = True) -> None:
    """Part 1's teachers and part 2's frozen students on the new game, one decoding, one panel."""
    from imitlib.experiments import transplant

    transplant.plot_teachers(ax, teachers, mode, random, title, legend=False)
    if art is not None:
        plot_frozen(ax, art, mode)
    plots.label(ax, "environment steps on the new game", "return per episode", title, legend=legend)


def stored(get: Any) -> Any:
    """A stored artifact, or None when it is not stored (never computed here, at any scale)."""
    with artifacts.dry_run():
        try:
            return get()
        except artifacts.NotStored:
            return None


def breakout_reference(scale: Scale) -> dict[str, float]:
    """What the students do in the game they learned, sampling: chapter 4's ED students and chapter 6's AD
    students on whole histories (their plateau), NaN where not stored."""
    from imitlib.experiments import game_beyond, game_students

    cfg = frozen_config(scale)
    ed = stored(lambda: game_students.game_students_artifact(cfg.ed, scale))
    ad = stored(lambda: game_beyond.game_beyond_artifact(cfg.ad, scale))
    missing = "(not computed yet)"
    return {"ch7_ed_breakout": f"{np.nanmean(ed['returns']):.2f}" if ed is not None else missing,
            "ch7_ad_breakout": f"{float(game_beyond.game_plateau(ad, 'sampled').estimate):.2f}" if ad is not None
            else missing}


def table_rows(art: Any | None, mode: str, random: float) -> list[list[Any]]:
    """Each kind's start, end, gain and verdict on the new game under one decoding."""
    return [transfer.row(f"{LABELS[k]} ({mode})", None if art is None else
                         np.asarray(art[f"{k}_{mode}_curve"], dtype=float), random) for k in KINDS]


WHERE_WORDS = {"below": "below random play", "contains": "level with random play", "above": "above random play",
               "missing": "too rarely finishing an episode to be read"}


def against_random(art: Any | None, random: float, mode: str = "sampled") -> str:
    """Where each kind's end (its 95% CI across students) sits against random play on the new game, in words:
    a student can fail to improve and still be good, or be worse than pressing buttons at random."""
    if art is None:
        return "not measured at this scale yet"
    where = {}
    for kind in KINDS:
        edges = transfer.start_end(np.asarray(art[f"{kind}_{mode}_curve"], dtype=float))
        where[kind] = "missing" if edges is None else side(edges["end"], random)
    if where["ed"] != where["ad"]:
        return (f"the ED students end {WHERE_WORDS[where['ed']]} and the AD students {WHERE_WORDS[where['ad']]} "
                f"({random:.2f})")
    below = ": what they bring from Breakout does worse here than pressing buttons at random"
    below = below if where["ed"] == "below" else ""
    return f"both kinds end {WHERE_WORDS[where['ed']]} ({random:.2f}){below}"


def numbers(art: Any | None, random: float) -> dict[str, Any]:
    """What the prose cites: each kind's summary per decoding, and where the sampled students end against random."""
    out = {"ch7_students_vs_random": against_random(art, random)}
    for kind in KINDS:
        for mode in MODES:
            curves = None if art is None else np.asarray(art[f"{kind}_{mode}_curve"], dtype=float)
            out |= transfer.prose(f"ch7_{kind}_{mode}", curves, random)
    return out
