"""Fan a sweep's independent units out: in this process (the default) or as Ray tasks (``--ray [ADDRESS]``).

The book's evidence is many independent runs (seeds, students, ablations, parts). A pipeline that has several lists
them as :class:`Unit` s, each a module-level function and its arguments that builds or reads its own inputs and
returns arrays, and calls :func:`run`. Without Ray the units run here, one after another, exactly as a loop would.
Inside :func:`using_ray` each becomes one Ray task (``num_cpus`` = its thread count, which the task sets), on a local
Ray started on this machine's cores or on the cluster at ``ADDRESS``; the driver gathers the arrays in order and
stores the artifact itself, so ``results/`` lives on one machine and no shared filesystem is needed for results. A
task that fails is retried once, then reported by the unit's name.

Same inputs, same numbers: a unit computes the same thing in a Ray worker as here (same seeds, CPU, same thread
count), so a sweep stores bit-identical artifacts either way (tested).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

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


def run(units: Sequence[Unit], threads: int = 1) -> list[Any]:
    """Every unit's result, in order: here one after another, or as Ray tasks of ``threads`` CPUs each."""
    backend = _BACKEND.get()
    if backend is None:
        return [unit.fn(*unit.args, **unit.kwargs) for unit in units]
    import ray

    if not ray.is_initialized():
        address = backend[0]
        ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    task = ray.remote(num_cpus=threads, max_retries=1, retry_exceptions=True)(_call)
    refs = [task.remote(unit.fn, threads, unit.args, dict(unit.kwargs)) for unit in units]
    out = []
    for unit, ref in zip(units, refs, strict=True):
        try:
            out.append(ray.get(ref))
        except Exception as err:  # a RayTaskError wrapping the unit's own exception, after its retry
            cause = getattr(err, "cause", None) or err
            raise SweepError(f"unit {unit.name!r} failed twice: {type(cause).__name__}: {cause}") from err
    return out


def ray_or_here(address: str | None) -> Any:
    """``--ray [ADDRESS]``: a sweep's units as Ray tasks (local without an address); without it, in this process."""
    return using_ray(address or None) if address is not None else contextlib.nullcontext()
