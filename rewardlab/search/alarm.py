"""Reward-hacking alarm: the generated return rises while the task's success stays flat.

A policy that learns to collect more of the *generated* reward without getting any better at
the task (measured by the task's own success metric, and its progress measure when one is
given) is exploiting the reward, not solving the task. :func:`hacking_alarm` compares the
first and last thirds of an evaluation curve (``metrics.csv``: ``mean_reward_return``,
``success_rate``, ``mean_progress``):

* the generated return must rise by at least ``min_rise`` relative to its starting level
  (``|start|``, floored at 1% of the largest |return| so a start near 0 still counts);
* success must not rise by more than ``flat_tol`` and must stay below ``1 - flat_tol`` (a
  task already solved is not being hacked);
* the progress measure, when given, must not rise either: not by more than ``flat_tol``, and
  not by ``min_rise`` of its start when it starts small (reward and progress rising together
  is learning, not hacking, even early on while progress is still 0.02 -> 0.08).

At least ``min_points`` evaluations are needed; with fewer the alarm stays silent.

Example:
    >>> hacking_alarm([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60], [0, 0, 0, 0, 0, 0]).flagged
    True
    >>> hacking_alarm([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60], [0, 0, .2, .4, .6, .8]).flagged
    False
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewardlab.rundir import read_csv


@dataclass
class HackingAlarm:
    """The alarm's verdict on one training curve."""

    flagged: bool
    reason: str
    points: int
    reward_start: float | None = None
    reward_end: float | None = None
    reward_rise: float | None = None
    """Relative rise of the generated return (0.5 = +50%)."""
    success_start: float | None = None
    success_end: float | None = None
    progress_start: float | None = None
    progress_end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return asdict(self)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def progress_rose(start: float, end: float, flat_tol: float, min_rise: float) -> bool:
    """Whether task progress (0..1) rose: by more than ``flat_tol`` absolutely, or by at least
    ``min_rise`` relative to its start (floored at 0.01) while gaining at least 0.01.

    Example:
        >>> progress_rose(0.02, 0.08, flat_tol=0.1, min_rise=0.25), progress_rose(0.5, 0.55, 0.1, 0.25)
        (True, False)
    """
    gain = end - start
    return gain > flat_tol or (gain >= 0.01 and gain / max(start, 0.01) >= min_rise)


def hacking_alarm(
    steps: Sequence[float],
    reward_return: Sequence[float],
    success: Sequence[float],
    progress: Sequence[float] | None = None,
    *,
    min_points: int = 3,
    min_rise: float = 0.25,
    flat_tol: float = 0.1,
) -> HackingAlarm:
    """Flag a curve whose generated return rises while success (and progress) stay flat.

    Args:
        steps: Environment steps of each evaluation (only their order matters).
        reward_return: Mean return under the generated reward at each evaluation.
        success: Task success rate at each evaluation.
        progress: Optional task progress (0..1) at each evaluation.
        min_points: Fewest evaluations to judge.
        min_rise: Relative rise of the generated return that counts as rising.
        flat_tol: Largest rise of success (and progress) that still counts as flat.

    Returns:
        The :class:`HackingAlarm`, with the head/tail means it compared.
    """
    order = sorted(range(len(steps)), key=lambda i: steps[i])
    rewards = [float(reward_return[i]) for i in order]
    succ = [float(success[i]) for i in order]
    prog = [float(progress[i]) for i in order] if progress is not None else None
    n = len(rewards)
    if n < min_points:
        return HackingAlarm(False, f"too few evaluations to judge ({n} < {min_points})", n)
    w = max(1, round(n / 3))
    r0, r1 = _mean(rewards[:w]), _mean(rewards[-w:])
    s0, s1 = _mean(succ[:w]), _mean(succ[-w:])
    p0, p1 = (_mean(prog[:w]), _mean(prog[-w:])) if prog is not None else (None, None)
    floor = max(0.01 * max(abs(r) for r in rewards), 1e-9)
    rise = (r1 - r0) / max(abs(r0), floor)
    alarm = HackingAlarm(False, "", n, r0, r1, rise, s0, s1, p0, p1)
    progress_text = f", progress {p0:.2f} -> {p1:.2f}" if p0 is not None and p1 is not None else ""
    if not math.isfinite(rise) or rise < min_rise:
        alarm.reason = f"generated return did not rise by {min_rise:.0%} ({r0:.4g} -> {r1:.4g})"
    elif s1 - s0 > flat_tol:
        alarm.reason = f"success rose with the return ({s0:.2f} -> {s1:.2f})"
    elif s1 >= 1.0 - flat_tol:
        alarm.reason = f"the task is already solved (success {s1:.2f})"
    elif p0 is not None and p1 is not None and progress_rose(p0, p1, flat_tol, min_rise):
        alarm.reason = (
            f"task progress rose with the return ({p0:.2f} -> {p1:.2f}): learning, not hacking"
        )
    else:
        alarm.flagged = True
        alarm.reason = (
            f"generated return rose {rise:+.0%} ({r0:.4g} -> {r1:.4g}) while success stayed flat "
            f"({s0:.2f} -> {s1:.2f}{progress_text}): the policy may be exploiting the reward"
        )
    return alarm


def alarm_from_metrics(path: Path, **kwargs: Any) -> HackingAlarm:
    """:func:`hacking_alarm` on a ``metrics.csv`` written by training."""
    rows = read_csv(path)
    return hacking_alarm(
        [float(r["timesteps"]) for r in rows],
        [float(r["mean_reward_return"]) for r in rows],
        [float(r["success_rate"]) for r in rows],
        [float(r["mean_progress"]) for r in rows] if rows and "mean_progress" in rows[0] else None,
        **kwargs,
    )
