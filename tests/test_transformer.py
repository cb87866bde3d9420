import pytest
import torch

from imitlib.transformer import KVCache, Student, TransformerConfig, first_steps, step_inputs


def inputs(cfg, b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, cfg.n_cells, (b, t, 1), generator=g, dtype=torch.uint8)
    return obs, torch.randint(0, cfg.n_actions + 1, (b, t), generator=g), torch.rand(b, t, generator=g)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Student(TransformerConfig(block_size=24, n_layer=2, n_embd=32)).eval()


def test_outputs_at_t_do_not_depend_on_later_inputs(model):
    obs, pa, pr = inputs(model.cfg, 2, 24)
    before = model(obs, pa, pr)
    obs[:, 10:] = (obs[:, 10:] + 1) % 81
    pa[:, 10:] = (pa[:, 10:] + 1) % 6
    pr[:, 10:] += 1
    after = model(obs, pa, pr)
    torch.testing.assert_close(after[:, :10], before[:, :10])
    assert not torch.allclose(after[:, 10:], before[:, 10:]), "later outputs do see the change"


def test_kv_cache_logits_equal_full_forward(model):
    obs, pa, pr = inputs(model.cfg, 3, 24)
    full = model(obs, pa, pr)
    cache = KVCache(model.cfg, 3)
    parts = [model(obs[:, :7], pa[:, :7], pr[:, :7], cache=cache)]
    parts += [model(obs[:, t:t + 1], pa[:, t:t + 1], pr[:, t:t + 1], cache=cache) for t in range(7, 20)]
    parts.append(model(obs[:, 20:], pa[:, 20:], pr[:, 20:], cache=cache))  # several new tokens after a prefix
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 24


def test_shape_errors_say_what_to_fix(model):
    obs, pa, pr = inputs(model.cfg, 2, 24)
    with pytest.raises(ValueError, match="trailing byte dimension"):
        model(obs[..., 0], pa, pr)
    with pytest.raises(ValueError, match="both be \\(batch, time\\)"):
        model(obs, pa, pr[:, :5])
    long = inputs(model.cfg, 1, 25)
    with pytest.raises(ValueError, match="exceed block_size 24"):
        model(*long)
    with pytest.raises(ValueError, match="obs_kind must be one of"):
        TransformerConfig(obs_kind="pixels")


def test_previous_action_and_reward_reset_at_episode_starts():
    action = torch.tensor([[1, 2, 3, 4]])
    reward = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    first = first_steps(torch.tensor([[False, True, False, False]]), torch.zeros(1, 4, dtype=torch.bool))
    assert first.tolist() == [[True, False, True, False]]
    pa, pr = step_inputs(action, reward, first, n_actions=5)
    assert pa.tolist() == [[5, 1, 5, 3]] and pr.tolist() == [[0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("kind,shape,n_bytes", [("minatar", (10, 10, 4), 50), ("ale", (84, 84), 84 * 84)])
def test_game_encoders_read_stored_bytes(kind, shape, n_bytes):
    torch.manual_seed(0)
    model = Student(TransformerConfig(obs_kind=kind, obs_shape=shape, n_actions=6, block_size=4, n_layer=1))
    obs = torch.randint(0, 256, (2, 4, n_bytes), dtype=torch.uint8)
    out = model(obs, torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
    assert out.shape == (2, 4, 6) and torch.isfinite(out).all()


def test_minatar_encoder_unpacks_bits_like_numpy():
    import numpy as np

    from imitlib.transformer import MinAtarEncoder

    frames = np.random.default_rng(0).random((3, 10, 10, 4)) < 0.3
    packed = torch.from_numpy(np.packbits(frames.reshape(3, -1), axis=-1))
    seen = []
    enc = MinAtarEncoder((10, 10, 4), lambda x: seen.append(x) or x)
    enc(packed)
    np.testing.assert_array_equal(seen[0].permute(0, 2, 3, 1).numpy(), frames.astype(np.float32))


def test_cpu_attention_dropout_path_is_causal():
    torch.manual_seed(0)
    model = Student(TransformerConfig(block_size=12, n_layer=1, n_embd=16, dropout=0.0, attn_dropout=0.5)).train()
    obs, pa, pr = inputs(model.cfg, 2, 12)
    torch.manual_seed(1)
    before = model(obs, pa, pr)
    pa[:, 6:] = (pa[:, 6:] + 1) % 6
    torch.manual_seed(1)
    after = model(obs, pa, pr)
    torch.testing.assert_close(after[:, :6], before[:, :6])
