"""Chapter 2's numbers and figures: the teacher's learning curves, its play, and what changes underneath.

The pipeline itself (:func:`imitlib.experiments.teacher_experiment`, :func:`~imitlib.experiments.teacher_artifact`)
stays in the package's ``__init__``; this module only reads what it stores, so editing it marks no teacher stale.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

import imitlib.dqn
import imitlib.dqn_checkpoint
import imitlib.envs.games
import imitlib.envs.observations
import imitlib.io
import imitlib.qnets
import imitlib.replay
from imitlib import anchors, artifacts, dqn, plots, stats
from imitlib.envs.games import MINATAR_GAMES, GameSpec
from imitlib.experiments.common import CLI, load_or_explain, recorded_dataset
from imitlib.experiments.tabular import ci_text
from imitlib.scale import Scale, get_scale

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


def cleanrl_experiment(scale: Scale, env_id: str | None = None) -> TeacherExperiment:
    """The scale's teacher with CleanRL ``dqn_atari.py``'s settings instead, like for like: one environment, no
    sticky actions (NoFrameskip-v4 behaviour), the minimal action set, MSE loss, batch 32 every 4 steps, a target copy
    every 1,000 steps, 80,000 steps before learning, epsilon 1 -> 0.01 over the first 10% of training, Adam (lr 1e-4,
    eps 1e-8), a 1M-transition replay. (CleanRL's older scripts also clip gradients at norm 0.5; ours do not.)"""
    exp = teacher_experiment(scale, env_id)
    cfg = replace(exp.dqn, num_envs=1, sticky=0.0, full_action_space=False, loss="mse", batch_size=32,
                  train_every=4, target_every=1_000, learning_starts=80_000, eps_end=0.01,
                  eps_decay_steps=exp.dqn.steps // 10, lr=1e-4, adam_eps=1e-8, buffer_size=1_000_000)
    return replace(exp, dqn=cfg)


PRESET_FIELDS = {  # what the two presets set, as chapter 2's table names it
    "num_envs": "environments per seed", "batch_size": "batch", "train_every": "vector steps per update",
    "loss": "loss", "sticky": "sticky actions", "full_action_space": "all 18 actions", "buffer_size": "replay",
    "learning_starts": "steps before learning", "target_every": "target copy every", "eps_end": "final epsilon",
    "eps_decay_steps": "epsilon decay steps", "lr": "learning rate", "adam_eps": "Adam epsilon",
    "steps": "environment steps"}


def preset_rows(scale: Scale) -> tuple[list[str], list[list[Any]]]:
    """The scale's teacher settings beside CleanRL's (``teacher --cleanrl``), as a table: header and rows."""
    ours, theirs = teacher_experiment(scale).dqn, cleanrl_experiment(scale).dqn
    sticky = {None: "0.25 (ALE v5)" if ours.env_id.startswith("ALE/") else "0.1 (MinAtar)"}
    rows = [[label, sticky.get(getattr(ours, k), getattr(ours, k)) if k == "sticky" else getattr(ours, k),
             getattr(theirs, k)] for k, label in PRESET_FIELDS.items()]
    return ["setting", f"{scale.name} preset", "--cleanrl (CleanRL dqn_atari.py)"], rows


def snapshot_segments(n_segments: int, count: int = 6) -> list[int]:
    """Segments after which the first seed's weights are kept: log-spaced, so early learning is visible."""
    return sorted({round(x) for x in np.geomspace(1, n_segments, count)})


def run_teacher(exp: TeacherExperiment, run_dir: Path | None = None, progress: bool = True,
                hooks: imitlib.dqn.Hooks | None = None) -> dict[str, np.ndarray]:
    """Train the teachers (resuming from ``run_dir``) and return their metrics and final weights as arrays.

    The first seed's weights are also kept after a few log-spaced segments (in ``run_dir/snapshots`` while
    training), so the book can show the teacher playing, and its Q-values, at several points of training.
    ``hooks`` (a recorder's) see every step, segment end and resume; they do not change what is learned.
    """
    extra = hooks or imitlib.dqn.Hooks()
    n_segments = -(-exp.dqn.steps // exp.dqn.segment_steps)
    keep = snapshot_segments(n_segments)
    snapshots: dict[int, dict[str, np.ndarray]] = {}
    snap_dir = run_dir / "snapshots" if run_dir else None

    def on_segment(run: imitlib.dqn.DQNRun) -> None:
        if extra.on_segment:
            extra.on_segment(run)
        if run.state.segment not in keep:
            return
        weights = {k: v[0].detach().clone() for k, v in run.q.online.state_dict().items()}
        snapshots[run.state.env_steps] = {k: v.numpy() for k, v in weights.items()}
        if snap_dir:
            snap_dir.mkdir(parents=True, exist_ok=True)
            imitlib.io.atomic_write_bytes(snap_dir / f"{run.state.env_steps:010d}.pt", lambda f: torch.save(weights, f))

    run = imitlib.dqn.train(exp.dqn, exp.seeds, run_dir=run_dir, progress=progress,
                            hooks=replace(extra, on_segment=on_segment))
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
        # MinAtar: train once for chapters 2 and 3 (histories recorded while the teachers learn); None when the
        # dataset was recorded before, and then the teachers train here without a recorder
        recorded = recorded_minatar(exp, scale, progress=progress)[1] if exp.dqn.env_id in MINATAR_GAMES else None
        out = recorded or run_teacher(exp, None if scale.name == "ci" else run_dir, progress=progress)
        return {k: v for k, v in out.items() if k != "_run"}

    return artifacts.cached(name, exp, compute, scale=scale.name, code=TEACHER_CODE)


def _teacher_name(exp: TeacherExperiment) -> str:
    return f"ch02_teacher_{exp.dqn.env_id.replace('/', '_')}"


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
    x = imitlib.envs.observations.network_input(spec, torch.as_tensor(states))
    with torch.no_grad():
        return np.array([teacher_network(art, exp, snapshot=i)(x).max(-1).values.mean().item()
                         for i in range(len(art["snapshot_steps"]))])


# the source that determines a teacher artifact (edits elsewhere do not mark stored teachers stale)
TEACHER_CODE = (imitlib.dqn, imitlib.dqn_checkpoint, imitlib.qnets, imitlib.replay, imitlib.envs.games,
                imitlib.envs.observations, teacher_experiment, run_teacher, snapshot_segments)


RECORDING_RUN = "teacher-run"  # in a partial dataset folder: the recording's DQN checkpoint and recorder state


def _minatar_dataset_name(exp: TeacherExperiment, every: int) -> str:
    return f"{exp.dqn.env_id.replace('/', '_')}-every{every}"


def recorded_minatar(exp: TeacherExperiment, scale: Scale, every: int = RECORD_EVERY, progress: bool = True,
                     ) -> tuple[Path, dict[str, np.ndarray] | None]:
    """A MinAtar dataset folder, recorded first if absent, and the teachers' arrays if this call trained them.

    Beyond ``ci`` the recording resumes: an interrupted one continues from its last segment's checkpoint (kept in
    the partial folder, removed once complete) and writes exactly what an uninterrupted one would have."""
    kept: dict[str, dict[str, np.ndarray]] = {}
    resumable = scale.name != "ci"

    def record(folder: Path) -> dict[str, Any]:
        run_dir = folder / RECORDING_RUN if resumable else None
        timings, kept["teacher"] = record_minatar(exp, folder, every=every, progress=progress, run_dir=run_dir)
        if run_dir:
            shutil.rmtree(run_dir)  # the checkpoint holds the replay buffer: not part of the dataset
        return timings

    folder = recorded_dataset(_minatar_dataset_name(exp, every), exp, scale, record, resumable=resumable)
    return folder, kept.get("teacher")


def minatar_histories(exp: TeacherExperiment, scale: Scale, every: int = RECORD_EVERY) -> Path:
    """A MinAtar teacher dataset folder (``learning/``, ``expert/``), recorded first if absent (a full training).

    Recording trains the teachers, so chapter 2's artifact is stored from the same run when it is missing."""
    folder, teacher = recorded_minatar(exp, scale, every)
    if teacher and every == RECORD_EVERY and not artifacts.is_stored(_teacher_name(exp), exp, scale.name):
        arrays = {k: v for k, v in teacher.items() if k != "_run"}
        artifacts.cached(_teacher_name(exp), exp, lambda: arrays, scale=scale.name, code=TEACHER_CODE)
    return folder


def record_minatar(exp: TeacherExperiment, folder: Path, every: int = RECORD_EVERY, expert_episodes: int = 20,
                   expert_epsilon: float = 0.05, progress: bool = True, run_dir: Path | None = None,
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train the teachers with a recorder attached (every ``every``-th episode of each seed goes to
    ``folder/learning``), then record ``expert_episodes`` per seed of each final teacher in ``folder/expert``.
    Returns the timings and the teachers' arrays (as :func:`run_teacher` gives them): one run serves both
    chapter 2 and chapter 3. With a ``run_dir`` the teachers checkpoint there every segment, and a rerun resumes
    from the last checkpoint with the history rewound to it.
    """
    import time

    from imitlib.history import Episode, HistoryWriter
    from imitlib.recorders import DQNRecorder

    spec = imitlib.envs.games.game_spec(exp.dqn.env_id, full_action_space=exp.dqn.full_action_space,
                                        channels=exp.dqn.channels)
    meta = {"teacher": artifacts.to_jsonable(exp), "every": every}
    start = time.perf_counter()
    resuming = run_dir is not None and (run_dir / imitlib.dqn.CHECKPOINT).exists()
    with HistoryWriter(folder / "learning", obs_kind=spec.kind, obs_shape=spec.obs_shape, n_actions=spec.n_actions,
                       mode="append" if resuming else "overwrite", meta=meta) as writer:
        for i, seed in enumerate(exp.seeds):
            writer.set_run(i, game=exp.dqn.env_id, seed=seed)
        recorder = DQNRecorder(writer, range(len(exp.seeds)), every=every)
        teacher = run_teacher(exp, run_dir, progress=progress,
                              hooks=recorder.hooks(run_dir / "recorder" if run_dir else None))
        run = teacher["_run"]
    learning_seconds = run.state.wall_seconds  # the teachers' training, summed over resumptions
    with HistoryWriter(folder / "expert", obs_kind=spec.kind, obs_shape=spec.obs_shape, n_actions=spec.n_actions,
                       mode="overwrite", meta={**meta, "expert_epsilon": expert_epsilon}) as writer:
        for i, seed in enumerate(exp.seeds):
            writer.set_run(i, game=exp.dqn.env_id, seed=seed)
            net = run.q.online.single(i)
            for k in range(expert_episodes):
                frames, actions, rewards = imitlib.dqn.play(net, exp.dqn, spec, seed=seed * 1000 + k,
                                                            epsilon=expert_epsilon, max_steps=10_000)
                t = len(actions)
                writer.add(Episode(run=i, episode=k, obs=imitlib.envs.observations.encode(frames), action=actions,
                                   reward=rewards, terminated=np.arange(t) == t - 1, truncated=np.zeros(t, bool),
                                   update=np.full(t, run.state.updates), epsilon=np.full(t, expert_epsilon)))
    return {"learning_seconds": learning_seconds, "total_seconds": time.perf_counter() - start}, teacher



STRIP_FRAMES = 8  # frames shown per episode: enough to follow the ball, few enough to fit the page's width
FULL_SCALE = "full"  # the scale whose teachers play ALE Atari Breakout (trained on a GPU machine, never here)
TEACHER_COMMAND = f"{CLI} teacher --scale {{scale}}"  # what trains (and stores) a scale's teachers


def frame_picks(n_frames: int, count: int = STRIP_FRAMES) -> np.ndarray:
    """``count`` frame indices spread evenly over an episode, first and last included, so a strip shows all of it."""
    return np.linspace(0, n_frames - 1, count).astype(int)


def strip(frames: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The picked MinAtar frames as RGB images, one row of :func:`imitlib.plots.frame_strip`."""
    return np.stack([plots.minatar_rgb(frames[i]) for i in picks])


def random_numbers(scores: np.ndarray) -> dict[str, Any]:
    """The random policy's mean score: the floor every later score is read against."""
    return {"ch2_random": float(scores.mean())}


def settings(exp: TeacherExperiment) -> dict[str, Any]:
    """The DQN settings that are set at this scale (unset ones would only add noise to the printout)."""
    return {k: v for k, v in exp.dqn.__dict__.items() if v is not None}


def finished_bins(curves: np.ndarray) -> np.ndarray:
    """Bins of the training curve in which every seed finished an episode (only those have a mean over seeds)."""
    return ~np.isnan(curves).any(0)


def plot_learning(ax: plt.Axes, art: artifacts.Artifact, exp: TeacherExperiment, random_mean: float) -> None:
    """Training and evaluation return over steps, against the random policy and the MinAtar paper's DQN."""
    steps, curves = art["train_steps"], art["train_returns"]
    seen = finished_bins(curves)
    plots.curve_with_ci(ax, curves[:, seen], x=steps[seen], label="training episodes",
                        color=plots.COLORS["teacher"])
    plots.curve_with_ci(ax, art["eval_means"], x=art["eval_steps"], label="evaluation (ε=0.05)",
                        color=plots.COLORS["alt"])
    plots.reference_line(ax, random_mean, label="random policy", role="random")
    plots.reference_line(ax, anchors.MINATAR_DQN_5M[exp.dqn.env_id], label="MinAtar paper DQN, 5M frames",
                         role="optimal")
    plots.label(ax, "environment steps (per seed)", "return (raw score)", f"DQN on {exp.dqn.env_id}")


def final_eval(art: artifacts.Artifact) -> stats.Interval:
    """The last evaluation's mean return across seeds, with its 95% bootstrap interval."""
    return stats.bootstrap_ci(art["eval_means"][:, -1])


def eval_line(art: artifacts.Artifact) -> str:
    """One printed line: the final evaluation return, overall and per seed (the spread the interval hides)."""
    return (f"evaluation return after {int(art['env_steps']):,} steps: {final_eval(art)}; per seed "
            f"{np.round(art['eval_means'][:, -1], 2)}")


def learning_numbers(art: artifacts.Artifact, exp: TeacherExperiment) -> dict[str, Any]:
    """What the prose cites about the learning curves: steps, seeds, final returns, time and the paper's number."""
    curves = art["train_returns"]
    steps_done, secs = int(art["env_steps"]), float(art["wall_seconds"])
    return {"ch2_steps": f"{steps_done:,}", "ch2_seeds": len(exp.seeds), "ch2_eval": ci_text(final_eval(art)),
            "ch2_train": float(curves[:, finished_bins(curves)][:, -1].mean()), "ch2_minutes": secs / 60,
            "ch2_rate": steps_done * len(exp.seeds) / secs, "ch2_paper": anchors.MINATAR_DQN_5M[exp.dqn.env_id]}


def snapshot_rows(art: artifacts.Artifact, exp: TeacherExperiment, spec: GameSpec, seed: int) -> dict[str, np.ndarray]:
    """One episode per kept snapshot of the first seed, as strip rows labelled by training steps and score."""
    rows = {}
    for i, step in enumerate(art["snapshot_steps"]):
        frames, _, rewards = dqn.play(teacher_network(art, exp, snapshot=i), exp.dqn, spec, seed=seed)
        rows[f"{step:,} steps\nscore {rewards.sum():.0f}"] = strip(frames, frame_picks(len(frames)))
    return rows


def plot_drift(ax: plt.Axes, steps: np.ndarray, drift: dict[str, np.ndarray]) -> None:
    """Each layer's distance from the first kept snapshot, relative to its norm there."""
    for layer, moved in drift.items():
        ax.plot(steps, moved, marker="o", label=layer)
    plots.label(ax, "environment steps", "‖W − W_first‖ / ‖W_first‖", "Weights move")


def plot_values(ax: plt.Axes, art: artifacts.Artifact, probe_q: np.ndarray) -> None:
    """max_a Q on fixed states per snapshot, beside the Q-value of the actions taken while training."""
    ax.plot(art["snapshot_steps"], probe_q, marker="o", color=plots.COLORS["alt"],
            label="max_a Q, fixed states (seed 1)")
    plots.curve_with_ci(ax, art["mean_q"], x=art["loss_steps"], label="Q of actions taken",
                        color=plots.COLORS["teacher"])
    plots.label(ax, "environment steps", "Q-value", "Values")


def drift_text(drift: dict[str, np.ndarray]) -> str:
    """How far each layer moved by the last snapshot, in percent: "conv 160%, hidden layer 384%, ..."."""
    return ", ".join(f"{k} {100 * v[-1]:.0f}%" for k, v in drift.items())


def change_numbers(drift: dict[str, np.ndarray], probe_q: np.ndarray) -> dict[str, Any]:
    """What the prose cites about the change underneath: first and last probe values, and the weights' drift."""
    return {"ch2_q_first": float(probe_q[0]), "ch2_q_last": float(probe_q[-1]), "ch2_drift": drift_text(drift)}


def full_scale_artifact() -> artifacts.Artifact | None:
    """The ALE Breakout teachers of a ``full``-scale run if this copy stores them (never trained here), else None."""
    full = get_scale(FULL_SCALE)
    return load_or_explain(lambda: teacher_artifact(teacher_experiment(full), full), full, TEACHER_COMMAND)


def plot_ale(ax: plt.Axes, art: artifacts.Artifact) -> None:
    """Our ALE Breakout evaluation curve against CleanRL's published one."""
    ax.plot(art["eval_steps"], art["eval_means"].T, color=plots.COLORS["teacher"], label="ours")
    ref_steps, ref_scores = np.array(anchors.CLEANRL_BREAKOUT_CURVE).T
    ax.plot(ref_steps, ref_scores, "o--", color=plots.COLORS["optimal"], label="CleanRL (published)")
    plots.label(ax, "environment steps", "score", "DQN on ALE Breakout")
