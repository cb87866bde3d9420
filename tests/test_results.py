"""The book at ``lab`` scale loads stored artifacts: every one it shows must be stored and made by today's code.

A stale artifact still loads, but its chapter then prints a "the code has changed" note. This test catches the
edit that causes it (e.g. a change to ``imitlib.tabular`` marks chapter 1's results stale) before the book does.
It never computes anything: an artifact that is not stored fails the test with the command that makes it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest

from imitlib import artifacts, experiments
from imitlib.scale import get_scale


def lab_artifacts() -> Iterator[tuple[str, Callable[[], artifacts.Artifact]]]:
    """Every stored artifact the chapters load at ``lab``, built from the same configs the chapters use."""
    scale = get_scale("lab")
    yield "ch01 tabular", lambda: experiments.tabular_artifact(experiments.tabular_experiment(scale), scale)
    yield "ch02 teacher", lambda: experiments.teacher_artifact(experiments.teacher_experiment(scale), scale)
    for env_id in ("MinAtar/Breakout-v0", "MinAtar/SpaceInvaders-v0"):
        yield f"ch03 {env_id}", lambda env_id=env_id: experiments.minatar_histories_artifact(
            experiments.teacher_experiment(scale, env_id), scale)
    ad, ed = (experiments.darkroom_students_config(scale, kind) for kind in ("ad", "ed"))
    for name, cfg in (("AD", ad), ("ED", ed)):
        yield f"ch04 {name} students", lambda cfg=cfg: experiments.darkroom_students_artifact(cfg, scale)
    yield "ch04 game students", lambda: experiments.game_students_artifact(experiments.game_students_config(scale),
                                                                            scale)
    yield "ch05 ICL regression", lambda: experiments.icl_regression_artifact(
        experiments.icl_regression_config(scale), scale)
    tests = {"AD": experiments.in_context_config(scale, ad), "ED": experiments.in_context_config(scale, ed),
             "ED + prompt": experiments.in_context_config(scale, ed, prompt_episodes=3),
             "AD + prompt": experiments.in_context_config(scale, ad, prompt_episodes=3),
             **{name: experiments.ablation_test(scale, name) for name in experiments.ABLATIONS}}
    for name, test in tests.items():
        yield f"ch05 in-context {name}", lambda test=test: experiments.in_context_artifact(test, scale)
    probe = experiments.ProbeTest(ad, windows=scale.incontext.probe_windows)
    yield "ch05 probes", lambda: experiments.probes_artifact(probe, scale)


@pytest.mark.parametrize("label, get", list(lab_artifacts()), ids=[label for label, _ in lab_artifacts()])
def test_stored_lab_artifact_is_current(label, get, monkeypatch):
    real = artifacts.cached

    def load_only(name, config, compute, *, scale, code=(), root=None):
        if not artifacts.is_stored(name, config, scale, root):
            pytest.fail(f"{label}: {name} is not stored at {scale} scale (compute it with the chapter's "
                        f"`python -m imitlib ...` command, see the README)")
        return real(name, config, compute, scale=scale, code=code, root=root)

    monkeypatch.delenv(artifacts.RECOMPUTE_ENV, raising=False)
    monkeypatch.setattr(artifacts, "cached", load_only)
    with warnings.catch_warnings():
        warnings.simplefilter("error", artifacts.StaleArtifactWarning)
        art = get()
    assert art.loaded and not art.stale
