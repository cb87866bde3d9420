"""Minari export: tested where the optional ``minari[hdf5]`` extra is installed."""

import numpy as np
import pytest

from imitlib.history import Episode, HistoryWriter

minari = pytest.importorskip("minari")
pytest.importorskip("h5py")


def _history(path, obs_kind="minatar", obs_shape=(10, 10, 10), n=3):
    """A few short episodes of random packed frames (MinAtar) or cells (Dark Room)."""
    rng = np.random.default_rng(0)
    width = 125 if obs_kind == "minatar" else 1
    with HistoryWriter(path, obs_kind=obs_kind, obs_shape=obs_shape, n_actions=6) as w:
        w.set_run(0, game="MinAtar/Breakout-v0", seed=0)
        for i in range(n):
            t = 4 + i
            w.add(Episode(run=0, episode=10 * i, obs=rng.integers(0, 256, (t, width), dtype=np.uint8),
                          action=rng.integers(0, 6, t), reward=rng.integers(0, 2, t).astype(np.float32),
                          terminated=np.arange(t) == t - 1, truncated=np.zeros(t, bool),
                          update=np.arange(t) + 100 * i, epsilon=np.full(t, 0.1, np.float32)))
    return path


@pytest.mark.parametrize("kind, shape", [("minatar", (10, 10, 10)), ("darkroom", (1,))])
def test_a_history_round_trips_through_minari(tmp_path, monkeypatch, kind, shape):
    from imitlib.export import decoded, to_minari
    from imitlib.history import HistoryReader

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    reader = HistoryReader(_history(tmp_path / "h", kind, shape))
    to_minari(tmp_path / "h", f"imitlib/test-{kind}-v0")
    dataset = minari.load_dataset(f"imitlib/test-{kind}-v0")
    assert dataset.total_episodes == reader.n_episodes and dataset.total_steps == reader.n_steps
    for i, got in enumerate(dataset.iterate_episodes()):
        ep = reader.episode(i)
        np.testing.assert_array_equal(got.actions, ep["action"])
        np.testing.assert_array_equal(got.rewards, ep["reward"])
        np.testing.assert_array_equal(got.terminations, ep["terminated"])
        np.testing.assert_array_equal(got.truncations, ep["truncated"])
        np.testing.assert_array_equal(got.observations[:-1], decoded(reader, ep["obs"]))
        assert not got.observations[-1].any(), "the unrecorded final observation is a zero placeholder"
        np.testing.assert_array_equal(got.infos["update"], ep["update"])
    assert "placeholder" in dataset.storage.metadata["description"]


def test_the_cli_exports_and_says_how_to_load_it(tmp_path, monkeypatch, capsys):
    from imitlib.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    _history(tmp_path / "h")
    assert main(["export", "--minari", "imitlib/cli-v0", "--history", str(tmp_path / "h")]) == 0
    assert "minari.load_dataset('imitlib/cli-v0')" in capsys.readouterr().out
    assert minari.load_dataset("imitlib/cli-v0").total_episodes == 3
