"""Dark Room (Laskin et al. 2022): a 9x9 grid with a hidden goal, the testbed of Algorithm Distillation.

The agent starts in the centre, sees only its own cell (as an index ``row * size + col``), and gets
reward 1 on every step it stands on the goal. An episode lasts ``horizon`` steps (20) and is
*truncated*, never terminated, so a learner must bootstrap through the time limit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ACTIONS = ("stay", "up", "down", "left", "right")
MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int64)  # (d_row, d_col)
SIZE = 9
HORIZON = 20

Goal = int | tuple[int, int]


def transition_table(size: int = SIZE) -> np.ndarray:
    """Next cell for every (cell, action): the whole dynamics as one lookup, shared by all learners."""
    rows, cols = np.divmod(np.arange(size * size), size)
    nr = np.clip(rows[:, None] + MOVES[None, :, 0], 0, size - 1)
    nc = np.clip(cols[:, None] + MOVES[None, :, 1], 0, size - 1)
    return nr * size + nc


def start_cell(size: int = SIZE) -> int:
    """The centre cell, where every episode starts."""
    return (size // 2) * size + size // 2


def goal_cell(goal: Goal, size: int = SIZE) -> int:
    """Normalise a goal given as a cell index or (row, col) pair, refusing any outside the grid."""
    if isinstance(goal, tuple | list | np.ndarray) and len(goal) == 2:
        row, col = (int(g) for g in goal)
        if not (0 <= row < size and 0 <= col < size):
            raise ValueError(f"goal {tuple(goal)} lies outside the {size}x{size} grid: use 0 <= row, col < {size}")
        return row * size + col
    if isinstance(goal, int | np.integer):
        if not 0 <= int(goal) < size * size:
            raise ValueError(f"goal cell {goal} lies outside the {size}x{size} grid: use 0 <= cell < {size * size}")
        return int(goal)
    raise TypeError(f"goal must be a cell index or a (row, col) pair, got {goal!r}")


def optimal_return(goal: Goal, size: int = SIZE, horizon: int = HORIZON) -> int:
    """Best achievable return: walk the Manhattan distance, then stay on the goal until the time limit."""
    g = goal_cell(goal, size)
    s = start_cell(size)
    dist = abs(g // size - s // size) + abs(g % size - s % size)
    return max(0, horizon - max(dist, 1) + 1)


class DarkRoom(gym.Env[np.int64, np.int64]):
    """The Dark Room task as a gymnasium environment (one goal per instance unless reset moves it)."""

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(
        self,
        goal: Goal | None = None,
        size: int = SIZE,
        horizon: int = HORIZON,
        render_mode: str | None = None,
    ) -> None:
        if size < 2 or horizon < 1:
            raise ValueError(f"need size >= 2 and horizon >= 1, got size={size}, horizon={horizon}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.size, self.horizon, self.render_mode = size, horizon, render_mode
        self.observation_space = gym.spaces.Discrete(size * size)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self._fixed_goal = None if goal is None else goal_cell(goal, size)
        self.goal: int | None = self._fixed_goal
        self._next = transition_table(size)
        self._cell = start_cell(size)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.int64, dict[str, Any]]:
        """Start at the centre; the goal is the one given, ``options["goal"]``, or drawn from the seed."""
        super().reset(seed=seed)
        if options and "goal" in options:
            self.goal = goal_cell(options["goal"], self.size)
        elif self._fixed_goal is not None:
            self.goal = self._fixed_goal
        elif self.goal is None or seed is not None:
            self.goal = int(self.np_random.integers(self.size * self.size))
        self._cell, self._t = start_cell(self.size), 0
        return np.int64(self._cell), self._info()

    def step(self, action: int) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        """Move (walls clip), pay 1 if now on the goal, truncate at the horizon."""
        if self.goal is None:
            raise RuntimeError("call reset() before step()")
        if not (isinstance(action, int | np.integer) and 0 <= int(action) < len(ACTIONS)):
            raise ValueError(f"invalid action {action!r}: Dark Room actions are 0..4 = {', '.join(ACTIONS)}")
        if self._t >= self.horizon:
            raise RuntimeError(f"episode is over after {self.horizon} steps: call reset()")
        self._cell = int(self._next[self._cell, int(action)])
        self._t += 1
        reward = float(self._cell == self.goal)
        return np.int64(self._cell), reward, False, self._t >= self.horizon, self._info()

    def render(self) -> str | None:
        """Text picture: A = agent, G = goal, * = both."""
        if self.render_mode != "ansi":
            return None
        rows = []
        for r in range(self.size):
            line = ""
            for c in range(self.size):
                cell = r * self.size + c
                line += "*" if cell == self._cell == self.goal else "A" if cell == self._cell else (
                    "G" if cell == self.goal else ".")
            rows.append(line)
        return "\n".join(rows)

    def _info(self) -> dict[str, Any]:
        return {"goal": self.goal, "position": divmod(self._cell, self.size), "t": self._t}


def random_policy_return(goal: Goal, size: int = SIZE, horizon: int = HORIZON) -> float:
    """Exact expected return of the uniform random policy: propagate the walker's distribution."""
    g = goal_cell(goal, size)
    nxt = transition_table(size)
    n_actions = nxt.shape[1]
    p = np.zeros(size * size)
    p[start_cell(size)] = 1.0
    total = 0.0
    for _ in range(horizon):
        q = np.zeros_like(p)
        for a in range(n_actions):
            np.add.at(q, nxt[:, a], p / n_actions)
        p = q
        total += p[g]
    return float(total)
