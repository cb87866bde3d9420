"""Chapter 6, part 5: AD on the MinAtar teachers' histories, cut early, read against the teachers."""

import numpy as np
import pytest

from imitlib import stats
from imitlib.experiments import game_beyond
from imitlib.history import Episode, HistoryReader, HistoryWriter
from imitlib.scale import get_scale


def history(tmp_path, starts: dict[int, list[int]]):
    """A tiny game history: per run, episodes of 3 steps whose first step had made ``starts`` updates."""
    with HistoryWriter(tmp_path / "h", obs_kind="minatar", obs_shape=(10, 10, 10), n_actions=6) as w:
        for run, ups in starts.items():
            w.set_run(run, seed=run)
            for i, u in enumerate(ups):
                w.add(Episode(run=run, episode=10 * i, obs=np.zeros((3, 125), np.uint8), action=np.full(3, run),
                              reward=np.ones(3, np.float32), terminated=np.array([0, 0, 1], bool),
                              truncated=np.zeros(3, bool), update=np.arange(u, u + 3), epsilon=np.ones(3, np.float32)))
    return HistoryReader(tmp_path / "h")


def test_the_cut_keeps_the_episodes_begun_before_it_and_never_mixes_runs(tmp_path):
    reader = history(tmp_path, {0: [0, 5, 40, 90], 1: [0, 60, 61]})
    counts = game_beyond.episodes_before(reader, 50)
    assert counts == {0: 3, 1: 1}
    cut = game_beyond.keep_first(reader, tmp_path / "cut", counts, {"cut_at_update": 50})
    assert [cut.run_episodes(r) for r in cut.runs()] == [3, 1]
    assert (cut.window(0, 0, 3)["action"] == 0).all() and (cut.window(1, 0, 1)["action"] == 1).all()
    assert cut.manifest["meta"]["cut_at_update"] == 50


def test_the_cut_is_where_the_teacher_had_trained_the_share_of_its_steps():
    test = game_beyond.game_beyond_config(get_scale("lab"))
    assert test.students.student.kind == "ad" and test.students.student.context_steps == 128
    assert game_beyond.cut_update(test) == pytest.approx((300_000 - 5_000) / 4)


def test_step_curves_average_the_episodes_ending_in_each_bin():
    returns = np.array([[1.0, 3.0, np.nan], [5.0, np.nan, np.nan]])
    ends = np.array([[1, 4, -1], [7, -1, -1]])  # vector steps; 2 environments: (end + 1) * 2 environment steps
    curve = game_beyond.step_curve(returns, ends, 2, np.array([0.0, 5.0, 10.0, 20.0]))
    np.testing.assert_allclose(curve, [1.0, 3.0, 5.0])  # 4 steps, 10 steps (right edge), 16 steps
    empty = game_beyond.step_curve(returns, ends, 2, np.array([0.0, 2.0, 3.0, 20.0]))
    assert np.isnan(empty[1])


def test_the_summary_reads_plateau_ceiling_and_teacher():
    art = {"sampled_curve": np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 5.0]]), "greedy_curve": np.ones((2, 3)),
           "teacher_read": np.array([[1.0, 4.0], [3.0, 2.0]]), "teacher_sampled": np.array([[6.0, 8.0], [6.0, 8.0]]),
           "teacher_greedy": np.array([[7.0, 9.0], [9.0, 11.0]])}
    rows = game_beyond.summary(art)
    assert float(rows["sampled"]["plateau"].estimate) == pytest.approx(4.0)
    assert rows["sampled"]["ceiling"] == pytest.approx(3.0)  # the best bin of the teachers' mean: (4 + 2) / 2
    assert rows["greedy"]["teacher_end"] == pytest.approx(10.0)
    assert rows["greedy"]["verdict"].startswith("below the teachers' final evaluations")  # never the behaviour ceiling
    assert np.isnan(rows["greedy"]["ceiling"])
    art["greedy_curve"] = np.full((2, 3), 12.0)  # above its behaviour data, but that is denoising: read against the
    assert game_beyond.summary(art)["greedy"]["verdict"].startswith("above the teachers'")  # teachers' evaluations
    assert isinstance(rows["sampled"]["plateau"], stats.Interval)
    said = game_beyond.game_sentence(art, "the first 30% of training")
    assert said.startswith("Reading the first 30% of training, the sampled students end at 4.00 against a data "
                           "ceiling of 3.00 (")
    assert said.endswith("Greedy, they end at 12.00: above the teachers' final evaluations (its 95% CI lies above "
                         "them), which averaged 10.00.")
    assert "not computed" in game_beyond.game_sentence(None, "the whole history")


def test_bad_cuts_are_refused():
    with pytest.raises(ValueError, match=r"cut must be in \(0, 1\]"):
        game_beyond.game_beyond_config(get_scale("ci"), 0.0)
