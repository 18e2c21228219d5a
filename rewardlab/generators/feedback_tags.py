"""Structured feedback tags: what a person can tick on the review page, per task family, and
the reward edit each one stands for.

A tag travels to ``rewardlab refine`` as ``tags=[name,...]``; the command turns it into the
feedback line ``phrase`` (underscores become spaces), which every reward writer reads: an LLM
reads the words, and the offline writer reads the phrase with its feedback grammar
(:mod:`rewardlab.generators.offline.refine`, which defines what each phrase does: ``edits``).
This module is the one place the tag vocabulary is defined; the page offers :func:`tags_for`
the task, and refuses any other tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardlab.generators.offline.refine import feedback_edits

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
    family: str

    @property
    def phrase(self) -> str:
        """The feedback line the reward writer reads."""
        return self.name.replace("_", " ")

    @property
    def edits(self) -> tuple[tuple[str, str], ...]:
        """``(op, term)``: what the offline writer does with the phrase (its feedback grammar)."""
        return tuple(feedback_edits([self.phrase], set())[0])


TAGS: tuple[FeedbackTag, ...] = (
    FeedbackTag("too_slow", "too slow", LOCOMOTION),
    FeedbackTag("too_fast", "too fast", LOCOMOTION),
    FeedbackTag("falls", "falls", LOCOMOTION),
    FeedbackTag("falls_forward", "falls forward", LOCOMOTION),
    FeedbackTag("falls_backward", "falls backward", LOCOMOTION),
    FeedbackTag("jerky", "jerky", LOCOMOTION),
    FeedbackTag("drifts", "drifts", LOCOMOTION),
    FeedbackTag("spins", "spins", LOCOMOTION),
    FeedbackTag("misses_the_object", "misses the object", MANIPULATION),
    FeedbackTag("drops_it", "drops it", MANIPULATION),
    FeedbackTag("pushes_instead_of_grasps", "pushes instead of grasps", MANIPULATION),
    FeedbackTag("ignores_the_object", "ignores the object", MANIPULATION),
    FeedbackTag("stops_short_of_the_goal", "stops short of the goal", MANIPULATION),
    FeedbackTag("jerky_arm", "jerky arm", MANIPULATION),
)  # fmt: skip


def family_of(task: str) -> str:
    """The task family of a registered task name (``mujoco/hopper_forward`` -> locomotion);
    unknown benchmarks count as locomotion."""
    return FAMILIES.get(task.split("/", 1)[0], LOCOMOTION)


def tags_for(task: str) -> tuple[FeedbackTag, ...]:
    """The tags offered for ``task``, in display order."""
    family = family_of(task)
    return tuple(t for t in TAGS if t.family == family)
