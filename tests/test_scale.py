import pytest

from imitlib.scale import DEFAULT, ENV_VAR, PRESETS, UnknownScaleError, get_scale


def test_default_is_lab(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert get_scale().name == DEFAULT == "lab"


def test_env_var_selects_preset(monkeypatch):
    monkeypatch.setenv(ENV_VAR, " CI ")
    assert get_scale() is PRESETS["ci"]


def test_unknown_scale_lists_valid_ones(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "huge")
    with pytest.raises(UnknownScaleError, match=r"'huge'.*ci, lab, full"):
        get_scale()


def test_presets_grow_with_scale():
    ci, lab = PRESETS["ci"].tabular, PRESETS["lab"].tabular
    assert lab.seeds >= 5, "lab results need at least 5 seeds"
    assert ci.seeds >= 2, "a confidence interval needs at least 2 seeds"
    assert lab.episodes >= ci.episodes and lab.goals >= ci.goals


def test_presets_are_frozen():
    with pytest.raises(AttributeError):
        PRESETS["ci"].tabular.seeds = 100  # type: ignore[misc]
