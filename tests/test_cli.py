import json

import pytest

from imitlib.cli import main


def test_scales(capsys):
    assert main(["scales"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"ci", "lab", "full"}


def test_tabular_at_ci_scale(capsys):
    assert main(["tabular", "--scale", "ci"]) == 0
    out = capsys.readouterr().out
    assert "computed just now" in out and "goal switch" in out


def test_unknown_scale_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tabular", "--scale", "galactic"])
    assert exc.value.code == 2 and "valid scales are ci, lab, full" in capsys.readouterr().err


def test_record_darkroom_at_ci_scale(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    assert main(["record", "darkroom", "--scale", "ci", "--source", "epsilon"]) == 0
    out = capsys.readouterr().out
    assert "81 runs" in out and "learning" in out and "expert" in out


def test_record_minatar_also_stores_chapter_3s_summary(capsys, tmp_path, monkeypatch):
    """The wiring only (recording itself is tested in test_history / chapter 3): folder, then summary."""
    from imitlib import experiments

    calls = []
    folder = tmp_path / "data"

    def fake_record(exp, scale, every):
        calls.append(("record", exp.dqn.env_id, scale.name, every))
        return folder

    monkeypatch.setattr(experiments, "minatar_histories", fake_record)
    monkeypatch.setattr(experiments, "minatar_histories_artifact",
                        lambda exp, scale, every: calls.append(("summary", every)) or type("A", (), {"path": "x"}))
    monkeypatch.setattr("imitlib.history.HistoryReader", lambda path: type("R", (), {"summary": lambda self: path})())
    assert main(["record", "minatar", "--env", "MinAtar/SpaceInvaders-v0", "--every", "5", "--scale", "lab"]) == 0
    assert calls == [("record", "MinAtar/SpaceInvaders-v0", "lab", 5), ("summary", 5)]
    assert "chapter 3's summary" in capsys.readouterr().out


def test_student_darkroom_at_ci_scale(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    assert main(["student", "--kind", "ad", "--scale", "ci"]) == 0
    out = capsys.readouterr().out
    assert "held_out goals, greedy actions" in out and "optimal actions" in out


def test_incontext_regression_at_ci_scale(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    assert main(["incontext", "--part", "regression", "--scale", "ci"]) == 0
    assert "cosine to GD x1" in capsys.readouterr().out


def test_teachers_pick_the_gpu_when_present_and_keep_their_artifact_name(monkeypatch, capsys):
    import torch

    from imitlib import artifacts, experiments
    from imitlib.cli import on_best_device
    from imitlib.scale import get_scale

    exp = experiments.teacher_experiment(get_scale("lab"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    gpu = on_best_device(exp)
    assert gpu.dqn.device == "cuda" and "device: cuda (Fake GPU)" in capsys.readouterr().out
    assert artifacts.config_hash("t", gpu, "lab") == artifacts.config_hash("t", exp, "lab")
    assert artifacts.config_hash("t", gpu, "lab") != artifacts.config_hash("t", exp, "ci")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert on_best_device(exp).dqn.device == "cpu"


def _usage_error(capsys, argv: list[str]) -> str:
    """Run the CLI on bad input: it must exit 2 with one line on stderr and no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, says", [
    (["teacher", "--env", "MinAtar/Pong-v0", "--scale", "ci"], "unknown environment 'MinAtar/Pong-v0': valid ids"),
    (["tabular", "--seed", "-1"], "argument --seed: must be a non-negative integer, got -1"),
    (["teacher", "--seed", "one"], "argument --seed: must be a non-negative integer, got 'one'"),
    (["incontext", "--part", "ablations", "--ablation", "8 goals"], "argument --ablation: invalid choice: '8 goals'"),
    (["tabular", "--scale", "galactic"], "valid scales are ci, lab or full"),
    (["student", "--kind", "ad", "--data", "minatar"], "--data minatar takes --kind ed only"),
    (["fly"], "invalid choice: 'fly'"),
    (["beyond", "--part", "truncated", "--fraction", "1.5"], "argument --fraction: must be a fraction between 0"),
    (["beyond", "--part", "sideways"], "argument --part: invalid choice: 'sideways'"),
    (["transfer", "--part", "chess"], "argument --part: invalid choice: 'chess'"),
    (["transfer", "--part", "darkroom", "--relabel"], "--relabel applies to --part leave-one-out only"),
    (["transfer", "--part", "teacher", "--ray"], "--ray applies to --part students or leave-one-out only"),
    (["transfer", "--part", "leave-one-out", "--scale", "full"], "trains on MinAtar's games, not at full (ALE)"),
])
def test_known_bad_input_is_one_line_and_exit_2(capsys, argv, says):
    refused_by_command = argv[0] == "student" or (argv[0] == "transfer" and (
        {"--relabel", "--ray"} & set(argv) or "leave-one-out" in argv))
    if refused_by_command:  # refused after parsing, by the command itself
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
    else:
        err = _usage_error(capsys, argv)
    assert says.replace(" or ", ", ") in err.replace(" or ", ", ")


@pytest.mark.parametrize("error", ["checkpoint", "history", "artifact"])
def test_damaged_or_mismatched_files_are_one_line_and_exit_1(capsys, monkeypatch, tmp_path, error):
    from imitlib import experiments
    from imitlib.artifacts import ArtifactError
    from imitlib.io import CheckpointMismatchError

    if error == "history":  # a dataset folder whose histories are missing: the reader says which, and how to fix it
        monkeypatch.setattr(experiments, "darkroom_histories", lambda cfg, scale: tmp_path)
        argv = ["record", "darkroom", "--scale", "ci"]
        fix = "record one with `python -m imitlib record"
    else:
        exc = {"checkpoint": CheckpointMismatchError("runs/x/ckpt.pt was written for a different run: seeds; delete "
                                                     "it to start over"),
               "artifact": ArtifactError("results/x: checksum mismatch; delete it to recompute it")}[error]

        def fail(*args, **kwargs):
            raise exc

        monkeypatch.setattr(experiments, "tabular_artifact", fail)
        argv, fix = ["tabular", "--scale", "ci"], "delete"
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fix in err and "Traceback" not in err, err


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    from imitlib import experiments

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(experiments, "tabular_artifact", bug)
    with pytest.raises(ZeroDivisionError):
        main(["tabular", "--scale", "ci"])


def test_beyond_long_at_ci_prints_plateau_ceiling_and_verdict(capsys):
    assert main(["beyond", "--part", "long", "--scale", "ci"]) == 0
    out = capsys.readouterr().out
    assert "ch06_long_ad" in out and "  sampled: plateau" in out and "  greedy: plateau" in out and "ceiling" in out


def test_conclusions_refuse_what_is_not_stored_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path))  # nothing stored here
    assert main(["conclusions", "--scale", "lab"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not stored at lab: run `python -m imitlib" in err
    assert main(["conclusions", "--scale", "lab", "--pending"]) == 0
    assert "Q2: not measured yet" in capsys.readouterr().out
