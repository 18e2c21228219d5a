"""LLM replies are cached by content hash, replayed bit for bit with no network, and costed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fake_llm_server import FakeLLMServer, reply
from guards import HANG_S

from rewardlab.generators.base import GenerationRequest, Reply
from rewardlab.generators.loop import call_cost
from rewardlab.generators.records import CachedGenerator
from rewardlab.tasks import get_task

RL = [sys.executable, "-m", "rewardlab.cli"]
GOOD = (
    "```python\ndef compute_dense_reward(self, action):\n    return self.hopper.top.velocity_x\n```"
)
BROKEN = "```python\ndef compute_dense_reward(self, action):\n    return self.hopper.top.speed\n```"


class Counting:
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, request: GenerationRequest) -> Reply:
        self.calls += 1
        return Reply(
            text=f"reply {self.calls}",
            model="m",
            usage={"prompt_tokens": 10, "completion_tokens": 5},
        )


def request(sample: int = 0, text: str = "hi") -> GenerationRequest:
    return GenerationRequest(task=get_task("mujoco/hopper_forward"), instruction="go",
                             messages=[{"role": "user", "content": text}], sample=sample)  # fmt: skip


def test_cache_hits_identical_requests_only(tmp_path: Path) -> None:
    inner = Counting()
    gen = CachedGenerator(inner, tmp_path, {"model": "m", "temperature": 0.7})
    first = gen.propose(request())
    again = gen.propose(request())
    assert inner.calls == 1 and again.text == first.text == "reply 1"
    assert first.params["cache"] == "miss" and again.params["cache"] == "hit"
    assert gen.propose(request(sample=1)).text == "reply 2", "another sample is another reply"
    assert gen.propose(request(text="other")).text == "reply 3"
    other_model = CachedGenerator(inner, tmp_path, {"model": "m2", "temperature": 0.7})
    assert other_model.propose(request()).text == "reply 4"
    (entry,) = [
        p
        for p in tmp_path.rglob("*.json")
        if json.loads(p.read_text())["reply"]["text"] == "reply 1"
    ]
    entry.write_text("{not json")
    assert gen.propose(request()).text == "reply 5", "a damaged entry is a miss, not a crash"


def test_cost_from_usage_and_prices() -> None:
    r = Reply(text="", model="m", usage={"prompt_tokens": 1000, "completion_tokens": 500})
    assert call_cost(r, (2.5, 10.0)) == (1000 * 2.5 + 500 * 10.0) / 1e6
    assert call_cost(r, (0.0, 0.0)) is None
    r.params["cache"] = "hit"
    assert call_cost(r, (2.5, 10.0)) == 0.0


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RL, *args], cwd=cwd, capture_output=True, text=True, timeout=HANG_S,
                          env={**os.environ, "OPENAI_API_KEY": "sk-x"})  # fmt: skip


def test_generate_caches_then_replays_without_network(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    common = ["generate", "task=mujoco/hopper_forward", f"runs_dir={runs}", "check.steps=30"]
    with FakeLLMServer(
        reply(BROKEN, usage={"prompt_tokens": 800, "completion_tokens": 60, "total_tokens": 860}),
        reply(GOOD),
    ) as server:
        llm = ["llm=openai", "llm.model=fake", f"llm.base_url={server.base_url}", "llm.max_retries=0",
               "llm.price_input_per_mtok=2.5", "llm.price_output_per_mtok=10"]  # fmt: skip
        first = run(*common, *llm, cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert server.chat_count == 2
        second = run(*common, *llm, cwd=tmp_path)  # same prompts: answered from the cache
        assert second.returncode == 0, second.stdout + second.stderr
        assert server.chat_count == 2
    recorded = sorted(runs.rglob("attempt_*.json"))
    records = [json.loads(p.read_text()) for p in recorded]
    assert [r["reply"]["params"]["cache"] for r in records] == ["miss", "miss", "hit", "hit"]
    assert records[0]["cost_usd"] == (800 * 2.5 + 60 * 10) / 1e6 and records[2]["cost_usd"] == 0.0

    first_run = recorded[0].parents[3]
    replay_runs = tmp_path / "replayed"
    replayed = run("generate", "task=mujoco/hopper_forward", f"runs_dir={replay_runs}", "check.steps=30",
                   "llm=replay", f"llm.replay_from={first_run}", cwd=tmp_path)  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    original = (first_run / "rewards" / "v0" / "reward.py").read_text()
    (again,) = replay_runs.rglob("reward.py")
    assert again.read_text() == original
    assert len(list(replay_runs.rglob("attempt_*.json"))) == 2, "the same fix loop was replayed"

    missing = run("generate", "task=mujoco/hopper_forward", "instruction=hop backward", f"runs_dir={tmp_path / 'x'}",
                  "llm=replay", f"llm.replay_from={first_run}", cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 1 and "never recorded" in missing.stdout
    no_source = run(
        "generate",
        "task=mujoco/hopper_forward",
        f"runs_dir={tmp_path / 'y'}",
        "llm=replay",
        cwd=tmp_path,
    )
    assert no_source.returncode == 2 and "llm.replay_from" in no_source.stdout
