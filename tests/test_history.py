import json

import numpy as np
import pytest

from imitlib.history import Episode, HistoryError, HistoryReader, HistoryWriter
from imitlib.recorders import TabularRecorder
from imitlib.tabular import QLearningConfig, q_learning


def episode(run, index, length=5, value=0):
    steps = np.arange(length)
    return Episode(run=run, episode=index, obs=np.full((length, 2), value, np.uint8), action=steps % 5,
                   reward=(steps == length - 1).astype(np.float32), terminated=np.zeros(length, bool),
                   truncated=steps == length - 1, update=index * 100 + steps, epsilon=np.full(length, 0.5))


def write(path, episodes, **kwargs):
    with HistoryWriter(path, obs_kind="test", obs_shape=(2,), n_actions=5, **kwargs) as w:
        for e in episodes:
            w.add(e)
    return HistoryReader(path)


def block(n, length, first_update=0, eps=0.5):
    """``n`` equal-length episodes as per-step arrays ``(n, T)``, with a per-step update and epsilon."""
    steps = np.arange(length)
    truncated = np.zeros((n, length), bool)
    truncated[:, -1] = True
    return {"obs": (np.arange(n * length * 2) % 256).astype(np.uint8).reshape(n, length, 2),
            "action": np.tile(steps % 5, (n, 1)), "reward": np.tile(steps / 10, (n, 1)),
            "terminated": np.zeros((n, length), bool), "truncated": truncated,
            "update": first_update + np.arange(n)[:, None] * 100 + steps, "epsilon": np.full((n, length), eps)}


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
    reader = HistoryReader(tmp_path / "h")
    assert reader.n_steps == 40 and len(reader.manifest["chunks"]) == 4
    assert f"{reader.n_steps} steps in {reader.n_steps // 5} episodes" in reader.summary()


def test_tabular_recorder_subsamples_and_matches_the_learner(tmp_path):
    seen = []
    writer = HistoryWriter(tmp_path / "h", obs_kind="darkroom", obs_shape=(1,), n_actions=5, chunk_steps=100)
    recorder = TabularRecorder(writer, run_ids=[10, 11], every=3)
    result = q_learning(QLearningConfig(), [3, 70], [0, 1], 10,
                        on_episode=lambda b: (seen.append(b), recorder(b)))
    writer.close()
    reader = HistoryReader(tmp_path / "h")
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
    from imitlib.recorders import DQNRecorder

    cfg = DQNConfig(steps=400, segment_steps=200, learning_starts=100, buffer_size=1000, batch_size=8,
                    train_every=2, target_every=50, eps_decay_steps=300, eval_episodes=1)
    writer = HistoryWriter(tmp_path / "h", obs_kind="minatar", obs_shape=(10, 10, 10), n_actions=6)
    recorder = DQNRecorder(writer, run_ids=[7, 8], every=2)
    run = train(cfg, [0, 1], hooks=Hooks(on_step=recorder.on_step), progress=False)
    writer.close()
    reader = HistoryReader(tmp_path / "h")
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


def test_a_flag_before_the_last_step_is_refused(tmp_path):
    steps = block(2, 5)
    steps["terminated"][1, 2] = True
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        with pytest.raises(ValueError, match="terminated or truncated is set before an episode's last step"):
            w.add_block([0, 0], [0, 1], steps)


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
    reader = HistoryReader(tmp_path / "h")
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


def test_chunks_hold_whole_episodes_one_after_another(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, chunk_steps=8) as w:
        for i in range(3):  # 3 steps each: a chunk is written once 8 steps are queued (9: never a cut episode)
            w.add(episode(0, i, length=3, value=i))
        w.add_block([1, 1, 1], [0, 1, 2], block(3, 6))  # 6 steps each: 12 queued, then the last 6 at close
    reader = HistoryReader(tmp_path / "h")
    assert [c["steps"] for c in reader.manifest["chunks"]] == [9, 12, 6]
    chunk = tmp_path / "h" / reader.manifest["chunks"][0]["name"]
    np.testing.assert_array_equal(np.load(chunk / "obs.npy")[:, 0], np.repeat([0, 1, 2], 3))  # episode-major
    np.testing.assert_array_equal(np.load(chunk / "length.npy"), [3, 3, 3])
    assert reader.n_episodes == 6 and reader.window(1, 0, 3)["obs"].shape == (18, 2)


def test_a_damaged_chunk_raises_naming_the_file_when_opened(tmp_path):
    reader = write(tmp_path / "h", [episode(0, i) for i in range(3)])
    chunk = tmp_path / "h" / reader.manifest["chunks"][0]["name"]
    data = (chunk / "action.npy").read_bytes()
    (chunk / "action.npy").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped: same size
    with pytest.raises(HistoryError, match=r"action\.npy: checksum does not match"):
        HistoryReader(tmp_path / "h")
    (chunk / "action.npy").write_bytes(data[:-4])  # truncated
    with pytest.raises(HistoryError, match=r"action\.npy: unreadable"):
        HistoryReader(tmp_path / "h")
    (chunk / "action.npy").unlink()
    with pytest.raises(HistoryError, match=r"action\.npy: missing"):
        HistoryReader(tmp_path / "h")
    (tmp_path / "h" / "manifest.json").write_text("{broken")
    with pytest.raises(HistoryError, match=r"manifest\.json: not valid JSON"):
        HistoryReader(tmp_path / "h")
    with pytest.raises(HistoryError, match="not a history"):
        HistoryReader(tmp_path / "nothing")


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_older_formats_are_refused_with_the_command_that_records_anew(tmp_path, version):
    write(tmp_path / "h", [episode(0, 0)])
    manifest = json.loads((tmp_path / "h" / "manifest.json").read_text())
    manifest["format_version"] = version
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HistoryError, match=rf"format-{version} history.*re-record it with `python -m imitlib record"):
        HistoryReader(tmp_path / "h")


def test_episodes_missing_a_field_or_of_mixed_lengths_are_refused(tmp_path):
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        bad = block(1, 4)
        bad["reward"] = bad["reward"][:, :3]
        with pytest.raises(ValueError, match=r"reward must have one value per step \(4\)"):
            w.add_block([0], 0, bad)
        with pytest.raises(ValueError, match="obs must be"):
            w.add(Episode(0, 0, np.zeros((4, 2), np.float32), *(np.zeros(4) for _ in range(6))))


def test_the_refusal_names_the_command_for_the_data_it_found():
    from imitlib.history import record_command

    assert record_command({"obs_kind": "darkroom"}) == "python -m imitlib record darkroom --scale SCALE"
    breakout = {"obs_kind": "minatar", "runs": {"0": {"game": "MinAtar/Breakout-v0", "seed": 0}}}
    assert record_command(breakout) == "python -m imitlib record minatar --env MinAtar/Breakout-v0 --scale SCALE"


def test_queued_episodes_are_copies_not_views_of_the_callers_buffers(tmp_path):
    """A learner may reuse its arrays every episode: what was queued must not change with them."""
    buffer = block(2, 4)
    want = buffer["obs"].reshape(8, 2).copy()
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5) as w:
        w.add_block([0, 0], [0, 1], buffer)
        for values in buffer.values():
            values[...] = 0 if values.dtype != bool else False
    np.testing.assert_array_equal(HistoryReader(tmp_path / "h").window(0, 0, 2)["obs"], want)  # uint8: no cast


def test_rewind_keeps_the_first_chunks_and_drops_the_rest(tmp_path):
    write(tmp_path / "h", [episode(0, i) for i in range(6)], chunk_steps=5)  # one episode per chunk
    (tmp_path / "h" / ".000009.tmp").mkdir()  # a chunk a kill left half-written
    with HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, mode="append") as w:
        w.add(episode(0, 99))  # queued, never written: rewind forgets it
        w.rewind(2)
        assert sorted(p.name for p in (tmp_path / "h").iterdir() if p.is_dir()) == ["000000", "000001"]
        w.add(episode(0, 2))
    reader = HistoryReader(tmp_path / "h")
    assert reader.episodes["episode"].tolist() == [0, 1, 2]
    with pytest.raises(HistoryError, match="lists 3 chunks, but its recorder's checkpoint counted 4"):
        HistoryWriter(tmp_path / "h", obs_kind="test", obs_shape=(2,), n_actions=5, mode="append").rewind(4)


def _record_dqn(path, run_dir, chunk_steps=60):
    """A 3-segment DQN run with a resumable recorder (every 2nd episode), resuming from ``run_dir``."""
    from imitlib.dqn import CHECKPOINT, DQNConfig, train
    from imitlib.recorders import DQNRecorder

    cfg = DQNConfig(steps=600, segment_steps=200, learning_starts=100, buffer_size=1000, batch_size=8,
                    train_every=2, target_every=50, eps_decay_steps=300, eval_episodes=1)
    mode = "append" if (run_dir / CHECKPOINT).exists() else "overwrite"
    with HistoryWriter(path, obs_kind="minatar", obs_shape=(10, 10, 10), n_actions=6, mode=mode,
                       chunk_steps=chunk_steps) as writer:
        recorder = DQNRecorder(writer, run_ids=[0, 1], every=2)
        return train(cfg, [0, 1], hooks=recorder.hooks(run_dir / "recorder"), run_dir=run_dir, progress=False)


class Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["mid-segment", "between the recorder's state and the checkpoint"])
def test_an_interrupted_dqn_recording_resumes_to_the_same_history(tmp_path, monkeypatch, where):
    import imitlib.dqn
    from imitlib.recorders import DQNRecorder

    whole = _record_dqn(tmp_path / "whole", tmp_path / "run-whole")
    if where == "mid-segment":  # killed 70 steps into the second segment, after some of its chunks were written
        on_step = DQNRecorder.on_step

        def killing_step(self, step):
            on_step(self, step)
            if step.env_steps == 270:
                raise Killed
        monkeypatch.setattr(DQNRecorder, "on_step", killing_step)
    else:  # the second segment's episodes are flushed and counted, its checkpoint never written
        save, calls = imitlib.dqn.save_checkpoint_of, []

        def killing_save(path, learner):
            calls.append(path)
            if len(calls) == 2:
                raise Killed
            save(path, learner)
        monkeypatch.setattr(imitlib.dqn, "save_checkpoint_of", killing_save)
    with pytest.raises(Killed):
        _record_dqn(tmp_path / "cut", tmp_path / "run-cut")
    monkeypatch.undo()
    assert HistoryReader(tmp_path / "cut").n_episodes > 0, "the interrupted run left episodes past its checkpoint"
    resumed = _record_dqn(tmp_path / "cut", tmp_path / "run-cut")
    a, b = HistoryReader(tmp_path / "whole"), HistoryReader(tmp_path / "cut")
    assert a.n_episodes == b.n_episodes > 10
    for i in range(a.n_episodes):
        ea, eb = a.episode(i), b.episode(i)
        assert all(np.array_equal(ea[f], eb[f]) for f in ea), f"episode {i} differs"
    assert resumed.state.episodes == whole.state.episodes


def test_a_recording_without_its_recorder_state_is_refused_in_one_line(tmp_path):
    import shutil

    _record_dqn(tmp_path / "h", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "recorder")
    with pytest.raises(HistoryError, match="cannot resume from its checkpoint: delete"):
        _record_dqn(tmp_path / "h", tmp_path / "run")
