"""Structured feedback tags: what a person can tick on the review page, per task family, and
the reward edit each one stands for.

A tag travels to ``rewardlab refine`` as ``tags=[name,...]``; the command turns it into the
feedback line ``phrase`` (underscores become spaces), which every reward writer reads: an LLM
reads the words, and the offline synthesizer maps the phrase to ``edits`` (``(op, term)``
pairs in its vocabulary: ``up``/``down`` re-weight a term, ``add`` adds one from the library;
see :mod:`rewardlab.generators.offline`). This module is the one place the tag vocabulary is
defined; the page offers :func:`tags_for` the task, and refuses any other tag.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCOMOTION = "locomotion"
MANIPULATION = "manipulation"
FAMILIES = {"mujoco": LOCOMOTION, "metaworld": MANIPULATION, "maniskill": MANIPULATION}
"""Task family of each benchmark (the part of the task name before ``/``)."""


@dataclass(frozen=True)
class FeedbackTag:
    name: str
    """Identifier sent as ``tags=[...]``: the phrase with ``_`` for spaces."""
    label: str
    """What the page shows."""
    edits: tuple[tuple[str, str], ...]
    """``(op, term)`` edits of the offline synthesizer."""
    family: str

    @property
    def phrase(self) -> str:
        """The feedback line the reward writer reads."""
        return self.name.replace("_", " ")


TAGS: tuple[FeedbackTag, ...] = (
    FeedbackTag("too_slow", "too slow", (("up", "progress"),), LOCOMOTION),
    FeedbackTag("falls", "falls", (("add", "alive"), ("up", "upright")), LOCOMOTION),
    FeedbackTag("jerky", "jerky", (("up", "action"),), LOCOMOTION),
    FeedbackTag("drifts", "drifts", (("add", "stay"),), LOCOMOTION),
    FeedbackTag("spins", "spins", (("add", "steady"),), LOCOMOTION),
    FeedbackTag("misses_the_object", "misses the object", (("up", "reach"),), MANIPULATION),
    FeedbackTag("drops_it", "drops it", (("up", "grasp"), ("up", "lift")), MANIPULATION),
    FeedbackTag("pushes_instead_of_grasps", "pushes instead of grasps", (("add", "grasp"), ("up", "grasp")), MANIPULATION),
    FeedbackTag("ignores_the_object", "ignores the object", (("up", "reach"), ("up", "grasp"), ("up", "move")), MANIPULATION),
    FeedbackTag("stops_short_of_the_goal", "stops short of the goal", (("up", "move"), ("add", "goal")), MANIPULATION),
    FeedbackTag("jerky_arm", "jerky arm", (("up", "action"),), MANIPULATION),
)  # fmt: skip


def family_of(task: str) -> str:
    """The task family of a registered task name (``mujoco/hopper_forward`` -> locomotion);
    unknown benchmarks count as locomotion."""
    return FAMILIES.get(task.split("/", 1)[0], LOCOMOTION)


def tags_for(task: str) -> tuple[FeedbackTag, ...]:
    """The tags offered for ``task``, in display order."""
    family = family_of(task)
    return tuple(t for t in TAGS if t.family == family)


def phrase_edits() -> dict[str, list[tuple[str, str]]]:
    """``phrase -> edits`` of every tag (what the offline synthesizer adopts)."""
    return {t.phrase: list(t.edits) for t in TAGS}
