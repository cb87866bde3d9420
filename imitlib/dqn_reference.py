"""DQN for one seed, written the plain way: the test oracle for the stacked, several-seeds :func:`imitlib.dqn.train`.

One ordinary ``nn.Module``, one optimiser, one loop, nothing vectorised across seeds (the role ``q_learning_loop``
plays for the batched tabular learner). It draws from the same random streams in the same order, resets the same
environments at the same segment boundaries and shares the replay buffer (:mod:`imitlib.replay`, tested on its
own), so for the same config and seed it must end with the weights the stacked run gives its seed
(``tests/test_dqn.py``). Evaluation is left out: the stacked run's evaluation uses its own environments and streams
and never changes training.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from imitlib.dqn import DQNConfig, reset_seeds
from imitlib.envs.games import game_spec, make_vec_env
from imitlib.envs.observations import network_input
from imitlib.qnets import make_network
from imitlib.replay import ReplayBuffer


def train_reference(cfg: DQNConfig, seed: int) -> tuple[nn.Module, list[tuple[int, float, int]]]:
    """Train one seed's Q-network; returns it and the finished training episodes (env step, return, length)."""
    torch.set_flush_denormal(True)  # as the stacked run: denormal Adam moments round to zero there too
    spec = game_spec(cfg.env_id, full_action_space=cfg.full_action_space, channels=cfg.channels)
    torch.manual_seed(seed)
    online = make_network(cfg, spec)
    target = copy.deepcopy(online).requires_grad_(False)
    optim = torch.optim.Adam(online.parameters(), lr=cfg.lr, eps=cfg.adam_eps, foreach=True)
    buffer = ReplayBuffer(spec, 1, cfg.num_envs, cfg.buffer_size)  # one seed: arrays (1, E, ...)
    act_rng, sample_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    envs = make_vec_env(cfg.env_id, cfg.num_envs, sticky=cfg.sticky, full_action_space=cfg.full_action_space,
                        channels=cfg.channels)
    n_envs, env_steps, segment, episodes = cfg.num_envs, 0, 0, []
    while env_steps < cfg.steps:
        obs, info = envs.reset(seed=reset_seeds([seed], n_envs, segment, purpose=0))
        lives = np.asarray(info.get("lives", np.zeros(n_envs)))
        starts = np.ones(n_envs, bool)
        ep_return, ep_len = np.zeros(n_envs), np.zeros(n_envs, np.int64)
        vector_steps = min(cfg.segment_steps, cfg.steps - env_steps) // n_envs
        for i in range(vector_steps):
            # epsilon-greedy action
            epsilon = cfg.epsilon(env_steps)
            with torch.no_grad():
                greedy = online(network_input(spec, torch.as_tensor(obs))).argmax(-1).numpy()
            explore = act_rng.random(n_envs) < epsilon
            action = np.where(explore, act_rng.integers(spec.n_actions, size=n_envs), greedy)
            next_obs, reward, terminated, truncated, info = envs.step(action)
            # store it; a time limit or the segment's end cuts the episode: not bootstrapped, not replayed
            cut = truncated | (i == vector_steps - 1)
            ended = terminated | truncated
            new_lives = np.asarray(info.get("lives", np.zeros(n_envs)))
            life_lost = (new_lives < lives) & ~ended if cfg.life_loss_terminal else np.zeros(n_envs, bool)
            learn_reward = np.sign(reward) if cfg.clip_rewards else reward
            buffer.add(obs[None], action[None], learn_reward[None], (terminated | life_lost)[None], starts[None],
                       (~cut | terminated)[None])  # (E, ...) -> (1, E, ...)
            env_steps += n_envs
            ep_return += reward
            ep_len += 1
            for e in np.flatnonzero(ended):
                episodes.append((env_steps, float(ep_return[e]), int(ep_len[e])))
            ep_return[ended], ep_len[ended] = 0.0, 0
            obs, lives, starts = next_obs, new_lives, ended
            # one TD update on a replay batch
            if env_steps >= cfg.learning_starts and (i + 1) % cfg.train_every == 0:
                batch = {k: torch.as_tensor(v[0]) for k, v in buffer.sample(cfg.batch_size, [sample_rng]).items()}
                q_taken = online(network_input(spec, batch["obs"])).gather(-1, batch["actions"][:, None])[:, 0]
                with torch.no_grad():
                    next_q = target(network_input(spec, batch["next_obs"]))
                    if cfg.double_dqn:
                        best = online(network_input(spec, batch["next_obs"])).argmax(-1, keepdim=True)
                        next_value = next_q.gather(-1, best)[:, 0]
                    else:
                        next_value = next_q.max(-1).values
                    y = batch["rewards"] + cfg.gamma * (1.0 - batch["terminal"].float()) * next_value
                err = nn.functional.smooth_l1_loss if cfg.loss == "huber" else nn.functional.mse_loss
                loss = err(q_taken, y)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
            # copy the target network on schedule
            if (env_steps // n_envs) % (cfg.target_every // n_envs) == 0:
                target.load_state_dict(online.state_dict())
        segment += 1
    envs.close()
    return online, episodes
