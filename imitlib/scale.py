"""The three sizes every experiment runs at, selected by the ``IMITLIB_SCALE`` environment variable.

One code path, three presets: ``ci`` (2 CPU cores, the whole book in minutes, noisy but end to end),
``lab`` (the default: CPU or free Colab, real results with >= 5 seeds) and ``full`` (one GPU, ALE Atari
at paper scale). Experiments read their sizes from here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_VAR = "IMITLIB_SCALE"
DEFAULT = "lab"


@dataclass(frozen=True)
class TabularScale:
    """Sizes of the tabular Q-learning experiments on Dark Room (chapter 1)."""

    seeds: int  # independent seeds behind every curve with a confidence band
    goals: int  # goals per seed (80 = every cell but the centre, whose mirror is itself)
    episodes: int  # episodes of learning per run
    switch_episodes: int  # episodes before *and* after the goal moves


@dataclass(frozen=True)
class TeacherScale:
    """Sizes of the DQN teacher (chapter 2): MinAtar at ci/lab, ALE Atari at full."""

    env_id: str
    seeds: int
    steps: int  # environment steps per seed
    num_envs: int  # environments per seed
    network: str  # "minatar" or "nature"
    buffer_size: int
    batch_size: int
    train_every: int  # vector steps between updates
    learning_starts: int
    target_every: int  # environment steps between target-network copies
    eps_end: float
    eps_decay_steps: int
    lr: float
    adam_eps: float
    segment_steps: int  # checkpoint + evaluation interval
    eval_episodes: int


@dataclass(frozen=True)
class StudentScale:
    """Sizes of the transformer students (chapters 4-5): Dark Room ED/AD, and ED on the teacher's game."""

    seeds: int  # training seeds per student kind
    updates: int  # Dark Room: gradient updates per student
    batch_size: int  # windows per update
    n_layer: int
    n_head: int
    n_embd: int
    eval_episodes: int  # Dark Room snapshot test (chapter 4): episodes per rollout
    icl_episodes: int  # Dark Room in-context test (chapter 5): episodes per rollout, from an empty context
    game_updates: int  # ED on the teacher's expert episodes
    game_context_steps: int
    game_eval_episodes: int  # per environment; 4 environments per student
    bf16: bool = False  # train under bfloat16 autocast (imitlib.imitation.StudentConfig.bf16)
    scaling_episodes: tuple[int, ...] = (20, 100, 500)  # Q1's data confound: expert episodes per teacher


@dataclass(frozen=True)
class InContextScale:
    """Sizes of chapter 5: in-context regression (linear self-attention vs gradient descent) and the probes."""

    regression_seeds: int
    regression_steps: int  # Adam steps per linear-self-attention model
    regression_batch: int  # tasks per step
    regression_tasks: int  # fresh tasks for every comparison
    max_layers: int  # models with 1 .. max_layers layers
    probe_windows: int  # context windows per history for the activation probes


@dataclass(frozen=True)
class BeyondScale:
    """Sizes of chapter 6: how far past its history a frozen student is rolled out."""

    long_factor: int  # rollout episodes per episode of a training history (issue #16: at least 5 at lab)
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5)  # truncated histories: the share of each history kept
    noise_controls: tuple[float, ...] = (1.0, 0.5)  # fixed-epsilon controls beside the noise-distilled students
    # AD on the teacher's game: steps in context. 128 holds about ten early episodes and one or two late ones; 256
    # would hold twice as many but costs 2.2 s per update on one core against 0.48 s (attention is quadratic in it)
    game_context_steps: int = 128
    game_envs: int = 32  # environments per frozen game student's rollout, stepped together
    game_cuts: tuple[float, ...] = (1.0, 0.3)  # AD on the teacher's game: the whole history, and its first 30%


@dataclass(frozen=True)
class TransferScale:
    """Sizes of chapter 7: the frozen students on a game they never saw."""

    room_permutations: int  # Dark Room with relabelled actions: rooms (derangements of the five actions)
    game_envs: int  # environments per frozen student's rollout on the new game, stepped together
    leave_one_out_sets: tuple[bool, ...] = (False, True)  # leave one game out: histories as recorded, relabelled
    leave_one_out_games: int = 4  # ... trained on the first this many of Breakout, Asterix, Freeway, Seaquest


@dataclass(frozen=True)
class Scale:
    """A named preset: every size an experiment may read."""

    name: str
    tabular: TabularScale
    teacher: TeacherScale
    student: StudentScale
    incontext: InContextScale
    beyond: BeyondScale
    transfer: TransferScale


PRESETS: dict[str, Scale] = {
    "ci": Scale(
        name="ci",
        tabular=TabularScale(seeds=3, goals=12, episodes=150, switch_episodes=150),
        teacher=TeacherScale(env_id="MinAtar/Breakout-v0", seeds=2, steps=3_000, num_envs=1, network="minatar",
                             buffer_size=5_000, batch_size=32, train_every=4, learning_starts=500, target_every=500,
                             eps_end=0.1,
                             eps_decay_steps=2_000, lr=2.5e-4, adam_eps=3.125e-4, segment_steps=1_500,
                             eval_episodes=3),
        student=StudentScale(seeds=2, updates=60, batch_size=16, n_layer=2, n_head=2, n_embd=32, eval_episodes=6,
                             icl_episodes=12, game_updates=20, game_context_steps=32, game_eval_episodes=1,
                             scaling_episodes=(10, 20)),
        incontext=InContextScale(regression_seeds=2, regression_steps=150, regression_batch=256,
                                 regression_tasks=2_000, max_layers=2, probe_windows=2),
        # one truncation, no noise control (the same code as the noise set, another epsilon), one game cut: chapter
        # 6 within its 90 s
        beyond=BeyondScale(long_factor=2, fractions=(0.25,), noise_controls=(), game_context_steps=64, game_envs=8,
                           game_cuts=(0.3,)),
        # two training games and the relabelled set only: Freeway's long episodes alone cost 30 s to record
        transfer=TransferScale(room_permutations=2, game_envs=8, leave_one_out_sets=(True,), leave_one_out_games=2),
    ),
    "lab": Scale(
        name="lab",
        tabular=TabularScale(seeds=10, goals=80, episodes=600, switch_episodes=600),
        # MinAtar paper settings (buffer 100k, batch 32, target every 1k, epsilon 1 -> 0.1 over 100k) except:
        # Adam instead of RMSprop, and an update every 4 steps instead of every step, so 5 seeds fit a CPU
        teacher=TeacherScale(env_id="MinAtar/Breakout-v0", seeds=5, steps=1_000_000, num_envs=1, network="minatar",
                             buffer_size=100_000, batch_size=32, train_every=4, learning_starts=5_000,
                             target_every=1_000, eps_end=0.1,
                             eps_decay_steps=100_000, lr=2.5e-4, adam_eps=3.125e-4, segment_steps=50_000,
                             eval_episodes=10),
        # Algorithm Distillation's Dark Room model (embedding 64, 4 layers, 4 heads); the update budget is what
        # 2 CPU cores afford (~20 min per student), far below the paper's
        student=StudentScale(seeds=5, updates=4_000, batch_size=64, n_layer=4, n_head=4, n_embd=64,
                             eval_episodes=20, icl_episodes=200, game_updates=2_000, game_context_steps=64,
                             game_eval_episodes=5, bf16=True),
        incontext=InContextScale(regression_seeds=5, regression_steps=3_000, regression_batch=1_024,
                                 regression_tasks=10_000, max_layers=3, probe_windows=4),
        beyond=BeyondScale(long_factor=5),
        transfer=TransferScale(room_permutations=10, game_envs=32),
    ),
    "full": Scale(
        name="full",
        tabular=TabularScale(seeds=20, goals=80, episodes=600, switch_episodes=600),
        # CleanRL dqn_atari settings (10M steps, buffer 1M, learning starts 80k, target every ~1k, epsilon
        # 1 -> 0.01 over 1M, Adam 1e-4) at its replay ratio of 8 sampled transitions per environment step, but
        # as fewer, larger updates: 64 environments and one batch of 512 per vector step
        teacher=TeacherScale(env_id="ALE/Breakout-v5", seeds=1, steps=10_000_000, num_envs=64, network="nature",
                             buffer_size=1_000_000, batch_size=512, train_every=1, learning_starts=80_000,
                             target_every=1_024, eps_end=0.01, eps_decay_steps=1_000_000, lr=1e-4, adam_eps=1e-8,
                             segment_steps=204_800, eval_episodes=10),
        student=StudentScale(seeds=5, updates=30_000, batch_size=256, n_layer=4, n_head=4, n_embd=64,
                             eval_episodes=20, icl_episodes=1_000, game_updates=20_000, game_context_steps=128,
                             game_eval_episodes=10, bf16=True),
        incontext=InContextScale(regression_seeds=10, regression_steps=10_000, regression_batch=2_048,
                                 regression_tasks=10_000, max_layers=4, probe_windows=8),
        beyond=BeyondScale(long_factor=5, game_context_steps=512, game_envs=64),
        transfer=TransferScale(room_permutations=10, game_envs=64),
    ),
}


class UnknownScaleError(ValueError):
    """Raised for a scale name that is not one of the presets."""


def get_scale(name: str | None = None) -> Scale:
    """Return the preset called ``name``, or the one ``IMITLIB_SCALE`` selects (default ``lab``)."""
    chosen = name if name is not None else os.environ.get(ENV_VAR, DEFAULT)
    key = chosen.strip().lower()
    if key not in PRESETS:
        valid = ", ".join(PRESETS)
        raise UnknownScaleError(
            f"unknown scale {chosen!r}: valid scales are {valid}. "
            f"Set {ENV_VAR} to one of them (e.g. `export {ENV_VAR}=ci`)."
        )
    return PRESETS[key]
