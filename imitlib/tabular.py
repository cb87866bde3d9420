"""Tabular epsilon-greedy Q-learning on Dark Room: the smallest learner whose weights visibly change.

Two implementations of one algorithm:

* :func:`q_learning` runs a whole batch of independent learners (many goals x many seeds) with one
  numpy operation per time step for all of them. This is what the book uses.
* :func:`q_learning_loop` is the textbook loop, one gymnasium environment and one Python step at a time.
  It exists as the reference the batched version is tested against.

Both give bit-identical results for the same seeds because every run owns its random stream
(``numpy.random.default_rng(seed)``) and draws from it in the same pattern: two uniforms per step,
``u0`` (explore or not) and ``u1``, which picks the random action when exploring, ``floor(5 * u1)``, and
otherwise breaks ties among the greedy actions, ``floor(k * u1)``-th of the ``k`` best. A run's results
therefore do not depend on which other runs share its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from imitlib.envs.darkroom import ACTIONS, HORIZON, SIZE, DarkRoom, goal_cell, start_cell, transition_table

N_ACTIONS = len(ACTIONS)
ACTION_INDEX = np.arange(N_ACTIONS)[:, None]  # column of action ids, for row-wise selects
UNIFORMS_PER_STEP = 2


@dataclass(frozen=True)
class QLearningConfig:
    """Hyper-parameters of one Q-learner (all runs of a batch share them)."""

    alpha: float = 0.5  # step size of the TD update
    gamma: float = 0.9  # discount; the time limit is a truncation, so targets bootstrap through it
    eps_start: float = 1.0  # exploration rate in the first episode ...
    eps_end: float = 0.05  # ... decaying linearly to this ...
    eps_decay_episodes: int = 100  # ... over this many episodes
    q_init: float = 0.0  # initial value of every entry; > 0 is "optimism in the face of uncertainty"
    size: int = SIZE
    horizon: int = HORIZON

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.alpha <= 1:
            problems.append(f"alpha={self.alpha} must be in (0, 1]")
        if not 0 <= self.gamma < 1:
            problems.append(f"gamma={self.gamma} must be in [0, 1)")
        for name in ("eps_start", "eps_end"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1]")
        if self.eps_decay_episodes < 0:
            problems.append(f"eps_decay_episodes={self.eps_decay_episodes} must be >= 0")
        if problems:
            raise ValueError("invalid QLearningConfig: " + "; ".join(problems))

    def epsilon(self, episode: int) -> float:
        """Exploration rate in ``episode`` (0-based): linear decay, then constant."""
        if self.eps_decay_episodes == 0:
            return self.eps_end
        frac = min(1.0, episode / self.eps_decay_episodes)
        return self.eps_start + frac * (self.eps_end - self.eps_start)


@dataclass
class EpisodeBatch:
    """What every run did in one episode: the hook a history recorder attaches to. The arrays are new every
    episode (a hook may keep them); they are ``(B, H)`` views of time-major arrays, so they need not be contiguous,
    and narrow (a recorder copies them to disk as they are)."""

    episode: int
    epsilon: float
    goals: np.ndarray  # (B,) goal cell of each run in this episode
    observations: np.ndarray  # (B, H) cell before each action: uint8 (rooms of up to 256 cells), else int32
    actions: np.ndarray  # (B, H) uint8
    rewards: np.ndarray  # (B, H) uint8, 0 or 1: Dark Room's reward is "the step reached the goal"


@dataclass
class QLearningResult:
    """Per-episode traces of a batch of Q-learners, plus their tables."""

    returns: np.ndarray  # (E, B) return of the behaviour (epsilon-greedy) policy
    update_size: np.ndarray  # (E, B) sum over the episode of |change| of the Q-table entries
    epsilons: np.ndarray  # (E,)
    goals: np.ndarray  # (E, B)
    q: np.ndarray  # (B, S, A) final tables
    greedy_returns: np.ndarray | None = None  # (E, B) greedy return *after* each episode
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)  # episodes done -> (B, S, A)


def goal_schedule(goals: np.ndarray | Sequence[int], episodes: int, size: int) -> np.ndarray:
    """Broadcast goals given per run (B,) or per episode and run (E, B) to (E, B) cell indices."""
    g = np.asarray(goals)
    if g.ndim == 1:
        g = np.broadcast_to(g, (episodes, g.shape[0]))
    if g.ndim != 2 or g.shape[0] != episodes:
        raise ValueError(
            f"goals must have shape (runs,) or (episodes={episodes}, runs), got {np.asarray(goals).shape}"
        )
    if not np.issubdtype(g.dtype, np.integer):
        raise TypeError(f"goals must be integer cell indices, got dtype {g.dtype}")
    if g.min() < 0 or g.max() >= size * size:
        raise ValueError(f"goal cells must lie in 0..{size * size - 1} for a {size}x{size} room")
    return np.ascontiguousarray(g, dtype=np.int64)


def _plan_and_streams(
    goals: np.ndarray | Sequence[int], seeds: np.ndarray | Sequence[int], episodes: int, size: int
) -> tuple[np.ndarray, list[np.random.Generator]]:
    """Validate a batch's goals against its seeds: (E, B) goal plan and one random stream per run."""
    runs = len(seeds)
    plan = goal_schedule(goals, episodes, size)
    if plan.shape[1] != runs:
        raise ValueError(f"got goals for {plan.shape[1]} runs but {runs} seeds: need one seed per run")
    return plan, _rngs(seeds, runs)


def _rngs(seeds: np.ndarray | Sequence[int] | Sequence[Sequence[int]], runs: int) -> list[np.random.Generator]:
    """One independent stream per run, from an int seed or a tuple of ints (e.g. (seed, goal))."""
    s = np.asarray(seeds)
    if s.shape[0] != runs:
        raise ValueError(f"need one seed per run: got {s.shape[0]} seeds for {runs} runs")
    return [np.random.default_rng(np.atleast_1d(x).astype(np.uint64).tolist()) for x in s]


def greedy_returns(q: np.ndarray, goals: np.ndarray, size: int = SIZE, horizon: int = HORIZON) -> np.ndarray:
    """Return of each run's greedy policy (ties -> lowest action index): what its table *knows*."""
    runs = q.shape[0]
    return _greedy_returns(q.reshape(runs * size * size, -1).T, goals, runs, size, horizon)


def _greedy_returns(q: np.ndarray, goals: np.ndarray, runs: int, size: int, horizon: int) -> np.ndarray:
    """:func:`greedy_returns` on the action-major layout ``(A, runs * cells)`` the batched learner keeps."""
    nxt = transition_table(size)
    base = np.arange(runs) * size * size
    cell = np.full(runs, start_cell(size))
    total = np.zeros(runs)
    for _ in range(horizon):
        cell = nxt[cell, q[:, base + cell].argmax(0)]
        total += cell == goals
    return total


def greedy_rollouts(q: np.ndarray, goals: np.ndarray, size: int = SIZE,
                    horizon: int = HORIZON) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One episode of each table's greedy policy (ties -> lowest action): cells ``(B, H + 1)``, actions and
    rewards ``(B, H)``."""
    runs = q.shape[0]
    nxt = transition_table(size)
    cells = np.zeros((runs, horizon + 1), np.int64)
    actions = np.zeros((runs, horizon), np.int64)
    cells[:, 0] = start_cell(size)
    for t in range(horizon):
        actions[:, t] = q[np.arange(runs), cells[:, t]].argmax(1)
        cells[:, t + 1] = nxt[cells[:, t], actions[:, t]]
    return cells, actions, (cells[:, 1:] == np.asarray(goals)[:, None]).astype(np.float64)


def _fill_uniforms(rngs: list[np.random.Generator], out: np.ndarray) -> np.ndarray:
    """Every run's uniforms for the next ``len(out)`` steps, written into ``out`` of shape ``(steps, 2, runs)``.

    A generator fills a large request with the same numbers as consecutive small ones, so drawing several
    episodes per call gives each run exactly the stream the per-episode loop sees, with fewer Python calls.
    Refilling one array, rather than allocating a new one of several MB per call, keeps the memory allocator
    from handing out fresh pages (each a page fault) every few episodes.
    """
    for run, rng in enumerate(rngs):
        out[:, :, run] = rng.random(out.shape[:2])
    return out


def q_learning(
    cfg: QLearningConfig,
    goals: np.ndarray | Sequence[int],
    seeds: np.ndarray | Sequence[int],
    episodes: int,
    *,
    snapshot_at: Sequence[int] = (),
    evaluate_greedy: bool = False,
    on_episode: Callable[[EpisodeBatch], None] | None = None,
    progress: bool = False,
) -> QLearningResult:
    """Run ``len(seeds)`` independent Q-learners in lockstep, one array operation per step for all.

    The tables are kept action-major, ``q[a, run * cells + cell]``, so the max and argmax over actions are
    element-wise operations on five contiguous vectors rather than a reduction along a short axis.
    """
    size, horizon = cfg.size, cfg.horizon
    runs = len(seeds)
    goal_plan, rngs = _plan_and_streams(goals, seeds, episodes, size)
    bad = [e for e in snapshot_at if not 0 <= e <= episodes]
    if bad:
        raise ValueError(f"snapshot_at={bad} outside 0..{episodes} (episodes completed)")
    nxt = transition_table(size)
    n_cells = size * size
    q = np.full((N_ACTIONS, runs * n_cells), cfg.q_init, dtype=np.float64)
    base = np.arange(runs) * n_cells

    def tables() -> np.ndarray:  # (runs, cells, actions), the layout everything outside this function uses
        return q.reshape(N_ACTIONS, runs, n_cells).transpose(1, 2, 0).copy()

    returns = np.zeros((episodes, runs))
    update = np.zeros((episodes, runs))
    greedy = np.zeros((episodes, runs)) if evaluate_greedy else None
    eps_trace = np.array([cfg.epsilon(e) for e in range(episodes)])
    snapshots = {0: tables()} if 0 in snapshot_at else {}
    record = on_episode is not None
    cell_dtype = np.uint8 if n_cells <= 256 else np.int32  # what a hook receives: the cells fit a byte in Dark Room
    block = max(1, min(32, 2_000_000 // (runs * horizon * UNIFORMS_PER_STEP)))  # episodes of uniforms per draw
    uniforms = np.empty((block * horizon, UNIFORMS_PER_STEP, runs))

    episode_iter = range(episodes)
    if progress:
        from tqdm.auto import tqdm

        episode_iter = tqdm(episode_iter, desc=f"Q-learning x{runs}", unit="ep")
    for e in episode_iter:
        if e % block == 0:
            _fill_uniforms(rngs, uniforms[:min(block, episodes - e) * horizon])
        u = uniforms[(e % block) * horizon:(e % block + 1) * horizon]  # (H, 2, runs)
        eps, goal = eps_trace[e], goal_plan[e]
        cell = np.full(runs, start_cell(size))
        ret, moved = returns[e], update[e]
        if record:  # every step's arrays are fresh, so keeping references is cheap; stacked once below
            cells, acts = [cell], []
        for t in range(horizon):
            row = base + cell
            qs = np.take(q, row, axis=1)  # (A, runs)
            best = qs == qs.max(0)  # ties -> several True per column
            pick = (u[t, 1] * best.sum(0)).astype(np.int64)  # which of the k best: floor(k * u1)
            chosen = best & (best.cumsum(0) == pick + 1)
            greedy_action = (chosen * ACTION_INDEX).sum(0)
            random_action = (u[t, 1] * N_ACTIONS).astype(np.int64)
            action = np.where(u[t, 0] < eps, random_action, greedy_action)
            nxt_cell = nxt[cell, action]
            reward = (nxt_cell == goal).astype(np.float64)
            target = reward + cfg.gamma * np.take(q, base + nxt_cell, axis=1).max(0)
            old = q[action, row]
            delta = cfg.alpha * (target - old)
            q[action, row] = old + delta
            if record:
                cells.append(nxt_cell)
                acts.append(action)
            moved += np.abs(delta)
            ret += reward
            cell = nxt_cell
        if greedy is not None:
            greedy[e] = _greedy_returns(q, goal, runs, size, horizon)
        if e + 1 in snapshot_at:
            snapshots[e + 1] = tables()
        if record:  # time-major (H + 1, B) and (H, B), in a byte where the values fit
            cells = np.concatenate(cells, dtype=cell_dtype, casting="unsafe").reshape(horizon + 1, runs)
            acts = np.concatenate(acts, dtype=np.uint8, casting="unsafe").reshape(horizon, runs)
            hits = cells[1:] == goal.astype(cell_dtype)  # exactly the rewards the learner got
            on_episode(EpisodeBatch(e, float(eps), goal.copy(), cells[:-1].T, acts.T, hits.view(np.uint8).T))
    return QLearningResult(
        returns=returns,
        update_size=update,
        epsilons=eps_trace,
        goals=goal_plan.copy(),
        q=tables(),
        greedy_returns=greedy,
        snapshots=snapshots,
    )


def q_learning_loop(
    cfg: QLearningConfig,
    goals: np.ndarray | Sequence[int],
    seeds: np.ndarray | Sequence[int],
    episodes: int,
) -> QLearningResult:
    """The same algorithm as :func:`q_learning`, written as the plain per-environment loop."""
    runs = len(seeds)
    goal_plan, rngs = _plan_and_streams(goals, seeds, episodes, cfg.size)
    n_cells = cfg.size * cfg.size
    tables = np.full((runs, n_cells, N_ACTIONS), cfg.q_init, dtype=np.float64)
    returns = np.zeros((episodes, runs))
    update = np.zeros((episodes, runs))
    for b in range(runs):
        q, rng = tables[b], rngs[b]
        env = DarkRoom(goal=int(goal_plan[0, b]), size=cfg.size, horizon=cfg.horizon)
        for e in range(episodes):
            eps = cfg.epsilon(e)
            u = rng.random((cfg.horizon, UNIFORMS_PER_STEP))
            cell, _ = env.reset(options={"goal": goal_cell(int(goal_plan[e, b]), cfg.size)})
            done, t = False, 0
            while not done:
                if u[t, 0] < eps:
                    action = int(u[t, 1] * N_ACTIONS)
                else:
                    values = q[cell].tolist()
                    top = max(values)
                    best = [a for a, v in enumerate(values) if v == top]
                    action = best[int(u[t, 1] * len(best))]
                nxt_cell, reward, terminated, truncated, _ = env.step(action)
                delta = cfg.alpha * (reward + cfg.gamma * q[nxt_cell].max() - q[cell, action])
                q[cell, action] += delta
                update[e, b] += abs(delta)
                returns[e, b] += reward
                cell, done, t = nxt_cell, terminated or truncated, t + 1
    eps_trace = np.array([cfg.epsilon(e) for e in range(episodes)])
    return QLearningResult(returns=returns, update_size=update, epsilons=eps_trace, goals=goal_plan.copy(), q=tables)
