"""Each chapter's pipeline as one named function, called by both the notebook and the CLI.

A pipeline takes a frozen config (built from the scale by a function named after the experiment) and returns a
dict of numpy arrays; its ``*_artifact`` function wraps it in :func:`imitlib.artifacts.cached`, so an expensive
result is computed once, stored with provenance, and loaded by the book afterwards.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import imitlib.dqn
import imitlib.envs.darkroom
import imitlib.envs.games
import imitlib.icl
import imitlib.imitation
import imitlib.probes
import imitlib.stats
import imitlib.tabular
import imitlib.transformer
from imitlib import artifacts
from imitlib.envs.darkroom import HORIZON, SIZE, optimal_return, random_policy_return
from imitlib.envs.games import MINATAR_GAMES
from imitlib.scale import Scale
from imitlib.tabular import QLearningConfig, q_learning

# ---------------------------------------------------------------------------------------------------
# Chapter 1: tabular Q-learning on Dark Room


LEARNERS: tuple[tuple[str, QLearningConfig], ...] = (
    ("ε-greedy, Q₀ = 0", QLearningConfig()),
    ("ε-greedy, optimistic Q₀ = 10", QLearningConfig(q_init=10.0)),
)


@dataclass(frozen=True)
class TabularExperiment:
    """Chapter 1's experiment: learn Dark Room from scratch, then keep learning after the goal moves."""

    seeds: int
    goals: int  # how many of the 81 goals (a fixed random subset) each seed learns
    episodes: int  # episodes of the from-scratch learning curve
    switch_episodes: int  # episodes before, and again after, the goal moves
    learners: tuple[tuple[str, QLearningConfig], ...] = LEARNERS
    showcase_goal: tuple[int, int] = (1, 7)  # the single run the heatmaps and the explorer show
    showcase_learner: int = 1
    showcase_snapshots: int = 60
    seed: int = 0


def tabular_experiment(scale: Scale, seed: int = 0) -> TabularExperiment:
    """Chapter 1's sizes at the given scale."""
    t = scale.tabular
    return TabularExperiment(seeds=t.seeds, goals=t.goals, episodes=t.episodes,
                             switch_episodes=t.switch_episodes, seed=seed)


def mirrored_goal(cell: int, size: int = SIZE) -> int:
    """The cell opposite ``cell`` through the centre: where the goal moves to, as far as it can get."""
    row, col = divmod(cell, size)
    return (size - 1 - row) * size + (size - 1 - col)


def experiment_goals(exp: TabularExperiment, size: int = SIZE) -> np.ndarray:
    """The goals every seed learns: a fixed random subset, never the centre (its mirror is itself)."""
    cells = np.array([c for c in range(size * size) if c != mirrored_goal(c, size)])
    order = np.random.default_rng(exp.seed).permutation(cells)
    return np.sort(order[: min(exp.goals, len(cells))])


def _grid(n_seeds: int, goals: np.ndarray, seed: int, tag: int) -> tuple[np.ndarray, np.ndarray]:
    """All (seed, goal) runs of an experiment, flattened, with one random stream per run."""
    seed_idx, goal = np.meshgrid(np.arange(n_seeds), goals, indexing="ij")
    seeds = np.stack([np.full(seed_idx.size, seed), seed_idx.ravel(), goal.ravel(), np.full(seed_idx.size, tag)], 1)
    return goal.ravel(), seeds


def _per_seed(x: np.ndarray, n_seeds: int) -> np.ndarray:
    """(E, seeds * goals) -> (seeds, E): average over goals within each seed."""
    return x.reshape(x.shape[0], n_seeds, -1).mean(2).T


def run_tabular_experiment(exp: TabularExperiment, progress: bool = False) -> dict[str, np.ndarray]:
    """Learning curves from scratch, then the goal-switch experiment, for every learner and seed."""
    goals = experiment_goals(exp)
    moved = np.array([mirrored_goal(g) for g in goals])
    out: dict[str, np.ndarray] = {"goals": goals, "moved_goals": moved}
    learn_goal, learn_seeds = _grid(exp.seeds, goals, exp.seed, tag=0)
    sw_goal, sw_seeds = _grid(exp.seeds, goals, exp.seed, tag=1)
    sw_plan = np.concatenate([np.broadcast_to(sw_goal, (exp.switch_episodes, sw_goal.size)),
                              np.broadcast_to(np.array([mirrored_goal(g) for g in sw_goal]),
                                              (exp.switch_episodes, sw_goal.size))])
    keys = ("returns", "greedy", "update")
    parts: dict[str, list[np.ndarray]] = {f"{p}_{k}": [] for p in ("learn", "switch") for k in keys}
    for _, cfg in exp.learners:
        for prefix, plan, seeds, n_ep in (("learn", learn_goal, learn_seeds, exp.episodes),
                                          ("switch", sw_plan, sw_seeds, 2 * exp.switch_episodes)):
            res = q_learning(cfg, plan, seeds, n_ep, evaluate_greedy=True, progress=progress)
            for k, arr in zip(keys, (res.returns, res.greedy_returns, res.update_size), strict=True):
                parts[f"{prefix}_{k}"].append(_per_seed(arr, exp.seeds))
    out.update({k: np.stack(v) for k, v in parts.items()})  # (learners, seeds, episodes)
    out["epsilon_learn"] = np.array([exp.learners[0][1].epsilon(e) for e in range(exp.episodes)])
    out["optimal"] = np.array(np.mean([optimal_return(int(g)) for g in goals]))
    out["optimal_moved"] = np.array(np.mean([optimal_return(int(g)) for g in moved]))
    out["random"] = np.array(np.mean([random_policy_return(int(g)) for g in goals]))
    out["random_moved"] = np.array(np.mean([random_policy_return(int(g)) for g in moved]))
    out.update(showcase_run(exp))
    return out


def tabular_artifact(exp: TabularExperiment, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 1's results: stored ones if present (``lab``/``full``), else computed and stored."""
    return artifacts.cached(
        "ch01_tabular", exp, lambda: run_tabular_experiment(exp, progress=progress), scale=scale.name,
        code=(run_tabular_experiment, showcase_run, experiment_goals, mirrored_goal, greedy_path, _grid, _per_seed,
              tabular_experiment, imitlib.tabular, imitlib.envs.darkroom),
    )


def showcase_run(exp: TabularExperiment) -> dict[str, np.ndarray]:
    """One learner, one seed, one goal, moved half-way: value maps and greedy paths to scrub through."""
    _, cfg = exp.learners[exp.showcase_learner]
    goal = exp.showcase_goal[0] * SIZE + exp.showcase_goal[1]
    n = 2 * exp.switch_episodes
    plan = np.array([goal] * exp.switch_episodes + [mirrored_goal(goal)] * exp.switch_episodes)[:, None]
    half = exp.switch_episodes
    # evenly spaced for the slider, plus log-spaced points after the start and after the move, where it changes fast
    early = np.geomspace(1, half, exp.showcase_snapshots // 4)
    at = np.unique(np.concatenate([np.linspace(0, n, exp.showcase_snapshots + 1), early, half + early]).astype(int))
    res = q_learning(cfg, plan, [(exp.seed, 0, goal, 2)], n, snapshot_at=tuple(at), evaluate_greedy=True)
    values = np.stack([res.snapshots[e][0].max(1) for e in at])  # (snapshots, cells)
    paths = np.stack([greedy_path(res.snapshots[e][0]) for e in at])
    return {
        "showcase_at": at,
        "showcase_values": values,
        "showcase_paths": paths,
        "showcase_goals": plan[np.minimum(at, n - 1), 0],
        "showcase_returns": res.returns[:, 0],
        "showcase_greedy": res.greedy_returns[:, 0],
    }


def greedy_path(q: np.ndarray, size: int = SIZE, horizon: int = HORIZON) -> np.ndarray:
    """Cells the greedy policy of one table ``(cells, actions)`` visits from the start (ties -> lowest action)."""
    return imitlib.tabular.greedy_rollouts(q[None], np.zeros(1, np.int64), size, horizon)[0][0]


def by_learner(exp: TabularExperiment, array: np.ndarray) -> dict[str, np.ndarray]:
    """Label a ``(learners, ...)`` result array with the learners' names, for plotting."""
    return dict(zip((name for name, _ in exp.learners), array, strict=True))


def episodes_to_reach(curves: np.ndarray, level: float, window: int = 10) -> np.ndarray:
    """First episode at which each seed's ``window``-episode running mean reaches ``level`` (NaN: never)."""
    above = imitlib.stats.running_mean(curves, window) >= level  # (seeds, episodes - window + 1)
    return np.where(above.any(1), above.argmax(1) + window - 1, np.nan)


def reach_summary(episodes: np.ndarray) -> str:
    """Words for :func:`episodes_to_reach` across seeds: the median over seeds that got there, and how many did."""
    ok = episodes[~np.isnan(episodes)]
    if ok.size == 0:
        return f"never within the budget (0 of {episodes.size} seeds)"
    return f"{np.median(ok):.0f} episodes (median; {ok.size} of {episodes.size} seeds got there)"


# ---------------------------------------------------------------------------------------------------
# Chapter 2: the DQN teacher


RECORD_EVERY = 10  # chapter 3 keeps every 10th episode of a MinAtar teacher's learning


@dataclass(frozen=True)
class TeacherExperiment:
    """Chapter 2's experiment: one DQN per seed on one game, trained together."""

    dqn: imitlib.dqn.DQNConfig
    seeds: tuple[int, ...]


def teacher_experiment(scale: Scale, env_id: str | None = None, seed: int = 0) -> TeacherExperiment:
    """The teacher's settings at a scale (see :mod:`imitlib.scale`), optionally on another game."""
    t = scale.teacher
    cfg = imitlib.dqn.DQNConfig(
        env_id=env_id or t.env_id, steps=t.steps, num_envs=t.num_envs, network=t.network,
        buffer_size=t.buffer_size, batch_size=t.batch_size, train_every=t.train_every,
        learning_starts=t.learning_starts, target_every=t.target_every, eps_end=t.eps_end,
        eps_decay_steps=t.eps_decay_steps, lr=t.lr, adam_eps=t.adam_eps, segment_steps=t.segment_steps,
        eval_episodes=t.eval_episodes, full_action_space=(env_id or t.env_id).startswith("ALE/"),
    )
    return TeacherExperiment(dqn=cfg, seeds=tuple(seed * 1000 + i for i in range(t.seeds)))


def snapshot_segments(n_segments: int, count: int = 6) -> list[int]:
    """Segments after which the first seed's weights are kept: log-spaced, so early learning is visible."""
    return sorted({round(x) for x in np.geomspace(1, n_segments, count)})


def run_teacher(exp: TeacherExperiment, run_dir: Path | None = None, progress: bool = True,
                on_step: Any = None) -> dict[str, np.ndarray]:
    """Train the teachers (resuming from ``run_dir``) and return their metrics and final weights as arrays.

    The first seed's weights are also kept after a few log-spaced segments (in ``run_dir/snapshots`` while
    training), so the book can show the teacher playing, and its Q-values, at several points of training.
    ``on_step`` (a recorder's hook) sees every step; it does not change what is learned.
    """
    n_segments = -(-exp.dqn.steps // exp.dqn.segment_steps)
    keep = snapshot_segments(n_segments)
    snapshots: dict[int, dict[str, np.ndarray]] = {}
    snap_dir = run_dir / "snapshots" if run_dir else None

    def on_segment(run: imitlib.dqn.DQNRun) -> None:
        if run.state.segment not in keep:
            return
        weights = {k: v[0].detach().clone() for k, v in run.q.online.state_dict().items()}
        snapshots[run.state.env_steps] = {k: v.numpy() for k, v in weights.items()}
        if snap_dir:
            snap_dir.mkdir(parents=True, exist_ok=True)
            artifacts.atomic_write_bytes(snap_dir / f"{run.state.env_steps:010d}.pt", lambda f: torch.save(weights, f))

    run = imitlib.dqn.train(exp.dqn, exp.seeds, run_dir=run_dir, progress=progress,
                            hooks=imitlib.dqn.Hooks(on_step=on_step, on_segment=on_segment))
    if snap_dir and snap_dir.exists():  # snapshots written before an interruption
        for path in sorted(snap_dir.glob("*.pt")):
            blob = torch.load(path, map_location="cpu", weights_only=True)
            snapshots.setdefault(int(path.stem), {k: v.numpy() for k, v in blob.items()})
    bin_steps = max(exp.dqn.segment_steps // 5, exp.dqn.num_envs)
    train_steps, train_returns = run.train_curve(bin_steps)
    eval_steps, eval_returns = run.eval_curve()
    out = {
        "seeds": np.array(exp.seeds),
        "train_steps": train_steps,
        "train_returns": train_returns,  # (S, bins): mean raw return of training episodes ending in each bin
        "eval_steps": eval_steps,
        "eval_returns": np.array([r for _, r in run.state.evals]).transpose(1, 0, 2),  # (S, evals, episodes)
        "eval_means": eval_returns,
        "loss_steps": np.array([x[0] for x in run.state.losses]),
        "losses": np.array([x[1] for x in run.state.losses]).T.reshape(len(exp.seeds), -1),
        "mean_q": np.array([x[2] for x in run.state.losses]).T.reshape(len(exp.seeds), -1),
        "wall_seconds": np.array(run.state.wall_seconds),
        "env_steps": np.array(run.state.env_steps),
    }
    for name, value in run.q.online.state_dict().items():
        out[f"weights/{name}"] = value.numpy()
    out["snapshot_steps"] = np.array(sorted(snapshots))
    for name in run.q.online.state_dict():
        out[f"snapshots/{name}"] = np.stack([snapshots[k][name] for k in sorted(snapshots)])
    out["_run"] = run  # type: ignore[assignment]  # for a recorder's expert episodes; dropped before storing
    return out


def teacher_artifact(exp: TeacherExperiment, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 2's teachers: stored ones if present, else trained (resumably, under ``runs/``) and stored."""
    name = _teacher_name(exp)
    key = artifacts.config_hash(name, exp, scale.name)
    run_dir = artifacts.results_root().parent / "runs" / f"{name}-{scale.name}-{key}"

    def compute() -> dict[str, np.ndarray]:
        recorded = _record_teacher(exp, scale, progress=progress) if exp.dqn.env_id in MINATAR_GAMES else None
        out = recorded or run_teacher(exp, None if scale.name == "ci" else run_dir, progress=progress)
        return {k: v for k, v in out.items() if k != "_run"}

    return artifacts.cached(name, exp, compute, scale=scale.name, code=TEACHER_CODE)


def _teacher_name(exp: TeacherExperiment) -> str:
    return f"ch02_teacher_{exp.dqn.env_id.replace('/', '_')}"


def _record_teacher(exp: TeacherExperiment, scale: Scale, every: int = RECORD_EVERY,
                    progress: bool = True) -> dict[str, np.ndarray] | None:
    """Train once for chapters 2 and 3: record the histories while the teachers learn and return the teachers'
    arrays, or None when the dataset was already recorded (then nothing is trained here)."""
    out: dict[str, dict[str, np.ndarray]] = {}

    def record(folder: Path) -> dict[str, Any]:
        timings, out["teacher"] = record_minatar(exp, folder, every=every, progress=progress)
        return timings

    recorded_dataset(_minatar_dataset_name(exp, every), exp, scale, record)
    return out.get("teacher")


def teacher_network(art: artifacts.Artifact, exp: TeacherExperiment, seed_index: int = 0,
                    snapshot: int | None = None) -> torch.nn.Module:
    """One teacher as an ``nn.Module``: final weights, or those of the ``snapshot``-th stored snapshot (seed 0)."""
    spec = imitlib.envs.games.game_spec(exp.dqn.env_id, full_action_space=exp.dqn.full_action_space,
                                        channels=exp.dqn.channels)
    prefix, index = ("weights/", seed_index) if snapshot is None else ("snapshots/", snapshot)
    stacked = imitlib.dqn.StackedNet(lambda: imitlib.dqn.make_network(exp.dqn, spec), [0])
    stacked.load_state_dict({k[len(prefix):]: torch.as_tensor(v[index : index + 1]) for k, v in art.data.items()
                             if k.startswith(prefix)})
    return stacked.single(0)


def random_returns(env_id: str, episodes: int, seed: int = 0, **env_options: object) -> np.ndarray:
    """Raw returns of the uniform random policy: the floor every learning curve is compared with."""
    envs = imitlib.envs.games.make_vec_env(env_id, episodes, **env_options)
    rng = np.random.default_rng(seed)
    envs.reset(seed=[seed * 100_000 + i for i in range(episodes)])
    returns, running = np.zeros(episodes), np.ones(episodes, bool)
    n_actions = int(envs.single_action_space.n)
    for _ in range(27_000):
        _, reward, terminated, truncated, _ = envs.step(rng.integers(n_actions, size=episodes))
        returns += np.asarray(reward) * running
        running &= ~(np.asarray(terminated) | np.asarray(truncated))
        if not running.any():
            break
    envs.close()
    return returns


LAYER_NAMES = {"weights.0": "conv", "weights.1": "hidden layer", "weights.2": "Q head"}


def weight_drift(art: artifacts.Artifact) -> dict[str, np.ndarray]:
    """Per layer, how far the first seed's weights are from the first kept snapshot: ||W - W_0|| / ||W_0||."""
    out = {}
    for key, w in sorted(art.data.items()):
        if key.startswith("snapshots/weights"):
            flat = w.reshape(len(w), -1)
            name = key.split("/", 1)[1]
            out[LAYER_NAMES.get(name, name)] = np.linalg.norm(flat - flat[0], axis=1) / np.linalg.norm(flat[0])
    return out


def probe_values(art: artifacts.Artifact, exp: TeacherExperiment, states: np.ndarray) -> np.ndarray:
    """Mean over ``states`` of max_a Q, as each kept snapshot of the first seed sees them: ``(snapshots,)``."""
    spec = imitlib.envs.games.game_spec(exp.dqn.env_id, full_action_space=exp.dqn.full_action_space,
                                        channels=exp.dqn.channels)
    x = imitlib.dqn.preprocess(spec, torch.as_tensor(states))
    with torch.no_grad():
        return np.array([teacher_network(art, exp, snapshot=i)(x).max(-1).values.mean().item()
                         for i in range(len(art["snapshot_steps"]))])


# the source that determines a teacher artifact (edits elsewhere do not mark stored teachers stale)
TEACHER_CODE = (
    imitlib.dqn.DQNConfig, imitlib.dqn.StackedNet, imitlib.dqn.StackedQ, imitlib.dqn.ReplayBuffer, imitlib.dqn.train,
    imitlib.dqn._run_segment, imitlib.dqn._update, imitlib.dqn.td_loss, imitlib.dqn.act, imitlib.dqn.evaluate,
    imitlib.dqn.minatar_net, imitlib.dqn.nature_cnn, imitlib.dqn.preprocess, imitlib.envs.games.make_vec_env,
    imitlib.envs.games._minatar_env, imitlib.envs.games.PadChannels, teacher_experiment, run_teacher,
    snapshot_segments,
)


# ---------------------------------------------------------------------------------------------------
# Chapter 3: recording learning histories


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


def record_darkroom(cfg: DarkRoomHistories, folder: Path) -> dict[str, Any]:
    """Record ``folder/learning`` (every k-th episode of every run) and ``folder/expert``; return timings."""
    import time

    from imitlib.history import HistoryWriter, TabularRecorder

    if cfg.source not in history_sources(cfg.episodes):
        raise ValueError(f"source must be one of {sorted(history_sources(cfg.episodes))}, got {cfg.source!r}")
    qcfg = history_sources(cfg.episodes)[cfg.source]
    train, held_out = goal_split(cfg)
    goals = np.repeat(np.arange(SIZE * SIZE), cfg.runs_per_goal)
    runs = np.arange(goals.size)
    seeds = np.stack([np.full(goals.size, cfg.seed), goals, np.tile(np.arange(cfg.runs_per_goal), SIZE * SIZE)], 1)
    meta = {"source": cfg.source, "q_learning": asdict(qcfg), "train_goals": train.tolist(),
            "held_out_goals": held_out.tolist()}
    start = time.perf_counter()
    with HistoryWriter(folder / "learning", obs_kind="darkroom", obs_shape=(1,), n_actions=5,
                       mode="overwrite", meta=meta) as writer:
        for run, goal, seed in zip(runs, goals, seeds, strict=True):
            split = "train" if goal in set(train.tolist()) else "held_out"
            writer.set_run(int(run), goal=int(goal), seed=seed.tolist(), split=split)
        result = q_learning(qcfg, goals, seeds, cfg.episodes, on_episode=TabularRecorder(writer, runs, cfg.every))
    learning_seconds = time.perf_counter() - start
    expert_cfg = QLearningConfig(alpha=qcfg.alpha, gamma=qcfg.gamma, eps_start=0.0, eps_end=0.0,
                                 eps_decay_episodes=0, q_init=0.0)
    with HistoryWriter(folder / "expert", obs_kind="darkroom", obs_shape=(1,), n_actions=5, mode="overwrite",
                       meta={**meta, "expert_of": "final greedy policy of each learning run"}) as writer:
        for run, goal in zip(runs, goals, strict=True):
            writer.set_run(int(run), goal=int(goal), split="train" if goal in set(train.tolist()) else "held_out")
        _greedy_episodes(result.q, goals, runs, cfg.expert_episodes, writer, expert_cfg)
    return {"learning_seconds": learning_seconds, "total_seconds": time.perf_counter() - start}


def _greedy_episodes(q: np.ndarray, goals: np.ndarray, runs: np.ndarray, n: int, writer: Any,
                     cfg: QLearningConfig) -> None:
    """``n`` copies of each table's greedy episode, written as blocks."""
    from imitlib.history import PerEpisode

    cells, act, rew = imitlib.tabular.greedy_rollouts(q, goals, cfg.size, cfg.horizon)
    b, h = act.shape
    truncated = np.zeros((b, h), bool)
    truncated[:, -1] = True
    for i in range(n):
        writer.add_block(runs, [i] * b, {"obs": cells[:, :-1].astype(np.uint8)[..., None], "action": act,
                                         "reward": rew.astype(np.uint8), "terminated": np.zeros((b, h), bool),
                                         "truncated": truncated, "update": PerEpisode(first=0),
                                         "epsilon": PerEpisode(first=0.0)})


def recorded_dataset(name: str, cfg: Any, scale: Scale, record: Any) -> Path:
    """``data/<name>-<scale>-<config hash>``, recorded by ``record(folder)`` first if absent (always at ``ci``
    scale) into a temporary folder that is renamed when complete, with provenance beside the histories."""
    import json
    import shutil

    key = artifacts.config_hash(name, cfg, scale.name)
    folder = artifacts.results_root().parent / "data" / f"{name}-{scale.name}-{key}"
    if (folder / "provenance.json").exists() and scale.name != "ci":
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    timings = record(tmp)
    prov = {"config": artifacts.to_jsonable(cfg), "scale": scale.name, "commit": artifacts.git_commit(), **timings}
    (tmp / "provenance.json").write_text(json.dumps(prov, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def darkroom_histories(cfg: DarkRoomHistories, scale: Scale) -> Path:
    """Chapter 3's Dark Room dataset folder (``learning/``, ``expert/``), recorded first if absent. The history
    format is part of the name: a dataset recorded by an older imitlib still reads, but recording anew takes a
    second and keeps chapter 3's bytes-per-step figure true of the current format."""
    from imitlib.history import FORMAT_VERSION

    return recorded_dataset(f"darkroom-{cfg.source}-v{FORMAT_VERSION}", cfg, scale,
                            lambda folder: record_darkroom(cfg, folder))


def _minatar_dataset_name(exp: TeacherExperiment, every: int) -> str:
    return f"{exp.dqn.env_id.replace('/', '_')}-every{every}"


def minatar_histories(exp: TeacherExperiment, scale: Scale, every: int = RECORD_EVERY) -> Path:
    """A MinAtar teacher dataset folder (``learning/``, ``expert/``), recorded first if absent (a full training).

    Recording trains the teachers, so chapter 2's artifact is stored from the same run when it is missing."""
    teacher: dict[str, dict[str, np.ndarray]] = {}

    def record(folder: Path) -> dict[str, Any]:
        timings, teacher["arrays"] = record_minatar(exp, folder, every=every)
        return timings

    folder = recorded_dataset(_minatar_dataset_name(exp, every), exp, scale, record)
    if teacher and every == RECORD_EVERY and not artifacts.is_stored(_teacher_name(exp), exp, scale.name):
        arrays = {k: v for k, v in teacher["arrays"].items() if k != "_run"}
        artifacts.cached(_teacher_name(exp), exp, lambda: arrays, scale=scale.name, code=TEACHER_CODE)
    return folder


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
                            code=(summarise_history, record_minatar))


def source_returns(cfg: DarkRoomHistories) -> tuple[np.ndarray, np.ndarray]:
    """Re-run the recorded learners (same seeds, so the same runs) measuring what the recording cannot show:
    behaviour return and greedy return after every episode, each ``(runs, episodes)``."""
    qcfg = history_sources(cfg.episodes)[cfg.source]
    goals = np.repeat(np.arange(SIZE * SIZE), cfg.runs_per_goal)
    seeds = np.stack([np.full(goals.size, cfg.seed), goals, np.tile(np.arange(cfg.runs_per_goal), SIZE * SIZE)], 1)
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


def record_minatar(exp: TeacherExperiment, folder: Path, every: int = RECORD_EVERY, expert_episodes: int = 20,
                   expert_epsilon: float = 0.05, progress: bool = True,
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train the teachers with a recorder attached (every ``every``-th episode of each seed goes to
    ``folder/learning``), then record ``expert_episodes`` per seed of each final teacher in ``folder/expert``.
    Returns the timings and the teachers' arrays (as :func:`run_teacher` gives them): one run serves both
    chapter 2 and chapter 3.
    """
    import time

    from imitlib.history import DQNRecorder, Episode, HistoryWriter

    spec = imitlib.envs.games.game_spec(exp.dqn.env_id, full_action_space=exp.dqn.full_action_space,
                                        channels=exp.dqn.channels)
    meta = {"teacher": artifacts.to_jsonable(exp), "every": every}
    start = time.perf_counter()
    with HistoryWriter(folder / "learning", obs_kind=spec.kind, obs_shape=spec.obs_shape, n_actions=spec.n_actions,
                       mode="overwrite", meta=meta) as writer:
        for i, seed in enumerate(exp.seeds):
            writer.set_run(i, game=exp.dqn.env_id, seed=seed)
        recorder = DQNRecorder(writer, range(len(exp.seeds)), every=every)
        teacher = run_teacher(exp, progress=progress, on_step=recorder.on_step)
        run = teacher["_run"]
    learning_seconds = time.perf_counter() - start
    with HistoryWriter(folder / "expert", obs_kind=spec.kind, obs_shape=spec.obs_shape, n_actions=spec.n_actions,
                       mode="overwrite", meta={**meta, "expert_epsilon": expert_epsilon}) as writer:
        for i, seed in enumerate(exp.seeds):
            writer.set_run(i, game=exp.dqn.env_id, seed=seed)
            net = run.q.online.single(i)
            for k in range(expert_episodes):
                frames, actions, rewards = imitlib.dqn.play(net, exp.dqn, spec, seed=seed * 1000 + k,
                                                            epsilon=expert_epsilon, max_steps=10_000)
                t = len(actions)
                writer.add(Episode(run=i, episode=k, obs=DQNRecorder.encode(frames), action=actions,
                                   reward=rewards, terminated=np.arange(t) == t - 1, truncated=np.zeros(t, bool),
                                   update=np.full(t, run.state.updates), epsilon=np.full(t, expert_epsilon)))
    return {"learning_seconds": learning_seconds, "total_seconds": time.perf_counter() - start}, teacher


# ---------------------------------------------------------------------------------------------------
# Chapter 4: the transformer student (snapshot imitation)


@dataclass(frozen=True)
class DarkRoomStudents:
    """ED or AD students on a Dark Room dataset: one per seed, same architecture and budget for both kinds."""

    data: DarkRoomHistories
    student: imitlib.imitation.StudentConfig  # the seed-0 student; seed i differs only in its seed
    seeds: tuple[int, ...]
    eval_episodes: int  # episodes per rollout in the snapshot test
    eval_repeats: int = 2  # rollouts per goal
    train_goals: int | None = None  # ablation: only this many of the training goals (a fixed random subset)
    shuffled: bool = False  # ablation: every history's episodes in a random order


def darkroom_students_config(scale: Scale, kind: str, source: str = "knowledge", context_episodes: int = 4,
                             train_goals: int | None = None, shuffled: bool = False) -> DarkRoomStudents:
    """AD (learning histories) or ED (expert episodes) students at a scale; AD's Dark Room recipe otherwise."""
    from imitlib.imitation import StudentConfig
    from imitlib.transformer import TransformerConfig

    s = scale.student
    model = TransformerConfig(obs_kind="darkroom", n_actions=5, block_size=context_episodes * HORIZON,
                              n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd)
    student = StudentConfig(model=model, kind=kind, context_episodes=context_episodes, updates=s.updates,
                            batch_size=s.batch_size, warmup=max(1, s.updates // 20),
                            checkpoint_every=max(1, min(250, s.updates // 4)), bf16=s.bf16)
    return DarkRoomStudents(data=darkroom_histories_config(scale, source), student=student,
                            seeds=tuple(range(s.seeds)), eval_episodes=s.eval_episodes, train_goals=train_goals,
                            shuffled=shuffled)


def _student_folder(name: str, cfg: Any, scale: Scale) -> Path:
    """Where a student's resumable checkpoints live while it trains (``runs/``, not committed)."""
    key = artifacts.config_hash(name, cfg, scale.name)
    return artifacts.results_root().parent / "runs" / f"{name}-{scale.name}-{key}"


def students_name(exp: DarkRoomStudents) -> str:
    """The artifact name of a set of Dark Room students: kind, source, and any ablation."""
    parts = [f"ch04_darkroom_{exp.student.kind}_{exp.data.source}"]
    if exp.student.context_episodes != 4:
        parts.append(f"ctx{exp.student.context_episodes}")
    if exp.train_goals is not None:
        parts.append(f"goals{exp.train_goals}")
    if exp.shuffled:
        parts.append("shuffled")
    return "_".join(parts)


def student_goals(exp: DarkRoomStudents) -> np.ndarray:
    """The goals the students train on: the training split, or a fixed random subset of it (ablation)."""
    train, _ = goal_split(exp.data)
    if exp.train_goals is None:
        return train
    if not 1 <= exp.train_goals <= len(train):
        raise ValueError(f"train_goals must be between 1 and {len(train)}, got {exp.train_goals}")
    return np.sort(np.random.default_rng(exp.data.split_seed + 1).permutation(train)[: exp.train_goals])


def student_data(exp: DarkRoomStudents, scale: Scale) -> Any:
    """The history the students read: learning histories (AD), expert episodes (ED), or the shuffled copy."""
    from imitlib.history import HistoryReader, shuffle_episodes

    folder = darkroom_histories(exp.data, scale)
    if exp.student.kind == "ed":
        return HistoryReader(folder / "expert")
    if not exp.shuffled:
        return HistoryReader(folder / "learning")
    if not (folder / "learning-shuffled" / "manifest.json").exists():
        tmp = folder / "learning-shuffled.partial"
        shuffle_episodes(HistoryReader(folder / "learning"), tmp, seed=exp.data.seed)
        os.replace(tmp, folder / "learning-shuffled")
    return HistoryReader(folder / "learning-shuffled")


def train_darkroom_students(exp: DarkRoomStudents, scale: Scale, progress: bool = True) -> list[Any]:
    """Train every seed's student (resuming under ``runs/`` except at ``ci``) on the training goals' windows."""
    from imitlib.imitation import train_student

    reader = student_data(exp, scale)
    goals = set(student_goals(exp).tolist())
    runs = [r for r in reader.runs() if reader.task(r)["goal"] in goals]
    root = _student_folder(students_name(exp), exp, scale)
    out = []
    for seed in exp.seeds:
        cfg = replace(exp.student, seed=seed)
        out.append(train_student(cfg, reader, runs, None if scale.name == "ci" else root / f"seed{seed}",
                                 progress=progress))
    return out


def optimal_actions(cells: np.ndarray, goals: np.ndarray, size: int = SIZE) -> np.ndarray:
    """``(..., 5)`` booleans: which actions move closer to the goal (or stay on it), i.e. what a converged
    Q-learner's greedy policy may do from each cell."""
    nxt = imitlib.envs.darkroom.transition_table(size)
    goals = np.broadcast_to(np.asarray(goals).reshape(-1, *[1] * (cells.ndim - 1)), cells.shape)
    dist = np.abs(nxt[cells] // size - goals[..., None] // size) + np.abs(nxt[cells] % size - goals[..., None] % size)
    return dist == dist.min(-1, keepdims=True)


def snapshot_test(model: Any, goals: np.ndarray, exp: DarkRoomStudents, seed: int) -> dict[str, np.ndarray]:
    """The frozen student on ``goals`` (``eval_repeats`` rollouts each), sampled and greedy: returns
    ``(goals * repeats, episodes)`` and how often it took an optimal action."""
    from imitlib.imitation import darkroom_rollout

    g = np.repeat(goals, exp.eval_repeats)
    out = {}
    for mode in ("sampled", "greedy"):
        roll = darkroom_rollout(model, g, exp.eval_episodes, context_episodes=exp.student.context_episodes,
                                greedy=mode == "greedy", seed=seed)
        ok = optimal_actions(roll["cells"], g)
        taken = np.take_along_axis(ok, roll["actions"][..., None].astype(np.int64), -1)[..., 0]
        out[f"{mode}_returns"] = roll["returns"]
        out[f"{mode}_optimal_share"] = taken.mean(axis=(1, 2))
    return out


def run_darkroom_students(exp: DarkRoomStudents, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Train the students, then the snapshot test on 16 training goals and on the 16 held-out goals."""
    train_goals, held_out = goal_split(exp.data)
    tested = {"train": train_goals[np.linspace(0, len(train_goals) - 1, len(held_out)).astype(int)],
              "held_out": held_out}
    runs = train_darkroom_students(exp, scale, progress)
    out: dict[str, Any] = {"goals/train": tested["train"], "goals/held_out": tested["held_out"],
                           "loss": np.array([r.loss for r in runs]), "accuracy": np.array([r.accuracy for r in runs]),
                           "wall_seconds": np.array([r.wall_seconds for r in runs])}
    for split, goals in tested.items():
        results = [snapshot_test(r.model, goals, exp, seed=1000 + i) for i, r in enumerate(runs)]
        for key in results[0]:
            out[f"{split}/{key}"] = np.stack([x[key] for x in results])
    for name in runs[0].model.state_dict():
        out[f"weights/{name}"] = np.stack([r.model.state_dict()[name].numpy() for r in runs])
    return out


def darkroom_students_artifact(exp: DarkRoomStudents, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 4's Dark Room students and their snapshot test: stored if present, else trained and stored."""
    return artifacts.cached(students_name(exp), exp, lambda: run_darkroom_students(exp, scale, progress),
                            scale=scale.name, code=STUDENT_CODE)


def student_network(art: artifacts.Artifact, cfg: Any, seed_index: int = 0) -> Any:
    """One stored student as a frozen ``Student``."""
    from imitlib.transformer import Student

    model = Student(cfg.model)
    model.load_state_dict({k[len("weights/"):]: torch.as_tensor(v[seed_index]) for k, v in art.data.items()
                           if k.startswith("weights/")})
    return model.eval()


def teacher_snapshot_returns(data: DarkRoomHistories, goals: np.ndarray) -> np.ndarray:
    """The Dark Room teacher *as it is at the end*: each recorded source run's final greedy return, for ``goals``
    (``(goals, runs_per_goal)``)."""
    _, greedy = source_returns(data)
    final = greedy[:, -1].reshape(SIZE * SIZE, data.runs_per_goal)
    return final[np.asarray(goals)]


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


def ready(name: str, cfg: Any, scale: Scale) -> bool:
    """Whether the book can show an artifact without hours of training: always at ``ci``, else if it is stored."""
    return scale.name == "ci" or artifacts.is_stored(name, cfg, scale.name)


def game_students_artifact(exp: GameStudents, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 4's ED students on the teacher's game: stored if present, else trained and stored."""
    return artifacts.cached(game_students_name(exp), exp,
                            lambda: run_game_students(exp, scale, progress), scale=scale.name, code=STUDENT_CODE)


# ---------------------------------------------------------------------------------------------------
# Chapter 5: what in-context learning can do


@dataclass(frozen=True)
class ICLRegression:
    """Linear self-attention models with 1 .. L layers vs gradient descent, on in-context linear regression."""

    icl: imitlib.icl.ICLConfig
    layers: tuple[int, ...]
    seeds: tuple[int, ...]


def icl_regression_config(scale: Scale) -> ICLRegression:
    """Von Oswald et al.'s setting (d = 10, N = 10) with the scale's training budget."""
    c = scale.incontext
    cfg = imitlib.icl.ICLConfig(train_steps=c.regression_steps, batch_size=c.regression_batch,
                                eval_tasks=c.regression_tasks)
    return ICLRegression(icl=cfg, layers=tuple(range(1, c.max_layers + 1)), seeds=tuple(range(c.regression_seeds)))


def run_icl_regression(exp: ICLRegression, progress: bool = True) -> dict[str, np.ndarray]:
    """Train every (seed, depth) model; compare it with one GD step and with as many GD steps as it has layers."""
    from tqdm.auto import tqdm

    keys = ("loss_model", "loss_zero", "loss_gd1", "loss_gdL", "diff_gd1", "diff_gdL", "cos_gd1", "cos_gdL")
    out: dict[str, Any] = {k: np.zeros((len(exp.seeds), len(exp.layers))) for k in keys}
    curves = np.zeros((len(exp.seeds), len(exp.layers), 100))
    etas = np.zeros((len(exp.seeds), len(exp.layers)))
    jobs = [(i, j) for i in range(len(exp.seeds)) for j in range(len(exp.layers))]
    for i, j in tqdm(jobs, desc="linear self-attention", disable=not progress):
        cfg, depth = replace(exp.icl, seed=exp.seeds[i]), exp.layers[j]
        model, losses = imitlib.icl.train_lsa(cfg, depth)
        one, many = imitlib.icl.tune_gd(cfg, 1), imitlib.icl.tune_gd(cfg, depth)
        c1, cl = imitlib.icl.compare(cfg, model, one, 1), imitlib.icl.compare(cfg, model, many, depth)
        for key, value in (("loss_model", c1["loss_model"]), ("loss_zero", c1["loss_zero"]),
                           ("loss_gd1", c1["loss_gd"]), ("loss_gdL", cl["loss_gd"]),
                           ("diff_gd1", c1["prediction_diff"]), ("diff_gdL", cl["prediction_diff"]),
                           ("cos_gd1", c1["sensitivity_cosine"]), ("cos_gdL", cl["sensitivity_cosine"])):
            out[key][i, j] = value
        curves[i, j] = losses[: len(losses) // 100 * 100].reshape(100, -1).mean(1)
        etas[i, j] = many
    return {**out, "curves": curves, "eta": etas, "layers": np.array(exp.layers)}


def icl_regression_artifact(exp: ICLRegression, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 5's regression experiment: stored if present, else computed (minutes) and stored."""
    return artifacts.cached("ch05_icl_regression", exp, lambda: run_icl_regression(exp, progress), scale=scale.name,
                            code=(imitlib.icl, run_icl_regression))


@dataclass(frozen=True)
class InContextTest:
    """Frozen students rolled out for many episodes on the held-out goals, from an empty context or a prompt."""

    students: DarkRoomStudents
    episodes: int
    repeats: int = 2  # rollouts per goal
    prompt_episodes: int = 0  # recorded learning episodes placed in the context first
    prompt_at: float = 0.25  # where along the goal's learning history the prompt is cut (fraction)
    store_students: bool = True  # False: train the students here and keep only their curves (ablations), so
    # results/ does not fill up with the weights of every ablated model


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
                            scale=scale.name, code=(*STUDENT_CODE, learning_prompt, run_in_context))


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


@dataclass(frozen=True)
class ProbeTest:
    """Linear probes on the students' residual stream, fitted on training goals, scored on held-out goals."""

    students: DarkRoomStudents
    windows: int  # context windows sampled per recorded run
    seed: int = 0


def probe_features(model: Any, reader: Any, runs: list[int], k: int, windows: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual stream after the embedding and every block, at the last step of each episode of sampled windows:
    ``(layers + 1, samples, K, width)``; targets goal ``(samples, 2)`` (row, column) and progress ``(samples,)``
    (where the window starts along its history, 0 = first recorded episode, 1 = last possible)."""
    from imitlib.imitation import model_inputs

    rng = np.random.default_rng(seed)
    batch: dict[str, list] = {"obs": [], "action": [], "reward": [], "terminated": [], "truncated": []}
    goal, progress = [], []
    for run in runs:
        n = reader.run_episodes(run) - k
        for first in rng.integers(0, n + 1, size=windows):
            w = reader.window(run, int(first), k)
            for key in batch:
                batch[key].append(np.asarray(w[key]))
            goal.append(divmod(int(reader.task(run)["goal"]), SIZE))
            progress.append(first / max(n, 1))
    tensors = {key: torch.from_numpy(np.stack(v)) for key, v in batch.items()}
    ends = np.arange(1, k + 1) * HORIZON - 1
    feats = []
    with torch.no_grad():
        for lo in range(0, len(goal), 256):
            part = {key: v[lo:lo + 256] for key, v in tensors.items()}
            _, states = model(*model_inputs(part, model.cfg.n_actions), hidden=True)
            feats.append(torch.stack([s[:, ends] for s in states]).numpy())
    return np.concatenate(feats, 1), np.array(goal, float), np.array(progress)


def run_probes(test: ProbeTest, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """R² of goal and progress probes by student seed, layer and context position, with shuffled controls."""
    from imitlib.history import HistoryReader
    from imitlib.probes import fit_probe

    art = darkroom_students_artifact(test.students, scale, progress)
    reader = HistoryReader(darkroom_histories(test.students.data, scale) / "learning")
    train, held = goal_split(test.students.data)
    split = {name: [r for r in reader.runs() if reader.task(r)["goal"] in set(goals.tolist())]
             for name, goals in (("train", train), ("held_out", held))}
    k = test.students.student.context_episodes
    shape = (len(test.students.seeds), test.students.student.model.n_layer + 1, k)
    out = {f"{t}_{m}": np.zeros(shape) for t in ("goal", "progress") for m in ("r2", "r2_shuffled")}
    for i in range(len(test.students.seeds)):
        model = student_network(art, test.students.student, i)
        fx, fg, fp = probe_features(model, reader, split["train"], k, test.windows, test.seed)
        tx, tg, tp = probe_features(model, reader, split["held_out"], k, test.windows, test.seed + 1)
        for layer in range(shape[1]):
            for pos in range(k):
                for target, (y_fit, y_test) in (("goal", (fg, tg)), ("progress", (fp, tp))):
                    r = fit_probe(fx[layer, :, pos], y_fit, tx[layer, :, pos], y_test, seed=test.seed)
                    out[f"{target}_r2"][i, layer, pos] = r["r2"]
                    out[f"{target}_r2_shuffled"][i, layer, pos] = r["r2_shuffled"]
    return out


def probes_artifact(test: ProbeTest, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 5's probes of one set of students: stored if present, else computed."""
    return artifacts.cached(students_name(test.students).replace("ch04_", "ch05_probes_", 1), test,
                            lambda: run_probes(test, scale, progress), scale=scale.name,
                            code=(*STUDENT_CODE, probe_features, run_probes, imitlib.probes.fit_probe))


ABLATIONS = {  # name -> darkroom_students_config keyword arguments (chapter 5's ablations, all AD)
    "context 1 episode": {"context_episodes": 1},
    "context 2 episodes": {"context_episodes": 2},
    "4 training goals": {"train_goals": 4},
    "16 training goals": {"train_goals": 16},
    "shuffled episode order": {"shuffled": True},
    "epsilon source": {"source": "epsilon"},
}


STUDENT_CODE = (
    imitlib.transformer.TransformerConfig, imitlib.transformer.observation_encoder, imitlib.transformer.CellEmbedding,
    imitlib.transformer.MinAtarEncoder, imitlib.transformer.CausalSelfAttention,
    imitlib.transformer._causal_attention_with_dropout, imitlib.transformer.Block, imitlib.transformer.Student,
    imitlib.transformer.step_inputs, imitlib.transformer.first_steps, imitlib.imitation.StudentConfig,
    imitlib.imitation.batches, imitlib.imitation.model_inputs, imitlib.imitation.loss_and_accuracy,
    imitlib.imitation.make_optimizer, imitlib.imitation.train_student, imitlib.imitation.ContextStream,
    imitlib.imitation.darkroom_rollout, imitlib.imitation.game_rollout, darkroom_students_config,
    train_darkroom_students, students_name, student_goals, student_data, snapshot_test, run_darkroom_students,
    game_students_config, run_game_students,
    optimal_actions,
)
