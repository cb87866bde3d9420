"""Experience replay for several seeds at once: per seed and environment, a ring of stored frames.

Each observation's newest frame is stored once (MinAtar frames bit-packed: 125 bytes for a 10-channel frame; ALE
frames as uint8, so a 4-frame stack costs one frame), in the one encoding :mod:`imitlib.envs.observations`
defines; stacks are rebuilt at sampling time, with zeros before an episode's first frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from imitlib.envs.games import GameSpec
from imitlib.envs.observations import decode_minatar, encode, frame_bytes


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
