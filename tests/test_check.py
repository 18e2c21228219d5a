"""The pre-use check: static findings without a subprocess; smoke-run findings (runtime
errors, budget, memory, CPU, wall-clock timeout, crashes) from a limited child process that
this process always survives; stats and warnings on good programs."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from typing import Any

import pytest

from rewardlab.reward import check
from rewardlab.reward.check import CheckReport, check_program, static_check
from rewardlab.tasks import get_task

HOPPER = get_task("mujoco/hopper_forward")

pytestmark = pytest.mark.timeout(60)


def prog(body: str, before: str = "", params: str = "self, action") -> str:
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"{before}def compute_dense_reward({params}):\n{body}\n"


GOOD = prog(
    """
    forward = self.hopper.top.velocity_x
    healthy = 1.0 if self.hopper.top.position_z > 0.7 else 0.0
    ctrl = 1e-3 * float(np.sum(np.square(action)))
    return forward + healthy - ctrl, {"forward": forward, "healthy": healthy, "ctrl": -ctrl}
    """,
    before="import numpy as np\n",
)


def test_good_program_passes_with_stats() -> None:
    report = check_program(HOPPER, GOOD, steps=50)
    assert report.ok, report.summary()
    assert report.findings == []
    stats = report.stats
    assert stats["steps"] == 50 and stats["calls_ok"] == 50 and stats["calls_failed"] == 0
    assert stats["reward"]["min"] <= stats["reward"]["mean"] <= stats["reward"]["max"]
    assert stats["reward"]["std"] > 0
    assert set(stats["components"]) == {"forward", "healthy", "ctrl"}
    assert stats["mean_call_us"] > 0 and 0 < check.call_to_step(stats) < check.MAX_CALL_TO_STEP
    assert stats["uses_obs"] is False and stats["takes_obs"] is False
    assert stats["warnings"] == []
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["ok"] is True and as_dict["stats"]["steps"] == 50
    assert "smoke run: 50 states" in report.summary() and "forward:" in report.summary()


def test_static_failure_needs_no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the smoke run must not start for a statically rejected program")

    monkeypatch.setattr(check, "run_child", no_child)
    source = "import os\n" + prog("return self.hopper.tpo.position_x")
    report = check_program(HOPPER, source)
    assert not report.ok
    by_line = {f.line: f for f in report.findings}
    assert by_line[1].stage == "static" and "import of 'os'" in by_line[1].message
    assert "self.hopper.tpo" in by_line[3].message and "top" in by_line[3].message
    summary = report.summary()
    assert "[static] line 1:" in summary and "[static] line 3:" in summary
    assert len(summary.splitlines()) == len(report.findings)


def test_syntax_error_has_its_line() -> None:
    report = check_program(HOPPER, prog("x = (1 +\nreturn x"))
    assert [(f.stage, f.line) for f in report.findings] == [("syntax", 2)]


def test_static_check_never_executes_the_program() -> None:
    # Module-level code would allocate 28.8 GB: only the child may execute it.
    source = "A = [np.zeros(10**6) for i in range(1000)]\n"
    program, findings, stats = static_check(HOPPER, source + prog("return 0.0"))
    assert program is not None and findings == [] and stats == {"uses_obs": False, "warnings": []}


def test_module_level_memory_bomb_is_confined_to_the_child() -> None:
    source = "A = [np.zeros(10**6) for i in range(1000)]\n"
    report = check_program(HOPPER, source + prog("return 0.0"), memory_mb=2048)
    assert not report.ok
    (finding,) = report.findings
    assert finding.stage == "compile" and "MemoryError" in finding.message and finding.line == 1


def test_infinite_loop_reached_only_on_real_states_is_caught_by_the_budget() -> None:
    source = prog(
        """
        if self.hopper.top.position_z > 0.5:
            while True:
                pass
        return 0.0
        """
    )
    assert static_check(HOPPER, source)[1] == []
    report = check_program(HOPPER, source, steps=10)
    assert not report.ok
    (finding,) = report.findings
    assert finding.stage == "timeout" and finding.line == 3
    assert "budget" in finding.message and "(on 10 of 10 states)" in finding.message
    assert report.stats["calls_failed"] == 10


def test_broadcast_memory_bomb_is_refused_before_allocating() -> None:
    # 60000 x 60000 float64 = 28.8 GB through broadcasting: the operator guard computes the
    # broadcast shape first.
    source = prog(
        """
        a = np.ones(60000)
        b = a[:, None] * a[None, :]
        return float(b[0, 0])
        """,
        before="import numpy as np\n",
    )
    report = check_program(HOPPER, source, steps=3, memory_mb=2048)
    assert not report.ok
    (finding,) = report.findings
    assert finding.stage == "runtime" and "would create 3,600,000,000 elements" in finding.message
    assert finding.line == 4


def test_errors_on_some_states_are_counted() -> None:
    source = prog(
        """
        v = self.hopper.top.velocity_x
        if v > 0.0:
            return 1.0 / (v - v)
        return v
        """
    )
    report = check_program(HOPPER, source, steps=60)
    assert not report.ok
    (finding,) = report.findings
    assert (
        finding.stage == "runtime" and finding.line == 4 and "ZeroDivisionError" in finding.message
    )
    failed = report.stats["calls_failed"]
    assert 0 < failed < 60 and report.stats["calls_ok"] == 60 - failed
    assert f"(on {failed} of 60 states)" in finding.message
    assert list(report.stats["error_counts"].values()) == [failed]


def test_bad_output_is_a_finding() -> None:
    report = check_program(HOPPER, prog("return 1.0, [2.0]"), steps=5)
    assert [(f.stage, "tuple return" in f.message) for f in report.findings] == [("output", True)]


def test_constant_reward_is_a_warning_not_a_failure() -> None:
    report = check_program(HOPPER, prog("return 1.0"), steps=20)
    assert report.ok
    (warning,) = report.stats["warnings"]
    assert "constant" in warning
    assert "[warning]" in report.summary()


def test_slow_program_is_rejected() -> None:
    # ~100x the ratio limit, so load cannot flip the verdict (a loaded machine may instead hit
    # the per-step time budget first: also a rejection for slowness)
    source = prog(
        "t = 0.0\nfor i in range(20000):\n    t += float(np.sum(np.ones(64))) * 1e-12\nreturn t"
    )
    report = check_program(HOPPER, source, steps=5)
    assert not report.ok
    assert any((f.stage == "smoke" and f.message.startswith("too slow")) or "time budget" in f.message
               for f in report.findings), report.findings  # fmt: skip


SLOW_BUT_WITHIN_BUDGET = prog("t = 0.0\nfor i in range(150000):\n    t += 1e-9\nreturn t")


def test_wall_clock_backstop_kills_a_child_that_uses_no_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        check, "_smoke_command", lambda: [sys.executable, "-c", "import time; time.sleep(600)"]
    )
    monkeypatch.setattr(check, "WALL_FACTOR", 4.0)
    report = check_program(HOPPER, GOOD, steps=5, timeout_s=1.0)
    assert not report.ok
    (finding,) = report.findings
    assert finding.stage == "timeout" and "did not finish within 4 s" in finding.message


def test_cpu_limit_ends_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "_cpu_seconds", lambda timeout_s: 1.0)
    report = check_program(HOPPER, SLOW_BUT_WITHIN_BUDGET, steps=1000, timeout_s=30.0)
    assert not report.ok
    (finding,) = report.findings
    assert finding.stage == "timeout" and "CPU time limit" in finding.message


@pytest.mark.parametrize(
    ("code", "phrase"),
    [
        ("import sys; sys.stderr.write('boom\\n'); sys.exit(3)", "exited with code 3: boom"),
        ("print('this is not json')", "no readable report"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "killed by SIGSEGV"),
    ],
    ids=["exit-code", "garbage", "sigkill", "segfault"],
)
def test_child_crash_is_a_finding(monkeypatch: pytest.MonkeyPatch, code: str, phrase: str) -> None:
    monkeypatch.setattr(check, "_smoke_command", lambda: [sys.executable, "-c", code])
    report = check_program(HOPPER, GOOD, steps=5)
    assert not report.ok
    (finding,) = report.findings
    assert finding.stage == "smoke" and phrase in finding.message


def test_overridden_task_is_passed_whole_to_the_child() -> None:
    # A Hydra-style override: an unregistered name, a 5-step horizon and no early termination.
    task = dataclasses.replace(
        get_task("mujoco/hopper_frontflip"), name="mujoco/my_override", horizon=5
    )
    report = check_program(task, prog("return self.hopper.top.velocity_x"), steps=20)
    assert report.ok, report.summary()
    assert report.stats["episodes"] == 5  # the first + one reset every 5 steps (4)


def test_obs_program_is_reported_as_using_obs() -> None:
    report = check_program(
        HOPPER, prog("return float(obs[0])", params="self, action, obs"), steps=10
    )
    assert report.ok, report.summary()
    assert report.stats["uses_obs"] is True and report.stats["takes_obs"] is True


def test_report_round_trips_to_json() -> None:
    report = CheckReport(False, [], {"warnings": ["w"], "odd": {1, 2}})
    assert json.loads(json.dumps(report.to_dict()))["stats"]["warnings"] == ["w"]


def test_unstartable_child_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "_smoke_command", lambda: ["/nonexistent/python"])
    report = check_program(HOPPER, GOOD, steps=5)
    assert [f.stage for f in report.findings] == ["smoke"]
    assert "could not start" in report.findings[0].message
