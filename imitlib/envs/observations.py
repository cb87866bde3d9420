"""One observation vocabulary: how a game's observation is stored, read back, and fed to a network.

The replay buffer, the recorder and the student all store frames the same way and turn them into network input
the same way, so they share these three functions (and the student never imports the teacher's code):

- :func:`encode`: observations ``(N, *obs_shape)`` -> bytes ``(N, frame_bytes)``. MinAtar frames are boolean
  ``(10, 10, C)`` grids, bit-packed (125 bytes for the shared 10 channels); ALE observations are stacks of uint8
  ``84 x 84`` frames, of which only the newest is kept (stacks are rebuilt from consecutive frames).
- :func:`decode_minatar`: the bytes of :func:`encode` back to boolean frames.
- :func:`network_input`: observations -> float tensors the convolutional networks read (MinAtar channels first,
  ALE scaled to [0, 1]).
"""

from __future__ import annotations

import numpy as np
import torch

from imitlib.envs.games import GameSpec


def encode(obs: np.ndarray) -> np.ndarray:
    """``(N, *obs_shape)`` -> ``(N, bytes)``: bit-packed bool frames (MinAtar), or the newest uint8 frame (ALE)."""
    n = obs.shape[0]
    if obs.dtype == np.bool_:
        return np.packbits(obs.reshape(n, -1), axis=-1)
    return obs[:, -1].reshape(n, -1)


def frame_bytes(spec: GameSpec) -> int:
    """Bytes one stored frame of ``spec``'s game takes."""
    cells = int(np.prod(spec.frame_shape))
    return (cells + 7) // 8 if spec.kind == "minatar" else cells


def decode_minatar(frames: np.ndarray, spec: GameSpec) -> np.ndarray:
    """``(N, bytes)`` packed MinAtar frames -> ``(N, *frame_shape)`` booleans."""
    cells = int(np.prod(spec.frame_shape))
    return np.unpackbits(frames, axis=-1, count=cells).astype(bool).reshape(len(frames), *spec.frame_shape)


def network_input(spec: GameSpec, obs: torch.Tensor) -> torch.Tensor:
    """Observations as the networks expect them: float, channels first (MinAtar), scaled to [0, 1] (ALE)."""
    if spec.kind == "minatar":
        return obs.float().movedim(-1, -3)
    return obs.float() / 255.0
