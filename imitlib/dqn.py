"""Deep Q-learning (Mnih et al. 2015), readable top to bottom, several seeds in one process.

Reading order: the config, the two networks, the replay buffer, the training loop (:func:`train`), evaluation,
checkpoints.

* **Several seeds at once.** S copies of one architecture are stacked along a leading dimension and computed
  as one grouped network (:class:`StackedNet`: grouped convolutions, batched matrix products). Every seed has its own
  environments, replay buffer, random streams, target network and Adam state (Adam is element-wise, so one
  optimiser over stacked parameters is S independent ones); the loss is the *sum* of per-seed losses, so no
  gradient crosses seeds.
* **Loss.** Huber (smooth L1 with delta 1, as in Nature DQN) by default, ``loss="mse"`` for squared error. Targets
  use a target network copied every ``target_every`` environment steps; ``double_dqn=True`` picks the next action
  with the online network (van Hasselt et al. 2016).
* **Replay.** Each observation's newest frame is stored once (MinAtar frames bit-packed: 50 bytes for a Breakout
  frame; ALE frames as uint8, so a 4-frame stack costs one frame); stacks are rebuilt at sampling time.
* **Segments and checkpoints.** Training runs in segments of ``segment_steps`` environment steps. Each segment
  starts from freshly reset environments (seeded from the run seed and the segment index) and ends with an
  evaluation and an atomic checkpoint of everything that determines the future: weights, target, optimiser,
  replay buffer, random-stream states, counters and metrics. Resuming from a checkpoint therefore continues
  exactly as the uninterrupted run would have (tested on CPU). The episodes cut at a segment boundary are
  truncations: they are neither replayed across the cut nor logged as finished episodes.
* **Evaluation protocol.** At every segment boundary, ``eval_episodes`` fresh episodes per seed with
  epsilon = ``eval_epsilon`` (0.05, as Nature DQN), raw score, separate environments and random streams, so
  evaluation never changes training. Learning curves also report the raw return of every training episode,
  as the MinAtar paper and CleanRL do.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imitlib.envs.games import MINATAR_CHANNELS, GameSpec, game_spec, make_vec_env
from imitlib.envs.observations import decode_minatar, encode, frame_bytes, network_input
from imitlib.io import CheckpointMismatchError, read_checkpoint, save_checkpoint

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
# Networks


def minatar_net(in_channels: int, n_actions: int) -> nn.Module:
    """The MinAtar paper's network: one 3x3 conv with 16 filters, a 128-unit layer, a linear Q head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, 1), nn.ReLU(), nn.Flatten(),
        nn.Linear(16 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, n_actions),
    )


def nature_cnn(in_channels: int, n_actions: int) -> nn.Module:
    """The Nature-DQN network for 84x84 frames."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
        nn.Linear(512, n_actions),
    )


def make_network(cfg: DQNConfig, spec: GameSpec) -> nn.Module:
    """The Q-network a config asks for, sized for a game."""
    return (minatar_net if cfg.network == "minatar" else nature_cnn)(spec.in_channels, spec.n_actions)


class StackedNet(nn.Module):
    """S copies of a Conv2d/ReLU/Flatten/Linear ``nn.Sequential``, computed together as one grouped network.

    Parameters carry a leading seed dimension. Convolutions run as one grouped convolution (``groups=S``) and
    linear layers as one batched matrix product, so S small networks cost about as much as one wide one. Seed
    s starts from exactly the weights ``make()`` gives after ``torch.manual_seed(seeds[s])``.
    """

    def __init__(self, make: Callable[[], nn.Module], seeds: Sequence[int]) -> None:
        super().__init__()
        nets = []
        for seed in seeds:
            torch.manual_seed(seed)
            nets.append(make())
        self.make, self.n = make, len(seeds)
        self.layers: list[tuple[str, Any, Any]] = []  # (kind, stride, padding): the architecture, no weights
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, layer in enumerate(nets[0]):
            if isinstance(layer, nn.Conv2d | nn.Linear):
                self.weights.append(nn.Parameter(torch.stack([net[i].weight.detach() for net in nets])))
                self.biases.append(nn.Parameter(torch.stack([net[i].bias.detach() for net in nets])))
                conv = isinstance(layer, nn.Conv2d)
                self.layers.append(("conv", layer.stride, layer.padding) if conv else ("linear", None, None))
            elif isinstance(layer, nn.ReLU | nn.Flatten):
                self.layers.append(("relu" if isinstance(layer, nn.ReLU) else "flatten", None, None))
            else:
                raise TypeError(f"StackedNet supports Conv2d, Linear, ReLU and Flatten, not {type(layer).__name__}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``(S, B, ...)`` -> outputs ``(S, B, ...)``, seed s through network s."""
        n, batch = x.shape[:2]
        h = x.transpose(0, 1).reshape(batch, -1, *x.shape[3:]) if x.dim() == 5 else x  # (B, S*C, H, W)
        p = 0
        for kind, stride, padding in self.layers:
            if kind == "conv":
                w, b = self.weights[p], self.biases[p]
                h = nn.functional.conv2d(h, w.flatten(0, 1), b.flatten(), stride, padding, groups=n)
                p += 1
            elif kind == "linear":
                h = torch.baddbmm(self.biases[p][:, None, :], h, self.weights[p].transpose(1, 2))
                p += 1
            elif kind == "relu":
                h = torch.relu(h)
            else:  # flatten: (B, S*C, H, W) -> (S, B, C*H*W)
                h = h.reshape(batch, n, -1).transpose(0, 1)
        return h

    def single(self, s: int) -> nn.Module:
        """Seed ``s`` as an ordinary ``nn.Module`` (for analysis, rollouts and transplants)."""
        net = self.make()
        layers = [m for m in net if isinstance(m, nn.Conv2d | nn.Linear)]
        with torch.no_grad():
            for layer, w, b in zip(layers, self.weights, self.biases, strict=True):
                layer.weight.copy_(w[s])
                layer.bias.copy_(b[s])
        return net


class StackedQ:
    """Online and target Q-networks for S seeds."""

    def __init__(self, make: Callable[[], nn.Module], seeds: Sequence[int], device: str = "cpu") -> None:
        self.online = StackedNet(make, seeds).to(device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)

    def sync_target(self) -> None:
        """Copy the online weights into the target network."""
        self.target.load_state_dict(self.online.state_dict())


# --------------------------------------------------------------------------------------------------
# Replay buffer


class ReplayBuffer:
    """Per seed and environment, a ring of the newest frame of every observation plus what happened next.

    Slot ``t`` of ring ``(s, e)`` holds the newest frame of the observation seen before action ``t``, the action,
    the (learning) reward, whether the transition was terminal, whether that frame started an episode, and
    whether the transition can be replayed (not cut by a time limit or a segment boundary). The next
    observation of slot ``t`` is slot ``t + 1`` of the same ring.
    """

    def __init__(self, spec: GameSpec, n_seeds: int, num_envs: int, capacity: int) -> None:
        self.spec, self.stack = spec, spec.stack
        self.length = capacity // num_envs  # ring length per environment
        shape = (n_seeds, num_envs, self.length)
        self.frames = np.zeros((*shape, frame_bytes(spec)), np.uint8)
        self.actions = np.zeros(shape, np.int16)
        self.rewards = np.zeros(shape, np.float32)
        self.terminal = np.zeros(shape, bool)
        self.starts = np.zeros(shape, bool)
        self.replayable = np.zeros(shape, bool)
        self.pos, self.size = 0, 0  # all rings advance together

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminal: np.ndarray,
            starts: np.ndarray, replayable: np.ndarray) -> None:
        """Write one vector step for every seed and environment."""
        p = self.pos
        s, e = obs.shape[:2]
        self.frames[:, :, p] = encode(obs.reshape(s * e, *obs.shape[2:])).reshape(s, e, -1)  # (S, E, bytes)
        self.actions[:, :, p], self.rewards[:, :, p] = actions, rewards
        self.terminal[:, :, p], self.starts[:, :, p], self.replayable[:, :, p] = terminal, starts, replayable
        self.pos = (p + 1) % self.length
        self.size = min(self.size + 1, self.length)

    def _valid_slots(self) -> tuple[int, int]:
        """Slots [lo, lo + n) (mod length), oldest first, whose next frame and frame history both exist."""
        oldest = (self.pos - self.size) % self.length
        lo = oldest + (self.stack - 1)  # the oldest slots lack their history
        return lo, self.size - (self.stack - 1) - 1  # the newest slot lacks its next frame

    def _stacks(self, s: int, e: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Rebuild observations for slots ``t`` of rings ``(s, e)``: zeros before an episode's first frame."""
        k = self.stack
        idx = (t[:, None] - np.arange(k - 1, -1, -1)) % self.length  # (B, k), oldest first
        frames = self.frames[s, e[:, None], idx]  # (B, k, bytes)
        if self.spec.kind == "minatar":
            return decode_minatar(frames[:, -1], self.spec)
        starts = self.starts[s, e[:, None], idx]
        later_start = np.cumsum(starts[:, ::-1], axis=1)[:, ::-1] - starts  # starts strictly after each frame
        frames = np.where((later_start == 0)[..., None], frames, 0)
        return frames.reshape(len(t), k, *self.spec.frame_shape)

    def sample(self, batch: int, rngs: Sequence[np.random.Generator]) -> dict[str, np.ndarray]:
        """``batch`` replayable transitions per seed, each seed drawing from its own stream."""
        lo, n = self._valid_slots()
        if n < 1:
            raise RuntimeError("replay buffer has no complete transition yet: raise learning_starts")
        num_envs = self.frames.shape[1]
        out: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "terminal", "next_obs")}
        for s, rng in enumerate(rngs):
            e, t = np.empty(0, np.int64), np.empty(0, np.int64)
            while len(t) < batch:  # rejection sampling: non-replayable slots are rare
                ce = rng.integers(num_envs, size=batch)
                ct = (lo + rng.integers(n, size=batch)) % self.length
                ok = self.replayable[s, ce, ct]
                e, t = np.concatenate([e, ce[ok]]), np.concatenate([t, ct[ok]])
            e, t = e[:batch], t[:batch]
            out["obs"].append(self._stacks(s, e, t))
            out["next_obs"].append(self._stacks(s, e, (t + 1) % self.length))
            out["actions"].append(self.actions[s, e, t].astype(np.int64))
            out["rewards"].append(self.rewards[s, e, t])
            out["terminal"].append(self.terminal[s, e, t])
        return {k: np.stack(v) for k, v in out.items()}

    def state(self) -> dict[str, Any]:
        """Everything needed to restore the buffer exactly."""
        arrays = {k: torch.from_numpy(getattr(self, k).copy()) for k in
                  ("frames", "actions", "rewards", "terminal", "starts", "replayable")}
        return {**arrays, "pos": self.pos, "size": self.size}

    def load_state(self, state: dict[str, Any]) -> None:
        for k in ("frames", "actions", "rewards", "terminal", "starts", "replayable"):
            getattr(self, k)[...] = state[k].numpy()
        self.pos, self.size = int(state["pos"]), int(state["size"])


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
    on_segment: Callable[[DQNRun], None] | None = None  # after each segment's evaluation and checkpoint


# --------------------------------------------------------------------------------------------------
# Training


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


def _seed_ints(*parts: int) -> int:
    """A 32-bit seed derived from several integers (run seed, segment, purpose, env)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _reset_seeds(seeds: Sequence[int], num_envs: int, segment: int, purpose: int) -> list[int]:
    return [_seed_ints(s, segment, purpose, e) for s in seeds for e in range(num_envs)]


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


def act(q: StackedQ, spec: GameSpec, obs: np.ndarray, epsilon: float, rngs: Sequence[np.random.Generator],
        device: str) -> np.ndarray:
    """Epsilon-greedy actions ``(S, E)``; every seed draws the same amount from its stream each call."""
    with torch.no_grad():
        greedy = q.online(network_input(spec, torch.as_tensor(obs, device=device))).argmax(-1).cpu().numpy()
    n_envs = obs.shape[1]
    explore = np.stack([rng.random(n_envs) for rng in rngs]) < epsilon
    random_actions = np.stack([rng.integers(spec.n_actions, size=n_envs) for rng in rngs])
    return np.where(explore, random_actions, greedy)


def train(
    cfg: DQNConfig,
    seeds: Sequence[int],
    *,
    run_dir: str | Path | None = None,
    hooks: Hooks | None = None,
    progress: bool = True,
    stop_after_segments: int | None = None,
) -> DQNRun:
    """Train one DQN per seed, all at once; resume from ``run_dir`` if it holds a checkpoint.

    ``stop_after_segments`` ends the call after that many segments (as if killed right after a checkpoint).
    """
    seeds = tuple(int(s) for s in seeds)
    hooks = hooks or Hooks()
    torch.set_flush_denormal(True)  # Adam's tiny second moments are denormal floats: 5-10x slower on x86
    spec = game_spec(cfg.env_id, full_action_space=cfg.full_action_space, channels=cfg.channels)
    q = StackedQ(lambda: make_network(cfg, spec), seeds, cfg.device)
    optim = torch.optim.Adam(q.online.parameters(), lr=cfg.lr, eps=cfg.adam_eps, foreach=True)
    buffer = ReplayBuffer(spec, len(seeds), cfg.num_envs, cfg.buffer_size)
    state = RunState(episodes=[[] for _ in seeds])
    path = Path(run_dir) / CHECKPOINT if run_dir else None
    if path and path.exists():
        state = _load_checkpoint(path, cfg, seeds, spec, q, optim, buffer)
    act_rngs = [np.random.default_rng([s, 1]) for s in seeds]
    sample_rngs = [np.random.default_rng([s, 2]) for s in seeds]
    if state.rng_states:
        for rng, st in zip(act_rngs + sample_rngs, state.rng_states, strict=True):
            rng.bit_generator.state = st

    envs = make_vec_env(cfg.env_id, len(seeds) * cfg.num_envs, sticky=cfg.sticky,
                        full_action_space=cfg.full_action_space, channels=cfg.channels)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=state.env_steps, unit="step", desc=f"DQN {cfg.env_id} x{len(seeds)}")
    done_segments = 0
    try:
        while state.env_steps < cfg.steps:
            start = time.perf_counter()
            _run_segment(cfg, seeds, spec, q, optim, buffer, state, envs, act_rngs, sample_rngs, hooks, bar)
            returns = evaluate(q, spec, cfg, seeds, segment=state.segment)
            state.evals.append((state.env_steps, returns.tolist()))
            state.segment += 1
            state.wall_seconds += time.perf_counter() - start
            state.rng_states = [rng.bit_generator.state for rng in act_rngs + sample_rngs]
            if path:
                _save_checkpoint(path, cfg, seeds, spec, q, optim, buffer, state)
            if bar is not None:
                bar.set_postfix(eval=f"{returns.mean():.2f}")
            if hooks.on_segment:
                hooks.on_segment(DQNRun(cfg, seeds, spec, q, state))
            done_segments += 1
            if stop_after_segments is not None and done_segments >= stop_after_segments:
                break
    finally:
        envs.close()
        if bar is not None:
            bar.close()
    return DQNRun(cfg, seeds, spec, q, state)


def _run_segment(cfg: DQNConfig, seeds: tuple[int, ...], spec: GameSpec, q: StackedQ, optim: torch.optim.Optimizer,
                 buffer: ReplayBuffer, state: RunState, envs: Any, act_rngs: list[np.random.Generator],
                 sample_rngs: list[np.random.Generator], hooks: Hooks, bar: Any) -> None:
    """One segment: reset every environment, then step, store, and learn until the segment's last step."""
    n_seeds, n_envs = len(seeds), cfg.num_envs
    shape = (n_seeds, n_envs)
    obs, info = envs.reset(seed=_reset_seeds(seeds, n_envs, state.segment, purpose=0))
    obs = obs.reshape(*shape, *obs.shape[1:])
    lives = np.asarray(info.get("lives", np.zeros(n_seeds * n_envs))).reshape(shape)
    starts = np.ones(shape, bool)
    ep_return, ep_len = np.zeros(shape), np.zeros(shape, np.int64)
    vector_steps = min(cfg.segment_steps, cfg.steps - state.env_steps) // n_envs
    target_every = cfg.target_every // n_envs
    for i in range(vector_steps):
        eps = cfg.epsilon(state.env_steps)
        actions = act(q, spec, obs, eps, act_rngs, cfg.device)
        next_obs, rewards, terminated, truncated, info = envs.step(actions.reshape(-1))
        next_obs = next_obs.reshape(*shape, *next_obs.shape[1:])
        rewards, terminated, truncated = (np.asarray(x).reshape(shape) for x in (rewards, terminated, truncated))
        cut = truncated | (i == vector_steps - 1)  # time limit or segment end: do not bootstrap, do not replay
        ended = terminated | truncated
        new_lives = np.asarray(info.get("lives", np.zeros(n_seeds * n_envs))).reshape(shape)
        life_lost = (new_lives < lives) & ~ended if cfg.life_loss_terminal else np.zeros(shape, bool)
        learn_reward = np.sign(rewards) if cfg.clip_rewards else rewards
        buffer.add(obs, actions, learn_reward, terminated | life_lost, starts, ~cut | terminated)
        state.env_steps += n_envs
        if hooks.on_step:
            hooks.on_step(StepInfo(state.env_steps, state.updates, eps, obs, actions, rewards, terminated, cut))
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
        if state.env_steps >= cfg.learning_starts and (i + 1) % cfg.train_every == 0:
            _update(cfg, spec, q, optim, buffer, sample_rngs, state, hooks)
        if (state.env_steps // n_envs) % target_every == 0:
            q.sync_target()
        if bar is not None:
            bar.update(n_envs)


def _update(cfg: DQNConfig, spec: GameSpec, q: StackedQ, optim: torch.optim.Optimizer, buffer: ReplayBuffer,
            rngs: list[np.random.Generator], state: RunState, hooks: Hooks) -> None:
    """One gradient step for every seed at once."""
    sample = buffer.sample(cfg.batch_size, rngs)
    batch = {k: torch.as_tensor(v, device=cfg.device) for k, v in sample.items()}
    loss, mean_q = td_loss(q, batch, cfg, spec)
    optim.zero_grad(set_to_none=True)
    loss.sum().backward()  # a sum of per-seed losses: each seed's gradient is its own
    optim.step()
    state.updates += 1
    if state.updates % 100 == 0:
        state.losses.append((state.env_steps, loss.detach().tolist(), mean_q.tolist()))
    if hooks.on_update:
        hooks.on_update(UpdateInfo(state.updates, state.env_steps, loss.detach().numpy(), mean_q.numpy()))


def evaluate(q: StackedQ, spec: GameSpec, cfg: DQNConfig, seeds: Sequence[int], *, segment: int,
             episodes: int | None = None, epsilon: float | None = None, max_steps: int = 27_000) -> np.ndarray:
    """Raw returns ``(S, episodes)`` of fresh episodes played epsilon-greedily; touches no training state."""
    episodes = cfg.eval_episodes if episodes is None else episodes
    epsilon = cfg.eval_epsilon if epsilon is None else epsilon
    envs = make_vec_env(cfg.env_id, len(seeds) * episodes, sticky=cfg.sticky,
                        full_action_space=cfg.full_action_space, channels=cfg.channels)
    rngs = [np.random.default_rng([s, 3, segment]) for s in seeds]
    obs, _ = envs.reset(seed=_reset_seeds(seeds, episodes, segment, purpose=1))
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


# --------------------------------------------------------------------------------------------------
# Checkpoints


def _meta(cfg: DQNConfig, seeds: tuple[int, ...], spec: GameSpec) -> dict[str, Any]:
    return {"config": asdict(cfg), "seeds": list(seeds), "spec": asdict(spec)}


def _save_checkpoint(path: Path, cfg: DQNConfig, seeds: tuple[int, ...], spec: GameSpec, q: StackedQ,
                     optim: torch.optim.Optimizer, buffer: ReplayBuffer, state: RunState) -> None:
    """Write the whole run state atomically (see :mod:`imitlib.io`)."""
    state_dicts = {
        "params": {k: v.detach().cpu() for k, v in q.online.state_dict().items()},
        "target": {k: v.cpu() for k, v in q.target.state_dict().items()},
        "optim": optim.state_dict(),
        "buffer": buffer.state(),
    }
    save_checkpoint(path, state_dicts, {**_meta(cfg, seeds, spec), "state": asdict(state)})


def _check_compatible(path: Path, meta: dict[str, Any], cfg: DQNConfig, seeds: tuple[int, ...],
                      spec: GameSpec) -> None:
    """Refuse a checkpoint whose game, network or seeds differ, saying exactly what differs."""
    want = _meta(cfg, seeds, spec)
    diffs = []
    for key in ("obs_shape", "n_actions"):
        have = tuple(meta["spec"]["frame_shape"]) if key == "obs_shape" else meta["spec"]["n_actions"]
        expected = spec.frame_shape if key == "obs_shape" else spec.n_actions
        if key == "obs_shape" and meta["spec"]["stack"] != spec.stack:
            diffs.append(f"frame stack {meta['spec']['stack']} vs {spec.stack}")
        if have != expected:
            diffs.append(f"{key.replace('_', ' ')} {have} in the checkpoint vs {expected} now")
    if meta["seeds"] != want["seeds"]:
        diffs.append(f"seeds {meta['seeds']} vs {list(seeds)}")
    changed = [k for k, v in want["config"].items() if k != "steps" and meta["config"].get(k) != v]
    diffs += [f"config {k}: {meta['config'].get(k)!r} vs {want['config'][k]!r}" for k in changed]
    if diffs:
        raise CheckpointMismatchError(f"{path} was written for a different run: " + "; ".join(diffs)
                                      + ". Use another run directory, or the original settings.")


def _load_checkpoint(path: Path, cfg: DQNConfig, seeds: tuple[int, ...], spec: GameSpec, q: StackedQ,
                     optim: torch.optim.Optimizer, buffer: ReplayBuffer) -> RunState:
    blob = read_checkpoint(path)
    _check_compatible(path, blob["meta"], cfg, seeds, spec)
    q.online.load_state_dict(blob["params"])
    q.target.load_state_dict(blob["target"])
    optim.load_state_dict(blob["optim"])
    buffer.load_state(blob["buffer"])
    st = blob["meta"]["state"]
    return RunState(
        env_steps=st["env_steps"], updates=st["updates"], segment=st["segment"], wall_seconds=st["wall_seconds"],
        episodes=[[tuple(x) for x in eps] for eps in st["episodes"]],
        evals=[(step, r) for step, r in st["evals"]], losses=[tuple(x) for x in st["losses"]],
        rng_states=st["rng_states"],
    )


def load_q_network(path: str | Path, spec: GameSpec, seed_index: int = 0) -> nn.Module:
    """One seed's trained Q-network from a checkpoint, refused if it was trained on other shapes."""
    blob = read_checkpoint(path)
    meta = blob["meta"]
    have_shape, have_actions = tuple(meta["spec"]["frame_shape"]), meta["spec"]["n_actions"]
    if (have_shape, meta["spec"]["stack"], have_actions) != (spec.frame_shape, spec.stack, spec.n_actions):
        raise CheckpointMismatchError(
            f"{path}: trained on frames {have_shape} x{meta['spec']['stack']} with {have_actions} actions "
            f"({meta['spec']['env_id']}), but {spec.env_id} has frames {spec.frame_shape} x{spec.stack} with "
            f"{spec.n_actions} actions; for a transplant use full_action_space / channels so the shapes match"
        )
    cfg = DQNConfig(**meta["config"])
    stacked = StackedNet(lambda: make_network(cfg, spec), meta["seeds"])
    stacked.load_state_dict(blob["params"])
    return stacked.single(seed_index)


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
