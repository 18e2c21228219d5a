"""The offline writer (``llm=offline``): a deterministic, documented, non-LLM reward writer.

It is **not** a language model. It reads the instruction against a stated grammar and the
card's vocabulary, composes named terms from a fixed library, and says what it understood;
when it cannot write the behaviour asked for it refuses (the CLI exits 1) and says what it can
write and that an LLM back-end (``llm=openai``) can do more. Runs record
``model = "rewardlab-offline-v1"`` so nobody mistakes it for an LLM. One module per job:

- :mod:`~rewardlab.generators.offline.grammar`: the grammar (behaviours, directions, speeds,
  body parts, object verbs and their opposites, "let go", "without touching ...", "slowly"),
  the parser, the per-phrase report, and the checks against the card (the goal's end state,
  the robot's degrees of freedom, its parts and objects);
- :mod:`~rewardlab.generators.offline.terms`: what the writer reads from a card, the term
  type, and rendering a plan as a program;
- :mod:`~rewardlab.generators.offline.compose`: the term library, composed per behaviour and
  modifier (tables of every term);
- :mod:`~rewardlab.generators.offline.refine`: feedback phrases and tags -> term edits, with
  what was not understood and a warning for a uniform rescale;
- :mod:`~rewardlab.generators.offline.writer`: the generator that puts them together.

The output is source code of the same kind an LLM writes (``compute_dense_reward(self,
action)`` returning ``(reward, components)``), and it goes through the same checks.
"""

from rewardlab.generators.offline.grammar import Understanding, understand
from rewardlab.generators.offline.refine import (
    feedback_edits,
    parse_terms,
    refine,
    refine_terms,
)
from rewardlab.generators.offline.terms import MODEL_NAME, Term, describe_scene
from rewardlab.generators.offline.writer import OfflineGenerator, offline_reward, plan_for

__all__ = [
    "MODEL_NAME", "OfflineGenerator", "Term", "Understanding", "describe_scene",
    "feedback_edits", "offline_reward", "parse_terms", "plan_for", "refine", "refine_terms", "understand",
]  # fmt: skip
