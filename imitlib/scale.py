"""The three sizes every experiment runs at, selected by the ``IMITLIB_SCALE`` environment variable.

One code path, three presets: ``ci`` (2 CPU cores, the whole book in minutes, noisy but end to end),
``lab`` (the default: CPU or free Colab, real results with >= 5 seeds) and ``full`` (one GPU, ALE Atari
at paper scale). Experiments read their sizes from here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_VAR = "IMITLIB_SCALE"
DEFAULT = "lab"


@dataclass(frozen=True)
class TabularScale:
    """Sizes of the tabular Q-learning experiments on Dark Room (chapter 1)."""

    seeds: int  # independent seeds behind every curve with a confidence band
    goals: int  # goals per seed (80 = every cell but the centre, whose mirror is itself)
    episodes: int  # episodes of learning per run
    switch_episodes: int  # episodes before *and* after the goal moves


@dataclass(frozen=True)
class Scale:
    """A named preset: every size an experiment may read."""

    name: str
    tabular: TabularScale


PRESETS: dict[str, Scale] = {
    "ci": Scale(
        name="ci",
        tabular=TabularScale(seeds=3, goals=12, episodes=150, switch_episodes=150),
    ),
    "lab": Scale(
        name="lab",
        tabular=TabularScale(seeds=10, goals=80, episodes=600, switch_episodes=600),
    ),
    "full": Scale(
        name="full",
        tabular=TabularScale(seeds=20, goals=80, episodes=600, switch_episodes=600),
    ),
}


class UnknownScaleError(ValueError):
    """Raised for a scale name that is not one of the presets."""


def get_scale(name: str | None = None) -> Scale:
    """Return the preset called ``name``, or the one ``IMITLIB_SCALE`` selects (default ``lab``)."""
    chosen = name if name is not None else os.environ.get(ENV_VAR, DEFAULT)
    key = chosen.strip().lower()
    if key not in PRESETS:
        valid = ", ".join(PRESETS)
        raise UnknownScaleError(
            f"unknown scale {chosen!r}: valid scales are {valid}. "
            f"Set {ENV_VAR} to one of them (e.g. `export {ENV_VAR}=ci`)."
        )
    return PRESETS[key]
