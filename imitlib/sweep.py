"""Fan a sweep's independent units out: in this process (the default) or as Ray tasks (``--ray [ADDRESS]``).

The book's evidence is many independent runs (seeds, students, ablations, parts). A pipeline that has several lists
them as :class:`Unit` s, each a module-level function and its arguments that builds or reads its own inputs and
returns arrays, and calls :func:`run`. Without Ray the units run here, one after another, exactly as a loop would.
Inside :func:`using_ray` each becomes one Ray task (``num_cpus`` = its thread count, which the task sets), on a local
Ray started on this machine's cores or on the cluster at ``ADDRESS``; the driver gathers the arrays in order and
stores the artifact itself, so ``results/`` lives on one machine and no shared filesystem is needed for results. A
task that fails is retried once, then reported by the unit's name.

A unit that costs hours can name a ``keep`` file: the driver writes the unit's result there (atomically) the moment
it finishes, and a rerun reads it back instead of running the unit again, so a sweep stopped halfway loses only
the units still running (and those resume from their own checkpoints). Its result must then be a mapping of
arrays or numbers, which come back as NumPy arrays; the caller names the file with its code hash, so edited code
never reads a stale one.

Same inputs, same numbers: a unit computes the same thing in a Ray worker as here (same seeds, CPU, same thread
count), so a sweep stores bit-identical artifacts either way (tested).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imitlib.io import atomic_write_bytes

INSTALL_HINT = "--ray needs Ray, which is not installed: pip install \"imitlib[ray]\" (or pip install 'ray>=2.40')"
_BACKEND: ContextVar[tuple[str | None] | None] = ContextVar("imitlib_sweep_backend", default=None)


class SweepError(RuntimeError):
    """A unit failed (after its retry); the message names it."""


@dataclass(frozen=True)
class Unit:
    """One independent piece of a sweep: ``fn(*args, **kwargs)``, named for progress and errors."""

    name: str
    fn: Callable[..., Any]  # module-level, so a Ray worker can import it
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    keep: str | None = None  # an .npz path: the finished result, written once and read back on a rerun


@contextlib.contextmanager
def using_ray(address: str | None = None) -> Iterator[None]:
    """Inside this block, :func:`run` sends units to Ray: a local cluster on this machine's cores, or ``address``
    (also read from ``RAY_ADDRESS``; ``auto`` finds a running one). Ray must be installed (``imitlib[ray]``)."""
    try:
        import ray  # noqa: F401
    except ImportError as err:
        raise SweepError(INSTALL_HINT) from err
    token = _BACKEND.set((address or os.environ.get("RAY_ADDRESS"),))
    try:
        yield
    finally:
        _BACKEND.reset(token)


def on_ray() -> bool:
    """Whether :func:`run` sends units to Ray here."""
    return _BACKEND.get() is not None


def _call(fn: Callable[..., Any], threads: int, args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """A unit as a Ray worker runs it: its thread count first, so it computes as it would in process."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return fn(*args, **kwargs)


def _kept(unit: Unit) -> dict[str, np.ndarray] | None:
    """A finished unit's stored result, or None if it has not finished (or keeps nothing)."""
    if unit.keep is None or not Path(unit.keep).exists():
        return None
    with np.load(unit.keep) as z:
        return {k: z[k] for k in z.files}


def _keep(unit: Unit, result: Any) -> Any:
    """Store a finished unit's result in its ``keep`` file, if it names one; the result, unchanged."""
    if unit.keep is not None:
        if not isinstance(result, Mapping):
            raise SweepError(f"unit {unit.name!r} keeps its result, so it must return a mapping of arrays, "
                             f"not {type(result).__name__}: drop keep= or return a dict")
        arrays = {str(k): np.asarray(v) for k, v in result.items()}
        atomic_write_bytes(Path(unit.keep), lambda f: np.savez(f, **arrays))
    return result


def run(units: Sequence[Unit], threads: int = 1) -> list[Any]:
    """Every unit's result, in order: here one after another, or as Ray tasks of ``threads`` CPUs each; units
    whose ``keep`` file exists are read back, not rerun."""
    out: dict[int, Any] = {k: r for k, u in enumerate(units) if (r := _kept(u)) is not None}
    todo = [k for k in range(len(units)) if k not in out]
    backend = _BACKEND.get()
    if backend is None:
        for k in todo:
            unit = units[k]
            out[k] = _keep(unit, unit.fn(*unit.args, **unit.kwargs))
        return [out[k] for k in range(len(units))]
    import ray

    if todo and not ray.is_initialized():
        address = backend[0]
        ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    task = ray.remote(num_cpus=threads, max_retries=1, retry_exceptions=True)(_call)
    refs = {task.remote(units[k].fn, threads, units[k].args, dict(units[k].kwargs)): k for k in todo}
    pending = list(refs)
    while pending:  # as each finishes, so a stop loses only the units still running
        ready, pending = ray.wait(pending, num_returns=1)
        unit = units[refs[ready[0]]]
        try:
            result = ray.get(ready[0])
        except Exception as err:  # a RayTaskError wrapping the unit's own exception, after its retry
            cause = getattr(err, "cause", None) or err
            raise SweepError(f"unit {unit.name!r} failed twice: {type(cause).__name__}: {cause}") from err
        out[refs[ready[0]]] = _keep(unit, result)
    return [out[k] for k in range(len(units))]


def ray_or_here(address: str | None) -> Any:
    """``--ray [ADDRESS]``: a sweep's units as Ray tasks (local without an address); without it, in this process."""
    return using_ray(address or None) if address is not None else contextlib.nullcontext()
