"""The generator interface: one request in, one reply (with its record) out.

Back-ends (``offline``, ``openai``) implement :class:`Generator`. The loop that renders
prompts, extracts code, checks it and feeds errors back lives in
:mod:`rewardlab.generators.loop`, so every back-end gets the same checks and records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from rewardlab.tasks.registry import TaskSpec


@dataclass
class GenerationRequest:
    """Everything a back-end may use to write one reward program."""

    task: TaskSpec
    instruction: str
    messages: list[dict[str, str]]
    """Chat messages rendered from ``prompts/`` (what an LLM sees)."""
    attempt: int = 0
    """0 for the first try; n for the n-th retry after a rejected program."""
    previous_source: str | None = None
    """The reward version being refined (``None`` for a fresh generation); rejected attempts
    reach the back-end through ``messages`` and ``findings``."""
    findings: list[str] = field(default_factory=list)
    """Why the previous attempt was rejected by the checks."""
    sample: int = 0
    """Which of several samples of the same prompt this is (candidate search); part of the
    cache key so that K samples are K different replies."""
    feedback: list[str] = field(default_factory=list)
    """Feedback on the behaviour the previous reward version produced (a person's words,
    structured tags such as ``"too slow"``, or automatic findings)."""


@dataclass
class Reply:
    """A back-end's answer and what it cost."""

    text: str
    """Raw reply text (for LLMs: the whole message, code usually in a fenced block)."""
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0


class GeneratorError(RuntimeError):
    """A back-end could not produce a reply (server down, timeouts, bad credentials ...)."""


class WriterRefusal(GeneratorError):
    """The writer declines the instruction: it does not understand it (the message says what it
    read, what it can write, and what else to use). Retrying the same request changes nothing."""


class Generator(Protocol):
    """A reward-program writer."""

    name: str

    def propose(self, request: GenerationRequest) -> Reply:
        """Return a reply that should contain ``compute_dense_reward``."""
        ...


_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str, entry: str = "compute_dense_reward") -> str | None:
    """Pull the reward program out of an LLM reply.

    Takes the fenced code block that defines ``entry`` (the last one, if several do, since
    models often revise), else the first fenced block, else the reply itself if it defines
    ``entry`` outright; ``None`` when there is no code.

    Example:
        >>> extract_code("Sure!\\n```python\\ndef compute_dense_reward(self, action):\\n    return 1.0\\n```")
        'def compute_dense_reward(self, action):\\n    return 1.0\\n'
        >>> extract_code("I cannot help with that.") is None
        True
    """
    blocks = _FENCE.findall(text)
    defining = [b for b in blocks if f"def {entry}" in b]
    if defining:
        return defining[-1]
    if blocks:
        return blocks[0]
    if f"def {entry}" in text:
        start = text.index("def ")
        # keep imports written just above the function
        head = text[:start].rstrip().splitlines()
        imports = [ln for ln in head if ln.startswith(("import ", "from "))]
        return "\n".join([*imports, text[start:]]).strip() + "\n"
    return None
