"""The gate every sampled program passes before it may cost training time.

:func:`gate` is the one entry point the search calls, so a richer pre-flight gate (trajectory
preference checks, magnitude checks ...) can replace it without touching the search. Today it
is :func:`rewardlab.reward.check.check_program`: static vetting against the task's card and a
smoke run on real states in a limited subprocess. The generation loop has usually just run
that check on the very program (to send rejections back for a fix); :func:`remember_check`
hands its report over so the gate does not smoke-run the program a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rewardlab.reward.check import CheckReport, check_program
from rewardlab.tasks.registry import TaskSpec

GATE_NAME = "check_program"

_CHECKED: dict[tuple[Any, ...], CheckReport] = {}


def _key(task: TaskSpec, source: str, cfg: Any) -> tuple[Any, ...]:
    c = cfg.check
    return (repr(task.to_dict()), source, int(c.steps), float(c.timeout_s), int(c.memory_mb))


def remember_check(task: TaskSpec, source: str, cfg: Any, report: CheckReport) -> None:
    """Let the next :func:`gate` call on exactly this program, task and check settings reuse
    ``report`` (a check the generation loop already ran) instead of running it again."""
    _CHECKED[_key(task, source, cfg)] = report


@dataclass
class GateReport:
    """The gate's verdict on one program.

    Attributes:
        ok: The program may be trained.
        findings: Why it may not (one line each, with line numbers where known).
        warnings: Problems that do not block training (e.g. a constant reward on the smoke
            states); they are shown to the reward writer in the reflection.
        stats: Measurements the gate made (smoke-run reward and component ranges ...).
        gate: Which gate produced the report.
    """

    ok: bool
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    gate: str = GATE_NAME

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (what ``gate.json`` holds)."""
        return {
            "ok": self.ok,
            "gate": self.gate,
            "findings": list(self.findings),
            "warnings": list(self.warnings),
            "stats": self.stats,
        }

    def summary(self) -> str:
        """One line: the verdict and the first reason."""
        if self.ok:
            return "passed" + (f" ({self.warnings[0]})" if self.warnings else "")
        return "rejected: " + (self.findings[0] if self.findings else "no reason given")


def gate(task: TaskSpec, source: str, cfg: Any) -> GateReport:
    """Decide whether ``source`` is worth training on ``task``.

    Args:
        task: The task the program is written for.
        source: The reward program.
        cfg: The run's config (reads ``cfg.check.steps``, ``timeout_s``, ``memory_mb``).

    Returns:
        The :class:`GateReport`.
    """
    report = _CHECKED.pop(_key(task, source, cfg), None) or check_program(
        task, source, steps=int(cfg.check.steps), timeout_s=float(cfg.check.timeout_s),
        memory_mb=int(cfg.check.memory_mb),
    )  # fmt: skip
    data = report.to_dict()
    stats = dict(data["stats"])
    warnings = [str(w) for w in stats.pop("warnings", [])]
    return GateReport(report.ok, [str(f) for f in report.findings], warnings, stats)
