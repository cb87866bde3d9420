"""Relabelling augmentation: every history gets its own random permutation of object channels and actions.

A student trained on several games could lean on what a channel or an action *means* (channel 3 is the ball,
action 1 moves left). Kirsch et al. (2023) and Headless-AD remove that crutch by permuting observation
dimensions and action labels at random per training history, so only what the history itself shows can tell the
student what a channel or an action does: the in-context learning the leave-one-game-out test asks for.

The permutation is a function of (seed, history), so every window of one history is relabelled the same way and
a history keeps its inner consistency. Observations are MinAtar frames as :func:`imitlib.envs.observations.encode`
stores them (bit-packed ``(10, 10, C)`` booleans).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
