"""Chapter 2's numbers and figures: what the prose cites, the strips of play, and the missing full-scale note."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from imitlib import dqn
from imitlib.artifacts import Artifact
from imitlib.envs import game_spec
from imitlib.experiments import teacher, teacher_experiment
from imitlib.scale import get_scale

EXP = teacher_experiment(get_scale("ci"))  # a config only: nothing is trained


def artifact(**arrays) -> Artifact:
    return Artifact(data={k: np.asarray(v) for k, v in arrays.items()}, provenance={}, path=None, loaded=False)


def curves_artifact() -> Artifact:
    """Two seeds; the second has no finished episode in the last training bin, so that bin is not shown."""
    return artifact(train_steps=[10, 20, 30, 40], train_returns=[[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, np.nan]],
                    eval_steps=[20, 40], eval_means=[[0.0, 1.0], [0.0, 3.0]], env_steps=3000, wall_seconds=120.0,
                    loss_steps=[10, 20, 30], mean_q=[[0.1, 0.2, 0.3], [0.2, 0.3, 0.4]], snapshot_steps=[10, 40])


def test_frame_picks_spread_over_the_whole_episode():
    picks = teacher.frame_picks(100)
    assert len(picks) == teacher.STRIP_FRAMES and picks[0] == 0 and picks[-1] == 99
    assert np.all(np.diff(picks) > 0)
    assert teacher.frame_picks(3, count=3).tolist() == [0, 1, 2]


def test_strip_is_one_rgb_image_per_pick():
    frames = np.random.default_rng(0).integers(0, 2, size=(12, 10, 10, 4)).astype(bool)
    assert teacher.strip(frames, np.array([0, 5, 11])).shape == (3, 10, 10, 3)


def test_settings_leave_out_what_is_unset():
    shown = teacher.settings(EXP)
    assert shown["env_id"] == EXP.dqn.env_id and shown["steps"] == EXP.dqn.steps
    assert shown["channels"] == 10 and None not in shown.values()


def test_random_numbers_are_the_mean_score():
    assert teacher.random_numbers(np.array([0.0, 1.0, 2.0])) == {"ch2_random": 1.0}


def test_finished_bins_need_every_seed():
    assert teacher.finished_bins(curves_artifact()["train_returns"]).tolist() == [True, True, True, False]


def test_learning_numbers_read_the_last_finished_bin_and_the_last_evaluation():
    nums = teacher.learning_numbers(curves_artifact(), EXP)
    assert nums["ch2_steps"] == "3,000" and nums["ch2_seeds"] == len(EXP.seeds) == 2
    assert nums["ch2_train"] == 4.0  # bin 30: (3 + 5) / 2; bin 40 is not finished by seed 2
    assert nums["ch2_eval"].startswith("2.00 (95% CI ")
    assert nums["ch2_minutes"] == 2.0 and nums["ch2_rate"] == 50.0  # 3000 steps x 2 seeds / 120 s
    assert nums["ch2_paper"] == 10.0


def test_eval_line_gives_the_interval_and_every_seed():
    line = teacher.eval_line(curves_artifact())
    assert line.startswith("evaluation return after 3,000 steps: 2.00 [") and line.endswith("per seed [1. 3.]")


def test_drift_text_and_change_numbers():
    drift = {"conv": np.array([0.0, 1.6]), "Q head": np.array([0.0, 0.024])}
    assert teacher.drift_text(drift) == "conv 160%, Q head 2%"
    nums = teacher.change_numbers(drift, np.array([2.5, 1.0, 18.0]))
    assert nums == {"ch2_q_first": 2.5, "ch2_q_last": 18.0, "ch2_drift": "conv 160%, Q head 2%"}


def test_learning_figure_shows_both_curves_and_both_references():
    fig, ax = plt.subplots()
    teacher.plot_learning(ax, curves_artifact(), EXP, random_mean=0.5)
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["training episodes (n=2)", "evaluation (ε=0.05) (n=2)", "random policy",
                      "MinAtar paper DQN, 5M frames"]
    assert ax.lines[0].get_xdata().tolist() == [10, 20, 30], "the unfinished bin is left out"
    plt.close(fig)


def test_drift_and_value_figures():
    art = curves_artifact()
    fig, (a, b) = plt.subplots(1, 2)
    teacher.plot_drift(a, art["snapshot_steps"], {"conv": np.array([0.0, 1.0]), "Q head": np.array([0.0, 2.0])})
    teacher.plot_values(b, art, np.array([1.0, 2.0]))
    assert [line.get_label() for line in a.lines] == ["conv", "Q head"]
    assert len(b.lines) == 2 and len(b.collections) == 1, "probe values, and Q of actions taken with its band"
    plt.close(fig)


def test_snapshot_rows_play_each_kept_snapshot():
    spec = game_spec(EXP.dqn.env_id)
    weights = dqn.StackedNet(lambda: dqn.make_network(EXP.dqn, spec), [0]).state_dict()
    art = artifact(snapshot_steps=[100, 2000],
                   **{f"snapshots/{k}": np.stack([v[0].numpy()] * 2) for k, v in weights.items()})
    rows = teacher.snapshot_rows(art, EXP, spec, seed=7)
    labels = list(rows)
    assert labels[0].startswith("100 steps\nscore ") and labels[1].startswith("2,000 steps\nscore ")
    assert all(r.shape == (teacher.STRIP_FRAMES, 10, 10, 3) for r in rows.values())


def test_full_scale_artifact_is_none_and_says_how_when_not_stored(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path))
    assert teacher.full_scale_artifact() is None
    out = capsys.readouterr().out
    assert "not computed yet at full scale" in out and "`python -m imitlib teacher --scale full`" in out


def test_ale_figure_has_ours_and_cleanrl():
    fig, ax = plt.subplots()
    teacher.plot_ale(ax, artifact(eval_steps=[1e6, 2e6], eval_means=[[1.0, 50.0]]))
    assert [line.get_label() for line in ax.lines] == ["ours", "CleanRL (published)"]
    assert ax.lines[1].get_ydata().tolist() == pytest.approx([100.0, 300.0, 366.9])
    plt.close(fig)


def test_the_cleanrl_preset_is_cleanrls_dqn_atari_and_the_table_shows_where_full_differs():
    from imitlib.experiments import teacher

    full = get_scale("full")
    ours, theirs = teacher.teacher_experiment(full).dqn, teacher.cleanrl_experiment(full).dqn
    assert (theirs.num_envs, theirs.batch_size, theirs.train_every, theirs.loss, theirs.sticky) == (1, 32, 4, "mse", 0)
    assert (theirs.learning_starts, theirs.target_every, theirs.eps_end, theirs.eps_decay_steps) == (
        80_000, 1_000, 0.01, 1_000_000)
    assert theirs.lr == ours.lr == 1e-4 and not theirs.full_action_space
    header, rows = teacher.preset_rows(full)
    table = {r[0]: r[1:] for r in rows}
    assert table["loss"] == ["huber", "mse"] and table["environments per seed"] == [64, 1]
    assert len(header) == 3 and all(len(r) == 3 for r in rows)


def test_an_interrupted_minatar_recording_resumes_to_what_one_run_records(tmp_path, monkeypatch):
    """Killed after its first segment's checkpoint and again after its second segment's histories were written:
    the resumed recording equals the uninterrupted one, learning and expert histories and teachers alike."""
    import imitlib.dqn
    from imitlib.history import HistoryReader

    _, whole = teacher.record_minatar(EXP, tmp_path / "whole", progress=False)
    save = imitlib.dqn.save_checkpoint_of

    def killing_save(path, learner):
        if learner.state.segment == 2:
            raise KeyboardInterrupt
        save(path, learner)
    monkeypatch.setattr(imitlib.dqn, "save_checkpoint_of", killing_save)
    with pytest.raises(KeyboardInterrupt):
        teacher.record_minatar(EXP, tmp_path / "cut", progress=False, run_dir=tmp_path / "run")
    monkeypatch.undo()
    timings, resumed = teacher.record_minatar(EXP, tmp_path / "cut", progress=False, run_dir=tmp_path / "run")
    for part in ("learning", "expert"):
        a, b = HistoryReader(tmp_path / "whole" / part), HistoryReader(tmp_path / "cut" / part)
        assert a.n_episodes == b.n_episodes > 0
        for i in range(a.n_episodes):
            assert all(np.array_equal(v, b.episode(i)[f]) for f, v in a.episode(i).items()), f"{part} {i}"
    keys = [k for k in whole if k.startswith(("weights/", "snapshots/", "eval_", "train_", "loss"))]
    assert len(keys) > 10 and set(keys) <= set(resumed)
    for key in keys:
        np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)
    assert timings["learning_seconds"] > 0
