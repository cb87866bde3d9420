"""Sweeps: in process by default, Ray tasks inside using_ray(); the same numbers either way, failures by name."""

import sys

import numpy as np
import pytest

from imitlib import sweep
from imitlib.tabular import QLearningConfig, q_learning


def units(n: int = 3) -> list:
    cfg = QLearningConfig()
    return [sweep.Unit(f"seed {s}", q_learning, (cfg, [10, 20], [s, s + 100], 30)) for s in range(n)]


def test_in_process_is_the_plain_loop():
    got = sweep.run(units())
    want = [q_learning(QLearningConfig(), [10, 20], [s, s + 100], 30) for s in range(3)]
    assert not sweep.on_ray()
    assert all(np.array_equal(g.returns, w.returns) and np.array_equal(g.q, w.q)
               for g, w in zip(got, want, strict=True))


def test_without_ray_installed_the_flag_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    with pytest.raises(sweep.SweepError, match=r'pip install "imitlib\[ray\]"'):
        with sweep.using_ray():
            pass


def test_ray_gives_the_same_arrays_and_names_a_failing_unit():
    ray = pytest.importorskip("ray")
    try:
        with sweep.using_ray():
            assert sweep.on_ray()
            remote = sweep.run(units(), threads=1)
            local = [u.fn(*u.args) for u in units()]
            assert all(np.array_equal(r.returns, h.returns) and np.array_equal(r.q, h.q)
                       for r, h in zip(remote, local, strict=True))  # bit for bit
            bad = sweep.Unit("the broken one", q_learning, (QLearningConfig(), [10], [1, 2], 5))  # 1 goal, 2 seeds
            with pytest.raises(sweep.SweepError, match="unit 'the broken one' failed twice: ValueError"):
                sweep.run([bad])
    finally:
        ray.shutdown()


def test_students_and_an_ablation_are_bit_identical_with_and_without_ray():
    """Issue #19's contract at ci: two Dark Room students and one ablation, in process and on a local Ray of 2 CPUs."""
    ray = pytest.importorskip("ray")
    import torch

    from imitlib.experiments import incontext, students
    from imitlib.scale import get_scale

    ci = get_scale("ci")
    exp = students.darkroom_students_config(ci, "ad")
    ablation = incontext.ablation_test(ci, "context 1 episode")
    assert len(exp.seeds) == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every Ray task runs
    try:
        here = [students.run_darkroom_students(exp, ci, progress=False),
                incontext.run_in_context(ablation, ci, progress=False)]
    finally:
        torch.set_num_threads(threads)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        with sweep.using_ray():
            there = [students.run_darkroom_students(exp, ci, progress=False),
                     incontext.run_in_context(ablation, ci, progress=False)]
    finally:
        ray.shutdown()
    for a, b in zip(here, there, strict=True):
        assert a.keys() == b.keys()
        for key in set(a) - {"wall_seconds"}:  # how long training took is the one thing that may differ
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


def here_and_on_ray(compute):
    """``compute()`` in this process at one thread (as every Ray task runs), then inside a local 2-worker Ray."""
    ray = pytest.importorskip("ray")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = compute()
    finally:
        torch.set_num_threads(threads)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        with sweep.using_ray():
            there = compute()
    finally:
        ray.shutdown()
    return here, there


def test_a_chapter_6_part_is_bit_identical_with_and_without_ray():
    """Chapter 6's truncated-history students (two at ci) fan out the same way: same artifact arrays either way."""
    from imitlib.experiments import beyond
    from imitlib.scale import get_scale

    ci = get_scale("ci")
    test = beyond.beyond_config(ci, ci.beyond.fractions[0])
    here, there = here_and_on_ray(lambda: beyond.run_beyond(test, ci, progress=False))
    assert set(here) == set(there)
    changed = [k for k in here if k != "wall_seconds" and not np.array_equal(here[k], there[k])]
    assert not changed, f"differ with Ray: {changed}"


def test_chapter_6_game_students_train_and_roll_out_on_ray_with_the_same_numbers():
    """On MinAtar each unit trains a student and rolls it out (the rollouts ran in the driver before): Ray workers
    give the same curves, losses and episode counts as this process."""
    from imitlib.experiments import game_beyond
    from imitlib.scale import get_scale

    ci = get_scale("ci")
    test = game_beyond.game_beyond_config(ci)
    here, there = here_and_on_ray(lambda: game_beyond.run_game_beyond(test, ci, progress=False))
    assert set(here) == set(there) and {"sampled_curve", "greedy_curve", "loss"} <= set(here)
    changed = [k for k in here if not np.array_equal(here[k], there[k], equal_nan=True)]
    assert not changed, f"differ with Ray: {changed}"


def test_chapter_7_frozen_students_train_and_roll_out_on_ray_with_the_same_numbers():
    """Chapter 7's frozen students are one unit each (train, then play the new game): Ray workers give the same
    step curves, for both kinds and decodings, as this process."""
    from imitlib.experiments import new_game
    from imitlib.scale import get_scale

    ci = get_scale("ci")
    test = new_game.frozen_config(ci)
    here, there = here_and_on_ray(lambda: new_game.run_frozen(test, ci, progress=False))
    assert set(here) == set(there) and {"ed_sampled_curve", "ad_greedy_curve", "edges"} <= set(here)
    assert here["ed_sampled_curve"].shape[0] == len(test.ed.teacher.seeds)
    changed = [k for k in here if not np.array_equal(here[k], there[k], equal_nan=True)]
    assert not changed, f"differ with Ray: {changed}"


def test_question_1_data_scaling_is_bit_identical_with_and_without_ray():
    """Question 1's data-scaling grid (sizes x teachers, one ED student and one BC network per unit) gives the same
    returns, agreements and accuracies on Ray workers as in this process."""
    from imitlib.experiments import data_scaling
    from imitlib.scale import get_scale

    ci = get_scale("ci")
    test = data_scaling.scaling_config(ci)
    here, there = here_and_on_ray(lambda: data_scaling.run_scaling(test, ci, progress=False))
    grid = (len(test.episodes), len(test.students.teacher.seeds))
    assert set(here) == set(there) and here["ed_returns"].shape == grid
    changed = [k for k in here if not np.array_equal(here[k], there[k], equal_nan=True)]
    assert not changed, f"differ with Ray: {changed}"



def kept_units(folder, rerun: bool = False, n: int = 3) -> list:
    """Units that keep a number and an array each (built by ``dict``, which a Ray worker imports too); on a
    ``rerun`` their function fails, so running one means its kept result was ignored."""
    def unit(s: int) -> sweep.Unit:
        fn, args, kwargs = (int, (f"unit {s} ran again",), {}) if rerun else (dict, (), {
            "mean": s / 3, "curve": np.arange(s, dtype=np.float64) * 0.1})
        return sweep.Unit(f"seed {s}", fn, args, kwargs, keep=str(folder / f"s{s}" / "result.npz"))
    return [unit(s) for s in range(n)]


def test_a_finished_unit_is_kept_and_read_back_instead_of_rerun(tmp_path):
    first = sweep.run(kept_units(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("s*/*")) == ["result.npz"] * 3  # no temporary file left behind
    again = sweep.run(kept_units(tmp_path, rerun=True))
    for a, b in zip(first, again, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    (tmp_path / "s1" / "result.npz").unlink()  # a unit stopped before it finished runs again
    with pytest.raises(ValueError, match="unit 1 ran again"):
        sweep.run(kept_units(tmp_path, rerun=True))


def test_a_kept_unit_must_return_a_mapping(tmp_path):
    unit = sweep.Unit("the list one", list, ((1, 2),), keep=str(tmp_path / "r.npz"))
    with pytest.raises(sweep.SweepError, match="'the list one' keeps its result, so it must return a mapping"):
        sweep.run([unit])
    assert not (tmp_path / "r.npz").exists()


def test_on_ray_each_unit_is_kept_as_it_finishes(tmp_path):
    """The driver writes each result as its task ends; a rerun on Ray reads them all back and runs no task."""
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        with sweep.using_ray():
            first = sweep.run(kept_units(tmp_path))
            again = sweep.run(kept_units(tmp_path, rerun=True))
    finally:
        ray.shutdown()
    here = sweep.run(kept_units(tmp_path / "here"))
    for h, a, b in zip(here, first, again, strict=True):
        assert all(np.array_equal(h[k], a[k]) and np.array_equal(h[k], b[k]) for k in h)
