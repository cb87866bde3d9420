"""One sweep in process vs on a local Ray with N workers, same run, same machine.

The sweep: 8 ci-scale Dark Room AD students (chapter 4's recipe at ci: 60 updates, then a short rollout), each a
:class:`imitlib.sweep.Unit`. In process they train one after another on one thread; under Ray each is a task of one
CPU. Ray's start-up (``ray.init`` and its workers' first imports) is timed separately and left out of the speedup,
which is what a long sweep sees. Expect about min(workers, cores) at best: the units are independent and small, so
the only costs are start-up and each worker recording the tiny ci dataset once.

    pip install "imitlib[ray]"
    python benchmarks/sweep_scaling.py [--students 8] [--workers 2]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def student(seed: int) -> np.ndarray:
    """A unit: one ci Dark Room AD student trained, then 4 episodes on a held-out goal; its returns."""
    from dataclasses import replace

    import torch

    from imitlib.experiments.students import darkroom_students_config, student_data
    from imitlib.imitation import darkroom_rollout, train_student
    from imitlib.scale import get_scale

    torch.set_num_threads(1)
    scale = get_scale("ci")
    exp = darkroom_students_config(scale, "ad")
    run = train_student(replace(exp.student, seed=seed), student_data(exp, scale), None, progress=False)
    return darkroom_rollout(run.model, [12], 4, context_episodes=exp.student.context_episodes, seed=seed)["returns"]


def warm_up(seconds: float) -> None:
    """A worker's start-up: the imports every unit needs (torch, imitlib), held long enough that each worker takes
    one warm-up task."""
    import torch  # noqa: F401

    import imitlib.experiments.students
    import imitlib.imitation  # noqa: F401

    time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import ray

    from imitlib import sweep

    units = [sweep.Unit(f"student {s}", student, (s,)) for s in range(args.students)]
    start = time.perf_counter()
    here = sweep.run(units)
    in_process = time.perf_counter() - start

    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with sweep.using_ray():
        sweep.run([sweep.Unit(f"warm-up {w}", warm_up, (1.0,)) for w in range(args.workers)])  # workers up
        startup = time.perf_counter() - start
        start = time.perf_counter()
        there = sweep.run(units)
        on_ray = time.perf_counter() - start
    ray.shutdown()
    same = all(np.array_equal(a, b) for a, b in zip(here, there, strict=True))
    print(f"in process: {in_process:.1f} s; Ray, {args.workers} workers: {on_ray:.1f} s after {startup:.1f} s of "
          f"start-up -> {in_process / on_ray:.2f}x; same returns: {same}")
    print(json.dumps({"in_process_s": round(in_process, 2), "ray_s": round(on_ray, 2),
                      "speedup": round(in_process / on_ray, 2), "workers": args.workers,
                      "ray_startup_s": round(startup, 2), "units": args.students, "same_results": same,
                      "cpu_count": os.cpu_count(), "machine": platform.machine(), "ray": ray.__version__}))


if __name__ == "__main__":
    main()
