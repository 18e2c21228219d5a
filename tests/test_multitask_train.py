"""``rewardlab train task=multi/mt10 algo=sac algo.policy=moe`` end to end on CPU at a tiny
budget (the benchmark's own reward, a 20-step horizon): per-task success in ``metrics.csv``,
the version's and the run's summaries and ``report.md``, router statistics in ``moe.csv`` and
TensorBoard's ``moe/...``, and a ``kill -9`` resumed from the newest checkpoint.

Behavioural only: the test waits for files to appear, never for a time to pass."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.test_interruptions import RL, resume, rows, wait_for

MT10 = [
    "task=multi/mt10", "task.horizon=20", "reward_file=env", "algo=sac", "algo.policy=moe",
    "moe.router=sigmoid", "moe.experts=4", "moe.k=2", "moe.shared=1", "moe.hidden=32",
    "algo.kwargs.policy_kwargs.net_arch=[32,32]", "algo.kwargs.learning_starts=100",
    "algo.kwargs.batch_size=64", "algo.kwargs.buffer_size=5000", "train.n_envs=10",
    "train.eval_freq=200", "train.eval_episodes=1", "train.checkpoint_freq=200",
    "train.checkpoint_minutes=0", "train.video_episodes=0", "train.progress_bar=false",
    "train.stop_at_success=0",
]  # fmt: skip


# Slow: an MT10 training killed and resumed. In the default run: test_multitask.py,
# test_moe_policies.py, test_interruptions.py (kill -9 and resume).
@pytest.mark.slow
def test_mt10_moe_sac_records_per_task_success_and_routers_and_resumes_after_kill_9(
    tmp_path: Path,
) -> None:
    import subprocess

    proc = subprocess.Popen(
        [*RL, "train", *MT10, "train.total_timesteps=200000", f"runs_dir={tmp_path / 'runs'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def checkpoint() -> Path | None:
        return next(
            (
                p
                for p in (tmp_path / "runs").rglob("model_*_steps.json")
                if json.loads(p.read_text())["steps"] >= 400
            ),
            None,
        )

    info_file = wait_for(proc, checkpoint, "a checkpoint at 400 steps")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    v0 = info_file.parents[1]
    run_dir = v0.parents[1]
    newest = max(int(p.stem.split("_")[1]) for p in (v0 / "checkpoints").glob("model_*_steps.json"))
    assert (
        json.loads((run_dir / "summary.json").read_text())["status"] == "training"
    )  # killed: no word said

    total = newest + 200
    said = resume(run_dir, total)
    assert f"resuming from the checkpoint at step {newest:,}" in said
    assert "MoE layers actor, qf0, qf1 (sigmoid x4 mlp)" in said  # parameter counts are printed
    members = [f"metaworld/{m}" for m in ("reach", "push", "pick_place", "door_open", "drawer_open", "drawer_close",
                                           "button_press_topdown", "peg_insert_side", "window_open", "window_close")]  # fmt: skip
    metrics = rows(v0 / "metrics.csv")
    steps = [int(r["timesteps"]) for r in metrics]
    assert steps == sorted(set(steps)) and steps[-1] >= total, steps
    for r in metrics:  # the mean is the mean of the members' own rates
        rates = [float(r[f"success/{m}"]) for m in members]
        assert abs(float(r["success_rate"]) - sum(rates) / len(rates)) < 1e-9
    routers = rows(v0 / "moe.csv")
    assert routers and [int(r["timesteps"]) for r in routers] == sorted(
        int(r["timesteps"]) for r in routers
    )
    recorded = 0
    for r in routers:
        for layer in ("actor", "qf0", "qf1"):
            if not r.get(f"moe/{layer}/active"):  # no forward pass of this layer in that window
                continue
            recorded += 1
            load = [float(r[f"moe/{layer}/load/{e}"]) for e in range(4)]
            assert abs(sum(load) - 1) < 1e-4 and float(r[f"moe/{layer}/active"]) == 2  # top-2 of 4
    assert recorded >= 3
    tb = rows(v0 / "tb" / "progress.csv")
    assert any(r.get("moe/actor/entropy") for r in tb) and any(
        r.get("eval/success/metaworld/push") for r in tb
    )

    version = json.loads((v0 / "summary.json").read_text())
    assert version["status"] == "done" and set(version["success_per_task"]) == set(members)
    per_task = version["final_eval"]["per_task"]
    assert all(len(per_task[m]["interval"]) == 2 and per_task[m]["episodes"] == 1 for m in members)
    assert (
        version["moe"]["parameters"]["total"] > 0 and "moe/qf1/balance" in version["moe"]["routers"]
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and set(summary["versions"][0]["success_per_task"]) == set(
        members
    )
    report = (run_dir / "report.md").read_text()
    assert "Success per task" in report and "| metaworld/window_close |" in report
    assert "Router statistics" in report and "| qf0 |" in report
