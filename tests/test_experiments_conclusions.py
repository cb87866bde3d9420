"""Chapter 8's table: read from stored results only, refusing what is missing or stale, and scored the same way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imitlib import artifacts, book
from imitlib.experiments import conclusions as c
from imitlib.scale import get_scale

RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.mark.parametrize("name", ["ci", "lab", "full"])
def test_every_row_needs_results_a_chapter_loads(name):
    known = {r.label for r in book.every_result()}
    needed = {label for row in c.rows(get_scale(name)) for label in row.needs}
    assert needed <= known, needed - known
    assert [row.question for row in c.rows(get_scale(name))] == sorted(row.question for row in c.rows(get_scale(name)))


def test_a_missing_result_is_refused_with_its_command(tmp_path, monkeypatch):
    monkeypatch.setenv(artifacts.RESULTS_ENV, str(tmp_path))  # nothing stored here
    refused = (r"'Dark Room AD students' \(chapter 4\), which is not stored at lab: run "
               r"`python -m imitlib student --kind ad --scale lab`")
    with pytest.raises(c.MissingEvidence, match=refused):
        c.findings(get_scale("lab"))
    assert not list(tmp_path.iterdir())  # nothing was computed


def test_a_stale_result_is_refused_and_pending_rows_say_why(tmp_path, monkeypatch):
    for kind in ("ad", "ed"):
        shutil.copytree(RESULTS / f"ch04_darkroom_{kind}_knowledge", tmp_path / f"ch04_darkroom_{kind}_knowledge")
    monkeypatch.setenv(artifacts.RESULTS_ENV, str(tmp_path))
    lab = get_scale("lab")
    first = c.findings(lab, allow_pending=True)[0]
    assert first.measured is not None and first.pending == ""  # both stored and current: the row is read
    prov = next((tmp_path / "ch04_darkroom_ad_knowledge").glob("lab-*/provenance.json"))
    meta = json.loads(prov.read_text())
    prov.write_text(json.dumps(meta | {"code_hash": "0" * 16}))  # as if older code had made it
    with pytest.raises(c.MissingEvidence, match=r"made by older code \(ch04_darkroom_ad_knowledge\): run "
                                                r"`IMITLIB_RECOMPUTE=1 python -m imitlib student --kind ad"):
        c.findings(lab)
    found = c.findings(lab, allow_pending=True)
    assert len(found) == len(c.rows(lab)) and all(f.measured is None for f in found)
    assert "made by older code" in c.table_rows(found)[0][-1] and "IMITLIB_RECOMPUTE=1" in c.table_rows(found)[0][-1]
    assert c.numbers(found)["ch8_pending"] == len(found)


def _finding(question: str, student: list[float], succeeds: bool, learner: float = 10.0) -> c.Finding:
    return c.Finding(question, "Dark Room", "a test", 6, c.Measured(learner, np.array(student), 2.0, "words", succeeds))


def test_the_score_puts_random_at_0_and_the_learner_at_1():
    score = _finding("Q2", [6.0, 6.0, 6.0], False).score  # (6 - 2) / (10 - 2)
    assert float(score.estimate) == pytest.approx(0.5) and float(score.low) == float(score.high)
    paired = c.Finding("Q1", "MinAtar", "t", 4, c.Measured(np.array([4.0, 12.0]), np.array([3.0, 7.0]), 2.0, "", True))
    assert float(paired.score.estimate) == pytest.approx((0.5 + 0.5) / 2)  # each seed against its own teacher
    assert c.Finding("Q1", "x", "t", 4, None, "pending").score is None


def test_answers_count_what_was_measured_and_name_what_is_pending():
    found = [_finding("Q2", [1.0, 2.0], False), _finding("Q2", [9.0, 9.5], True),
             c.Finding("Q2", "MinAtar", "later", 6, None, "not stored"), _finding("Q3", [1.0, 1.0], False)]
    assert c.answer(found, "Q2") == "partly: in 1 of 2 comparisons (Dark Room, a test); 1 more pending"
    assert c.answer(found, "Q3") == "no: in 0 of 1 comparisons"
    assert c.answer(found, "Q1") == "not measured yet"
    assert c.answer([_finding("Q1", [9.0, 9.0], True)], "Q1") == "yes: in 1 of 1 comparisons"


def test_each_leave_one_out_set_has_a_verdict_sentence_even_where_its_scale_does_not_run_it():
    loo = c.Finding("Q3", "MinAtar", "AD on 2 other games (relabelled)", 7, c.Measured(10.0, np.ones(3), 2.0,
                    "does not improve", False), key=c.LOO_KEYS[True])
    words = c.numbers([loo])
    assert words["ch8_loo_relabelled_verdict"] == "does not improve"
    assert words["ch8_loo_plain_verdict"] == "not run at this scale"
    keys = {row.key for row in c.rows(get_scale("lab"))}
    assert set(c.LOO_KEYS.values()) <= keys and c.LOO_KEYS[False] not in {row.key for row in c.rows(get_scale("ci"))}


def test_the_game_rows_of_question_3_are_one_sentence_with_how_many_end_below_random():
    def game(test: str, ends: list[float], verdict: str) -> c.Finding:
        return c.Finding("Q3", "MinAtar", test, 7, c.Measured(np.array([10.0, 10.0]), np.array(ends), 2.0, verdict,
                                                             False))

    room = c.Finding("Q3", "Dark Room", "rooms", 7, c.Measured(9.0, np.array([0.1, 0.1]), 0.3, "other", False))
    same = [room, game("ED", [0.5, 0.7], "flat"), game("AD", [2.5, 3.5], "flat")]
    assert c.q3_games(same) == ("By chapter 7's rule, sampling, all 2: flat. 1 of 2 end below random play (2.00: "
                                "the 95% CI of their end lies under it), where the DQN learning the game from "
                                "scratch ends at 10.00")
    mixed = c.q3_games([game("ED", [0.5, 0.7], "flat"), game("AD", [1.0, 2.5], "worse")])
    assert mixed.startswith("By chapter 7's rule, sampling, ED: flat; AD: worse. 1 of 2 end below")  # AD's CI
    assert c.q3_games([room, c.Finding("Q3", "MinAtar", "ED", 7, None, "pending")]).endswith("(the table says how)")


def test_every_row_whose_results_are_stored_is_read_at_lab(monkeypatch):
    """The rows the stored lab results allow are measured, with a finite score; the rest are pending, not errors."""
    monkeypatch.delenv(artifacts.RESULTS_ENV, raising=False)
    stored = {r.label for r in book.stored_results()}
    lab = get_scale("lab")
    found = c.findings(lab, allow_pending=True)
    for row, f in zip(c.rows(lab), found, strict=True):
        if set(row.needs) <= stored:
            assert f.measured is not None and np.isfinite(float(f.score.estimate)), (row.test, f.pending)
        else:
            assert f.measured is None and "not stored at lab" in f.pending
