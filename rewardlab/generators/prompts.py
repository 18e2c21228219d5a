"""Prompt templates (Jinja, in ``prompts/``) rendered into chat messages."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from rewardlab.paths import data_dir
from rewardlab.tasks.registry import TaskSpec


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("prompts"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # plain-text prompts, never HTML  # noqa: S701
    )


def render(template: str, **context: Any) -> str:
    """Render ``prompts/<template>.j2``."""
    return _env().get_template(f"{template}.j2").render(**context).strip()


def generation_messages(
    task: TaskSpec, instruction: str, *, few_shot: bool = False
) -> list[dict[str, str]]:
    """The messages asking for a reward program for ``instruction`` on ``task``: zero-shot,
    or few-shot with the most similar other task's example program
    (:mod:`rewardlab.generators.fewshot`)."""
    from rewardlab.generators.fewshot import most_similar

    found = most_similar(task, instruction) if few_shot else None
    user = render(
        "generate", card=task.load_card(), card_text=task.card_text(), instruction=instruction,
        obs=False, example=found[0] if found else None,
    )  # fmt: skip
    return [{"role": "system", "content": render("system")}, {"role": "user", "content": user}]


def fix_messages(
    messages: list[dict[str, str]], reply: str, previous_source: str, findings: list[str]
) -> list[dict[str, str]]:
    """Continue a conversation: the model's reply, then the reasons its program was rejected."""
    fix = render("fix", previous_source=previous_source, findings=findings)
    return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": fix}]


def refinement_messages(
    task: TaskSpec,
    instruction: str,
    previous_source: str,
    feedback: list[str],
    evidence: dict[str, Any],
) -> list[dict[str, str]]:
    """Text2Reward's feedback prompt as a conversation: the original request, the previous
    program as the assistant's answer, then what training showed and the feedback.

    ``evidence`` holds ``timesteps``, ``episodes``, ``success_rate``, ``progress``,
    ``components`` (name -> {mean, share}) and an optional ``observation`` sentence.
    """
    context = {"observation": "", "components": {}, **evidence, "feedback": feedback}
    return [
        *generation_messages(task, instruction),
        {"role": "assistant", "content": f"```python\n{previous_source.rstrip()}\n```"},
        {"role": "user", "content": render("feedback", **context)},
    ]
