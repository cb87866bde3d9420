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


def test_student_darkroom_at_ci_scale(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    assert main(["student", "--kind", "ad", "--scale", "ci"]) == 0
    out = capsys.readouterr().out
    assert "held_out goals, greedy actions" in out and "optimal actions" in out


def test_incontext_regression_at_ci_scale(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMITLIB_RESULTS", str(tmp_path / "results"))
    assert main(["incontext", "--part", "regression", "--scale", "ci"]) == 0
    assert "cosine to GD x1" in capsys.readouterr().out
    assert main(["incontext", "--part", "ablations", "--ablation", "bogus", "--scale", "ci"]) == 2
