"""Chapter 7, part 4: a new game with the same interface, cheap enough for many rooms. Dark Room, its action labels
permuted.

In a relabelled room, label ``a`` does what label ``moves[a]`` does in Dark Room: "up" may now step right. The rooms
are derangements (no label keeps its move), :data:`ROOMS` of them at ``lab``, drawn once from a fixed seed, plus the
original room as the reference the students know. Chapter 4's AD students play every room frozen, from an empty
context, on the 16 held-out goals, for as many episodes as a recorded learning history holds. What they see is
exactly what a new game with Dark Room's interface would show them: the same cells, the same rewards, actions
that do something else.

The Q-learner needs no relabelled run: tabular Q-learning treats its five labels alike (its random actions and its
tie-breaking are uniform over labels), so a room with permuted labels is, to it, the same room, and its learning
curve there has the same distribution as in the original room. Its curve is the recorded source learners on the
held-out goals, learning from scratch as chapter 4's data recorded them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import imitlib.augment
from imitlib import artifacts, plots
from imitlib.envs.darkroom import optimal_return, random_policy_return
from imitlib.experiments import transfer
from imitlib.experiments.beyond import MODES, BeyondTest, source_continuing, stored_students
from imitlib.experiments.common import CLI, load_or_explain
from imitlib.experiments.histories import goal_split, source_runs
from imitlib.experiments.students import DARKROOM_STUDENT_CODE, DarkRoomStudents, darkroom_students_config
from imitlib.scale import Scale

ROOM_SEED = 0  # the relabelled rooms are drawn once from this seed
SMOOTH = 10  # figures: a 10-episode running mean (single episodes of one goal are 0 or up to 20)


@dataclass(frozen=True)
class RelabelledRoom:
    """Chapter 4's AD students, frozen, in Dark Rooms whose action labels are permuted."""

    students: DarkRoomStudents
    rooms: int  # relabelled rooms (derangements of the five actions), besides the original room
    episodes: int  # per rollout: as many as a recorded learning history holds
    room_seed: int = ROOM_SEED


def relabelled_config(scale: Scale) -> RelabelledRoom:
    """The part at a scale: chapter 4's AD students, ``scale.transfer.room_permutations`` rooms."""
    students = darkroom_students_config(scale, "ad")
    return RelabelledRoom(students=students, rooms=scale.transfer.room_permutations, episodes=students.data.episodes)


def room_moves(test: RelabelledRoom) -> np.ndarray:
    """``(rooms + 1, 5)``: what each label does in each room; row 0 is Dark Room itself, the rest derangements."""
    return np.concatenate([np.arange(5)[None], imitlib.augment.derangements(test.rooms, 5, test.room_seed)])


def run_relabelled(test: RelabelledRoom, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """Every frozen student in every room on every held-out goal, sampled and greedy; the Q-learner beside them."""
    from imitlib.imitation import darkroom_rollout

    models, out = stored_students(test.students, scale, progress)
    _, held = goal_split(test.students.data)
    moves = room_moves(test)
    goals, rows = np.tile(held, len(moves)), np.repeat(moves, len(held), axis=0)  # environment b: room b // len(held)
    for mode in MODES:  # (seeds, rooms + 1, goals, episodes); returns 0..20 fit a byte
        out[f"{mode}_returns"] = np.stack([
            darkroom_rollout(imitlib.augment.RelabelledStudent(model, rows), goals, test.episodes,
                             context_episodes=test.students.student.context_episodes, greedy=mode == "greedy",
                             seed=8000 + i)["returns"].reshape(len(moves), len(held), test.episodes)
            for i, model in enumerate(models)]).astype(np.uint8)
    behaviour, greedy = source_continuing(BeyondTest(test.students, 1.0, test.episodes), held)
    out["source_sampled"], out["source_greedy"] = behaviour.astype(np.uint8), greedy.astype(np.uint8)
    out["source_goals"] = source_runs(test.students.data, held)[0]
    out["moves"], out["goals"] = moves, held
    return out


RELABELLED_NAME = "ch07_darkroom_relabelled"


def relabelled_artifact(test: RelabelledRoom, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """The part's stored result, or computed and stored (minutes: the students are chapter 4's)."""
    return artifacts.cached(RELABELLED_NAME, test, lambda: run_relabelled(test, scale, progress), scale=scale.name,
                            code=(*DARKROOM_STUDENT_CODE, imitlib.augment, stored_students, source_continuing,
                                  room_moves, run_relabelled))


COMMAND = f"{CLI} transfer --part darkroom --scale {{scale}}"


def load_relabelled(scale: Scale) -> artifacts.Artifact | None:
    """The stored result (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: relabelled_artifact(relabelled_config(scale), scale), scale, COMMAND)


# --------------------------------------------------------------------------------------------------
# Reading the result


def curves(art: Any, mode: str) -> dict[str, np.ndarray]:
    """Return per episode, averaged over the held-out goals: the students in the original room and in the
    relabelled ones (averaged over rooms), each ``(seeds, episodes)``, and the Q-learner ``(runs, episodes)``."""
    x = np.asarray(art[f"{mode}_returns"], dtype=float).mean(axis=2)  # (seeds, rooms + 1, episodes)
    return {"original": x[:, 0], "relabelled": x[:, 1:].mean(axis=1),
            "learner": np.asarray(art[f"source_{mode}"], dtype=float)}


def per_room(art: Any, mode: str) -> np.ndarray:
    """``(rooms, episodes)``: each relabelled room's return per episode, averaged over students and goals."""
    return np.asarray(art[f"{mode}_returns"], dtype=float)[:, 1:].mean(axis=(0, 2))


def references(art: Any) -> dict[str, float]:
    """Random play and the optimum, averaged over the held-out goals (the same in every room)."""
    goals = np.asarray(art["goals"])
    return {"random": float(np.mean([random_policy_return(int(g)) for g in goals])),
            "optimal": float(np.mean([optimal_return(int(g)) for g in goals]))}


LABELS = {"original": "AD student, Dark Room (seen)", "relabelled": "AD student, relabelled rooms",
          "learner": "Q-learner, from scratch"}


def table_rows(art: Any, mode: str) -> list[list[Any]]:
    """The part's table under one decoding: every learner's start, end, gain and verdict."""
    random = references(art)["random"]
    return [transfer.row(f"{LABELS[k]} ({mode})", c, random) for k, c in curves(art, mode).items()]


def plot_relabelled(ax: Any, art: Any, mode: str, title: str, legend: bool = True) -> None:
    """Return per episode in the relabelled rooms (each room thin), beside the original room and the Q-learner."""
    c, refs = curves(art, mode), references(art)
    from imitlib.stats import running_mean

    rooms = running_mean(per_room(art, mode), SMOOTH)
    ax.plot(np.arange(SMOOTH - 1, SMOOTH - 1 + rooms.shape[1]), rooms.T, color=plots.COLORS["ad"], lw=0.5, alpha=0.3)
    plots.curve_with_ci(ax, c["relabelled"], label=LABELS["relabelled"], color=plots.COLORS["ad"], smooth=SMOOTH)
    plots.curve_with_ci(ax, c["original"], label=LABELS["original"], color=plots.COLORS["ad"], linestyle=":",
                        smooth=SMOOTH)
    learner = LABELS["learner"] + (" (ε-greedy)" if mode == "sampled" else " (greedy)")
    plots.curve_with_ci(ax, c["learner"], label=learner, color=plots.COLORS["teacher"], linestyle="--",
                        smooth=SMOOTH)
    plots.reference_line(ax, refs["optimal"], label="optimal")
    plots.reference_line(ax, refs["random"], label="random policy", role="random")
    plots.label(ax, "episode", "return per episode", title, legend=legend)


def numbers(art: Any | None) -> dict[str, Any]:
    """What the prose cites: each learner's summary per decoding, the rooms, random play and the optimum."""
    out: dict[str, Any] = {}
    refs = references(art) if art is not None else {"random": float("nan"), "optimal": float("nan")}
    for mode in MODES:
        c = curves(art, mode) if art is not None else {}
        for key in LABELS:
            out |= transfer.prose(f"ch7_room_{key}_{mode}", c.get(key), refs["random"])
    out["ch7_room_rooms"] = int(len(art["moves"]) - 1) if art is not None else 0
    out["ch7_room_episodes"] = int(np.asarray(art["sampled_returns"]).shape[-1]) if art is not None else 0
    return out | {f"ch7_room_{k}": v for k, v in refs.items()}
