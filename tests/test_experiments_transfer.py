"""Chapter 7: the 'learns the new game' verdict, the frozen students' step curves, the transplant and the rooms."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from imitlib import stats
from imitlib.experiments import new_game, relabelled_room, transfer, transplant
from imitlib.scale import get_scale

RNG = np.random.default_rng(0)


def curves(start: float, end: float, seeds: int = 6, points: int = 50, noise: float = 0.3) -> np.ndarray:
    """Seeds' curves rising linearly from ``start`` to ``end``, with noise."""
    return np.linspace(start, end, points)[None] + noise * RNG.standard_normal((seeds, points))


def test_a_learner_that_rises_above_random_learns_and_the_others_do_not():
    assert transfer.learns(curves(1, 10), random=2)
    assert not transfer.learns(curves(5, 5), random=2)  # flat: no gain
    assert not transfer.learns(curves(0.1, 1.0), random=2)  # rises, but ends below random play
    assert not transfer.learns(curves(10, 1), random=2)  # falls
    assert transfer.learns_text(curves(0.1, 1.0), 2).startswith("improves, but does not end clearly above random")
    assert transfer.learns_text(curves(10, 1), 2).startswith("gets worse")
    assert transfer.learns_text(curves(5, 5), 2).startswith("does not improve")
    assert transfer.learns_text(None, 2) == "not measured at this scale yet"


def test_start_and_end_are_the_first_and_last_tenth_and_skip_empty_bins():
    x = np.tile(np.arange(20.0), (3, 1))
    x[:, 0] = np.nan  # an empty first bin
    start, end = transfer.edge_means(x)
    assert (start == 1.0).all() and (end == 18.5).all()  # bins 0-1 (bin 0 empty) and 18-19
    edges = transfer.start_end(x)
    assert float(edges["gain"].estimate) == pytest.approx(17.5)


def test_the_students_end_is_read_against_random_play_for_each_kind():
    """Below random play for both kinds says so (and what it means); a split names each kind; none stored says so."""
    flat = np.linspace(-0.1, 0.1, 6)[:, None] + np.zeros((6, 50))  # six students, each flat; no draws from RNG
    art = {f"{k}_sampled_curve": 0.5 + flat for k in new_game.KINDS}
    assert new_game.against_random(art, 2.82) == ("both kinds end below random play (2.82): what they bring from "
                                                  "Breakout does worse here than pressing buttons at random")
    art["ad_sampled_curve"] = 5 + flat
    assert new_game.against_random(art, 2.82) == ("the ED students end below random play and the AD students above "
                                                  "random play (2.82)")
    art["ed_sampled_curve"] = 2.82 + flat
    assert new_game.against_random(art, 2.82).startswith("the ED students end level with random play")
    assert new_game.against_random(None, 2.82) == "not measured at this scale yet"


def test_a_frozen_policy_reads_flat_by_midpoint_where_by_end_it_seems_to_improve():
    """Episodes of random length and return equal to length, in one environment: no learning at all."""
    from imitlib.experiments.game_beyond import step_curve

    lengths = RNG.integers(1, 400, size=20_000)
    ends = (np.cumsum(lengths) - 1)[None]  # (1 env, episodes), the vector step each ended
    total = int(ends[0, -1]) + 1
    edges = np.linspace(0, total // 2, 21)  # half the run: the episodes after it are cut off, as in a rollout
    inside = ends < total // 2
    returns = np.where(inside, lengths[None].astype(float), np.nan)
    ends = np.where(inside, ends, -1)
    by_mid = new_game.midpoint_curve(np.nan_to_num(returns), ends, 1, edges)
    by_end = step_curve(np.nan_to_num(returns), ends, 1, edges)
    mid_start, mid_end = transfer.edge_means(by_mid[None])
    end_start, _ = transfer.edge_means(by_end[None])
    assert abs(mid_end[0] - mid_start[0]) < 0.05 * mid_start[0]  # symmetric censoring: flat
    assert end_start[0] < mid_start[0]  # by the end, the first bins hold only short (low-return) episodes


def test_source_weights_take_every_seeds_final_weights_and_nothing_else():

    art = SimpleNamespace(data={"weights/weights.0": np.ones((2, 3)), "weights/biases.0": np.zeros((2, 3)),
                                "snapshots/weights.0": np.ones((4, 3)), "eval_means": np.ones((2, 5))})
    got = transplant.source_weights(art)
    assert set(got) == {"weights.0", "biases.0"} and all(isinstance(v, torch.Tensor) for v in got.values())


def test_the_transplant_pairs_each_breakout_teacher_with_a_space_invaders_seed_and_the_same_settings():
    test = transplant.transplant_config(get_scale("lab"))
    assert test.source.dqn.env_id == "MinAtar/Breakout-v0" and test.target.dqn.env_id == transfer.NEW_GAME
    assert test.source.seeds == test.target.seeds
    same = {k: v for k, v in test.source.dqn.__dict__.items() if k != "env_id"}
    assert same == {k: v for k, v in test.target.dqn.__dict__.items() if k != "env_id"}


def test_at_full_scale_the_new_game_is_ales_and_every_breakout_weight_fits_it():
    """Part 5: ALE Breakout's networks move into ALE Space Invaders (all 18 actions in both), not into MinAtar's."""
    from imitlib.dqn import StackedNet, make_network
    from imitlib.envs.games import game_spec

    assert transfer.new_game(get_scale("lab")) == transfer.NEW_GAME == "MinAtar/SpaceInvaders-v0"
    full = get_scale("full")
    test = transplant.transplant_config(full, transfer.new_game(full))
    assert (test.source.dqn.env_id, test.target.dqn.env_id) == ("ALE/Breakout-v5", "ALE/SpaceInvaders-v5")
    specs = [game_spec(t.dqn.env_id, full_action_space=t.dqn.full_action_space) for t in (test.source, test.target)]
    assert specs[0].n_actions == specs[1].n_actions == 18 and specs[0].obs_shape == specs[1].obs_shape
    source, target = (StackedNet(lambda t=t, s=s: make_network(t.dqn, s), [0])
                      for t, s in zip((test.source, test.target), specs, strict=True))
    target.load_state_dict(source.state_dict())  # strict: every weight has a place of the same shape
    assert new_game.frozen_config(full, transfer.new_game(full)).env_id == "ALE/SpaceInvaders-v5"


def test_frozen_students_play_ale_with_all_18_actions(monkeypatch):
    """The students learned ALE Breakout with 18 actions; the new game must offer the same 18 (MinAtar: no option)."""
    import imitlib.imitation

    said = []

    def rollout(model, env_id, **kwargs):
        said.append(kwargs.get("full_action_space"))
        return {"returns": np.ones((2, 1)), "ends": np.zeros((2, 1), int)}

    monkeypatch.setattr(new_game, "train_game_seed", lambda *a: SimpleNamespace(model=None))
    monkeypatch.setattr(imitlib.imitation, "game_rollout", rollout)
    student = SimpleNamespace(context_steps=8)
    for env_id in ("ALE/SpaceInvaders-v5", transfer.NEW_GAME):
        new_game.frozen_seed(student, "h", 0, None, False, env_id=env_id, num_envs=2, steps=8,
                             edges=np.array([0.0, 8.0]))
    assert said == [True, True, None, None]  # sampled and greedy on ALE; MinAtar's own action set


def test_the_chapter_says_whether_it_stores_its_ale_results(monkeypatch):
    from imitlib import artifacts

    assert transfer.ale_sentence(get_scale("lab")) == "stores neither of those ALE results: they need a GPU"
    monkeypatch.setattr(artifacts, "is_stored", lambda name, cfg, scale: scale == "full")
    assert transfer.ale_sentence(get_scale("lab")).startswith("stores the transplanted teachers and the frozen "
                                                              "students on ALE")
    assert transfer.ale_sentence(get_scale("full")).startswith("is the full scale's")


def test_leave_one_out_is_not_run_on_ale(capsys):
    from imitlib.experiments import leave_one_out

    assert leave_one_out.runs_at(get_scale("lab")) and not leave_one_out.runs_at(get_scale("full"))
    assert leave_one_out.load_leave_one_out(get_scale("full")) == {}
    assert "MinAtar experiment" in capsys.readouterr().out


def test_the_rooms_are_the_original_then_derangements_fixed_by_the_seed():
    test = relabelled_room.relabelled_config(get_scale("lab"))
    moves = relabelled_room.room_moves(test)
    assert moves.shape == (11, 5) and (moves[0] == np.arange(5)).all()
    assert (moves[1:] != np.arange(5)).all() and (relabelled_room.room_moves(test) == moves).all()
    assert test.episodes == test.students.data.episodes == 400


def test_a_breakout_student_plays_space_invaders_frozen():
    """The shared observation space: a student built for Breakout's frames reads Space Invaders' as they come."""
    from imitlib.imitation import game_rollout
    from imitlib.transformer import Student

    cfg = new_game.frozen_config(get_scale("ci"))
    assert cfg.ed.teacher.dqn.env_id == "MinAtar/Breakout-v0" and cfg.env_id == transfer.NEW_GAME
    torch.manual_seed(0)
    model = Student(cfg.ed.student.model)
    roll = game_rollout(model, cfg.env_id, num_envs=2, episodes=3, context_steps=16, seed=1, max_steps=60)
    assert roll["returns"].shape == (2, 3) and int(roll["steps"]) > 0


def game_history(path, game: str, runs: int, steps: int, action: int):
    """A tiny MinAtar-shaped history: ``runs`` runs of one ``steps``-step episode, every action ``action``, the
    object channel ``action`` lit in every frame."""
    from imitlib.envs.observations import encode
    from imitlib.history import Episode, HistoryReader, HistoryWriter

    frame = np.zeros((steps, 10, 10, 10), bool)
    frame[..., action] = True
    with HistoryWriter(path, obs_kind="minatar", obs_shape=(10, 10, 10), n_actions=6, meta={"game": game}) as w:
        for run in range(runs):
            w.set_run(run, game=game, seed=run)
            w.add(Episode(run=run, episode=0, obs=encode(frame), action=np.full(steps, action),
                          reward=np.zeros(steps, np.float32), terminated=np.eye(1, steps, steps - 1, dtype=bool)[0],
                          truncated=np.zeros(steps, bool), update=np.arange(steps), epsilon=np.ones(steps, np.float32)))
    return HistoryReader(path)


def test_several_games_read_as_one_history_and_relabelled_the_same_way_every_time(tmp_path):
    from imitlib import augment
    from imitlib.envs.observations import encode
    from imitlib.multigame import MultiGameHistory

    games = [game_history(tmp_path / "a", "A", 2, 40, action=1), game_history(tmp_path / "b", "B", 3, 40, action=4)]
    plain = MultiGameHistory(games)
    assert len(plain.runs()) == 5 and {plain.task(r)["game"] for r in plain.runs()} == {"A", "B"}
    drawn = list(plain.step_windows(8, 200, seed=0))
    assert {int(w["action"][0]) for w in drawn} == {1, 4}  # windows from both games
    relabelled = MultiGameHistory(games, relabel_seed=3, copies=2)
    assert len(relabelled.runs()) == 10
    for run in relabelled.runs()[:4]:
        label = augment.relabelling(3, run, 10, 6)
        source = 1 if relabelled.task(run)["game"] == "A" else 4
        window = relabelled.step_window(run, 5, 8)
        assert (window["action"] == label.actions[source]).all()  # every action of the run moved the same way
        lit = np.zeros((8, 10, 10, 10), bool)
        lit[..., label.channels[source]] = True
        assert (window["obs"] == encode(lit)).all()  # and its channel moved where the relabelling says
        assert (relabelled.step_window(run, 0, 8)["action"] == window["action"]).all()
    copies = [relabelled.step_window(r, 0, 4)["action"][0] for r in relabelled.runs()]
    assert len(set(copies)) > 1  # copies of a history are relabelled differently
    with pytest.raises(ValueError, match="copies > 1 only make sense relabelled"):
        MultiGameHistory(games, copies=2)


def test_leave_one_out_trains_on_the_scales_games_and_tests_on_the_one_they_never_saw():
    from imitlib.experiments import leave_one_out

    lab = leave_one_out.leave_one_out_config(get_scale("lab"), relabel=True)
    games = [t.dqn.env_id for t in lab.teachers]
    assert games == list(leave_one_out.TRAIN_GAMES) and lab.new_game not in games
    assert lab.student.kind == "ad" and lab.steps == 1_000_000 and lab.seeds == (0, 1, 2, 3, 4)
    assert len(leave_one_out.leave_one_out_config(get_scale("ci"), relabel=True).teachers) == 2



def test_leave_one_out_records_every_game_once_before_any_student_trains(monkeypatch):
    """Recording is a teacher's training: as units of their own, first, two workers never record one game twice."""
    from imitlib.experiments import leave_one_out

    ci = get_scale("ci")
    test = leave_one_out.leave_one_out_config(ci, relabel=False)
    calls = []
    monkeypatch.setattr(leave_one_out, "record_game", lambda t, s, e: calls.append(("record", t.dqn.env_id)) or "")
    monkeypatch.setattr(leave_one_out, "student_unit",
                        lambda t, s, i, progress=True: calls.append(("student", i)) or {"loss": np.ones(2) * i})
    out = leave_one_out.run_leave_one_out(test, ci, progress=False)
    assert calls == [("record", t.dqn.env_id) for t in test.teachers] + [("student", i) for i in test.seeds]
    assert out["loss"].shape == (len(test.seeds), 2)

def test_the_leave_one_out_reading_names_each_set_and_game_and_draws_the_dqn_only_on_the_new_game():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imitlib.experiments import leave_one_out

    edges = np.linspace(0, 100, 51)
    plain = {"new_sampled_curve": curves(1, 1), "seen_sampled_curve": curves(1, 10), "new_edges": edges,
             "seen_edges": edges}
    rows = leave_one_out.table_rows({False: plain}, "seen", "sampled", random=0.5)
    assert [r[0] for r in rows] == ["AD on other games, as recorded: Breakout, seen (sampled)",
                                    "AD on other games, relabelled: Breakout, seen (sampled)"]
    assert rows[0][-1].startswith("learns") and rows[1][-1] == "not measured at this scale yet"
    assert leave_one_out.table_rows({False: plain}, "new", "sampled", 0.5)[0][-1].startswith("does not improve")
    scratch = {"train_steps": np.arange(50), "train_returns": curves(0, 5)}
    labels = {}
    for game in ("new", "seen"):
        fig, ax = plt.subplots()
        leave_one_out.plot_leave_one_out(ax, {False: plain}, game, "sampled", 0.5, game, teachers={"scratch": scratch})
        labels[game] = " | ".join(line.get_label() for line in ax.get_lines())
        plt.close(fig)
    assert transplant.LABELS["scratch"] in labels["new"] and transplant.LABELS["scratch"] not in labels["seen"]
    assert leave_one_out.LABELS[False] in labels["seen"]
    only = transplant.table_rows({"scratch": scratch}, "sampled", 0.5, ("scratch",))
    assert [r[0] for r in only] == ["DQN from scratch (training behaviour, ε-greedy)"]


def test_the_leave_one_out_sets_are_placed_against_random_play_by_the_ci_of_their_end():
    from imitlib.experiments import leave_one_out

    low, high = {"new_sampled_curve": curves(1, 1, noise=0.1)}, {"new_sampled_curve": curves(5, 5, noise=0.1)}
    assert leave_one_out.against_random({False: low, True: high}, 3.0) == (
        "trained on the histories as recorded, they end below random play; "
        "trained relabelled, they end above random play (3.00)")
    assert leave_one_out.against_random({True: {"new_sampled_curve": curves(3, 3, noise=0.5)}}, 3.0) == (
        "trained relabelled, they end level with random play (3.00)")
    assert leave_one_out.against_random({}, 3.0) == "not measured at this scale yet"


def test_the_pretraining_sentence_says_helps_or_hurts_only_when_the_whole_ci_does():
    def effect(lo: float, hi: float) -> stats.Interval:
        return stats.Interval(np.float64((lo + hi) / 2), np.float64(lo), np.float64(hi))

    assert transplant.pretraining_text(effect(-7.0, -4.0)).startswith("hurts: 5.50 [4.00, 7.00] less return")
    assert transplant.pretraining_text(effect(1.0, 3.0)).startswith("helps: 2.00 [1.00, 3.00] more return")
    assert transplant.pretraining_text(effect(-1.0, 3.0)).startswith("makes no clear difference")
    assert transplant.pretraining_text(None) == "not measured at this scale yet"
