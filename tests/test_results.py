"""The book at ``lab`` scale loads stored artifacts: every one it shows must be stored and made by today's code.

A stale artifact still loads, but its chapter then prints a "the code has changed" note. This test catches the
edit that causes it (e.g. a change to ``imitlib.tabular`` marks chapter 1's results stale) before the book does.
It never computes anything (:func:`imitlib.artifacts.dry_run`): an artifact that is not stored fails the test with
the command that makes it. The list is :func:`imitlib.book.stored_results`, the one a book build reports from.
"""

from __future__ import annotations

import pytest

from imitlib import artifacts, book
from imitlib.scale import get_scale

RESULTS = book.stored_results()


@pytest.mark.parametrize("result", RESULTS, ids=[f"{r.chapter[:2]} {r.label}" for r in RESULTS])
def test_stored_lab_artifact_is_current(result, monkeypatch):
    monkeypatch.delenv(artifacts.RECOMPUTE_ENV, raising=False)
    monkeypatch.delenv(artifacts.RESULTS_ENV, raising=False)
    command = result.command_at(get_scale("lab"))
    with artifacts.dry_run() as seen:
        try:
            art = result.load(get_scale("lab"))
        except artifacts.NotStored as err:
            pytest.fail(f"{result.label}: {err}; compute it with `{command}`")
    assert seen and art.loaded
    stale = [s.name for s in seen if s.state != "stored"]
    assert not stale, f"{result.label}: made by older code: {stale}; recompute with `IMITLIB_RECOMPUTE=1 {command}`"


def test_a_dry_run_computes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(artifacts.RESULTS_ENV, str(tmp_path))
    with artifacts.dry_run() as seen, pytest.raises(artifacts.NotStored):
        artifacts.cached("never", {"x": 1}, lambda: pytest.fail("a dry run computed"), scale="lab")
    assert [s.state for s in seen] == ["missing"] and not list(tmp_path.iterdir())
    artifacts.cached("now", {"x": 1}, lambda: {"a": [1.0]}, scale="lab")  # outside the block: computed, stored
    with artifacts.dry_run() as seen:
        assert artifacts.cached("now", {"x": 1}, lambda: pytest.fail("recomputed"), scale="lab").loaded
    assert [s.state for s in seen] == ["stored"]


def test_the_build_plan_names_the_command_for_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(artifacts.RESULTS_ENV, str(tmp_path))  # nothing stored here
    plan = book.build_plan(get_scale("lab"))
    assert set(plan) == {r.chapter for r in RESULTS}
    first = plan["01_tabular_q_learning"][0]
    assert "NOT STORED" in first and "python -m imitlib tabular --scale lab" in first
