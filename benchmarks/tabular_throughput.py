"""Batched tabular Q-learning vs the plain per-environment loop, in the same run.

Both run the same algorithm with the same seeds (tests/test_tabular.py checks they agree bit for bit); the
batched version advances every run with one numpy operation per step. Prints env-steps/s for each and their
ratio; the last line is one JSON object.

    python benchmarks/tabular_throughput.py [--runs 5184] [--episodes 64] [--loop-runs 20] [--loop-episodes 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from imitlib.tabular import QLearningConfig, q_learning, q_learning_loop


def best_of(fn, repeats: int) -> float:
    """Fastest of a few wall-clock timings: the least disturbed by the rest of the machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=81 * 64, help="learners in the batch (goals x seeds)")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--loop-runs", type=int, default=20)
    parser.add_argument("--loop-episodes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = QLearningConfig()

    # same answer first: a benchmark of two different computations would mean nothing
    check_goals, check_seeds = np.arange(0, 81, 9), np.arange(9)
    same = np.array_equal(q_learning(cfg, check_goals, check_seeds, 30).q,
                          q_learning_loop(cfg, check_goals, check_seeds, 30).q)
    if not same:
        raise SystemExit("batched and loop Q-learning disagree: fix that before timing them")

    goals, seeds = np.arange(args.runs) % 81, np.arange(args.runs)
    t_batched = best_of(lambda: q_learning(cfg, goals, seeds, args.episodes), args.repeats)
    lg, ls = np.arange(args.loop_runs) % 81, np.arange(args.loop_runs)
    t_loop = best_of(lambda: q_learning_loop(cfg, lg, ls, args.loop_episodes), args.repeats)
    batched = args.runs * args.episodes * cfg.horizon / t_batched
    loop = args.loop_runs * args.loop_episodes * cfg.horizon / t_loop
    for name, runs, episodes, secs, rate in (("batched", args.runs, args.episodes, t_batched, batched),
                                             ("loop", args.loop_runs, args.loop_episodes, t_loop, loop)):
        print(f"{name:>8}: {runs} runs x {episodes} episodes in {secs:.2f} s -> {rate:,.0f} env-steps/s")
    print(f"ratio:   {batched / loop:.1f}x")
    print(json.dumps({
        "batched_steps_per_s": round(batched), "loop_steps_per_s": round(loop), "ratio": round(batched / loop, 2),
        "runs": args.runs, "identical_results": same, "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
