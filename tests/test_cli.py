"""The ``rewardlab`` command end to end: tasks, check exit codes, generate (offline and an
OpenAI-compatible server on 127.0.0.1), train -> run directory -> evaluate, and resume after
a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest
from fake_llm_server import FakeLLMServer, reply
from guards import HANG_S

RL = [sys.executable, "-m", "rewardlab.cli"]
TINY = [
    "train.total_timesteps=2048", "train.n_envs=2", "train.eval_freq=1024", "train.eval_episodes=1",
    "train.video_episodes=1", "train.video_size=128", "train.progress_bar=false",
    "train.checkpoint_freq=1024", "algo.kwargs.n_steps=512", "check.steps=50",
]  # fmt: skip

GOOD = """import numpy as np

def compute_dense_reward(self, action):
    forward = self.hopper.top.velocity_x
    healthy = 1.0 if self.hopper.top.position_z > 0.8 else 0.0
    return forward + healthy - 0.001 * float(np.sum(np.square(action)))
"""


def run(
    *args: str, cwd: Path, timeout: float = HANG_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_help_and_tasks(tmp_path: Path) -> None:
    out = run("tasks", cwd=tmp_path)
    assert out.returncode == 0
    assert "mujoco/hopper_backflip" in out.stdout and "flip" in out.stdout
    assert "Make the ant lie down on the ground." in out.stdout
    assert run("--help", cwd=tmp_path).returncode == 0
    bad = run("trian", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown command" in bad.stdout


def test_check_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(GOOD)
    ok = run("check", "task=mujoco/hopper_forward", f"file={good}", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ACCEPTED" in ok.stdout

    bad = tmp_path / "bad.py"
    bad.write_text(
        GOOD.replace("import numpy as np", "import os").replace(
            "self.hopper.top.position_z", "self.hopper.tpo.position_z"
        )
    )
    rejected = run("check", "task=mujoco/hopper_forward", f"file={bad}", cwd=tmp_path)
    assert rejected.returncode == 1
    assert "REJECTED" in rejected.stdout
    assert "line 1" in rejected.stdout and "'os'" in rejected.stdout
    assert "self.hopper.tpo" in rejected.stdout

    missing = run(
        "check", "task=mujoco/hopper_forward", f"file={tmp_path / 'nope.py'}", cwd=tmp_path
    )
    assert missing.returncode == 2 and "does not exist" in missing.stdout
    assert not list(tmp_path.glob("runs")), "check must not create run directories"


def test_generate_offline_writes_checked_program(tmp_path: Path) -> None:
    out_file = tmp_path / "mine.py"
    res = run("generate", "task=mujoco/hopper_forward", "instruction=hop backward as fast as possible",
              f"file={out_file}", f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    source = out_file.read_text()
    assert "-vx" in source and "compute_dense_reward" in source
    attempts = list((tmp_path / "runs").rglob("attempt_0.json"))
    assert len(attempts) == 1
    record = json.loads(attempts[0].read_text())
    assert record["reply"]["model"] == "rewardlab-offline-v1"
    assert "hop backward as fast as possible" in record["messages"][1]["content"]


def test_generate_with_openai_compatible_server_fixes_rejected_program(tmp_path: Path) -> None:
    broken = "Here you go:\n```python\nimport os\ndef compute_dense_reward(self, action):\n    return os.getpid()\n```"
    fixed = f"Fixed:\n```python\n{GOOD}```"
    with FakeLLMServer(
        reply("I think the hopper should move."),
        reply(broken),
        reply(fixed, usage={"prompt_tokens": 900, "completion_tokens": 80, "total_tokens": 980}),
    ) as server:
        res = run(
            "generate", "task=mujoco/hopper_forward", "llm=openai", "llm.model=fake-coder",
            f"llm.base_url={server.base_url}", "llm.max_retries=0", f"runs_dir={tmp_path / 'runs'}",
            cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test-secret"},
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert server.chat_count == 3
        bodies = server.chat_bodies
    assert bodies[0]["model"] == "fake-coder"
    assert "no ```python code block" in bodies[1]["messages"][-1]["content"]
    assert "import of 'os' is not allowed" in bodies[2]["messages"][-1]["content"]
    records = sorted((tmp_path / "runs").rglob("attempt_*.json"))
    assert [json.loads(p.read_text())["index"] for p in records] == [0, 1, 2]
    last = json.loads(records[-1].read_text())
    assert last["reply"]["usage"]["total_tokens"] == 980 and last["check"]["ok"]
    assert "sk-test-secret" not in "".join(
        p.read_text() for p in (tmp_path / "runs").rglob("*") if p.is_file()
    )


def test_generate_reports_unreachable_server(tmp_path: Path) -> None:
    res = run("generate", "task=mujoco/hopper_forward", "llm=openai", "llm.base_url=http://127.0.0.1:9/v1",
              "llm.max_retries=1", "llm.backoff_s=0.01", "llm.timeout_s=2", f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 1
    assert "back-end failed" in res.stdout
    assert list((tmp_path / "runs").rglob("attempt_0.json")), "the failed call is still recorded"


def _run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("config.yaml") if p.parent.name != ".hydra"]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_train_records_everything_then_evaluate(tmp_path: Path) -> None:
    res = run(
        "train", "task=mujoco/hopper_forward", *TINY, f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir = _run_dir(tmp_path / "runs")
    for rel in ("config.yaml", ".hydra/config.yaml", "summary.json", "report.md"):
        assert (run_dir / rel).exists(), rel
    v0 = run_dir / "rewards" / "v0"
    for rel in ("reward.py", "check.json", "llm/attempt_0.json", "metrics.csv", "summary.json",
                "model.zip", "vecnormalize.pkl", "curves.png"):  # fmt: skip
        assert (v0 / rel).exists(), rel
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["timesteps"] >= 2048
    assert 0.0 <= summary["success_rate"] <= 1.0
    assert "offline synthesizer" in summary["generator"]
    assert [v["version"] for v in summary["versions"]] == [0]
    video = Path(summary["videos"][0])
    frames = iio.imread(video)
    assert frames.ndim == 4 and frames.shape[0] > 5 and frames.shape[-1] == 3
    assert list((v0 / "tb").glob("events.out.tfevents.*"))
    progress = (v0 / "tb" / "progress.csv").read_text()
    assert "reward/progress" in progress and "reward/alive" in progress

    ev = run(
        "evaluate",
        f"run={run_dir}",
        "episodes=2",
        "train.video_episodes=1",
        "train.video_size=128",
        cwd=tmp_path,
    )
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert "success rate" in ev.stdout
    evals = list((run_dir / "rewards" / "v0" / "eval").rglob("summary.json"))
    assert len(evals) == 1 and json.loads(evals[0].read_text())["episodes"] == 2


def test_train_rejects_hostile_reward_file_cleanly(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.py"
    hostile.write_text(
        "def compute_dense_reward(self, action):\n    return open('/etc/passwd').read()\n"
    )
    res = run(
        "train", f"reward_file={hostile}", *TINY, f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path
    )
    assert res.returncode == 1
    assert "'open' is not allowed" in res.stdout
    summary = json.loads((_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["status"] == "failed" and "'open' is not allowed" in summary["message"]


@pytest.mark.slow  # kill -9 and resume from the command line: tests/test_interruptions.py
def test_resume_after_killed_run(tmp_path: Path) -> None:
    args = ["train", "task=mujoco/hopper_forward", "train.total_timesteps=12288", "train.n_envs=2",
            "train.eval_freq=4096", "train.eval_episodes=1", "train.video_episodes=0",
            "train.checkpoint_freq=2048", "train.progress_bar=false", "train.stop_at_success=0",
            "algo.kwargs.n_steps=512", "check.steps=50", f"runs_dir={tmp_path / 'runs'}"]  # fmt: skip
    proc = subprocess.Popen(
        [*RL, *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 240
    run_dir = None
    while time.time() < deadline:
        ckpts = list((tmp_path / "runs").rglob("model_*_steps.zip"))
        if any(int(p.stem.split("_")[1]) >= 4096 for p in ckpts):
            run_dir = ckpts[0].parents[3]
            break
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        time.sleep(0.5)
    assert run_dir is not None, "no checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    v0 = run_dir / "rewards" / "v0"
    assert not (v0 / "model.zip").exists(), "killed before the end"
    killed_at = max(
        int(p.stem.split("_")[1]) for p in (v0 / "checkpoints").glob("model_*_steps.zip")
    )

    res = run("train", f"run={run_dir}", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "resuming" in res.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["timesteps"] >= 12288
    steps = [int(line.split(",")[0]) for line in (v0 / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and steps[-1] >= 12288 and any(s > killed_at for s in steps)
    assert len(list((tmp_path / "runs").rglob("config.yaml"))) == 2, (
        "resume reused the run directory"
    )


def test_multirun_sweep_makes_one_run_per_job(tmp_path: Path) -> None:
    # one PPO update per job: the sweep is what is tested
    sweep = {"train.total_timesteps": "512", "train.eval_freq": "512", "train.checkpoint_freq": "512",
             "algo.kwargs.n_steps": "256", "train.video_episodes": "0"}  # fmt: skip
    tiny = [a for a in TINY if a.split("=")[0] not in sweep]
    tiny += [f"{k}={v}" for k, v in sweep.items()]
    res = run("train", "-m", "task=mujoco/hopper_forward", "train.seed=0,1", *tiny,
              f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summaries = sorted(
        p
        for p in (tmp_path / "runs" / "multirun").rglob("summary.json")
        if p.parent.parent.name != "rewards"
    )
    assert len(summaries) == 2
    seeds = {
        json.loads(
            (p.parent / ".hydra" / "config.yaml").read_text().split("seed: ")[1].split("\n")[0]
        )
        for p in summaries
    }
    assert seeds == {0, 1}


def test_expert_reward_aliases_select_the_benchmark_reward(tmp_path: Path) -> None:
    from dataclasses import asdict

    from rewardlab.config import to_schema
    from rewardlab.pipeline import describe_generator, initial_reward
    from rewardlab.tasks import get_task

    task = get_task("metaworld/drawer_close")
    for value in ("env", "expert"):
        cfg = to_schema({"task": asdict(task), "reward_file": value})
        assert initial_reward(cfg, task, tmp_path / value) == (None, "")
        assert "benchmark's own reward" in describe_generator(cfg)


def test_missing_benchmark_package_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    """Regression: without mani-skill, ``train task=maniskill/...`` ended in a Hydra traceback."""
    code = (
        "import sys\n"
        "sys.modules['mani_skill'] = None; sys.modules['sapien'] = None  # as if not installed\n"
        "from rewardlab.cli import main\n"
        f"sys.exit(main(['train', 'task=maniskill/pick_cube', 'runs_dir={tmp_path / 'runs'}']))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=HANG_S
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert (
        "pip install 'rewardlab[maniskill]'" in res.stdout
        and "Traceback" not in res.stdout + res.stderr
    )
