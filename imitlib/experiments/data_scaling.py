"""Question 1's open confound on MinAtar: do the ED students recover more of their teachers' return with more data?

Chapter 4's ED students saw 20 expert episodes per teacher and recovered about half its return, with high action
agreement. The obvious explanation is too little data. Here each teacher's final network plays more expert
episodes (epsilon 0.05, the same seeds as chapter 3's first 20, so each set contains the smaller ones), and ED
students with chapter 4's model train on 20, 100 and 500 of them, their updates scaled with the square root of the
data (chapter 4's budget at 20 episodes; a linear scaling would cost 25 times as much at 500). Beside them,
behaviour cloning with the teacher's own network (:mod:`imitlib.bc`) on the same episodes: if it does as well, the
transformer is not the limit. Every student is read as chapter 4 reads it: return (sampled, as the students act)
as a share of its own teacher's final evaluation, and agreement with the teacher's greedy action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import imitlib.bc
from imitlib import artifacts, plots, stats
from imitlib.experiments.common import CLI, RECOVERY_BAR, _student_folder, load_or_explain, recorded_dataset
from imitlib.experiments.game_students import GAME_STUDENT_CODE, GameStudents, game_students_config
from imitlib.experiments.teacher import teacher_artifact, teacher_network
from imitlib.scale import Scale

EXPERT_EPSILON = 0.05  # as chapter 3's expert episodes


@dataclass(frozen=True)
class DataScaling:
    """Chapter 4's ED recipe on growing numbers of expert episodes per teacher, and behaviour cloning beside it."""

    students: GameStudents
    episodes: tuple[int, ...]  # expert episodes per teacher, smallest first
    bc: imitlib.bc.BCConfig  # the baseline's budget (the same at every size)


def scaling_config(scale: Scale) -> DataScaling:
    """The experiment at a scale: chapter 4's game students, the scale's data sizes."""
    s = scale.student
    return DataScaling(students=game_students_config(scale), episodes=s.scaling_episodes,
                       bc=imitlib.bc.BCConfig(updates=s.game_updates, batch_size=4 * s.batch_size))


def scaled_updates(test: DataScaling, episodes: int) -> int:
    """Updates for a student on ``episodes`` episodes: chapter 4's at the smallest size, times sqrt(data ratio)."""
    return round(test.students.student.updates * math.sqrt(episodes / test.episodes[0]))


def record_expert(test: DataScaling, teachers: Any, folder: Path) -> dict[str, Any]:
    """``folder/expert``: the most episodes any size needs, played by each teacher's final network (episode k of
    teacher i on seed ``seed * 1000 + k``, as chapter 3 records its first 20)."""
    import time

    import imitlib.dqn
    import imitlib.envs.games
    from imitlib.envs.observations import encode
    from imitlib.history import Episode, HistoryWriter

    exp, start = test.students.teacher, time.perf_counter()
    spec = imitlib.envs.games.game_spec(exp.dqn.env_id, full_action_space=exp.dqn.full_action_space,
                                        channels=exp.dqn.channels)
    with HistoryWriter(folder / "expert", obs_kind=spec.kind, obs_shape=spec.obs_shape, n_actions=spec.n_actions,
                       mode="overwrite", meta={"expert_epsilon": EXPERT_EPSILON}) as writer:
        for i, seed in enumerate(exp.seeds):
            writer.set_run(i, game=exp.dqn.env_id, seed=seed)
            net = teacher_network(teachers, exp, i)
            for k in range(max(test.episodes)):
                frames, actions, rewards = imitlib.dqn.play(net, exp.dqn, spec, seed=seed * 1000 + k,
                                                            epsilon=EXPERT_EPSILON, max_steps=10_000)
                t = len(actions)
                writer.add(Episode(run=i, episode=k, obs=encode(frames), action=actions, reward=rewards,
                                   terminated=np.arange(t) == t - 1, truncated=np.zeros(t, bool),
                                   update=np.zeros(t, np.int64), epsilon=np.full(t, EXPERT_EPSILON, np.float32)))
    return {"total_seconds": time.perf_counter() - start}


def expert_subset(reader: Any, folder: Path, episodes: int) -> Any:
    """The first ``episodes`` expert episodes of every teacher (written once beside the full set)."""
    import os
    import shutil

    from imitlib.experiments.beyond import keep_first
    from imitlib.history import HistoryReader

    part = folder / f"expert-first{episodes}"
    if not (part / "manifest.json").exists():
        tmp = part.with_name(part.name + ".partial")
        keep_first(reader, tmp, {r: episodes for r in reader.runs()}, {"first_episodes": episodes})
        shutil.rmtree(part, ignore_errors=True)
        os.replace(tmp, part)
    return HistoryReader(part)


def scaling_unit(test: DataScaling, episodes: int, seed: int, expert: str, weights: dict[str, np.ndarray],
                 run_dir: str | None, progress: bool = True) -> dict[str, float]:
    """A sweep unit: teacher ``seed``'s ED student and BC network on its first ``episodes`` expert episodes (at
    ``expert``, a path every worker sees), each rolled out as chapter 4 rolls out its students; ``weights`` are the
    teachers' final weights, so a worker trains no teacher. Every draw is seeded by ``seed``: order changes nothing."""
    import imitlib.dqn
    import imitlib.envs.games
    from imitlib.history import HistoryReader
    from imitlib.imitation import game_rollout, train_student

    exp, dqn = test.students.teacher, test.students.teacher.dqn
    spec = imitlib.envs.games.game_spec(dqn.env_id, full_action_space=dqn.full_action_space, channels=dqn.channels)
    teacher = teacher_network(artifacts.Artifact(weights, {}, None, loaded=True), exp, seed)
    reader = expert_subset(HistoryReader(Path(expert) / "expert"), Path(expert), episodes)
    updates = scaled_updates(test, episodes)
    cfg = replace(test.students.student, updates=updates, warmup=max(1, updates // 20),
                  checkpoint_every=max(1, min(250, updates // 4)), seed=seed)
    run = train_student(cfg, reader, [seed], run_dir, progress=progress)
    roll = game_rollout(run.model, dqn.env_id, num_envs=test.students.num_envs, episodes=test.students.eval_episodes,
                        context_steps=cfg.context_steps, seed=2000 + seed, teacher=teacher)
    obs, actions = imitlib.bc.recorded_steps(reader, seed, spec)
    net, accuracy = imitlib.bc.train_bc(replace(test.bc, seed=seed), obs, actions, spec)
    played = [imitlib.dqn.play(net, dqn, spec, seed=2000 + seed * 100 + k, epsilon=EXPERT_EPSILON, max_steps=10_000)
              for k in range(test.students.num_envs * test.students.eval_episodes)]
    frames = np.concatenate([p[0] for p in played])
    return {"ed_returns": float(np.nanmean(roll["returns"])), "ed_agreement": float(roll["agreement"]),
            "ed_accuracy": float(run.accuracy[-1]), "bc_returns": float(np.mean([p[2].sum() for p in played])),
            "bc_agreement": imitlib.bc.agreement(net, teacher, frames, spec), "bc_accuracy": float(accuracy)}


def run_scaling(test: DataScaling, scale: Scale, progress: bool = True) -> dict[str, np.ndarray]:
    """At every size: an ED student and a BC network per teacher, one sweep unit each (in process, or Ray tasks
    under ``--ray``), largest size first so the longest units start first."""
    from imitlib import sweep
    from imitlib.history import HistoryReader

    exp, dqn = test.students.teacher, test.students.teacher.dqn
    teachers = teacher_artifact(exp, scale, progress)
    folder = recorded_dataset(f"{dqn.env_id.replace('/', '_')}-expert{max(test.episodes)}", test, scale,
                              lambda f: record_expert(test, teachers, f))
    for n in test.episodes:  # the subsets, written here once, so two workers never write the same one
        expert_subset(HistoryReader(folder / "expert"), folder, n)
    weights = {k: v for k, v in teachers.data.items() if k.startswith("weights/")}
    root = _student_folder(SCALING_NAME, test, scale)
    grid = [(n, i) for n in sorted(test.episodes, reverse=True) for i in range(len(exp.seeds))]
    runs = {(n, i): None if scale.name == "ci" else root / f"n{n}-seed{i}" for n, i in grid}
    code = artifacts.code_hash(scaling_code())  # a finished unit's kept result is read back only by this code
    units = [sweep.Unit(f"{SCALING_NAME} {n} episodes seed {i}", scaling_unit,
                        (test, n, i, str(folder), weights, runs[n, i] and str(runs[n, i]), progress),
                        keep=runs[n, i] and str(runs[n, i] / f"result-{code}.npz")) for n, i in grid]
    done = dict(zip(grid, sweep.run(units), strict=True))
    keys = ("ed_returns", "ed_agreement", "ed_accuracy", "bc_returns", "bc_agreement", "bc_accuracy")
    out = {k: [[done[n, i][k] for i in range(len(exp.seeds))] for n in test.episodes] for k in keys}
    return {"episodes": np.array(test.episodes), "teacher_returns": np.asarray(teachers["eval_returns"])[:, -1],
            **{k: np.array(v) for k, v in out.items()}}  # (sizes, seeds)


SCALING_NAME = "ch04_ed_data_scaling"


def scaling_artifact(test: DataScaling, scale: Scale, progress: bool = True) -> artifacts.Artifact:
    """The stored result, or computed and stored (hours at ``lab``: the larger students train longer)."""
    return artifacts.cached(SCALING_NAME, test, lambda: run_scaling(test, scale, progress), scale=scale.name,
                            code=scaling_code())


def scaling_code() -> tuple:
    """What computes the artifact (its code hash), and so what a kept unit result must have been computed by."""
    from imitlib.experiments.beyond import keep_first

    return (*GAME_STUDENT_CODE, imitlib.bc, keep_first, scaling_config, scaled_updates, record_expert,
            expert_subset, scaling_unit, run_scaling)


COMMAND = f"{CLI} student --kind ed --data minatar --scaling --scale {{scale}}"


def load_scaling(scale: Scale) -> artifacts.Artifact | None:
    """The stored result (computed at ``ci``), or None and the command that computes it."""
    return load_or_explain(lambda: scaling_artifact(scaling_config(scale), scale), scale, COMMAND)


# --------------------------------------------------------------------------------------------------
# Reading the result


def shares(art: Any, kind: str) -> np.ndarray:
    """``(sizes, seeds)``: each student's return as a share of its own teacher's final evaluation (NaN where that
    teacher scored nothing: no share to speak of, as happens with ci's tiny teachers)."""
    teacher = np.asarray(art["teacher_returns"], dtype=float).mean(axis=1)  # (seeds,)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(teacher[None] > 0, np.asarray(art[f"{kind}_returns"], dtype=float) / teacher[None], np.nan)


def interval_text(values: np.ndarray) -> str:
    """Mean and 95% CI across the teachers with a number (at least two), else why there is none."""
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    return str(stats.bootstrap_ci(finite)) if len(finite) >= 2 else "n/a (fewer than two teachers scored)"


def table_rows(art: Any) -> list[list[Any]]:
    """Per size: ED and BC return share and agreement, each with its 95% CI across teachers."""
    rows = []
    for j, n in enumerate(np.asarray(art["episodes"])):
        rows.append([int(n), *[interval_text(x) for x in (
            shares(art, "ed")[j], np.asarray(art["ed_agreement"], float)[j],
            shares(art, "bc")[j], np.asarray(art["bc_agreement"], float)[j])]])
    return rows


TABLE_HEADER = ["expert episodes per teacher", "ED: share of teacher's return", "ED: agreement",
                "BC: share of teacher's return", "BC: agreement"]


def plot_scaling(ax: Any, art: Any) -> None:
    """Return share (solid) and agreement (dashed) against expert episodes, ED and BC, 95% CIs across teachers."""
    x = np.asarray(art["episodes"], dtype=float)
    for kind, role in (("ed", "ed"), ("bc", "alt")):
        for values, ls, what in ((shares(art, kind), "-", "share of return"),
                                 (np.asarray(art[f"{kind}_agreement"], float), "--", "agreement")):
            seeds = values.T[np.isfinite(values.T).all(axis=1)]  # (seeds with a number at every size, sizes)
            if len(seeds) < 2:
                continue
            ci = stats.bootstrap_ci(seeds)
            ax.plot(x, ci.estimate, ls, marker="o", color=plots.COLORS[role], label=f"{kind.upper()}, {what}")
            ax.fill_between(x, ci.low, ci.high, color=plots.COLORS[role], alpha=0.2, lw=0)
    ax.axhline(RECOVERY_BAR, color=plots.COLORS["optimal"], ls=":", lw=1.2, label="recovery bar")
    ax.set_xscale("log")
    ax.set_xticks(x, [str(int(v)) for v in x])
    plots.label(ax, "expert episodes per teacher", "share / agreement", "more expert data")


def verdict(art: Any | None) -> str:
    """Question 1 on MinAtar, from the largest setting: the ED students' share of their teachers' return."""
    from imitlib.experiments.game_students import game_verdict

    if art is None:
        return game_verdict(float("nan"))
    last = shares(art, "ed")[-1]
    last = last[np.isfinite(last)]
    if len(last) < 2:
        return game_verdict(float("nan"))
    share = stats.bootstrap_ci(last)
    return game_verdict(float(share.estimate)) + f" with {int(np.asarray(art['episodes'])[-1])} expert episodes " \
        f"(95% CI {float(share.low):.0%} to {float(share.high):.0%})"


CLONING = "behaviour cloning with the teacher's own network"
NOT_LIMIT = "the transformer is not what limits imitation here"


def paired(values: np.ndarray) -> np.ndarray:
    """The teachers (columns) with a number at every row, so two rows compare teacher by teacher."""
    values = np.asarray(values, dtype=float)
    return values[:, np.isfinite(values).all(axis=0)]


def change_text(diff: stats.Interval, what: str, up: str, down: str, same: str) -> str:
    """One finding from a paired difference, by the rule fixed before the run: its 95% CI excludes zero."""
    low, high, mean = float(diff.low), float(diff.high), float(diff.estimate)
    words = up if low > 0 else down if high < 0 else same
    return f"{words} ({what}: {100 * mean:+.0f} points of the teachers' return, 95% CI {100 * low:+.0f} to " \
           f"{100 * high:+.0f})"


def reading(art: Any | None) -> str:
    """What the grid says, computed: whether more data moves the ED students' share (largest size against the
    smallest, teacher by teacher), and whether behaviour cloning keeps more than the transformer at the largest
    size (with P(ED > BC), rliable's probability of improvement)."""
    if art is None:
        return ""
    n = np.asarray(art["episodes"])
    ed = paired(shares(art, "ed")[[0, -1]])
    both = paired(np.stack([shares(art, "ed")[-1], shares(art, "bc")[-1]]))
    if ed.shape[1] < 2 or both.shape[1] < 2:
        return "Too few teachers scored at this scale to compare the sizes or the two students."
    more = change_text(stats.bootstrap_ci(ed[1] - ed[0]), f"{int(n[-1])} against {int(n[0])} episodes",
                       "More data helps the ED students", "More data hurts the ED students",
                       "More data does not measurably change the ED students' share")
    bc = change_text(stats.bootstrap_ci(both[1] - both[0]), "BC minus ED",
                     f"{CLONING} keeps more than the transformer: the transformer, not the amount of data, limits "
                     "imitation here", f"{CLONING} keeps less than the transformer: {NOT_LIMIT}",
                     f"{CLONING} keeps about as much as the transformer: {NOT_LIMIT}")
    p = stats.probability_of_improvement(both[0], both[1])
    return f"{more}. At {int(n[-1])} episodes {bc}. Unpaired, across teachers, P(ED > BC) = " \
           f"{float(p.estimate):.2f} (95% CI {float(p.low):.2f} to {float(p.high):.2f})."


def answer_share(art: Any | None, fallback: float) -> float:
    """The share Question 1's MinAtar answer rests on: the ED students' at the largest size, else chapter 4's."""
    return fallback if art is None else float(np.nanmean(shares(art, "ed")[-1]))


def numbers(art: Any | None) -> dict[str, Any]:
    """What the prose cites (NaN, and a sentence saying so, when the run is not stored)."""
    nan = float("nan")
    if art is None:
        return {"ch4_scaling_ed_first": nan, "ch4_scaling_ed_last": nan, "ch4_scaling_bc_last": nan,
                "ch4_scaling_agreement_last": nan, "ch4_scaling_smallest": 0, "ch4_scaling_largest": 0,
                "ch4_scaling_basis": "chapter 4's students on 20 expert episodes (the larger data sets are not "
                                     "computed at this scale yet)", "ch4_scaling_reading": ""}
    ed, bc, n = shares(art, "ed"), shares(art, "bc"), np.asarray(art["episodes"])
    return {"ch4_scaling_ed_first": float(np.nanmean(ed[0])), "ch4_scaling_ed_last": float(np.nanmean(ed[-1])),
            "ch4_scaling_bc_last": float(np.nanmean(bc[-1])),
            "ch4_scaling_agreement_last": float(np.asarray(art["ed_agreement"], float)[-1].mean()),
            "ch4_scaling_smallest": int(n[0]), "ch4_scaling_largest": int(n[-1]),
            "ch4_scaling_basis": f"the students trained on {int(n[-1])} expert episodes per teacher",
            "ch4_scaling_reading": reading(art)}
