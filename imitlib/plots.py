"""One house style for every figure: vector output, labelled axes, means with 95% CI bands.

Roles have fixed colours across the whole book (the teacher is always the same blue, random always
grey), so a reader can compare figures from different chapters at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from imitlib.stats import bootstrap_ci, running_mean

COLORS = {
    "teacher": "#1f5fa8",
    "learner": "#1f5fa8",
    "alt": "#d9822b",
    "student": "#c0392b",
    "ed": "#8e44ad",
    "ad": "#c0392b",
    "random": "#7f7f7f",
    "optimal": "#2e8b57",
    "event": "#444444",
}

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "font.size": 10,
    "svg.fonttype": "path",
    "figure.constrained_layout.use": True,
}

CYCLE = ("learner", "alt", "student", "ed")


def use_style(fmt: str = "svg") -> None:
    """Apply the house style; in a notebook also choose vector (``svg``) or ``retina`` PNG output."""
    mpl.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats(fmt)


def curve_with_ci(
    ax: plt.Axes,
    samples: np.ndarray,
    *,
    x: np.ndarray | None = None,
    label: str,
    color: str,
    smooth: int = 1,
    linestyle: str = "-",
) -> None:
    """Mean across seeds (axis 0) with its 95% bootstrap band; ``smooth`` averages over a window first."""
    y = np.asarray(samples, dtype=float)
    xs = np.arange(y.shape[1]) if x is None else np.asarray(x)
    if smooth > 1:  # a point stands at the end of its window, so nothing is drawn before it happened
        y = running_mean(y, smooth)
        xs = xs[smooth - 1:]
    ci = bootstrap_ci(y)
    ax.plot(xs, ci.estimate, color=color, label=f"{label} (n={y.shape[0]})", linestyle=linestyle, lw=1.6)
    ax.fill_between(xs, ci.low, ci.high, color=color, alpha=0.2, lw=0)


def curves_with_ci(
    ax: plt.Axes, curves: dict[str, np.ndarray], *, smooth: int = 1, linestyle: str = "-", suffix: str = ""
) -> None:
    """Several named (seeds, T) sample arrays, one colour each in the house order."""
    for (name, samples), role in zip(curves.items(), CYCLE, strict=False):
        curve_with_ci(ax, samples, label=name + suffix, color=COLORS[role], smooth=smooth, linestyle=linestyle)


def point_with_ci(ax: plt.Axes, x: float, samples: np.ndarray, *, color: str, label: str | None = None,
                  hollow: bool = False) -> None:
    """One mean across seeds with its 95% bootstrap interval, and every seed as a small dot beside it."""
    ci = bootstrap_ci(np.asarray(samples, dtype=float))
    ax.errorbar(x, ci.estimate, yerr=[[ci.estimate - ci.low], [ci.high - ci.estimate]], fmt="o", capsize=4,
                color=color, mfc="white" if hollow else None, label=label)
    ax.scatter(np.full(len(samples), x) + 0.12, samples, s=9, color=color, alpha=0.5)


def reference_line(ax: plt.Axes, y: float, *, label: str, role: str = "optimal") -> None:
    """A horizontal reference (optimal return, random policy, a paper's number)."""
    style = "--" if role == "optimal" else ":"
    ax.axhline(y, color=COLORS.get(role, COLORS["event"]), linestyle=style, lw=1.2, label=label)


def event_line(ax: plt.Axes, x: float, *, label: str) -> None:
    """A vertical marker for something that happened during training (the goal moved)."""
    ax.axvline(x, color=COLORS["event"], linestyle="-.", lw=1.0, label=label)


def label(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None = None, legend: bool = True) -> None:
    """Every axis gets words, never bare numbers."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def grid_heatmaps(
    grids: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    marks: Sequence[dict[str, tuple[int, int]]] | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    cbar_label: str = "value",
    paths: Sequence[np.ndarray] | None = None,
) -> plt.Figure:
    """A row of square heatmaps on a shared colour scale, with optional marked cells and paths."""
    n = len(grids)
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n + 0.8, 2.5), squeeze=False, layout="constrained")
    lo = min(float(np.min(g)) for g in grids) if vmin is None else vmin
    hi = max(float(np.max(g)) for g in grids) if vmax is None else vmax
    im = None
    for i, (ax, grid, title) in enumerate(zip(axes[0], grids, titles, strict=True)):
        im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if paths is not None and len(paths[i]):
            rows, cols = np.divmod(np.asarray(paths[i]), grid.shape[1])
            ax.plot(cols, rows, color="white", lw=1.2, alpha=0.9)
        for name, (r, c) in (marks[i] if marks else {}).items():
            marker = {"goal": "*", "start": "o", "old goal": "x"}.get(name, "s")
            ax.plot(c, r, marker=marker, color="white" if name != "goal" else "#ff4d4d", ms=9,
                    mec="black", mew=0.6, label=name, linestyle="none")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label=cbar_label)
    if marks:
        handles, names = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=8)
    return fig


def value_maps(
    at: np.ndarray,
    values: np.ndarray,
    paths: np.ndarray,
    *,
    episodes: Sequence[int],
    marks: dict[str, tuple[int, int]],
    size: int = 9,
) -> plt.Figure:
    """Dark Room value maps (max_a Q per cell) with greedy paths, at the stored snapshots nearest ``episodes``."""
    pick = [int(np.argmin(np.abs(np.asarray(at) - e))) for e in episodes]
    return grid_heatmaps(
        [values[i].reshape(size, size) for i in pick], [f"after {at[i]} episodes" for i in pick],
        marks=[marks] * len(pick), paths=[paths[i] for i in pick], cbar_label="max_a Q",
    )


MINATAR_COLORS = np.array([  # one colour per object channel (up to 10 channels)
    [0.95, 0.75, 0.1], [0.2, 0.6, 1.0], [0.9, 0.3, 0.3], [0.4, 0.85, 0.4], [0.8, 0.5, 0.9],
    [1.0, 0.6, 0.2], [0.5, 0.9, 0.9], [0.9, 0.9, 0.9], [0.6, 0.4, 0.2], [1.0, 0.4, 0.7],
])


def minatar_rgb(frame: np.ndarray) -> np.ndarray:
    """A MinAtar observation ``(10, 10, C)`` as an RGB image: each object channel in its own colour on black."""
    frame = np.asarray(frame, dtype=float)
    return np.clip(frame @ MINATAR_COLORS[: frame.shape[-1]], 0, 1)


def frame_strip(rows: dict[str, np.ndarray], *, titles: Sequence[str] | None = None) -> plt.Figure:
    """Rows of game frames (label -> ``(n, H, W, 3)`` RGB), e.g. a teacher at several points of training."""
    n_rows, n_cols = len(rows), max(len(v) for v in rows.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.1 * n_cols + 1.2, 1.15 * n_rows), squeeze=False)
    for r, (name, frames) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c < len(frames):
                ax.imshow(frames[c], interpolation="nearest")
            else:
                ax.axis("off")
            if r == 0 and titles is not None and c < len(titles):
                ax.set_title(titles[c], fontsize=8)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return fig
