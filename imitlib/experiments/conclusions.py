"""Chapter 8: the three questions answered from the stored results of chapters 4-7; nothing is recomputed.

Every row of the evidence table is one comparison a chapter made, read with that chapter's own functions: the
learner whose weights keep changing (the teacher, the source Q-learner, the DQN), the frozen student across its
seeds, random play, and the verdict the chapter computed with its tested rule. The student is also put on one
scale, 0 for random play and 1 for the learner: ``(student - random) / (learner - random)`` per student seed, with
its 95% bootstrap CI, so that the three questions can share one figure.

Rows whose artifacts are not stored, or were made by older code, are refused with the command that makes them
(:class:`MissingEvidence`); the chapter asks for them to be listed as pending instead, so a partly computed book
says what it lacks rather than failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imitlib import artifacts, book, stats
from imitlib.experiments.common import RECOVERY_BAR
from imitlib.scale import Scale

QUESTIONS = {"Q1": "Does a frozen student copy a snapshot of its teacher?",
             "Q2": "Does it keep improving past the history it imitated?",
             "Q3": "Does it learn a game it never saw?"}
SCORE = "student between random (0) and the learner (1)"


class MissingEvidence(LookupError):
    """An artifact a conclusion rests on is not stored, or was made by older code."""


@dataclass(frozen=True)
class Measured:
    """What one comparison measured, in the units of its chapter."""

    learner: float | np.ndarray  # the learner whose weights change (per seed when paired with the students)
    student: np.ndarray  # the frozen student, one value per seed
    random: float  # uniformly random play, same units
    verdict: str  # the chapter's computed verdict, in its words
    succeeds: bool  # the student did what the question asks (the essay says it cannot, for Q2 and Q3)


@dataclass(frozen=True)
class Finding:
    """One row of the evidence table: a comparison, or why it is pending."""

    question: str  # "Q1", "Q2", "Q3"
    setting: str  # "Dark Room", or the game family ("MinAtar", "ALE")
    test: str  # what was compared, in a few words
    chapter: int
    measured: Measured | None  # None while pending
    pending: str = ""  # why it is missing, and the command that makes it
    key: str = ""  # the prose's name for its verdict

    @property
    def score(self) -> stats.Interval | None:
        """The student per seed between random (0) and the learner (1), with its 95% CI."""
        if self.measured is None:
            return None
        m = self.measured
        return stats.bootstrap_ci((np.asarray(m.student, float) - m.random) / (np.asarray(m.learner) - m.random))


# --- Reading each chapter's artifacts --------------------------------------------------------------------------
# A reader takes {label: artifact} (labels of imitlib.book.every_result) and the scale, and returns Measured.


def q1_darkroom(arts: dict[str, Any], scale: Scale) -> Measured:
    """Chapter 4's snapshot test on the training goals: the best of the frozen students against the teacher."""
    from imitlib.experiments import students

    snap = students.snapshot(students.student_configs(scale)["AD"].data,
                             {"AD": arts["Dark Room AD students"], "ED": arts["Dark Room ED students"]})
    best = max(((n, m) for n in students.KINDS for m in students.MODES),
               key=lambda k: students.ratio(snap, k[0], "train", k[1]))
    share = students.ratio(snap, best[0], "train", best[1])
    return Measured(float(snap.teacher["train"].mean()), snap.score[(best[0], "train", best[1])],
                    float(snap.random["train"].mean()), students.snapshot_verdict(share),
                    share >= RECOVERY_BAR)


def q1_game(arts: dict[str, Any], scale: Scale) -> Measured:
    """Chapter 4's ED students on their teachers' game, each against its own teacher."""
    from imitlib.experiments import game_students as gs

    scores = gs.game_scores(arts["MinAtar ED students"])
    share = gs.game_ratio(scores)
    return Measured(scores.teacher, scores.student, _game_random(scale), gs.game_verdict(share),
                    share >= RECOVERY_BAR)


def q1_game_scaled(arts: dict[str, Any], scale: Scale) -> Measured:
    """Chapter 4's data-scaling run, at its largest size: the ED students against their own teachers."""
    from imitlib.experiments import data_scaling

    art = arts[book.SCALING_LABEL]
    teacher = np.asarray(art["teacher_returns"], float).mean(axis=1)
    share = float(np.nanmean(data_scaling.shares(art, "ed")[-1]))
    return Measured(teacher, np.asarray(art["ed_returns"], float)[-1], _game_random(scale),
                    data_scaling.verdict(art), share >= RECOVERY_BAR)


def q2_darkroom(label: str) -> Callable[[dict[str, Any], Scale], Measured]:
    """Chapter 6, parts 1-2: the frozen AD students' plateau (sampled) against the source Q-learner at the end."""
    from imitlib.experiments import beyond

    def read(arts: dict[str, Any], scale: Scale) -> Measured:
        art = arts[label]
        row = beyond.summary(art)["sampled"]
        student = beyond.plateau_per_seed(beyond.per_seed(art, "sampled"))
        return Measured(row["source_end"], student, beyond.references(art)["random"],
                        f"{row['verdict']}; after the episodes it was trained on it {beyond.trend(row['rise'])}",
                        beyond.side(row["plateau"], row["ceiling"]) == "above")
    return read


def q2_moving(label: str) -> Callable[[dict[str, Any], Scale], Measured]:
    """Chapter 6, part 3: where the frozen students settle after the goal moves, as a share of the optimum, against
    the source Q-learner after the same moves."""
    from imitlib.envs.darkroom import optimal_return, random_policy_return
    from imitlib.experiments import moving
    from imitlib.experiments.beyond import side

    def read(arts: dict[str, Any], scale: Scale) -> Measured:
        art = arts[label]
        plan = np.asarray(art["plan"])
        best = np.array([optimal_return(g) for g in range(81)])[plan].mean()
        random = np.array([random_policy_return(g) for g in range(81)])[plan].mean() / best
        drop = moving.drop_after_moves(art, "student", "sampled")
        return Measured(float(moving.settled(art, "source", "sampled")[:, 1:].mean()),
                        moving.settled(art, "student", "sampled")[:, 1:].mean(axis=1), float(random),
                        moving.moves_verdict(drop), side(drop) != "above")
    return read


def q2_noise(arts: dict[str, Any], scale: Scale) -> Measured:
    """Chapter 6, part 4: AD^eps decoded greedily against the data's best under the same decoding, and the verdict
    against the control that saw no improvement."""
    from imitlib.experiments import beyond, noise

    noisy = {None: arts["noise-distilled histories"]}
    control = f"noise control, epsilon {noise.FLOOR} throughout"
    noisy |= {noise.FLOOR: arts[control]} if control in arts else {}
    art, summary = noisy[None], noise.summary(noisy)
    verdict = summary["denoising"] or summary["greedy"]["verdict"]  # scales without the control: against the data
    student = beyond.plateau_per_seed(np.asarray(art["greedy_returns"], float).mean(axis=1))
    return Measured(noise.best_in_data(art, "greedy"), student, noise.references(art)["random"],
                    verdict, verdict.startswith(("more than denoising", "beyond its data")))


def q2_game(label: str) -> Callable[[dict[str, Any], Scale], Measured]:
    """Chapter 6, part 5: the frozen AD students on MinAtar Breakout against their teachers at the end of training."""
    from imitlib.experiments import beyond, game_beyond

    def read(arts: dict[str, Any], scale: Scale) -> Measured:
        art = arts[label]
        row = game_beyond.summary(art)["sampled"]
        return Measured(row["teacher_end"], beyond.plateau_per_seed(art["sampled_curve"]), _game_random(scale),
                        row["verdict"], beyond.side(row["plateau"], row["ceiling"]) == "above")
    return read


def q3_room(arts: dict[str, Any], scale: Scale) -> Measured:
    """Chapter 7, part 4: the AD students in the relabelled rooms against the Q-learner from scratch, at the end."""
    from imitlib.experiments import relabelled_room as rooms
    from imitlib.experiments import transfer

    art = arts["Dark Room with relabelled actions"]
    c, random = rooms.curves(art, "sampled"), rooms.references(art)["random"]
    return Measured(float(transfer.edge_means(c["learner"])[1].mean()), transfer.edge_means(c["relabelled"])[1],
                    random, transfer.learns_text(c["relabelled"], random), transfer.learns(c["relabelled"], random))


def q3_game(label: str, key: str) -> Callable[[dict[str, Any], Scale], Measured]:
    """Chapter 7, parts 2-3: frozen students on the unseen game against the DQN learning it from scratch, both over
    the last tenth of the same number of environment steps."""
    from imitlib.experiments import transfer

    def read(arts: dict[str, Any], scale: Scale) -> Measured:
        curves = np.asarray(arts[label][key], float)
        dqn = np.asarray(arts["DQN teachers on Space Invaders"]["train_returns"], float)
        random = transfer.random_return(transfer.new_game(scale))
        return Measured(float(transfer.edge_means(dqn)[1].mean()), transfer.edge_means(curves)[1], random,
                        transfer.learns_text(curves, random), transfer.learns(curves, random))
    return read


def _game_random(scale: Scale) -> float:
    """Random play on the scale's teacher game (chapter 4's floor)."""
    from imitlib.experiments.teacher import teacher_experiment
    from imitlib.experiments.transfer import random_return

    return random_return(teacher_experiment(scale).dqn.env_id)


# --- The table ---------------------------------------------------------------------------------------------------


LOO_KEYS = {False: "loo_plain", True: "loo_relabelled"}  # the leave-one-out rows' verdict names (chapter 7's sets)


@dataclass(frozen=True)
class Row:
    """A row to fill: its place in the table, the stored results it needs, and how to read them."""

    question: str
    setting: str
    test: str
    chapter: int
    needs: tuple[str, ...]
    read: Callable[[dict[str, Any], Scale], Measured]
    key: str = ""  # the prose's name for its verdict: ch8_<key>_verdict


def rows(scale: Scale) -> list[Row]:
    """Every comparison the conclusions rest on, in the order of the questions."""
    from imitlib.experiments import game_beyond, moving, noise
    from imitlib.experiments.teacher import teacher_experiment

    game = "ALE" if teacher_experiment(scale).dqn.env_id.startswith("ALE/") else "MinAtar"
    room, whole, scaled = "Dark Room", "whole histories, long rollouts", book.SCALING_LABEL
    cut = f"first {game_beyond.CUT:.0%} of training"
    loo, si = "leave one game out, {}", "DQN teachers on Space Invaders"
    frozen = "frozen Breakout students on Space Invaders"
    n_games = scale.transfer.leave_one_out_games
    control = f"noise control, epsilon {noise.FLOOR} throughout"  # the final noisy policy, where the scale has it
    noisy = ("noise-distilled histories", *([control] if noise.FLOOR in noise.noise_sets(scale) else []))
    return [
        Row("Q1", room, "best frozen student vs the teacher snapshot", 4,
            ("Dark Room AD students", "Dark Room ED students"), q1_darkroom),
        Row("Q1", game, "ED students on chapter 3's expert episodes", 4, ("MinAtar ED students",), q1_game),
        Row("Q1", game, f"ED students on {max(scale.student.scaling_episodes)} expert episodes per teacher", 4,
            (scaled,), q1_game_scaled, "scaled"),
        Row("Q2", room, f"AD, whole histories, rolled out {scale.beyond.long_factor}x as long", 6, (whole,),
            q2_darkroom(whole), "whole"),
        *[Row("Q2", room, f"AD, histories cut to their first {f:.0%}", 6, (label,), q2_darkroom(label),
              f"cut{round(100 * f)}")
          for f in scale.beyond.fractions for label in [f"histories cut to their first {f:.0%}"]],
        *[Row("Q2", room, f"AD, goals that move (trained on {moving.SET_LABELS[m]})", 6, (label,), q2_moving(label),
              f"moves{m}")
          for m in moving.MOVING_SETS for label in [f"moving goals, students trained on {moving.SET_LABELS[m]}"]],
        Row("Q2", room, "AD-ε on noise-distilled histories (greedy)", 6, noisy, q2_noise, "noise"),
        *[Row("Q2", game, "AD, the teachers' whole learning histories", 6, (label,), q2_game(label))
          for label in ["MinAtar Breakout, whole histories"] if 1.0 in scale.beyond.game_cuts],
        Row("Q2", game, f"AD, the {cut}", 6, (f"MinAtar Breakout, {cut}",), q2_game(f"MinAtar Breakout, {cut}")),
        Row("Q3", room, "AD in rooms with relabelled actions", 7, ("Dark Room with relabelled actions",), q3_room,
            "room"),
        *[Row("Q3", game, f"frozen Breakout {kind.upper()} students on Space Invaders", 7, (frozen, si),
              q3_game(frozen, f"{kind}_sampled_curve"), f"game_{kind}") for kind in ("ed", "ad")],
        *[Row("Q3", game, f"AD on {n_games} other games ({way}) on Space Invaders", 7, (loo.format(way), si),
              q3_game(loo.format(way), "new_sampled_curve"), LOO_KEYS[relabel])
          for relabel, way in ((False, "as recorded"), (True, "relabelled"))
          if relabel in scale.transfer.leave_one_out_sets],
    ]


def gather(scale: Scale, labels: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The stored artifacts under ``labels``, loaded without computing anything; and, for each one that cannot be
    used, why not and the command that makes it."""
    found, missing = {}, {}
    for result in book.every_result():
        if result.label not in labels:
            continue
        command = result.command_at(scale)
        with artifacts.dry_run() as seen:
            try:
                art = result.load(scale)
            except artifacts.NotStored:
                missing[result.label] = f"not stored at {scale.name}: run `{command}`"
                continue
        stale = [s.name for s in seen if s.state != "stored"]
        if stale:
            missing[result.label] = f"made by older code ({', '.join(stale)}): run `IMITLIB_RECOMPUTE=1 {command}`"
        else:
            found[result.label] = art
    return found, missing


def findings(scale: Scale, allow_pending: bool = False) -> list[Finding]:
    """Every row of the table, read from the stored artifacts; a missing or stale one is refused
    (:class:`MissingEvidence`) unless ``allow_pending``, which lists it as pending with its command."""
    todo = rows(scale)
    found, missing = gather(scale, {label for row in todo for label in row.needs})
    out = []
    for row in todo:
        lacking = [(label, missing.get(label, "not a known result")) for label in row.needs if label not in found]
        if lacking and not allow_pending:
            label, why = lacking[0]
            raise MissingEvidence(f"chapter 8 needs {label!r} (chapter {row.chapter}), which is {why}")
        measured = None if lacking else row.read(found, scale)
        pending = "; ".join(why for _, why in lacking)
        out.append(Finding(row.question, row.setting, row.test, row.chapter, measured, pending, row.key))
    return out


TABLE_HEADER = ["comparison", "learner / random", "frozen student [95% CI]", "score [95% CI]",
                "verdict (its chapter)"]


def table_rows(found: list[Finding]) -> list[list[Any]]:
    """One line per finding; a pending one says what it lacks and the command that makes it."""
    out = []
    for f in found:
        head = f"{f.question} · {f.setting}: {f.test}"
        if f.measured is None:
            out.append([head, "", "", "", f"pending: {f.pending}"])
            continue
        m = f.measured
        student = stats.bootstrap_ci(np.asarray(m.student, float))
        out.append([head, f"{float(np.mean(m.learner)):.2f} / {m.random:.2f}", str(student), str(f.score),
                    f"{m.verdict} (ch. {f.chapter})"])
    return out


# --- The figure and the prose --------------------------------------------------------------------------------------


def score_figure(found: list[Finding]) -> Any:
    """One panel per question, as tall as its rows: every measured comparison's score with its 95% CI, between
    random (0) and the learner (1); filled where the student did what the question asks."""
    import matplotlib.pyplot as plt

    from imitlib import plots

    shown = {q: [f for f in found if f.question == q and f.measured is not None] for q in QUESTIONS}
    heights = [max(1, len(v)) + 1.2 for v in shown.values()]
    fig, axes = plt.subplots(len(QUESTIONS), 1, figsize=(7.5, 0.4 * sum(heights) + 1), sharex=True,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    for ax, (q, rows_shown) in zip(axes, shown.items(), strict=True):
        color = plots.COLORS["student"]
        for y, f in enumerate(rows_shown):
            ci = f.score
            ax.errorbar(float(ci.estimate), y, xerr=[[float(ci.estimate - ci.low)], [float(ci.high - ci.estimate)]],
                        fmt="o", capsize=3, color=color, mfc=color if f.measured.succeeds else "white")
        ax.set_yticks(range(len(rows_shown)), [f"{f.setting}: {f.test}" for f in rows_shown], fontsize=8)
        ax.set_ylim(len(rows_shown) - 0.5 if rows_shown else 0.5, -0.5)
        ax.axvline(0, color=plots.COLORS["random"], ls=":", lw=1.2, label="random play")
        ax.axvline(1, color=plots.COLORS["learner"], ls="--", lw=1.2, label="the learner")
        ax.set_title(f"{q}: {QUESTIONS[q]}", fontsize=10, loc="left")
        if not rows_shown:
            ax.text(0.5, 0, "nothing stored yet", ha="center", va="center", color=plots.COLORS["random"])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    axes[-1].set_xlabel(SCORE)
    return fig


def answer(found: list[Finding], question: str) -> str:
    """One line per question: in how many measured comparisons the student did what the question asks, and which
    are still pending."""
    asked = [f for f in found if f.question == question]
    done = [f for f in asked if f.measured is not None]
    yes = [f for f in done if f.measured.succeeds]
    if not done:
        return "not measured yet"
    word = "yes" if len(yes) == len(done) else "no" if not yes else "partly"
    named = f" ({'; '.join(f'{f.setting}, {f.test}' for f in yes)})" if yes and len(yes) < len(done) else ""
    pending = f"; {len(asked) - len(done)} more pending" if len(done) < len(asked) else ""
    return f"{word}: in {len(yes)} of {len(done)} comparisons{named}{pending}"


def q3_games(found: list[Finding]) -> str:
    """Question 3's game rows in one sentence: their verdicts (once, when they all agree) and how many end below
    random play (the 95% CI of the students' end under it), beside the DQN learning the game from scratch."""
    games = [f for f in found if f.question == "Q3" and f.setting != "Dark Room" and f.measured is not None]
    if not games:
        return "The game rows are not stored yet (the table says how)"
    verdicts = {f.measured.verdict for f in games}
    said = (f"By chapter 7's rule, sampling, all {len(games)}: {verdicts.pop()}" if len(verdicts) == 1 else
            "By chapter 7's rule, sampling, " + "; ".join(f"{f.test}: {f.measured.verdict}" for f in games))
    below = sum(float(stats.bootstrap_ci(f.measured.student).high) < f.measured.random for f in games)
    random, learner = games[0].measured.random, float(np.mean(games[0].measured.learner))
    return (f"{said}. {below} of {len(games)} end below random play ({random:.2f}: the 95% CI of their end lies "
            f"under it), where the DQN learning the game from scratch ends at {learner:.2f}")


def setup_numbers(scale: Scale) -> dict[str, Any]:
    """The sizes behind the evidence, as the limits section states them."""
    s = scale.student
    return {"ch8_scale": scale.name, "ch8_recovery_bar": RECOVERY_BAR, "ch8_updates": s.updates,
            "ch8_game_updates": s.game_updates, "ch8_layers": s.n_layer, "ch8_embd": s.n_embd, "ch8_seeds": s.seeds,
            "ch8_game_context": scale.beyond.game_context_steps, "ch8_scaling_min": min(s.scaling_episodes),
            "ch8_scaling_max": max(s.scaling_episodes), "ch8_games": scale.transfer.leave_one_out_games}


def numbers(found: list[Finding]) -> dict[str, Any]:
    """What the prose cites: each question's one-line answer and the counts behind it."""
    out: dict[str, Any] = {}
    for q in QUESTIONS:
        name = q.lower()
        out[f"ch8_{name}_answer"] = answer(found, q)
        out[f"ch8_{name}_measured"] = sum(f.question == q and f.measured is not None for f in found)
    for f in found:
        key = f.key
        if key:
            out[f"ch8_{key}_verdict"] = f.measured.verdict if f.measured else "not stored yet (the table says how)"
    for key in LOO_KEYS.values():  # a set some scale does not run still has a sentence
        out.setdefault(f"ch8_{key}_verdict", "not run at this scale")
    out["ch8_q3_games"] = q3_games(found)
    out["ch8_pending"] = sum(f.measured is None for f in found)
    out["ch8_rows"] = len(found)
    return out


def counter_evidence(scale: Scale) -> dict[str, Any]:
    """The strongest case for the student, from stored results only, under chapter 8's names: does a trained
    attention layer do gradient descent (chapter 5), how much AD improves in context and what shuffling its
    histories showed (chapter 5), and AD^eps's claim with the denoising verdict (chapter 6)."""
    from imitlib.experiments import incontext, noise, regression
    from imitlib.experiments.common import MISSING

    shuffled, control = f"ablation: {incontext.SHUFFLED}", f"noise control, epsilon {noise.FLOOR} throughout"
    found, _ = gather(scale, {"ICL regression", "in-context AD", shuffled, "noise-distilled histories", control})
    named = {name: found[label] for name, label in (("AD", "in-context AD"), (incontext.SHUFFLED, shuffled))
             if label in found}
    change = incontext.changes(named, incontext.window(incontext.main_tests(scale)["AD"].episodes))
    noisy = {e: found[label] for e, label in ((None, "noise-distilled histories"), (noise.FLOOR, control))
             if label in found}
    six = noise.numbers(noisy)
    return {"ch8_same_way": regression.regression_numbers(found.get("ICL regression"))["ch5_same_way"],
            "ch8_ad_change": str(change.ci["AD"]) if "AD" in change.ci else MISSING,
            "ch8_shuffled": incontext.shuffled_meaning(change.ci),
            "ch8_noise_ratio": six["ch6_noise_ratio"], "ch8_noise_claimed": noise.CLAIMED_RATIO,
            "ch8_noise_denoising": six["ch6_noise_denoising"]}


def needed(scale: Scale) -> set[str]:
    """The labels of every stored result the table reads (for the chapter's provenance)."""
    return {label for row in rows(scale) for label in row.needs}
