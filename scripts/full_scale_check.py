"""The `full` scale end to end, in about ten minutes of one GPU: is the ALE path ready for paper-scale runs?

    scripts/full_scale_check.sh OUT [--minutes 9] [--tiny]

1. DQN throughput on ALE Breakout: environment steps per second at the `full` preset (64 environments, one batch
   of 512 per vector step) and at CleanRL's settings (`teacher --cleanrl`: one environment, batch 32 every 4 steps).
2. The `full` teacher trained on Breakout for as long as the budget allows, its learning history recorded.
3. A small ED student trained on that teacher's expert episodes.
4. The student rolled out on Space Invaders (18 actions, so Breakout's networks and students fit) and on Breakout.

Everything it measures goes to OUT as `results.json` (and `curves.npz`); the last line printed is the same JSON.
`--tiny` shrinks every step count so the whole path runs on a CPU in about a minute (what the tests run).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imitlib import dqn  # noqa: E402
from imitlib.experiments.teacher import (  # noqa: E402
    cleanrl_experiment,
    random_returns,
    record_minatar,
    teacher_experiment,
)
from imitlib.scale import get_scale  # noqa: E402

NEW_GAME = "ALE/SpaceInvaders-v5"


def sizes(tiny: bool, minutes: float) -> dict[str, int]:
    """Step counts for each stage: the GPU budget, or a CPU dry run."""
    if tiny:
        return {"bench_steps": 256, "bench_envs": 4, "batch": 16, "train_seconds": 0, "train_steps": 256,
                "train_envs": 4, "updates": 10, "context": 16, "rollout_steps": 1_500, "rollout_envs": 2}
    return {"bench_steps": 32_768, "bench_envs": 64, "batch": 0, "train_seconds": int(60 * (minutes - 4)),
            "train_steps": 0, "train_envs": 64, "updates": 500, "context": 64, "rollout_steps": 2_000,
            "rollout_envs": 8}


def throughput(cfg: dqn.DQNConfig, steps: int) -> dict[str, float]:
    """Environment steps per second of one seed training at ``cfg``'s replay ratio (learning from the first tenth
    on, so the rate is the learning rate, not random play's); the replay buffer is capped at 200k for the test."""
    cfg = replace(cfg, steps=steps, segment_steps=steps, learning_starts=max(steps // 10, 8 * cfg.num_envs),
                  eval_episodes=1,
                  buffer_size=min(cfg.buffer_size, 200_000), eps_decay_steps=steps)
    start = time.perf_counter()
    run = dqn.train(cfg, [0], progress=False)
    wall = time.perf_counter() - start
    return {"env_steps_per_s": run.state.env_steps / wall, "seconds": wall, "num_envs": cfg.num_envs,
            "batch_size": cfg.batch_size, "train_every": cfg.train_every, "updates": run.state.updates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for results.json and curves.npz")
    parser.add_argument("--minutes", type=float, default=9.0, help="the whole check's budget (GPU)")
    parser.add_argument("--tiny", action="store_true", help="tiny step counts: the path end to end on a CPU")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = sizes(args.tiny, args.minutes)
    full = get_scale("full")
    report: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
                    "tiny": args.tiny, "torch": torch.__version__}

    # 1. throughput at both presets (after a short warm-up, so start-up costs are not in the rate)
    ours = replace(teacher_experiment(full).dqn, device=device, num_envs=n["bench_envs"])
    cleanrl = replace(cleanrl_experiment(full).dqn, device=device)
    if n["batch"]:  # a CPU dry run: batches a CPU can afford
        ours, cleanrl = replace(ours, batch_size=n["batch"]), replace(cleanrl, batch_size=n["batch"])
    throughput(ours, n["bench_envs"] * 16)
    report["throughput_full_preset"] = throughput(ours, n["bench_steps"])
    report["throughput_cleanrl"] = throughput(cleanrl, max(n["bench_steps"] // 8, 256))
    print(f"[{time.perf_counter() - t0:.0f}s] env-steps/s: full preset "
          f"{report['throughput_full_preset']['env_steps_per_s']:,.0f}, CleanRL settings "
          f"{report['throughput_cleanrl']['env_steps_per_s']:,.0f}", flush=True)

    # 2. the full teacher on Breakout, as far as the budget allows, recorded
    rate = report["throughput_full_preset"]["env_steps_per_s"]
    steps = n["train_steps"] or int(rate * max(60, n["train_seconds"] - (time.perf_counter() - t0)))
    segment = n["train_envs"] * max(1, steps // (4 * n["train_envs"]))
    steps = segment * max(1, steps // segment)
    exp = teacher_experiment(full)
    exp = replace(exp, dqn=replace(exp.dqn, device=device, steps=steps, segment_steps=segment,
                                   num_envs=n["train_envs"],
                                   learning_starts=min(exp.dqn.learning_starts, max(steps // 10, 8 * n["train_envs"])),
                                   eps_decay_steps=min(exp.dqn.eps_decay_steps, steps // 2),
                                   buffer_size=min(exp.dqn.buffer_size, steps), eval_episodes=2,
                                   batch_size=n["batch"] or exp.dqn.batch_size))
    timings, teacher = record_minatar(exp, args.out / "histories", every=10, expert_episodes=2, progress=not args.tiny)
    report["teacher"] = {"steps": steps, "seconds": timings["total_seconds"],
                         "eval_returns": np.asarray(teacher["eval_means"]).ravel().round(2).tolist()}
    print(f"[{time.perf_counter() - t0:.0f}s] teacher: {steps:,} steps, evaluations "
          f"{report['teacher']['eval_returns']}", flush=True)

    # 3. a small ED student on the teacher's expert episodes
    from imitlib.history import HistoryReader
    from imitlib.imitation import StudentConfig, game_rollout, train_student
    from imitlib.transformer import TransformerConfig

    model = TransformerConfig(obs_kind="ale", obs_shape=(84, 84), n_actions=18, block_size=n["context"], n_layer=2,
                              n_head=2, n_embd=64)
    cfg = StudentConfig(model=model, kind="ed", context_steps=n["context"], updates=n["updates"], batch_size=16,
                        warmup=max(1, n["updates"] // 20), checkpoint_every=max(1, n["updates"] // 4))
    start = time.perf_counter()
    run = train_student(cfg, HistoryReader(args.out / "histories" / "expert"), [0], progress=not args.tiny)
    report["student"] = {"updates": run.updates, "loss": run.loss[-1], "accuracy": run.accuracy[-1],
                         "seconds": time.perf_counter() - start}

    # 4. the frozen student on the new game and on its own, beside random play (the floor of every comparison)
    curves = {}
    for name, env_id in (("space_invaders", NEW_GAME), ("breakout", exp.dqn.env_id)):
        roll = game_rollout(run.model, env_id, num_envs=n["rollout_envs"], episodes=50, context_steps=n["context"],
                            seed=1, max_steps=n["rollout_steps"], full_action_space=True)
        done = np.isfinite(roll["returns"])
        random = random_returns(env_id, n["rollout_envs"] * 2, seed=1, full_action_space=True)
        report[f"student_on_{name}"] = {"episodes": int(done.sum()), "steps_per_env": int(roll["steps"]),
                                        "mean_return": float(roll["returns"][done].mean()) if done.any() else None,
                                        "random_mean_return": float(random.mean())}
        curves[name] = roll["returns"]
    np.savez(args.out / "curves.npz", **curves)
    report["seconds"] = time.perf_counter() - t0
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
