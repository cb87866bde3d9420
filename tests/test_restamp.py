"""The proofs behind ``python -m imitlib restamp`` and the command itself.

Each proof compares what today's code computes with a fixture made by the code that stored the lab artifacts
(``tests/fixtures/``: ``darkroom_fingerprints_lab.json`` by 29fb349, the history code that trained the stored Dark
Room students; ``ci_fingerprints.json`` says per result which commit made it). ``IMITLIB_PROOF=1`` (set by the
restamp command) runs them in full; without it the Dark Room proof runs its quick ci part and the ci-results proof
is skipped (it computes every chapter at ci: minutes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from imitlib import artifacts, restamp
from imitlib.experiments import fingerprints
from imitlib.scale import get_scale

FIXTURES = Path(__file__).parent / "fixtures"
FULL = os.environ.get(restamp.PROOF_ENV, "") not in ("", "0")


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_darkroom_students_see_the_same_data_and_batches():
    """Same datasets, same batches in every chunk of every seed, same held-out prompts as the old history code."""
    if FULL:  # lab: the data the stored students were trained on, first batches of every chunk (PER_CHUNK)
        old, new = _fixture("darkroom_fingerprints_lab.json"), fingerprints.darkroom_fingerprints(get_scale("lab"))
    else:  # ci: every batch of every seed
        old = _fixture("ci_fingerprints.json")["darkroom"]
        new = fingerprints.darkroom_fingerprints(get_scale("ci"), per_chunk=None)
    assert set(new) == set(old)
    changed = sorted(k for k in old if new[k] != old[k])
    assert not changed, f"{len(changed)} of {len(old)} digests differ, e.g. {changed[:3]}"


def test_ci_results_are_unchanged():
    """Every result the book loads, computed at ci, equals (to 1e-6) what the code that stored it computed."""
    if not FULL:
        pytest.skip(f"computes every chapter at ci; runs under {restamp.PROOF_ENV}=1 (python -m imitlib restamp)")
    old = _fixture("ci_fingerprints.json")["results"]
    new = fingerprints.result_fingerprints(get_scale("ci"))
    differ = {label: fingerprints.differences(old[label]["arrays"], new.get(label, {})) for label in old}
    differ = {k: v for k, v in differ.items() if v}
    assert not differ, f"results changed at ci: {differ}"


def test_fingerprints_tell_noise_from_change():
    a = np.linspace(0, 1, 100)
    old = {"x": fingerprints.array_fingerprint(a)}
    assert fingerprints.differences(old, {"x": fingerprints.array_fingerprint(a * (1 + 1e-10))}) == []
    assert fingerprints.differences(old, {"x": fingerprints.array_fingerprint(a * (1 + 1e-4))}) == ["x: values"]
    assert fingerprints.differences(old, {"x": fingerprints.array_fingerprint(a * (1 + 2e-5))}) == []  # another CPU
    assert fingerprints.differences(old, {"x": fingerprints.array_fingerprint(a[:50])}) == ["x: shape"]
    assert fingerprints.differences(old, {}) == ["x: missing"]
    bias = np.array([1e-3, -1e-3 + 1e-12])  # sums to ~0: rounding noise must be judged against its magnitudes
    noisy = bias + np.array([1e-15, 0.0])
    assert fingerprints.differences({"b": fingerprints.array_fingerprint(bias)},
                                    {"b": fingerprints.array_fingerprint(noisy)}) == []
    assert fingerprints.differences({"b": fingerprints.array_fingerprint(bias)},
                                    {"b": fingerprints.array_fingerprint(bias * 1.01)}) == ["b: values"]


def code_before() -> None:
    """Stands for the code that stored an artifact."""


def code_after() -> None:
    """Stands for today's (edited) code."""


def _stale_store(tmp_path, monkeypatch, name: str = "ch04_darkroom_ad_knowledge"):
    """One stored artifact, then its code changes (a different code list): it is stale."""
    monkeypatch.setenv(artifacts.RESULTS_ENV, str(tmp_path / "results"))
    artifacts.cached(name, {"x": 1}, lambda: {"a": [1.0]}, scale="lab", code=(code_before,))
    with artifacts.dry_run() as seen:
        artifacts.cached(name, {"x": 1}, lambda: {}, scale="lab", code=(code_after,))
    assert [s.state for s in seen] == ["stale"]
    return seen[0]


def test_a_stamp_makes_the_artifact_current_and_says_why(tmp_path, monkeypatch):
    status = _stale_store(tmp_path, monkeypatch)
    test = next(iter(restamp.PROOFS))
    restamp.stamp(status, test)
    with artifacts.dry_run() as seen:
        art = artifacts.cached(status.name, {"x": 1}, lambda: {}, scale="lab", code=(code_after,))
    assert [s.state for s in seen] == ["stored"] and art["a"].tolist() == [1.0]
    note = art.provenance["restamped"][-1]
    assert note["after"] == test and note["old_code_hash"] != art.provenance["code_hash"]
    assert artifacts.load(status.folder).provenance["code_hash"] == status.code_hash  # checksums still hold
    assert f"after `{test}`" in art.provenance_markdown()  # the book's provenance dropdown says so


def test_a_failed_proof_stamps_nothing(tmp_path, monkeypatch):
    status = _stale_store(tmp_path, monkeypatch)
    monkeypatch.setattr(restamp, "stale_artifacts", lambda scale: [status])

    def fail(test, repo):
        raise restamp.RestampError("failed")

    with pytest.raises(restamp.RestampError):
        restamp.restamp(next(iter(restamp.PROOFS)), tmp_path, prove=fail)
    assert "restamped" not in json.loads((status.folder / "provenance.json").read_text())


def test_a_proof_stamps_only_what_it_covers(tmp_path, monkeypatch):
    covered = _stale_store(tmp_path, monkeypatch)
    other = _stale_store(tmp_path, monkeypatch, name="ch01_tabular")
    monkeypatch.setattr(restamp, "stale_artifacts", lambda scale: [covered, other])
    test = "tests/test_restamp.py::test_darkroom_students_see_the_same_data_and_batches"
    monkeypatch.setattr(restamp.artifacts, "git_commit", lambda: "abc")
    done, left = restamp.restamp(test, tmp_path, prove=lambda test, repo: None)
    assert (done, left) == (["ch04_darkroom_ad_knowledge"], ["ch01_tabular"])
    assert artifacts.load(covered.folder).provenance["restamped"][-1]["commit"] == "abc"  # the commit proven


def test_an_unknown_proof_is_refused(tmp_path):
    with pytest.raises(restamp.RestampError, match="not a proof test"):
        restamp.run_proof("tests/test_restamp.py::test_nothing", tmp_path)


def test_code_lists_never_name_private_functions():
    with pytest.raises(ValueError, match="private"):
        artifacts.code_hash((_fixture,))


def test_the_cli_refuses_an_unknown_proof_in_one_line(capsys):
    from imitlib.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["restamp", "--after", "tests/test_x.py::test_y"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "invalid choice" in err


def test_the_cli_says_when_nothing_is_stale(tmp_path, monkeypatch, capsys):
    from imitlib.cli import main

    monkeypatch.setattr(restamp, "stale_artifacts", lambda scale: [])
    assert main(["restamp", "--after", next(iter(restamp.PROOFS))]) == 0
    assert "nothing stale" in capsys.readouterr().out


def test_timings_are_not_results():
    old = {"wall_seconds": fingerprints.array_fingerprint(np.array([1.0]))}
    assert fingerprints.differences(old, {"wall_seconds": fingerprints.array_fingerprint(np.array([2.0]))}) == []
