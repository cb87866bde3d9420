"""DQN checkpoints: everything that determines a run's future, written atomically, so a resumed run continues
exactly as the uninterrupted one would have; and one seed's trained network read back for rollouts.

A checkpoint holds the stacked online and target weights, the optimiser state, the replay buffer and, in its JSON
metadata, the config, seeds, game spec and :class:`~imitlib.dqn.RunState` (random-stream states included). One
written for another run (game shapes, seeds or settings) is refused, naming what differs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from imitlib.envs.games import GameSpec
from imitlib.io import CheckpointMismatchError, read_checkpoint, save_checkpoint
from imitlib.qnets import StackedNet, make_network

if TYPE_CHECKING:
    from imitlib.dqn import DQNConfig, Learner




def _meta(cfg: DQNConfig, seeds: tuple[int, ...], spec: GameSpec) -> dict[str, Any]:
    return {"config": asdict(cfg), "seeds": list(seeds), "spec": asdict(spec)}


def save_checkpoint_of(path: Path, learner: Learner) -> None:
    """Write the whole run state atomically (see :mod:`imitlib.io`)."""
    q = learner.q
    state_dicts = {
        "params": {k: v.detach().cpu() for k, v in q.online.state_dict().items()},
        "target": {k: v.cpu() for k, v in q.target.state_dict().items()},
        "optim": learner.optim.state_dict(),
        "buffer": learner.buffer.state(),
    }
    save_checkpoint(path, state_dicts, {**_meta(learner.cfg, learner.seeds, learner.spec),
                                        "state": asdict(learner.state)})


def _check_compatible(path: Path, meta: dict[str, Any], cfg: DQNConfig, seeds: tuple[int, ...],
                      spec: GameSpec) -> None:
    """Refuse a checkpoint whose game, network or seeds differ, saying exactly what differs."""
    want = _meta(cfg, seeds, spec)
    diffs = []
    for key in ("obs_shape", "n_actions"):
        have = tuple(meta["spec"]["frame_shape"]) if key == "obs_shape" else meta["spec"]["n_actions"]
        expected = spec.frame_shape if key == "obs_shape" else spec.n_actions
        if key == "obs_shape" and meta["spec"]["stack"] != spec.stack:
            diffs.append(f"frame stack {meta['spec']['stack']} vs {spec.stack}")
        if have != expected:
            diffs.append(f"{key.replace('_', ' ')} {have} in the checkpoint vs {expected} now")
    if meta["seeds"] != want["seeds"]:
        diffs.append(f"seeds {meta['seeds']} vs {list(seeds)}")
    changed = [k for k, v in want["config"].items() if k != "steps" and meta["config"].get(k) != v]
    diffs += [f"config {k}: {meta['config'].get(k)!r} vs {want['config'][k]!r}" for k in changed]
    if diffs:
        raise CheckpointMismatchError(f"{path} was written for a different run: " + "; ".join(diffs)
                                      + ". Use another run directory, or the original settings.")


def load_checkpoint(path: Path, learner: Learner) -> None:
    """Restore a learner from its checkpoint (refused if written for another run), streams included."""
    from imitlib.dqn import RunState

    blob = read_checkpoint(path)
    _check_compatible(path, blob["meta"], learner.cfg, learner.seeds, learner.spec)
    learner.q.online.load_state_dict(blob["params"])
    learner.q.target.load_state_dict(blob["target"])
    learner.optim.load_state_dict(blob["optim"])
    learner.buffer.load_state(blob["buffer"])
    st = blob["meta"]["state"]
    learner.state = RunState(
        env_steps=st["env_steps"], updates=st["updates"], segment=st["segment"], wall_seconds=st["wall_seconds"],
        episodes=[[tuple(x) for x in eps] for eps in st["episodes"]],
        evals=[(step, r) for step, r in st["evals"]], losses=[tuple(x) for x in st["losses"]],
        rng_states=st["rng_states"],
    )
    if learner.state.rng_states:  # written at every segment's end
        for rng, saved in zip(learner.act_rngs + learner.sample_rngs, learner.state.rng_states, strict=True):
            rng.bit_generator.state = saved


def load_q_network(path: str | Path, spec: GameSpec, seed_index: int = 0) -> nn.Module:
    """One seed's trained Q-network from a checkpoint, refused if it was trained on other shapes."""
    blob = read_checkpoint(path)
    meta = blob["meta"]
    have_shape, have_actions = tuple(meta["spec"]["frame_shape"]), meta["spec"]["n_actions"]
    if (have_shape, meta["spec"]["stack"], have_actions) != (spec.frame_shape, spec.stack, spec.n_actions):
        raise CheckpointMismatchError(
            f"{path}: trained on frames {have_shape} x{meta['spec']['stack']} with {have_actions} actions "
            f"({meta['spec']['env_id']}), but {spec.env_id} has frames {spec.frame_shape} x{spec.stack} with "
            f"{spec.n_actions} actions; for a transplant use full_action_space / channels so the shapes match"
        )
    from imitlib.dqn import DQNConfig

    cfg = DQNConfig(**meta["config"])
    stacked = StackedNet(lambda: make_network(cfg, spec), meta["seeds"])
    stacked.load_state_dict(blob["params"])
    return stacked.single(seed_index)
