"""Success given as an expression over the card's attributes (``task.success="<expr>"``):
vetted, compiled and run like reward code, so it lives with the reward programs; the task
layer names it (:data:`rewardlab.tasks.success.METRICS` ``"expression"``) without importing it.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from rewardlab.reward.program import RewardProgramError, RewardRuntimeError, compile_for_task
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import Metric, SuccessInputs


class Expression(Metric):
    """A success condition over the card's attributes (``task.success="<expression>"``), e.g.
    ``self.hopper.top.position_x < -2.0``: true at any step of the episode = success.

    The expression is untrusted text: it becomes a one-line program that goes through the same
    vetting, attribute check and contained execution as reward code
    (:func:`rewardlab.reward.program.compile_for_task`); it is evaluated in every world, on that
    world's proxy. A step on which it fails (raises, non-finite) counts as false.
    """

    def __init__(self, n: int, expr: str, card: str) -> None:
        self.n, self.expr, self.card = n, expr, card
        self.program = compile_expression(expr, card)
        self.success = np.zeros(n, dtype=bool)

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        self.success[mask] = False

    def update(self, inputs: SuccessInputs) -> None:
        if len(inputs.worlds) != self.n:
            raise ValueError(
                f"an expression metric needs {self.n} per-world proxies, got {len(inputs.worlds)}"
            )
        for i, world in enumerate(inputs.worlds):
            try:
                value, _ = self.program(world, None, None)
            except RewardRuntimeError:
                continue
            self.success[i] |= bool(value)


def expression_source(expr: str) -> str:
    """The program a success expression becomes (vetted and run like reward code)."""
    return f"def compute_dense_reward(self, action):\n    return 1.0 if ({expr}) else 0.0\n"


def compile_expression(expr: str, card: str) -> Any:
    """Vet and compile a success expression over ``card``'s attributes; raises
    :class:`ValueError` with the vetting's findings (an unknown
    attribute, a forbidden name ...) or :class:`ValueError` for text that is not one
    expression."""
    try:
        ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a Python expression ({exc.msg})") from None
    try:
        return compile_for_task(
            expression_source(expr), TaskSpec(name=f"{card.split('/')[0]}/expression", card=card)
        )
    except RewardProgramError as exc:
        raise ValueError("; ".join(str(f) for f in exc.findings) or str(exc)) from None
