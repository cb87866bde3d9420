import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from imitlib.history import Episode, HistoryError, HistoryReader, HistoryWriter, PerEpisode, TabularRecorder
from imitlib.tabular import QLearningConfig, q_learning

FIXTURES = Path(__file__).parent / "fixtures"


def episode(run, index, length=5, value=0):
    steps = np.arange(length)
    return Episode(run=run, episode=index, obs=np.full((length, 2), value, np.uint8), action=steps % 5,
                   reward=(steps == length - 1).astype(np.float32), terminated=np.zeros(length, bool),
                   truncated=steps == length - 1, update=index * 100 + steps, epsilon=np.full(length, 0.5))


def write(path, episodes, **kwargs):
    with HistoryWriter(path, obs_kind="test", obs_shape=(2,), n_actions=5, **kwargs) as w:
        for e in episodes:
            w.add(e)
    return HistoryReader(path, verify=True)


def test_round_trip_is_exact(tmp_path):
    eps = [episode(r, i, length=3 + i, value=10 * r + i) for r in range(3) for i in range(4)]
    reader = write(tmp_path / "h", eps, chunk_steps=7)
    assert reader.n_steps == sum(len(e.action) for e in eps) and reader.n_episodes == 12
    assert len(reader.manifest["chunks"]) > 1, "several chunks were written"
    for i, e in enumerate(sorted(eps, key=lambda e: (e.run, e.episode))):
        got = reader.episode(i)
        for field in ("obs", "action", "reward", "terminated", "truncated", "update"):
            np.testing.assert_array_equal(got[field], getattr(e, field))
        assert set(got["run"]) == {e.run} and set(got["episode"]) == {e.episode}


def test_windows_never_mix_runs_and_are_deterministic(tmp_path):
    eps = [episode(r, i, value=r) for r in range(4) for i in range(6)]
    reader = write(tmp_path / "h", eps, chunk_steps=11)
    windows = list(reader.windows(k=3, n=50, seed=1))
    for w in windows:
        assert len(set(w["run"])) == 1 and len(set(w["obs"][:, 0])) == 1
        ep = w["episode"].reshape(3, -1)[:, 0]
        np.testing.assert_array_equal(np.diff(ep), [1, 1]), "consecutive episodes"
    again = list(reader.windows(k=3, n=50, seed=1))
    assert all(np.array_equal(a["episode"], b["episode"]) and np.array_equal(a["run"], b["run"])
               for a, b in zip(windows, again, strict=True))
    with pytest.raises(IndexError, match="run 0 has 6 recorded episodes"):
        reader.window(0, 4, 3)


def test_chunks_end_on_episode_boundaries_and_fit_blocks_larger_than_a_chunk(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, chunk_steps=8) as w:
        for i in range(3):  # 3 steps each: chunks of 6, never an episode cut in two
            w.add(episode(0, i, length=3, value=i))
        big = {f: np.stack([np.asarray(getattr(episode(1, i, length=6, value=7), f)) for i in range(3)])
               for f in ("obs", "action", "reward", "terminated", "truncated", "update", "epsilon")}
        w.add_block([1, 1, 1], [0, 1, 2], big)  # 18 steps at once, more than a chunk holds
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert [c["steps"] for c in reader.manifest["chunks"]] == [6, 3, 18]
    assert reader.n_episodes == 6 and set(reader.window(1, 0, 3)["obs"][:, 0]) == {7}


def test_histories_checksummed_with_sha256_still_verify(tmp_path):
    import hashlib

    reader = write(tmp_path / "h", [episode(0, i) for i in range(3)])
    manifest = reader.manifest
    for chunk in manifest["chunks"]:
        arrays = {f: np.load(tmp_path / "h" / chunk["name"] / f"{f}.npy") for f in chunk.pop("crc32")}
        chunk["sha256"] = {f: hashlib.sha256(a.tobytes()).hexdigest() for f, a in arrays.items()}
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    assert HistoryReader(tmp_path / "h", verify=True).n_steps == 15
    manifest["chunks"][0]["sha256"]["reward"] = "0" * 64
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HistoryError, match=r"reward\.npy: checksum"):
        HistoryReader(tmp_path / "h", verify=True)


def test_refuses_to_overwrite_unless_told(tmp_path):
    write(tmp_path / "h", [episode(0, 0)])
    with pytest.raises(HistoryError, match=r"mode='append'.*mode='overwrite'"):
        HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5)
    appended = write(tmp_path / "h", [episode(0, 1)], mode="append")
    assert appended.n_episodes == 2
    replaced = write(tmp_path / "h", [episode(5, 0)], mode="overwrite")
    assert replaced.runs() == [5]
    with pytest.raises(HistoryError, match="cannot append"):
        HistoryWriter(tmp_path / "h", obs_kind="other", obs_shape=(2,), n_actions=5, mode="append")


def test_a_killed_recording_keeps_every_chunk_the_manifest_lists(tmp_path):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from imitlib.history import Episode, HistoryWriter
        w = HistoryWriter({str(tmp_path / "h")!r}, obs_kind="test", obs_shape=(2,), n_actions=5, chunk_steps=10)
        for i in range(9):  # 45 steps: four chunks written, one episode still queued
            w.add(Episode(run=0, episode=i, obs=np.zeros((5, 2), np.uint8), action=np.zeros(5), reward=np.zeros(5),
                          terminated=np.zeros(5, bool), truncated=np.zeros(5, bool), update=np.zeros(5),
                          epsilon=np.zeros(5)))
        os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush, no interpreter shutdown
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode != 0
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert reader.n_steps == 40 and len(reader.manifest["chunks"]) == 4
    assert f"{reader.n_steps} steps in {reader.n_steps // 5} episodes" in reader.summary()


def test_damaged_files_are_named(tmp_path):
    reader = write(tmp_path / "h", [episode(0, i) for i in range(3)])
    chunk = tmp_path / "h" / reader.manifest["chunks"][0]["name"]
    data = (chunk / "action.npy").read_bytes()
    (chunk / "action.npy").write_bytes(data[:-4])
    with pytest.raises(HistoryError, match=r"action\.npy: .* bytes, the manifest says"):
        HistoryReader(tmp_path / "h")
    (chunk / "action.npy").write_bytes(data[:-4] + b"\xff\xff\xff\xff")
    with pytest.raises(HistoryError, match=r"action\.npy: checksum"):
        HistoryReader(tmp_path / "h", verify=True)
    (tmp_path / "h" / "manifest.json").write_text("{broken")
    with pytest.raises(HistoryError, match=r"manifest\.json: not valid JSON"):
        HistoryReader(tmp_path / "h")
    with pytest.raises(HistoryError, match="not a history"):
        HistoryReader(tmp_path / "nothing")


def test_size_cap_drops_episodes_and_counts_them(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, max_steps=12) as w:
        kept = [w.add(episode(0, i)) for i in range(4)]
    assert kept == [True, True, False, False] and w.dropped_episodes == 2
    assert HistoryReader(tmp_path / "h").n_steps == 10


def test_tabular_recorder_subsamples_and_matches_the_learner(tmp_path):
    seen = []
    writer = HistoryWriter(tmp_path / "h", obs_kind="darkroom", obs_shape=(1,), n_actions=5, chunk_steps=100)
    recorder = TabularRecorder(writer, run_ids=[10, 11], every=3)
    result = q_learning(QLearningConfig(), [3, 70], [0, 1], 10,
                        on_episode=lambda b: (seen.append(b), recorder(b)))
    writer.close()
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert reader.runs() == [10, 11] and reader.run_episodes(10) == 4  # episodes 0, 3, 6, 9
    ep = reader.window(11, 1, 1)
    assert set(ep["episode"]) == {3}
    np.testing.assert_array_equal(ep["obs"][:, 0], seen[3].observations[1])
    np.testing.assert_array_equal(ep["action"], seen[3].actions[1])
    assert ep["reward"].sum() == result.returns[3, 1]
    assert ep["update"][0] == 60 and ep["truncated"][-1] and not ep["truncated"][:-1].any()
    np.testing.assert_array_equal(ep["update"], 60 + np.arange(20))
    np.testing.assert_array_equal(ep["epsilon"], np.float32(seen[3].epsilon))
    assert json.loads((tmp_path / "h" / "manifest.json").read_text())["obs_kind"] == "darkroom"


def test_step_windows_cross_episodes_but_not_runs(tmp_path):
    reader = write(tmp_path / "h", [episode(r, i, length=4, value=r) for r in range(2) for i in range(3)])
    w = reader.step_window(1, 2, 7)
    assert len(w["action"]) == 7 and set(w["run"]) == {1}
    np.testing.assert_array_equal(w["episode"], [0, 0, 1, 1, 1, 1, 2])
    with pytest.raises(IndexError, match="12 recorded steps"):
        reader.step_window(0, 8, 5)


def test_context_dataset_batches_with_default_collate(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from imitlib.history import context_dataset

    reader = write(tmp_path / "h", [episode(r, i) for r in range(3) for i in range(5)])
    loader = DataLoader(context_dataset(reader, episodes=2, seed=3, length=8), batch_size=4)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["action"].shape == (4, 10) and batches[0]["obs"].dtype == torch.uint8
    again = list(DataLoader(context_dataset(reader, episodes=2, seed=3, length=8), batch_size=4))
    assert all(torch.equal(a["episode"], b["episode"]) for a, b in zip(batches, again, strict=True))
    steps = next(iter(context_dataset(reader, steps=7, seed=0)))
    assert steps["action"].shape == (7,)
    with pytest.raises(ValueError, match="exactly one"):
        context_dataset(reader)


def test_dqn_recorder_writes_the_episodes_the_learner_played(tmp_path):
    from imitlib.dqn import DQNConfig, Hooks, train
    from imitlib.history import DQNRecorder

    cfg = DQNConfig(steps=400, segment_steps=200, learning_starts=100, buffer_size=1000, batch_size=8,
                    train_every=2, target_every=50, eps_decay_steps=300, eval_episodes=1)
    writer = HistoryWriter(tmp_path / "h", obs_kind="minatar", obs_shape=(10, 10, 10), n_actions=6)
    recorder = DQNRecorder(writer, run_ids=[7, 8], every=2)
    run = train(cfg, [0, 1], hooks=Hooks(on_step=recorder.on_step), progress=False)
    writer.close()
    reader = HistoryReader(tmp_path / "h", verify=True)
    finished = run.state.episodes[1]
    recorded = [reader.episode(i) for i in range(reader.n_episodes) if reader.episodes["run"][i] == 8]
    assert {int(e["episode"][0]) for e in recorded} == set(range(0, len(recorded) * 2, 2))
    complete = [e for e in recorded if e["terminated"][-1]]
    assert complete, "some recorded episodes ended by losing the ball"
    ended = {(step, ret) for step, ret, _ in finished}
    assert all(any(ret == float(e["reward"].sum()) for _, ret in ended) for e in complete)
    assert reader.episode(0)["obs"].shape[1] == 125, "bit-packed MinAtar frames (10 x 10 x 10 bits)"


def test_episode_totals_and_per_run(tmp_path):
    from imitlib.history import episode_totals, per_run

    eps = [episode(r, i, length=3 + r) for r in range(2) for i in range(3)]
    reader = write(tmp_path / "h", eps, chunk_steps=8)
    totals = episode_totals(reader, "reward")
    np.testing.assert_array_equal(totals, np.ones(6))
    lengths = episode_totals(reader, "truncated")
    assert lengths.sum() == 6
    runs, table = per_run(reader, episode_totals(reader, "update"))
    assert runs.tolist() == [0, 1] and table.shape == (2, 3)
    assert table[1, 2] == sum(200 + np.arange(4))


def test_shuffled_copy_keeps_every_episode_but_not_their_order(tmp_path):
    from imitlib.history import shuffle_episodes

    eps = [episode(r, i, length=4, value=10 * r + i) for r in range(2) for i in range(8)]
    reader = write(tmp_path / "h", eps)
    mixed = shuffle_episodes(reader, tmp_path / "s", seed=0)
    assert mixed.n_steps == reader.n_steps and mixed.runs() == reader.runs()
    for run in reader.runs():
        before = reader.window(run, 0, 8)["obs"][::4, 0]
        after = mixed.window(run, 0, 8)["obs"][::4, 0]
        assert sorted(after) == sorted(before) and list(after) != list(before)
        assert mixed.task(run) == reader.task(run)


def block(n, length, first_update=0, eps=0.5):
    """``n`` equal-length episodes as per-step arrays ``(n, T)``, with a per-step update and epsilon."""
    steps = np.arange(length)
    truncated = np.zeros((n, length), bool)
    truncated[:, -1] = True
    return {"obs": (np.arange(n * length * 2) % 256).astype(np.uint8).reshape(n, length, 2),
            "action": np.tile(steps % 5, (n, 1)), "reward": np.tile(steps / 10, (n, 1)),
            "terminated": np.zeros((n, length), bool), "truncated": truncated,
            "update": first_update + np.arange(n)[:, None] * 100 + steps, "epsilon": np.full((n, length), eps)}


def test_per_episode_fields_read_back_as_the_per_step_ones(tmp_path):
    from imitlib.history import episode_totals

    steps = block(3, 200, eps=0.25)
    with HistoryWriter(tmp_path / "a", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0, 0, 0], [0, 1, 2], steps)
    with HistoryWriter(tmp_path / "b", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0, 0, 0], [0, 1, 2], {**steps, "update": PerEpisode(first=np.array([0, 100, 200]), step=1),
                                           "epsilon": PerEpisode(first=0.25)})
    a, b = HistoryReader(tmp_path / "a", verify=True), HistoryReader(tmp_path / "b", verify=True)
    for i in range(3):
        ea, eb = a.episode(i), b.episode(i)
        assert ea.keys() == eb.keys()
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key])
            assert ea[key].dtype == eb[key].dtype, key
    for field in ("update", "epsilon", "truncated", "terminated", "reward"):
        np.testing.assert_allclose(episode_totals(a, field), episode_totals(b, field))
    stored = {f.stem for f in (tmp_path / "b").rglob("*.npy")}
    assert {"update", "epsilon", "terminated", "truncated"}.isdisjoint(stored), "stored once per episode"
    size = {p.name: sum(f.stat().st_size for f in (tmp_path / p.name).rglob("*.npy")) for p in (a.path, b.path)}
    assert size["b"] < size["a"]


def test_a_change_of_encoding_starts_a_new_chunk(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0], [0], block(1, 4))
        w.add_block([0], [1], {**block(1, 4, first_update=100), "update": PerEpisode(first=100, step=1)})
        w.add_block([0], [2], {**block(1, 4, first_update=200), "update": PerEpisode(first=200, step=1)})
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert [c["steps"] for c in reader.manifest["chunks"]] == [4, 8]
    np.testing.assert_array_equal(reader.window(0, 0, 3)["update"], np.concatenate([np.arange(4) + 100 * i
                                                                                      for i in range(3)]))


def test_a_flag_before_the_last_step_is_refused(tmp_path):
    steps = block(2, 5)
    steps["terminated"][1, 2] = True
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        with pytest.raises(ValueError, match="terminated is set before an episode's last step"):
            w.add_block([0, 0], [0, 1], steps)


def test_format_1_histories_still_read(tmp_path):
    """Format 1 stored every field per step; a hand-written one reads back as written."""
    from imitlib.history import episode_totals

    path = tmp_path / "h"
    (path / "000000").mkdir(parents=True)
    steps = block(2, 3)
    arrays = {"episodes": np.array([[0, 0, 0, 3], [0, 1, 3, 3]]),
              **{f: np.asarray(v).reshape(6, *np.shape(v)[2:]) for f, v in steps.items()}}
    arrays["obs"] = arrays["obs"].astype(np.uint8)
    for f, arr in arrays.items():
        np.save(path / "000000" / f"{f}.npy", arr)
    sizes = {f: (path / "000000" / f"{f}.npy").stat().st_size for f in arrays}
    (path / "manifest.json").write_text(json.dumps({
        "format_version": 1, "obs_kind": "test", "obs_shape": [2], "n_actions": 5, "runs": {}, "meta": {},
        "chunks": [{"name": "000000", "steps": 6, "episodes": 2, "sizes": sizes}]}))
    reader = HistoryReader(path)
    window = reader.window(0, 0, 2)
    for f in ("obs", "action", "truncated", "update", "epsilon"):
        np.testing.assert_array_equal(window[f], arrays[f])
    np.testing.assert_array_equal(episode_totals(reader, "update"), [3, 303])
    del sizes["update"]
    (path / "manifest.json").write_text(json.dumps({
        "format_version": 1, "obs_kind": "test", "obs_shape": [2], "n_actions": 5, "runs": {}, "meta": {},
        "chunks": [{"name": "000000", "steps": 6, "episodes": 2, "sizes": sizes}]}))
    with pytest.raises(HistoryError, match=r"no data for \['update'\]"):
        HistoryReader(path)


def test_a_block_cut_by_the_size_cap_keeps_its_first_episodes_whole(tmp_path):
    steps = block(4, 5)
    ends = np.array([False, True, False, True])
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, max_steps=12) as w:
        kept = w.add_block([3, 4, 5, 6], 7, {**steps, "terminated": ends, "truncated": ~ends,
                                             "update": PerEpisode(first=np.array([10, 20, 30, 40]), step=2),
                                             "epsilon": PerEpisode(first=np.float32(0.5))})
    assert kept == 2 and w.dropped_episodes == 2
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert reader.runs() == [3, 4] and set(reader.episodes["episode"]) == {7}
    np.testing.assert_array_equal(reader.window(4, 0, 1)["update"], 20 + 2 * np.arange(5))
    assert reader.window(4, 0, 1)["terminated"].tolist() == [False] * 4 + [True]
    assert reader.window(3, 0, 1)["truncated"][-1] and not reader.window(3, 0, 1)["terminated"].any()
    np.testing.assert_array_equal(reader.window(3, 0, 1)["obs"], steps["obs"][0])


def test_actions_and_small_integer_rewards_are_stored_in_a_byte_and_read_back_as_before(tmp_path):
    """Since format 3: a byte per action (<= 256 actions) and per 0/1 reward given as uint8; float rewards stay
    float32; a change of reward dtype starts a new chunk; everything reads back with the usual dtypes."""
    steps = block(2, 4)
    hits = (np.arange(4) == 3).astype(np.uint8)[None].repeat(2, 0)
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0, 1], 0, {**steps, "reward": hits})
        w.add_block([0, 1], 1, {**steps, "reward": hits.astype(bool)})
        w.add_block([0, 1], 2, steps)  # rewards steps / 10: not integers
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert [c["steps"] for c in reader.manifest["chunks"]] == [8, 8, 8]
    stored = [{f: np.load(tmp_path / "h" / c["name"] / f"{f}.npy").dtype for f in ("action", "reward", "run", "start")}
              for c in reader.manifest["chunks"]]
    assert [s["reward"] for s in stored] == [np.uint8, np.bool_, np.float32]
    assert {s["action"] for s in stored} == {np.dtype(np.uint8)}
    assert {s["run"] for s in stored} == {s["start"] for s in stored} == {np.dtype(np.int32)}
    window = reader.window(1, 0, 3)
    assert window["action"].dtype == np.int16 and window["reward"].dtype == np.float32
    want = np.concatenate([hits[1], hits[1], steps["reward"][1]]).astype(np.float32)
    np.testing.assert_array_equal(window["reward"], want)
    np.testing.assert_array_equal(window["action"], np.tile(np.arange(4) % 5, 3))


def v3_calls():
    """The recording stored in tests/fixtures/history_v3 by imitlib's format 3 writer (commit 6a770a7, chunk_steps=12):
    single episodes with per-step update and epsilon, a block with per-episode ones, a block with uint8 rewards."""
    def steps(n, t, k):
        return {"obs": ((np.arange(n * t * 2) * (k + 3)) % 251).astype(np.uint8).reshape(n, t, 2),
                "action": (np.arange(n * t).reshape(n, t) * (k + 1)) % 5,
                "reward": (np.arange(n * t).reshape(n, t) % 3 == 0) * 0.5,
                "terminated": np.zeros((n, t), bool), "truncated": np.eye(t, dtype=bool)[[-1] * n],
                "update": k * 1000 + np.arange(n * t).reshape(n, t), "epsilon": np.full((n, t), 0.125 * k)}
    hits = steps(2, 3, 3)
    hits["reward"] = (hits["action"] == 1).astype(np.uint8)
    return [([0], [0], steps(1, 4, 0)), ([1], [0], steps(1, 6, 1)),
            ([0, 1, 2], 3, {**steps(3, 5, 2), "update": PerEpisode(first=np.array([0, 100, 200]), step=1),
                            "epsilon": PerEpisode(first=0.25)}),
            ([2, 3], [7, 8], hits)]


def v3_copy(tmp_path):
    """A writable copy of the format 3 fixture."""
    shutil.copytree(FIXTURES / "history_v3", tmp_path / "v3")
    return tmp_path / "v3"


def assert_same_episodes(a, b):
    assert a.n_episodes == b.n_episodes and a.n_steps == b.n_steps
    for i in range(a.n_episodes):
        x, y = a.episode(i), b.episode(i)
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"episode {i}, {key}")
            assert x[key].dtype == y[key].dtype, (i, key)


def record_v3_calls(path, **kwargs):
    with HistoryWriter(path, obs_kind="test", obs_shape=(2,), n_actions=5, chunk_steps=12, **kwargs) as w:
        for runs, eps, fields in v3_calls():
            w.add_block(runs, eps, fields)
    return HistoryReader(path, verify=True)


def test_format_3_histories_still_read(tmp_path):
    """A history written by the format 3 writer (committed) reads back exactly what today's writer records from
    the same calls, and takes format 4 chunks appended to it."""
    old = HistoryReader(FIXTURES / "history_v3", verify=True)
    assert old.manifest["format_version"] == 3 and [c["steps"] for c in old.manifest["chunks"]] == [10, 15, 6]
    new = record_v3_calls(tmp_path / "new")
    assert new.manifest["format_version"] == 4
    assert_same_episodes(old, new)
    from imitlib.history import action_shares, episode_totals
    np.testing.assert_array_equal(episode_totals(old), episode_totals(new))
    edges = np.array([0, 4, 9])
    np.testing.assert_array_equal(action_shares(old, edges, 5), action_shares(new, edges, 5))
    path = v3_copy(tmp_path)
    with HistoryWriter(path, obs_kind="test", obs_shape=(2,), n_actions=5, mode="append") as w:
        w.add_block([0, 1], 9, block(2, 4), time_major=False)
    both = HistoryReader(path, verify=True)
    assert both.manifest["format_version"] == 4 and both.n_episodes == 9
    np.testing.assert_array_equal(both.window(0, 2, 1)["action"], block(2, 4)["action"][0])


def test_format_2_histories_still_read(tmp_path):
    """Format 2 stored actions as int16, rewards as float32 and an int64 episode table; such a history (made by
    widening the format 3 fixture) reads back the same, and appending leaves its version until a chunk is written."""
    path = v3_copy(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    for chunk in manifest["chunks"]:
        for field, dtype in (("action", np.int16), ("reward", np.float32), ("episodes", np.int64)):
            file = path / chunk["name"] / f"{field}.npy"
            wide = np.load(file).astype(dtype)
            np.save(file, wide)
            chunk["sizes"][field] = file.stat().st_size
            chunk["crc32"][field] = zlib.crc32(wide.tobytes())
    manifest["format_version"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest))
    with HistoryWriter(path, obs_kind="test", obs_shape=(2,), n_actions=5, mode="append"):
        pass  # opened for appending, nothing written: still a format 2 history
    old = HistoryReader(path, verify=True)
    assert old.manifest["format_version"] == 2
    assert np.load(path / manifest["chunks"][0]["name"] / "episodes.npy").dtype == np.int64
    assert_same_episodes(old, HistoryReader(FIXTURES / "history_v3"))
    steps = block(2, 4)
    with HistoryWriter(path, obs_kind="test", obs_shape=(2,), n_actions=5, mode="append") as w:
        w.add_block([0, 1], 9, time_major(steps), time_major=True)  # a format 4 chunk after format 2 ones
    both = HistoryReader(path, verify=True)
    assert both.manifest["format_version"] == 4 and both.n_episodes == old.n_episodes + 2
    np.testing.assert_array_equal(both.window(1, 2, 1)["obs"], steps["obs"][1])  # run 1: episodes 0, 3, 9
    assert both.window(1, 0, 2)["action"].dtype == np.int16


def test_tabular_recorder_refuses_rooms_whose_cells_do_not_fit_a_byte(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="darkroom", obs_shape=(1,), n_actions=5) as w:
        with pytest.raises(ValueError, match="rooms of up to 256 cells"):
            q_learning(QLearningConfig(size=17, horizon=5), [3], [0], 1, on_episode=TabularRecorder(w, [0]))


def test_wide_action_spaces_and_large_run_ids_keep_wide_dtypes(tmp_path):
    """More than 256 actions are stored as int16; run ids beyond int32 are stored as int64."""
    steps = block(2, 3)
    steps["action"] = np.array([[0, 299, 17], [5, 6, 7]])
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=300) as w:
        w.add_block([0, 2**33], 0, steps)
    reader = HistoryReader(tmp_path / "h", verify=True)
    chunk = tmp_path / "h" / reader.manifest["chunks"][0]["name"]
    assert np.load(chunk / "action.npy").dtype == np.int16 and np.load(chunk / "run.npy").dtype == np.int64
    assert reader.runs() == [0, 2**33]
    np.testing.assert_array_equal(reader.window(0, 0, 1)["action"], [0, 299, 17])


def test_actions_outside_the_action_space_are_refused_not_wrapped(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        for bad in (5, -1, 261):
            steps = block(1, 3)
            steps["action"] = np.array([[0, bad, 1]])
            with pytest.raises(ValueError, match=r"actions must lie in 0\.\.4"):
                w.add_block([0], 0, steps)


def time_major(fields):
    """The same block laid out step by step: ``(T, B, ...)`` per-step arrays."""
    return {k: v if type(v) is PerEpisode or np.ndim(v) < 2 else np.swapaxes(v, 0, 1) for k, v in fields.items()}


def test_time_major_blocks_read_back_like_episode_major_ones(tmp_path):
    """A lockstep block given step by step is stored without transposing (each episode's steps B apart) and reads
    back exactly like the same block given episode by episode, also in a chunk shared with contiguous episodes."""
    from imitlib.history import action_shares, episode_totals, shuffle_episodes
    rng = np.random.default_rng(0)
    blocks = []
    for k in range(3):
        steps = block(4, 6, first_update=1000 * k)
        steps["obs"] = rng.integers(0, 256, steps["obs"].shape).astype(np.uint8)
        steps["action"] = rng.integers(0, 5, (4, 6))
        steps["reward"] = rng.integers(0, 2, (4, 6)).astype(np.uint8)
        if k == 2:  # per-episode update and epsilon, flags of the last step only
            steps.update(update=PerEpisode(first=np.arange(4) * 10, step=1), epsilon=PerEpisode(first=0.5),
                         terminated=np.array([True, False, False, True]),
                         truncated=np.array([False, True, True, False]))
        blocks.append(([3, 1, 2, 0], k, steps))
    readers = {}
    for name, layout in (("episode_major", lambda f: f), ("time_major", time_major)):
        with HistoryWriter(tmp_path / name, obs_kind="test", obs_shape=(2,), n_actions=5) as w:
            w.add_block([5], 0, {**block(1, 3), "reward": np.ones((1, 3), np.uint8)})  # contiguous, same chunk
            for runs, k, steps in blocks:
                w.add_block(runs, k, layout(steps), time_major=name == "time_major")
        readers[name] = HistoryReader(tmp_path / name, verify=True)
    a, b = readers["episode_major"], readers["time_major"]
    assert len(b.manifest["chunks"]) == 2, "per-episode update and epsilon start a chunk"
    assert list(np.load(tmp_path / "time_major" / "000000" / "stride.npy")) == [1] + [4] * 8
    assert_same_episodes(a, b)
    for runs, k, steps in blocks:  # and both are what was given
        for j, run in enumerate(runs):
            got = b.window(run, k, 1)
            for field in ("obs", "action", "reward"):
                np.testing.assert_array_equal(got[field], steps[field][j])
    for run in range(4):
        np.testing.assert_array_equal(a.window(run, 1, 2)["obs"], b.window(run, 1, 2)["obs"])
        np.testing.assert_array_equal(a.step_window(run, 4, 9)["action"], b.step_window(run, 4, 9)["action"])
    for field in ("reward", "update", "truncated"):
        np.testing.assert_array_equal(episode_totals(a, field), episode_totals(b, field))
    np.testing.assert_array_equal(action_shares(a, np.array([0, 1, 3]), 5), action_shares(b, np.array([0, 1, 3]), 5))
    assert_same_episodes(shuffle_episodes(a, tmp_path / "sa", seed=1), shuffle_episodes(b, tmp_path / "sb", seed=1))


def test_the_size_cap_keeps_the_first_episodes_of_a_time_major_block(tmp_path):
    steps = block(4, 5)
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, max_steps=12) as w:
        assert w.add_block([0, 1, 2, 3], 0, time_major(steps), time_major=True) == 2
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert reader.runs() == [0, 1] and w.dropped_episodes == 2
    for run in (0, 1):
        np.testing.assert_array_equal(reader.window(run, 0, 1)["obs"], steps["obs"][run])
        np.testing.assert_array_equal(reader.window(run, 0, 1)["update"], steps["update"][run])


def test_time_major_shapes_are_checked(tmp_path):
    steps = time_major(block(2, 5))
    steps["obs"] = steps["obs"][:, :1]
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        with pytest.raises(ValueError, match=r"obs must be \(T=5, B=2, bytes\) uint8 like action"):
            w.add_block([0, 1], 0, steps, time_major=True)


def test_values_shared_by_a_whole_chunk_are_stored_once(tmp_path):
    """Per-episode arrays that are the same for every episode of a chunk take one value on disk; a column whose
    length matches neither is reported as damage."""
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0, 1, 2], 4, {**block(3, 5), "update": PerEpisode(first=np.array([0, 100, 200]), step=1),
                                   "epsilon": PerEpisode(first=0.25)})
    chunk = tmp_path / "h" / "000000"
    shapes = {f: np.load(chunk / f"{f}.npy").shape for f in ("run", "episode", "length", "stride", "ends",
                                                            "update_first", "update_step", "epsilon_first")}
    assert shapes == {"run": (3,), "episode": (1,), "length": (1,), "stride": (1,), "ends": (1,),
                      "update_first": (3,), "update_step": (1,), "epsilon_first": (1,)}
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert [int(reader.episode(i)["episode"][0]) for i in range(3)] == [4, 4, 4]
    np.testing.assert_array_equal(reader.episode(2)["update"], 200 + np.arange(5))
    manifest = json.loads((tmp_path / "h" / "manifest.json").read_text())
    np.save(chunk / "episode.npy", np.array([4, 4], np.int32))
    manifest["chunks"][0]["sizes"]["episode"] = (chunk / "episode.npy").stat().st_size
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HistoryError, match=r"episode\.npy: 2 values for 3 episodes"):
        HistoryReader(tmp_path / "h")


def test_a_block_in_the_wrong_layout_is_refused_not_scrambled(tmp_path):
    """Every per-step field must have action's layout: a (B, T) reward beside (T, B) actions of the same size
    would be accepted by a reshape and read back in the wrong order."""
    steps = time_major(block(2, 3))
    steps["reward"] = block(2, 3)["reward"]  # (B, T)
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        with pytest.raises(ValueError, match=r"reward must be \(T=3, B=2\) like action, got \(2, 3\)"):
            w.add_block([0, 1], 0, steps, time_major=True)
        early = time_major(block(2, 3))
        early["truncated"] = np.ones((3, 2), bool)
        with pytest.raises(ValueError, match="truncated is set before an episode's last step"):
            w.add_block([0, 1], 0, early, time_major=True)
        with pytest.raises(ValueError, match=r"terminated must be \(B=2, T=3\) like action, or \(B,\)"):
            w.add_block([0, 1], 0, {**block(2, 3), "terminated": np.zeros(3, bool)})
    assert HistoryReader(tmp_path / "h").n_episodes == 0


def test_a_time_major_block_cut_to_one_episode_shares_a_chunk_with_a_whole_one(tmp_path):
    first, second = block(3, 4), block(3, 5, first_update=500)
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, max_steps=17) as w:
        assert w.add_block([0, 1, 2], 0, time_major(first), time_major=True) == 3
        assert w.add_block([0, 1, 2], 1, time_major(second), time_major=True) == 1
    reader = HistoryReader(tmp_path / "h", verify=True)
    assert len(reader.manifest["chunks"]) == 1 and list(reader.episodes["stride"]) == [3, 1, 3, 3]
    for run in range(3):
        np.testing.assert_array_equal(reader.window(run, 0, 1)["update"], first["update"][run])
    np.testing.assert_array_equal(reader.window(0, 1, 1)["obs"], second["obs"][0])
    np.testing.assert_array_equal(reader.window(0, 1, 1)["update"], second["update"][0])


def test_equal_encodings_share_a_chunk(tmp_path):
    """float64 and float32 rewards are both stored as float32: no new chunk between them."""
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0], 0, block(1, 3))
        w.add_block([0], 1, {**block(1, 3), "reward": block(1, 3)["reward"].astype(np.float32)})
        w.add_block([0], 2, {**block(1, 3), "reward": np.zeros((1, 3), np.uint8)})
    assert [c["episodes"] for c in HistoryReader(tmp_path / "h").manifest["chunks"]] == [2, 1]


def test_a_format_4_chunk_without_its_episode_layout_is_reported(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0, 1], 0, block(2, 3))
    manifest = json.loads((tmp_path / "h" / "manifest.json").read_text())
    chunk = tmp_path / "h" / manifest["chunks"][0]["name"]
    np.save(chunk / "start.npy", np.array([0], np.int32))
    manifest["chunks"][0]["sizes"]["start"] = (chunk / "start.npy").stat().st_size
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HistoryError, match=r"start\.npy: 1 values for 2 episodes"):
        HistoryReader(tmp_path / "h")
    (chunk / "stride.npy").unlink()
    del manifest["chunks"][0]["sizes"]["stride"]
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HistoryError, match=r"no data for \['episodes'\]"):
        HistoryReader(tmp_path / "h")
