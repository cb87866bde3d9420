"""The commands of the book's questions (chapters 6-8): compute or load a part, print its numbers and verdicts.

    python -m imitlib beyond --part truncated --scale lab          # chapter 6: past the history
    python -m imitlib transfer --part darkroom --scale lab         # chapter 7: a game never seen
    python -m imitlib conclusions --scale lab                      # chapter 8: the evidence table
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imitlib.scale import Scale, get_scale
from imitlib.sweep import ray_or_here


def cmd_beyond(args: argparse.Namespace) -> int:
    """Chapter 6: frozen AD students rolled out far past their history (whole, or truncated to its first part)."""
    from imitlib.experiments import beyond

    if args.ray is not None and args.part == "long":
        print("python -m imitlib beyond: --ray trains students, and --part long trains none (it rolls out chapter "
              "4's); drop it", file=sys.stderr)
        return 2
    scale = get_scale(args.scale)
    if args.part == "noise":
        return beyond_noise(args.epsilon, scale)
    if args.part == "moves":
        return beyond_moves(args.train_moves, scale)
    if args.part == "minatar":
        return beyond_game(args.cut, scale)
    fractions = [1.0] if args.part == "long" else ([args.fraction] if args.fraction else list(scale.beyond.fractions))
    for fraction in fractions:
        test = beyond.beyond_config(scale, fraction)
        art = beyond.beyond_artifact(test, scale)
        print(f"{beyond.beyond_name(test)}: {test.episodes:,} episodes on the held-out goals after the first "
              f"{int(art['kept'])} of each history")
        for mode, row in beyond.summary(art).items():
            print(f"  {mode}: plateau {row['plateau']}, data ceiling {row['ceiling']:.2f}, source then "
                  f"{row['source_end']:.2f}: {row['verdict']}")
    return 0


def beyond_noise(epsilon: float | None, scale: Scale) -> int:
    """Chapter 6, part 4: AD on noise-distilled histories (``epsilon`` None), or a fixed-epsilon control."""
    from imitlib.experiments import noise

    test = noise.noise_config(scale, epsilon)
    art = noise.noise_artifact(test, scale)
    print(f"{noise.noise_name(test)}: {test.episodes:,} episodes on the held-out goals")
    for mode in ("sampled", "greedy"):
        print(f"  {mode}: plateau {noise.student_plateau(art, mode)}, best in the data "
              f"{noise.best_in_data(art, mode):.2f}")
    return 0


def beyond_moves(train_moves: int, scale: Scale) -> int:
    """Chapter 6, part 3: frozen AD students and the Q-learner on held-out goals that move."""
    from imitlib.experiments import moving

    test = moving.moving_config(scale, train_moves)
    art = moving.moving_artifact(test, scale)
    print(f"{moving.moving_name(test)}: {test.episodes:,} episodes, the goal moving {test.test_moves} times")
    for who, row in moving.summary(art).items():
        print(f"  {who}: settled at {row['before']:.0%} of the optimum before the first move, "
              f"{row['after']:.0%} after; recovers to 80% of the optimum in {row['recovery']}; {row['verdict']}")
    return 0


def beyond_game(cut: float | None, scale: Scale) -> int:
    """Chapter 6, part 5: AD students on the MinAtar teachers' learning histories, whole or cut early."""
    from imitlib.experiments import game_beyond

    test = game_beyond.game_beyond_config(scale, 1.0 if cut is None else cut)
    art = game_beyond.game_beyond_artifact(test, scale)
    print(f"{game_beyond.game_beyond_name(test)}: students read {art['episodes_read'].tolist()} recorded episodes")
    for mode, row in game_beyond.summary(art).items():
        ceiling = f", data ceiling {row['ceiling']:.2f}" if mode == "sampled" else ""
        print(f"  {mode}: plateau {row['plateau']}{ceiling}, teacher at the end {row['teacher_end']:.2f}: "
              f"{row['verdict']}")
    return 0


RAY_PARTS = ("students", "leave-one-out")  # the transfer parts whose students fan out under --ray


def cmd_transfer(args: argparse.Namespace) -> int:
    """Chapter 7: a game the student never saw. Each part computes and stores its result, resumably."""
    if args.relabel and args.part != "leave-one-out":
        print(f"python -m imitlib transfer: --relabel applies to --part leave-one-out only, not {args.part}; drop it",
              file=sys.stderr)
        return 2
    if args.ray is not None and args.part not in RAY_PARTS:
        print(f"python -m imitlib transfer: --ray applies to --part {' or '.join(RAY_PARTS)} only, not {args.part}; "
              "drop it", file=sys.stderr)
        return 2
    scale = get_scale(args.scale)
    from imitlib.experiments.leave_one_out import runs_at

    if args.part == "leave-one-out" and not runs_at(scale):
        print(f"python -m imitlib transfer: --part leave-one-out trains on MinAtar's games, not at {scale.name} "
              "(ALE); use --scale lab or ci", file=sys.stderr)
        return 2
    with ray_or_here(args.ray):
        rows = transfer_rows(args, scale)
    for mode, lines in rows.items():
        for line in lines:
            print(f"  {mode}: {line[0]}: start {line[1]}, end {line[2]}, gain {line[3]}; {line[4]}")
    return 0


def transfer_rows(args: argparse.Namespace, scale: Scale) -> dict[str, list[list[Any]]]:
    """Compute (or load) the asked part of chapter 7 and return its table rows per decoding."""
    from imitlib.experiments import transfer

    if args.part == "darkroom":
        from imitlib.experiments import relabelled_room as part

        art = part.relabelled_artifact(part.relabelled_config(scale), scale)
        rows = {mode: part.table_rows(art, mode) for mode in ("sampled", "greedy")}
    else:
        new_game = transfer.new_game(scale)
        random = transfer.random_return(new_game)
        if args.part == "leave-one-out":
            from imitlib.experiments import leave_one_out as part

            art = part.leave_one_out_artifact(part.leave_one_out_config(scale, args.relabel), scale)
            mine = part.SETS.index(args.relabel)  # the table lists both sets, the other one as not computed
            rows = {mode: part.table_rows({args.relabel: art}, "new", mode, random)[mine:mine + 1]
                    for mode in ("sampled", "greedy")}
        elif args.part == "teacher":
            from imitlib.experiments import transplant as part

            test = part.transplant_config(scale, new_game)
            arts = {"transplant": part.transplant_artifact(test, scale)} | part.load_teachers(scale)
            rows = {mode: part.table_rows(arts, mode, random) for mode in ("sampled", "greedy")}
            print(f"Breakout teachers on {new_game} as they arrive: "
                  f"{arts['transplant']['arrival_returns'].mean():.2f} (random {random:.2f})")
        else:
            from imitlib.experiments import new_game as part

            art = part.frozen_artifact(part.frozen_config(scale, new_game), scale)
            rows = {mode: part.table_rows(art, mode, random) for mode in ("sampled", "greedy")}
    return rows


def cmd_conclusions(args: argparse.Namespace) -> int:
    """Chapter 8's table in the terminal, read from stored results only; a missing or stale one is refused (its
    command printed) unless --pending lists it."""
    from imitlib.experiments import conclusions

    found = conclusions.findings(get_scale(args.scale), allow_pending=args.pending)
    for row in conclusions.table_rows(found):
        print(" | ".join(str(cell) for cell in row))
    for q in conclusions.QUESTIONS:
        print(f"{q}: {conclusions.answer(found, q)}")
    return 0
