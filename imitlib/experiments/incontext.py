"""Chapter 5's numbers, verdicts and figures: in-context regression against gradient descent, frozen AD and ED
students on held-out Dark Room goals, the ablations of AD, and linear probes of its activations.

The pipelines (:func:`imitlib.experiments.icl_regression_artifact`, :func:`~imitlib.experiments.in_context_artifact`,
:func:`~imitlib.experiments.probes_artifact`) stay in the package's ``__init__``; this module only reads what they
store, so editing it marks no artifact stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from imitlib import artifacts, book, plots, stats
from imitlib.envs.darkroom import optimal_return, random_policy_return
from imitlib.experiments import (
    ABLATIONS,
    DarkRoomHistories,
    InContextTest,
    ProbeTest,
    ablation_effects,
    ablation_test,
    darkroom_students_config,
    episodes_to_reach,
    goal_split,
    icl_regression_artifact,
    icl_regression_config,
    in_context_artifact,
    in_context_change,
    in_context_config,
    probes_artifact,
    source_curves,
)
from imitlib.experiments.common import CLI, load_or_explain
from imitlib.scale import Scale

Art = artifacts.Artifact

# --- Thresholds and sizes, each with the reason for its value ---------------------------------------------------

SAME_WAY_COSINE = 0.95  # sensitivities this aligned mean the trained layer answers a query as the GD step does
SAME_WAY_LOSS = 1.05  # and a loss within 5% of the GD step's: the same predictor, up to training noise
GREEDY_GAIN_SHARE = 0.5  # greedy gaining under half of what sampling gains is "much less", not seed noise
PLATEAU_SHARE = 0.9  # "has stopped improving": at 90% of its best, later episodes add at most the last tenth
FRONT_LOADED_SHARE = 0.25  # reaching that plateau within the first quarter of the rollout is "front-loaded"
WINDOW = 10  # first and last episodes compared: 10, long enough to average out single lucky episodes
SMOOTHING_POINTS = 20  # curves smoothed over 1/20 of the rollout: the trend shows, episode-to-episode noise not
PROMPT_EPISODES = 3  # recorded learning episodes a prompted student starts from (as the CLI's main part)
YLIM_HEADROOM = 1.6  # ablation panels reach 1.6 x optimal return: every curve and the legend above it fit

MODES = ("sampled", "greedy")  # how a frozen student acts: from its distribution (as trained) or its argmax
MISSING = "not computed at this scale yet"  # what a sentence says in place of a verdict without its numbers
REGRESSION_COMMAND = f"{CLI} incontext --part regression --scale {{scale}}"
PROBES_COMMAND = f"{CLI} incontext --part probes --scale {{scale}}"


def command_for(name: str) -> str:
    """The command that computes one in-context test (``{scale}`` left for load_or_explain): ablations one by one."""
    if name in ABLATIONS:
        return f'{CLI} incontext --part ablations --ablation "{name}" --scale {{scale}}'
    return f"{CLI} incontext --part main --scale {{scale}}"


# --- Section 1: a layer of attention that does gradient descent -------------------------------------------------

REGRESSION_LINES = (  # artifact key, label, colour role, x offset (so the error bars do not overlap)
    ("loss_model", "trained linear self-attention", "student", -0.15),
    ("loss_gd1", "one GD step (tuned)", "teacher", 0.0),
    ("loss_gdL", "as many GD steps as layers (tuned)", "alt", 0.15),
)
REGRESSION_HEADER = ["layers", "model loss", "GD ×1", "GD ×layers", "cosine of sensitivities to GD ×1",
                     "squared prediction difference to GD ×1"]


def load_regression(scale: Scale) -> Art | None:
    """The stored regression experiment (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: icl_regression_artifact(icl_regression_config(scale), scale), scale,
                           REGRESSION_COMMAND)


def plot_regression_loss(ax: plt.Axes, reg: Art) -> None:
    """Query loss on fresh tasks by depth: trained layers against tuned GD, with 95% CIs over seeds."""
    layers = reg["layers"]
    for key, name, role, dx in REGRESSION_LINES:
        ci = stats.bootstrap_ci(reg[key])
        ax.errorbar(layers + dx, ci.estimate, yerr=[ci.estimate - ci.low, ci.high - ci.estimate], fmt="o-",
                    capsize=3, color=plots.COLORS[role], label=name)
    plots.reference_line(ax, float(reg["loss_zero"].mean()), label="predict 0", role="random")
    ax.set_xticks(layers)
    plots.label(ax, "layers (model) / steps (GD)", "query loss (½ squared error)", "Loss on fresh tasks")


def plot_regression_training(ax: plt.Axes, reg: Art) -> None:
    """Training loss of each depth (log scale) against the loss one tuned GD step reaches."""
    steps = np.linspace(0, reg.provenance["config"]["icl"]["train_steps"], reg["curves"].shape[-1])
    for j, depth in enumerate(reg["layers"]):
        plots.curve_with_ci(ax, reg["curves"][:, j], x=steps, label=f"{depth} layer(s)",
                            color=plots.COLORS[plots.CYCLE[j]])
    plots.reference_line(ax, float(reg["loss_gd1"].mean()), label="one GD step", role="teacher")
    ax.set_yscale("log")
    plots.label(ax, "training step", "training loss", "Training")


def regression_table(reg: Art) -> Any:
    """Per depth, mean losses and how close the model is to one GD step, as a book table."""
    keys = ("loss_model", "loss_gd1", "loss_gdL", "cos_gd1", "diff_gd1")
    rows = [[depth, *(float(reg[k][:, j].mean()) for k in keys)] for j, depth in enumerate(reg["layers"])]
    return book.table(REGRESSION_HEADER, rows, ["", ".3f", ".3f", ".3f", ".4f", ".4f"])


def matches_gd_step(cosine: float, loss_model: float, loss_gd: float) -> bool:
    """Whether one trained layer has become a GD step: aligned sensitivities and (almost) the same loss."""
    return bool(cosine > SAME_WAY_COSINE and loss_model < SAME_WAY_LOSS * loss_gd)


def same_way(matches: bool) -> str:
    """How the trained layer and the GD step respond to a query, for the prose's first sentence."""
    if matches:
        return "and the two respond to the query the same way"
    return ("but at this budget the trained layer has not become a GD step (the two should respond to the query "
            "the same way, and do not)")


def icl_verdict(matches: bool) -> str:
    """The section's verdict: in-context learning is a learning algorithm, if the run shows it."""
    if matches:
        return "So in-context learning is real, and it is a learning algorithm"
    return ("Here training fell short of the paper's result, so this run does not show it; the stored `lab` run "
            "is the one to read. Where it does hold, in-context learning is a learning algorithm")


def deep_sentence(better: bool) -> str:
    """Whether deeper trained models beat as many plain GD steps, as Von Oswald et al. found."""
    if better:
        return "deeper models learn a better in-context learner than plain GD, as the paper found"
    return "at this budget, deeper models do not beat plain GD, unlike in the paper"


def regression_numbers(reg: Art | None) -> dict[str, Any]:
    """What the prose cites from the regression experiment (NaN and "not computed" when it is not stored)."""
    if reg is None:
        nan = float("nan")
        return {"ch5_lsa1": nan, "ch5_gd1": nan, "ch5_zero": nan, "ch5_cos1": nan, "ch5_depth": nan,
                "ch5_lsa_deep": nan, "ch5_gd_deep": nan, "ch5_deep_vs_gd": MISSING, "ch5_deep_sentence": MISSING,
                "ch5_cos_deep": nan, "ch5_same_way": MISSING, "ch5_icl_verdict": MISSING}
    deep = len(reg["layers"]) - 1
    first, last = ({k: float(reg[k][:, j].mean()) for k in ("loss_model", "loss_gd1", "loss_gdL", "cos_gd1")}
                   for j in (0, deep))
    better = last["loss_model"] < last["loss_gdL"]
    matches = matches_gd_step(first["cos_gd1"], first["loss_model"], first["loss_gd1"])
    return {"ch5_lsa1": first["loss_model"], "ch5_gd1": first["loss_gd1"], "ch5_zero": float(reg["loss_zero"].mean()),
            "ch5_cos1": first["cos_gd1"], "ch5_depth": int(reg["layers"][deep]), "ch5_lsa_deep": last["loss_model"],
            "ch5_gd_deep": last["loss_gdL"], "ch5_deep_vs_gd": "below" if better else "not below",
            "ch5_deep_sentence": deep_sentence(better), "ch5_cos_deep": last["cos_gd1"],
            "ch5_same_way": same_way(matches), "ch5_icl_verdict": icl_verdict(matches)}


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
CHANGE_HEADER = ["student", "first episodes", "last episodes", "change", "95% CI of the change"]
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


def compared(arts: dict[str, Art], pool: dict[str, Art]) -> dict[str, Art]:
    """Every student the change table lists: AD and ED, then the ablations and prompted students."""
    return {**unprompted(arts), **pool}


def changes(named: dict[str, Art], n: int) -> Changes:
    """The in-context change of every named student (sampled actions), with a 95% bootstrap CI across seeds."""
    return Changes({name: first_last(art, "sampled", n) for name, art in named.items()},
                   {name: stats.bootstrap_ci(in_context_change(art["sampled_returns"], n))
                    for name, art in named.items()})


def change_table(ch: Changes) -> Any:
    """The change of every student as a book table."""
    rows = [[name, a, b, b - a, f"{float(ch.ci[name].low):+.2f} to {float(ch.ci[name].high):+.2f}"]
            for name, (a, b) in ch.first_last.items()]
    return book.table(CHANGE_HEADER, rows, ["", ".2f", ".2f", "+.2f", ""])


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

PROBE_TARGETS = {"goal": "Goal position", "progress": "Progress along the history"}  # target -> panel title
PROBE_LINES = (("r2", "probe", "ad"), ("r2_shuffled", "shuffled-target control", "random"))  # key, label, role


def load_probes(scale: Scale) -> Art | None:
    """The stored probes of the AD students (computed at ``ci``), or None and the command that computes them."""
    test = ProbeTest(darkroom_students_config(scale, "ad"), windows=scale.incontext.probe_windows)
    return load_or_explain(lambda: probes_artifact(test, scale), scale, PROBES_COMMAND)


def plot_probe(ax: plt.Axes, pr: Art, target: str) -> None:
    """Held-out R² of one target's probe by layer, at the context's last episode, against the shuffled control."""
    x = np.arange(pr[f"{target}_r2"].shape[1])
    for key, name, role in PROBE_LINES:
        plots.curve_with_ci(ax, pr[f"{target}_{key}"][:, :, -1], x=x, label=name, color=plots.COLORS[role])
    ax.set_xticks(x, ["embedding"] + [f"block {i}" for i in x[1:]])
    plots.label(ax, "layer (last step of the context)", "held-out R²", PROBE_TARGETS[target])


def goal_by_position(pr: Art) -> list[float]:
    """Goal probe R² at the last layer, by episode position in the context (rounded for printing)."""
    return np.round(pr["goal_r2"][:, -1].mean(0), 3).tolist()


def probe_numbers(pr: Art | None) -> dict[str, float]:
    """Best layer's held-out R² per target and its shuffled control (NaN when the probes are not stored)."""
    out = {}
    for t in PROBE_TARGETS:
        best = float(pr[f"{t}_r2"][:, :, -1].mean(0).max()) if pr is not None else float("nan")
        control = float(pr[f"{t}_r2_shuffled"][:, :, -1].mean(0).max()) if pr is not None else float("nan")
        out[f"ch5_probe_{t}"], out[f"ch5_probe_{t}_control"] = best, control
    return out
