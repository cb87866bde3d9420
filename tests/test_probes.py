import numpy as np
import pytest

from imitlib.probes import fit_probe


def synthetic(n, signal, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, 2))
    x = signal * y @ rng.normal(size=(2, 32)) + rng.normal(size=(n, 32))
    return x, y


def test_a_linearly_encoded_target_beats_the_shuffled_control():
    x, y = synthetic(600, signal=1.0, seed=0)
    out = fit_probe(x[:400], y[:400], x[400:], y[400:])
    assert out["r2"] > 0.8 and out["r2_shuffled"] < 0.1


def test_noise_features_do_not_beat_the_control():
    x, y = synthetic(600, signal=0.0, seed=1)
    out = fit_probe(x[:400], y[:400], x[400:], y[400:])
    assert out["r2"] < 0.05 and out["r2"] - out["r2_shuffled"] < 0.05


def test_mismatched_lengths_are_refused():
    x, y = synthetic(10, 1.0, 0)
    with pytest.raises(ValueError, match="differ in length"):
        fit_probe(x, y[:5], x, y)
