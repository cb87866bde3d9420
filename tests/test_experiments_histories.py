"""Chapter 3's numbers and figures: the dataset table, the greedy gap, the games' numbers and what is missing."""

import matplotlib

matplotlib.use("Agg")

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

import imitlib.envs.darkroom
from imitlib import experiments, history
from imitlib.artifacts import Artifact
from imitlib.experiments import histories
from imitlib.history import HistoryReader
from imitlib.scale import get_scale

CFG = experiments.DarkRoomHistories(source="knowledge", runs_per_goal=1, episodes=20)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small Dark Room dataset (81 runs of 20 episodes): the readers chapter 3 opens, in miniature."""
    folder = tmp_path_factory.mktemp("darkroom")
    experiments.record_darkroom(CFG, folder)
    return HistoryReader(folder / "learning"), HistoryReader(folder / "expert")


def artifact(**arrays) -> Artifact:
    return Artifact(data={k: np.asarray(v) for k, v in arrays.items()}, provenance={}, path=None, loaded=False)


def game(seeds: int = 2, episodes: int = 20) -> Artifact:
    """A recorded game's summary: returns 1 in the first tenth of the history, 5 in the last, 3 between."""
    ret = np.full((seeds, episodes), 3.0)
    ret[:, :2], ret[:, -2:] = 1.0, 5.0
    ret[1, -1] = np.nan  # the second seed played one episode fewer
    index = np.tile(np.arange(episodes) * 10.0, (seeds, 1))
    learning = {"return": ret, "length": ret * 10, "epsilon": np.full_like(ret, 0.1), "episode": index,
                "bytes": 1000, "steps": 12_345, "action_edges": np.linspace(0, 200, 11),
                "action_shares": np.full((10, 6), 1 / 6)}
    expert = {"return": [[8.0, 10.0]], "length": [[80.0, 100.0]], "bytes": 50, "steps": 10}
    parts = {"learning": learning, "expert": expert}
    return artifact(**{f"{part}/{k}": v for part, arrays in parts.items() for k, v in arrays.items()})


def test_held_out_text_is_row_column_pairs():
    assert histories.held_out_text(np.array([7, 14, 80])) == "(0, 7), (1, 5), (8, 8)"


def test_dataset_numbers_give_the_split_and_the_cost_of_a_step(dataset):
    learning, _ = dataset
    nums = histories.dataset_numbers(CFG, learning)
    _, held_out = experiments.goal_split(CFG)
    assert nums["ch3_train_goals"] == 65 and nums["ch3_held_out"] == histories.held_out_text(held_out)
    assert nums["ch3_bytes_per_step"] == history.bytes_per_step(learning) > 0


@pytest.mark.parametrize("episodes, expected", [(0, 1), (9, 1), (10, 1), (19, 1), (20, 2), (400, 40)])
def test_a_tenth_is_at_least_one_episode(episodes, expected):
    assert histories.tenth(episodes) == expected


def test_dataset_table_shows_size_and_early_and_late_returns(dataset):
    learning, expert = dataset
    shown = histories.dataset_table({"knowledge": learning}, {"knowledge": expert}).data.splitlines()
    assert shown[0].startswith("| dataset | runs | recorded episodes | steps | bytes per step |")
    returns = history.per_run(learning, history.episode_totals(learning))[1]  # (runs, recorded episodes)
    k = histories.tenth(returns.shape[1])
    early, late = np.nanmean(returns[:, :k]), np.nanmean(returns[:, -k:])
    assert shown[2] == (f"| knowledge / learning | 81 | 1,620 | 32,400 | {history.bytes_per_step(learning):.1f} | "
                        f"{early:.2f} | {late:.2f} |")
    assert shown[3].startswith("| knowledge / expert | 81 | ")


def test_recording_matches_the_rerun_learners_and_nothing_else(dataset):
    learning, _ = dataset
    behaviour, _ = experiments.source_returns(CFG)
    assert histories.recording_matches(learning, behaviour, CFG.every)
    behaviour[3, 5] += 1
    assert not histories.recording_matches(learning, behaviour, CFG.every)


def test_greedy_gap_reads_only_the_first_quarter():
    behaviour = np.zeros((2, 8))
    greedy = np.concatenate([np.ones((2, 2)), np.full((2, 6), 100.0)], axis=1)  # quarter of 8 episodes = 2
    assert histories.greedy_gap(behaviour, greedy) == 1.0
    nums = histories.gap_numbers({"knowledge": (behaviour, greedy), "epsilon": (greedy, greedy)})
    assert nums == {"ch3_gap_knowledge": 1.0, "ch3_gap_epsilon": 0.0}


def test_source_and_drift_figures(dataset):
    learning, _ = dataset
    behaviour, greedy = experiments.source_returns(CFG)
    fig, (a, b, c) = plt.subplots(1, 3)
    histories.plot_source(a, behaviour, greedy, "knowledge", legend=True)
    histories.plot_actions(b, learning)
    histories.plot_return_and_epsilon(c, learning)
    assert a.get_title() == "source: knowledge" and len(a.collections) == 2, "two curves with bands"
    assert len(b.collections) == len(experiments.ACTION_NAMES), "one band per action"
    assert [line.get_label() for line in c.lines] == ["mean return", "10 × ε"]
    assert np.allclose(c.lines[1].get_ydata(), 10 * 0.1), "the knowledge source keeps ε = 0.1"
    plt.close(fig)


def test_visitation_maps_are_normalised_grids(dataset):
    learning, expert = dataset
    maps = histories.visitation_maps(learning, expert, np.array(learning.runs()))
    assert list(maps) == ["learning: first 10%", "learning: last 10%", "expert"]
    assert all(m.shape == (9, 9) and m.sum() == pytest.approx(1.0) for m in maps.values())


def test_run_paths_are_every_recorded_episode_of_a_run(dataset):
    learning, _ = dataset
    paths, returns = histories.run_paths(learning, 5)
    assert paths.shape == (20, 20)  # 20 recorded episodes of 20 steps
    recorded = history.per_run(learning, history.episode_totals(learning))[1]
    np.testing.assert_array_equal(returns, recorded[list(learning.runs()).index(5)])


def test_game_numbers_say_missing_when_no_game_is_recorded():
    nums = histories.game_numbers({})
    assert len(nums) == 7 * len(histories.GAMES)
    assert nums["ch3_breakout_learning_steps"] == nums["ch3_invaders_expert_steps"] == "(not recorded)"
    assert all(math.isnan(v) for k, v in nums.items() if not k.endswith("_steps"))


def test_game_numbers_read_the_first_and_last_tenth():
    nums = histories.game_numbers({"breakout": game()})
    assert nums["ch3_breakout_learning_steps"] == "12,345" and nums["ch3_breakout_expert_steps"] == "10"
    assert nums["ch3_breakout_learning_bytes"] == pytest.approx(1000 / 12_345)
    assert nums["ch3_breakout_expert_bytes"] == 5.0
    assert nums["ch3_breakout_early"] == 1.0 and nums["ch3_breakout_late"] == 5.0  # NaN is skipped
    assert nums["ch3_breakout_expert"] == 9.0
    assert math.isnan(nums["ch3_invaders_early"])


def test_game_figures(dataset):
    fig, axes = plt.subplots(1, 4)
    histories.plot_game_history(axes[:3], game(), "Breakout")
    histories.plot_game_actions(axes[3], game(), "Breakout")
    assert [ax.get_title() for ax in axes] == ["Breakout: return", "Breakout: length", "Breakout: epsilon",
                                               "Breakout: actions along the history"]
    assert len(axes[2].lines) == 1, "no expert line for ε"
    assert axes[0].lines[0].get_xdata()[-1] == 180.0, "the episode only one seed reached is left out"
    assert len(axes[3].collections) == len(histories.MINATAR_ACTIONS)
    plt.close(fig)


def test_load_game_says_how_to_record_a_missing_game(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path))
    assert histories.load_game(get_scale("lab"), "MinAtar/Breakout-v0") is None
    assert "`python -m imitlib record minatar --env MinAtar/Breakout-v0 --scale lab`" in capsys.readouterr().out


def test_darkroom_readers_open_both_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    configs, learning, expert = histories.darkroom_readers(get_scale("ci"))
    assert list(configs) == list(learning) == list(expert) == list(histories.SOURCES)
    assert all(learning[s].n_episodes == 81 * configs[s].episodes // configs[s].every for s in histories.SOURCES)


def test_histories_with_moving_goals_pay_at_the_goal_of_the_moment_and_stay_in_their_split(tmp_path):
    histories.record_darkroom(CFG, tmp_path, moves=2)
    reader = HistoryReader(tmp_path / "learning")
    meta = reader.manifest["meta"]
    assert meta["moves"] == 2 and meta["moved_at"] == [6, 13]
    train, held = histories.goal_split(CFG)
    for run in reader.runs()[:40]:
        goal = reader.task(run)["goal"]
        w = reader.window(run, 0, CFG.episodes)
        cells = w["obs"][:, 0].reshape(CFG.episodes, 20).astype(int)
        actions = w["action"].reshape(CFG.episodes, 20).astype(int)
        arrived = imitlib.envs.darkroom.transition_table()[cells, actions]
        reward = w["reward"].reshape(CFG.episodes, 20) > 0
        paid = [set(arrived[a:b][reward[a:b]].tolist()) for a, b in ((0, 6), (6, 13), (13, 20))]
        assert paid[0] <= {goal}, "before the first move only the starting goal pays"
        assert all(len(p) <= 1 for p in paid), "one goal at a time"
        assert all(p != q for p, q in itertools.pairwise(paid) if p and q), "every move goes to another cell"
        assert set().union(*paid) <= set((train if goal in train else held).tolist())
