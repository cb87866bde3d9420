"""Reference numbers from papers and public projects (see ``book/references.bib``), for reference lines.

These are cited facts, never our results: every plot that shows one labels it with its source.
"""

# MinAtar paper (Young & Tian 2019): DQN after 5M frames, all 6 actions, sticky actions 0.1; random policy.
MINATAR_DQN_5M = {"MinAtar/Breakout-v0": 10.0, "MinAtar/SpaceInvaders-v0": 43.0}
MINATAR_RANDOM = {"MinAtar/Breakout-v0": 0.5, "MinAtar/SpaceInvaders-v0": 2.9}

# CleanRL dqn_atari on BreakoutNoFrameskip-v4: 366.9 +- 39.9 after 10M steps (3 seeds); its curve passes
# about 100 at 2M steps and 300 at 3.5M; about 460 env-steps/s on a GPU.
CLEANRL_BREAKOUT_10M = 366.9
CLEANRL_BREAKOUT_CURVE = ((2_000_000, 100.0), (3_500_000, 300.0), (10_000_000, 366.9))
CLEANRL_STEPS_PER_S = 460.0

# Random and human scores (Mnih et al. 2015).
ATARI_RANDOM = {"ALE/Breakout-v5": 1.7, "ALE/SpaceInvaders-v5": 148.0}
ATARI_HUMAN = {"ALE/Breakout-v5": 30.5, "ALE/SpaceInvaders-v5": 1668.7}
