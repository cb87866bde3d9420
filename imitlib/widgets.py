"""ipywidgets explorers for the notebooks. Each has a static figure beside it in the rendered book,
because a static HTML page cannot run a Python kernel behind a slider."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from imitlib.plots import COLORS


def draw_snapshot(
    ax_map: plt.Axes, ax_curve: plt.Axes, value: np.ndarray, path: np.ndarray, goal: int, episode: int,
    returns: np.ndarray, *, size: int, vmax: float,
) -> None:
    """One frame of the training explorer: value map + greedy path, and where we are on the curve."""
    rows, cols = np.divmod(path, size)
    ax_map.imshow(value.reshape(size, size), cmap="viridis", vmin=0, vmax=vmax)
    ax_map.plot(cols, rows, color="white", lw=1.5)
    ax_map.plot(goal % size, goal // size, marker="*", color="#ff4d4d", ms=12, mec="black")
    ax_map.set_title(f"max_a Q after {episode} episodes", fontsize=9)
    ax_map.set_xticks([])
    ax_map.set_yticks([])
    ax_map.grid(False)
    ax_curve.plot(returns, color=COLORS["learner"], lw=0.8, alpha=0.6)
    ax_curve.axvline(episode, color=COLORS["event"], lw=1.2)
    ax_curve.set_xlabel("episode")
    ax_curve.set_ylabel("return (behaviour)")


def scrubber(n: int, description: str, draw: Callable[[int, plt.Axes, plt.Axes], None]) -> widgets.Widget:
    """A slider over ``n`` frames; moving it redraws a two-panel figure with ``draw(i, left, right)``."""
    out = widgets.Output()
    slider = widgets.IntSlider(value=0, min=0, max=n - 1, description=description, continuous_update=False)

    def show(change: dict | None = None) -> None:
        with out:
            out.clear_output(wait=True)
            _, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained",
                                     gridspec_kw={"width_ratios": [1, 1.6]})
            draw(slider.value, a, b)
            plt.show()

    slider.observe(show, names="value")
    show()
    return widgets.VBox([slider, out])


def training_explorer(
    at: np.ndarray, values: np.ndarray, paths: np.ndarray, goals: np.ndarray, returns: np.ndarray,
    *, size: int = 9,
) -> widgets.Widget:
    """Slider over training snapshots of one Q-learner: its value map, greedy path, and return curve."""
    vmax = float(values.max())
    return scrubber(len(at), "snapshot", lambda i, a, b: draw_snapshot(
        a, b, values[i], paths[i], int(goals[i]), int(at[i]), returns, size=size, vmax=vmax))


def history_scrubber(paths: np.ndarray, returns: np.ndarray, goal: int, *, size: int = 9) -> widgets.Widget:
    """Slider over the recorded episodes of one run: the path walked in that episode, and where it sits on
    the run's return curve."""

    def draw(i: int, a: plt.Axes, b: plt.Axes) -> None:
        draw_path(a, paths[i], goal, size=size, title=f"episode {i}: return {returns[i]:.0f}")
        b.plot(returns, color=COLORS["learner"], lw=0.8)
        b.axvline(i, color=COLORS["event"])
        b.set_xlabel("recorded episode")
        b.set_ylabel("return")

    return scrubber(len(paths), "episode", draw)


def draw_path(ax: plt.Axes, path: np.ndarray, goal: int, *, size: int = 9, title: str = "") -> None:
    """One Dark Room episode: the cells visited (darker = more often), the route, the goal."""
    counts = np.bincount(np.asarray(path, dtype=int), minlength=size * size).reshape(size, size)
    ax.imshow(counts, cmap="Greys", vmin=0, vmax=max(4, counts.max()))
    rows, cols = np.divmod(np.asarray(path, dtype=int), size)
    ax.plot(cols, rows, color=COLORS["learner"], lw=1.2, alpha=0.8)
    ax.plot(goal % size, goal // size, marker="*", color="#ff4d4d", ms=12, mec="black", linestyle="none")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
