"""Chapter 5, last experiment: linear probes of the AD student's residual stream for the goal and for progress
along the history. Its pipeline, artifact, and what the chapter prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

import imitlib.envs.darkroom
import imitlib.imitation
import imitlib.probes
from imitlib import artifacts, plots
from imitlib.envs.darkroom import HORIZON, SIZE
from imitlib.experiments.common import CLI, load_or_explain
from imitlib.experiments.histories import darkroom_histories, goal_split
from imitlib.experiments.students import (
    DARKROOM_STUDENT_CODE,
    DarkRoomStudents,
    darkroom_students_artifact,
    darkroom_students_config,
    student_network,
    students_name,
)
from imitlib.scale import Scale

Art = artifacts.Artifact


@dataclass(frozen=True)
class ProbeTest:
    """Linear probes on the students' residual stream, fitted on training goals, scored on held-out goals."""

    students: DarkRoomStudents
    windows: int  # context windows sampled per recorded run
    seed: int = 0


def probe_features(model: Any, reader: Any, runs: list[int], k: int, windows: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual stream after the embedding and every block, at the last step of each episode of sampled windows:
    ``(layers + 1, samples, K, width)``; targets goal ``(samples, 2)`` (row, column) and progress ``(samples,)``
    (where the window starts along its history, 0 = first recorded episode, 1 = last possible)."""
    from imitlib.imitation import model_inputs

    rng = np.random.default_rng(seed)
    batch: dict[str, list] = {"obs": [], "action": [], "reward": [], "terminated": [], "truncated": []}
    goal, progress = [], []
    for run in runs:
        n = reader.run_episodes(run) - k
        for first in rng.integers(0, n + 1, size=windows):
            w = reader.window(run, int(first), k)
            for key in batch:
                batch[key].append(np.asarray(w[key]))
            goal.append(divmod(int(reader.task(run)["goal"]), SIZE))
            progress.append(first / max(n, 1))
    tensors = {key: torch.from_numpy(np.stack(v)) for key, v in batch.items()}
    ends = np.arange(1, k + 1) * HORIZON - 1
    feats = []
    with torch.no_grad():
        for lo in range(0, len(goal), 256):
            part = {key: v[lo:lo + 256] for key, v in tensors.items()}
            _, states = model(*model_inputs(part, model.cfg.n_actions), hidden=True)
            feats.append(torch.stack([s[:, ends] for s in states]).numpy())
    return np.concatenate(feats, 1), np.array(goal, float), np.array(progress)


def run_probes(test: ProbeTest, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """R² of goal and progress probes by student seed, layer and context position, with shuffled controls."""
    from imitlib.history import HistoryReader
    from imitlib.probes import fit_probe

    art = darkroom_students_artifact(test.students, scale, progress)
    reader = HistoryReader(darkroom_histories(test.students.data, scale) / "learning")
    train, held = goal_split(test.students.data)
    split = {name: [r for r in reader.runs() if reader.task(r)["goal"] in set(goals.tolist())]
             for name, goals in (("train", train), ("held_out", held))}
    k = test.students.student.context_episodes
    shape = (len(test.students.seeds), test.students.student.model.n_layer + 1, k)
    out = {f"{t}_{m}": np.zeros(shape) for t in ("goal", "progress") for m in ("r2", "r2_shuffled")}
    for i in range(len(test.students.seeds)):
        model = student_network(art, test.students.student, i)
        fx, fg, fp = probe_features(model, reader, split["train"], k, test.windows, test.seed)
        tx, tg, tp = probe_features(model, reader, split["held_out"], k, test.windows, test.seed + 1)
        for layer in range(shape[1]):
            for pos in range(k):
                for target, (y_fit, y_test) in (("goal", (fg, tg)), ("progress", (fp, tp))):
                    r = fit_probe(fx[layer, :, pos], y_fit, tx[layer, :, pos], y_test, seed=test.seed)
                    out[f"{target}_r2"][i, layer, pos] = r["r2"]
                    out[f"{target}_r2_shuffled"][i, layer, pos] = r["r2_shuffled"]
    return out


def probes_artifact(test: ProbeTest, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """Chapter 5's probes of one set of students: stored if present, else computed."""
    return artifacts.cached(students_name(test.students).replace("ch04_", "ch05_probes_", 1), test,
                            lambda: run_probes(test, scale, progress), scale=scale.name,
                            code=(*DARKROOM_STUDENT_CODE, probe_features, run_probes, imitlib.probes))


PROBES_COMMAND = f"{CLI} incontext --part probes --scale {{scale}}"


PROBE_TARGETS = {"goal": "Goal position", "progress": "Progress along the history"}  # target -> panel title


PROBE_LINES = (("r2", "probe", "ad"), ("r2_shuffled", "shuffled-target control", "random"))  # key, label, role


def load_probes(scale: Scale) -> Art | None:
    """The stored probes of the AD students (computed at ``ci``), or None and the command that computes them."""
    test = ProbeTest(darkroom_students_config(scale, "ad"), windows=scale.incontext.probe_windows)
    return load_or_explain(lambda: probes_artifact(test, scale), scale, PROBES_COMMAND)


def plot_probe(ax: plt.Axes, pr: Art, target: str) -> None:
    """Held-out R² of one target's probe by layer, at the context's last episode, against the shuffled control."""
    x = np.arange(pr[f"{target}_r2"].shape[1])
    for key, name, role in PROBE_LINES:
        plots.curve_with_ci(ax, pr[f"{target}_{key}"][:, :, -1], x=x, label=name, color=plots.COLORS[role])
    ax.set_xticks(x, ["embedding"] + [f"block {i}" for i in x[1:]])
    plots.label(ax, "layer (last step of the context)", "held-out R²", PROBE_TARGETS[target])


def goal_by_position(pr: Art) -> list[float]:
    """Goal probe R² at the last layer, by episode position in the context (rounded for printing)."""
    return np.round(pr["goal_r2"][:, -1].mean(0), 3).tolist()


def probe_numbers(pr: Art | None) -> dict[str, float]:
    """Best layer's held-out R² per target and its shuffled control (NaN when the probes are not stored)."""
    out = {}
    for t in PROBE_TARGETS:
        best = float(pr[f"{t}_r2"][:, :, -1].mean(0).max()) if pr is not None else float("nan")
        control = float(pr[f"{t}_r2_shuffled"][:, :, -1].mean(0).max()) if pr is not None else float("nan")
        out[f"ch5_probe_{t}"], out[f"ch5_probe_{t}_control"] = best, control
    return out

