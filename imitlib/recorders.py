"""Recorders: attach to a learner and write every k-th episode it plays to a :class:`~imitlib.history.HistoryWriter`.

The learners know nothing of recording: each takes a callback (``on_episode`` for the tabular learner, a step hook
for the DQN), and the recorder turns what it is given into :class:`~imitlib.history.Episode` rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imitlib.envs.observations import encode
from imitlib.history import Episode, HistoryError, HistoryWriter
from imitlib.io import atomic_write_bytes


class TabularRecorder:
    """Attach to :func:`imitlib.tabular.q_learning` (``on_episode=recorder``) and record every k-th episode.

    Dark Room observations are stored as the cell index (one byte). ``update`` is the number of Q-updates the run
    had made before the step (one per step), ``epsilon`` the exploration rate of that episode; every episode is
    truncated at the horizon."""

    def __init__(self, writer: HistoryWriter, run_ids: Sequence[int], every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.writer, self.every = writer, every
        self.run_ids = np.asarray(run_ids, dtype=np.int64)

    def __call__(self, batch: Any) -> None:  # batch: imitlib.tabular.EpisodeBatch
        if batch.episode % self.every:
            return
        if batch.observations.dtype != np.uint8:
            raise ValueError(f"TabularRecorder stores a cell in one byte: rooms of up to 256 cells, got cells as "
                             f"{batch.observations.dtype}")
        b, h = batch.actions.shape
        truncated = np.zeros((b, h), bool)
        truncated[:, -1] = True
        fields = {"obs": batch.observations[..., None], "action": batch.actions, "reward": batch.rewards,
                  "terminated": np.zeros((b, h), bool), "truncated": truncated,
                  "update": np.broadcast_to(batch.episode * h + np.arange(h), (b, h)),
                  "epsilon": np.full((b, h), batch.epsilon, np.float32)}
        self.writer.add_block(self.run_ids, batch.episode, fields)


class DQNRecorder:
    """Attach to :func:`imitlib.dqn.train` (``Hooks(on_step=recorder.on_step)``): record every k-th episode of
    every seed. MinAtar frames are bit-packed; ALE observations keep only their newest frame (stacks are
    rebuilt from consecutive frames). Episodes cut by a segment boundary are recorded as truncated."""

    def __init__(self, writer: HistoryWriter, run_ids: Sequence[int], every: int = 1) -> None:
        self.writer, self.run_ids, self.every = writer, list(run_ids), every
        self._open: dict[tuple[int, int], list[tuple]] = {}
        self._count: dict[int, int] = {}

    def hooks(self, state_dir: Path | None = None) -> Any:
        """The training loop's hooks (``imitlib.dqn.Hooks``). With a ``state_dir`` the recording resumes with its
        run: at each segment's end, before the checkpoint, the writer is flushed and the recorder's counts saved
        beside the number of chunks; a resumed run rewinds the history to the checkpoint's segment."""
        from imitlib.dqn import Hooks

        if state_dir is None:
            return Hooks(on_step=self.on_step)
        return Hooks(on_step=self.on_step, on_segment=lambda run: self._save(state_dir, run.state.segment),
                     on_resume=lambda run: self._restore(state_dir, run.state.segment))

    def _save(self, state_dir: Path, segment: int) -> None:
        if self._open:  # a segment's last step cuts every episode
            raise RuntimeError(f"episodes still open at the end of segment {segment}: {sorted(self._open)}")
        self.writer.flush()
        state = {"chunks": len(self.writer.manifest["chunks"]), "counts": {str(s): c for s, c in self._count.items()}}
        state_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(state).encode()
        atomic_write_bytes(state_dir / f"segment-{segment:05d}.json", lambda f: f.write(text))

    def _restore(self, state_dir: Path, segment: int) -> None:
        path = state_dir / f"segment-{segment:05d}.json"
        if not path.exists():
            raise HistoryError(f"{path} is missing, so the recording cannot resume from its checkpoint: delete "
                               f"{state_dir.parent} to record anew")
        state = json.loads(path.read_text())
        self.writer.rewind(state["chunks"])
        self._open.clear()
        self._count = {int(s): c for s, c in state["counts"].items()}

    def on_step(self, step: Any) -> None:  # step: imitlib.dqn.StepInfo
        n_seeds, n_envs = step.actions.shape
        frames = encode(step.obs.reshape(n_seeds * n_envs, *step.obs.shape[2:])).reshape(n_seeds, n_envs, -1)
        for s in range(n_seeds):
            for e in range(n_envs):
                rows = self._open.setdefault((s, e), [])
                rows.append((frames[s, e], step.actions[s, e], step.rewards[s, e], step.terminated[s, e],
                             step.truncated[s, e], step.updates, step.epsilon))
                if step.terminated[s, e] or step.truncated[s, e]:
                    self._finish(s, e)

    def _finish(self, s: int, e: int) -> None:
        rows = self._open.pop((s, e))
        index = self._count.get(s, 0)
        self._count[s] = index + 1
        if index % self.every:
            return
        cols = list(zip(*rows, strict=True))
        self.writer.add(Episode(
            run=self.run_ids[s], episode=index, obs=np.stack(cols[0]).astype(np.uint8), action=np.array(cols[1]),
            reward=np.array(cols[2], np.float32), terminated=np.array(cols[3]), truncated=np.array(cols[4]),
            update=np.array(cols[5]), epsilon=np.array(cols[6], np.float32),
        ))
