"""Histories as Minari datasets: the offline-RL community's standard format, so its tools can load our data.

``python -m imitlib export --minari ID --history data/<dataset>/learning`` writes one. Minari is an optional
extra (``pip install "minari[hdf5]"``), imported only here. Two things differ from our own format and are stated
in the dataset's description: observations are decoded (a MinAtar frame as a ``(10, 10, 10)`` 0/1 array, a Dark
Room cell as its index), and because a history stores what the agent saw *before* each action, the observation
after an episode's last step was never recorded: Minari wants one more observation than actions, so each episode
ends with an all-zero placeholder. The learner's update count and ε per step go into the step infos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imitlib.history import HistoryReader

PLACEHOLDER = ("the observation after each episode's last step was not recorded: each episode's final observation is "
               "an all-zero placeholder")


def observation_space(reader: HistoryReader) -> Any:
    """The gymnasium space of the exported (decoded) observations."""
    from gymnasium import spaces

    kind, shape = reader.manifest["obs_kind"], tuple(reader.manifest["obs_shape"])
    if kind == "darkroom":
        return spaces.Box(0, 255, (1,), np.uint8)  # the cell index, row * size + column
    if kind == "minatar":
        return spaces.Box(0, 1, shape, np.uint8)
    return spaces.Box(0, 255, shape[-2:], np.uint8)  # ALE: the newest frame of each stack


def decoded(reader: HistoryReader, obs: np.ndarray) -> np.ndarray:
    """Stored observation bytes ``(T, bytes)`` as the exported space holds them."""
    kind, shape = reader.manifest["obs_kind"], tuple(reader.manifest["obs_shape"])
    if kind == "minatar":
        cells = int(np.prod(shape))
        return np.unpackbits(obs, axis=-1, count=cells).reshape(len(obs), *shape)
    if kind == "darkroom":
        return obs
    return obs.reshape(len(obs), *shape[-2:])


def episode_buffers(reader: HistoryReader) -> list[Any]:
    """One Minari ``EpisodeBuffer`` per recorded episode, in (run, episode) order."""
    from minari.data_collector import EpisodeBuffer

    out = []
    for i in range(reader.n_episodes):
        ep = reader.episode(i)
        obs = decoded(reader, ep["obs"])
        obs = np.concatenate([obs, np.zeros_like(obs[:1])])  # (T + 1, ...): see PLACEHOLDER
        out.append(EpisodeBuffer(
            id=i, observations=obs, actions=ep["action"].astype(np.int64), rewards=ep["reward"].tolist(),
            terminations=ep["terminated"].tolist(), truncations=ep["truncated"].tolist(),
            infos={"run": ep["run"], "episode": ep["episode"], "update": ep["update"], "epsilon": ep["epsilon"]}))
    return out


def to_minari(history: str | Path, dataset_id: str, description: str = "") -> Any:
    """Write the history at ``history`` as the local Minari dataset ``dataset_id``; returns the loaded dataset."""
    import minari
    from gymnasium import spaces

    reader = HistoryReader(history)
    m = reader.manifest
    text = (f"{description} Recorded by imitlib (format {m['format_version']}, {m['obs_kind']} observations); "
            f"{PLACEHOLDER}. Runs: {m['runs']}").strip()
    return minari.create_dataset_from_buffers(
        dataset_id=dataset_id, buffer=episode_buffers(reader), algorithm_name="imitlib learning history",
        author="imitlib",
        action_space=spaces.Discrete(m["n_actions"]), observation_space=observation_space(reader),
        description=text, data_format="hdf5")
