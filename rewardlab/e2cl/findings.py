"""Typed findings: what an error detector saw, how bad it is, and the evidence.

A :class:`Finding` names its ``kind`` (one of :data:`KINDS`), a ``severity`` (``error``: the
reward itself is wrong; ``warning``: the behaviour it produced is wrong; ``info``: worth
knowing, never acted on), a one-sentence ``message`` and :class:`Evidence`: the trajectory and
step indices that show it, the values at those steps, summary statistics, and optional frames
or a clip rendered from those steps. ``subject`` says what the finding is about (a reward
component, an action dimension ...), so that "the same finding" can be recognised in a later
exploration (:attr:`Finding.key`). ``actions`` are candidate edits, each a short feedback
clause (``"drop bias"``, ``"more progress"``), in order of preference.

Findings of one reward version are saved as ``rewards/v<N>/findings.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.rundir import read_json, write_json

PROGRAM_FAILURE = "program_failure"
"""The reward program raised, returned NaN/inf, or read a missing attribute on some states."""
NO_SUCCESS = "no_success"
"""The task's own success metric was never reached (also not from the expert's states)."""
REGRESSION = "regression"
"""Success was reached and then lost, within an episode or between evaluations in training."""
REWARD_HACKING = "reward_hacking"
"""The generated return rose while success stayed flat (:mod:`rewardlab.search.alarm`), or the
learner out-earns the expert from the expert's own states while making less progress."""
CONSTANT_COMPONENT = "constant_component"
"""A reward component took one value on every explored state."""
SATURATED_COMPONENT = "saturated_component"
"""A reward component sat at its maximum or minimum on almost every explored state."""
EXPERT_DISAGREEMENT = "expert_disagreement"
"""The reward does not rise along the expert's demonstrations (rank correlation with the
demonstration's progress below the threshold)."""
IGNORES_OBJECT = "ignores_object"
"""Manipulation: the reward does not follow the object's progress toward the goal along the
expert's demonstrations."""
REWARDS_FAILURE = "rewards_failure"
"""The reward rises as the robot approaches a fall (it pays for falling)."""
IMPLAUSIBLE = "implausible_behaviour"
"""Physically implausible behaviour for the instruction: falling or tipping over when asked to
move, an object knocked off the table."""
ACTION_SATURATION = "action_saturation"
"""Most actions sit at the action-space bounds (bang-bang control)."""

KINDS: tuple[str, ...] = (
    PROGRAM_FAILURE, NO_SUCCESS, REGRESSION, REWARD_HACKING, CONSTANT_COMPONENT,
    SATURATED_COMPONENT, EXPERT_DISAGREEMENT, IGNORES_OBJECT, REWARDS_FAILURE, IMPLAUSIBLE,
    ACTION_SATURATION,
)  # fmt: skip
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
"""From most to least severe."""


@dataclass
class Evidence:
    """Where a finding shows, concretely."""

    trajectory: str = ""
    """Id of the trajectory the steps index (``free/0``, ``demo/1``, ``branch/1@45``), or
    ``metrics.csv`` for training curves."""
    steps: list[int] = field(default_factory=list)
    """Step indices in that trajectory (step ``i`` is the state after action ``i``), or
    environment steps of training evaluations."""
    values: dict[str, list[float]] = field(default_factory=dict)
    """Named values at ``steps`` (same order)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Summary numbers (correlations, fractions, counts ...)."""
    frames: list[str] = field(default_factory=list)
    """Rendered frames at some of ``steps`` (paths relative to the version folder)."""
    clip: str | None = None
    """A short video around the first step (path relative to the version folder)."""


@dataclass
class Finding:
    """One error found by exploring a reward version."""

    kind: str
    severity: str
    message: str
    evidence: Evidence = field(default_factory=Evidence)
    subject: str = ""
    """What it is about (a component name, ``object``, ``height`` ...); part of :attr:`key`."""
    actions: list[str] = field(default_factory=list)
    """Candidate edits as feedback clauses, best first (may be empty: no known edit)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; use one of {SEVERITIES}")

    @property
    def key(self) -> str:
        """``kind`` or ``kind:subject``: the identity used to tell whether a finding is gone."""
        return f"{self.kind}:{self.subject}" if self.subject else self.kind

    @property
    def rank(self) -> int:
        """0 for errors, 1 for warnings, 2 for info."""
        return SEVERITIES.index(self.severity)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict`."""
        evidence = Evidence(**data.get("evidence", {}))
        return cls(
            kind=data["kind"], severity=data["severity"], message=data["message"], evidence=evidence,
            subject=data.get("subject", ""), actions=list(data.get("actions", [])),
        )  # fmt: skip


def triggering(findings: list[Finding]) -> list[Finding]:
    """The findings a correction must fix: those of the highest severity present among errors
    and warnings (info findings never trigger a correction)."""
    actionable = [f for f in findings if f.severity != "info"]
    if not actionable:
        return []
    top = min(f.rank for f in actionable)
    return [f for f in actionable if f.rank == top]


def save_findings(path: Path, findings: list[Finding], **extra: Any) -> None:
    """Write ``findings.json``: ``{"findings": [...], **extra}``."""
    write_json(path, {"findings": [f.to_dict() for f in findings], **extra})


def load_findings(path: Path) -> list[Finding]:
    """Read the findings of a ``findings.json`` (``[]`` if the file does not exist)."""
    if not path.exists():
        return []
    return [Finding.from_dict(f) for f in read_json(path).get("findings", [])]
