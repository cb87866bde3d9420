from dataclasses import replace

import numpy as np
import pytest
import torch

from imitlib.dqn import (
    CheckpointMismatchError,
    DQNConfig,
    Hooks,
    ReplayBuffer,
    StackedNet,
    load_q_network,
    make_network,
    nature_cnn,
    train,
)
from imitlib.envs import game_spec, make_vec_env
from imitlib.envs.observations import network_input

TINY = DQNConfig(steps=600, segment_steps=200, learning_starts=100, buffer_size=1000, batch_size=8,
                 train_every=2, target_every=50, eps_decay_steps=300, eval_episodes=2)


def weights(run):
    return {k: v.detach().clone() for k, v in run.q.online.state_dict().items()}


def test_stacked_net_equals_separate_networks():
    spec = game_spec("MinAtar/Breakout-v0")
    stacked = StackedNet(lambda: make_network(TINY, spec), [3, 4])
    x = torch.rand(2, 5, spec.in_channels, 10, 10)
    out = stacked(x)
    for s, seed in enumerate([3, 4]):
        torch.manual_seed(seed)
        torch.testing.assert_close(make_network(TINY, spec)(x[s]), out[s])
        torch.testing.assert_close(stacked.single(s)(x[s]), out[s])
    nature = StackedNet(lambda: nature_cnn(4, 18), [1, 2])
    frames = torch.rand(2, 3, 4, 84, 84)
    torch.manual_seed(2)
    torch.testing.assert_close(nature_cnn(4, 18)(frames[1]), nature(frames)[1], atol=1e-5, rtol=1e-4)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full = train(TINY, [0, 1], run_dir=tmp_path / "a", progress=False)
    first = train(TINY, [0, 1], run_dir=tmp_path / "b", progress=False, stop_after_segments=1)
    assert first.state.env_steps == 200
    resumed = train(TINY, [0, 1], run_dir=tmp_path / "b", progress=False)
    assert resumed.state.env_steps == full.state.env_steps == 600
    for k, v in weights(full).items():
        torch.testing.assert_close(weights(resumed)[k], v, rtol=0, atol=0)
    assert resumed.state.episodes == full.state.episodes
    assert resumed.state.evals == full.state.evals


def test_same_seed_same_run_different_seed_different_run():
    a, b = train(TINY, [5], progress=False), train(TINY, [5], progress=False)
    c = train(TINY, [6], progress=False)
    assert a.state.episodes == b.state.episodes and a.state.episodes != c.state.episodes


def test_mismatched_checkpoint_is_refused(tmp_path):
    train(TINY, [0], run_dir=tmp_path, progress=False, stop_after_segments=1)
    other_game = DQNConfig(**{**TINY.__dict__, "env_id": "MinAtar/SpaceInvaders-v0"})
    with pytest.raises(CheckpointMismatchError, match="env_id: 'MinAtar/Breakout-v0' vs 'MinAtar/SpaceInvaders-v0'"):
        train(other_game, [0], run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointMismatchError, match="seeds"):
        train(TINY, [1], run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointMismatchError, match="6 actions"):
        load_q_network(tmp_path / "checkpoint.pt", game_spec("ALE/Breakout-v5"))
    net = load_q_network(tmp_path / "checkpoint.pt", game_spec("MinAtar/Breakout-v0"))
    assert net(torch.zeros(1, 10, 10, 10)).shape == (1, 6)


def test_a_breakout_network_reads_space_invaders(tmp_path):
    """The shared 10-channel space: a Breakout teacher loads for Space Invaders and acts on its frames."""
    train(TINY, [0], run_dir=tmp_path, progress=False, stop_after_segments=1)
    invaders = game_spec("MinAtar/SpaceInvaders-v0")
    net = load_q_network(tmp_path / "checkpoint.pt", invaders)
    obs, _ = make_vec_env(invaders.env_id, 3).reset(seed=[0, 1, 2])
    assert net(network_input(invaders, torch.as_tensor(obs))).shape == (3, 6)
    with pytest.raises(CheckpointMismatchError, match="channels so the shapes match"):
        load_q_network(tmp_path / "checkpoint.pt", game_spec(invaders.env_id, channels=6))


def test_transplanting_copies_every_weight_into_the_new_game(tmp_path):
    """A Breakout network moved into Space Invaders: before the first update every weight (online and target) is
    the transplanted one; the run then learns from there, and an incomplete state dict is refused."""
    breakout = weights(train(TINY, [0, 1], progress=False))
    invaders = DQNConfig(**{**TINY.__dict__, "env_id": "MinAtar/SpaceInvaders-v0"})
    before = train(replace(invaders, steps=200, segment_steps=200, learning_starts=400), [0, 1], init=breakout,
                   progress=False)
    assert before.state.updates == 0
    for k, v in breakout.items():
        torch.testing.assert_close(before.q.online.state_dict()[k], v, rtol=0, atol=0)
        torch.testing.assert_close(before.q.target.state_dict()[k], v, rtol=0, atol=0)
    fresh = weights(train(replace(invaders, steps=200, segment_steps=200, learning_starts=400), [0, 1],
                          progress=False))
    assert any(not torch.equal(fresh[k], v) for k, v in breakout.items())
    after = weights(train(invaders, [0, 1], init=breakout, progress=False))
    assert any(not torch.equal(after[k], v) for k, v in breakout.items())
    with pytest.raises(RuntimeError, match="Missing key"):
        train(invaders, [0, 1], init={k: v for k, v in breakout.items() if k != "biases.0"}, progress=False)


def test_damaged_checkpoint_is_refused(tmp_path):
    train(TINY, [0], run_dir=tmp_path, progress=False, stop_after_segments=1)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointMismatchError, match="unreadable checkpoint"):
        train(TINY, [0], run_dir=tmp_path, progress=False)


def test_hooks_see_every_step_episode_and_update():
    seen = {"steps": 0, "episodes": 0, "updates": 0}
    hooks = Hooks(on_step=lambda s: seen.__setitem__("steps", seen["steps"] + 1),
                  on_episode=lambda e: seen.__setitem__("episodes", seen["episodes"] + 1),
                  on_update=lambda u: seen.__setitem__("updates", seen["updates"] + 1))
    run = train(TINY, [0], hooks=hooks, progress=False)
    assert seen["steps"] == 600 and seen["updates"] == run.state.updates > 0
    assert seen["episodes"] == len(run.state.episodes[0]) > 0


def test_replay_rebuilds_ale_stacks_with_zeros_before_an_episode_start():
    spec = game_spec("ALE/Breakout-v5", full_action_space=True)
    buf = ReplayBuffer(spec, n_seeds=1, num_envs=1, capacity=16)
    for t in range(8):  # frame t is filled with value t; an episode starts at t = 0 and t = 5
        obs = np.zeros((1, 1, 4, 84, 84), np.uint8)
        obs[0, 0, -1] = t
        buf.add(obs, np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1), bool), np.array([[t in (0, 5)]]),
                np.ones((1, 1), bool))
    stack = buf._stacks(0, np.array([0, 0]), np.array([6, 4]))
    assert [int(f[0, 0]) for f in stack[0]] == [0, 0, 5, 6], "frames before the start at t=5 are zeros"
    assert [int(f[0, 0]) for f in stack[1]] == [1, 2, 3, 4]
    assert buf.frames.shape[-1] == 84 * 84, "each frame stored once"


def test_minatar_frames_are_bit_packed_and_round_trip():
    spec = game_spec("MinAtar/Breakout-v0")
    buf = ReplayBuffer(spec, n_seeds=2, num_envs=1, capacity=8)
    rng = np.random.default_rng(0)
    frames = rng.random((3, 2, 1, *spec.frame_shape)) > 0.7  # (10, 10, 10): 1,000 bits
    for f in frames:
        buf.add(f, np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1), bool), np.zeros((2, 1), bool),
                np.ones((2, 1), bool))
    assert buf.frames.shape[-1] == 125
    np.testing.assert_array_equal(buf._stacks(1, np.array([0]), np.array([1]))[0], frames[1, 1, 0])
    batch = buf.sample(4, [np.random.default_rng(1), np.random.default_rng(2)])
    assert batch["obs"].shape == (2, 4, 10, 10, 10) and batch["next_obs"].dtype == bool


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="network"):
        DQNConfig(network="resnet")
    with pytest.raises(ValueError, match="multiples of num_envs"):
        DQNConfig(num_envs=3, segment_steps=1000)


def test_ale_breakout_trains_end_to_end_with_the_nature_network(tmp_path):
    cfg = DQNConfig(env_id="ALE/Breakout-v5", network="nature", full_action_space=True, num_envs=2, steps=192,
                    segment_steps=96, learning_starts=64, buffer_size=256, batch_size=4, train_every=2,
                    target_every=64, eps_decay_steps=100, eval_episodes=1, eval_epsilon=1.0)
    run = train(cfg, [0], run_dir=tmp_path, progress=False)
    assert run.state.env_steps == 192 and run.state.updates > 0
    net = load_q_network(tmp_path / "checkpoint.pt", game_spec("ALE/Breakout-v5", full_action_space=True))
    assert net(torch.zeros(1, 4, 84, 84)).shape == (1, 18)


@pytest.mark.parametrize("cfg", [TINY, replace(TINY, num_envs=2, double_dqn=True, loss="mse")],
                         ids=["default", "two-envs-double-mse"])
def test_the_stacked_run_of_one_seed_equals_the_plain_reference_loop(cfg):
    """The oracle: one seed through the stacked network, optimiser and vectorised loop ends with the weights (and
    the episodes) of the textbook one-network loop."""
    from imitlib.dqn_reference import train_reference

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order: with two threads the last-bit differences grow ~10x in 250 updates
    try:
        stacked = train(cfg, [7], progress=False)
        net, episodes = train_reference(cfg, 7)
    finally:
        torch.set_num_threads(threads)
    plain = {k: v for k, v in net.state_dict().items()}
    single = stacked.q.online.single(0).state_dict()
    assert stacked.state.updates > 100, "enough updates for any difference to show"
    for k, v in plain.items():  # a batched matmul and a grouped conv sum in another order: last-bit rounding
        torch.testing.assert_close(single[k], v, rtol=1e-4, atol=1e-5)
    assert episodes == stacked.state.episodes[0]
    torch.manual_seed(7)
    start = make_network(cfg, stacked.spec).state_dict()  # the weights both began from
    moved = max((single[k] - start[k]).abs().max() for k in plain)
    assert moved > 1e-3, "the weights moved far more than the tolerance: the comparison can fail"
