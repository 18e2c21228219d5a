"""The writer behind ``llm=offline``: read, compose, refine, render, and report.

:class:`OfflineGenerator` answers a :class:`~rewardlab.generators.base.GenerationRequest` with a
reply whose text starts with what it understood (one line per phrase: used and as what, not
used and why, not understood), then the program in a code block. It raises
:class:`~rewardlab.generators.base.WriterRefusal` (the CLI exits 1) when it cannot write the
behaviour asked for. The reply's ``params`` carry the same reading as data: the behaviour, each
term's ``sense`` and the phrases.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rewardlab.generators.base import GenerationRequest, Reply, WriterRefusal, extract_code
from rewardlab.generators.offline.compose import (
    manipulation_library,
    plan_locomotion,
    plan_manipulation,
)
from rewardlab.generators.offline.grammar import Understanding, understand
from rewardlab.generators.offline.refine import parse_terms, refine
from rewardlab.generators.offline.terms import (
    MODEL_NAME,
    RewardPlan,
    Term,
    locomotion_library,
    render_plan,
)
from rewardlab.tasks.registry import TaskSpec


def plan_for(
    task: TaskSpec, instruction: str
) -> tuple[Understanding, RewardPlan | None, dict[str, Term]]:
    """``(reading, plan, terms feedback may add)``; the plan is ``None`` when the writer refuses."""
    u = understand(task, instruction)
    if u.refusal is not None:
        return u, None, {}
    if u.scene is not None:
        plan = plan_manipulation(u.scene, u)
        return u, plan, manipulation_library(plan)
    assert u.robot is not None
    plan = plan_locomotion(u.robot, u)
    return (
        u,
        plan,
        {
            **locomotion_library(
                u.robot, u.direction if u.behaviour == "locomotion" and u.direction else "+x"
            ),
            **{t.name: t for t in plan.terms},
        },
    )


class OfflineGenerator:
    """The deterministic writer behind ``llm=offline`` (no network, no model)."""

    name = "offline"

    def propose(self, request: GenerationRequest) -> Reply:
        u, plan, library = plan_for(request.task, request.instruction)
        if plan is None:
            assert u.refusal is not None
            lines = u.report()
            read = f" (read: {'; '.join(lines)})" if lines else ""
            raise WriterRefusal(f"{u.refusal}{read}")
        notes = [f"Behaviour: {plan.behaviour}."]
        if u.phrases:
            notes.append("Read: " + "; ".join(u.report()) + ".")
        warnings: list[str] = []
        if request.previous_source is not None and request.feedback:
            previous = parse_terms(request.previous_source)
            if previous is None:
                notes.append(
                    "The previous program is not in term form; re-planned from the instruction."
                )
            else:
                comments = {t.name: (t.comment, t.sense) for t in [*library.values(), *plan.terms]}
                plan.terms = [replace(t, comment=comments.get(t.name, (t.comment, ""))[0],
                                      sense=comments.get(t.name, ("", t.sense))[1]) for t in previous]  # fmt: skip
            result = refine(plan.terms, request.feedback, library)
            plan.terms = result.terms
            notes.append(f"Feedback applied: {'; '.join(result.log) or 'no recognised edit'}.")
            if result.unknown:
                notes.append(f"Not understood: {'; '.join(result.unknown)}.")
            warnings = result.warnings
            notes += [f"Warning: {w}." for w in warnings]
        source = render_plan(plan, request.instruction)
        terms = ", ".join(
            f"{t.name} (x{t.weight:g}{', ' + t.sense if t.sense else ''})" for t in plan.terms
        )
        text = f"{' '.join(notes)} Terms: {terms}.\n\n```python\n{source}```\n"
        params: dict[str, Any] = {
            "behaviour": plan.behaviour,
            "terms": {t.name: t.sense for t in plan.terms},
            "phrases": [
                {"text": p.text, "status": p.status, "note": p.note}
                for p in u.phrases
                if p.status != "filler"
            ],
            "report": [*notes, *(f"term {t.name} x{t.weight:g}: {t.comment}" for t in plan.terms)],
            "warnings": warnings,
        }
        return Reply(text=text, model=MODEL_NAME, params=params)


def offline_reward(task: TaskSpec, instruction: str | None = None) -> str:
    """The program ``llm=offline`` writes for ``task`` (its own instruction by default).

    Example:
        >>> from rewardlab.tasks import get_task
        >>> "def compute_dense_reward" in offline_reward(get_task("metaworld/drawer_close"))
        True
    """
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=instruction or task.instruction, messages=[])
    )
    source = extract_code(reply.text)
    if source is None:  # the writer always writes a code block; this would be a bug
        raise RuntimeError(f"offline writer wrote no code for {task.name}:\n{reply.text}")
    return source
