"""Chapter 5's numbers, verdicts and figures: regression against GD, AD's curves, its ablations and probes."""

import matplotlib

matplotlib.use("Agg")

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from imitlib import experiments
from imitlib.artifacts import Artifact
from imitlib.experiments import common, incontext, probing, regression
from imitlib.scale import get_scale
from imitlib.stats import Interval

CI = get_scale("ci")
ALL = {"cost", "flat", "kept"}


def artifact(provenance: dict | None = None, **arrays) -> Artifact:
    return Artifact(data={k: np.asarray(v) for k, v in arrays.items()}, provenance=provenance or {}, path=None,
                    loaded=False)


def fake_regression(cos1: float, lsa1: float, lsa_deep: float, seeds: int = 2) -> Artifact:
    """Two depths; one GD step scores 1.0, two GD steps 0.6; the model's losses and first cosine as given."""
    def both(first: float, deep: float) -> np.ndarray:
        return np.tile([first, deep], (seeds, 1))

    return artifact({"config": {"icl": {"train_steps": 100}}}, layers=np.array([1, 2]),
                    loss_model=both(lsa1, lsa_deep), loss_gd1=both(1.0, 1.0), loss_gdL=both(1.0, 0.6),
                    cos_gd1=both(cos1, 0.8), diff_gd1=both(0.01, 0.5), loss_zero=np.full((seeds, 2), 2.0),
                    curves=np.linspace(2.0, 1.0, 100)[None, None].repeat(seeds, 0).repeat(2, 1)
                    + np.arange(seeds)[:, None, None] * 0.01)


def students(sampled: np.ndarray, greedy: np.ndarray | None = None) -> Artifact:
    """An in-context artifact whose every seed and rollout has the given per-episode returns."""
    def stored(curve: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(curve, float), (3, 4, len(curve))).copy()  # (seeds, rollouts, episodes)

    return artifact(sampled_returns=stored(sampled), greedy_returns=stored(sampled if greedy is None else greedy))


def interval(estimate: float, low: float, high: float) -> Interval:
    return Interval(np.array(estimate), np.array(low), np.array(high))


# --- commands and configs -----------------------------------------------------------------------------------------

def test_commands_name_the_part_and_leave_the_scale_to_load_or_explain():
    assert incontext.command_for("AD") == "python -m imitlib incontext --part main --scale {scale}"
    assert incontext.command_for("ED + learning prompt").endswith("--part main --scale {scale}")
    assert (incontext.command_for("epsilon source").format(scale="lab")
            == 'python -m imitlib incontext --part ablations --ablation "epsilon source" --scale lab')
    assert regression.REGRESSION_COMMAND.format(scale="ci").endswith("--part regression --scale ci")
    assert probing.PROBES_COMMAND.format(scale="ci").endswith("--part probes --scale ci")


def test_main_tests_are_ad_and_ed_with_and_without_a_prompt():
    tests = incontext.main_tests(CI)
    assert list(tests) == ["AD", "ED", "ED + learning prompt", "AD + learning prompt"]
    assert [t.students.student.kind for t in tests.values()] == ["ad", "ed", "ed", "ad"]
    assert [t.prompt_episodes for t in tests.values()] == [0, 0, incontext.PROMPT_EPISODES, incontext.PROMPT_EPISODES]
    assert list(incontext.ablation_tests(CI)) == list(experiments.ABLATIONS)


def test_load_tests_leaves_out_what_is_not_stored_and_names_its_command(monkeypatch, capsys, fake_load_or_explain):
    stored = students(np.ones(4))
    monkeypatch.setattr(incontext, "load_or_explain", fake_load_or_explain("--part main", stored))
    tests = {"AD": incontext.main_tests(CI)["AD"], "epsilon source": experiments.ablation_test(CI, "epsilon source")}
    assert incontext.load_tests(tests, CI) == {"AD": stored}
    assert '--ablation "epsilon source"' in capsys.readouterr().out


# --- section 1: regression --------------------------------------------------------------------------------------

def test_a_layer_matches_a_gd_step_only_above_both_thresholds():
    cos, ratio = regression.SAME_WAY_COSINE, regression.SAME_WAY_LOSS
    assert regression.matches_gd_step(cos + 1e-3, 1.0, 1.0)
    assert not regression.matches_gd_step(cos, 1.0, 1.0)  # the cosine must exceed the bar, not touch it
    assert regression.matches_gd_step(0.99, ratio * 2.0 - 1e-6, 2.0)
    assert not regression.matches_gd_step(0.99, ratio * 2.0, 2.0)  # a loss 5% above the GD step's is too far


def test_regression_sentences_read_as_the_prose_expects():
    assert regression.same_way(True) == "and the two respond to the query the same way"
    assert regression.same_way(False).startswith("but at this budget the trained layer has not become a GD step")
    assert regression.icl_verdict(True) == "So in-context learning is real, and it is a learning algorithm"
    assert regression.icl_verdict(False).startswith("Here training fell short of the paper's result")
    assert regression.deep_sentence(True).endswith("as the paper found")
    assert regression.deep_sentence(False).endswith("unlike in the paper")


def test_regression_numbers_when_the_layer_is_a_gd_step_and_depth_helps():
    numbers = regression.regression_numbers(fake_regression(cos1=0.99, lsa1=1.02, lsa_deep=0.5))
    assert numbers["ch5_lsa1"] == pytest.approx(1.02)
    assert numbers["ch5_gd1"] == 1.0 and numbers["ch5_zero"] == 2.0 and numbers["ch5_depth"] == 2
    assert numbers["ch5_lsa_deep"] == 0.5 and numbers["ch5_gd_deep"] == 0.6 and numbers["ch5_cos_deep"] == 0.8
    assert numbers["ch5_deep_vs_gd"] == "below"
    assert numbers["ch5_same_way"] == regression.same_way(True)
    assert numbers["ch5_icl_verdict"] == regression.icl_verdict(True)
    assert numbers["ch5_deep_sentence"] == regression.deep_sentence(True)


def test_regression_numbers_when_training_fell_short():
    numbers = regression.regression_numbers(fake_regression(cos1=0.5, lsa1=1.6, lsa_deep=0.7))
    assert numbers["ch5_deep_vs_gd"] == "not below"
    assert numbers["ch5_same_way"] == regression.same_way(False)
    assert numbers["ch5_icl_verdict"] == regression.icl_verdict(False)
    assert numbers["ch5_deep_sentence"] == regression.deep_sentence(False)


def test_regression_numbers_without_the_artifact_have_every_key_and_no_verdict():
    missing = regression.regression_numbers(None)
    assert set(missing) == set(regression.regression_numbers(fake_regression(0.99, 1.0, 0.5)))
    assert math.isnan(missing["ch5_lsa1"]) and missing["ch5_icl_verdict"] == common.MISSING


def test_regression_table_and_figure():
    reg = fake_regression(cos1=0.99, lsa1=1.02, lsa_deep=0.5)
    text = regression.regression_table(reg).data
    assert text.splitlines()[0].startswith("| layers | model loss | GD ×1 |")
    assert "| 1 | 1.020 | 1.000 | 1.000 | 0.9900 | 0.0100 |" in text
    fig, (a, b) = plt.subplots(1, 2)
    regression.plot_regression_loss(a, reg)
    regression.plot_regression_training(b, reg)
    assert len(a.containers) == len(regression.REGRESSION_LINES) and b.get_yscale() == "log"
    plt.close(fig)


# --- section 2: AD's curves ---------------------------------------------------------------------------------------

def test_window_and_smoothing_follow_the_rollout_length():
    assert incontext.window(200) == incontext.WINDOW and incontext.window(12) == 6
    assert incontext.smoothing(200) == 200 // incontext.SMOOTHING_POINTS and incontext.smoothing(12) == 1


def test_first_last_average_the_first_and_last_episodes_over_goals_and_seeds():
    art = students(np.arange(20.0))
    assert incontext.per_seed(art, "sampled").shape == (3, 20)
    assert incontext.first_last(art, "sampled", 5) == (2.0, 17.0)
    assert incontext.first_last(art) == (4.5, 14.5)  # default: sampled actions, WINDOW episodes


def test_greedy_note_turns_at_half_of_sampling_gain():
    share = incontext.GREEDY_GAIN_SHARE
    assert incontext.greedy_note(share * 4.0 - 1e-9, 4.0).startswith("Greedy decoding gains much less")
    assert incontext.greedy_note(share * 4.0, 4.0).startswith("Greedy decoding gains about as much")


def test_plateau_is_where_the_running_mean_reaches_its_share_of_the_best():
    curve = np.array([[0.0, 0.0, 9.0, 10.0, 10.0, 10.0]])
    peak, episode = incontext.plateau(curve, 2)
    assert peak == 10.0
    assert episode == 4  # the 2-episode mean first reaches 9 over episodes 3-4 (1-based)


def test_ad_shape_is_front_loaded_up_to_a_quarter_of_the_rollout():
    episodes = 200
    edge = int(incontext.FRONT_LOADED_SHARE * episodes)
    assert incontext.ad_shape(edge, episodes) == "front-loaded"
    assert incontext.ad_shape(edge + 1, episodes) == "spread over the episodes"


def test_source_passes_names_the_episode_or_never():
    assert incontext.source_passes(4.0) == "passes AD's best at episode 5"
    assert incontext.source_passes(np.nan) == "never passes AD's best within these episodes"


def baselines(episodes: int = 20) -> incontext.Baselines:
    return incontext.Baselines(source=np.tile(np.linspace(0, 12, episodes), (2, 1)), optimal=15.0, random=0.5)


def test_curve_numbers_cite_both_students_the_learner_and_ad_shape():
    ramp = np.r_[0.0, np.full(19, 10.0)]  # 90% of the best 4-episode mean by episode 5: front-loaded
    arts = {"AD": students(ramp, greedy=np.full(20, 3.0)), "ED": students(np.ones(20))}
    numbers = incontext.curve_numbers(arts, baselines(), n=4, episodes=20)
    assert numbers["ch5_n"] == 4 and numbers["ch5_episodes"] == 20
    assert numbers["ch5_ad_sampled_last"] == 10.0 and numbers["ch5_ad_greedy_first"] == 3.0
    assert numbers["ch5_ed_sampled_first"] == numbers["ch5_ed_sampled_last"] == 1.0
    assert numbers["ch5_source_first"] == pytest.approx(np.linspace(0, 12, 20)[:4].mean())
    assert numbers["ch5_greedy_note"] == incontext.greedy_note(0.0, 1.0)  # greedy flat, sampling improves
    assert numbers["ch5_ad_peak"] == 10.0 and numbers["ch5_ad_plateau"] == 5
    assert numbers["ch5_ad_shape"] == "front-loaded"
    assert numbers["ch5_source_passes"] == "passes AD's best at episode 19"  # 12 * (i - 1.5) / 19 >= 10 from i = 18


def test_curve_numbers_without_ad_keep_every_key():
    full = incontext.curve_numbers({"AD": students(np.ones(20)), "ED": students(np.ones(20))}, baselines(), 4, 20)
    missing = incontext.curve_numbers({}, baselines(), 4, 20)
    assert set(missing) == set(full)
    assert math.isnan(missing["ch5_ad_sampled_first"]) and missing["ch5_ad_shape"] == common.MISSING


def test_figures_draw_every_student_and_hide_the_spare_ablation_panel():
    arts = {"AD": students(np.ones(20)), "ED": students(np.ones(20)), "AD + learning prompt": students(np.ones(20))}
    fig, axes = plt.subplots(1, 2)
    incontext.plot_main(axes, arts, baselines(), smooth=2)
    assert len(axes[0].lines) == 1 + 2 + 2  # Q-learner, AD and ED, optimal and random
    plt.close(fig)
    pool = incontext.ablation_pool({"context 1 episode": students(np.ones(20))}, arts)
    assert list(pool) == ["context 1 episode", "AD + learning prompt"]
    fig, axes = plt.subplots(2, 3)
    incontext.plot_ablations(axes, arts, pool, baselines(), smooth=1)
    assert len(axes[0, 0].lines) == 1 + 2 + 2 and not axes[1, 2].axison
    assert axes[0, 0].get_ylim()[1] == pytest.approx(15.0 * incontext.YLIM_HEADROOM)
    plt.close(fig)


# --- section 3: ablations ----------------------------------------------------------------------------------------

def cis(**named: tuple[float, float, float]) -> dict[str, Interval]:
    names = {"ad": "AD", "ctx1": "context 1 episode", "shuffled": "shuffled episode order",
             "eps": "epsilon source"}
    return {names[k]: interval(*v) for k, v in named.items()}


def test_ablation_verdict_sorts_cost_flat_and_kept_and_names_what_is_missing():
    verdict = incontext.ablation_verdict(cis(ad=(4, 3, 5), ctx1=(0.1, -0.2, 0.5), eps=(1.5, 0.3, 2.9),
                                             shuffled=(4.6, 3.2, 5.8)))
    assert "for: context 1 episode, epsilon source; of these, context 1 episode left no" in verdict
    assert "within reach of the reference's for: shuffled episode order" in verdict
    assert verdict.endswith("Not run yet at this scale: context 2 episodes, 4 training goals, 16 training goals")


def test_ablation_verdict_at_the_interval_boundary_and_without_flat_ones():
    touching = incontext.ablation_verdict(cis(ad=(4, 3, 5), eps=(2, 1, 3)))  # its high touches AD's low: kept
    assert "cost improvement (the ablation's whole interval lies below the reference's) for: none of them." in touching
    assert "; of these" not in touching and "reference's for: epsilon source" in touching
    below = incontext.ablation_verdict(cis(ad=(4, 3, 5), eps=(2, 1, 2.999)))
    assert "for: epsilon source." in below


def test_ablation_verdict_needs_the_reference():
    assert incontext.ablation_verdict(cis(ctx1=(0, -1, 1))) == incontext.NO_REFERENCE


def test_shuffled_meaning_has_three_readings():
    assert incontext.shuffled_meaning(cis(ad=(4, 3, 5))).endswith("not computed at this scale yet")
    assert incontext.shuffled_meaning(cis(ad=(4, 3, 5), shuffled=(1, 0.5, 2.9))).startswith(
        "Shuffling cost improvement")
    kept = incontext.shuffled_meaning(cis(ad=(4, 3, 5), shuffled=(4.6, 3, 5.8)))
    assert kept.startswith("Shuffling did not cost improvement (+4.60 against the reference's +4.00)")
    assert kept.endswith("not a distilled learning algorithm")


def test_changes_table_and_numbers():
    named = {"AD": students(np.linspace(0, 8, 20)), "context 1 episode": students(np.ones(20))}
    ch = incontext.changes(named, 4)
    assert ch.first_last["context 1 episode"] == (1.0, 1.0)
    assert float(ch.ci["AD"].estimate) == pytest.approx(ch.first_last["AD"][1] - ch.first_last["AD"][0])
    assert "| context 1 episode | 1.00 | 1.00 | +0.00 | +0.00 to +0.00 | 0.00 [0.00, 0.00] |" in incontext.change_table(
        ch).data  # every AD seed improves more than every flat one: probability of improvement 0
    assert "| AD |" in incontext.change_table(ch).data and incontext.beats_reference(ch, "AD") == "—"
    numbers = incontext.ablation_numbers(ch)
    assert numbers["ch5_ctx1_change"] == 0.0 and math.isnan(numbers["ch5_goals4_change"])
    assert numbers["ch5_ad_change"] == pytest.approx(float(ch.ci["AD"].estimate))
    assert numbers["ch5_ablation_verdict"] == incontext.ablation_verdict(ch.ci)
    assert numbers["ch5_shuffled_meaning"] == incontext.shuffled_meaning(ch.ci)
    assert incontext.compared({"ED": named["AD"], "AD": named["AD"]}, {"x": named["AD"]}).keys() == {"AD", "ED", "x"}


# --- section 4: probes ------------------------------------------------------------------------------------------

def probes() -> Artifact:
    """Two seeds, three layers, two context positions; the goal probe is best at the last layer."""
    r2 = np.array([0.1, 0.4, 0.7])[None, :, None].repeat(2, 0).repeat(2, 2)
    return artifact(goal_r2=r2, goal_r2_shuffled=r2 * 0 - 0.1, progress_r2=r2 / 2, progress_r2_shuffled=r2 * 0)


def test_probe_numbers_take_the_best_layer_and_nan_when_missing():
    numbers = probing.probe_numbers(probes())
    assert numbers == pytest.approx({"ch5_probe_goal": 0.7, "ch5_probe_goal_control": -0.1,
                                     "ch5_probe_progress": 0.35, "ch5_probe_progress_control": 0.0})
    missing = probing.probe_numbers(None)
    assert set(missing) == set(numbers) and all(math.isnan(v) for v in missing.values())


def test_probe_figure_and_positions():
    pr = probes()
    assert probing.goal_by_position(pr) == [0.7, 0.7]
    fig, ax = plt.subplots()
    probing.plot_probe(ax, pr, "goal")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["embedding", "block 1", "block 2"]
    assert len(ax.lines) == len(probing.PROBE_LINES)
    plt.close(fig)
