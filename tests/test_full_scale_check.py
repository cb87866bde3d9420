"""scripts/full_scale_check.sh, the `full` scale end to end, at tiny step counts on this CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_full_scale_check_runs_end_to_end_and_reports_every_stage(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(ROOT / "scripts" / "full_scale_check.sh"), str(tmp_path), "--tiny"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == report  # the last line is the same JSON
    for preset in ("throughput_full_preset", "throughput_cleanrl"):
        assert report[preset]["env_steps_per_s"] > 0 and report[preset]["updates"] > 0
    assert report["throughput_cleanrl"]["num_envs"] == 1 and report["throughput_cleanrl"]["train_every"] == 4
    assert report["teacher"]["steps"] > 0 and report["teacher"]["eval_returns"]
    assert report["student"]["updates"] == 10
    for game in ("student_on_space_invaders", "student_on_breakout"):  # each game plays whole episodes
        assert report[game]["episodes"] >= 1 and report[game]["mean_return"] >= 0 and report[game]["steps_per_env"] > 0
        assert report[game]["random_mean_return"] >= 0
    assert (tmp_path / "histories" / "expert" / "manifest.json").exists() and (tmp_path / "curves.npz").exists()
