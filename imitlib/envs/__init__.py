"""Environments: Dark Room (gymnasium, registered as ``imitlib/DarkRoom-v0``), MinAtar and ALE games."""

from __future__ import annotations

import gymnasium as gym

from imitlib.envs.darkroom import (
    ACTIONS,
    HORIZON,
    SIZE,
    DarkRoom,
    goal_cell,
    optimal_return,
    random_policy_return,
    start_cell,
    transition_table,
)
from imitlib.envs.games import ENV_IDS, GameSpec, game_spec, make_vec_env

DARKROOM_ID = "imitlib/DarkRoom-v0"

if DARKROOM_ID not in gym.registry:
    gym.register(id=DARKROOM_ID, entry_point="imitlib.envs.darkroom:DarkRoom")

__all__ = [
    "ACTIONS",
    "DARKROOM_ID",
    "ENV_IDS",
    "HORIZON",
    "SIZE",
    "DarkRoom",
    "GameSpec",
    "game_spec",
    "goal_cell",
    "make_vec_env",
    "optimal_return",
    "random_policy_return",
    "start_cell",
    "transition_table",
]
