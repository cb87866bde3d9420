"""Several games' recorded histories read as one dataset, optionally relabelled per history.

Chapter 7's leave-one-game-out students train on four MinAtar games' learning histories together. Every game shares
one observation space (ten object channels) and MinAtar's six actions, so their windows stack into one batch;
this module only has to draw windows from all of them as :class:`imitlib.history.HistoryReader` draws them from
one (uniform over all windows of all runs), which is the one method student training calls.

With ``relabel_seed`` set, every history is shown under its own fixed random permutation of object channels and
actions (:func:`imitlib.augment.relabelling`), and ``copies`` > 1 shows each history that many times, each copy
relabelled its own way: the augmentation of Kirsch et al. (2023) and Headless-AD, so that only the history itself can
tell the student what a channel or an action means. Nothing is copied on disk; windows are relabelled as drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from imitlib import augment

COPY_STRIDE = 1000  # virtual run id = (game * COPY_STRIDE + run) * copies + copy


class MultiGameHistory:
    """Learning histories of several games, drawn from as one history; run ids are virtual (see
    :data:`COPY_STRIDE`)."""

    def __init__(self, readers: Sequence[Any], relabel_seed: int | None = None, copies: int = 1) -> None:
        if not readers:
            raise ValueError("give at least one game's history")
        shapes = {(tuple(r.manifest["obs_shape"]), int(r.manifest["n_actions"])) for r in readers}
        if len(shapes) != 1:
            raise ValueError(f"the games' histories must share one observation shape and action count, got {shapes}: "
                             "record them with the shared 10-channel MinAtar space")
        if copies < 1 or (copies > 1 and relabel_seed is None):
            raise ValueError("copies > 1 only make sense relabelled: give relabel_seed, or copies=1")
        self.readers, self.relabel_seed, self.copies = list(readers), relabel_seed, copies
        (self.obs_shape, self.n_actions), = shapes
        self.manifest = {**readers[0].manifest, "meta": {"games": [r.manifest["meta"] for r in readers],
                                                        "relabel_seed": relabel_seed, "copies": copies}}
        self._source: dict[int, tuple[int, int]] = {}  # virtual run -> (reader index, run)
        self._steps: dict[int, int] = {}  # virtual run -> recorded steps
        for g, reader in enumerate(self.readers):
            runs, lengths = reader.episodes["run"], reader.episodes["length"]
            for run in reader.runs():
                for c in range(copies):
                    vid = (g * COPY_STRIDE + int(run)) * copies + c
                    self._source[vid] = (g, int(run))
                    self._steps[vid] = int(lengths[runs == run].sum())

    def runs(self) -> list[int]:
        """Every virtual run: each game's runs, each shown ``copies`` times."""
        return sorted(self._source)

    def task(self, run: int) -> dict[str, Any]:
        """The underlying run's task (its game and seed), with the game's index and the copy."""
        g, r = self._source[run]
        return {**self.readers[g].task(r), "game_index": g, "copy": run % self.copies}

    def step_window(self, run: int, start: int, n: int) -> dict[str, np.ndarray]:
        """``n`` consecutive recorded steps of a virtual run, relabelled as that run always is."""
        g, r = self._source[run]
        window = self.readers[g].step_window(r, start, n)
        if self.relabel_seed is None:
            return window
        label = augment.relabelling(self.relabel_seed, run, self.obs_shape[-1], self.n_actions)
        return augment.relabel_window(window, label, self.obs_shape)

    def step_windows(self, n_steps: int, n: int, seed: int, runs: Sequence[int] | None = None,
                     by_task: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """``n`` windows of ``n_steps`` steps, uniform over all windows of all (virtual) runs, or over runs."""
        pool = [r for r in (runs if runs is not None else self.runs()) if self._steps.get(r, 0) >= n_steps]
        if not pool:
            raise ValueError(f"no run has {n_steps} recorded steps")
        counts = np.array([self._steps[r] - n_steps + 1 for r in pool], dtype=float)
        rng = np.random.default_rng(seed)
        for _ in range(n):
            i = rng.integers(len(pool)) if by_task else rng.choice(len(pool), p=counts / counts.sum())
            yield self.step_window(pool[i], int(rng.integers(counts[i])), n_steps)
