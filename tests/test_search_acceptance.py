"""Acceptance: ``rewardlab search`` against a real HTTP server on 127.0.0.1 speaking the
chat-completions protocol, serving scripted replies (good, hostile, off-format, broken, reward
hacking, slow, 429, 500). The search finishes, rejects what must be rejected (by the checks or
the pre-flight gate), records everything, and ``llm=replay`` reproduces it without the server:
the same programs and the same gate verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_llm_server import FakeLLMServer, reply, slow, status
from guards import HANG_S

RL = [sys.executable, "-m", "rewardlab.cli"]
TASK = "metaworld/drawer_open"
TINY = [
    "train.n_envs=2", "algo.kwargs.n_steps=64", "train.eval_freq=256", "train.eval_episodes=1",
    "train.video_episodes=0", "check.steps=40", "search.min_steps=256", "search.max_steps=256",
    "search.candidates=4", "search.iterations=1", "search.launcher=inline", "llm.fix_attempts=1",
]  # fmt: skip


def block(code: str, prose: str = "Here is the reward function.") -> str:
    return f"{prose}\n\n```python\n{code.strip()}\n```\n"


GOOD = block("""
import numpy as np

def compute_dense_reward(self, action):
    tip = self.robot.ee_position - np.array([0.0, 0.0, 0.045])
    handle = self.obj1.position
    reach = 1.0 - np.tanh(5.0 * float(np.linalg.norm(handle - tip)))
    pull = 3.0 * (1.0 - np.tanh(5.0 * abs(float(self.goal_position[1] - handle[1]))))
    return float(reach + pull), {"reach": float(reach), "pull": float(pull)}
""")
HOSTILE = block("""
import os

def compute_dense_reward(self, action):
    os.system("echo pwned")
    return 0.0
""")
OFF_FORMAT = "I would reward the robot for opening the drawer, scaled by how far it has moved."
BROKEN = block("""
def compute_dense_reward(self, action):
    return 1.0 / (self.dt - self.dt)
""")
HACKING = block(
    """
import numpy as np

def compute_dense_reward(self, action):
    away = float(np.linalg.norm(self.robot.ee_position - self.obj1.position))
    return away, {"away": away}
""",
    prose="Reward exploration: the further the hand roams, the better.",
)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RL, *args], cwd=cwd, capture_output=True, text=True, timeout=HANG_S,
                          env={**os.environ, "OPENAI_API_KEY": "sk-test-secret"})  # fmt: skip


def search_dir(root: Path) -> Path:
    (found,) = [p.parent for p in root.rglob("search.json")]
    return found


def outcome(root: Path) -> list[dict[str, Any]]:
    """Per candidate: verdict, program and gate verdict (what a replay must reproduce)."""
    record = json.loads((root / "search.json").read_text())
    out = []
    for c in record["iterations"][0]["candidates"]:
        cdir = root / c["dir"]
        gate = (
            json.loads((cdir / "gate.json").read_text()) if (cdir / "gate.json").exists() else None
        )
        out.append({
            "verdict": c["verdict"], "programs": c.get("programs"),
            "source": (cdir / "reward.py").read_text() if (cdir / "reward.py").exists() else None,
            "gate": gate and {k: gate[k] for k in ("ok", "findings", "warnings", "ranking_accuracy", "progress_order")},
        })  # fmt: skip
    return out


# Slow: two searches on MetaWorld. In the default run: test_search_e2e (a search against a
# server), test_openai_backend (429, 500, timeouts), test_records (replay), test_gate (a
# hacking reward rejected), test_cli (a hostile reward file rejected).
@pytest.mark.slow
def test_search_with_a_scripted_server_then_replay(tmp_path: Path) -> None:
    script = [
        status(429, retry_after=0),
        reply(GOOD),  # sample 0: rate limited, then a good program
        reply(HOSTILE),
        reply(OFF_FORMAT),  # sample 1: refused statically, then prose without code
        status(500),
        reply(BROKEN),
        reply(HACKING),  # sample 2: server error, a crash, then reward hacking
        slow(600, GOOD),
        slow(
            600, GOOD
        ),  # sample 3: no reply while the search runs (the server's stop ends the wait)
    ]
    with FakeLLMServer(*script) as server:
        res = run("search", f"task={TASK}", "llm=openai", "llm.model=fake-coder", f"llm.base_url={server.base_url}",
                  "llm.max_retries=1", "llm.backoff_s=0", "llm.timeout_s=3", *TINY,
                  f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path)  # fmt: skip
        served = server.chat_count
        left = server.pending
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert served == len(script) and left == 0
    root = search_dir(tmp_path / "runs")
    record = json.loads((root / "search.json").read_text())
    assert record["status"] == "done" and record["best"]["dir"] == "iterations/0/candidates/0"
    first = outcome(root)
    assert [c["verdict"] for c in first] == [
        "trained",
        "generation_failed",
        "rejected",
        "generation_failed",
    ]
    assert [c["programs"] for c in first] == [
        ["passed"],
        ["check_rejected", "no_code"],
        ["check_rejected", "gate_rejected"],
        [],
    ]
    assert record["programs"] == {
        "replies": 5,
        "no_code": 1,
        "check_rejected": 2,
        "gate_rejected": 1,
        "passed": 1,
    }
    good, hostile, hacking, timed_out = first
    assert good["gate"]["ok"] and good["gate"]["ranking_accuracy"] >= 0.9
    assert hacking["gate"]["ok"] is False and hacking["gate"]["ranking_accuracy"] < 0.6
    assert hacking["gate"]["findings"][0].startswith("ranking accuracy")
    assert "away = float" in hacking["source"]  # the rejected program is kept for the record
    cands = record["iterations"][0]["candidates"]
    assert "no ```python code block" in cands[1]["reason"] and "timeout" in cands[3]["reason"]
    # everything recorded: every call, with the findings that went back to the writer
    c1 = [
        json.loads((root / cands[1]["dir"] / "llm" / f"attempt_{n}.json").read_text())
        for n in (0, 1)
    ]
    assert "import of 'os' is not allowed" in " ".join(c1[0]["findings"])
    assert "import of 'os' is not allowed" in c1[1]["messages"][-1]["content"]  # the fix prompt
    c2 = json.loads((root / cands[2]["dir"] / "llm" / "attempt_1.json").read_text())
    assert c2["reply"]["params"]["attempts"] == 1 and c2["gate"]["ok"] is False
    c2_0 = json.loads((root / cands[2]["dir"] / "llm" / "attempt_0.json").read_text())
    assert c2_0["reply"]["params"]["attempts"] == 2  # the 500 was retried
    c3 = json.loads((root / cands[3]["dir"] / "llm" / "attempt_0.json").read_text())
    assert c3["reply"] is None and "timeout" in c3["error"]
    assert "sk-test-secret" not in "".join(p.read_text() for p in root.rglob("*.json"))
    assert (root / "iterations" / "0" / "candidates" / "0" / "summary.json").exists()

    # llm=replay: no server (it is stopped), the same programs and the same gate verdicts
    again = run("search", f"task={TASK}", "llm=replay", f"llm.replay_from={root}", *TINY,
                f"runs_dir={tmp_path / 'replay'}", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    replayed = outcome(search_dir(tmp_path / "replay"))
    assert replayed == first
