"""Each chapter's pipeline as one named function, called by both the notebook and the CLI.

A pipeline takes a frozen config (built from the scale by a function named after the experiment) and returns a
dict of numpy arrays; its ``*_artifact`` function wraps it in :func:`imitlib.artifacts.cached`, so an expensive
result is computed once, stored with provenance, and loaded by the book afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import imitlib.dqn
import imitlib.envs.darkroom
import imitlib.envs.games
import imitlib.tabular
from imitlib import artifacts
from imitlib.envs.darkroom import HORIZON, SIZE, optimal_return, random_policy_return
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
    """Cells the greedy policy of one table visits from the start (ties -> lowest action)."""
    from imitlib.envs.darkroom import start_cell, transition_table

    nxt = transition_table(size)
    cells = [start_cell(size)]
    for _ in range(horizon):
        cells.append(int(nxt[cells[-1], int(q[cells[-1]].argmax())]))
    return np.array(cells)


def by_learner(exp: TabularExperiment, array: np.ndarray) -> dict[str, np.ndarray]:
    """Label a ``(learners, ...)`` result array with the learners' names, for plotting."""
    return dict(zip((name for name, _ in exp.learners), array, strict=True))


def episodes_to_reach(curves: np.ndarray, level: float, window: int = 10) -> np.ndarray:
    """First episode at which each seed's ``window``-episode running mean reaches ``level`` (NaN: never)."""
    kernel = np.ones(window) / window
    out = np.full(curves.shape[0], np.nan)
    for i, row in enumerate(curves):
        smooth = np.convolve(row, kernel, mode="valid")
        hit = np.flatnonzero(smooth >= level)
        if hit.size:
            out[i] = hit[0] + window - 1
    return out


def reach_summary(episodes: np.ndarray) -> str:
    """Words for :func:`episodes_to_reach` across seeds: the median over seeds that got there, and how many did."""
    ok = episodes[~np.isnan(episodes)]
    if ok.size == 0:
        return f"never within the budget (0 of {episodes.size} seeds)"
    return f"{np.median(ok):.0f} episodes (median; {ok.size} of {episodes.size} seeds got there)"


# ---------------------------------------------------------------------------------------------------
# Chapter 2: the DQN teacher


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


def run_teacher(exp: TeacherExperiment, run_dir: Path | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Train the teachers (resuming from ``run_dir``) and return their metrics and final weights as arrays.

    The first seed's weights are also kept after a few log-spaced segments (in ``run_dir/snapshots`` while
    training), so the book can show the teacher playing, and its Q-values, at several points of training.
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
                            hooks=imitlib.dqn.Hooks(on_segment=on_segment))
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
    return out


def teacher_artifact(exp: TeacherExperiment, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 2's teachers: stored ones if present, else trained (resumably, under ``runs/``) and stored."""
    name = f"ch02_teacher_{exp.dqn.env_id.replace('/', '_')}"
    key = artifacts.config_hash(name, exp, scale.name)
    run_dir = artifacts.results_root().parent / "runs" / f"{name}-{scale.name}-{key}"
    return artifacts.cached(
        name, exp, lambda: run_teacher(exp, None if scale.name == "ci" else run_dir, progress=progress),
        scale=scale.name, code=TEACHER_CODE,
    )


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
    imitlib.envs.games._minatar_env, teacher_experiment, run_teacher, snapshot_segments,
)
