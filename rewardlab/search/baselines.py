"""The two baselines of the normalized score: a *sparse* reward and an *expert* reward.

Eureka normalizes a method's task score by the scores reached with the task's sparse reward
(the success criterion alone) and with the human-written reward:
``(method - sparse) / |expert - sparse|``.

* **sparse** (:func:`sparse_program`): a reward program that pays 1 on every step where the
  task's success condition holds in the current state and 0 otherwise, written from the task's
  success spec. Success metrics that are stateful over an episode become their per-state
  condition (documented per metric in :data:`SPARSE_FORMS`); the benchmark's own success flag
  (MetaWorld) is not readable by reward programs, so such tasks have no sparse baseline.
* **expert** (:func:`expert_program`): the hand-written example program of the task in
  ``envs/<benchmark>/examples`` when there is one (they restate the benchmark's reward in card
  terms, or are written by hand for tasks the benchmark has no reward for), else the
  benchmark's own reward (``None``: train on the env reward).
"""

from __future__ import annotations

import math
from typing import Any

from rewardlab.tasks.registry import TaskSpec

SPARSE_FORMS = {
    "displacement": "1 while the position is at least |distance| past its start in the goal direction",
    "flip": "1 while the pitch has turned `turns` full turns in the flip direction and the body is upright and high",
    "jump": "1 while the height is at least min_height",
    "hold_height": "1 while the height is within its bounds (and the up axis at least min_up)",
    "oscillate": "1 while the limb angle is at least amplitude/2 away from its start (and the up axis at least min_up)",
}
"""The per-state condition each success metric becomes."""


def _attr(path: str) -> str:
    return f"self.{path}"


def _start(task: TaskSpec, path: str) -> float:
    return float(task.initial_state().get(_attr(path), 0.0))


def sparse_condition(task: TaskSpec) -> str | None:
    """The Python condition (on ``self``) of the task's success in one state, or ``None``."""
    p: dict[str, Any] = dict(task.success.params)
    metric = task.success.metric
    if metric == "displacement":
        sign = 1.0 if float(p["distance"]) >= 0 else -1.0
        x0 = _start(task, p["position"])
        return f"{sign!r} * ({_attr(p['position'])} - {x0!r}) >= {abs(float(p['distance']))!r}"
    if metric == "flip":
        a0 = _start(task, p["angle"])
        turn = float(p.get("turns", 1.0)) * 2 * math.pi
        tol = float(p.get("tolerance", 0.6))
        angle = _attr(p["angle"])
        return (
            f"{float(p['direction'])!r} * ({angle} - {a0!r}) >= {turn!r} "
            f"and abs((({angle} + math.pi) % (2 * math.pi)) - math.pi) < {tol!r} "
            f"and {_attr(p['height'])} >= {float(p['min_height'])!r}"
        )
    if metric == "jump":
        return f"{_attr(p['height'])} >= {float(p['min_height'])!r}"
    if metric == "hold_height":
        parts = []
        if "min_height" in p:
            parts.append(f"{_attr(p['height'])} >= {float(p['min_height'])!r}")
        if "max_height" in p:
            parts.append(f"{_attr(p['height'])} <= {float(p['max_height'])!r}")
        if p.get("up"):
            parts.append(f"{_attr(p['up'])} >= {float(p.get('min_up', -1.0))!r}")
        return " and ".join(parts) or None
    if metric == "oscillate":
        a0 = _start(task, p["angle"])
        cond = f"abs({_attr(p['angle'])} - {a0!r}) >= {float(p['amplitude']) / 2!r}"
        if p.get("up"):
            cond += f" and {_attr(p['up'])} >= {float(p.get('min_up', 0.5))!r}"
        return cond
    return None


def sparse_program(task: TaskSpec) -> str | None:
    """A reward program paying the task's per-state success indicator (``None`` when the
    metric cannot be written in card terms)."""
    cond = sparse_condition(task)
    if cond is None:
        return None
    head = "import math\n\n\n" if "math." in cond else ""
    form = SPARSE_FORMS.get(task.success.metric, "")
    return (
        f"{head}def compute_dense_reward(self, action):\n"
        f'    """Sparse baseline for {task.name}: {form}."""\n'
        f"    success = 1.0 if {cond} else 0.0\n"
        '    return success, {"success": success}\n'
    )


def expert_program(task: TaskSpec) -> tuple[str | None, str]:
    """``(source, origin)`` of the task's expert reward: its example program, else
    ``(None, ...)`` meaning the benchmark's own reward."""
    from rewardlab.generators.fewshot import load_examples

    for example in load_examples():
        if example.task == task.name:
            return example.source, f"example program ({example.origin or 'envs/*/examples'})"
    return None, "the benchmark's own reward"
