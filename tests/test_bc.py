"""Behaviour cloning with the teacher's network: it fits (frame, action) pairs and agrees with a matching teacher."""

import numpy as np
import torch

from imitlib import bc
from imitlib.envs import game_spec
from imitlib.envs.observations import network_input


def test_bc_learns_a_rule_that_reads_the_frame_and_agreement_counts_matching_actions():
    spec = game_spec("MinAtar/Breakout-v0")
    rng = np.random.default_rng(0)
    frames = rng.random((512, 10, 10, 10)) < 0.05
    frames[:256, 0, 0, 2] = True  # the expert acts 3 when channel 2 is lit in the corner, else 1
    frames[256:, 0, 0, 2] = False
    actions = torch.as_tensor(np.where(frames[:, 0, 0, 2], 3, 1))
    obs = network_input(spec, torch.as_tensor(frames))
    net, accuracy = bc.train_bc(bc.BCConfig(updates=150, batch_size=64, lr=3e-3), obs, actions, spec)
    assert accuracy > 0.95 and not net.training
    assert bc.agreement(net, net, frames, spec) == 1.0

    class Always(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 1), 6).float()

    assert abs(bc.agreement(net, Always(), frames, spec) - 0.5) < 0.05  # it agrees where the expert acts 1
