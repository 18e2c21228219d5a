"""Memory: (finding, feedback, correction, outcome) records kept across runs, retrieved for new
tasks.

Every verified correction appends one :class:`MemoryRecord` per finding that triggered it to a
JSONL store (``e2cl.memory``, default ``<runs_dir>/.e2cl_memory.jsonl``). For a new round,
records of the same finding kind are retrieved by the similarity of their task's vocabulary
(instruction and card words, TF-IDF cosine as in :mod:`rewardlab.generators.fewshot`) and used
twice:

* to choose among a finding's candidate edits (:func:`choose_action`): an edit that fixed the
  same kind of finding on similar tasks scores up, one that was refused scores down (so a round
  after a refused correction tries another edit instead of repeating it);
* as few-shot guidance lines shown to the reward writer (:func:`guidance_lines`), in square
  brackets (evidence, not an instruction, for the offline writer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rewardlab.e2cl.feedback import evidence_text
from rewardlab.e2cl.findings import Finding
from rewardlab.generators.fewshot import rank, task_tokens
from rewardlab.tasks.registry import TaskSpec


@dataclass
class MemoryRecord:
    """One finding that triggered a correction, the feedback given, and what came of it."""

    task: str
    instruction: str
    kind: str
    subject: str
    message: str
    action: str | None
    """The edit chosen for this finding (``None``: the message alone was sent)."""
    outcome: str
    """``accepted`` or ``refused``."""
    reason: str = ""
    feedback: list[str] = field(default_factory=list)
    """Every feedback line of the correction."""
    words: list[str] = field(default_factory=list)
    """The task's retrieval tokens (:func:`rewardlab.generators.fewshot.task_tokens`)."""
    run: str = ""
    parent: int | None = None
    version: int | None = None
    diff: str = ""
    """The correction's ``diff.patch`` (first 2,000 characters)."""
    success_before: float | None = None
    success_after: float | None = None
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))


class Memory:
    """The JSONL store at ``path`` (``None``: no memory; nothing is read or written)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path).expanduser() if path else None

    def load(self) -> list[MemoryRecord]:
        """Every readable record (malformed lines are skipped)."""
        if self.path is None or not self.path.exists():
            return []
        known = {f.name for f in fields(MemoryRecord)}
        out = []
        for line in self.path.read_text().splitlines():
            try:
                data = json.loads(line)
                out.append(MemoryRecord(**{k: v for k, v in data.items() if k in known}))
            except (ValueError, TypeError):
                continue
        return out

    def add(self, records: Iterable[MemoryRecord]) -> None:
        """Append ``records`` (one JSON line each)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for record in records:
                f.write(json.dumps(asdict(record), default=str) + "\n")

    def similar(
        self, task: TaskSpec, instruction: str, kinds: set[str]
    ) -> list[tuple[MemoryRecord, float]]:
        """Records of the finding ``kinds``, most similar task first, with their similarity."""
        candidates = [r for r in self.load() if r.kind in kinds]
        if not candidates:
            return []
        scores = rank(task_tokens(task, instruction), [r.words or [r.task] for r in candidates])
        return sorted(zip(candidates, scores, strict=True), key=lambda p: -p[1])


def choose_action(
    finding: Finding, retrieved: Sequence[tuple[MemoryRecord, float]], tried: Iterable[str] = ()
) -> str | None:
    """The finding's candidate edit with the best record: ``+similarity`` for each past
    acceptance of that edit on the same kind of finding, ``-similarity`` for each refusal; ties
    keep the detector's order. Edits in ``tried`` (already refused for this very finding on
    this very version) are never chosen again; ``None`` when no candidate is left.

    Example:
        >>> f = Finding("no_success", "warning", "never completed", actions=["more progress", "more upright"])
        >>> refused = MemoryRecord("t", "i", "no_success", "", "", "more progress", "refused")
        >>> choose_action(f, [(refused, 1.0)]), choose_action(f, [], tried=["more progress", "more upright"])
        ('more upright', None)
    """
    skip = set(tried)
    candidates = [a for a in finding.actions if a not in skip]
    if not candidates:
        return None

    def score(action: str) -> float:
        return sum((s if r.outcome == "accepted" else -s) for r, s in retrieved
                   if r.kind == finding.kind and r.action == action)  # fmt: skip

    best = max(range(len(candidates)), key=lambda i: (score(candidates[i]), -i))
    return candidates[best]


def refused_here(
    records: Iterable[MemoryRecord], run: str, parent: int, finding: Finding
) -> list[str]:
    """Edits already refused for ``finding`` (same kind and subject) on version ``parent`` of
    run ``run``."""
    return [r.action for r in records if r.run == run and r.parent == parent and r.kind == finding.kind
            and r.subject == finding.subject and r.outcome == "refused" and r.action]  # fmt: skip


def guidance_lines(retrieved: Sequence[tuple[MemoryRecord, float]], k: int) -> list[str]:
    """The ``k`` most similar records as bracketed lines for the reward writer."""
    lines = []
    for record, _ in retrieved[: max(k, 0)]:
        what = f"the edit '{record.action}'" if record.action else "feedback without an edit"
        after = (f", success {record.success_before:.2f} -> {record.success_after:.2f}"
                 if record.success_before is not None and record.success_after is not None else "")  # fmt: skip
        reason = f": {record.reason}" if record.outcome != "accepted" and record.reason else ""
        text = evidence_text(f"memory: on {record.task}, for a similar finding ({record.kind}: "
                             f"{record.message[:160]}) {what} was {record.outcome}{after}{reason[:200]}")  # fmt: skip
        lines.append(f"[{text}]")
    return lines
