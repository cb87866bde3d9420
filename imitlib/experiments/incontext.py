"""Chapter 5's numbers, verdicts and figures: in-context regression against gradient descent, frozen AD and ED
students on held-out Dark Room goals, the ablations of AD, and linear probes of its activations.

The pipelines (:func:`imitlib.experiments.icl_regression_artifact`, :func:`~imitlib.experiments.in_context_artifact`,
:func:`~imitlib.experiments.probes_artifact`) stay in the package's ``__init__``; this module only reads what they
store, so editing it marks no artifact stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from imitlib import artifacts, book, plots, stats
from imitlib.envs.darkroom import SIZE, optimal_return, random_policy_return
from imitlib.experiments.common import CLI, MISSING, load_or_explain, ready
from imitlib.experiments.histories import DarkRoomHistories, darkroom_histories, goal_split, source_returns
from imitlib.experiments.students import (
    DARKROOM_STUDENT_CODE,
    DarkRoomStudents,
    darkroom_students_artifact,
    darkroom_students_config,
    student_network,
    students_name,
    train_darkroom_students,
)
from imitlib.experiments.tabular import episodes_to_reach
from imitlib.scale import Scale


@dataclass(frozen=True)
class InContextTest:
    """Frozen students rolled out for many episodes on the held-out goals, from an empty context or a prompt."""

    students: DarkRoomStudents
    episodes: int
    repeats: int = 2  # rollouts per goal
    prompt_episodes: int = 0  # recorded learning episodes placed in the context first
    prompt_at: float = 0.25  # where along the goal's learning history the prompt is cut (fraction)
    store_students: bool = True  # False: train the students here and keep only their curves (ablations), so


def in_context_config(scale: Scale, students: DarkRoomStudents, prompt_episodes: int = 0,
                      store_students: bool = True) -> InContextTest:
    """The in-context test at a scale (``icl_episodes`` episodes per rollout)."""
    return InContextTest(students=students, episodes=scale.student.icl_episodes, prompt_episodes=prompt_episodes,
                         store_students=store_students)


def ablation_test(scale: Scale, name: str) -> InContextTest:
    """One of chapter 5's ablations (:data:`ABLATIONS`): AD students changed in one respect, weights not stored."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}: choose from {list(ABLATIONS)}")
    students = darkroom_students_config(scale, "ad", **ABLATIONS[name])
    return in_context_config(scale, students, store_students=False)


def learning_prompt(test: InContextTest, scale: Scale, goals: np.ndarray) -> dict[str, np.ndarray]:
    """``prompt_episodes`` consecutive recorded episodes of a learning history for each goal (rollout r of a goal
    gets the goal's r-th recorded run), starting ``prompt_at`` of the way along it."""
    from imitlib.history import HistoryReader

    reader = HistoryReader(darkroom_histories(test.students.data, scale) / "learning")
    by_goal: dict[int, list[int]] = {}
    for run in reader.runs():
        by_goal.setdefault(int(reader.task(run)["goal"]), []).append(run)
    seen: dict[int, int] = {}
    parts = []
    for goal in goals.tolist():
        k = seen.get(goal, 0)
        seen[goal] = k + 1
        run = by_goal[goal][k % len(by_goal[goal])]
        first = int(test.prompt_at * (reader.run_episodes(run) - test.prompt_episodes))
        parts.append(reader.window(run, first, test.prompt_episodes))
    return {key: np.stack([np.asarray(p[key]) for p in parts]).reshape(len(goals), -1)
            for key in ("obs", "action", "reward")}


def run_in_context(test: InContextTest, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Every seed's frozen student on every held-out goal: returns per episode, sampled and greedy."""
    from imitlib.imitation import darkroom_rollout

    if test.store_students:
        art = darkroom_students_artifact(test.students, scale, progress)
        models = [student_network(art, test.students.student, i) for i in range(len(test.students.seeds))]
        out: dict[str, Any] = {"loss": art["loss"], "accuracy": art["accuracy"]}
    else:
        runs = train_darkroom_students(test.students, scale, progress)
        models = [r.model for r in runs]
        out = {"loss": np.array([r.loss for r in runs]), "accuracy": np.array([r.accuracy for r in runs]),
               "wall_seconds": np.array([r.wall_seconds for r in runs])}
    _, held = goal_split(test.students.data)
    goals = np.repeat(held, test.repeats)
    prompt = learning_prompt(test, scale, goals) if test.prompt_episodes else None
    out["goals"] = goals
    for mode in ("sampled", "greedy"):
        out[f"{mode}_returns"] = np.stack([
            darkroom_rollout(model, goals, test.episodes, context_episodes=test.students.student.context_episodes,
                             greedy=mode == "greedy", seed=3000 + i, prompt=prompt)["returns"]
            for i, model in enumerate(models)])
    return out


def in_context_name(test: InContextTest) -> str:
    """The artifact name of an in-context test: its students' name, and the prompt if any."""
    name = students_name(test.students).replace("ch04_", "ch05_incontext_", 1)
    return name + (f"_prompt{test.prompt_episodes}" if test.prompt_episodes else "")


def in_context_ready(test: InContextTest, scale: Scale) -> bool:
    """Whether the book can show this test without hours of training (see :func:`ready`)."""
    return ready(in_context_name(test), test, scale)


def in_context_artifact(test: InContextTest, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 5's in-context curves for one set of students: stored if present, else computed (trains the
    students first if their artifact is absent)."""
    return artifacts.cached(in_context_name(test), test, lambda: run_in_context(test, scale, progress),
                            scale=scale.name, code=(*DARKROOM_STUDENT_CODE, learning_prompt, run_in_context))


def in_context_change(returns: np.ndarray, n: int) -> np.ndarray:
    """Per training seed, how much a student improved in context: mean return over its last ``n`` episodes minus
    its first ``n``; ``returns`` is ``(seeds, rollouts, episodes)`` as stored by :func:`run_in_context`."""
    per_seed = np.asarray(returns, dtype=float).mean(1)
    return per_seed[:, -n:].mean(1) - per_seed[:, :n].mean(1)


def ablation_effects(changes: dict[str, Any], reference: str = "AD") -> dict[str, list[str]]:
    """Sort ablations by their change's confidence interval (:class:`imitlib.stats.Interval`) against the
    reference's: ``cost`` (whole interval below the reference's), ``flat`` (of those, zero inside the interval:
    no in-context improvement to speak of) and ``kept`` (not shown to differ from the reference)."""
    low = float(changes[reference].low)
    names = [k for k in ABLATIONS if k in changes]
    cost = [k for k in names if float(changes[k].high) < low]
    return {"cost": cost, "flat": [k for k in cost if float(changes[k].low) <= 0 <= float(changes[k].high)],
            "kept": [k for k in names if k not in cost]}


def source_curves(data: DarkRoomHistories, goals: np.ndarray, episodes: int) -> np.ndarray:
    """The source Q-learner learning each of ``goals`` from scratch (every recorded run of it): behaviour return
    per episode, ``(len(goals) * runs_per_goal, episodes)``; the curve the student's in-context curve is read
    against."""
    behaviour, _ = source_returns(data)
    per_goal = behaviour.reshape(SIZE * SIZE, data.runs_per_goal, -1)
    return per_goal[np.asarray(goals)].reshape(-1, per_goal.shape[-1])[:, :episodes]


ABLATIONS = {  # name -> darkroom_students_config keyword arguments (chapter 5's ablations, all AD)
    "context 1 episode": {"context_episodes": 1},
    "context 2 episodes": {"context_episodes": 2},
    "4 training goals": {"train_goals": 4},
    "16 training goals": {"train_goals": 16},
    "shuffled episode order": {"shuffled": True},
    "epsilon source": {"source": "epsilon"},
}


Art = artifacts.Artifact

# --- Thresholds and sizes, each with the reason for its value ---------------------------------------------------

GREEDY_GAIN_SHARE = 0.5  # greedy gaining under half of what sampling gains is "much less", not seed noise
PLATEAU_SHARE = 0.9  # "has stopped improving": at 90% of its best, later episodes add at most the last tenth
FRONT_LOADED_SHARE = 0.25  # reaching that plateau within the first quarter of the rollout is "front-loaded"
WINDOW = 10  # first and last episodes compared: 10, long enough to average out single lucky episodes
SMOOTHING_POINTS = 20  # curves smoothed over 1/20 of the rollout: the trend shows, episode-to-episode noise not
PROMPT_EPISODES = 3  # recorded learning episodes a prompted student starts from (as the CLI's main part)
YLIM_HEADROOM = 1.6  # ablation panels reach 1.6 x optimal return: every curve and the legend above it fit

MODES = ("sampled", "greedy")  # how a frozen student acts: from its distribution (as trained) or its argmax


def command_for(name: str) -> str:
    """The command that computes one in-context test (``{scale}`` left for load_or_explain): ablations one by one."""
    if name in ABLATIONS:
        return f'{CLI} incontext --part ablations --ablation "{name}" --scale {{scale}}'
    return f"{CLI} incontext --part main --scale {{scale}}"


# --- Section 2: Algorithm Distillation on held-out goals --------------------------------------------------------

CURVE_ROLES = ("ad", "ed", "alt", "student")  # colours of the students on one panel, in the order named


def main_tests(scale: Scale) -> dict[str, InContextTest]:
    """The section's four in-context tests: AD and ED from an empty context, and each after a learning prompt."""
    ad, ed = (darkroom_students_config(scale, kind) for kind in ("ad", "ed"))
    return {"AD": in_context_config(scale, ad), "ED": in_context_config(scale, ed),
            "ED + learning prompt": in_context_config(scale, ed, prompt_episodes=PROMPT_EPISODES),
            "AD + learning prompt": in_context_config(scale, ad, prompt_episodes=PROMPT_EPISODES)}


def load_tests(tests: dict[str, InContextTest], scale: Scale) -> dict[str, Art]:
    """The stored tests (computed at ``ci``); each missing one is left out after a line naming its command."""
    loaded = {name: load_or_explain(lambda t=t: in_context_artifact(t, scale), scale, command_for(name))
              for name, t in tests.items()}
    return {name: art for name, art in loaded.items() if art is not None}


@dataclass(frozen=True)
class Baselines:
    """What an in-context curve is read against, on the same held-out goals."""

    source: np.ndarray  # the source Q-learner learning them from scratch: (runs, episodes)
    optimal: float  # mean best achievable return
    random: float  # mean return of the uniformly random policy


def baselines(data: DarkRoomHistories, episodes: int) -> Baselines:
    """The source Q-learner's curves and the optimal and random returns on the held-out goals of ``data``."""
    held_out = goal_split(data)[1]
    return Baselines(source_curves(data, held_out, episodes),
                     float(np.mean([optimal_return(int(g)) for g in held_out])),
                     float(np.mean([random_policy_return(int(g)) for g in held_out])))


def window(episodes: int) -> int:
    """How many first and last episodes are compared: :data:`WINDOW`, or half a short rollout."""
    return min(WINDOW, episodes // 2)


def smoothing(episodes: int) -> int:
    """The curves' running-mean window: 1/:data:`SMOOTHING_POINTS` of the rollout, at least 1."""
    return max(1, episodes // SMOOTHING_POINTS)


def per_seed(art: Art, mode: str) -> np.ndarray:
    """Return per training seed and episode, ``(seeds, episodes)``: mean over held-out goals and repeats."""
    return art[f"{mode}_returns"].mean(1)


def first_last(art: Art, mode: str = "sampled", n: int = WINDOW) -> tuple[float, float]:
    """Mean return over the first and over the last ``n`` episodes: where a student starts and where it ends."""
    r = per_seed(art, mode)
    return float(r[:, :n].mean()), float(r[:, -n:].mean())


def plot_curves(ax: plt.Axes, named: dict[str, Art], mode: str, title: str, base: Baselines, smooth: int,
                small: bool = False) -> None:
    """Students' return per episode in context, beside the Q-learner from scratch, optimal and random play."""
    plots.curve_with_ci(ax, base.source, label="Q-learning from scratch (runs)", color=plots.COLORS["teacher"],
                        smooth=smooth)
    for (name, art), role in zip(named.items(), CURVE_ROLES, strict=False):
        plots.curve_with_ci(ax, per_seed(art, mode), label=name, color=plots.COLORS[role], smooth=smooth)
    plots.reference_line(ax, base.optimal, label="optimal", role="optimal")
    plots.reference_line(ax, base.random, label="random policy", role="random")
    plots.label(ax, "episode in context", "return", title, legend=not small)
    if small:
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8)


def unprompted(arts: dict[str, Art]) -> dict[str, Art]:
    """AD and ED from an empty context (those stored): the section's main comparison."""
    return {k: arts[k] for k in ("AD", "ED") if k in arts}


def plot_main(axes: Any, arts: dict[str, Art], base: Baselines, smooth: int) -> None:
    """AD and ED on held-out goals, sampled actions on one axis and greedy on the other."""
    for ax, mode in zip(axes, MODES, strict=True):
        plot_curves(ax, unprompted(arts), mode, f"Held-out goals, {mode} actions", base, smooth)


def greedy_note(gain_greedy: float, gain_sampled: float) -> str:
    """Whether AD's improvement needs the exploration its sampled actions supply."""
    if gain_greedy < GREEDY_GAIN_SHARE * gain_sampled:
        return ("Greedy decoding gains much less than sampling: a greedy student that lands in a poor trajectory "
                "feeds the same episode back into its context and repeats it, so whatever improvement AD shows "
                "comes with the exploration its own sampling supplies")
    return ("Greedy decoding gains about as much as sampling here, so the improvement does not depend on the "
            "randomness of sampled actions")


def plateau(curve: np.ndarray, n: int) -> tuple[float, int]:
    """Best ``n``-episode running mean of a ``(1, episodes)`` curve, and the (1-based) episode it reaches
    :data:`PLATEAU_SHARE` of that best: where the curve stops improving."""
    peak = float(stats.running_mean(curve, n).max())
    return peak, int(episodes_to_reach(curve, PLATEAU_SHARE * peak, window=n)[0]) + 1


def ad_shape(plateau_episode: int, episodes: int) -> str:
    """Whether AD's improvement comes early in the rollout or keeps coming."""
    return "front-loaded" if plateau_episode <= FRONT_LOADED_SHARE * episodes else "spread over the episodes"


def source_passes(passes: float) -> str:
    """When the Q-learner passes AD's best (``passes``: 0-based episode, NaN if never)."""
    if np.isfinite(passes):
        return f"passes AD's best at episode {int(passes) + 1}"
    return "never passes AD's best within these episodes"


def first_last_numbers(arts: dict[str, Art], n: int) -> dict[str, float]:
    """AD's and ED's first and last mean returns, sampled and greedy (NaN for a student not stored)."""
    out = {}
    for name, key in (("AD", "ad"), ("ED", "ed")):
        for mode in MODES:
            first, last = first_last(arts[name], mode, n) if name in arts else (float("nan"),) * 2
            out[f"ch5_{key}_{mode}_first"], out[f"ch5_{key}_{mode}_last"] = first, last
    return out


def ad_numbers(ad: Art | None, source: np.ndarray, n: int, episodes: int) -> dict[str, Any]:
    """What the prose says about the shape of AD's curve and how the Q-learner compares with it."""
    if ad is None:
        return {"ch5_greedy_note": MISSING, "ch5_ad_peak": float("nan"), "ch5_ad_plateau": float("nan"),
                "ch5_ad_shape": MISSING, "ch5_source_passes": MISSING}
    gains = {mode: np.subtract(*first_last(ad, mode, n)[::-1]) for mode in MODES}
    peak, episode = plateau(per_seed(ad, "sampled").mean(0, keepdims=True), n)
    passes = episodes_to_reach(source.mean(0, keepdims=True), peak, window=n)[0]
    return {"ch5_greedy_note": greedy_note(gains["greedy"], gains["sampled"]), "ch5_ad_peak": peak,
            "ch5_ad_plateau": episode, "ch5_ad_shape": ad_shape(episode, episodes),
            "ch5_source_passes": source_passes(passes)}


def curve_numbers(arts: dict[str, Art], base: Baselines, n: int, episodes: int) -> dict[str, Any]:
    """Everything the prose cites about the section's curves."""
    return {"ch5_n": n, "ch5_episodes": episodes, **first_last_numbers(arts, n),
            "ch5_source_first": float(base.source[:, :n].mean()), "ch5_source_last": float(base.source[:, -n:].mean()),
            **ad_numbers(arts.get("AD"), base.source, n, episodes)}


# --- Section 3: what makes AD work -------------------------------------------------------------------------------

ABLATION_GROUPS = {  # panel title -> the students it shows beside the AD reference
    "Context length": ["context 1 episode", "context 2 episodes"],
    "Number of training goals": ["4 training goals", "16 training goals"],
    "Order of the history": ["shuffled episode order"],
    "Source algorithm": ["epsilon source"],
    "Prompting with a learning history": ["ED + learning prompt", "AD + learning prompt"],
}
ABLATION_KEYS = (  # glue key part -> the student whose change the prose cites
    ("ctx1", "context 1 episode"), ("ctx2", "context 2 episodes"), ("goals4", "4 training goals"),
    ("goals16", "16 training goals"), ("shuffled", "shuffled episode order"), ("epsilon", "epsilon source"),
    ("ed_prompt", "ED + learning prompt"),
)

CHANGE_HEADER = ["student", "first episodes", "last episodes", "change", "95% CI of the change",
                 "P(improves more than AD) [95% CI]"]
NO_REFERENCE = ("The reference AD student is not computed at this scale, so the ablations have nothing to be "
                "compared with")
SHUFFLED = "shuffled episode order"  # the ablation that tells the two readings of AD apart


def ablation_tests(scale: Scale) -> dict[str, InContextTest]:
    """Every ablation of :data:`imitlib.experiments.ABLATIONS`, by name."""
    return {name: ablation_test(scale, name) for name in ABLATIONS}


def ablation_pool(ablated: dict[str, Art], arts: dict[str, Art]) -> dict[str, Art]:
    """The students the ablation panels draw from: the ablations, then the prompted students."""
    return {**ablated, **{k: v for k, v in arts.items() if "prompt" in k}}


def plot_ablations(axes: Any, arts: dict[str, Art], pool: dict[str, Art], base: Baselines, smooth: int) -> None:
    """One panel per group of :data:`ABLATION_GROUPS`, each beside the AD reference; the spare panel hidden."""
    for ax, (title, names) in zip(axes.flat, ABLATION_GROUPS.items(), strict=False):
        named = {"AD (reference)": arts["AD"]} if "AD" in arts else {}
        named.update({n: pool[n] for n in names if n in pool})
        plot_curves(ax, named, "sampled", title, base, smooth, small=True)
        ax.set_ylim(0, base.optimal * YLIM_HEADROOM)
    axes.flat[-1].axis("off")


@dataclass(frozen=True)
class Changes:
    """Each student's in-context change: first and last mean return, and the change's CI over training seeds."""

    first_last: dict[str, tuple[float, float]]
    ci: dict[str, stats.Interval]
    per_seed: dict[str, np.ndarray] = field(default_factory=dict)  # each training seed's change


def compared(arts: dict[str, Art], pool: dict[str, Art]) -> dict[str, Art]:
    """Every student the change table lists: AD and ED, then the ablations and prompted students."""
    return {**unprompted(arts), **pool}


def changes(named: dict[str, Art], n: int) -> Changes:
    """The in-context change of every named student (sampled actions), with a 95% bootstrap CI across seeds."""
    per_seed = {name: in_context_change(art["sampled_returns"], n) for name, art in named.items()}
    return Changes({name: first_last(art, "sampled", n) for name, art in named.items()},
                   {name: stats.bootstrap_ci(x) for name, x in per_seed.items()}, per_seed)


def beats_reference(ch: Changes, name: str, reference: str = "AD") -> str:
    """Probability that a seed of ``name`` improves in context more than a seed of the reference, with its CI."""
    if name == reference or reference not in ch.per_seed or name not in ch.per_seed:
        return "—"
    p = stats.probability_of_improvement(ch.per_seed[name], ch.per_seed[reference])
    return f"{float(p.estimate):.2f} [{float(p.low):.2f}, {float(p.high):.2f}]"


def change_table(ch: Changes) -> Any:
    """The change of every student as a book table."""
    rows = [[name, a, b, b - a, f"{float(ch.ci[name].low):+.2f} to {float(ch.ci[name].high):+.2f}",
             beats_reference(ch, name)] for name, (a, b) in ch.first_last.items()]
    return book.table(CHANGE_HEADER, rows, ["", ".2f", ".2f", "+.2f", "", ""])


def ablation_verdict(ci: dict[str, stats.Interval]) -> str:
    """Which ingredients AD's improvement needed: the ablations whose change fell below the reference's."""
    if "AD" not in ci:
        return NO_REFERENCE
    effect = ablation_effects(ci, reference="AD")
    missing = [k for k in ABLATIONS if k not in ci]
    flat = (f"; of these, {', '.join(effect['flat'])} left no in-context improvement distinguishable from zero"
            if effect["flat"] else "")
    return (f"Taking away an ingredient cost improvement (the ablation's whole interval lies below the reference's) "
            f"for: {', '.join(effect['cost']) or 'none of them'}" + flat
            + f". The change stayed within reach of the reference's for: {', '.join(effect['kept']) or 'none of them'}"
            + (f". Not run yet at this scale: {', '.join(missing)}" if missing else ""))


def shuffled_meaning(ci: dict[str, stats.Interval]) -> str:
    """What the shuffled-order ablation says: does AD distil the learning process, or a fixed strategy?"""
    if SHUFFLED not in ci or "AD" not in ci:
        return "The shuffled-order ablation, the one that separates the two readings, is not computed at this scale yet"
    if SHUFFLED in ablation_effects(ci, reference="AD")["cost"]:
        return ("Shuffling cost improvement: the student needs histories whose order carries the learner's "
                "progress, which is what AD's authors predict if it distils the learning process itself")
    return (f"Shuffling did not cost improvement ({float(ci[SHUFFLED].estimate):+.2f} against the reference's "
            f"{float(ci['AD'].estimate):+.2f}): a student that never saw a history in its order improves on new "
            "goals as much as AD does. So at this budget AD's improvement does not depend on seeing how the "
            "Q-learner improved. The simplest strategy consistent with all the ablations is a fixed one over a "
            "multi-episode context: explore, and once an episode in the context has found the goal, go back to it. "
            "That is in-context adaptation (it needs episodes of context and many training goals), not a distilled "
            "learning algorithm")


def change_of(ch: Changes, name: str) -> float:
    """Last minus first mean return of one student (NaN when it is not computed yet)."""
    if name not in ch.first_last:
        return float("nan")
    first, last = ch.first_last[name]
    return last - first


def ablation_numbers(ch: Changes) -> dict[str, Any]:
    """What the prose cites from the ablations: each change, and the two verdicts."""
    out: dict[str, Any] = {f"ch5_{key}_change": change_of(ch, name) for key, name in ABLATION_KEYS}
    return {**out, "ch5_ad_change": change_of(ch, "AD"), "ch5_ablation_verdict": ablation_verdict(ch.ci),
            "ch5_shuffled_meaning": shuffled_meaning(ch.ci)}


# --- Section 4: linear probes ------------------------------------------------------------------------------------


