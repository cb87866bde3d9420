"""Relabelling augmentation: every history gets its own random permutation of object channels and actions.

A student trained on several games could lean on what a channel or an action *means* (channel 3 is the ball,
action 1 moves left). Kirsch et al. (2023) and Headless-AD remove that crutch by permuting observation
dimensions and action labels at random per training history, so only what the history itself shows can tell the
student what a channel or an action does: the in-context learning the leave-one-game-out test asks for.

The permutation is a function of (seed, history), so every window of one history is relabelled the same way and
a history keeps its inner consistency. Observations are MinAtar frames as :func:`imitlib.envs.observations.encode`
stores them (bit-packed ``(10, 10, C)`` booleans).

At test time :class:`RelabelledStudent` does the converse for a frozen student: it plays a game whose action labels
are permuted (chapter 7's Dark Room with relabelled actions), one permutation per environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Relabelling:
    """One history's relabelling: stored channel ``c`` becomes channel ``channels[c]``, action ``a`` is
    ``actions[a]``."""

    channels: np.ndarray  # (C,) a permutation of range(C)
    actions: np.ndarray  # (A,) a permutation of range(A)


def relabelling(seed: int, run: int, n_channels: int, n_actions: int) -> Relabelling:
    """The relabelling of history ``run`` under ``seed``: the same arguments always give the same one."""
    rng = np.random.default_rng([seed, run])
    return Relabelling(channels=rng.permutation(n_channels), actions=rng.permutation(n_actions))


def relabel_frames(frames: np.ndarray, channels: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """``(T, bytes)`` packed MinAtar frames with their channels moved: channel ``c`` to ``channels[c]``."""
    cells = int(np.prod(frame_shape))
    grid = np.unpackbits(frames, axis=-1, count=cells).reshape(len(frames), *frame_shape)  # (T, 10, 10, C)
    moved = np.empty_like(grid)
    moved[..., channels] = grid  # old channel c lands at channels[c]
    return np.packbits(moved.reshape(len(frames), -1), axis=-1)


def relabel_window(window: dict[str, np.ndarray], label: Relabelling, frame_shape: tuple[int, ...],
                   ) -> dict[str, np.ndarray]:
    """A recorded window (``obs (T, bytes)``, ``action (T,)``, ...) as the relabelled history shows it; the other
    fields are unchanged."""
    action = np.asarray(window["action"]).astype(np.int64)
    if action.size and not 0 <= action.min() <= action.max() < len(label.actions):
        raise ValueError(f"actions must lie in 0..{len(label.actions) - 1} for this relabelling, got "
                         f"{action.min()}..{action.max()}: build it with the game's number of actions")
    return {**window, "obs": relabel_frames(np.asarray(window["obs"]), label.channels, frame_shape),
            "action": label.actions[action]}


def derangements(count: int, n: int, seed: int) -> np.ndarray:
    """``(count, n)`` distinct random permutations of ``range(n)`` that move every label (no ``a`` maps to itself):
    relabelled games in which no action keeps its meaning."""
    exist = round(math.factorial(n) / math.e) if n >= 2 else 0  # the subfactorial !n: 44 for five actions
    if not 0 <= count <= exist:
        raise ValueError(f"asked for {count} distinct derangements of {n} labels; there are {exist}")
    rng, found = np.random.default_rng(seed), []
    while len(found) < count:
        perm = rng.permutation(n)
        if (perm != np.arange(n)).all() and not any((perm == f).all() for f in found):
            found.append(perm)
    return np.array(found, dtype=np.int64).reshape(count, n)


class RelabelledStudent(torch.nn.Module):
    """A frozen student playing a game whose action labels are permuted, one permutation per environment.

    In environment ``b`` the student's label ``a`` does what label ``moves[b, a]`` does in the game it learned.
    Wrapped, it takes and returns the game's own labels, so any rollout can run it unchanged: the actions in its
    context are translated to its labels on the way in (the start token stays), its logits back on the way out.
    """

    def __init__(self, model: torch.nn.Module, moves: np.ndarray) -> None:
        super().__init__()
        self.model, self.cfg = model, model.cfg
        moves = torch.as_tensor(np.asarray(moves), dtype=torch.long)  # (B, A)
        if moves.ndim != 2 or moves.shape[1] != self.cfg.n_actions or not (
                moves.sort(1).values == torch.arange(self.cfg.n_actions)).all():
            raise ValueError(f"moves must be (B, {self.cfg.n_actions}): a permutation of the actions per environment")
        inverse = moves.argsort(1)  # (B, A): the student's label for each of the game's actions
        start = torch.full((len(moves), 1), self.cfg.n_actions)
        self.register_buffer("to_student", torch.cat([inverse, start], 1), persistent=False)  # (B, A + 1)
        self.register_buffer("inverse", inverse, persistent=False)

    def forward(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
                cache: object = None) -> torch.Tensor:
        """Game labels in (``prev_action (B, T)``), logits over game labels out (``(B, T, A)``)."""
        if prev_action.shape[0] != len(self.inverse):
            raise ValueError(f"the wrapper holds {len(self.inverse)} permutations, the batch has "
                             f"{prev_action.shape[0]} environments")
        theirs = self.model(obs, self.to_student.gather(1, prev_action), prev_reward, cache=cache)  # (B, T, A)
        return theirs.gather(2, self.inverse[:, None, :].expand_as(theirs))  # game action m <- label inverse[m]
