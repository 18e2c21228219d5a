"""The worked example ``examples/custom_task`` (a gymnasium env rewardlab does not ship:
InvertedPendulum-v5, with its card, success metric and instruction), run from a copy outside
the package: listed, trained and reviewed through the command line, and used from Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rewardlab

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_task"
TASK = "mujoco/pendulum_balance"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    folder = tmp_path / "custom_task"
    shutil.copytree(EXAMPLE, folder)
    assert not folder.resolve().is_relative_to(Path(rewardlab.__file__).resolve().parents[1])
    return folder


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REWARDLAB_TASK_PATH"}
    return subprocess.run([sys.executable, "-m", "rewardlab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=env)  # fmt: skip


def test_custom_task_is_listed_trained_and_reviewed_from_the_command_line(example: Path) -> None:
    listed = cli("tasks", f"task_path={example / 'tasks'}", cwd=example)
    assert listed.returncode == 0 and TASK in listed.stdout and "balance:Balance" in listed.stdout
    assert TASK not in cli("tasks", cwd=example).stdout, "only on the task path"

    res = cli(
        "train", f"task={TASK}", f"task_path={example / 'tasks'}", f"reward_file={example / 'reward.py'}",
        "train.total_timesteps=1024", "train.n_envs=2", "train.eval_freq=512", "train.eval_episodes=2",
        "train.video_episodes=1", "train.video_size=96", "train.progress_bar=false", "algo.kwargs.n_steps=256",
        "check.steps=30", "gate.on_train=off", f"runs_dir={example / 'runs'}", cwd=example,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (run_dir,) = [
        p.parent for p in (example / "runs").rglob("config.yaml") if p.parent.name != ".hydra"
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (
        summary["status"] == "done"
        and summary["task"] == TASK
        and 0.0 <= summary["success_rate"] <= 1.0
    )
    metrics = (run_dir / "rewards" / "v0" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("timesteps,success_rate,mean_progress") and len(metrics) >= 3
    assert "upright" in (run_dir / "rewards" / "v0" / "tb" / "progress.csv").read_text()

    # the saved config names the task folder: evaluating later needs nothing else
    ev = cli("evaluate", f"run={run_dir}", "episodes=1", "train.video_episodes=0", cwd=example)
    assert ev.returncode == 0 and f"{TASK} v0: task success rate" in ev.stdout, (
        ev.stdout + ev.stderr
    )

    from rewardlab.review.app import create_app

    client = create_app(example / "runs", python="/nonexistent/python").test_client()
    index = client.get("/").get_data(as_text=True)
    assert TASK in index
    page = client.get(f"/run/{run_dir.relative_to(example / 'runs').as_posix()}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and TASK in html and "centred" in html, (
        "the run page shows the task and its reward components"
    )


def test_custom_task_from_python(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rewardlab as rl
    from rewardlab.tasks.registry import unregister_task

    monkeypatch.setenv("REWARDLAB_TASK_PATH", "")
    monkeypatch.syspath_prepend(str(example / "tasks"))
    task = rl.register_task(
        "mine/pendulum", card=str(example / "tasks" / "mujoco" / "inverted_pendulum.yaml"),
        instruction="Balance the pole.", horizon=200,
        success={"metric": "balance:Balance", "params": {"angle": "pendulum.pole.angle",
                                                         "position": "pendulum.cart.position", "steps": 50}},
    )  # fmt: skip
    try:
        assert rl.get_task("mine/pendulum").card_text().startswith("class ")
        program = rl.compile((example / "reward.py").read_text(), task)
        env = rl.make_env(task, program)
        env.reset(seed=0)
        info = env.step(env.action_space.sample() * 0)[-1]
        assert {"reward/upright", "task/progress", "success"} <= set(info)
        with pytest.raises(ValueError, match="already exists"):
            rl.register_task("mine/pendulum", card="mujoco/hopper", instruction="x")
        result = rl.train(task, program, out=tmp_path / "py_run", total_timesteps=512, n_envs=1, eval_freq=512,
                          eval_episodes=1, algo_kwargs={"n_steps": 256})  # fmt: skip
        assert result.timesteps == 512 and (tmp_path / "py_run" / "model.zip").is_file()
    finally:
        unregister_task("mine/pendulum")
