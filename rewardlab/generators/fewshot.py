"""Few-shot examples: a library of reward programs, retrieved by local text similarity.

Examples live in ``envs/<benchmark>/examples/*.py``; each starts with ``# task:``,
``# instruction:`` and ``# origin:`` comment lines. Retrieval is TF-IDF cosine similarity
over the instruction plus the vocabulary of the example's environment card, computed here
in pure Python (no model download), with the instruction weighted above the card's part
names. The task being solved is never its own example.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

from rewardlab.paths import data_dir
from rewardlab.tasks.cards import load_card
from rewardlab.tasks.registry import TaskSpec, get_task

_TOKEN = re.compile(r"[a-z]+")
INSTRUCTION_WEIGHT = 3
"""Instruction words count this many times more than the card's vocabulary."""
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "of",
        "and",
        "or",
        "as",
        "is",
        "it",
        "its",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "make",
        "do",
        "be",
        "possible",
    ]
)


@dataclass(frozen=True)
class Example:
    """One example reward program."""

    task: str
    instruction: str
    origin: str
    source: str


def tokens(text: str) -> list[str]:
    """Lower-case word tokens without stop words; ``snake_case`` names are split."""
    return [t for t in _TOKEN.findall(text.lower().replace("_", " ")) if t not in _STOP]


@cache
def load_examples() -> tuple[Example, ...]:
    """All example programs shipped in ``envs/*/examples``."""
    found = []
    for path in sorted(data_dir("envs").glob("*/examples/*.py")):
        text = path.read_text()
        meta = dict(re.findall(r"^# (task|instruction|origin): (.*)$", text, flags=re.MULTILINE))
        if "task" in meta and "instruction" in meta:
            found.append(Example(meta["task"], meta["instruction"], meta.get("origin", ""), text))
    return tuple(found)


def _card_words(card_ref: str) -> list[str]:
    card = load_card(card_ref)
    return [card.robot, card.robot_class, *card.parts]


def task_tokens(task: TaskSpec, instruction: str) -> list[str]:
    """Retrieval tokens of ``instruction`` on ``task``: the instruction (weighted) and the
    vocabulary of the task's card."""
    return tokens(" ".join([*[instruction] * INSTRUCTION_WEIGHT, *_card_words(task.card)]))


def _example_words(example: Example) -> list[str]:
    try:
        card_words = _card_words(get_task(example.task).card)
    except KeyError:  # an example for a task that is not registered: its words only
        card_words = []
    return tokens(" ".join([*[example.instruction] * INSTRUCTION_WEIGHT, *card_words]))


def rank(query: list[str], documents: list[list[str]]) -> list[float]:
    """TF-IDF cosine similarity of ``query`` to each document.

    Example:
        >>> rank(["hopper", "flip"], [["hopper", "forward"], ["hopper", "flip"], ["ant", "walk"]])[1] > 0.9
        True
    """
    n = len(documents)
    df = Counter(t for doc in documents for t in set(doc))
    idf = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}

    def vector(doc: list[str]) -> dict[str, float]:
        counts = Counter(doc)
        return {t: c * idf.get(t, math.log(1 + n) + 1.0) for t, c in counts.items()}

    q = vector(query)
    q_norm = math.sqrt(sum(v * v for v in q.values())) or 1.0
    scores = []
    for doc in documents:
        d = vector(doc)
        d_norm = math.sqrt(sum(v * v for v in d.values())) or 1.0
        scores.append(sum(q[t] * d.get(t, 0.0) for t in q) / (q_norm * d_norm))
    return scores


def most_similar(task: TaskSpec, instruction: str) -> tuple[Example, float] | None:
    """The example of another task most similar to ``instruction`` on ``task``'s card,
    from the same benchmark when it has examples."""
    others = [e for e in load_examples() if e.task != task.name]
    benchmark = task.card.split("/", 1)[0]
    same = [e for e in others if e.task.split("/", 1)[0] == benchmark]
    candidates = same or others  # prefer the same benchmark (same kind of card)
    if not candidates:
        return None
    query = task_tokens(task, instruction)
    scores = rank(query, [_example_words(e) for e in candidates])
    best = max(range(len(candidates)), key=lambda i: scores[i])
    return candidates[best], scores[best]
