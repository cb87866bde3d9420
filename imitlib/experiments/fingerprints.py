"""What the Dark Room students were trained on, as digests: the proof that lets a code change re-stamp them.

Chapter 4's and 5's Dark Room students cost about ten CPU-hours. When the history code changes (its format, its
reader, its window sampling) but every student would still see exactly the same training batches, the same
prompts and the same probe windows for the same seed, retraining them would reproduce them bit for bit. So
instead of retraining we compare digests: :func:`darkroom_fingerprints` hashes, for every student set the book
stores, every batch of every seed's training (as the model receives it), the in-context prompts and the probe
windows, plus every episode of every dataset as read back. A fixture of these digests made by the old code
(``tests/fixtures/``) against the new code's digests is the test that licenses ``python -m imitlib restamp``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from imitlib.scale import Scale

PER_CHUNK = 25  # batches per chunk in the proof: each chunk is seeded on its own, so all chunks are covered
# what the model reads of a batch, in a canonical dtype each (a storage dtype may change; the values may not)
CANONICAL = {"obs": np.int64, "action": np.int64, "reward": np.float32, "terminated": np.bool_,
             "truncated": np.bool_}


def digest_arrays(arrays: dict[str, Any], h: Any = None) -> Any:
    """Feed ``arrays`` (the canonical fields, in a fixed order, with shapes) into a sha256."""
    h = h or hashlib.sha256()
    for key, dtype in CANONICAL.items():
        if key in arrays:
            a = np.ascontiguousarray(np.asarray(arrays[key]), dtype=dtype)
            h.update(f"{key}{a.shape}".encode())
            h.update(a.tobytes())
    return h


def _student_sets(scale: Scale) -> Iterator[tuple[str, Any]]:
    """Every Dark Room student set the book stores at ``scale``, by artifact name (chapter 4, chapter 5)."""
    from imitlib import experiments as ex

    for kind in ("ad", "ed"):
        exp = ex.darkroom_students_config(scale, kind)
        yield ex.students_name(exp), exp
    for name in ex.ABLATIONS:
        exp = ex.ablation_test(scale, name).students
        yield ex.students_name(exp), exp


def _batch_digest(exp: Any, scale: Scale, seed: int, per_chunk: int | None) -> str:
    """One seed's training stream as :func:`imitlib.imitation.train_student` draws it: every chunk (each is seeded
    on its own), its first ``per_chunk`` batches (None: all of them), in order."""
    from imitlib import experiments as ex
    from imitlib.imitation import batches

    reader = ex.student_data(exp, scale)
    goals = set(ex.student_goals(exp).tolist())
    runs = [r for r in reader.runs() if reader.task(r)["goal"] in goals]
    cfg = replace(exp.student, seed=seed)
    h = hashlib.sha256()
    for chunk in range(-(-cfg.updates // cfg.checkpoint_every)):
        n = min(cfg.checkpoint_every, cfg.updates - chunk * cfg.checkpoint_every)
        for i, batch in enumerate(batches(cfg, reader, runs, chunk)):
            if i >= n or (per_chunk is not None and i >= per_chunk):
                break
            digest_arrays({k: v.numpy() for k, v in batch.items() if k in CANONICAL}, h)
    return h.hexdigest()


def _dataset_digest(reader: Any) -> str:
    """Every run of a history as read back (its task, then all its episodes as one window), in order."""
    h = hashlib.sha256()
    for run in reader.runs():
        h.update(repr(sorted(reader.task(run).items())).encode())
        digest_arrays(reader.window(run, 0, reader.run_episodes(run)), h)
    return h.hexdigest()


def darkroom_fingerprints(scale: Scale, per_chunk: int | None = PER_CHUNK) -> dict[str, str]:
    """Digests of everything the stored Dark Room students were trained and tested on: every dataset whole, and
    of each seed's training stream the first ``per_chunk`` batches of every chunk (None: every batch)."""
    from imitlib import experiments as ex
    from imitlib.history import HistoryReader

    out = {}
    for source in ("knowledge", "epsilon"):
        folder = ex.darkroom_histories(ex.darkroom_histories_config(scale, source), scale)
        for part in ("learning", "expert"):
            out[f"data/{source}/{part}"] = _dataset_digest(HistoryReader(folder / part))
    for name, exp in _student_sets(scale):
        for seed in exp.seeds:
            out[f"batches/{name}/seed{seed}"] = _batch_digest(exp, scale, seed, per_chunk)
    ad = ex.darkroom_students_config(scale, "ad")
    test = ex.in_context_config(scale, ad, prompt_episodes=3)
    _, held_out = ex.goal_split(ad.data)
    out["prompt/held_out"] = digest_arrays(ex.learning_prompt(test, scale, np.repeat(held_out, 2))).hexdigest()
    return out


def array_fingerprint(a: np.ndarray) -> dict[str, Any]:
    """An array's shape, dtype, exact digest, and sums (for values a BLAS may round differently run to run)."""
    a = np.asarray(a)
    numeric = a.dtype.kind in "biuf"
    x = a.astype(np.float64) if numeric else None
    return {"shape": list(a.shape), "dtype": str(a.dtype),
            "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
            "sum": float(np.nansum(x)) if numeric else None,
            "abs_sum": float(np.nansum(np.abs(x))) if numeric else None}


# sums may differ this much: BLAS reduction order, and another CPU's kernels (on a new machine the ci students'
# attention key biases, whose gradient is zero up to rounding, moved by 1.3e-5 of their magnitude; every other
# weight by ~1e-8). A real change (other batches, other code) moves weights by percents.
RELATIVE = 5e-5
TIMINGS = ("wall_seconds",)  # how long a run took: a measurement of the machine, not a result


def differences(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """What differs between two results' array fingerprints: none, or "key: shape/dtype/values/missing"."""
    out = []
    for key, a in old.items():
        if key in TIMINGS:
            continue
        b = new.get(key)
        if b is None:
            out.append(f"{key}: missing")
        elif a["shape"] != b["shape"]:
            out.append(f"{key}: shape")
        elif a["dtype"] != b["dtype"]:
            out.append(f"{key}: dtype")
        elif a["sha256"] != b["sha256"] and not _close(a, b):
            out.append(f"{key}: values")
    return out


def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Sums equal up to rounding, measured against the array's size (its sum of magnitudes): a sum near zero by
    cancellation (a bias vector) would otherwise make last-digit noise look like a change."""
    if a["sum"] is None:
        return False
    scale = max(abs(a["abs_sum"]), 1e-12)
    return abs(a["sum"] - b["sum"]) <= RELATIVE * scale and abs(a["abs_sum"] - b["abs_sum"]) <= RELATIVE * scale


def result_fingerprints(scale: Scale) -> dict[str, dict[str, dict[str, Any]]]:
    """Every stored result the book loads, computed at ``scale`` (meant for ``ci``: minutes), array by array."""
    from imitlib.book import stored_results

    return {f"{r.chapter}/{r.label}": {k: array_fingerprint(v) for k, v in sorted(r.load(scale).data.items())}
            for r in stored_results()}
