"""The pre-use check of a reward program for a task.

Two stages:

1. **Static**, in this process: syntax, the sandbox's static vetting (imports, forbidden names
   and attributes, ``self.`` paths the task's card does not define, named by full path) and
   bytecode compilation. The program's module-level code is *not* executed here: that happens
   only in the child, so nothing the program does can touch this process.
2. **Smoke run**, in a subprocess (:mod:`rewardlab.reward.smoke`) with address-space and CPU
   limits, killed after ``WALL_FACTOR * timeout_s`` of wall time: random actions on the task's real
   environment, the program evaluated on every state reached. Runtime and output failures,
   a budget overrun, a crash or a timeout all become :class:`Finding` s.

Example:
    >>> from rewardlab.tasks import get_task
    >>> report = check_program(get_task("mujoco/hopper_forward"), '''
    ... def compute_dense_reward(self, action):
    ...     return self.hopper.top.velocity_x
    ... ''', steps=20)
    >>> report.ok, report.stats["calls_ok"]
    (True, 20)
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.reward.confine import worker_environment
from rewardlab.reward.findings import Finding
from rewardlab.reward.program import ENTRY, RewardProgram, RewardProgramError, compile_for_task
from rewardlab.tasks.registry import TaskSpec

MAX_CALL_TO_STEP = 20.0
"""A program is rejected as too slow when its median call takes more than this many times the
median step of the task's own environment, both measured as CPU time of the smoke run's
thread on the same states (time spent waiting for a loaded machine's other processes is not
counted, and what load does to the CPU slows both alike, so load cannot flip the verdict)."""

_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CheckReport:
    """The outcome of :func:`check_program`.

    Attributes:
        ok: no finding (warnings do not count).
        findings: what is wrong, first occurrence of each distinct problem, with lines.
        stats: ``steps``, ``episodes``, ``calls_ok``/``calls_failed``, ``error_counts``,
            ``reward`` (min/mean/max/std), ``components`` (per name min/mean/max/std),
            ``mean_call_us``/``max_call_us``/``median_call_us`` (successful calls),
            ``median_step_us`` (the environment's own step), ``takes_obs``/``uses_obs``
            (the program takes / reads the observation), ``elapsed_s`` and
            ``warnings`` (problems that do not reject the program, e.g. a constant reward).
    """

    ok: bool
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "ok": self.ok,
            "findings": [asdict(f) for f in self.findings],
            "stats": json.loads(json.dumps(self.stats, default=str)),
        }

    def summary(self) -> str:
        """Human-readable: one finding or warning per line, then the smoke-run numbers."""
        lines = [str(f) for f in self.findings]
        lines += [f"[warning] {w}" for w in self.stats.get("warnings", [])]
        reward = self.stats.get("reward")
        if reward:
            lines.append(
                f"smoke run: {self.stats['steps']} states ({self.stats['episodes']} episodes), "
                f"{self.stats['calls_failed']} failed calls; reward min {reward['min']:.4g} / "
                f"mean {reward['mean']:.4g} / max {reward['max']:.4g} (std {reward['std']:.3g}); "
                f"{self.stats['mean_call_us']:.1f} us per call"
            )
            for name, comp in self.stats.get("components", {}).items():
                lines.append(
                    f"  {name}: min {comp['min']:.4g} / mean {comp['mean']:.4g} / "
                    f"max {comp['max']:.4g}"
                )
        if not lines:
            lines.append("no findings")
        return "\n".join(lines)


def _uses_obs(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == ENTRY:
            params = node.args.posonlyargs + node.args.args
            if len(params) < 3:
                return False
            return any(isinstance(n, ast.Name) and n.id == params[2].arg for n in ast.walk(node))
    return False


def static_check(
    task: TaskSpec, source: str
) -> tuple[RewardProgram | None, list[Finding], dict[str, Any]]:
    """The in-process stage: vetting against ``task``'s card and bytecode compilation
    (:func:`~rewardlab.reward.program.compile_for_task`; the program's code is never executed).

    Returns:
        ``(program, findings, stats)``: the compiled program (``None`` when rejected), what
        rejects it, and ``uses_obs``/``warnings``.
    """
    try:
        program = compile_for_task(source, task)
    except RewardProgramError as exc:
        return (
            None,
            exc.findings,
            {"warnings": [str(w).removeprefix("[warning] ") for w in exc.warnings]},
        )
    notes = [str(w).removeprefix("[warning] ") for w in program.warnings]
    return program, [], {"uses_obs": _uses_obs(ast.parse(source)), "warnings": notes}


def _smoke_command() -> list[str]:
    return [sys.executable, "-P", "-m", "rewardlab.reward.smoke"]  # -P: not the current folder


WALL_FACTOR = 10.0
"""The child is killed after ``WALL_FACTOR * timeout_s`` of wall-clock time: a backstop for a
child that neither finishes nor uses CPU. The verdict that matters is the CPU-time limit
(``timeout_s``), which machine load does not eat into."""


def _cpu_seconds(timeout_s: float) -> float:
    return timeout_s


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _exit_finding(
    code: int, stderr: str, cpu_s: float, memory_mb: int, what: str = "smoke", stage: str = "smoke"
) -> Finding:
    if code < 0:
        if -code == signal.SIGXCPU:
            return Finding("timeout", f"the {what} run exceeded its CPU time limit of {cpu_s:g} s")
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = f" (out of memory? limit {memory_mb} MiB)" if -code == signal.SIGKILL else ""
        return Finding(stage, f"the {what} process was killed by {name}{hint}")
    last = stderr.strip().splitlines()[-1:] or ["(no error output)"]
    return Finding(stage, f"the {what} process exited with code {code}: {last[0][:300]}")


def run_child(
    request: dict[str, Any], timeout_s: float, *, what: str = "smoke", stage: str = "smoke"
) -> tuple[dict[str, Any] | None, Finding | None]:
    """Run one request in the limited child (:mod:`rewardlab.reward.smoke`).

    The child applies ``request["memory_mb"]`` and ``request["cpu_s"]`` to itself before it
    compiles the program; here it is killed (with everything it started) after ``timeout_s``
    of wall time (callers pass :data:`WALL_FACTOR` times the CPU limit).

    Args:
        request: The JSON request (see :mod:`rewardlab.reward.smoke` for both modes).
        timeout_s: Wall-clock limit.
        what: How the run is named in findings ("smoke" -> "the smoke run ...").
        stage: The stage of findings about a crashed or unreadable child.

    Returns:
        ``(report, None)`` with the child's JSON report, or ``(None, finding)`` when it did
        not produce one (timeout, killed, crashed, unreadable output).
    """
    env = worker_environment()  # no keys or tokens in the child that runs generated code
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(
            _smoke_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: a timeout kills all it started
        )
    except OSError as exc:
        return None, Finding(stage, f"could not start the {what} process: {exc}")
    try:
        out, err = proc.communicate(json.dumps(request).encode(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        return None, Finding(
            "timeout", f"the {what} run did not finish within {timeout_s:g} s and was killed"
        )
    finally:
        if proc.poll() is None:  # interrupted (e.g. KeyboardInterrupt): leave nothing behind
            _kill(proc)
            proc.wait()
    stderr = err.decode(errors="replace")
    if proc.returncode != 0:
        return None, _exit_finding(
            proc.returncode, stderr, request["cpu_s"], request["memory_mb"], what, stage
        )
    try:
        report = json.loads(out)
        if not isinstance(report, dict) or not isinstance(report.get("findings"), list):
            raise ValueError("not a report")
    except ValueError:
        return None, Finding(
            stage, f"the {what} process produced no readable report: {out[:200]!r}"
        )
    return report, None


def call_to_step(stats: dict[str, Any]) -> float | None:
    """Median reward-call time over median bare environment step time, from a smoke run's
    stats (``None`` without timings)."""
    call, step = (
        float(stats.get("median_call_us") or 0.0),
        float(stats.get("median_step_us") or 0.0),
    )
    return call / step if call > 0 and step > 0 else None


def check_program(
    task: TaskSpec,
    source: str,
    *,
    steps: int = 200,
    seed: int = 0,
    timeout_s: float = 60.0,
    memory_mb: int = 4096,
) -> CheckReport:
    """Check ``source`` for ``task`` before it is used for training.

    Args:
        task: the task (possibly overridden; it is passed to the child in full).
        source: the reward program.
        steps: random-action environment steps of the smoke run (the program is evaluated on
            the state after each).
        seed: seed of the environment reset and the random actions.
        timeout_s: CPU-time limit of the smoke run (the child process's CPU time, so a loaded
            machine does not eat into it); it is killed after :data:`WALL_FACTOR` times as much
            wall-clock time.
        memory_mb: address-space limit of the smoke-run process.

    Returns:
        The report; ``ok`` is false when any finding was made. This process never runs the
        program's code and survives whatever the program does.
    """
    program, findings, stats = static_check(task, source)
    if program is None:
        return CheckReport(False, findings, stats)
    request = {
        "task": task.to_dict(),
        "program": program.to_message(),
        "steps": steps,
        "seed": seed,
        "memory_mb": memory_mb,
        "cpu_s": _cpu_seconds(timeout_s),
    }
    started = time.monotonic()
    report, failure = run_child(request, WALL_FACTOR * timeout_s)
    stats["elapsed_s"] = round(time.monotonic() - started, 3)
    if report is None:
        return CheckReport(False, [failure] if failure else [], stats)
    findings = [
        Finding(str(f["stage"]), str(f["message"]), f.get("line")) for f in report["findings"]
    ]
    stats.update(report.get("stats", {}))
    ratio = call_to_step(stats)
    if ratio is not None and ratio > MAX_CALL_TO_STEP:
        findings.append(
            Finding(
                "smoke",
                f"too slow: a call takes {ratio:.0f}x the environment's own step "
                f"({stats['median_call_us'] / 1000:.2f} ms vs {stats['median_step_us'] / 1000:.2f} ms, "
                f"medians; limit {MAX_CALL_TO_STEP:g}x); training calls it on every step",
            )
        )
    reward = stats.get("reward")
    if reward and stats.get("calls_ok", 0) > 1 and reward["max"] - reward["min"] <= 1e-12:
        stats["warnings"].append(
            f"the reward is constant ({reward['mean']:g}) on all {stats['calls_ok']} states "
            "evaluated: it gives the agent no learning signal"
        )
    return CheckReport(not findings, findings, stats)
