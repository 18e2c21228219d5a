"""Feedback from findings: templated natural-language lines, optionally summarised by an LLM.

Each line carries a finding's measured message in square brackets (evidence: the offline
synthesizer does not parse it, an LLM reads it) followed by the edit chosen for it, in the
refinement vocabulary every reward writer understands (``drop <term>``, ``more <term>``,
``falls``, ``ignores the object`` ...; see :mod:`rewardlab.generators.offline`)::

    [the reward pays for falling: it rises as height ... ] suggested edit: drop height

With an LLM back-end (``llm.backend`` other than ``offline``) the findings are also summarised
by the model (:func:`summarise`, prompt ``prompts/e2cl_summary.j2``); the call goes through the
run's generator (cache, replay) and is recorded like every other call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from rewardlab.config import RewardLabConfig
from rewardlab.e2cl.findings import Finding
from rewardlab.generators.base import GenerationRequest, GeneratorError
from rewardlab.generators.loop import Attempt, call_cost, make_generator
from rewardlab.generators.prompts import render
from rewardlab.rundir import write_json
from rewardlab.tasks.registry import TaskSpec

EDIT_MARK = "suggested edit:"


def evidence_text(text: str) -> str:
    """``text`` safe inside square brackets (inner brackets become parentheses)."""
    return text.replace("[", "(").replace("]", ")").strip()


def feedback_line(finding: Finding, action: str | None) -> str:
    """One feedback line: the finding's message as bracketed evidence, then the edit.

    Example:
        >>> from rewardlab.e2cl.findings import Finding
        >>> feedback_line(Finding("constant_component", "warning", "component bias is constant"), "drop bias")
        '[component bias is constant] suggested edit: drop bias'
    """
    line = f"[{evidence_text(finding.message)}]"
    return f"{line} {EDIT_MARK} {action}" if action else line


def feedback_lines(findings: Sequence[Finding], chosen: dict[str, str | None]) -> list[str]:
    """A line per finding, with the edit ``chosen[finding.key]`` (its first candidate when not
    given)."""
    return [
        feedback_line(f, chosen.get(f.key, f.actions[0] if f.actions else None)) for f in findings
    ]


def summarise(
    cfg: RewardLabConfig, task: TaskSpec, source: str, findings: Sequence[Finding], out_dir: Path
) -> str | None:
    """The LLM's short summary of ``findings`` (``None`` for the offline writer, which is not a
    language model, or when the back-end fails; the failure is recorded). The call is recorded
    as ``<out_dir>/llm/attempt_0.json`` (messages, reply, model, usage, cost)."""
    if cfg.llm.backend == "offline":
        return None
    messages = [
        {"role": "system", "content": render("system")},
        {"role": "user", "content": render("e2cl_summary", instruction=task.instruction, source=source.rstrip(),
                                           findings=[f.to_dict() for f in findings])},
    ]  # fmt: skip
    attempt = Attempt(index=0, messages=messages)
    try:
        generator = make_generator(cfg.llm)
        reply = generator.propose(
            GenerationRequest(task=task, instruction=task.instruction, messages=messages)
        )
    except GeneratorError as exc:
        attempt.error = f"summary failed: {exc}"
        write_json(out_dir / "llm" / "attempt_0.json", asdict(attempt))
        return None
    attempt.reply = asdict(reply)
    attempt.cost_usd = call_cost(
        reply, (cfg.llm.price_input_per_mtok, cfg.llm.price_output_per_mtok)
    )
    write_json(out_dir / "llm" / "attempt_0.json", asdict(attempt))
    text = " ".join(reply.text.split())
    return text or None
