"""Re-stamp stored artifacts whose code changed but whose results provably did not.

A stored artifact carries the hash of the code that made it; an edit to that code marks it stale, and the book says
so. Some edits cannot change a result: a module split, a renamed helper, a new on-disk history format that reads
back the same training batches. Retraining to show that costs CPU-hours (the Dark Room students alone take about
ten); a test shows it in minutes. ``python -m imitlib restamp --after TEST`` runs the named proof test in full
(``IMITLIB_PROOF=1``) and, only if it passes, rewrites the stale artifacts that test covers with today's code hash,
recording the test, the old hash, the commit and the date in their provenance. Nothing else is touched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from imitlib import artifacts
from imitlib.io import atomic_write_bytes

PROOF_ENV = "IMITLIB_PROOF"  # set: proof tests run in full (lab data), not only their quick ci part
# proof test -> the artifact names (prefixes) whose re-stamping its passing licenses
PROOFS = {
    # every stored Dark Room student is trained and tested on bit-identical data, batches and prompts (lab)
    "tests/test_restamp.py::test_darkroom_students_see_the_same_data_and_batches": (
        "ch04_darkroom_", "ch05_incontext_darkroom_", "ch05_probes_darkroom_"),
    # every result the book loads, computed at ci, equals what the code that stored it computed at ci
    "tests/test_restamp.py::test_ci_results_are_unchanged": ("ch01_", "ch02_", "ch03_", "ch04_", "ch05_", "ch06_",
                                                             "ch07_"),
}


class RestampError(RuntimeError):
    """The proof is unknown or failed: nothing was re-stamped."""


def stale_artifacts(scale: str = "lab") -> list[artifacts.Status]:
    """Every stored artifact the book loads at ``scale`` that today's code would call stale (computes nothing)."""
    from imitlib import book
    from imitlib.scale import get_scale

    seen: list[artifacts.Status] = []
    for result in book.stored_results():
        with artifacts.dry_run() as found:
            try:
                result.load(get_scale(scale))
            except artifacts.NotStored:
                pass
        seen += [s for s in found if s.state == "stale" and s.folder not in {t.folder for t in seen}]
    return seen


def run_proof(test: str, repo: Path) -> None:
    """Run the proof test in full with pytest; raise :class:`RestampError` unless it passes."""
    if test not in PROOFS:
        raise RestampError(f"{test} is not a proof test; use one of: {', '.join(PROOFS)}")
    env = {**os.environ, PROOF_ENV: "1", "OMP_NUM_THREADS": "1"}  # as the fixtures were made: one BLAS thread
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=repo, env=env)
    if done.returncode != 0:
        raise RestampError(f"{test} failed (exit {done.returncode}): nothing re-stamped; recompute instead")


def stamp(status: artifacts.Status, test: str, commit: str | None = None) -> None:
    """Write today's code hash into one artifact's provenance, with a note saying which test licensed it."""
    path = status.folder / "provenance.json"
    provenance = json.loads(path.read_text())
    note = {"after": test, "old_code_hash": provenance.get("code_hash"), "commit": commit or artifacts.git_commit(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    provenance["restamped"] = [*provenance.get("restamped", []), note]
    provenance["code_hash"] = status.code_hash
    text = json.dumps(provenance, indent=2, sort_keys=True).encode()
    atomic_write_bytes(path, lambda f: f.write(text))


def restamp(test: str, repo: Path, scale: str = "lab", prove: Callable[[str, Path], None] = run_proof,
            ) -> tuple[list[str], list[str]]:
    """Prove, then re-stamp: returns (re-stamped names, names still stale because the test does not cover them)."""
    stale = stale_artifacts(scale)
    if not stale:
        return [], []
    commit = artifacts.git_commit()  # before the first stamp: stamping itself dirties results/
    prove(test, repo)
    covered = PROOFS[test]
    done, left = [], []
    for status in stale:
        if status.name.startswith(covered):
            stamp(status, test, commit)
            done.append(status.name)
        else:
            left.append(status.name)
    return done, left
