"""Behaviour cloning with the teacher's own network: the non-transformer baseline for imitating expert play.

The student is the teacher's architecture (:func:`imitlib.qnets.minatar_net`: conv 16x3x3 -> 128 -> actions), fed
one frame, trained by cross-entropy to predict the expert's action in it. No context, no history: if this network
recovers as much of the teacher's return as the transformer does from the same episodes, the transformer is not
what limits imitation; the data are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from imitlib.envs.games import GameSpec
from imitlib.envs.observations import network_input
from imitlib.qnets import minatar_net


@dataclass(frozen=True)
class BCConfig:
    """One behaviour-cloning run: Adam on minibatches of single recorded steps."""

    updates: int = 2_000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0


def recorded_steps(reader: object, run: int, spec: GameSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Every recorded step of ``run``: network inputs ``(T, C, 10, 10)`` and the expert's actions ``(T,)``."""
    from imitlib.envs.observations import decode_minatar

    total = int(reader.episodes["length"][reader.episodes["run"] == run].sum())
    window = reader.step_window(run, 0, total)
    frames = torch.as_tensor(decode_minatar(np.asarray(window["obs"]), spec))  # (T, 10, 10, C) bool
    return network_input(spec, frames), torch.as_tensor(np.asarray(window["action"]), dtype=torch.long)


def train_bc(cfg: BCConfig, obs: torch.Tensor, actions: torch.Tensor, spec: GameSpec) -> tuple[torch.nn.Module, float]:
    """Fit the teacher-shaped network to (frame, action) pairs; returns it (frozen, eval mode) and its final
    training accuracy."""
    torch.manual_seed(cfg.seed)
    net = minatar_net(spec.in_channels, spec.n_actions)
    optim = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    hits = []
    for _ in range(cfg.updates):
        pick = torch.randint(len(actions), (cfg.batch_size,), generator=gen)
        logits = net(obs[pick])
        loss = F.cross_entropy(logits, actions[pick])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        hits.append((logits.argmax(-1) == actions[pick]).float().mean().item())
    net.eval()
    return net, float(np.mean(hits[-max(1, cfg.updates // 10):]))


@torch.no_grad()
def agreement(net: torch.nn.Module, teacher: torch.nn.Module, frames: np.ndarray, spec: GameSpec) -> float:
    """How often ``net``'s greedy action equals the teacher's on ``frames`` (the states ``net`` itself visited)."""
    x = network_input(spec, torch.as_tensor(frames))
    return float((net(x).argmax(-1) == teacher(x).argmax(-1)).float().mean())
