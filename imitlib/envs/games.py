"""MinAtar and ALE Atari games as vectorised environments with every setting stated.

Both kinds are returned as gymnasium vector environments with ``autoreset_mode=SAME_STEP``: when an episode
ends, ``step`` returns the first observation of the next one. A learner never needs the final observation
here: terminated transitions do not bootstrap, and time-limit truncations are simply not replayed.

* **MinAtar** (Young & Tian 2019; pure Python): ``MinAtar/<Game>-v0`` keeps all 6 actions in every game, in
  the same order. Each game has its own number of object channels (Breakout 4, Space Invaders 6, Asterix 4,
  Freeway 7, Seaquest 10), so by default every game's observation is zero-padded to the same bool
  ``(10, 10, 10)``: one observation and action space, in which any network or student can move between games
  (``channels=`` pads to another count, or to the game's own). Sticky actions 0.1 (the MinAtar paper's
  setting); episodes are truncated at 10,000 steps.
* **ALE** (ale-py's threaded C++ ``AtariVectorEnv``): 84x84 grey frames, 4 stacked, frameskip 4 with max
  pooling, up to 30 no-ops at reset, FIRE on reset, sticky actions 0.25 unless told otherwise, optional full
  18-action space. Rewards come back **raw** (unclipped): the learner clips them for its targets and logs raw
  scores. Episodes end at game over (not at life loss); ``info["lives"]`` tells a learner when a life is lost.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

MINATAR_GAMES = {"MinAtar/Breakout-v0": "breakout", "MinAtar/SpaceInvaders-v0": "space_invaders",
                 "MinAtar/Asterix-v0": "asterix", "MinAtar/Freeway-v0": "freeway", "MinAtar/Seaquest-v0": "seaquest"}
ALE_GAMES = {"ALE/Breakout-v5": "breakout", "ALE/SpaceInvaders-v5": "space_invaders"}
ENV_IDS = (*MINATAR_GAMES, *ALE_GAMES)
MINATAR_MAX_STEPS = 10_000
MINATAR_CHANNELS = 10  # Seaquest's object channels, the most of any MinAtar game: the shared observation space


@dataclass(frozen=True)
class GameSpec:
    """What a learner needs to know about a game's observations and actions."""

    env_id: str
    kind: str  # "minatar" or "ale" (the names the history and the student use too)
    frame_shape: tuple[int, ...]  # one frame: (10, 10, C) bool for MinAtar, (84, 84) uint8 for ALE
    stack: int  # frames per observation (1 for MinAtar, 4 for ALE)
    n_actions: int

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation as the environment returns it."""
        return self.frame_shape if self.kind == "minatar" else (self.stack, *self.frame_shape)

    @property
    def in_channels(self) -> int:
        """Input channels of the Q-network: MinAtar object channels, or stacked ALE frames."""
        return self.frame_shape[-1] if self.kind == "minatar" else self.stack


def check_env_id(env_id: str) -> None:
    """Refuse an unknown id with the list of known ones."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown environment {env_id!r}: valid ids are {', '.join(ENV_IDS)}")


class PadChannels(gym.ObservationWrapper):
    """Zero-pad MinAtar's object channels to a fixed count, so games with different C share one shape."""

    def __init__(self, env: gym.Env, channels: int) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        if channels < c:
            raise ValueError(f"channels={channels} is fewer than the game's {c}")
        self.extra = channels - c
        self.observation_space = gym.spaces.Box(0, 1, (h, w, channels), dtype=bool)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, np.zeros((*obs.shape[:2], self.extra), bool)], axis=-1)


def _minatar_env(env_id: str, sticky: float, channels: int | None) -> gym.Env:
    """One MinAtar game, its object channels zero-padded to ``channels`` (None: the shared 10)."""
    import minatar.gym

    if env_id not in gym.registry:
        minatar.gym.register_envs()
    with warnings.catch_warnings():  # "-v0 is out of date": v1 has minimal action sets; we want all 6 on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        env = gym.make(env_id, sticky_action_prob=sticky, max_episode_steps=MINATAR_MAX_STEPS,
                       disable_env_checker=True)
    channels = MINATAR_CHANNELS if channels is None else channels
    return PadChannels(env, channels) if channels != env.observation_space.shape[-1] else env


def make_vec_env(
    env_id: str,
    num_envs: int,
    *,
    sticky: float | None = None,
    full_action_space: bool = False,
    channels: int | None = None,
) -> gym.vector.VectorEnv:
    """A vector of ``num_envs`` copies of a game, settings as in the module docstring."""
    check_env_id(env_id)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if env_id in MINATAR_GAMES:
        p = 0.1 if sticky is None else sticky
        return gym.vector.SyncVectorEnv([lambda: _minatar_env(env_id, p, channels)] * num_envs,
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    from ale_py.vector_env import AtariVectorEnv

    return ListSeeds(AtariVectorEnv(
        ALE_GAMES[env_id], num_envs, repeat_action_probability=0.25 if sticky is None else sticky,
        full_action_space=full_action_space, img_height=84, img_width=84, grayscale=True, stack_num=4,
        frameskip=4, maxpool=True, noop_max=30, use_fire_reset=True, episodic_life=False, reward_clipping=False,
        autoreset_mode="SameStep",
    ))


class ListSeeds(gym.vector.VectorWrapper):
    """Let ale-py's vector env take a list of seeds, as gymnasium's vector envs do.

    ale-py's C++ side takes 32-bit signed seeds, so each seed is reduced modulo 2**31 - 1 first.
    """

    def reset(self, *, seed: int | list[int] | np.ndarray | None = None, options: dict | None = None) -> tuple:
        if seed is not None:
            seed = np.asarray(seed, dtype=np.int64) % (2**31 - 1)
            seed = int(seed) if seed.ndim == 0 else seed
        return self.env.reset(seed=seed, options=options)


def game_spec(env_id: str, *, full_action_space: bool = False, channels: int | None = None) -> GameSpec:
    """The spec of a game without stepping it."""
    check_env_id(env_id)
    if env_id in MINATAR_GAMES:
        env = _minatar_env(env_id, 0.1, channels)
        spec = GameSpec(env_id, "minatar", env.observation_space.shape, 1, int(env.action_space.n))
        env.close()
        return spec
    return GameSpec(env_id, "ale", (84, 84), 4, 18 if full_action_space else _ale_minimal_actions(env_id))


def _ale_minimal_actions(env_id: str) -> int:
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(env_id)
    n = int(env.action_space.n)
    env.close()
    return n
