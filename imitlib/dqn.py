"""Deep Q-learning (Mnih et al. 2015), several seeds in one process, read top to bottom.

Reading order: the config; the hooks a recorder attaches to; the algorithm (:func:`act`, :func:`td_loss`,
:func:`update`, :func:`run_segment`, :func:`train`); evaluation. The networks are in :mod:`imitlib.qnets`, the
replay buffer in :mod:`imitlib.replay`, checkpoints in :mod:`imitlib.dqn_checkpoint`, and a plain one-seed version
of the same loop, the test oracle for this one, in :mod:`imitlib.dqn_reference`.

* **Several seeds at once.** S copies of one architecture are stacked along a leading dimension and computed as one
  grouped network (:class:`~imitlib.qnets.StackedNet`). Every seed has its own environments, replay ring, random
  streams, target network and Adam state (Adam is element-wise, so one optimiser over stacked parameters is S
  independent ones); the loss is the *sum* of per-seed losses, so no gradient crosses seeds.
* **Loss.** Huber (smooth L1 with delta 1, as in Nature DQN) by default, ``loss="mse"`` for squared error. Targets
  use a target network copied every ``target_every`` environment steps; ``double_dqn=True`` picks the next action
  with the online network (van Hasselt et al. 2016).
* **Segments and checkpoints.** Training runs in segments of ``segment_steps`` environment steps. Each segment
  starts from freshly reset environments (seeded from the run seed and the segment index) and ends with an
  evaluation and an atomic checkpoint of everything that determines the future: weights, target, optimiser,
  replay buffer, random-stream states, counters and metrics. Resuming from a checkpoint therefore continues
  exactly as the uninterrupted run would have (tested on CPU). The episodes cut at a segment boundary are
  truncations: they are neither replayed across the cut nor logged as finished episodes. ``on_segment`` hooks run
  before the checkpoint and ``on_resume`` after one is loaded, so what a hook writes (a recorder's episodes) can
  resume with the run.
* **Evaluation.** At every segment boundary, ``eval_episodes`` fresh episodes per seed at epsilon ``eval_epsilon``
  (0.05, as Nature DQN), raw score, on separate environments and streams: evaluation never changes training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imitlib.dqn_checkpoint import load_checkpoint, load_q_network, save_checkpoint_of  # noqa: F401 (API)
from imitlib.envs.games import MINATAR_CHANNELS, GameSpec, game_spec, make_vec_env
from imitlib.envs.observations import network_input
from imitlib.io import CheckpointMismatchError  # noqa: F401 (the API's error)
from imitlib.qnets import StackedNet, StackedQ, make_network, minatar_net, nature_cnn  # noqa: F401 (the API)
from imitlib.replay import ReplayBuffer

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class DQNConfig:
    """Everything that defines a DQN run except its seeds. Steps are environment steps per seed."""

    env_id: str = "MinAtar/Breakout-v0"
    steps: int = 1_000_000  # environment steps per seed (all of its environments together)
    num_envs: int = 1  # environments per seed, stepped in lockstep
    network: str = "minatar"  # "minatar": conv 16x3x3 -> 128 -> actions; "nature": the Nature-DQN CNN
    buffer_size: int = 100_000  # transitions per seed
    batch_size: int = 32  # transitions per seed per update
    train_every: int = 1  # vector steps between updates (replay ratio: batch / (train_every * num_envs))
    gamma: float = 0.99
    lr: float = 2.5e-4
    adam_eps: float = 3.125e-4
    loss: str = "huber"  # "huber" or "mse"
    double_dqn: bool = False
    target_every: int = 1_000  # environment steps between target-network copies
    learning_starts: int = 5_000  # environment steps of random play before the first update
    eps_start: float = 1.0
    eps_end: float = 0.1
    eps_decay_steps: int = 100_000
    clip_rewards: bool = True  # learn from sign(reward); raw scores are always what is logged
    life_loss_terminal: bool = True  # ALE: a lost life ends bootstrapping (the game goes on)
    full_action_space: bool = False  # ALE: all 18 actions, so networks transplant between games
    channels: int = MINATAR_CHANNELS  # MinAtar: object channels, zero-padded (10: every game in one space)
    sticky: float | None = None  # None: the game family's default (MinAtar 0.1, ALE 0.25)
    segment_steps: int = 50_000  # environment steps per segment (evaluation + checkpoint at its end)
    eval_episodes: int = 10
    eval_epsilon: float = 0.05
    device: str = "cpu"

    def __post_init__(self) -> None:
        problems = []
        if self.network not in ("minatar", "nature"):
            problems.append(f"network={self.network!r} must be 'minatar' or 'nature'")
        if self.loss not in ("huber", "mse"):
            problems.append(f"loss={self.loss!r} must be 'huber' or 'mse'")
        for name in ("steps", "num_envs", "buffer_size", "batch_size", "train_every", "target_every",
                     "segment_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.segment_steps % self.num_envs or self.target_every % self.num_envs:
            problems.append("segment_steps and target_every must be multiples of num_envs")
        if self.buffer_size // self.num_envs < 8:
            problems.append("buffer_size must hold at least 8 transitions per environment")
        if problems:
            raise ValueError("invalid DQNConfig: " + "; ".join(problems))

    def epsilon(self, env_step: int) -> float:
        """Exploration rate after ``env_step`` environment steps: linear decay, then constant."""
        frac = min(1.0, env_step / max(1, self.eps_decay_steps))
        return self.eps_start + frac * (self.eps_end - self.eps_start)


# --------------------------------------------------------------------------------------------------
# Hooks: how a recorder watches training without the learner knowing about it


@dataclass
class StepInfo:
    """One vector step of every seed: arrays are ``(S, E, ...)``."""

    env_steps: int  # per seed, after this step
    updates: int
    epsilon: float
    obs: np.ndarray  # the observation the action was chosen from
    actions: np.ndarray
    rewards: np.ndarray  # raw
    terminated: np.ndarray
    truncated: np.ndarray


@dataclass
class EpisodeInfo:
    """A finished (not cut) training episode."""

    seed_index: int
    env_index: int
    env_steps: int
    episode_return: float  # raw score
    length: int


@dataclass
class UpdateInfo:
    """One gradient update of all seeds."""

    updates: int
    env_steps: int
    loss: np.ndarray  # (S,)
    mean_q: np.ndarray  # (S,)


@dataclass
class Hooks:
    """Callbacks the training loop calls; each may be None."""

    on_step: Callable[[StepInfo], None] | None = None
    on_episode: Callable[[EpisodeInfo], None] | None = None
    on_update: Callable[[UpdateInfo], None] | None = None
    on_segment: Callable[[DQNRun], None] | None = None  # after each segment's evaluation, before its checkpoint
    on_resume: Callable[[DQNRun], None] | None = None  # after a checkpoint is loaded: rewind what outran it


# --------------------------------------------------------------------------------------------------
# Run state: counters and metrics, and the learner that carries them


@dataclass
class RunState:
    """Counters and metrics that live across segments (everything but tensors and the buffer)."""

    env_steps: int = 0
    updates: int = 0
    segment: int = 0
    wall_seconds: float = 0.0
    episodes: list[list[tuple[int, float, int]]] = field(default_factory=list)  # per seed: (step, return, length)
    evals: list[tuple[int, list[list[float]]]] = field(default_factory=list)  # (step, per seed: returns)
    losses: list[tuple[int, list[float], list[float]]] = field(default_factory=list)  # (step, loss, mean Q)
    rng_states: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DQNRun:
    """A finished (or paused) run: stacked networks plus every metric."""

    cfg: DQNConfig
    seeds: tuple[int, ...]
    spec: GameSpec
    q: StackedQ
    state: RunState

    def train_curve(self, bin_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean raw return of training episodes that ended in each ``bin_steps`` window: (bins,), (S, bins).

        A window in which a seed finished no episode repeats that seed's previous value (NaN before its first).
        """
        edges = np.arange(0, self.state.env_steps + bin_steps, bin_steps)
        curves = np.full((len(self.seeds), len(edges) - 1), np.nan)
        for s, eps in enumerate(self.state.episodes):
            if not eps:
                continue
            steps, rets = np.array([x[0] for x in eps]), np.array([x[1] for x in eps])
            which = np.digitize(steps, edges[1:-1])
            sums, counts = np.bincount(which, rets, len(edges) - 1), np.bincount(which, None, len(edges) - 1)
            last = np.nan
            for b in range(len(edges) - 1):
                last = sums[b] / counts[b] if counts[b] else last
                curves[s, b] = last
        return edges[1:], curves

    def eval_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Evaluation steps ``(n,)`` and mean evaluation return per seed ``(S, n)``."""
        steps = np.array([step for step, _ in self.state.evals])
        means = np.array([[np.mean(r) for r in per_seed] for _, per_seed in self.state.evals]).T
        return steps, means.reshape(len(self.seeds), len(steps))


def seed_ints(*parts: int) -> int:
    """A 32-bit seed derived from several integers (run seed, segment, purpose, env)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def reset_seeds(seeds: Sequence[int], num_envs: int, segment: int, purpose: int) -> list[int]:
    """Environment reset seeds of a segment, seed-major: training (purpose 0) and evaluation (1) never share."""
    return [seed_ints(s, segment, purpose, e) for s in seeds for e in range(num_envs)]


@dataclass
class Learner:
    """What the training loop threads through every step: S seeds' networks, optimiser, replay and streams."""

    cfg: DQNConfig
    seeds: tuple[int, ...]
    spec: GameSpec
    q: StackedQ
    optim: torch.optim.Optimizer
    buffer: ReplayBuffer
    state: RunState
    act_rngs: list[np.random.Generator]  # per seed: exploration draws
    sample_rngs: list[np.random.Generator]  # per seed: replay sampling
    hooks: Hooks

    @classmethod
    def new(cls, cfg: DQNConfig, seeds: tuple[int, ...], hooks: Hooks) -> Learner:
        """Fresh networks (seed s initialised under ``torch.manual_seed(s)``), optimiser, replay and streams."""
        spec = game_spec(cfg.env_id, full_action_space=cfg.full_action_space, channels=cfg.channels)
        q = StackedQ(lambda: make_network(cfg, spec), seeds, cfg.device)
        optim = torch.optim.Adam(q.online.parameters(), lr=cfg.lr, eps=cfg.adam_eps, foreach=True)
        return cls(cfg, seeds, spec, q, optim, ReplayBuffer(spec, len(seeds), cfg.num_envs, cfg.buffer_size),
                   RunState(episodes=[[] for _ in seeds]), [np.random.default_rng([s, 1]) for s in seeds],
                   [np.random.default_rng([s, 2]) for s in seeds], hooks)

    def run(self) -> DQNRun:
        """The run so far, as callers and hooks see it."""
        return DQNRun(self.cfg, self.seeds, self.spec, self.q, self.state)


# --------------------------------------------------------------------------------------------------
# The algorithm: act, TD loss, update, the segment loop, train


def act(q: StackedQ, spec: GameSpec, obs: np.ndarray, epsilon: float, rngs: Sequence[np.random.Generator],
        device: str) -> np.ndarray:
    """Epsilon-greedy actions ``(S, E)``; every seed draws the same amount from its stream each call."""
    with torch.no_grad():
        greedy = q.online(network_input(spec, torch.as_tensor(obs, device=device))).argmax(-1).cpu().numpy()
    n_envs = obs.shape[1]
    explore = np.stack([rng.random(n_envs) for rng in rngs]) < epsilon
    random_actions = np.stack([rng.integers(spec.n_actions, size=n_envs) for rng in rngs])
    return np.where(explore, random_actions, greedy)


def td_loss(q: StackedQ, batch: dict[str, torch.Tensor], cfg: DQNConfig, spec: GameSpec) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Per-seed TD loss ``(S,)`` and mean Q of the taken actions ``(S,)``."""
    obs, next_obs = network_input(spec, batch["obs"]), network_input(spec, batch["next_obs"])
    q_taken = q.online(obs).gather(-1, batch["actions"][..., None]).squeeze(-1)
    with torch.no_grad():
        next_target = q.target(next_obs)
        if cfg.double_dqn:
            best = q.online(next_obs).argmax(-1, keepdim=True)
            next_value = next_target.gather(-1, best).squeeze(-1)
        else:
            next_value = next_target.max(-1).values
        y = batch["rewards"] + cfg.gamma * (1.0 - batch["terminal"].float()) * next_value
    err = nn.functional.smooth_l1_loss if cfg.loss == "huber" else nn.functional.mse_loss
    return err(q_taken, y, reduction="none").mean(-1), q_taken.detach().mean(-1)


def update(learner: Learner) -> None:
    """One gradient step for every seed at once, on a replay batch per seed."""
    cfg, state = learner.cfg, learner.state
    sample = learner.buffer.sample(cfg.batch_size, learner.sample_rngs)
    batch = {k: torch.as_tensor(v, device=cfg.device) for k, v in sample.items()}
    loss, mean_q = td_loss(learner.q, batch, cfg, learner.spec)
    learner.optim.zero_grad(set_to_none=True)
    loss.sum().backward()  # a sum of per-seed losses: each seed's gradient is its own
    learner.optim.step()
    state.updates += 1
    if state.updates % 100 == 0:
        state.losses.append((state.env_steps, loss.detach().tolist(), mean_q.tolist()))
    if learner.hooks.on_update:
        learner.hooks.on_update(UpdateInfo(state.updates, state.env_steps, loss.detach().numpy(), mean_q.numpy()))


def run_segment(learner: Learner, envs: Any, bar: Any = None) -> None:
    """One segment: reset every environment, then act, store, learn and sync the target until its last step."""
    cfg, state, hooks = learner.cfg, learner.state, learner.hooks
    n_seeds, n_envs = len(learner.seeds), cfg.num_envs
    shape = (n_seeds, n_envs)
    obs, info = envs.reset(seed=reset_seeds(learner.seeds, n_envs, state.segment, purpose=0))
    obs = obs.reshape(*shape, *obs.shape[1:])  # (S * E, ...) -> (S, E, ...)
    lives = np.asarray(info.get("lives", np.zeros(n_seeds * n_envs))).reshape(shape)
    starts = np.ones(shape, bool)
    ep_return, ep_len = np.zeros(shape), np.zeros(shape, np.int64)
    vector_steps = min(cfg.segment_steps, cfg.steps - state.env_steps) // n_envs
    target_every = cfg.target_every // n_envs
    for i in range(vector_steps):
        # act and step every environment of every seed
        eps = cfg.epsilon(state.env_steps)
        actions = act(learner.q, learner.spec, obs, eps, learner.act_rngs, cfg.device)
        next_obs, rewards, terminated, truncated, info = envs.step(actions.reshape(-1))
        next_obs = next_obs.reshape(*shape, *next_obs.shape[1:])  # (S * E, ...) -> (S, E, ...)
        rewards, terminated, truncated = (np.asarray(x).reshape(shape) for x in (rewards, terminated, truncated))
        # store the transition: time limits and the segment's end are cuts, neither bootstrapped nor replayed
        cut = truncated | (i == vector_steps - 1)
        ended = terminated | truncated
        new_lives = np.asarray(info.get("lives", np.zeros(n_seeds * n_envs))).reshape(shape)
        life_lost = (new_lives < lives) & ~ended if cfg.life_loss_terminal else np.zeros(shape, bool)
        learn_reward = np.sign(rewards) if cfg.clip_rewards else rewards
        learner.buffer.add(obs, actions, learn_reward, terminated | life_lost, starts, ~cut | terminated)
        state.env_steps += n_envs
        if hooks.on_step:
            hooks.on_step(StepInfo(state.env_steps, state.updates, eps, obs, actions, rewards, terminated, cut))
        # log finished episodes (raw score)
        ep_return += rewards
        ep_len += 1
        for s, e in zip(*np.nonzero(ended), strict=True):
            finished = EpisodeInfo(int(s), int(e), state.env_steps, float(ep_return[s, e]), int(ep_len[s, e]))
            state.episodes[s].append((finished.env_steps, finished.episode_return, finished.length))
            if hooks.on_episode:
                hooks.on_episode(finished)
        ep_return[ended] = 0.0
        ep_len[ended] = 0
        obs, lives, starts = next_obs, new_lives, ended
        # learn, and copy the target network on schedule
        if state.env_steps >= cfg.learning_starts and (i + 1) % cfg.train_every == 0:
            update(learner)
        if (state.env_steps // n_envs) % target_every == 0:
            learner.q.sync_target()
        if bar is not None:
            bar.update(n_envs)


def train(
    cfg: DQNConfig,
    seeds: Sequence[int],
    *,
    run_dir: str | Path | None = None,
    hooks: Hooks | None = None,
    progress: bool = True,
    stop_after_segments: int | None = None,
    init: Mapping[str, torch.Tensor] | None = None,
) -> DQNRun:
    """Train one DQN per seed, all at once; resume from ``run_dir`` if it holds a checkpoint.

    ``stop_after_segments`` ends the call after that many segments (as if killed right after a checkpoint).
    ``init`` (a stacked state dict, every seed's weights, as a teacher artifact stores them) replaces the fresh
    weights of a new run: a transplant from another game. The target network starts as its copy; the optimiser,
    replay and exploration start fresh, exactly as for a new learner.
    """
    torch.set_flush_denormal(True)  # Adam's tiny second moments are denormal floats: 5-10x slower on x86
    learner = Learner.new(cfg, tuple(int(s) for s in seeds), hooks or Hooks())
    if init is not None:  # a transplant: every weight copied (load_state_dict refuses missing or extra ones)
        learner.q.online.load_state_dict({k: torch.as_tensor(v) for k, v in init.items()})
        learner.q.sync_target()
    path = Path(run_dir) / CHECKPOINT if run_dir else None
    if path and path.exists():
        load_checkpoint(path, learner)
        if learner.hooks.on_resume:
            learner.hooks.on_resume(learner.run())
    state = learner.state
    envs = make_vec_env(cfg.env_id, len(learner.seeds) * cfg.num_envs, sticky=cfg.sticky,
                        full_action_space=cfg.full_action_space, channels=cfg.channels)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=state.env_steps, unit="step", desc=f"DQN {cfg.env_id} x{len(seeds)}")
    done_segments = 0
    try:
        while state.env_steps < cfg.steps:
            start = time.perf_counter()
            run_segment(learner, envs, bar)
            returns = evaluate(learner.q, learner.spec, cfg, learner.seeds, segment=state.segment)
            state.evals.append((state.env_steps, returns.tolist()))
            state.segment += 1
            state.wall_seconds += time.perf_counter() - start
            state.rng_states = [rng.bit_generator.state for rng in learner.act_rngs + learner.sample_rngs]
            if learner.hooks.on_segment:  # first: what a hook writes is never behind the checkpoint
                learner.hooks.on_segment(learner.run())
            if path:
                save_checkpoint_of(path, learner)
            if bar is not None:
                bar.set_postfix(eval=f"{returns.mean():.2f}")
            done_segments += 1
            if stop_after_segments is not None and done_segments >= stop_after_segments:
                break
    finally:
        envs.close()
        if bar is not None:
            bar.close()
    return learner.run()


def evaluate(q: StackedQ, spec: GameSpec, cfg: DQNConfig, seeds: Sequence[int], *, segment: int,
             episodes: int | None = None, epsilon: float | None = None, max_steps: int = 27_000) -> np.ndarray:
    """Raw returns ``(S, episodes)`` of fresh episodes played epsilon-greedily; touches no training state."""
    episodes = cfg.eval_episodes if episodes is None else episodes
    epsilon = cfg.eval_epsilon if epsilon is None else epsilon
    envs = make_vec_env(cfg.env_id, len(seeds) * episodes, sticky=cfg.sticky,
                        full_action_space=cfg.full_action_space, channels=cfg.channels)
    rngs = [np.random.default_rng([s, 3, segment]) for s in seeds]
    obs, _ = envs.reset(seed=reset_seeds(seeds, episodes, segment, purpose=1))
    shape = (len(seeds), episodes)
    returns, running = np.zeros(shape), np.ones(shape, bool)
    for _ in range(max_steps):
        actions = act(q, spec, obs.reshape(*shape, *obs.shape[1:]), epsilon, rngs, cfg.device)
        obs, rewards, terminated, truncated, _ = envs.step(actions.reshape(-1))
        returns += np.asarray(rewards).reshape(shape) * running
        running &= ~(np.asarray(terminated) | np.asarray(truncated)).reshape(shape)
        if not running.any():
            break
    envs.close()
    return returns


def steps_per_second(run: DQNRun) -> float:
    """Environment steps per second per seed, over the whole run so far."""
    return run.state.env_steps / run.state.wall_seconds if run.state.wall_seconds else math.nan


def play(net: nn.Module, cfg: DQNConfig, spec: GameSpec, *, seed: int, epsilon: float = 0.05,
         max_steps: int = 2_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One episode of a single trained network: its observations ``(T, ...)``, actions and raw rewards ``(T,)``."""
    env = make_vec_env(cfg.env_id, 1, sticky=cfg.sticky, full_action_space=cfg.full_action_space,
                       channels=cfg.channels)
    rng = np.random.default_rng([seed, 4])
    obs, _ = env.reset(seed=[seed])
    frames, actions, rewards = [], [], []
    with torch.no_grad():
        for _ in range(max_steps):
            greedy = int(net(network_input(spec, torch.as_tensor(obs))).argmax(-1)[0])
            action = int(rng.integers(spec.n_actions)) if rng.random() < epsilon else greedy
            frames.append(obs[0])
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(np.array([action]))
            rewards.append(float(reward[0]))
            if terminated[0] or truncated[0]:
                break
    env.close()
    return np.stack(frames), np.array(actions), np.array(rewards, np.float32)
