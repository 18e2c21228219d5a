"""Interrupted trainings lose little and say the truth: SIGTERM is handled like Ctrl-C
(checkpoint, status ``stopped``), a ``kill -9`` resumes from the newest checkpoint that
really exists (step 0 when there is none, and it says so), and the step count, SB3's
iteration counter and the training wall time continue across the resume.

Behavioural only: the tests wait for files to appear, never for a time to pass."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from guards import HANG_S

RL = [sys.executable, "-m", "rewardlab.cli"]
BASE = [
    "task=mujoco/hopper_forward", "reward_file=env", "train.n_envs=2", "train.eval_freq=1024",
    "train.eval_episodes=1", "train.video_episodes=0", "train.progress_bar=false", "train.stop_at_success=0",
    "algo.kwargs.n_steps=256", "check.steps=30",
]  # fmt: skip


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def start(tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*RL, "train", *BASE, *extra, f"runs_dir={tmp_path / 'runs'}"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for(proc: subprocess.Popen[bytes], found: object, what: str, limit_s: float = 600) -> Path:
    """Poll until ``found()`` returns a path (the process must still be running)."""
    deadline = time.monotonic() + limit_s  # a guard against a hang, not a verdict on speed
    while time.monotonic() < deadline:
        path = found()  # type: ignore[operator]
        if path is not None:
            return path  # type: ignore[no-any-return]
        assert proc.poll() is None, f"finished before {what}:\n" + (
            proc.stdout.read().decode() if proc.stdout else ""
        )
        time.sleep(0.2)
    raise AssertionError(f"no {what}")


def evaluated(tmp_path: Path, at_least: int) -> object:
    def find() -> Path | None:
        for path in (tmp_path / "runs").rglob("metrics.csv"):
            if any(int(r["timesteps"]) >= at_least for r in rows(path)):
                return path.parents[2]
        return None

    return find


def resume(run_dir: Path, total: int) -> str:
    res = subprocess.run([*RL, "train", f"run={run_dir}", f"train.total_timesteps={total}"],
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def assert_continuous(v0: Path, total: int) -> None:
    steps = [int(r["timesteps"]) for r in rows(v0 / "metrics.csv")]
    assert steps == sorted(set(steps)) and steps[-1] >= total, steps
    walls = [float(r["wall_s"]) for r in rows(v0 / "metrics.csv")]
    assert walls == sorted(walls), f"wall_s restarted: {walls}"
    progress = rows(v0 / "tb" / "progress.csv")
    iterations = [int(r["time/iterations"]) for r in progress]
    assert iterations == list(range(1, len(iterations) + 1)), (
        f"SB3's iteration counter restarted: {iterations}"
    )
    elapsed = [int(r["time/time_elapsed"]) for r in progress]
    assert elapsed == sorted(elapsed), elapsed


def test_sigterm_stops_like_ctrl_c_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    proc = start(tmp_path, "train.total_timesteps=200000")
    run_dir = wait_for(proc, evaluated(tmp_path, 1024), "first evaluation")
    proc.send_signal(signal.SIGTERM)  # what `timeout`, SLURM and Ray send
    out = proc.communicate(timeout=HANG_S)[0].decode()
    assert proc.returncode == 143, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and f"rewardlab train run={run_dir}" in summary["message"]
    v0 = run_dir / "rewards" / "v0"
    assert json.loads((v0 / "summary.json").read_text())["status"] == "stopped"
    (info,) = [json.loads(p.read_text()) for p in (v0 / "checkpoints").glob("model_*_steps.json")]
    stopped_at = info["steps"]
    assert (
        info["reason"] == "stopped"
        and stopped_at >= 1024
        and f"stopped at step {stopped_at:,}" in out
    )

    total = stopped_at + 1024
    said = resume(run_dir, total)
    assert f"resuming from the checkpoint at step {stopped_at:,} of {total:,}" in said
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "done"
    assert_continuous(v0, total)


def test_kill_9_resumes_from_the_checkpoint_it_has_or_says_it_starts_over(tmp_path: Path) -> None:
    # default checkpoint_freq (50,000) and no time-driven checkpoints: nothing to resume from
    proc = start(tmp_path, "train.total_timesteps=200000", "train.checkpoint_minutes=0")
    run_dir = wait_for(proc, evaluated(tmp_path, 2048), "an evaluation at 2,048 steps")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    v0 = run_dir / "rewards" / "v0"
    assert not list((v0 / "checkpoints").glob("model_*_steps.zip"))
    said = resume(run_dir, 2048)
    assert (
        "no checkpoint: training starts at step 0 of 2,048" in said
        and "resuming from the checkpoint" not in said
    )
    assert_continuous(v0, 2048)


def test_kill_9_after_a_time_driven_checkpoint_resumes_from_it(tmp_path: Path) -> None:
    proc = start(tmp_path, "train.total_timesteps=200000", "train.checkpoint_minutes=0.001")

    def timed_checkpoint() -> Path | None:
        for path in (tmp_path / "runs").rglob("model_*_steps.json"):
            info = json.loads(path.read_text())
            if info["reason"] == "time" and info["steps"] >= 1024:
                return path
        return None

    info_file = wait_for(proc, timed_checkpoint, "a time-driven checkpoint")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    v0 = info_file.parents[1]
    newest = max(int(p.stem.split("_")[1]) for p in (v0 / "checkpoints").glob("model_*_steps.json"))
    assert len(list((v0 / "checkpoints").glob("model_*_steps.zip"))) <= 2, (
        "older time-driven checkpoints are pruned"
    )
    said = resume(v0.parents[1], newest + 1024)
    assert f"resuming from the checkpoint at step {newest:,}" in said
    assert_continuous(v0, newest + 1024)
