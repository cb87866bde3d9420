"""Recording and reading learning histories: overhead, size, read speed, and the full Dark Room dataset.

* ``record_overhead``: batched Q-learning on all 81 goals with the recorder attached vs without, same run
  (fraction of extra time: interquartile mean over repeats that time both back to back, with its 95% bootstrap
  interval in ``record_overhead_ci``; ``record_overhead_median`` is the median, as reported before;
  ``record_overhead_best`` compares the fastest of each). The interval treats repeats as independent; this VM's
  speed drifts, so read it as a lower bound on the uncertainty. This learner runs millions of steps per second, so
  it is the hard case. (Format 5 chose simplicity over this overhead: it copies every field per step.)
  ``record_overhead_dqn`` is the median of 5 paired repeats for the MinAtar DQN teacher
  (5,000 steps, 2 seeds).
* ``bytes_per_step``: bytes on disk per recorded step (all fields, manifest included).
* ``reader_steps_per_s``: steps per second delivered as 4-episode context windows, sampled uniformly.
* ``darkroom_record_s``: wall time to record the lab-scale Dark Room dataset (81 goals, learning + expert).

    python benchmarks/history_io.py      # last line: one JSON object
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from imitlib import experiments, stats
from imitlib.history import HistoryReader, HistoryWriter
from imitlib.recorders import DQNRecorder, TabularRecorder
from imitlib.scale import get_scale
from imitlib.tabular import q_learning


def paired_overhead(plain, recorded, repeats: int) -> tuple[float, float, list[float]]:
    """Extra time of ``recorded`` over ``plain``, each repeat timing both back to back: the median of the paired
    ratios, the ratio of the two fastest times, and every paired ratio. This VM's speed drifts by tens of percent
    between seconds, so paired ratios are steadier than a ratio of minimums. ``recorded`` may return its own
    timing (to leave out setup)."""
    pairs = []
    for _ in range(repeats):
        times = []
        for fn in (plain, recorded):
            start = time.perf_counter()
            own = fn()
            times.append(own if isinstance(own, float) else time.perf_counter() - start)
        pairs.append(times)
    t = np.array(pairs)
    ratios = t[:, 1] / t[:, 0] - 1
    return float(np.median(ratios)), float(t[:, 1].min() / t[:, 0].min() - 1), ratios.tolist()


def dqn_record_overhead(tmp: Path) -> float:
    """Extra time of DQN training with a DQNRecorder (every episode) attached."""
    from imitlib.dqn import DQNConfig, Hooks, train

    cfg = DQNConfig(steps=5_000, segment_steps=5_000, learning_starts=1_000, train_every=4, eval_episodes=1)

    def recorded() -> None:
        with HistoryWriter(tmp / "dqn", obs_kind="minatar", obs_shape=(10, 10, 10), n_actions=6,
                           mode="overwrite") as writer:
            train(cfg, [0, 1], hooks=Hooks(on_step=DQNRecorder(writer, [0, 1]).on_step), progress=False)

    return paired_overhead(lambda: train(cfg, [0, 1], progress=False), recorded, repeats=5)[0]


def main() -> None:
    cfg = experiments.darkroom_histories_config(get_scale("lab"))
    qcfg = experiments.history_sources(cfg.episodes)[cfg.source]
    goals = np.repeat(np.arange(81), cfg.runs_per_goal)
    seeds, runs = np.arange(goals.size), np.arange(goals.size)
    with tempfile.TemporaryDirectory() as tmp:
        def recorded() -> float:  # into a fresh folder: deleting the last repeat's output is not recording
            shutil.rmtree(Path(tmp) / "h", ignore_errors=True)
            start = time.perf_counter()
            with HistoryWriter(Path(tmp) / "h", obs_kind="darkroom", obs_shape=(1,), n_actions=5) as writer:
                q_learning(qcfg, goals, seeds, cfg.episodes, on_episode=TabularRecorder(writer, runs))
            return time.perf_counter() - start

        median, overhead_best, ratios = paired_overhead(lambda: q_learning(qcfg, goals, seeds, cfg.episodes),
                                                        recorded, repeats=7)
        overhead = stats.bootstrap_ci(np.array(ratios), statistic="iqm")
        reader = HistoryReader(Path(tmp) / "h")
        size = sum(f.stat().st_size for f in (Path(tmp) / "h").rglob("*") if f.is_file())
        bytes_per_step = size / reader.n_steps
        n_windows, k = 20_000, 4
        start = time.perf_counter()
        steps = sum(len(w["action"]) for w in reader.windows(k=k, n=n_windows, seed=0))
        reader_rate = steps / (time.perf_counter() - start)
        start = time.perf_counter()
        experiments.record_darkroom(cfg, Path(tmp) / "dataset")
        record_s = time.perf_counter() - start
        total = HistoryReader(Path(tmp) / "dataset" / "learning").n_steps
        dqn_overhead = dqn_record_overhead(Path(tmp))
    print(f"Q-learning on {goals.size} runs x {cfg.episodes} episodes, recording every step: "
          f"{100 * float(overhead.estimate):.1f}% overhead (IQM of {len(ratios)} paired repeats, 95% CI "
          f"{100 * float(overhead.low):.1f}-{100 * float(overhead.high):.1f}%; median {100 * median:.1f}%; "
          f"{100 * overhead_best:.1f}% fastest vs fastest); paired: {np.round(ratios, 4).tolist()}")
    print(f"{bytes_per_step:.1f} bytes per recorded step; reader: {reader_rate:,.0f} steps/s in {k}-episode windows")
    print(f"lab Dark Room dataset ({total:,} learning steps + expert episodes, 81 goals): {record_s:.1f} s")
    print(f"DQN teacher (MinAtar Breakout): {100 * dqn_overhead:.1f}% recording overhead")
    print(json.dumps({"record_overhead": round(float(overhead.estimate), 4),
                      "record_overhead_ci": [round(float(overhead.low), 4), round(float(overhead.high), 4)],
                      "record_overhead_median": round(median, 4), "record_overhead_best": round(overhead_best, 4),
                      "record_overhead_dqn": round(dqn_overhead, 4),
                      "bytes_per_step": round(bytes_per_step, 2),
                      "reader_steps_per_s": round(reader_rate), "darkroom_record_s": round(record_s, 2),
                      "recorded_steps": total}))


if __name__ == "__main__":
    main()
