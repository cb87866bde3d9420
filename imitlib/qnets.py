"""Q-networks: the MinAtar and Nature-DQN architectures, and S seeds' copies stacked into one grouped network.

Every seed of a DQN run gets its own network, target network and optimiser state, but S small networks computed
one by one waste most of a CPU's time on overhead. :class:`StackedNet` stacks their parameters along a leading seed
dimension and runs them as one grouped convolution and one batched matrix product per layer; seed s still starts
from exactly the weights ``make()`` gives after ``torch.manual_seed(seeds[s])``, so a stacked run of one seed is the
plain single-network run (tested against :func:`imitlib.dqn_reference.train_reference`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from imitlib.envs.games import GameSpec

if TYPE_CHECKING:
    from imitlib.dqn import DQNConfig


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
