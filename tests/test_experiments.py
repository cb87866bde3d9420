import numpy as np
import pytest

from imitlib import experiments
from imitlib.experiments import (
    TabularExperiment,
    episodes_to_reach,
    experiment_goals,
    mirrored_goal,
    reach_summary,
    run_tabular_experiment,
)
from imitlib.scale import get_scale


def test_mirrored_goal():
    assert mirrored_goal(0) == 80 and mirrored_goal(80) == 0 and mirrored_goal(40) == 40
    assert mirrored_goal(1 * 9 + 7) == 7 * 9 + 1


def test_goals_exclude_the_centre_and_are_fixed_by_seed():
    exp = TabularExperiment(seeds=2, goals=81, episodes=5, switch_episodes=5)
    goals = experiment_goals(exp)
    assert 40 not in goals and len(goals) == 80
    small = TabularExperiment(seeds=2, goals=6, episodes=5, switch_episodes=5)
    np.testing.assert_array_equal(experiment_goals(small), experiment_goals(small))


def test_episodes_to_reach():
    curves = np.array([[0, 0, 5, 5, 5, 5], [0, 0, 0, 0, 0, 0]], dtype=float)
    got = episodes_to_reach(curves, 5.0, window=2)
    assert got[0] == 3 and np.isnan(got[1])
    assert "1 of 2 seeds" in reach_summary(got) and "never" in reach_summary(got[1:])


def test_pipeline_shapes_and_story_at_ci_scale():
    exp = experiments.tabular_experiment(get_scale("ci"))
    out = run_tabular_experiment(exp)
    n_learners = len(exp.learners)
    assert out["learn_returns"].shape == (n_learners, exp.seeds, exp.episodes)
    assert out["switch_greedy"].shape == (n_learners, exp.seeds, 2 * exp.switch_episodes)
    n = exp.switch_episodes
    before, after = out["switch_returns"][:, :, n - 10:n].mean(), out["switch_returns"][:, :, n:n + 3].mean()
    assert before > 10 > after, "learners converge, then collapse when the goal moves"
    assert out["showcase_values"].shape[1] == 81 and out["showcase_paths"].shape[1] == 21
    assert out["showcase_at"][0] == 0 and out["showcase_at"][-1] == 2 * n


def test_showcase_matches_the_batched_run_of_the_same_seed():
    """The single-run showcase reuses the batched code, so one run alone equals itself in a batch."""
    exp = TabularExperiment(seeds=2, goals=3, episodes=20, switch_episodes=15, showcase_snapshots=5)
    a, b = experiments.showcase_run(exp), experiments.showcase_run(exp)
    np.testing.assert_array_equal(a["showcase_values"], b["showcase_values"])


def test_darkroom_histories_split_and_sources(tmp_path, monkeypatch):
    from imitlib.history import HistoryReader

    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    cfg = experiments.DarkRoomHistories(source="epsilon", runs_per_goal=1, episodes=20, every=5)
    train, held_out = experiments.goal_split(cfg)
    assert len(train) == 65 and len(held_out) == 16 and not set(train) & set(held_out)
    folder = experiments.darkroom_histories(cfg, get_scale("ci"))
    learning = HistoryReader(folder / "learning")
    assert learning.n_episodes == 81 * 4 and learning.manifest["meta"]["held_out_goals"] == held_out.tolist()
    assert learning.task(5)["split"] == ("train" if 5 in train else "held_out")
    expert = HistoryReader(folder / "expert")
    assert expert.n_episodes == 81 * cfg.expert_episodes
    behaviour, greedy = experiments.source_returns(cfg)
    assert behaviour.shape == greedy.shape == (81, 20)
    with pytest.raises(ValueError, match="source must be one of"):
        experiments.record_darkroom(experiments.DarkRoomHistories(source="magic", runs_per_goal=1, episodes=2),
                                    tmp_path / "x")


def test_by_learner_labels_results():
    exp = experiments.tabular_experiment(get_scale("ci"))
    labelled = experiments.by_learner(exp, np.zeros((len(exp.learners), 3, 4)))
    assert list(labelled) == [name for name, _ in exp.learners] and labelled[exp.learners[0][0]].shape == (3, 4)


def test_optimal_actions_move_closer_or_stay():
    from imitlib.experiments import optimal_actions

    ok = optimal_actions(np.array([[40, 0]]), np.array([0]))
    # from the centre (row 4, col 4) towards the corner (0, 0): up or left; at the goal itself: stay (or bump the wall)
    assert ok[0, 0].tolist() == [False, True, False, True, False]
    assert ok[0, 1].tolist() == [True, True, False, True, False]


def test_darkroom_students_at_ci_scale_compare_kinds_on_the_same_budget():
    scale = get_scale("ci")
    ad, ed = (experiments.darkroom_students_config(scale, kind) for kind in ("ad", "ed"))
    assert ad.student.updates == ed.student.updates and ad.student.model == ed.student.model
    out = experiments.run_darkroom_students(ed, scale, progress=False)
    n = len(ed.seeds)
    assert out["held_out/sampled_returns"].shape == (n, 16 * ed.eval_repeats, ed.eval_episodes)
    assert np.all((out["train/greedy_optimal_share"] >= 0) & (out["train/greedy_optimal_share"] <= 1))
    model = experiments.student_network(type("A", (), {"data": out})(), ed.student, 1)
    assert not model.training


def test_an_ablation_trains_its_students_in_place_and_rolls_them_out():
    scale = get_scale("ci")
    test = experiments.ablation_test(scale, "context 1 episode")
    assert not test.store_students and test.students.student.model.block_size == 20
    out = experiments.run_in_context(test, scale, progress=False)
    seeds = len(test.students.seeds)
    assert out["sampled_returns"].shape == (seeds, 16 * test.repeats, test.episodes)
    assert out["loss"].shape[0] == seeds and "wall_seconds" in out
    with pytest.raises(ValueError, match="choose from"):
        experiments.ablation_test(scale, "no such ablation")


def test_probe_features_and_learning_prompt_at_ci_scale(tmp_path, monkeypatch):
    from imitlib.history import HistoryReader
    from imitlib.transformer import Student

    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    scale = get_scale("ci")
    ad = experiments.darkroom_students_config(scale, "ad")
    reader = HistoryReader(experiments.darkroom_histories(ad.data, scale) / "learning")
    model = Student(ad.student.model).eval()
    runs = reader.runs()[:3]
    feats, goal, progress = experiments.probe_features(model, reader, runs, k=4, windows=2, seed=0)
    assert feats.shape == (ad.student.model.n_layer + 1, 6, 4, ad.student.model.n_embd)
    assert goal.shape == (6, 2) and np.all((progress >= 0) & (progress <= 1))
    assert [tuple(g) for g in goal[::2]] == [divmod(reader.task(r)["goal"], 9) for r in runs]
    test = experiments.in_context_config(scale, ad, prompt_episodes=3)
    goals = np.array([5, 5, 70])
    prompt = experiments.learning_prompt(test, scale, goals)
    assert prompt["obs"].shape == prompt["action"].shape == (3, 60)
    # rollout r of a goal gets the goal's r-th recorded run (ci records one run per goal, so the same one)
    assert np.array_equal(prompt["action"][0], prompt["action"][1]) == (ad.data.runs_per_goal == 1)
    assert not np.array_equal(prompt["obs"][0], prompt["obs"][2]), "another goal, another history"


def test_ready_is_true_at_ci_and_only_for_stored_artifacts_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path))
    lab, ci = get_scale("lab"), get_scale("ci")
    assert experiments.ready("anything", {"a": 1}, ci)
    assert not experiments.ready("anything", {"a": 1}, lab)
    test = experiments.ablation_test(lab, "shuffled episode order")
    assert not experiments.in_context_ready(test, lab)
    invaders = experiments.teacher_experiment(lab, "MinAtar/SpaceInvaders-v0")
    assert not experiments.minatar_histories_ready(invaders, lab)
    assert experiments.minatar_histories_name(invaders) == "ch03_histories_MinAtar_SpaceInvaders-v0"


def test_in_context_change_is_per_seed_last_minus_first():
    returns = np.zeros((2, 3, 6))
    returns[0, :, -2:] = 4.0  # seed 0 improves by 4 in its last 2 episodes
    returns[1, 0, :2] = 3.0  # seed 1 gets worse: one of three rollouts scored 3 at the start
    np.testing.assert_allclose(experiments.in_context_change(returns, 2), [4.0, -1.0])


def test_ablation_effects_sort_by_interval_against_the_reference():
    from imitlib.stats import Interval

    ci = {"AD": Interval(4.0, 3.0, 5.0), "context 1 episode": Interval(0.1, -0.2, 0.5),
          "context 2 episodes": Interval(2.0, 1.5, 2.5), "shuffled episode order": Interval(4.5, 3.2, 5.8),
          "not an ablation": Interval(-9.0, -10.0, -8.0)}
    effect = experiments.ablation_effects(ci, reference="AD")
    assert effect == {"cost": ["context 1 episode", "context 2 episodes"], "flat": ["context 1 episode"],
                      "kept": ["shuffled episode order"]}


def test_a_resumable_recording_gets_its_partial_folder_back(tmp_path, monkeypatch):
    from imitlib.experiments.common import recorded_dataset

    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    seen = []

    def record(folder):
        seen.append(sorted(p.name for p in folder.iterdir()))
        (folder / f"part{len(seen)}").write_text("x")
        if len(seen) == 1:
            raise KeyboardInterrupt  # killed after writing its first part
        return {"seconds": 1.0}

    lab = get_scale("lab")
    with pytest.raises(KeyboardInterrupt):
        recorded_dataset("toy", {"a": 1}, lab, record, resumable=True)
    folder = recorded_dataset("toy", {"a": 1}, lab, record, resumable=True)
    assert seen == [[], ["part1"]], "the second call resumed what the first had written"
    assert sorted(p.name for p in folder.iterdir()) == ["part1", "part2", "provenance.json"]
    assert recorded_dataset("toy", {"a": 1}, lab, record, resumable=True) == folder and len(seen) == 2
    assert not list(folder.parent.glob("*.partial*"))
    seen.clear()
    with pytest.raises(KeyboardInterrupt):  # not resumable: every call starts from an empty folder
        recorded_dataset("toy", {"a": 2}, lab, record)
    recorded_dataset("toy", {"a": 2}, lab, record)
    assert seen == [[], []]
