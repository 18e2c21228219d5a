"""``rewardlab search`` end to end on a real task with tiny trainings: the offline synthesizer
(inline launcher, seed sweep with baselines), an OpenAI-compatible server (reflection prompt
contents), the Hydra joblib launcher, and the reward-hacking alarm on a real training curve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_llm_server import FakeLLMServer, dynamic
from guards import HANG_S
from omegaconf import OmegaConf

from rewardlab.config import RewardLabConfig
from rewardlab.rundir import read_csv
from rewardlab.search.alarm import alarm_from_metrics
from rewardlab.search.launch import Job, launch, run_job
from rewardlab.tasks import get_task

RL = [sys.executable, "-m", "rewardlab.cli"]
# search.decision_episodes=3 (20 by default): the promotion decisions' fresh evaluations; what
# the tests check is the search's bookkeeping, not how sure its decisions are
TINY = [
    "train.n_envs=2", "algo.kwargs.n_steps=64", "train.eval_freq=256", "train.eval_episodes=1",
    "train.video_episodes=1", "train.video_size=64", "check.steps=20",
    "search.min_steps=256", "search.max_steps=512", "search.eta=2", "search.decision_episodes=3",
]  # fmt: skip


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RL, *args], cwd=cwd, capture_output=True, text=True, timeout=HANG_S,
                          env={**os.environ, **(env or {})})  # fmt: skip


def search_dir(root: Path) -> Path:
    (found,) = [p.parent for p in root.rglob("search.json")]
    return found


def last_steps(directory: Path) -> int:
    return int(read_csv(directory / "metrics.csv")[-1]["timesteps"])


def test_offline_search_end_to_end(tmp_path: Path) -> None:
    res = run("search", "task=mujoco/hopper_forward", "search.candidates=3", "search.iterations=2", *TINY,
              "search.launcher=inline", "search.seeds=[0]", "search.baselines=true", f"runs_dir={tmp_path / 'runs'}",
              "search.promotion=rank", cwd=tmp_path)  # fmt: skip  # the rank rule: exactly one survivor per rung
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    root = search_dir(tmp_path / "runs")
    record = json.loads((root / "search.json").read_text())
    assert record["status"] == "done" and record["settings"]["rung_budgets"] == [256, 512]
    assert record["settings"]["launcher"] == "inline" and len(record["iterations"]) == 2
    sources: dict[str, str] = {}
    for it in record["iterations"]:
        cands = it["candidates"]
        assert [c["index"] for c in cands] == [0, 1, 2]
        assert [c["sample"] for c in cands] == [3 * it["index"] + k for k in range(3)]
        trained = [c for c in cands if c["verdict"] == "trained"]
        for c in cands:
            cdir = root / c["dir"]
            assert (cdir / "reward.py").exists() and (cdir / "llm" / "attempt_0.json").exists()
            sources[c["dir"]] = (cdir / "reward.py").read_text()
            if c["verdict"] == "duplicate":  # the same program is never trained twice
                assert sources[c["duplicate_of"]] == sources[c["dir"]]
        for c in trained:
            cdir = root / c["dir"]
            for rel in (
                "check.json",
                "gate.json",
                "metrics.csv",
                "tb",
                "checkpoints",
                "summary.json",
                "curves.png",
            ):
                assert (cdir / rel).exists(), (c["dir"], rel)
            assert c["gate"]["ok"] and c["gate"]["gate"] == "preflight"
            # halving: the budget recorded is where training really stopped
            assert last_steps(cdir) == c["budget_reached"] == c["rungs"][-1]["timesteps"]
            assert c["hacking"]["flagged"] == alarm_from_metrics(cdir / "metrics.csv").flagged
        ranked = sorted(trained, key=lambda c: c["rank"])
        assert ranked[0]["budget_reached"] == 512 and ranked[0]["status"] == "finished"
        assert all(
            c["budget_reached"] == 256 and c["status"] == "pruned" and c["pruned_at"] == 256
            for c in ranked[1:]
        )
        assert it["best"] == ranked[0]["dir"] and it["best_so_far"]["dir"]
        survivor = root / ranked[0]["dir"]
        logged = [
            int(r["time/total_timesteps"]) for r in read_csv(survivor / "tb" / "progress.csv")
        ]
        assert min(logged) <= 256 < max(logged)  # the rung-0 log kept on resume
        assert {p.name for p in (survivor / "checkpoints").glob("model_*_steps.zip")} >= {
            "model_256_steps.zip",
            "model_512_steps.zip",
        }
    assert len({s for s in sources.values()}) == len(
        [c for it in record["iterations"] for c in it["candidates"] if c["verdict"] != "duplicate"]
    )
    # the offline K samples are different programs (deterministic weight variants)
    first = [sources[c["dir"]] for c in record["iterations"][0]["candidates"]]
    assert len(set(first)) == 3
    # iteration 1 was written from reflection on the best so far
    best0 = record["iterations"][0]["best_so_far"]["dir"]
    prompt = json.loads((root / "iterations" / "1" / "prompt.json").read_text())
    assert [m["role"] for m in prompt["messages"]] == ["system", "user", "assistant", "user"]
    assert sources[best0].strip() in prompt["messages"][2]["content"]
    assert "Task success over training" in prompt["messages"][3]["content"]
    assert prompt["previous_source"] == sources[best0] and prompt["feedback"]
    assert (root / "iterations" / "1" / "reflection.md").read_text().strip() == prompt["messages"][
        3
    ]["content"].strip()
    # the best: final evaluation with a video, linked as rewards/v0
    best = record["best"]
    assert (root / "rewards" / "v0").resolve() == (root / best["dir"]).resolve()
    summary = json.loads((root / best["dir"] / "summary.json").read_text())
    assert (
        summary["best"]
        and summary["final_eval"]["episodes"] == 1
        and Path(summary["videos"][0]).exists()
    )
    # seed sweep with baselines and the statistics
    final = record["final"]
    assert {r["method"] for r in final["runs"]} == {"search", "sparse", "expert"}
    assert all(r["status"] == "ok" and r["timesteps"] == 512 for r in final["runs"])
    assert set(final["scores"]["methods"]) == {"search", "sparse", "expert"}
    report = (root / "report.md").read_text()
    assert (
        "## Candidates" in report
        and "## Seed sweep" in report
        and "| method | runs | score IQM" in report
    )
    assert "iter  cand  gate" in res.stdout and "best:" in res.stdout
    # rewardlab evaluate works on a search run (through rewards/v0)
    ev = run("evaluate", f"run={root}", "episodes=1", "train.video_episodes=0", cwd=tmp_path)
    assert ev.returncode == 0 and "success rate" in ev.stdout, ev.stdout + ev.stderr


PROGRAMS = [
    "Here:\n```python\nimport os\ndef compute_dense_reward(self, action):\n    return float(os.getpid())\n```",
    "```python\ndef compute_dense_reward(self, action):\n    forward = self.hopper.top.velocity_x\n"
    "    healthy = 1.0 if self.hopper.top.position_z > 0.8 else 0.0\n"
    "    return forward + healthy, {'forward': forward, 'healthy': healthy}\n```",
    "```python\ndef compute_dense_reward(self, action):\n    forward = 2.0 * self.hopper.top.velocity_x\n"
    "    return forward, {'forward': forward}\n```",
    "```python\ndef compute_dense_reward(self, action):\n    up = self.hopper.top.position_z\n"
    "    return up, {'height': up}\n```",
]


def test_search_with_an_openai_compatible_server(tmp_path: Path) -> None:
    calls: list[int] = []

    def answer(body: dict[str, Any]) -> str:
        calls.append(1)
        return PROGRAMS[min(len(calls), len(PROGRAMS)) - 1]

    with FakeLLMServer(default=dynamic(answer)) as server:
        res = run(
            "search", "task=mujoco/hopper_forward", "llm=openai", "llm.model=fake-coder",
            f"llm.base_url={server.base_url}", "llm.max_retries=0", "llm.fix_attempts=0",
            "search.candidates=2", "search.iterations=2", *TINY, "search.max_steps=256",
            "search.launcher=inline", "train.video_episodes=0", f"runs_dir={tmp_path / 'runs'}",
            cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test-secret"},
        )  # fmt: skip
        bodies = server.chat_bodies
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert len(bodies) == 4  # K=2 samples x N=2 iterations, no fixes
    root = search_dir(tmp_path / "runs")
    record = json.loads((root / "search.json").read_text())
    it0, it1 = record["iterations"]
    assert [c["verdict"] for c in it0["candidates"]] == ["generation_failed", "trained"]
    assert "import of 'os' is not allowed" in it0["candidates"][0]["reason"]
    assert [c["verdict"] for c in it1["candidates"]] == ["trained", "trained"]
    assert record["llm"]["calls"] == 4
    # iteration 0 asked the generation prompt twice; iteration 1 the reflection prompt
    assert bodies[0]["messages"] == bodies[1]["messages"] and len(bodies[0]["messages"]) == 2
    messages = bodies[2]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "self.hopper.top.position_z > 0.8" in messages[2]["content"]  # the best program so far
    reflection = messages[3]["content"]
    assert "Task success over training" in reflection and "| 256 |" in reflection
    assert (
        "- `forward`: [" in reflection
        and "- `healthy`: [" in reflection
        and "correlation with success" in reflection
    )
    assert (
        "rejected before training" in reflection and "import of 'os' is not allowed" in reflection
    )
    assert "rewrite the entire reward function" in reflection
    assert (
        "pre-flight gate evaluated this reward function" in reflection
    )  # the gate's numbers on the best
    assert "per-step reward on" in reflection and "no scripted expert" in reflection
    records = [json.loads(p.read_text()) for p in sorted(root.rglob("attempt_0.json"))]
    assert sorted(r["sample"] for r in records) == [0, 1, 2, 3]
    assert "sk-test-secret" not in "".join(p.read_text() for p in root.rglob("*.json"))


def tiny_cfg(**train: Any) -> Any:
    cfg = OmegaConf.structured(RewardLabConfig)
    cfg.task = OmegaConf.structured(get_task("mujoco/hopper_forward"))
    cfg.train.n_envs, cfg.train.eval_freq, cfg.train.eval_episodes = 2, 256, 1
    cfg.train.memory_limit_gb = -1.0
    cfg.algo.kwargs = {"n_steps": 64}
    for key, value in train.items():
        OmegaConf.update(cfg, key, value)
    return cfg


GOOD = "def compute_dense_reward(self, action):\n    return self.hopper.top.velocity_x + 1.0, {'forward': self.hopper.top.velocity_x}\n"
BROKEN = "def compute_dense_reward(self, action):\n    return 1.0 / (self.dt - self.dt)\n"


@pytest.mark.slow  # joblib jobs training in fresh processes: tests/test_search_launchers.py
def test_joblib_launcher_runs_a_batch_like_the_inline_path(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "broken.py").write_text(BROKEN)
    cfg = tiny_cfg(
        **{"search.launcher": "joblib", "search.n_jobs": 2, "search.job_timeout_s": 240.0}
    )
    task = get_task("mujoco/hopper_forward")
    jobs = [
        Job("good", str(tmp_path / "a"), str(tmp_path / "good.py"), budget=256, seed=0),
        Job("broken", str(tmp_path / "b"), str(tmp_path / "broken.py"), budget=256, seed=0),
    ]
    results = launch(cfg, task, jobs, tmp_path / "batch", print)
    assert [r["status"] for r in results] == ["ok", "reward_failed"], results
    assert results[0]["timesteps"] == 256 and "failed on" in results[1]["error"]
    assert (tmp_path / "batch" / "hydra" / "multirun.yaml").exists()
    assert {p.name for p in (tmp_path / "batch" / "hydra").iterdir() if p.is_dir()} == {"0", "1"}
    # the single-process path trains the same job to the same curve
    inline = run_job(
        cfg, task, Job("good", str(tmp_path / "c"), str(tmp_path / "good.py"), budget=256, seed=0)
    )
    assert inline["status"] == "ok"
    curve = [
        (r["timesteps"], r["mean_reward_return"]) for r in read_csv(tmp_path / "a" / "metrics.csv")
    ]
    assert curve == [
        (r["timesteps"], r["mean_reward_return"]) for r in read_csv(tmp_path / "c" / "metrics.csv")
    ]


EFFORT = "def compute_dense_reward(self, action):\n    return float(action @ action), {'effort': float(action @ action)}\n"


def test_hacking_alarm_on_a_real_training_curve(tmp_path: Path) -> None:
    """Rewarding effort on the hopper's jump task: PPO drives the actions to their limits, the
    generated return climbs, the hopper never jumps."""
    (tmp_path / "effort.py").write_text(EFFORT)
    cfg = tiny_cfg(
        **{"train.eval_freq": 512, "algo.kwargs": {"n_steps": 128, "learning_rate": 1e-3}}
    )
    task = get_task("mujoco/hopper_jump")
    result = run_job(
        cfg,
        task,
        Job("effort", str(tmp_path / "run"), str(tmp_path / "effort.py"), budget=3072, seed=0),
    )
    assert result["status"] == "ok" and result["success"] == 0.0
    alarm = alarm_from_metrics(tmp_path / "run" / "metrics.csv")
    assert alarm.flagged, alarm
    assert alarm.reward_rise is not None and alarm.reward_rise > 1.0 and alarm.success_end == 0.0
