"""Success follows the instruction or says it doesn't: ``task.success=<name or expression>``,
the notice when the instruction differs, refusals through the CLI, and reports that lead with
comparable numbers (task success with its interval, the benchmark's return)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewardlab.generators.offline.grammar import success_notice
from rewardlab.report import evaluation_line, success_with_interval, write_run_report
from rewardlab.tasks import get_task
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import SuccessChoiceError, resolve_success
from rewardlab.wrappers import make_env

RL = [sys.executable, "-m", "rewardlab.cli"]
TINY = [
    "train.total_timesteps=512", "train.n_envs=1", "train.eval_freq=512", "train.eval_episodes=2",
    "train.video_episodes=0", "train.progress_bar=false", "train.checkpoint_freq=512",
    "algo.kwargs.n_steps=256", "check.steps=20", "gate.on_train=off", "task.horizon=50",
]  # fmt: skip


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RL, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )


def test_task_success_picks_a_registered_metric_or_an_expression() -> None:
    hopper = get_task("mujoco/hopper_forward")
    assert resolve_success(hopper, "hopper_backward") == get_task("mujoco/hopper_backward").success
    assert resolve_success(hopper, "backflip") == get_task("mujoco/hopper_backflip").success
    with pytest.raises(SuccessChoiceError, match="did you mean backward"):
        resolve_success(hopper, "bakward")
    with pytest.raises(SuccessChoiceError, match="self.hopper.nope"):
        resolve_success(hopper, "self.hopper.nope > 1")
    with pytest.raises(SuccessChoiceError, match="__import__"):
        resolve_success(hopper, "__import__('os').system('true') == 0")
    with pytest.raises(SuccessChoiceError, match="ant_lie_down"):
        resolve_success(hopper, "ant_lie_down")  # another robot's metric
    spec = resolve_success(hopper, "self.hopper.top.position_x < -1.0")
    task = TaskSpec.from_dict(
        {**dataclasses.asdict(hopper), "success": "self.hopper.top.position_x < -1.0"}
    )
    assert task.success == spec and spec.metric == "expression"


def test_an_expression_metric_judges_the_simulator_state() -> None:
    task = dataclasses.replace(
        get_task("mujoco/hopper_forward"),
        success=resolve_success(
            get_task("mujoco/hopper_forward"), "self.hopper.top.position_x < -1.0"
        ),
    )
    env = make_env(task)
    env.reset(seed=0)
    base = env.unwrapped
    _, _, _, _, info = env.step(np.zeros(3))
    assert info["success"] is False
    qpos = base.data.qpos.copy()  # type: ignore[attr-defined]
    qpos[0] = -1.5
    base.set_state(qpos, base.data.qvel.copy())  # type: ignore[attr-defined]
    _, _, _, _, info = env.step(np.zeros(3))
    assert info["success"] is True
    env.close()


def test_the_notice_says_what_the_metric_measures() -> None:
    hopper = get_task("mujoco/hopper_forward")
    back = dataclasses.replace(hopper, instruction="hop backwards slowly")
    lines = success_notice(back, back.instruction, hopper)
    assert "travel 3 m forward" in lines[0] and "task.success=backward" in lines[1]
    assert success_notice(hopper, hopper.instruction, hopper) == []
    same = dataclasses.replace(hopper, instruction="run forward quickly")
    assert success_notice(same, same.instruction, hopper) == [
        "success is judged by: travel 3 m forward (+x along hopper.top.position_x) without falling (displacement)"
    ]
    ant = get_task("mujoco/ant_forward")
    left = dataclasses.replace(ant, instruction="walk to the left")
    assert "no registered metric" in success_notice(left, left.instruction, ant)[1]


def test_report_leads_with_success_interval_and_benchmark_return(tmp_path: Path) -> None:
    assert success_with_interval(0.4, 5) == "0.40 [0.12, 0.77] (2/5)"
    final = {
        "success_rate": 0.0,
        "episodes": 20,
        "mean_env_return": 812.5,
        "mean_progress": 0.5,
        "mean_reward_return": 3000.0,
    }
    line = evaluation_line(final)
    assert line.startswith(
        "task success rate 0.00 [0.00, 0.16] (0/20 episodes); benchmark return 812.5"
    )
    assert line.index("benchmark return") < line.index("own-reward return")
    for v, rate in ((0, 0.2), (1, 0.6)):
        vdir = tmp_path / "rewards" / f"v{v}"
        vdir.mkdir(parents=True)
        (vdir / "summary.json").write_text(
            json.dumps(
                {
                    "final_eval": {
                        **final,
                        "success_rate": rate,
                        "mean_reward_return": 1000.0 * (v + 1),
                    }
                }
            )
        )
    summary = {
        "task": "mujoco/hopper_forward", "instruction": "hop", "status": "done", "generator": "offline", "algo": "ppo",
        "success_metric": {"metric": "displacement", "description": "travel 3 m forward"}, "latest_version": 1,
        "versions": [{"version": 0, "timesteps": 10}, {"version": 1, "parent": 0, "feedback": ["more speed"], "timesteps": 10}],
    }  # fmt: skip
    write_run_report(tmp_path, summary)
    report = (tmp_path / "report.md").read_text()
    assert "success judged by: travel 3 m forward (metric `displacement`)" in report
    assert "| v1 | v0 | more speed | 10 | 0.60 [0.39, 0.78] (12/20) | 812.5 | 2000.0 |" in report
    assert "own-reward return" in report and "does not" in report


@pytest.mark.slow
def test_cli_runs_with_a_chosen_metric_and_refuses_what_the_writer_cannot_write(
    tmp_path: Path,
) -> None:
    """One tiny training with task.success=backward: the CLI says what judges it, the run
    records it, the summary line leads with comparable numbers; an instruction the writer
    refuses exits 1 with the reason; a bad task.success exits 2 before any training."""
    res = run("train", "task=mujoco/hopper_forward", "instruction=hop backwards", "task.success=backward",
              *TINY, f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (
        "success is judged by: travel 3 m backward" in res.stdout
        and "chosen with task.success" in res.stdout
    )
    assert "task success rate 0.00 [0.00, 0.66] (0/2 episodes); benchmark return" in res.stdout
    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("report.md")}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["success_metric"]["params"]["distance"] == -3.0
    assert "success judged by: travel 3 m backward" in (run_dir / "report.md").read_text()
    assert "metric: displacement" in (run_dir / "config.yaml").read_text(), (
        "the resolved metric is saved for resume"
    )

    refused = run("train", "task=mujoco/hopper_forward", "instruction=do a little dance", *TINY,
                  f"runs_dir={tmp_path / 'r2'}", cwd=tmp_path)  # fmt: skip
    assert (
        refused.returncode == 1
        and "offline writer refused" in refused.stdout
        and "llm=openai" in refused.stdout
    )
    bad = run("train", "task=mujoco/hopper_forward", "task.success=self.hopper.top.nope > 1", *TINY,
              f"runs_dir={tmp_path / 'r3'}", cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "self.hopper.top.nope" in bad.stdout
    written = [p for p in (tmp_path / "r3").rglob("config.yaml") if p.parent.name != ".hydra"]
    assert not written, "no run config is written for a bad choice"
