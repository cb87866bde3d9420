"""What every experiment module shares: loading a stored result or saying how to compute it."""

from __future__ import annotations

from collections.abc import Callable

from imitlib import artifacts
from imitlib.scale import Scale

CLI = "python -m imitlib"


def load_or_explain(get: Callable[[], artifacts.Artifact], scale: Scale, command: str) -> artifacts.Artifact | None:
    """The stored result ``get`` loads (at ``ci``: computed now); if it is not stored, None and one printed line
    naming the command that computes it, so a chapter never starts hours of training by surprise."""
    if scale.name == "ci":
        return get()
    with artifacts.dry_run():
        try:
            return get()
        except artifacts.NotStored as err:
            print(f"not computed yet at {scale.name} scale: {err}; run `{command.format(scale=scale.name)}`")
            return None
