"""Chapter 6, part 4: the strongest counterpoint, noise-distilled histories (AD^eps, Zisman et al. 2023).

No learner makes these histories. A hand-coded optimal Dark Room agent (walk the rows first, then the columns,
stay on the goal) acts uniformly at random with probability epsilon, and epsilon falls linearly per step from 1
to a floor, then stays there: the history *looks* like learning. Settings follow the authors' released Dark Room
script (corl-team/ad-eps), whose schedule reaches its floor of 0.5 after 45% of the history.

The claim to test: an AD student trained on such histories ends about 2x above the best policy in its data.
The alternative to rule out is **denoising**: the data's best policy is epsilon-greedy around the optimal one,
so its greedy decoding *is* optimal, and a student decoded greedily recovers it without learning anything in
context. Hence every comparison here is made under the same decoding, and two controls see no improvement at
all: the same student trained on histories at one fixed epsilon (1, pure noise; and the floor, the final noisy
policy), decoded just the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import imitlib.envs.darkroom
import imitlib.history
import imitlib.imitation
import imitlib.transformer
from imitlib import artifacts, stats
from imitlib.envs.darkroom import HORIZON, SIZE, start_cell, transition_table
from imitlib.experiments.beyond import MODES, data_ceiling, plateau, train_frozen, train_frozen_seed, verdict
from imitlib.experiments.common import CLI, MISSING, _student_folder, load_or_explain, recorded_dataset
from imitlib.experiments.histories import darkroom_histories_config, goal_split
from imitlib.experiments.students import darkroom_students_config
from imitlib.scale import Scale

FLOOR = 0.5  # epsilon's floor: the released Dark Room script's effective value
DECAY_SHARE = 0.45  # share of the history over which epsilon falls from 1 to the floor (released script)
CLAIMED_RATIO = 2.0  # Zisman et al.: the student ends about 2x above the best policy in its data


@dataclass(frozen=True)
class NoiseHistories:
    """Histories of the noisy optimal agent on every Dark Room goal: decaying epsilon, or one ``fixed`` epsilon."""

    runs_per_goal: int
    episodes: int
    floor: float = FLOOR
    decay_share: float = DECAY_SHARE
    fixed: float | None = None  # control: every step at this epsilon (the data hold no improvement)
    train_goals: int = 65  # the same split as the Q-learners' histories
    split_seed: int = 0
    seed: int = 0


@dataclass(frozen=True)
class NoiseTest:
    """AD students (chapter 4's recipe) on noise-distilled histories, rolled out frozen on the held-out goals."""

    data: NoiseHistories
    student: imitlib.imitation.StudentConfig  # the seed-0 student; seed i differs only in its seed
    seeds: tuple[int, ...]
    episodes: int  # per rollout: as many as a history holds
    repeats: int = 2  # rollouts per held-out goal


def noise_config(scale: Scale, fixed: float | None = None) -> NoiseTest:
    """The part at a scale: the Q-learners' history sizes and chapter 4's AD student, on noise-made histories."""
    if fixed is not None and not 0 <= fixed <= 1:
        raise ValueError(f"a fixed epsilon must be in [0, 1], got {fixed}")
    sizes = darkroom_histories_config(scale)
    students = darkroom_students_config(scale, "ad")
    data = NoiseHistories(runs_per_goal=sizes.runs_per_goal, episodes=sizes.episodes, fixed=fixed)
    return NoiseTest(data=data, student=students.student, seeds=students.seeds, episodes=sizes.episodes)


def epsilon_schedule(cfg: NoiseHistories, horizon: int = HORIZON) -> np.ndarray:
    """``(episodes, horizon)`` epsilon at every step: 1 falling linearly per step to the floor over the first
    ``decay_share`` of the history, then the floor (or ``fixed`` throughout)."""
    if cfg.fixed is not None:
        return np.full((cfg.episodes, horizon), cfg.fixed)
    step = np.arange(cfg.episodes * horizon).reshape(cfg.episodes, horizon)
    decay_steps = max(1, cfg.decay_share * cfg.episodes * horizon)
    return np.maximum(cfg.floor, 1.0 - (1.0 - cfg.floor) * step / decay_steps)


def optimal_action(cells: np.ndarray, goals: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The hand-coded optimal agent: move along the rows to the goal's row, then along the columns; stay on it."""
    d_row = goals // size - cells // size
    d_col = goals % size - cells % size
    by_col = np.where(d_col > 0, 4, np.where(d_col < 0, 3, 0))  # right, left, stay
    return np.where(d_row > 0, 2, np.where(d_row < 0, 1, by_col))  # down, up, else by column


def noisy_episode(goals: np.ndarray, eps: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One episode of the noisy optimal agent on each goal; ``eps`` is ``(horizon,)``. Fields as recorded."""
    nxt = transition_table(SIZE)
    b, h = len(goals), len(eps)
    cells = np.empty((b, h), np.int64)
    actions = np.empty((b, h), np.int64)
    cell = np.full(b, start_cell(SIZE))
    for t in range(h):
        cells[:, t] = cell
        explore = rng.random(b) < eps[t]
        actions[:, t] = np.where(explore, rng.integers(0, 5, b), optimal_action(cell, goals))
        cell = nxt[cell, actions[:, t]]
    reward = (nxt[cells, actions] == goals[:, None]).astype(np.float32)
    truncated = np.zeros((b, h), bool)
    truncated[:, -1] = True
    return {"obs": cells.astype(np.uint8)[..., None], "action": actions, "reward": reward,
            "terminated": np.zeros((b, h), bool), "truncated": truncated,
            "update": np.zeros((b, h), np.int32), "epsilon": np.broadcast_to(eps, (b, h)).astype(np.float32)}


def noisy_play(cfg: NoiseHistories, goals: np.ndarray, seed: int, on_episode: Any = None) -> np.ndarray:
    """Play the whole schedule on ``goals``; returns ``(len(goals), episodes)`` returns, handing each episode's
    fields to ``on_episode(index, fields)`` (the recorder)."""
    rng = np.random.default_rng(seed)
    schedule = epsilon_schedule(cfg)
    returns = np.zeros((len(goals), cfg.episodes))
    for ep in range(cfg.episodes):
        fields = noisy_episode(np.asarray(goals, np.int64), schedule[ep], rng)
        returns[:, ep] = fields["reward"].sum(1)
        if on_episode is not None:
            on_episode(ep, fields)
    return returns


def record_noise(cfg: NoiseHistories, folder: Path) -> dict[str, Any]:
    """Record ``folder/learning``: one history per run on every goal (the held-out goals' runs are never trained
    on: they measure what the data show there)."""
    import time

    from imitlib.history import HistoryWriter

    train, held_out = goal_split(cfg)
    goals = np.repeat(np.arange(SIZE * SIZE), cfg.runs_per_goal)
    runs = np.arange(goals.size)
    meta = {"source": "noise", "noise": artifacts.to_jsonable(cfg), "train_goals": train.tolist(),
            "held_out_goals": held_out.tolist()}
    start = time.perf_counter()
    with HistoryWriter(folder / "learning", obs_kind="darkroom", obs_shape=(1,), n_actions=5, mode="overwrite",
                       meta=meta) as writer:
        for run, goal in zip(runs, goals, strict=True):
            writer.set_run(int(run), goal=int(goal), split="train" if goal in set(train.tolist()) else "held_out")
        noisy_play(cfg, goals, cfg.seed, on_episode=lambda ep, fields: writer.add_block(runs, ep, fields))
    return {"learning_seconds": time.perf_counter() - start}


def noise_histories(cfg: NoiseHistories, scale: Scale) -> Path:
    """The dataset folder (``learning/``), recorded first if absent (seconds)."""
    from imitlib.history import FORMAT_VERSION

    return recorded_dataset(f"darkroom-noise-v{FORMAT_VERSION}", cfg, scale, lambda folder: record_noise(cfg, folder))


def noise_name(test: NoiseTest) -> str:
    """The artifact name: decaying noise, or the fixed-epsilon control."""
    fixed = test.data.fixed
    return "ch06_noise_ad" if fixed is None else f"ch06_noise_fixed{round(100 * fixed)}"


def run_noise(test: NoiseTest, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Train the students (resumable), roll them out on the held-out goals, sampled and greedy, and measure the
    data there: the noisy agent's returns (sampled) and its greedy decoding (epsilon 0: the optimal agent)."""
    from imitlib.history import HistoryReader
    from imitlib.imitation import darkroom_rollout

    history = noise_histories(test.data, scale) / "learning"
    reader = HistoryReader(history)
    train, held = goal_split(test.data)
    root = None if scale.name == "ci" else _student_folder(noise_name(test), test, scale)
    models, trained = train_frozen(noise_name(test), test.student, test.seeds, history, train, root, progress)
    goals = np.repeat(held, test.repeats)
    out: dict[str, np.ndarray] = {"goals": goals, "loss": trained["loss"], "accuracy": trained["accuracy"]}
    for mode in MODES:  # returns are whole numbers 0..horizon: stored as bytes
        out[f"{mode}_returns"] = np.stack([
            darkroom_rollout(model, goals, test.episodes, context_episodes=test.student.context_episodes,
                             greedy=mode == "greedy", seed=7000 + i)["returns"] for i, model in enumerate(models)
        ]).astype(np.uint8)  # (seeds, goals * repeats, episodes)
    from imitlib.history import episode_totals, per_run

    ids, recorded = per_run(reader, episode_totals(reader))
    held_runs = np.isin([reader.task(int(r))["goal"] for r in ids], held)
    out["source_sampled"] = recorded[held_runs].astype(np.uint8)  # the data on the held-out goals, as recorded
    goals_of = np.array([reader.task(int(r))["goal"] for r in ids[held_runs]])
    out["source_greedy"] = noisy_play(replace(test.data, fixed=0.0), goals_of, seed=0).astype(np.uint8)
    out["epsilon"] = epsilon_schedule(test.data)[:, 0]
    return out


def noise_artifact(test: NoiseTest, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """The part's stored result, or computed and stored (records the histories and trains the students first)."""
    return artifacts.cached(
        noise_name(test), test, lambda: run_noise(test, scale, progress), scale=scale.name,
        code=(imitlib.transformer, imitlib.imitation, imitlib.history, imitlib.envs.darkroom, goal_split,
              epsilon_schedule, optimal_action, noisy_episode, noisy_play, record_noise, noise_histories, train_frozen,
              train_frozen_seed, run_noise))


def noise_command(fixed: float | None) -> str:
    """The command that computes a set (``{scale}`` left for :func:`load_or_explain`)."""
    return f"{CLI} beyond --part noise{'' if fixed is None else f' --epsilon {fixed}'} --scale {{scale}}"


NOISE_SETS = (None, 1.0, FLOOR)  # decaying noise; then the controls: pure noise, and the final noisy policy


def noise_sets(scale: Scale) -> tuple[float | None, ...]:
    """The sets a scale computes: decaying noise, then the scale's fixed-epsilon controls (ci: one)."""
    return (None, *scale.beyond.noise_controls)


def load_noise(scale: Scale, fixed: float | None) -> artifacts.Artifact | None:
    """A set's stored result (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: noise_artifact(noise_config(scale, fixed), scale), scale, noise_command(fixed))


# --------------------------------------------------------------------------------------------------
# Reading the result


def student_plateau(art: Any, mode: str) -> stats.Interval:
    """The frozen student's plateau under one decoding (see :func:`imitlib.experiments.beyond.plateau`)."""
    return plateau(np.asarray(art[f"{mode}_returns"], dtype=float).mean(axis=1))


def best_in_data(art: Any, mode: str) -> float:
    """The best level the data reached on the held-out goals under a decoding: the noisy agent as recorded
    (sampled), or its greedy decoding (the optimal agent)."""
    source = np.asarray(art[f"source_{mode}"], dtype=float)
    return data_ceiling(source, source.shape[1])


def claim_ratio(art: Any) -> float:
    """The published comparison: the student decoded greedily over the best policy in the data as recorded."""
    return float(student_plateau(art, "greedy").estimate) / best_in_data(art, "sampled")


def denoising_verdict(student: stats.Interval, control: stats.Interval) -> str:
    """Does the noise-distilled student beat the student that saw no improvement at all (same decoding)? Only
    when the two 95% CIs do not overlap is either side called ahead."""
    if not (np.isfinite(float(student.estimate)) and np.isfinite(float(control.estimate))):
        return "not measured at this scale yet"
    if float(student.low) > float(control.high):
        return "more than denoising: it ends above the control that saw no improvement (95% CIs apart)"
    if float(student.high) < float(control.low):
        return "below the control that saw no improvement (95% CIs apart)"
    return ("no better than denoising: the control that saw no improvement ends level with it (95% CIs overlap), so "
            "nothing it does needs the improvement in its data to explain it")


CONTEXT_BLIND = 0.9  # share of rollouts scoring the same every episode above which greedy play is called a fixed route


def greedy_fixity(art: Any) -> dict[str, float]:
    """Does greedy decoding still read the context? Per seed, the held-out goals its last episode reaches, and the
    share of rollouts whose return never changes from episode to episode (a context-blind, fixed route)."""
    returns = np.asarray(art["greedy_returns"], dtype=float)  # (seeds, rollouts, episodes)
    goals = np.asarray(art["goals"])
    reached = [len({g for g, r in zip(goals, seed[:, -1], strict=True) if r > 0}) for seed in returns]
    return {"reached": float(np.median(reached)), "goals": float(len(set(goals.tolist()))),
            "fixed": float((np.ptp(returns, axis=2) == 0).mean())}


def greedy_sentence(arts: dict[float | None, Any]) -> str:
    """Why greedy rows can coincide: each set's goals reached greedily and its share of context-blind rollouts."""
    found = {k: greedy_fixity(arts[k]) for k in (None, FLOOR) if k in arts}
    if None not in found:
        return MISSING
    f = found[None]
    text = (f"Decoded greedily, the AD^ε students reach {f['reached']:.0f} of {f['goals']:.0f} held-out goals in "
            f"their last episode (median over seeds), and {f['fixed']:.0%} of their rollouts score the same in every "
            "episode")
    if FLOOR in found:
        c = found[FLOOR]
        text += f"; the students of the ε = {FLOOR:g} control: {c['reached']:.0f} of {c['goals']:.0f}, and "
        text += f"{c['fixed']:.0%}"
    if all(v["fixed"] >= CONTEXT_BLIND for v in found.values()):
        text += ". Greedy decoding follows one fixed route, whatever the context holds"
    return text + "."


def summary(arts: dict[float | None, Any]) -> dict[str, Any]:
    """Per decoding: AD^eps's plateau, the data's best, the verdict against it, and each control's plateau; plus
    the published ratio and the denoising verdict (greedy, against the final noisy policy's control)."""
    ad = arts.get(None)
    out: dict[str, Any] = {}
    for mode in MODES:
        row = {"plateau": student_plateau(ad, mode), "best": best_in_data(ad, mode)}
        row["verdict"] = verdict(row["plateau"], row["best"])
        for fixed in (1.0, FLOOR):
            row[f"fixed{round(100 * fixed)}"] = student_plateau(arts[fixed], mode) if fixed in arts else None
        out[mode] = row
    out["ratio"] = claim_ratio(ad)
    control = out["greedy"][f"fixed{round(100 * FLOOR)}"]
    out["denoising"] = denoising_verdict(out["greedy"]["plateau"], control) if control is not None else None
    return out


def references(art: Any) -> dict[str, float]:
    """Uniform random play and the optimum, averaged over the held-out goals the students were tested on."""
    from imitlib.envs.darkroom import optimal_return, random_policy_return

    goals = np.asarray(art["goals"]).tolist()
    return {"random": float(np.mean([random_policy_return(g) for g in goals])),
            "optimal": float(np.mean([optimal_return(g) for g in goals]))}


SET_LABELS = {None: "AD$^\\varepsilon$ (ε falls to the floor)", 1.0: "control: ε = 1 throughout",
              FLOOR: f"control: ε = {FLOOR} throughout"}
SET_COLORS = {None: "ad", 1.0: "random", FLOOR: "alt"}


def plot_noise(ax: Any, arts: dict[float | None, Any], mode: str, legend: bool = True) -> None:
    """The frozen students on the held-out goals under one decoding, with the data's best under that decoding."""
    from imitlib import plots
    from imitlib.experiments.beyond import SMOOTH_POINTS

    for fixed, art in arts.items():
        curves = np.asarray(art[f"{mode}_returns"], dtype=float).mean(axis=1)
        plots.curve_with_ci(ax, curves, label=SET_LABELS[fixed], color=plots.COLORS[SET_COLORS[fixed]],
                            smooth=max(1, curves.shape[1] // SMOOTH_POINTS))
    ad = arts[None]
    ax.axhline(best_in_data(ad, mode), color=plots.COLORS["event"], lw=1.2, ls=":",
               label=f"best in the data ({mode})")
    refs = references(ad)
    plots.reference_line(ax, refs["random"], label="random policy", role="random")
    plots.reference_line(ax, refs["optimal"], label="optimal", role="optimal")
    plots.label(ax, "episode of the rollout", "return", f"decoded {mode}", legend=legend)


TABLE_HEADER = ["students trained on", "decoding", "plateau [95% CI]", "best in its data"]


def table_rows(arts: dict[float | None, Any]) -> list[list[Any]]:
    """One row per training set and decoding."""
    return [[SET_LABELS[fixed].replace("$^\\varepsilon$", "^ε"), mode, str(student_plateau(art, mode)),
             f"{best_in_data(art, mode):.2f}"] for fixed, art in arts.items() for mode in MODES]


def numbers(arts: dict[float | None, Any]) -> dict[str, Any]:
    """What the prose cites, under chapter 6's names; sets not computed read as NaN and "not computed"."""
    out: dict[str, Any] = {"ch6_noise_floor": FLOOR, "ch6_noise_decay_share": DECAY_SHARE,
                           "ch6_noise_claimed_ratio": CLAIMED_RATIO}
    ad = arts.get(None)
    rows = summary(arts) if ad is not None else None
    for mode in MODES:
        row = rows[mode] if rows else None
        out[f"ch6_noise_{mode}_plateau"] = float(row["plateau"].estimate) if row else float("nan")
        out[f"ch6_noise_{mode}_best"] = row["best"] if row else float("nan")
        out[f"ch6_noise_{mode}_verdict"] = row["verdict"] if row else MISSING
        for fixed in (1.0, FLOOR):
            key = f"fixed{round(100 * fixed)}"
            control = row[key] if row else None
            out[f"ch6_noise_{key}_{mode}_plateau"] = float(control.estimate) if control is not None else float("nan")
    out["ch6_noise_ratio"] = rows["ratio"] if rows else float("nan")
    out["ch6_noise_denoising"] = (rows["denoising"] if rows else None) or MISSING
    out["ch6_noise_greedy_routes"] = greedy_sentence(arts)
    return out
