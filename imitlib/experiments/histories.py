"""Chapter 3: recording learning histories (Dark Room's tabular learners here; the MinAtar teachers in
``teacher``) and what a recorded history holds, and how it differs from expert data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

import imitlib.envs.darkroom
import imitlib.history
import imitlib.recorders
import imitlib.tabular
from imitlib import artifacts, book, history, plots
from imitlib.envs.darkroom import HORIZON, SIZE
from imitlib.experiments.common import CLI, load_or_explain, ready, recorded_dataset
from imitlib.experiments.teacher import (
    TEACHER_CODE,
    TeacherExperiment,
    minatar_histories,
    record_minatar,
    teacher_experiment,
)
from imitlib.history import HistoryReader
from imitlib.scale import Scale
from imitlib.tabular import QLearningConfig, q_learning

ACTION_NAMES = ("stay", "up", "down", "left", "right")


def history_sources(episodes: int) -> dict[str, QLearningConfig]:
    """The two Dark Room source learners whose histories the book records.

    * ``knowledge``: optimistic initial values and a small constant epsilon. Behaviour improves because the
      table improves: what the agent does tracks what it knows.
    * ``epsilon``: zero initial values and epsilon decaying from 1 over the first 40% of episodes. The greedy
      policy is good early, but behaviour improves mostly because epsilon shrinks.
    """
    return {
        "knowledge": QLearningConfig(q_init=10.0, eps_start=0.1, eps_end=0.1, eps_decay_episodes=0),
        "epsilon": QLearningConfig(eps_start=1.0, eps_end=0.05, eps_decay_episodes=max(1, int(0.4 * episodes))),
    }


@dataclass(frozen=True)
class DarkRoomHistories:
    """A Dark Room dataset: learning histories on every goal, plus expert episodes of the converged learners."""

    source: str  # "knowledge" or "epsilon" (see history_sources)
    runs_per_goal: int
    episodes: int  # episodes of learning per run
    every: int = 1  # record every k-th episode
    expert_episodes: int = 4  # greedy episodes of each converged learner
    train_goals: int = 65  # the rest (16 of 81) are held out
    split_seed: int = 0
    seed: int = 0


def darkroom_histories_config(scale: Scale, source: str = "knowledge") -> DarkRoomHistories:
    """The dataset's sizes at a scale."""
    sizes = {"ci": (1, 60), "lab": (4, 400), "full": (8, 600)}[scale.name]
    return DarkRoomHistories(source=source, runs_per_goal=sizes[0], episodes=sizes[1])


def goal_split(cfg: DarkRoomHistories, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out goals: a fixed random split of the 81 cells (65 / 16 by default)."""
    order = np.random.default_rng(cfg.split_seed).permutation(size * size)
    return np.sort(order[: cfg.train_goals]), np.sort(order[cfg.train_goals:])


def source_runs(cfg: DarkRoomHistories, goals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The recorded learners on ``goals`` (default: all 81 cells), ``runs_per_goal`` runs each, goal-major: each
    run's goal and its random-stream seed (dataset seed, goal, run), so a run replays exactly as recorded."""
    goals = np.arange(SIZE * SIZE) if goals is None else np.asarray(goals)
    runs = np.repeat(goals, cfg.runs_per_goal)
    seeds = np.stack([np.full(runs.size, cfg.seed), runs, np.tile(np.arange(cfg.runs_per_goal), len(goals))], 1)
    return runs, seeds


def move_plan(goals: np.ndarray, episodes: int, moves: int, seed: int, among: np.ndarray | None = None,
              ) -> np.ndarray:
    """``(episodes, len(goals))`` goal per episode: each column starts at its goal and moves ``moves`` times, at
    evenly spaced episodes (the same for every column), each time to a random other cell of ``among`` (default:
    all 81), so a goal never leaves its split. The layout :func:`imitlib.tabular.q_learning` takes as a plan."""
    if not 0 <= moves < episodes:
        raise ValueError(f"moves must be in 0..{episodes - 1} for {episodes} episodes, got {moves}")
    among = np.arange(SIZE * SIZE) if among is None else np.sort(np.asarray(among, np.int64))
    current = np.asarray(goals, np.int64).copy()
    if len(among) < 2 or not np.isin(current, among).all():
        raise ValueError("every goal must be one of `among`, which needs at least 2 cells to move between")
    rng = np.random.default_rng(seed)
    at = np.linspace(0, episodes, moves + 2).astype(int)[1:-1]  # episodes where a new goal starts
    plan = np.empty((episodes, len(current)), np.int64)
    for start, end in zip(np.r_[0, at], np.r_[at, episodes], strict=True):
        plan[start:end] = current
        index = np.searchsorted(among, current)
        step = rng.integers(1, len(among), size=len(current))  # a nonzero shift: never the same cell again
        current = among[(index + step) % len(among)]
    return plan


def record_darkroom(cfg: DarkRoomHistories, folder: Path, moves: int = 0) -> dict[str, Any]:
    """Record ``folder/learning`` (every k-th episode of every run) and ``folder/expert``; return timings. With
    ``moves``, every run's goal moves that many times (:func:`move_plan`, within its split); its task records the
    goal it starts with and the episodes where the goal moves."""
    import time

    from imitlib.history import HistoryWriter
    from imitlib.recorders import TabularRecorder

    if cfg.source not in history_sources(cfg.episodes):
        raise ValueError(f"source must be one of {sorted(history_sources(cfg.episodes))}, got {cfg.source!r}")
    qcfg = history_sources(cfg.episodes)[cfg.source]
    train, held_out = goal_split(cfg)
    goals, seeds = source_runs(cfg)
    runs = np.arange(goals.size)
    plan = np.broadcast_to(goals, (cfg.episodes, goals.size))
    if moves:
        is_train = np.isin(goals, train)
        plan = np.empty((cfg.episodes, goals.size), np.int64)
        for mask, split in ((is_train, train), (~is_train, held_out)):
            plan[:, mask] = move_plan(goals[mask], cfg.episodes, moves, seed=cfg.seed + 1, among=split)
    moved_at = np.flatnonzero((np.diff(plan, axis=0) != 0).any(1)) + 1
    meta = {"source": cfg.source, "q_learning": asdict(qcfg), "train_goals": train.tolist(),
            "held_out_goals": held_out.tolist(), **({"moves": moves, "moved_at": moved_at.tolist()} if moves else {})}
    start = time.perf_counter()
    with HistoryWriter(folder / "learning", obs_kind="darkroom", obs_shape=(1,), n_actions=5,
                       mode="overwrite", meta=meta) as writer:
        for run, goal, seed in zip(runs, goals, seeds, strict=True):
            split = "train" if goal in set(train.tolist()) else "held_out"
            writer.set_run(int(run), goal=int(goal), seed=seed.tolist(), split=split)
        result = q_learning(qcfg, plan, seeds, cfg.episodes, on_episode=TabularRecorder(writer, runs, cfg.every))
    learning_seconds = time.perf_counter() - start
    expert_cfg = QLearningConfig(alpha=qcfg.alpha, gamma=qcfg.gamma, eps_start=0.0, eps_end=0.0,
                                 eps_decay_episodes=0, q_init=0.0)
    with HistoryWriter(folder / "expert", obs_kind="darkroom", obs_shape=(1,), n_actions=5, mode="overwrite",
                       meta={**meta, "expert_of": "final greedy policy of each learning run"}) as writer:
        for run, goal in zip(runs, goals, strict=True):
            writer.set_run(int(run), goal=int(goal), split="train" if goal in set(train.tolist()) else "held_out")
        greedy_episodes(result.q, plan[-1], runs, cfg.expert_episodes, writer, expert_cfg)
    return {"learning_seconds": learning_seconds, "total_seconds": time.perf_counter() - start}


def greedy_episodes(q: np.ndarray, goals: np.ndarray, runs: np.ndarray, n: int, writer: Any,
                     cfg: QLearningConfig) -> None:
    """``n`` copies of each table's greedy episode, written as blocks."""
    cells, act, rew = imitlib.tabular.greedy_rollouts(q, goals, cfg.size, cfg.horizon)
    b, h = act.shape
    truncated = np.zeros((b, h), bool)
    truncated[:, -1] = True
    fields = {"obs": cells[:, :-1].astype(np.uint8)[..., None], "action": act, "reward": rew,
              "terminated": np.zeros((b, h), bool), "truncated": truncated, "update": np.zeros((b, h), np.int32),
              "epsilon": np.zeros((b, h), np.float32)}
    for i in range(n):
        writer.add_block(runs, i, fields)


def darkroom_histories(cfg: DarkRoomHistories, scale: Scale) -> Path:
    """Chapter 3's Dark Room dataset folder (``learning/``, ``expert/``), recorded first if absent. The history
    format is part of the name, so a new format records anew (seconds) instead of finding a folder it refuses."""
    from imitlib.history import FORMAT_VERSION

    return recorded_dataset(f"darkroom-{cfg.source}-v{FORMAT_VERSION}", cfg, scale,
                            lambda folder: record_darkroom(cfg, folder))


def summarise_history(reader: Any, bins: int = 10) -> dict[str, np.ndarray]:
    """What chapter 3 shows of a history, small enough to store: per run and recorded episode its index in the
    learning history, return, length and mean epsilon; action shares in ``bins`` bins of the episode index."""
    from imitlib.history import action_shares, episode_totals, per_run

    runs, returns = per_run(reader, episode_totals(reader))
    lengths = per_run(reader, reader.episodes["length"].astype(float))[1]
    index = per_run(reader, reader.episodes["episode"].astype(float))[1]
    edges = np.linspace(0, np.nanmax(index) + 1, bins + 1)
    return {"runs": runs, "episode": index, "return": returns, "length": lengths,
            "epsilon": per_run(reader, episode_totals(reader, "epsilon"))[1] / lengths,
            "action_edges": edges, "action_shares": action_shares(reader, edges, reader.manifest["n_actions"]),
            "steps": np.array(reader.n_steps),
            "bytes": np.array(sum(f.stat().st_size for f in reader.path.rglob("*.npy")))}


def minatar_histories_name(exp: TeacherExperiment) -> str:
    """The artifact name of chapter 3's summary of a game's recorded histories."""
    return f"ch03_histories_{exp.dqn.env_id.replace('/', '_')}"


def minatar_histories_ready(exp: TeacherExperiment, scale: Scale, every: int = 10) -> bool:
    """Whether chapter 3 can show a game's histories without recording them (an hour-long training at ``lab``)."""
    return ready(minatar_histories_name(exp), {"teacher": exp, "every": every}, scale)


def minatar_histories_artifact(exp: TeacherExperiment, scale: Scale, every: int = 10) -> artifacts.Artifact:
    """Chapter 3's summary of a MinAtar teacher's recorded histories (recorded first if absent: a full training)."""
    from imitlib.history import HistoryReader

    def compute() -> dict[str, np.ndarray]:
        folder = minatar_histories(exp, scale, every=every)
        out = {}
        for part in ("learning", "expert"):
            out.update({f"{part}/{k}": v for k, v in summarise_history(HistoryReader(folder / part)).items()})
        return out

    return artifacts.cached(minatar_histories_name(exp), {"teacher": exp, "every": every}, compute, scale=scale.name,
                            code=(imitlib.history, imitlib.recorders, *TEACHER_CODE, summarise_history, record_minatar))


def source_returns(cfg: DarkRoomHistories) -> tuple[np.ndarray, np.ndarray]:
    """Re-run the recorded learners (same seeds, so the same runs) measuring what the recording cannot show:
    behaviour return and greedy return after every episode, each ``(runs, episodes)``."""
    qcfg = history_sources(cfg.episodes)[cfg.source]
    goals, seeds = source_runs(cfg)
    result = q_learning(qcfg, goals, seeds, cfg.episodes, evaluate_greedy=True)
    return result.returns.T, result.greedy_returns.T


def visitation(reader: Any, runs: np.ndarray, first: int, last: int, size: int = SIZE) -> np.ndarray:
    """How often each cell was visited in recorded episodes ``first..last-1`` of ``runs``, normalised."""
    counts = np.zeros(size * size)
    for run in runs:
        n = min(last, reader.run_episodes(int(run))) - first
        if n > 0:
            np.add.at(counts, reader.window(int(run), first, n)["obs"][:, 0].astype(int), 1)
    return counts / max(counts.sum(), 1)



SOURCES = ("knowledge", "epsilon")  # the two Dark Room teachers (see experiments.history_sources), in prose order
GAMES = {"MinAtar/Breakout-v0": "breakout", "MinAtar/SpaceInvaders-v0": "invaders"}  # env id -> glue-name key
TITLES = {"breakout": "Breakout", "invaders": "Space Invaders"}  # glue-name key -> figure title
MINATAR_ACTIONS = ("no-op", "left", "up", "right", "down", "fire")  # MinAtar's full action set, in its order
GAP_PART = 4  # the gap is read over the first 1/4 of a history: inside the epsilon source's decay (first 40%)
TENTH = 10  # "first / last tenth" of a history: early and late, yet many episodes each so the means are stable
SOURCE_POINTS = 50  # smooth Dark Room curves to about 50 points: readable bands without hiding the trend
GAME_POINTS = 30  # MinAtar records every 10th episode, so fewer points: about 30 per curve
EPSILON_SCALE = 10  # ε (≤ 1) is drawn ×10 to share an axis with Dark Room returns (0 to ~18)
TABLE_HEADER = ["dataset", "runs", "recorded episodes", "steps", "bytes per step", "first-10% return",
                "last-10% return"]
TABLE_FORMATS = ["", "", ",", ",", ".1f", ".2f", ".2f"]


def record_command(env_id: str) -> str:
    """The command that records a MinAtar game's histories (``{scale}`` left for :func:`load_or_explain`)."""
    return f"{CLI} record minatar --env {env_id} --scale {{scale}}"


def darkroom_readers(scale: Scale) -> tuple[dict[str, DarkRoomHistories], dict[str, HistoryReader],
                                            dict[str, HistoryReader]]:
    """Each source's config and readers of its learning histories and expert episodes (recorded first if absent)."""
    configs = {s: darkroom_histories_config(scale, s) for s in SOURCES}
    folders = {s: darkroom_histories(cfg, scale) for s, cfg in configs.items()}
    learning = {s: HistoryReader(f / "learning") for s, f in folders.items()}
    expert = {s: HistoryReader(f / "expert") for s, f in folders.items()}
    return configs, learning, expert


def held_out_text(goals: np.ndarray, size: int = SIZE) -> str:
    """Held-out goal cells as the prose lists them: (row, column) pairs."""
    return ", ".join(str(tuple(divmod(int(g), size))) for g in goals)


def dataset_numbers(cfg: DarkRoomHistories, reader: HistoryReader) -> dict[str, Any]:
    """What the prose cites about the datasets: the goal split and what a recorded step costs on disk."""
    train, held_out = goal_split(cfg)
    return {"ch3_train_goals": len(train), "ch3_held_out": held_out_text(held_out),
            "ch3_bytes_per_step": history.bytes_per_step(reader)}


def tenth(n_episodes: int) -> int:
    """Episodes in a tenth of a history (at least one, so a short history still has a start and an end)."""
    return max(1, n_episodes // TENTH)


def dataset_row(label: str, reader: HistoryReader) -> list[Any]:
    """One dataset's size and its mean return in the first and last tenth of each history."""
    runs, returns = history.per_run(reader, history.episode_totals(reader))
    k = tenth(returns.shape[1])
    return [label, len(runs), reader.n_episodes, reader.n_steps, history.bytes_per_step(reader),
            np.nanmean(returns[:, :k]), np.nanmean(returns[:, -k:])]


def dataset_table(learning: dict[str, HistoryReader], expert: dict[str, HistoryReader]) -> Any:
    """The datasets side by side (every source's learning histories and expert episodes) as a book table."""
    rows = [dataset_row(f"{s} / {kind}", r) for s in learning for kind, r in (("learning", learning[s]),
                                                                                ("expert", expert[s]))]
    return book.table(TABLE_HEADER, rows, TABLE_FORMATS)


def recording_matches(reader: HistoryReader, behaviour: np.ndarray, every: int) -> bool:
    """Whether the recorded returns are the re-run learners' play (every ``every``-th episode): same runs."""
    recorded = history.per_run(reader, history.episode_totals(reader))[1]
    return bool(np.array_equal(recorded, behaviour[:, ::every]))


def greedy_gap(behaviour: np.ndarray, greedy: np.ndarray) -> float:
    """Greedy minus behaviour return over the first part of the history: what the schedule held back."""
    part = behaviour.shape[1] // GAP_PART
    return float(np.mean(greedy[:, :part] - behaviour[:, :part]))


def gap_numbers(returns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Each source's early greedy-minus-behaviour gap, under the prose's names."""
    return {f"ch3_gap_{s}": greedy_gap(behaviour, greedy) for s, (behaviour, greedy) in returns.items()}


def plot_source(ax: plt.Axes, behaviour: np.ndarray, greedy: np.ndarray, source: str, legend: bool) -> None:
    """One source's recorded behaviour return beside the greedy return the recording cannot show."""
    smooth = max(1, behaviour.shape[1] // SOURCE_POINTS)
    plots.curve_with_ci(ax, behaviour, label="behaviour (recorded)", color=plots.COLORS["learner"], smooth=smooth)
    plots.curve_with_ci(ax, greedy, label="greedy policy (not recorded)", color=plots.COLORS["alt"],
                        smooth=smooth, linestyle="--")
    plots.label(ax, "episode", "return", f"source: {source}", legend=legend)


def plot_actions(ax: plt.Axes, reader: HistoryReader) -> None:
    """Share of each Dark Room action in each tenth of the recorded episodes."""
    n_episodes = history.per_run(reader, history.episode_totals(reader))[1].shape[1]
    edges = np.linspace(0, n_episodes, TENTH + 1).astype(int)
    shares = history.action_shares(reader, edges, n_actions=len(ACTION_NAMES))
    ax.stackplot(edges[:-1], shares.T, labels=ACTION_NAMES, step="post")
    plots.label(ax, "recorded episode", "share of actions", "Actions along the history")


def plot_return_and_epsilon(ax: plt.Axes, reader: HistoryReader) -> None:
    """Mean recorded return and exploration rate per recorded episode, across runs."""
    _, eps = history.per_run(reader, history.episode_totals(reader, "epsilon") / HORIZON)
    _, returns = history.per_run(reader, history.episode_totals(reader))
    ax.plot(np.nanmean(returns, 0), color=plots.COLORS["learner"], label="mean return")
    ax.plot(EPSILON_SCALE * np.nanmean(eps, 0), color=plots.COLORS["alt"], label=f"{EPSILON_SCALE} × ε")
    plots.label(ax, "recorded episode", "value", "Return and exploration")


def visitation_maps(learning: HistoryReader, expert: HistoryReader, runs: np.ndarray) -> dict[str, np.ndarray]:
    """Where the agent goes early and late in its learning history, and in expert episodes, as 9 × 9 grids."""
    n_ep = learning.run_episodes(int(runs[0]))
    k = tenth(n_ep)
    maps = {"learning: first 10%": visitation(learning, runs, 0, k),
            "learning: last 10%": visitation(learning, runs, n_ep - k, n_ep),
            "expert": visitation(expert, runs, 0, 1)}
    return {name: m.reshape(SIZE, SIZE) for name, m in maps.items()}


def run_paths(reader: HistoryReader, run: int) -> tuple[np.ndarray, np.ndarray]:
    """Every recorded episode of one run: the cells it walked ``(episodes, steps)`` and its return."""
    episodes = [reader.window(run, i, 1) for i in range(reader.run_episodes(run))]
    return np.stack([e["obs"][:, 0] for e in episodes]), np.array([e["reward"].sum() for e in episodes])


def load_game(scale: Scale, env_id: str) -> artifacts.Artifact | None:
    """The summary of a MinAtar game's recorded histories, or None (and the command that records it)."""
    exp = teacher_experiment(scale, env_id)
    return load_or_explain(lambda: minatar_histories_artifact(exp, scale), scale, record_command(env_id))


def plot_game_history(axes: Any, mh: artifacts.Artifact, title: str) -> None:
    """Return, episode length and ε along a game's learning history (three axes), against expert episodes."""
    common = np.isfinite(mh["learning/return"]).all(0)  # episodes every seed reached (seeds play different numbers)
    x = mh["learning/episode"][0, common]
    for ax, part, ylabel in zip(axes, ("return", "length", "epsilon"), ("return", "steps per episode", "ε"),
                                strict=True):
        plots.curve_with_ci(ax, mh[f"learning/{part}"][:, common], x=x, label="learning history",
                            color=plots.COLORS["teacher"], smooth=max(1, x.size // GAME_POINTS))
        if part != "epsilon":
            plots.reference_line(ax, float(np.nanmean(mh[f"expert/{part}"])), label="expert episodes",
                                 role="optimal")
        plots.label(ax, "episode of the learning history", ylabel, f"{title}: {part}", legend=part == "return")


def plot_game_actions(ax: plt.Axes, mh: artifacts.Artifact, title: str) -> None:
    """Share of each MinAtar action in bins of a game's learning history."""
    edges = mh["learning/action_edges"]
    ax.stackplot(edges[:-1], mh["learning/action_shares"].T, labels=MINATAR_ACTIONS, step="post")
    plots.label(ax, "episode of the learning history", "share of actions", f"{title}: actions along the history")


def game_numbers(shown: dict[str, artifacts.Artifact]) -> dict[str, Any]:
    """What the prose cites per game; NaN or "(not recorded)" where a game is missing, so the text says so."""
    out: dict[str, Any] = {}
    for key in GAMES.values():
        mh = shown.get(key)
        for part in ("learning", "expert"):
            out[f"ch3_{key}_{part}_bytes"] = float(mh[f"{part}/bytes"] / mh[f"{part}/steps"]) if mh else np.nan
            out[f"ch3_{key}_{part}_steps"] = f"{int(mh[f'{part}/steps']):,}" if mh else "(not recorded)"
        k = tenth(mh["learning/return"].shape[1]) if mh else 1
        out[f"ch3_{key}_early"] = float(np.nanmean(mh["learning/return"][:, :k])) if mh else np.nan
        out[f"ch3_{key}_late"] = float(np.nanmean(mh["learning/return"][:, -k:])) if mh else np.nan
        out[f"ch3_{key}_expert"] = float(np.nanmean(mh["expert/return"])) if mh else np.nan
    return out
