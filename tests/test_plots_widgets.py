import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from imitlib import plots, widgets


def test_curve_band_and_labels():
    plots.use_style()
    fig, ax = plt.subplots()
    plots.curves_with_ci(ax, {"a": np.random.default_rng(0).normal(size=(5, 40))}, smooth=4)
    plots.reference_line(ax, 1.0, label="optimal")
    plots.event_line(ax, 10, label="goal moves")
    plots.label(ax, "episode", "return", "t")
    assert ax.get_xlabel() == "episode" and ax.get_ylabel() == "return"
    assert len(ax.collections) == 1, "one CI band"
    assert ax.lines[0].get_xdata()[0] == 3, "smoothed curve starts where its first full window ends"
    plt.close(fig)


def test_grid_heatmaps_share_a_scale():
    fig = plots.grid_heatmaps([np.zeros((9, 9)), np.ones((9, 9))], ["a", "b"], marks=[{"goal": (1, 1)}] * 2,
                              paths=[np.array([40, 31]), np.array([40])])
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert {im.get_clim() for im in images} == {(0.0, 1.0)}
    plt.close(fig)


def test_training_explorer_builds_and_scrubs():
    at = np.array([0, 5, 10])
    values = np.random.default_rng(0).random((3, 81))
    w = widgets.training_explorer(at, values, np.full((3, 21), 40), np.array([3, 3, 77]), np.zeros(10))
    slider = w.children[0]
    slider.value = 2
    assert slider.max == 2
    plt.close("all")


def test_history_scrubber_builds_and_scrubs():
    paths = np.full((4, 20), 40)
    w = widgets.history_scrubber(paths, np.arange(4.0), goal=3)
    w.children[0].value = 3
    assert w.children[0].max == 3
    plt.close("all")


def test_point_with_ci_draws_the_mean_interval_and_every_seed():
    fig, ax = plt.subplots()
    plots.point_with_ci(ax, 2, np.array([1.0, 2.0, 3.0, 4.0]), color="k", label="x")
    line, dots = ax.containers[0][0], ax.collections[-1]
    assert line.get_ydata()[0] == 2.5 and len(dots.get_offsets()) == 4
    plt.close(fig)
