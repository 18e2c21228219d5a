"""Successive halving over candidate rewards, judged by the task's success metric.

Rung ``r`` trains every surviving candidate up to ``min_steps * eta**r`` environment steps
(continuing from its own checkpoint, never from scratch), ranks the candidates by the task's
evaluation success at that budget (ties: task progress, then candidate order), and promotes
them to the next rung by one of two rules (``promotion``):

* ``rank``: the top ``max(1, n // eta)`` (Jamieson & Talwalkar 2016), whatever the margin;
* ``interval`` (the default): those, plus every other candidate that is not *clearly worse*
  than the best (:func:`clearly_worse`): its success interval (Wilson, over the decision
  episodes) overlaps the best's and, when both have the same success rate, its progress
  interval overlaps the best's too. A decision that the
  evaluation cannot make is not made: with 5 episodes, 0/5 against 1/5 successes pruned
  the better program of the search experiment; with the intervals both go on.

Results without intervals (``success_low`` ...) count as exact, and then both rules agree
except on exact ties. The last rung is the largest budget not above ``max_steps``; a lone
survivor keeps training up to it. As soon as a candidate's evaluation reaches
``target_success`` the search stops (IsaacLabEureka's early stop). Candidates whose training
failed are dropped at the rung where they failed.

The scheduler is pure: training is a callable, so the logic is tested on recorded budgets.

Example:
    >>> rung_budgets(1000, 2, 5000)
    [1000, 2000, 4000]
    >>> rung_budgets(1000, 3, 9000, quantum=768)
    [1536, 4608]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TrainFn = Callable[[list[str], int], dict[str, dict[str, Any]]]
"""``train(keys, budget) -> {key: result}``: continue every candidate in ``keys`` to
``budget`` steps; a result holds ``status`` (``"ok"`` or a failure), ``timesteps``,
``success`` and ``progress`` (the last evaluation)."""


def rung_budgets(min_steps: int, eta: int, max_steps: int, *, quantum: int = 1) -> list[int]:
    """The rung budgets ``b, b*eta, b*eta**2, ...`` not above ``max_steps``.

    Args:
        min_steps: First rung's budget; rounded up to a multiple of ``quantum``.
        eta: Growth factor between rungs (and 1/eta of the candidates survive each rung).
        max_steps: Upper bound of the last rung (at least one rung is always returned).
        quantum: Training granularity (PPO: ``n_steps * n_envs``), so a rung ends exactly
            where the checkpoint it resumes from was written.
    """
    if eta < 2:
        raise ValueError("search.eta must be at least 2")
    quantum = max(1, int(quantum))
    first = max(quantum, math.ceil(max(1, min_steps) / quantum) * quantum)
    budgets = [first]
    while budgets[-1] * eta <= max_steps:
        budgets.append(budgets[-1] * eta)
    return budgets


def survivors(n: int, eta: int) -> int:
    """How many of ``n`` ranked candidates go on to the next rung."""
    return max(1, n // eta)


def score(result: dict[str, Any]) -> tuple[float, float]:
    """Ranking key of a rung result: task success, then task progress."""
    return float(result.get("success", 0.0)), float(result.get("progress", 0.0))


PROMOTIONS = ("interval", "rank")
"""Promotion rules of :func:`successive_halving` (see the module docstring)."""


def bounds(result: dict[str, Any], metric: str) -> tuple[float, float]:
    """``(low, high)`` of ``success`` or ``progress`` in a rung result (the point value when
    the result carries no interval)."""
    value = float(result.get(metric, 0.0) or 0.0)
    low, high = result.get(f"{metric}_low"), result.get(f"{metric}_high")
    return (value if low is None else float(low)), (value if high is None else float(high))


def clearly_worse(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether result ``a`` is worse than ``b`` beyond the evaluation's noise: ``a``'s success
    interval lies entirely below ``b``'s, or both have the same success rate (typically 0, early
    in training) and ``a``'s progress interval lies entirely below ``b``'s. Overlapping success
    intervals with different rates are never separated by progress (on tasks whose progress
    is the success flag, progress would only repeat the success comparison without Wilson's
    care at 0).

    Example:
        >>> clearly_worse({"success": 0.0, "success_low": 0.0, "success_high": 0.16},
        ...               {"success": 0.2, "success_low": 0.08, "success_high": 0.42})
        False
        >>> clearly_worse({"success": 0.0}, {"success": 0.2})
        True
    """
    (a_low, a_high), (b_low, b_high) = bounds(a, "success"), bounds(b, "success")
    if a_high < b_low:
        return True
    if b_high < a_low or score(a)[0] != score(b)[0]:
        return False
    return bounds(a, "progress")[1] < bounds(b, "progress")[0]


def promote(
    ranked: list[str], results: dict[str, dict[str, Any]], eta: int, rule: str = "interval"
) -> list[str]:
    """The candidates of ``ranked`` (best first) that go on to the next rung under ``rule``."""
    if rule not in PROMOTIONS:
        raise ValueError(f"unknown promotion rule {rule!r}; known: {', '.join(PROMOTIONS)}")
    keep = survivors(len(ranked), eta) if ranked else 0
    top = ranked[:keep]
    if rule == "rank" or not ranked:
        return top
    best = results[ranked[0]]
    return top + [k for k in ranked[keep:] if not clearly_worse(results[k], best)]


@dataclass
class HalvingResult:
    """What :func:`successive_halving` did."""

    history: dict[str, list[dict[str, Any]]]
    """Per candidate, its result at every rung it was trained in (``budget`` added)."""
    ranking: list[str]
    """Candidates best first: later elimination first, then by score at their last rung."""
    stopped_at: dict[str, int] = field(default_factory=dict)
    """The last budget each candidate was trained to."""
    pruned: dict[str, int] = field(default_factory=dict)
    """Candidates eliminated (by rank or by a failure), at which budget."""
    failed: dict[str, str] = field(default_factory=dict)
    """Candidates whose training failed, with the reason."""
    target_reached: str | None = None
    """The candidate whose evaluation reached ``target_success`` (the search stops)."""
    calls: list[tuple[list[str], int]] = field(default_factory=list)
    """Every ``train`` call made: ``(keys, budget)``."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    """Per rung that promoted: ``budget``, ``ranked`` (best first), ``promoted``, ``by_rank``
    (what the rank rule alone would have promoted) and ``pruned``."""

    @property
    def best(self) -> str | None:
        """The best candidate (``None`` when none trained successfully)."""
        ok = [k for k in self.ranking if k not in self.failed]
        return ok[0] if ok else None


def successive_halving(
    keys: Sequence[str],
    budgets: Sequence[int],
    eta: int,
    train: TrainFn,
    *,
    target_success: float = 0.0,
    on_rung: Callable[[int, int, HalvingResult], None] | None = None,
    promotion: str = "interval",
) -> HalvingResult:
    """Run successive halving of ``keys`` over ``budgets``.

    Args:
        keys: Candidate identifiers, in their tie-break order.
        budgets: Rung budgets (see :func:`rung_budgets`).
        eta: Keep ``max(1, n // eta)`` candidates after each rung (and, with
            ``promotion="interval"``, every candidate not clearly worse than the best).
        train: Continues candidates to a budget (see :data:`TrainFn`).
        target_success: Stop once a candidate's success reaches it (0 = never).
        on_rung: Called after every rung with ``(rung index, budget, state so far)``.
        promotion: ``interval`` or ``rank`` (see the module docstring).

    Returns:
        The :class:`HalvingResult`.
    """
    result = HalvingResult(history={k: [] for k in keys}, ranking=[])
    alive = list(keys)
    eliminated: list[list[str]] = []  # groups, earliest elimination first, each best first
    order = {k: i for i, k in enumerate(keys)}

    def rank(group: list[str]) -> list[str]:
        return sorted(group, key=lambda k: (*(-v for v in score(result.history[k][-1])), order[k]))

    for r, budget in enumerate(budgets):
        if not alive:
            break
        result.calls.append((list(alive), budget))
        outcomes = train(list(alive), budget)
        for key in alive:
            out = dict(
                outcomes.get(key) or {"status": "missing", "error": "no result for this candidate"}
            )
            out["budget"] = budget
            result.history[key].append(out)
            result.stopped_at[key] = budget
            if out.get("status") != "ok":
                result.failed[key] = str(out.get("error") or out.get("status"))
                result.pruned[key] = budget
        failed_now = [k for k in alive if k in result.failed and result.pruned.get(k) == budget]
        ranked = rank([k for k in alive if k not in result.failed])
        reached = [
            k
            for k in ranked
            if target_success > 0 and score(result.history[k][-1])[0] >= target_success
        ]
        last = r == len(budgets) - 1
        if reached or last:
            eliminated.append(failed_now)
            eliminated.append(ranked)
            result.target_reached = reached[0] if reached else None
            alive = []
        else:
            latest = {k: result.history[k][-1] for k in ranked}
            promoted = promote(ranked, latest, eta, promotion)
            alive, losers = promoted, [k for k in ranked if k not in promoted]
            result.decisions.append({"budget": budget, "ranked": ranked, "promoted": promoted,
                                     "by_rank": promote(ranked, latest, eta, "rank"), "pruned": losers})  # fmt: skip
            for key in losers:
                result.pruned[key] = budget
            eliminated.append(failed_now)
            eliminated.append(losers)
        if on_rung is not None:
            result.ranking = [k for group in reversed(eliminated) for k in group] + alive
            on_rung(r, budget, result)
    result.ranking = [k for group in reversed(eliminated) for k in group] + alive
    # failed candidates go last whatever rung they failed in
    result.ranking = [k for k in result.ranking if k not in result.failed] + [
        k for k in result.ranking if k in result.failed
    ]
    return result
