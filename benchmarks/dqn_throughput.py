"""Our DQN vs Stable-Baselines3's DQN with matched hyper-parameters, same run, same machine.

Both train the MinAtar network (conv 16x3x3 -> 128 -> 6) on MinAtar Breakout with: replay 100k, batch 32, an
update every 4 steps, target copy every 1,000 steps, 5,000 steps before learning, epsilon 1 -> 0.1 over 100k
steps, Adam (lr 2.5e-4, eps 3.125e-4), Huber loss, gamma 0.99, sticky actions 0.1. Speed is environment steps per
second over the whole run, learning included. Ours is measured for one seed (like for like) and for five seeds
trained together (how the book trains); the headline ratio is like for like.

    pip install -r benchmarks/requirements.txt
    python benchmarks/dqn_throughput.py [--steps 20000] [--threads N]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from torch import nn


def ours(steps: int, seeds: int) -> float:
    from imitlib.dqn import DQNConfig, train

    cfg = DQNConfig(steps=steps, segment_steps=steps, train_every=4, eval_episodes=1)
    start = time.perf_counter()
    train(cfg, list(range(seeds)), progress=False)
    return steps * seeds / (time.perf_counter() - start)


def sb3(steps: int) -> float:
    from stable_baselines3 import DQN
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from imitlib.envs.games import _minatar_env

    class MinAtarFeatures(BaseFeaturesExtractor):
        """The MinAtar network's body; SB3 adds the final Linear(128, actions)."""

        def __init__(self, space, features_dim: int = 128) -> None:
            super().__init__(space, features_dim)
            c = space.shape[-1]
            self.body = nn.Sequential(nn.Conv2d(c, 16, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(1024, 128), nn.ReLU())

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.body(obs.float().movedim(-1, -3))

    env = _minatar_env("MinAtar/Breakout-v0", 0.1, None)
    model = DQN(
        "MlpPolicy", env, learning_rate=2.5e-4, buffer_size=100_000, learning_starts=5_000, batch_size=32,
        gamma=0.99, train_freq=4, gradient_steps=1, target_update_interval=1_000,
        exploration_fraction=min(1.0, 100_000 / steps), exploration_initial_eps=1.0, exploration_final_eps=0.1,
        max_grad_norm=1e9, seed=0, device="cpu", verbose=0,
        policy_kwargs={"features_extractor_class": MinAtarFeatures, "net_arch": [],
                       "optimizer_kwargs": {"eps": 3.125e-4}},
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps per seed")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sb3_rate = sb3(args.steps)
    ours_rate = ours(args.steps, 1)
    ours_5 = ours(args.steps, 5)
    print(f"SB3 DQN:            {sb3_rate:8,.0f} env-steps/s (1 seed)")
    print(f"imitlib DQN:        {ours_rate:8,.0f} env-steps/s (1 seed)  -> {ours_rate / sb3_rate:.2f}x SB3")
    print(f"imitlib DQN x5:     {ours_5:8,.0f} env-steps/s (5 seeds together) -> {ours_5 / sb3_rate:.2f}x SB3")
    print(json.dumps({
        "ours_steps_per_s": round(ours_rate), "sb3_steps_per_s": round(sb3_rate),
        "ratio": round(ours_rate / sb3_rate, 2),
        "ours_5_seeds_steps_per_s": round(ours_5), "ratio_5_seeds": round(ours_5 / sb3_rate, 2),
        "env": "MinAtar/Breakout-v0", "steps_per_seed": args.steps, "threads": args.threads,
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
