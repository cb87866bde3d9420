"""``python -m imitlib …``: run any chapter's pipeline headless and store its artifact.

    python -m imitlib tabular --scale lab       # chapter 1: Q-learning on Dark Room
    python -m imitlib student --kind ad         # chapter 4: a Dark Room student (ed or ad)
    python -m imitlib incontext --part main     # chapter 5: frozen students on held-out goals
    python -m imitlib beyond --part truncated   # chapters 6-8: the questions' commands (imitlib.cli_questions)
    python -m imitlib scales                    # what each scale sets
    python -m imitlib restamp --after TEST      # mark unchanged results fresh once TEST proves them unchanged
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from imitlib import experiments, restamp
from imitlib.artifacts import ArtifactError
from imitlib.cli_questions import cmd_beyond, cmd_conclusions, cmd_transfer
from imitlib.envs.games import check_env_id
from imitlib.experiments.conclusions import MissingEvidence
from imitlib.history import HistoryError
from imitlib.io import CheckpointMismatchError
from imitlib.scale import PRESETS, Scale, UnknownScaleError, get_scale
from imitlib.sweep import SweepError, ray_or_here

# bad files, failed proofs: one line, exit 1, no traceback
KNOWN_ERRORS = (CheckpointMismatchError, HistoryError, ArtifactError, restamp.RestampError, SweepError,
                MissingEvidence)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, how to fix it) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def seed(text: str) -> int:
    """A --seed value: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def env_id(text: str) -> str:
    """A --env value: a game id imitlib knows."""
    try:
        check_env_id(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def cmd_tabular(args: argparse.Namespace) -> int:
    """Chapter 1's experiment: learning curves and the goal switch, every learner and seed."""
    scale = get_scale(args.scale)
    exp = experiments.tabular_experiment(scale, seed=args.seed)
    art = experiments.tabular_artifact(exp, scale)
    n = exp.switch_episodes
    print(art.provenance_markdown().replace("**", ""))
    for (name, _), learn, switch in zip(exp.learners, art["learn_greedy"], art["switch_returns"], strict=True):
        print(f"{name}: greedy return at the end {learn[:, -1].mean():.2f} (optimal {float(art['optimal']):.2f}); "
              f"goal switch: {switch[:, n - 20:n].mean():.2f} before -> {switch[:, n:n + 10].mean():.2f} "
              f"just after -> {switch[:, -20:].mean():.2f} at the end")
    return 0


def on_best_device(exp: experiments.TeacherExperiment) -> experiments.TeacherExperiment:
    """Teachers train on the GPU when there is one (their artifact's name does not depend on the device)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else " (no GPU found)"))
    return dataclasses.replace(exp, dqn=dataclasses.replace(exp.dqn, device=device))


def cmd_teacher(args: argparse.Namespace) -> int:
    """Chapter 2's DQN teachers: train headless (resumable), store the artifact, print a summary."""
    scale = get_scale(args.scale)
    if args.cleanrl:
        from imitlib.experiments.teacher import cleanrl_experiment

        exp = on_best_device(cleanrl_experiment(scale, env_id=args.env))
    else:
        exp = on_best_device(experiments.teacher_experiment(scale, env_id=args.env, seed=args.seed))
    print(f"training {len(exp.seeds)} seed(s) of DQN on {exp.dqn.env_id} for {exp.dqn.steps:,} steps each")
    art = experiments.teacher_artifact(exp, scale)
    print(art.provenance_markdown().replace("**", ""))
    final = art["eval_means"][:, -1]
    secs = float(art["wall_seconds"])
    print(f"final evaluation return per seed: {np.round(final, 2).tolist()} (mean {final.mean():.2f}); "
          f"{int(art['env_steps']):,} steps per seed in {secs / 60:.1f} min "
          f"({int(art['env_steps']) * len(exp.seeds) / max(secs, 1e-9):,.0f} env-steps/s over all seeds)")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Chapter 3's datasets: Dark Room learning histories (both sources) and expert episodes."""
    from imitlib.history import HistoryReader

    scale = get_scale(args.scale)
    if args.what == "minatar":
        exp = on_best_device(experiments.teacher_experiment(scale, env_id=args.env))
        folders = [experiments.minatar_histories(exp, scale, every=args.every)]
    elif args.moves:
        from imitlib.experiments.moving import moving_histories

        folders = [moving_histories(experiments.darkroom_histories_config(scale, source), args.moves, scale)
                   for source in args.source]
    else:
        folders = [experiments.darkroom_histories(experiments.darkroom_histories_config(scale, source), scale)
                   for source in args.source]
    for folder in folders:
        print(HistoryReader(folder / "learning").summary())
        print(HistoryReader(folder / "expert").summary())
    if args.what == "minatar" and scale.name != "ci":  # data/ is not committed: chapter 3 reads this summary
        art = experiments.minatar_histories_artifact(exp, scale, every=args.every)
        print(f"chapter 3's summary of these histories: {art.path}")
    return 0


def epsilon(text: str) -> float:
    """argparse type: an exploration rate in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be an exploration rate between 0 and 1, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a share of each history, in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1 (exclusive), got {text!r}")
    return value


def cmd_export(args: argparse.Namespace) -> int:
    """A recorded history as a Minari dataset (the optional ``minari`` extra)."""
    try:
        import minari  # noqa: F401

        from imitlib.export import to_minari
    except ImportError:
        print('python -m imitlib export: Minari is not installed: pip install "minari[hdf5]"', file=sys.stderr)
        return 2
    dataset = to_minari(args.history, args.minari)
    print(f"wrote Minari dataset {args.minari}: {dataset.total_episodes:,} episodes, {dataset.total_steps:,} steps; "
          f"load it with minari.load_dataset({args.minari!r})")
    return 0


def cmd_student(args: argparse.Namespace) -> int:
    """Chapter 4's students: train (resumable under runs/), run the snapshot test, store the artifact, summarise."""
    scale = get_scale(args.scale)
    if args.data == "darkroom":
        exp = experiments.darkroom_students_config(scale, args.kind, source=args.source)
        print(f"training {len(exp.seeds)} {args.kind.upper()} student(s) on Dark Room ({args.source} histories), "
              f"{exp.student.updates:,} updates of {exp.student.batch_size} windows each")
        art = experiments.darkroom_students_artifact(exp, scale)
        print(art.provenance_markdown().replace("**", ""))
        for split in ("train", "held_out"):
            for mode in ("sampled", "greedy"):
                r = art[f"{split}/{mode}_returns"]
                print(f"{split} goals, {mode} actions: return {r.mean():.2f} (last episode {r[..., -1].mean():.2f}); "
                      f"optimal actions {art[f'{split}/{mode}_optimal_share'].mean():.0%}")
    else:
        if args.kind != "ed":
            print("python -m imitlib student: --data minatar takes --kind ed only (the game's learning histories are "
                  "too long for AD); use --kind ed", file=sys.stderr)
            return 2
        if args.scaling:
            return student_scaling(scale)
        exp = experiments.game_students_config(scale, env_id=args.env)
        art = experiments.game_students_artifact(exp, scale)
        print(art.provenance_markdown().replace("**", ""))
        print(f"ED student return {np.nanmean(art['returns']):.2f} vs teacher {art['teacher_returns'].mean():.2f}; "
              f"agreement with the teacher's greedy action {art['agreement'].mean():.0%}")
    print(f"training wall time per student: {np.round(art['wall_seconds'] / 60, 1).tolist()} min")
    return 0


def student_scaling(scale: Scale) -> int:
    """Question 1's data confound: ED students and behaviour cloning on more expert episodes per teacher."""
    from imitlib.experiments import data_scaling

    art = data_scaling.scaling_artifact(data_scaling.scaling_config(scale), scale)
    for row in data_scaling.table_rows(art):
        print(", ".join(f"{h}: {v}" for h, v in zip(data_scaling.TABLE_HEADER, row, strict=True)))
    print(f"Question 1 on the game: {data_scaling.verdict(art)}")
    return 0


def cmd_incontext(args: argparse.Namespace) -> int:
    """Chapter 5's experiments: regression ICL vs GD, the in-context test, the probes and the ablations."""
    scale = get_scale(args.scale)
    parts = ["regression", "main", "probes", "ablations"] if args.part == "all" else [args.part]
    if "regression" in parts:
        art = experiments.icl_regression_artifact(experiments.icl_regression_config(scale), scale)
        for j, depth in enumerate(art["layers"]):
            print(f"{depth} layer(s): LSA loss {art['loss_model'][:, j].mean():.3f}, "
                  f"GD x1 {art['loss_gd1'][:, j].mean():.3f}, GD x{depth} {art['loss_gdL'][:, j].mean():.3f}, "
                  f"zero {art['loss_zero'][:, j].mean():.3f}; "
                  f"cosine to GD x1 {art['cos_gd1'][:, j].mean():.4f}")
    if "main" in parts:
        ad, ed = (experiments.darkroom_students_config(scale, kind) for kind in ("ad", "ed"))
        for name, test in (("AD", experiments.in_context_config(scale, ad)),
                           ("ED", experiments.in_context_config(scale, ed)),
                           ("ED + prompt", experiments.in_context_config(scale, ed, prompt_episodes=3)),
                           ("AD + prompt", experiments.in_context_config(scale, ad, prompt_episodes=3))):
            _print_in_context(name, experiments.in_context_artifact(test, scale))
    if "probes" in parts:
        ad = experiments.darkroom_students_config(scale, "ad")
        art = experiments.probes_artifact(experiments.ProbeTest(ad, windows=scale.incontext.probe_windows), scale)
        for target in ("goal", "progress"):
            print(f"{target} probe R² by layer (last context position): "
                  f"{np.round(art[f'{target}_r2'][:, :, -1].mean(0), 3).tolist()}; shuffled control "
                  f"{np.round(art[f'{target}_r2_shuffled'][:, :, -1].mean(0), 3).tolist()}")
    if "ablations" in parts:
        names = list(experiments.ABLATIONS) if args.ablation is None else [args.ablation]
        for name in names:
            _print_in_context(name, experiments.in_context_artifact(experiments.ablation_test(scale, name), scale))
    return 0


def _print_in_context(name: str, art: object) -> None:
    """First and last tenth of the in-context curve, sampled and greedy."""
    for mode in ("sampled", "greedy"):
        r = art[f"{mode}_returns"]  # type: ignore[index]
        tenth = max(1, r.shape[-1] // 10)
        print(f"{name}, {mode}: held-out return {r[..., :tenth].mean():.2f} in the first {tenth} episodes -> "
              f"{r[..., -tenth:].mean():.2f} in the last {tenth}")


def cmd_scales(args: argparse.Namespace) -> int:
    """Print every preset as JSON."""
    print(json.dumps({k: dataclasses.asdict(v) for k, v in PRESETS.items()}, indent=2))
    return 0


def cmd_restamp(args: argparse.Namespace) -> int:
    """Run a proof test, then give the stale artifacts it covers today's code hash (see :mod:`imitlib.restamp`)."""
    repo = Path(__file__).resolve().parent.parent  # the checkout whose tests/ hold the proofs
    done, left = restamp.restamp(args.after, repo, scale=args.scale)
    for name in done:
        print(f"re-stamped {name} after {args.after}")
    for name in left:
        print(f"still stale: {name} ({args.after} does not cover it: recompute it or name a proof that does)")
    if not done and not left:
        print("nothing stale: nothing to re-stamp")
    return 1 if left else 0


def ray_flag(p: argparse.ArgumentParser, parts: str) -> None:
    """``--ray [ADDRESS]`` on a command whose students fan out as Ray tasks (:mod:`imitlib.sweep`)."""
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help=f"{parts}: one Ray task per student, on a local Ray (no ADDRESS) or the cluster at ADDRESS "
                        "('auto': the one running here); needs pip install \"imitlib[ray]\"")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m imitlib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("tabular", help="chapter 1: tabular Q-learning on Dark Room")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.add_argument("--seed", type=seed, default=0)
    p.set_defaults(fn=cmd_tabular)
    p = sub.add_parser("teacher", help="chapter 2: DQN teachers (MinAtar at ci/lab, ALE at full)")
    p.add_argument("--env", type=env_id, default=None,
                   help="game id (default: the scale's); e.g. MinAtar/SpaceInvaders-v0")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--cleanrl", action="store_true",
                   help="CleanRL dqn_atari.py's settings, like for like (one env, no sticky actions, MSE, batch 32 "
                        "every 4 steps); the default preset is the scale's")
    p.set_defaults(fn=cmd_teacher)
    p = sub.add_parser("record", help="chapter 3: record learning histories")
    p.add_argument("what", choices=["darkroom", "minatar"], help="which dataset")
    p.add_argument("--env", type=env_id, default=None, help="minatar: game id (default: the scale's teacher game)")
    p.add_argument("--every", type=int, default=10, help="minatar: record every k-th episode")
    p.add_argument("--source", nargs="+", default=["knowledge", "epsilon"], choices=["knowledge", "epsilon"])
    p.add_argument("--moves", type=int, default=0,
                   help="darkroom: the goal of every run moves this many times (within its split)")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.set_defaults(fn=cmd_record)
    p = sub.add_parser("export", help="write a recorded history as a Minari dataset (needs minari[hdf5])")
    p.add_argument("--minari", required=True, metavar="ID", help="the Minari dataset id, e.g. imitlib/breakout-v0")
    p.add_argument("--history", required=True, metavar="PATH", help="a history folder, e.g. data/<dataset>/expert")
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("student", help="chapter 4: ED / AD transformer students")
    p.add_argument("--kind", choices=["ed", "ad"], required=True)
    p.add_argument("--data", choices=["darkroom", "minatar"], default="darkroom")
    p.add_argument("--source", choices=["knowledge", "epsilon"], default="knowledge", help="darkroom: histories")
    p.add_argument("--env", type=env_id, default=None, help="minatar: game id (default: the scale's teacher game)")
    p.add_argument("--scaling", action="store_true",
                   help="minatar: ED students and behaviour cloning on 20, 100 and 500 expert episodes per teacher")
    ray_flag(p, "Dark Room students and --data minatar --scaling")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.set_defaults(fn=cmd_student)
    p = sub.add_parser("incontext", help="chapter 5: in-context regression, AD on held-out goals, probes, ablations")
    p.add_argument("--part", choices=["regression", "main", "probes", "ablations", "all"], default="all")
    p.add_argument("--ablation", default=None, choices=list(experiments.ABLATIONS),
                   help="ablations: one of them by name (default: every one)")
    ray_flag(p, "main, ablations")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.set_defaults(fn=cmd_incontext)
    p = sub.add_parser("beyond", help="chapter 6: can a frozen student improve past its history?")
    p.add_argument("--part", choices=["long", "truncated", "moves", "noise", "minatar"], required=True)
    p.add_argument("--fraction", type=fraction, default=None,
                   help="truncated: the share of each history kept (default: the scale's; lab: 0.1, 0.25, 0.5)")
    p.add_argument("--epsilon", type=epsilon, default=None,
                   help="noise: a fixed-epsilon control (default: epsilon decaying from 1 to 0.5, as AD^eps)")
    p.add_argument("--cut", type=fraction, default=None,
                   help="minatar: read only the episodes of this first share of training (default: the whole)")
    p.add_argument("--train-moves", type=int, default=0,
                   help="moves: goal moves in the students' training histories (0: chapter 4's students)")
    ray_flag(p, "truncated, moves, noise, minatar")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.set_defaults(fn=cmd_beyond)
    p = sub.add_parser("transfer", help="chapter 7: can a frozen student learn a game it never saw?")
    p.add_argument("--part", choices=["teacher", "students", "leave-one-out", "darkroom"], required=True,
                   help="teacher: DQN on Space Invaders, transplanted from Breakout; students: Breakout's frozen "
                        "ED and AD students on Space Invaders; leave-one-out: AD students on four other games' "
                        "histories; darkroom: AD students in rooms with relabelled actions")
    p.add_argument("--relabel", action="store_true",
                   help="leave-one-out: every training history relabelled (channels and actions permuted)")
    ray_flag(p, "students, leave-one-out")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.set_defaults(fn=cmd_transfer)
    p = sub.add_parser("restamp", help="after a proof test passes, mark the stale results it covers as current")
    p.add_argument("--after", required=True, choices=list(restamp.PROOFS), metavar="TEST",
                   help="the proof test (pytest node id): " + ", ".join(restamp.PROOFS))
    p.add_argument("--scale", default="lab", choices=["lab", "full"])
    p.set_defaults(fn=cmd_restamp)
    p = sub.add_parser("conclusions", help="chapter 8: the three questions' evidence table, from stored results")
    p.add_argument("--pending", action="store_true", help="list results not stored (or stale) instead of refusing")
    p.add_argument("--scale", default=None, help="ci, lab or full (default: $IMITLIB_SCALE or lab)")
    p.set_defaults(fn=cmd_conclusions)
    p = sub.add_parser("scales", help="print the scale presets")
    p.set_defaults(fn=cmd_scales)
    args = parser.parse_args(argv)
    try:
        if args.command in ("student", "incontext", "beyond"):  # their units (students, ablations) fan out under --ray
            with ray_or_here(args.ray):
                return args.fn(args)
        return args.fn(args)
    except UnknownScaleError as err:
        parser.error(str(err))
        return 2
    except KNOWN_ERRORS as err:  # a damaged or mismatched file: say which and how to fix it; no traceback
        print(f"{parser.prog} {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
