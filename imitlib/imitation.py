"""Training the student by next-action prediction, then rolling it out *frozen* with its own growing context.

Reading order: :class:`StudentConfig`, :func:`train_student` (cross-entropy on recorded actions, AdamW, linear
warm-up then cosine decay, gradient clipping, resumable checkpoints), then the two rollouts:
:func:`darkroom_rollout` (many goals at once, across-episode context of K episodes) and :func:`game_rollout`
(MinAtar / ALE vector environments, a sliding context of N steps).

* **Expert distillation (ED)** trains on expert episodes of converged learners; **Algorithm Distillation (AD)**
  on consecutive episodes of learning histories. Same model, same loop, same budget: only the data differ.
* **Precision.** ``bf16=True`` trains under bfloat16 autocast (matrix products in bf16, weights, norms and the
  loss in fp32): about twice as fast on CPUs with AMX. Frozen rollouts always run in fp32.
* **Regularisers** (all off by default except the model's dropouts): label smoothing, and token masking
  (``mask_prob``: each context token's previous action and reward are hidden with this probability, so the
  student cannot lean on a single recent token). Weight decay applies to matrices only.
* **Resumable.** Training runs in chunks of ``checkpoint_every`` updates; each chunk draws its windows from a
  stream seeded by (seed, chunk index), and a checkpoint (weights, optimiser, torch random state, metrics) is
  written atomically after each chunk. A run killed and resumed ends with the same weights as one that never
  stopped (tested at ``ci`` scale).
* **Frozen rollouts.** The model is in ``eval()`` mode and never updated; all it can change is its context.
  Decoding is incremental (:class:`imitlib.transformer.KVCache`); ``use_cache=False`` recomputes the whole
  context at every step instead (same actions, used to check and benchmark the cache).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imitlib.history import HistoryReader, context_dataset
from imitlib.io import CheckpointMismatchError, differences, read_checkpoint, save_checkpoint
from imitlib.transformer import KVCache, Student, TransformerConfig, first_steps, step_inputs

CHECKPOINT = "student.pt"
DEVICE_TYPE = "cpu"  # the student trains where its data are; rollouts run in fp32


@dataclass(frozen=True)
class StudentConfig:
    """One student's training run. Windows are ``context_episodes`` whole episodes (Dark Room: every episode
    is ``horizon`` steps) or, if ``context_steps`` is set, that many consecutive steps (MinAtar, ALE)."""

    model: TransformerConfig
    kind: str = "ad"  # "ad" (learning histories) or "ed" (expert episodes): a label; the data decide
    context_episodes: int = 4
    context_steps: int | None = None
    updates: int = 20_000
    batch_size: int = 128
    lr: float = 3e-4
    warmup: int = 500
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    mask_prob: float = 0.0
    checkpoint_every: int = 500  # updates per chunk
    seed: int = 0
    bf16: bool = False  # mixed precision (bfloat16 autocast, fp32 weights): ~2x faster on CPUs with AMX

    def __post_init__(self) -> None:
        if self.kind not in ("ad", "ed"):
            raise ValueError(f"kind must be 'ad' or 'ed', got {self.kind!r}")
        if isinstance(self.model, dict):  # rebuilt from a checkpoint's JSON
            object.__setattr__(self, "model", TransformerConfig(**self.model))

    def lr_at(self, update: int) -> float:
        """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at the last update."""
        if update < self.warmup:
            return self.lr * (update + 1) / self.warmup
        progress = (update - self.warmup) / max(1, self.updates - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class StudentRun:
    """A trained (or partly trained) student and its training metrics, one entry per chunk."""

    cfg: StudentConfig
    model: Student
    updates: int
    loss: list[float]
    accuracy: list[float]
    wall_seconds: float


def batches(cfg: StudentConfig, reader: HistoryReader, runs: Sequence[int] | None, chunk: int) -> Any:
    """The ``chunk``-th chunk's batches: a DataLoader over :func:`imitlib.history.context_dataset` windows."""
    from torch.utils.data import DataLoader

    windows = dict(steps=cfg.context_steps) if cfg.context_steps else dict(episodes=cfg.context_episodes)
    data = context_dataset(reader, runs=runs, seed=int(np.random.SeedSequence([cfg.seed, chunk]).generate_state(1)[0]),
                           length=cfg.checkpoint_every * cfg.batch_size, **windows)
    return DataLoader(data, batch_size=cfg.batch_size)


def model_inputs(batch: dict[str, torch.Tensor], n_actions: int) -> tuple[torch.Tensor, ...]:
    """A batch of recorded windows -> (obs, previous action, previous reward), the model's inputs."""
    first = first_steps(batch["terminated"], batch["truncated"])
    prev_action, prev_reward = step_inputs(batch["action"].long(), batch["reward"].float(), first, n_actions)
    return batch["obs"], prev_action, prev_reward


def loss_and_accuracy(model: Student, batch: dict[str, torch.Tensor], cfg: StudentConfig,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the recorded actions at every position of every window, and action accuracy."""
    n_actions = model.cfg.n_actions
    obs, prev_action, prev_reward = model_inputs(batch, n_actions)
    if cfg.mask_prob and model.training:
        hide = torch.rand(prev_action.shape, generator=generator) < cfg.mask_prob
        prev_action = prev_action.masked_fill(hide, n_actions)
        prev_reward = prev_reward.masked_fill(hide, 0.0)
    logits = model(obs, prev_action, prev_reward).float()
    target = batch["action"].long()
    loss = F.cross_entropy(logits.reshape(-1, n_actions), target.reshape(-1), label_smoothing=cfg.label_smoothing)
    return loss, (logits.argmax(-1) == target).float().mean()


def make_optimizer(model: Student, cfg: StudentConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings' position table (nanoGPT's split)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos_emb" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos_emb" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))


def train_student(cfg: StudentConfig, reader: HistoryReader, runs: Sequence[int] | None = None,
                  run_dir: str | Path | None = None, progress: bool = True,
                  stop_after_chunks: int | None = None) -> StudentRun:
    """Train (or resume, if ``run_dir`` holds a checkpoint of the same config) one student on ``runs``' windows."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    model = Student(cfg.model)
    optim = make_optimizer(model, cfg)
    run = StudentRun(cfg, model, 0, [], [], 0.0)
    path = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    if path is not None and path.exists():
        _load(path, run, optim)
    bar = tqdm(total=cfg.updates, initial=run.updates, desc=f"{cfg.kind.upper()} student", unit="update",
               disable=not progress, mininterval=2.0)
    n_chunks = 0
    while run.updates < cfg.updates and (stop_after_chunks is None or n_chunks < stop_after_chunks):
        start = time.perf_counter()
        model.train()
        losses, accs = [], []
        for batch in batches(cfg, reader, runs, chunk=run.updates // cfg.checkpoint_every):
            if run.updates >= cfg.updates:
                break
            for group in optim.param_groups:
                group["lr"] = cfg.lr_at(run.updates)
            with torch.autocast(DEVICE_TYPE, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, acc = loss_and_accuracy(model, batch, cfg)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optim.step()
            losses.append(loss.item())
            accs.append(acc.item())
            run.updates += 1
            bar.update(1)
        run.loss.append(float(np.mean(losses)))
        run.accuracy.append(float(np.mean(accs)))
        run.wall_seconds += time.perf_counter() - start
        bar.set_postfix(loss=f"{run.loss[-1]:.3f}", acc=f"{run.accuracy[-1]:.2f}")
        if path is not None:
            _save(path, run, optim)
        n_chunks += 1
    bar.close()
    model.eval()
    return run


def _save(path: Path, run: StudentRun, optim: torch.optim.Optimizer) -> None:
    """Everything that determines the rest of training, written atomically."""
    state = {"model": run.model.state_dict(), "optim": optim.state_dict(), "updates": run.updates,
             "loss": run.loss, "accuracy": run.accuracy, "wall_seconds": run.wall_seconds,
             "torch_rng": torch.get_rng_state()}
    save_checkpoint(path, state, {"config": asdict(run.cfg)})


def _load(path: Path, run: StudentRun, optim: torch.optim.Optimizer) -> None:
    """Resume ``run`` from ``path``, refusing a checkpoint written for a different config."""
    state = read_checkpoint(path)
    diff = differences(asdict(run.cfg), state["meta"]["config"])
    if diff:
        raise CheckpointMismatchError(f"{path} was written for another student config ({'; '.join(diff)}); "
                                      f"use another run folder or delete the checkpoint")
    run.model.load_state_dict(state["model"])
    optim.load_state_dict(state["optim"])
    run.updates, run.loss, run.accuracy = int(state["updates"]), list(state["loss"]), list(state["accuracy"])
    run.wall_seconds = float(state["wall_seconds"])
    torch.set_rng_state(state["torch_rng"])


def load_student(path: str | Path) -> Student:
    """A frozen student (``eval()`` mode) from a checkpoint."""
    state = read_checkpoint(path)
    model = Student(StudentConfig(**state["meta"]["config"]).model)
    model.load_state_dict(state["model"])
    return model.eval()


# ---------------------------------------------------------------------------------------------------
# Frozen rollouts


def _choose(logits: torch.Tensor, greedy: bool, generator: torch.Generator) -> torch.Tensor:
    """Sample an action from the student's distribution, or take its most likely one."""
    if greedy:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator)[:, 0]


class ContextStream:
    """The student's context for B environments in lockstep: every step's stored observation, action, reward and
    episode-start flag, and the KV cache over the last ones. ``keep`` decides where a fresh context starts."""

    def __init__(self, model: Student, batch: int, obs_bytes: int, capacity: int, use_cache: bool = True) -> None:
        self.model, self.use_cache = model, use_cache
        self.obs = torch.zeros(batch, capacity, obs_bytes, dtype=torch.uint8)
        self.action = torch.zeros(batch, capacity, dtype=torch.long)
        self.reward = torch.zeros(batch, capacity)
        self.first = torch.zeros(batch, capacity, dtype=torch.bool)
        self.t = 0  # steps so far
        self.start = 0  # first step inside the current context
        self.cache = KVCache(model.cfg, batch) if use_cache else None

    def restart(self, start: int) -> None:
        """Make step ``start`` the context's first; the cache is refilled with steps ``start .. t - 1``."""
        self.start = start
        if self.cache is not None:
            self.cache.reset()
            if self.t > start:
                self.model(*self._inputs(start, self.t), cache=self.cache)

    def _inputs(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first = self.first[:, lo:hi].clone()
        first[:, 0] = True
        pa, pr = step_inputs(self.action[:, lo:hi], self.reward[:, lo:hi], first, self.model.cfg.n_actions)
        return self.obs[:, lo:hi], pa, pr

    def logits(self, obs: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Action logits for the current step, whose observation is ``obs`` (``first``: it starts an episode)."""
        self.obs[:, self.t], self.first[:, self.t] = obs, first
        if self.cache is None:
            return self.model(*self._inputs(self.start, self.t + 1))[:, -1]
        pa, pr = self._inputs(self.start, self.t + 1)[1:]
        return self.model(self.obs[:, self.t:self.t + 1], pa[:, -1:], pr[:, -1:], cache=self.cache)[:, -1]

    def record(self, action: torch.Tensor, reward: torch.Tensor) -> None:
        """What happened at the current step; then move on."""
        self.action[:, self.t], self.reward[:, self.t] = action, reward
        self.t += 1


@torch.no_grad()
def darkroom_rollout(model: Student, goals: Sequence[int] | np.ndarray, episodes: int, *, context_episodes: int,
                     greedy: bool = False, seed: int = 0, use_cache: bool = True,
                     prompt: dict[str, np.ndarray] | None = None,
                     on_episode: Callable[[int, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    """Roll the frozen student out on Dark Room, one environment per entry of ``goals``, for ``episodes``
    episodes each, starting from an empty context. ``goals`` may also be a plan, ``(episodes, B)``: the goal of
    every environment in every episode (goals that move, as :func:`imitlib.tabular.q_learning` takes them).
    Each episode sees the previous ``context_episodes - 1`` episodes plus itself (exactly the windows it was
    trained on). Returns ``returns (B, episodes)`` and the
    ``cells`` visited and ``actions`` taken, ``(B, episodes, horizon)``.

    ``prompt`` (``obs``, ``action``, ``reward``, each ``(B, P * horizon)``) puts P recorded episodes in the context
    first, e.g. part of a learning history, as if the student had played them itself."""
    from imitlib.envs.darkroom import HORIZON, SIZE, start_cell, transition_table
    from imitlib.tabular import goal_schedule

    if context_episodes * HORIZON > model.cfg.block_size:
        raise ValueError(f"{context_episodes} episodes of {HORIZON} steps exceed the model's block_size "
                         f"{model.cfg.block_size}")
    model.eval()
    plan = torch.as_tensor(goal_schedule(goals, episodes, SIZE))  # (episodes, B)
    b = plan.shape[1]
    nxt = torch.as_tensor(transition_table(SIZE))
    gen = torch.Generator().manual_seed(seed)
    n_prompt = 0 if prompt is None else prompt["action"].shape[1] // HORIZON
    stream = ContextStream(model, b, 1, (n_prompt + episodes) * HORIZON, use_cache)
    if prompt is not None:
        if prompt["action"].shape != (b, n_prompt * HORIZON):
            raise ValueError(f"prompt arrays must be (B={b}, whole episodes of {HORIZON} steps), "
                             f"got {prompt['action'].shape}")
        n = n_prompt * HORIZON
        stream.obs[:, :n, 0] = torch.as_tensor(np.asarray(prompt["obs"]).reshape(b, n), dtype=torch.uint8)
        stream.action[:, :n] = torch.as_tensor(np.asarray(prompt["action"]), dtype=torch.long)
        stream.reward[:, :n] = torch.as_tensor(np.asarray(prompt["reward"]), dtype=torch.float32)
        stream.first[:, :n] = torch.as_tensor(np.arange(n) % HORIZON == 0)
        stream.t = n
    returns = np.zeros((b, episodes))
    cells = np.zeros((b, episodes, HORIZON), np.uint8)
    actions = np.zeros((b, episodes, HORIZON), np.uint8)
    for ep in range(episodes):
        stream.restart(max(0, n_prompt + ep - context_episodes + 1) * HORIZON)
        cell = torch.full((b,), start_cell(SIZE), dtype=torch.long)
        for t in range(HORIZON):
            cells[:, ep, t] = cell.numpy()
            logits = stream.logits(cell[:, None].to(torch.uint8), torch.full((b,), t == 0))
            action = _choose(logits, greedy, gen)
            actions[:, ep, t] = action.numpy()
            cell = nxt[cell, action]
            reward = (cell == plan[ep]).float()
            stream.record(action, reward)
            returns[:, ep] += reward.numpy()
        if on_episode is not None:
            on_episode(ep, returns[:, ep])
    return {"returns": returns, "cells": cells, "actions": actions}


@torch.no_grad()
def game_rollout(model: Student, env_id: str, *, num_envs: int, episodes: int, context_steps: int, seed: int = 0,
                 greedy: bool = False, max_steps: int = 100_000, use_cache: bool = True,
                 teacher: torch.nn.Module | None = None, **env_options: Any) -> dict[str, np.ndarray]:
    """Roll the frozen student out in ``num_envs`` copies of a MinAtar/ALE game until each has finished
    ``episodes`` episodes (or ``max_steps`` vector steps). The context slides: when it holds ``context_steps``
    steps, it restarts from the newest half. Returns raw ``returns (num_envs, episodes)`` (NaN where unfinished),
    the vector step at which each ended (``ends``, -1 where unfinished) and, if a ``teacher`` Q-network is given,
    how often the student's action equals the teacher's greedy one."""
    from imitlib.envs.games import game_spec, make_vec_env
    from imitlib.envs.observations import encode, network_input

    spec = game_spec(env_id, full_action_space=env_options.get("full_action_space", False),
                     channels=env_options.get("channels"))
    if context_steps > model.cfg.block_size:
        raise ValueError(f"context_steps {context_steps} exceeds the model's block_size {model.cfg.block_size}")
    model.eval()
    env = make_vec_env(env_id, num_envs, **env_options)
    obs, _ = env.reset(seed=[int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(num_envs)])
    gen = torch.Generator().manual_seed(seed)
    stream = ContextStream(model, num_envs, encode(obs[:1]).shape[1], max_steps, use_cache)
    returns = np.full((num_envs, episodes), np.nan)
    ends = np.full((num_envs, episodes), -1, np.int64)
    done_count = np.zeros(num_envs, int)
    running = np.zeros(num_envs)
    first = torch.ones(num_envs, dtype=torch.bool)
    agree, seen = 0, 0
    for step in range(max_steps):
        if stream.t - stream.start >= context_steps:
            stream.restart(stream.t - context_steps // 2)
        logits = stream.logits(torch.from_numpy(encode(obs)), first)
        action = _choose(logits, greedy, gen)
        if teacher is not None:
            active = done_count < episodes
            agree += int((teacher(network_input(spec, torch.as_tensor(obs))).argmax(-1) == action)[active].sum())
            seen += int(active.sum())
        obs, reward, terminated, truncated, _ = env.step(action.numpy())
        stream.record(action, torch.as_tensor(reward, dtype=torch.float32))
        running += reward
        done = terminated | truncated
        for i in np.flatnonzero(done):
            if done_count[i] < episodes:
                returns[i, done_count[i]], ends[i, done_count[i]] = running[i], step
            done_count[i] += 1
            running[i] = 0
        first = torch.as_tensor(done)
        if (done_count >= episodes).all():
            break
    env.close()
    return {"returns": returns, "ends": ends, "agreement": np.array(agree / max(seen, 1)),
            "steps": np.array(stream.t)}
