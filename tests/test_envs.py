import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from imitlib.envs import (
    DARKROOM_ID,
    DarkRoom,
    goal_cell,
    optimal_return,
    random_policy_return,
    start_cell,
    transition_table,
)

STAY, UP, DOWN, LEFT, RIGHT = range(5)


def test_registered_and_passes_gymnasium_checker():
    env = gym.make(DARKROOM_ID, goal=(0, 0))
    assert env.observation_space.n == 81 and env.action_space.n == 5
    check_env(env.unwrapped, skip_render_check=True)


def test_dynamics_walls_and_reward():
    env = DarkRoom(goal=(2, 4))
    cell, info = env.reset(seed=1)
    assert cell == start_cell() == 40 and info["position"] == (4, 4)
    cell, r, *_ = env.step(UP)
    assert cell == 31 and r == 0.0
    cell, r, *_ = env.step(UP)
    assert cell == 22 and r == 1.0
    cell, r, *_ = env.step(STAY)
    assert cell == 22 and r == 1.0, "reward on every step spent on the goal"
    for _ in range(5):
        cell, *_ = env.step(UP)
    assert cell == 4, "the top wall stops the agent"
    assert transition_table()[0, LEFT] == 0 and transition_table()[80, RIGHT] == 80


def test_episode_is_20_steps_truncated_not_terminated():
    env = DarkRoom(goal=0)
    env.reset()
    flags = [env.step(STAY)[2:4] for _ in range(20)]
    assert all(not term for term, _ in flags)
    assert [trunc for _, trunc in flags] == [False] * 19 + [True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(STAY)


def test_optimal_return_is_achieved_by_walking_straight():
    for goal in [(0, 0), (4, 4), (4, 5), (8, 8), (1, 7)]:
        env = DarkRoom(goal=goal)
        env.reset()
        dr, dc = goal[0] - 4, goal[1] - 4
        plan = [DOWN if dr > 0 else UP] * abs(dr) + [RIGHT if dc > 0 else LEFT] * abs(dc)
        plan += [STAY] * (20 - len(plan))
        assert sum(env.step(a)[1] for a in plan) == optimal_return(goal)
    assert optimal_return((4, 4)) == 20 and optimal_return((0, 0)) == 13


def test_random_return_matches_simulation():
    rng = np.random.default_rng(0)
    env = DarkRoom(goal=(3, 4))
    total = 0.0
    for _ in range(4000):
        env.reset()
        total += sum(env.step(int(rng.integers(5)))[1] for _ in range(20))
    assert abs(total / 4000 - random_policy_return((3, 4))) < 0.1


def test_goal_from_seed_is_deterministic_and_options_move_it():
    a, b = DarkRoom(), DarkRoom()
    assert a.reset(seed=7)[1]["goal"] == b.reset(seed=7)[1]["goal"]
    goals = {DarkRoom().reset(seed=s)[1]["goal"] for s in range(30)}
    assert len(goals) > 10
    assert a.reset(options={"goal": (0, 1)})[1]["goal"] == 1


@pytest.mark.parametrize("goal", [(9, 0), (-1, 3), 81, -2])
def test_goal_outside_grid_is_refused(goal):
    with pytest.raises(ValueError, match="outside the 9x9 grid"):
        DarkRoom(goal=goal)


def test_bad_goal_type_and_action_are_refused():
    with pytest.raises(TypeError, match="cell index or a \\(row, col\\)"):
        goal_cell("top-left")
    env = DarkRoom(goal=0)
    env.reset()
    for bad in (5, -1, 1.5, "up"):
        with pytest.raises(ValueError, match=r"actions are 0\.\.4"):
            env.step(bad)


def test_step_before_reset_is_refused():
    with pytest.raises(RuntimeError, match="reset"):
        DarkRoom().step(0)


def test_render_ansi():
    env = DarkRoom(goal=(0, 0), render_mode="ansi")
    env.reset()
    picture = env.render()
    assert picture.splitlines()[0][0] == "G" and picture.splitlines()[4][4] == "A"
