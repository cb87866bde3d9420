"""Chapter 4's numbers, verdicts and figures: the snapshot test read out, the game's students, the answer."""

import matplotlib

matplotlib.use("Agg")

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from imitlib import experiments
from imitlib.artifacts import Artifact
from imitlib.envs.darkroom import optimal_return, random_policy_return
from imitlib.experiments import game_students, students
from imitlib.experiments.common import RECOVERY_BAR
from imitlib.scale import get_scale

CI = get_scale("ci")
DATA = experiments.DarkRoomHistories(source="knowledge", runs_per_goal=1, episodes=20)  # re-runs in milliseconds
GOALS = {"train": np.array([0, 40]), "held_out": np.array([8, 80])}
REFS = {"teacher": {"train": np.array([10.0, 6.0]), "held_out": np.array([4.0, 4.0])},
        "random": {"train": np.array([0.5, 0.5]), "held_out": np.array([0.25, 0.25])},
        "optimal": {"train": np.array([18.0, 20.0]), "held_out": np.array([17.0, 19.0])}}


def artifact(**arrays) -> Artifact:
    return Artifact(data={k: np.asarray(v) for k, v in arrays.items()}, provenance={}, path=None, loaded=False)


def students_artifact(level: float, seeds: int = 2) -> Artifact:
    """Stored students whose every sampled return is ``level`` and every greedy return ``level + 1``."""
    data = {"goals/train": GOALS["train"], "goals/held_out": GOALS["held_out"],
            "loss": np.ones((seeds, 3)), "accuracy": np.full((seeds, 3), 0.5), "wall_seconds": np.full(seeds, 60.0)}
    for split in students.SPLITS:
        for mode, value in (("sampled", level), ("greedy", level + 1)):
            data[f"{split}/{mode}_returns"] = np.full((seeds, 4, 5), value)  # (seeds, goals * repeats, episodes)
            data[f"{split}/{mode}_optimal_share"] = np.full((seeds, 4), 0.25)
    return artifact(**data)


@pytest.fixture
def snap() -> students.Snapshot:
    """ED at 2 (sampled) / 3 (greedy), AD at 4 / 5; the teacher scores 8 on train and 4 on held-out goals."""
    return students.snapshot_from({"ED": students_artifact(2.0), "AD": students_artifact(4.0)}, REFS)


def game(student: list[list[float]], teacher: list[list[float]], agreement: list[float]) -> Artifact:
    return artifact(returns=student, teacher_returns=teacher, agreement=agreement)


def test_commands_name_the_kind_and_leave_the_scale_to_load_or_explain():
    assert students.student_command("ad") == "python -m imitlib student --kind ad --scale {scale}"
    command = game_students.GAME_COMMAND.format(scale="lab")
    assert command == "python -m imitlib student --kind ed --data minatar --scale lab"


def test_student_configs_are_ed_then_ad_with_the_same_model():
    configs = students.student_configs(CI)
    assert list(configs) == ["ED", "AD"]
    assert [c.student.kind for c in configs.values()] == ["ed", "ad"]
    assert configs["ED"].student.model == configs["AD"].student.model


def test_load_students_leaves_out_a_kind_that_is_not_stored(monkeypatch, capsys, fake_load_or_explain):
    lab = get_scale("lab")
    stored = students_artifact(1.0)
    monkeypatch.setattr(students, "load_or_explain", fake_load_or_explain("--kind ad", stored))
    arts = students.load_students(lab, students.student_configs(lab))
    assert arts == {"AD": stored}
    assert "--kind ed" in capsys.readouterr().out


def test_setup_numbers_cite_the_budget_and_the_mean_training_time():
    cfg = students.student_configs(CI)["AD"]
    nums = students.setup_numbers(cfg, {"ED": students_artifact(1.0), "AD": artifact(wall_seconds=[120.0, 240.0])})
    assert nums["ch4_updates"] == f"{cfg.student.updates:,}" and nums["ch4_batch"] == cfg.student.batch_size
    assert int(nums["ch4_params"].replace(",", "")) > 0
    assert nums["ch4_minutes"] == pytest.approx((1.0 + 3.0) / 2)
    assert math.isnan(students.setup_numbers(cfg, {})["ch4_minutes"])


def test_plot_training_draws_both_kinds_on_both_axes():
    fig, axes = plt.subplots(1, 2)
    configs = students.student_configs(CI)
    students.plot_training(axes, {"ED": students_artifact(1.0), "AD": students_artifact(2.0)}, configs)
    every = configs["AD"].student.checkpoint_every
    assert [line.get_xdata().tolist() for line in axes[0].lines] == [[every, 2 * every, 3 * every]] * 2
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["ED (n=2)", "AD (n=2)"]
    plt.close(fig)


def test_references_are_the_teacher_snapshot_random_and_optimal_returns_per_goal():
    refs = students.references(DATA, GOALS)
    for split, goals in GOALS.items():
        teacher = experiments.teacher_snapshot_returns(DATA, goals).mean(1)
        assert np.array_equal(refs["teacher"][split], teacher)
        assert refs["random"][split].tolist() == [random_policy_return(int(g)) for g in goals]
        assert refs["optimal"][split].tolist() == [optimal_return(int(g)) for g in goals]


def test_tested_goals_come_from_the_artifact_and_no_student_means_no_snapshot():
    assert {k: v.tolist() for k, v in students.tested_goals({"ED": students_artifact(1.0)}).items()} == \
        {k: v.tolist() for k, v in GOALS.items()}
    assert students.snapshot(DATA, {}) is None


def test_snapshot_scores_are_per_seed_means(snap):
    assert snap.score[("AD", "held_out", "greedy")].tolist() == [5.0, 5.0]
    assert snap.optimal_share[("ED", "train", "sampled")] == 0.25
    assert list(snap.score)[:4] == [("ED", "train", "sampled"), ("AD", "train", "sampled"),
                                   ("ED", "train", "greedy"), ("AD", "train", "greedy")]


def test_snapshot_table_lists_students_by_mode_then_the_teacher(snap):
    rows = students.snapshot_rows(snap)
    assert [r[:3] for r in rows[:5]] == [["ED", "train", "sampled"], ["AD", "train", "sampled"],
                                         ["ED", "train", "greedy"], ["AD", "train", "greedy"],
                                         ["teacher snapshot", "train", "greedy"]]
    assert rows[0][3:] == ["2.00 [2.00, 2.00]", "25%", "—"] and rows[4][3:] == ["8.00", "—", "—"]
    assert rows[1][5] != "—" and 0 <= float(rows[1][5].split()[0]) <= 1  # AD's row: P(AD seed beats ED seed)
    assert rows[-1][:2] == ["teacher snapshot", "held-out"] and len(rows) == 10
    lines = students.snapshot_table(snap).data.splitlines()
    assert lines[0] == "| " + " | ".join(students.TABLE_HEADER) + " |"
    assert lines[2] == "| ED | train | sampled | 2.00 [2.00, 2.00] | 25% | — |"


def test_plot_snapshot_marks_each_student_and_mode_with_the_references(snap):
    fig, ax = plt.subplots()
    students.plot_snapshot(ax, snap, "held_out", legend=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ED\nsampled", "ED\ngreedy", "AD\nsampled", "AD\ngreedy"]
    assert [line.get_ydata()[0] for line in ax.lines if line.get_label() in ("teacher snapshot", "random policy")] \
        == [4.0, 0.25]
    assert ax.get_title() == "held-out goals" and ax.get_legend() is not None
    plt.close(fig)


def test_snapshot_numbers_are_shares_of_the_teacher(snap):
    nums = students.snapshot_numbers(snap)
    assert nums["ch4_ED_train_ratio"] == 2 / 8 and nums["ch4_AD_held_out_greedy_ratio"] == 5 / 4
    assert nums["ch4_teacher_train"] == 8.0 and nums["ch4_random_train"] == 0.5
    assert nums["ch4_best_train"] == 5 / 8 and nums["ch4_best_held"] == 5 / 4


def test_snapshot_numbers_are_nan_for_students_not_stored():
    only_ad = students.snapshot_numbers(students.snapshot_from({"AD": students_artifact(4.0)}, REFS))
    assert math.isnan(only_ad["ch4_ED_train_ratio"]) and only_ad["ch4_AD_train_ratio"] == 0.5
    nothing = students.snapshot_numbers(None)
    assert len(nothing) == 12 and all(math.isnan(v) for v in nothing.values())


def test_game_scores_read_the_artifact_and_are_nan_when_not_trained():
    scores = game_students.game_scores(game([[2.0, np.nan], [4.0, 6.0]], [[10.0, 10.0], [6.0, 6.0]], [0.5, 1.0]))
    assert scores.student.tolist() == [2.0, 5.0] and scores.teacher.tolist() == [10.0, 6.0]
    assert scores.agreement == 0.75 and game_students.game_ratio(scores) == 3.5 / 8.0
    missing = game_students.game_scores(None)
    assert np.isnan(missing.student).all() and math.isnan(missing.agreement)


def test_game_numbers_cite_the_scores_and_the_random_floor():
    scores = game_students.GameScores(np.array([4.0, 6.0]), np.array([10.0, 10.0]), 0.875)
    nums = game_students.game_numbers(scores, np.array([0.5, 0.75]))
    assert nums == {"ch4_game_student": 5.0, "ch4_game_teacher": 10.0, "ch4_game_ratio": 0.5,
                    "ch4_game_agreement": 0.875, "ch4_game_random": 0.625, "ch4_game_gap_note": game_students.GAP_NOTE}
    missing = game_students.game_numbers(game_students.game_scores(None), np.array([0.5]))
    assert math.isnan(missing["ch4_game_ratio"]) and missing["ch4_game_gap_note"] == ""


def test_plot_game_leaves_out_scores_that_are_missing():
    fig, ax = plt.subplots()
    scores = game_students.GameScores(np.array([np.nan, np.nan]), np.array([10.0, 12.0]), float("nan"))
    game_students.plot_game(ax, scores, 0.5, "MinAtar/Breakout-v0")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["random policy", "teacher (final, ε = 0.05), mean and 95% CI"]
    assert ax.get_title() == "MinAtar/Breakout-v0"
    plt.close(fig)


@pytest.mark.parametrize("agreement, share, noted", [
    (0.75, 0.5, True),  # 25 points apart: far higher
    (game_students.GAP_MARGIN, 0.0, False),  # exactly the margin is not "far higher"
    (np.nextafter(game_students.GAP_MARGIN, 1.0), 0.0, True),  # just past it is
    (0.5, 0.5, False),
    (0.9, 3.0, False),  # the student out-scores its teacher: nothing lost to explain
    (float("nan"), float("nan"), False),  # not trained: no sentence
])
def test_gap_note_only_when_agreement_far_exceeds_the_return_kept(agreement, share, noted):
    assert game_students.gap_note(agreement, share) == (game_students.GAP_NOTE if noted else "")


def test_gap_note_reads_as_before():
    assert game_students.GAP_NOTE.startswith("Agreement state by state is far higher than the share of return kept")
    assert game_students.GAP_NOTE.endswith("(the compounding error of behaviour cloning).")


@pytest.mark.parametrize("best, expected", [
    (RECOVERY_BAR, "yes: on the goals it was trained on, a frozen student recovers most of the teacher "
                            "snapshot's return"),
    (1.2, "yes: on the goals it was trained on, a frozen student recovers most of the teacher snapshot's return"),
    (np.nextafter(RECOVERY_BAR, 0.0), "not on Dark Room: no frozen student recovers 80% of the teacher "
                                               "snapshot's return, even on the goals it was trained on"),
    (0.42, "not on Dark Room: no frozen student recovers 80% of the teacher snapshot's return, even on the goals "
           "it was trained on"),
    (float("nan"), "not measured at this scale yet (the Dark Room students are not trained)"),
])
def test_snapshot_verdict(best, expected):
    assert students.snapshot_verdict(best) == expected


@pytest.mark.parametrize("share, expected", [
    (RECOVERY_BAR, "yes: the ED students recover 80% of their teachers' return"),
    (3.0, "yes: the ED students recover 300% of their teachers' return"),
    (np.nextafter(RECOVERY_BAR, 0.0), "only partly: the ED students recover 80% of their teachers' return"),
    (0.54249547920434, "only partly: the ED students recover 54% of their teachers' return"),
    (float("nan"), "not measured at this scale yet (the MinAtar students are not trained)"),
])
def test_game_verdict(share, expected):
    assert game_students.game_verdict(share) == expected


def test_answer_numbers_glue_both_verdicts():
    answer = students.answer_numbers(0.5, 0.9)
    assert answer == {"ch4_verdict": students.snapshot_verdict(0.5),
                      "ch4_game_verdict": game_students.game_verdict(0.9)}


def test_data_scaling_grows_the_data_and_the_updates_with_its_square_root():
    from imitlib.experiments import data_scaling
    from imitlib.scale import get_scale

    lab = data_scaling.scaling_config(get_scale("lab"))
    assert lab.episodes == (20, 100, 500)
    assert [data_scaling.scaled_updates(lab, n) for n in lab.episodes] == [2000, 4472, 10000]
    assert lab.students.student.kind == "ed" and lab.bc.updates == lab.students.student.updates


def scaling_grid(ed: list, bc: list, teacher: float = 10.0) -> dict:
    """A data-scaling result by hand: returns per (size, teacher) for ED and BC, teachers scoring ``teacher``."""
    ed, bc = np.asarray(ed, float), np.asarray(bc, float)
    return {"episodes": np.array([20, 100, 500][:len(ed)]), "teacher_returns": np.full((ed.shape[1], 3), teacher),
            "ed_returns": ed, "bc_returns": bc, "ed_agreement": np.full(ed.shape, 0.8),
            "bc_agreement": np.full(ed.shape, 0.7)}


def test_data_scaling_shares_verdict_and_reading_follow_their_fixed_rules():
    from imitlib.experiments import data_scaling

    grid = scaling_grid([[5, 5.5, 4.5, 5, 5], [9, 9.5, 8.5, 9, 9]], [[4, 4, 4, 4, 4], [6, 6.5, 5.5, 6, 6]])
    assert np.allclose(data_scaling.shares(grid, "ed")[-1], [0.9, 0.95, 0.85, 0.9, 0.9])
    assert data_scaling.verdict(grid).startswith("yes: the ED students recover 90% of their teachers' return "
                                                 "with 100 expert episodes (95% CI")
    text = data_scaling.reading(grid)
    assert text.startswith("More data helps the ED students (100 against 20 episodes: +40 points of the "
                           "teachers' return, 95% CI +40 to +40)")
    assert "keeps less than the transformer: the transformer is not what limits" in text
    assert "Unpaired, across teachers, P(ED > BC) = 1.00" in text
    flat = scaling_grid([[5, 6, 4, 5, 5], [4, 7, 5, 4, 6]], [[4, 4, 4, 4, 4], [9, 9, 9, 8, 9]])
    text = data_scaling.reading(flat)
    assert text.startswith("More data does not measurably change the ED students' share")
    assert "keeps more than the transformer: the transformer, not the amount of data, limits" in text
    silent = scaling_grid([[5, 5, 5], [9, 9, 9]], [[4, 4, 4], [6, 6, 6]], teacher=0.0)  # no teacher scored
    assert np.isnan(data_scaling.shares(silent, "ed")).all()
    assert data_scaling.reading(silent).startswith("Too few teachers scored")
    assert data_scaling.verdict(silent).startswith("not measured") and data_scaling.reading(None) == ""
