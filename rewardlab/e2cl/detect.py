"""Error detectors: an :class:`~rewardlab.e2cl.explore.Exploration` (and the version's training
records) in, typed :class:`~rewardlab.e2cl.findings.Finding` s with evidence out.

One function per kind of error; :func:`detect` runs them all with the thresholds of an
:class:`~rewardlab.config.E2CLConfig` (``e2cl.*``). Each finding points at the trajectory and step indices that show it, and
proposes edits (``actions``) as feedback clauses the refinement step understands ("drop
bias", "more progress", "falls"); where no edit is known the list is empty and the message
alone goes to the reward writer.

Conventions: correlations are Spearman rank correlations (:func:`rank_correlation`); a
trajectory's step ``i`` is the state after its action ``i``.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from rewardlab.config import E2CLConfig, SearchConfig
from rewardlab.e2cl.explore import Exploration, Limit, Trajectory
from rewardlab.e2cl.findings import (
    ACTION_SATURATION,
    CONSTANT_COMPONENT,
    EXPERT_DISAGREEMENT,
    IGNORES_OBJECT,
    IMPLAUSIBLE,
    NO_SUCCESS,
    PROGRAM_FAILURE,
    REGRESSION,
    REWARD_HACKING,
    REWARDS_FAILURE,
    SATURATED_COMPONENT,
    Evidence,
    Finding,
)
from rewardlab.generators.offline import parse_terms
from rewardlab.rundir import read_csv
from rewardlab.search.alarm import alarm_from_metrics
from rewardlab.search.reflection import component_series, correlation, read_progress

MAX_STEPS_SHOWN = 12
"""Step indices listed per finding at most."""


MIN_STEPS = 20
"""Fewest explored steps a statistic over steps is computed from."""


def rank_correlation(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> float | None:
    """Spearman correlation of finite pairs; ``None`` with fewer than 3 or a constant side.

    Example:
        >>> rank_correlation([1, 2, 3, 4], [10, 20, 25, 100])
        1.0
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return None
    return correlation(list(rankdata(x[keep])), list(rankdata(y[keep])))


def _steps(indices: Sequence[int] | np.ndarray) -> list[int]:
    return [int(i) for i in list(indices)[:MAX_STEPS_SHOWN]]


def _values(
    trajectory: Trajectory, steps: list[int], *names: str, components: Sequence[str] = ()
) -> dict[str, list[float]]:
    """Per-step series of ``trajectory`` at ``steps``: ``reward``, ``progress`` (task progress)
    or a probe by name, and each of ``components`` as ``component:<name>``."""
    series: dict[str, np.ndarray] = {}
    for name in names:
        found = (trajectory.rewards if name == "reward" else trajectory.task_progress() if name == "progress"
                 else trajectory.probes.get(name))  # fmt: skip
        if found is not None:
            series[name] = found
    for name in components:
        if name in trajectory.components:
            series[f"component:{name}"] = trajectory.components[name]
    return {k: [round(float(v[s]), 6) for s in steps] for k, v in series.items() if len(v)}


# --------------------------------------------------------------------------- program failures


_LINE = re.compile(r"\bline (\d+):")


def terms_at_line(source: str, line: int) -> list[str]:
    """The reward components computed on ``line`` of ``source``: the entry of a
    ``components = {...}`` dict spanning it, or, for an assignment on that line, the entries
    that use its variable (directly or through other assignments).

    Example:
        >>> src = "def f(self, a):\\n    d = a[0]\\n    components = {'x': 2 * d, 'y': 1.0}\\n    return 0, components\\n"
        >>> terms_at_line(src, 2), terms_at_line(src, 3)
        (['x'], ['x', 'y'])
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    entries: dict[str, ast.expr] = {}
    assigned: dict[str, set[str]] = {}
    on_line: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            used = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
            for name in names:
                assigned.setdefault(name, set()).update(used)
            if (
                node.lineno <= line <= (node.end_lineno or node.lineno)
                and "components" not in names
            ):
                on_line |= names
            if "components" in names and isinstance(node.value, ast.Dict):
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        entries[key.value] = value
    hit = [k for k, v in entries.items() if v.lineno <= line <= (v.end_lineno or v.lineno)]
    if hit:
        return hit

    def depends(names: set[str]) -> set[str]:
        seen, todo = set(names), list(names)
        while todo:
            for var, used in assigned.items():
                if todo[-1] in used and var not in seen:
                    seen.add(var)
                    todo.insert(0, var)
            todo.pop()
        return seen

    tainted = depends(on_line)
    return [
        k
        for k, v in entries.items()
        if tainted & {n.id for n in ast.walk(v) if isinstance(n, ast.Name)}
    ]


def _failure_kind(message: str) -> str:
    if "AttributeError" in message:
        return "reads an attribute that does not exist"
    if "not finite" in message:
        return "returns NaN or infinity"
    if "[timeout]" in message:
        return "runs over its time budget"
    return "raises an exception"


def detect_program_failures(exploration: Exploration, source: str | None) -> list[Finding]:
    """The reward program failed (raised, NaN/inf, missing attribute, over budget) on some
    explored states: one finding per distinct failure, with the steps where it happened.
    Dropping the failing components is proposed unless they are all of the program's."""
    counts: dict[str, int] = {}
    first: dict[str, Trajectory] = {}
    total = 0
    for t in exploration.all():
        total += t.length
        for e in t.errors:
            if e is not None:
                counts[e] = counts.get(e, 0) + 1
                first.setdefault(e, t)
    every = {t.name for t in parse_terms(source) or []} if source else set()
    out = []
    for message, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        t = first[message]
        steps = _steps([i for i, e in enumerate(t.errors) if e == message])
        line = _LINE.search(message)
        terms = terms_at_line(source, int(line.group(1))) if (source and line) else []
        subject = ",".join(terms) if terms else (f"line {line.group(1)}" if line else message[:40])
        out.append(Finding(
            PROGRAM_FAILURE, "error",
            f"the reward program {_failure_kind(message)} on {n} of {total} explored steps: {message}",
            Evidence(t.id, steps, _values(t, steps, *t.probes), {"count": n, "explored_steps": total,
                     "error": message, "terms": terms}),
            subject=subject, actions=["; ".join(f"drop {term}" for term in terms)] if terms and set(terms) < every else [],
        ))  # fmt: skip
    return out


# --------------------------------------------------------------------------- components


def detect_components(
    exploration: Exploration, *, can_terminate: bool, th: E2CLConfig
) -> list[Finding]:
    """Constant and saturated reward components over every explored state.

    A constant positive component is a survival bonus where episodes can end early (it pays
    for not terminating) and is not reported there; a component that is always 0 is reported
    as never active (info: staged terms look like that until their stage is reached).
    """
    trajectories = [t for t in exploration.all() if t.length]
    names = sorted({n for t in trajectories for n in t.components})
    out = []
    for name in names:
        parts = [(t, t.components[name]) for t in trajectories if name in t.components]
        values = np.concatenate([v[np.isfinite(v)] for _, v in parts]) if parts else np.zeros(0)
        if len(values) < MIN_STEPS:
            continue
        t, series = max(parts, key=lambda p: len(p[1]))
        lo, hi = float(values.min()), float(values.max())
        stats = {"explored_steps": int(len(values)), "trajectories": len(parts), "min": lo, "max": hi,
                 "mean": float(values.mean())}  # fmt: skip
        if hi - lo <= 1e-9 * max(1.0, abs(hi)):
            if abs(hi) <= 1e-12:
                steps = _steps(np.linspace(0, len(series) - 1, min(5, len(series))).astype(int))
                out.append(Finding(CONSTANT_COMPONENT, "info",
                                   f"component {name} was 0 on all {len(values)} explored steps (never active)",
                                   Evidence(t.id, steps, _values(t, steps, components=[name]), stats), subject=name))  # fmt: skip
            elif not (can_terminate and hi > 0):
                steps = _steps(np.linspace(0, len(series) - 1, min(5, len(series))).astype(int))
                out.append(Finding(CONSTANT_COMPONENT, "warning",
                                   f"component {name} is constant ({hi:.4g}) on all {len(values)} explored steps "
                                   "(including the expert's): it carries no information about the task",
                                   Evidence(t.id, steps, _values(t, steps, components=[name]), stats), subject=name,
                                   actions=[f"drop {name}"]))  # fmt: skip
            continue
        tol = 1e-3 * (hi - lo)
        at_max, at_min = float(np.mean(values >= hi - tol)), float(np.mean(values <= lo + tol))
        for where, fraction, edge in (("maximum", at_max, hi), ("minimum", at_min, lo)):
            if fraction < th.saturation_fraction or (
                where == "maximum" and can_terminate and edge > 0
            ):
                continue
            steps = _steps(np.flatnonzero(np.abs(series - edge) <= tol))
            out.append(Finding(
                SATURATED_COMPONENT, "warning" if where == "maximum" else "info",
                f"component {name} sits at its {where} ({edge:.4g}) on {fraction:.0%} of {len(values)} explored "
                f"steps: it {'hardly ever changes, so it adds a bonus without guidance' if where == 'maximum' else 'is rarely earned'}",
                Evidence(t.id, steps, _values(t, steps, components=[name]), {**stats, "fraction": fraction}), subject=name,
                actions=[f"less {name}"] if where == "maximum" else [],
            ))  # fmt: skip
    return out


# --------------------------------------------------------------------------- expert agreement


def object_effect(rewards: np.ndarray, progress: np.ndarray, scale: float) -> float:
    """How much the reward rises while the object goes from its first to its last progress
    value (least-squares slope times the progress range), as a fraction of ``scale``.

    Example:
        >>> round(object_effect(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5, 1.0]), 4.0), 6)
        0.5
    """
    ok = np.isfinite(rewards) & np.isfinite(progress)
    x, y = progress[ok], rewards[ok]
    if len(x) < 3 or float(np.ptp(x)) <= 1e-9:
        return 0.0
    slope = float(np.polyfit(x, y, 1)[0])
    return slope * float(x.max() - x.min()) / max(scale, 1e-9)


def _component_correlations(trajectories: Sequence[Trajectory], target: str) -> dict[str, float]:
    """Mean rank correlation of each component with ``target`` (``time`` or ``progress``)."""
    found: dict[str, list[float]] = {}
    for t in trajectories:
        ref = np.arange(t.length, dtype=float) if target == "time" else t.task_progress()
        for name, series in t.components.items():
            rho = rank_correlation(series, ref)
            if rho is not None:
                found.setdefault(name, []).append(rho)
    return {k: float(np.mean(v)) for k, v in found.items()}


def _rank_actions(correlations: dict[str, float], bad: float, good: float = 0.1) -> list[str]:
    drop = [n for n, r in sorted(correlations.items(), key=lambda kv: kv[1]) if r <= bad]
    more = [n for n, r in sorted(correlations.items(), key=lambda kv: -kv[1]) if r >= good]
    clauses = [f"drop {n}" for n in drop]
    out = (
        ["; ".join(clauses + [f"more {more[0]}"] if more else clauses)] if (clauses or more) else []
    )
    out += [f"more {n}" for n in more[1:3]]
    return [a for a in out if a]


def detect_expert_disagreement(demos: Sequence[Trajectory], *, th: E2CLConfig) -> list[Finding]:
    """Along the expert's demonstrations the reward should rise: its rank correlation with
    time (the expert's progress) must reach ``expert_min_correlation``; for manipulation the
    reward must also follow the object's progress toward the goal while the object moves: it
    must rise by at least ``object_min_effect`` of its spread (5th to 95th percentile) along
    the demonstrations (:func:`object_effect`)."""
    demos = [d for d in demos if d.length >= 5]
    if not demos:
        return []
    out = []
    per_demo = [(d, rank_correlation(d.rewards, np.arange(d.length))) for d in demos]
    rhos = [r if r is not None else 0.0 for _, r in per_demo]
    mean = float(np.mean(rhos))
    if mean < th.expert_min_correlation:
        d, rho = min(per_demo, key=lambda p: p[1] if p[1] is not None else 0.0)
        peak = int(np.argmax(d.rewards))
        steps = sorted({0, peak, d.length - 1})
        components = _component_correlations(demos, "time")
        out.append(Finding(
            EXPERT_DISAGREEMENT, "error",
            f"the reward does not rise along the expert's demonstrations (rank correlation with the expert's "
            f"progress {mean:+.2f} over {len(demos)} demonstration(s); in {d.id} it peaks at step {peak} of "
            f"{d.length} and ends at {d.rewards[-1]:.4g})",
            Evidence(d.id, steps, _values(d, steps, "reward", "progress"),
                     {"correlation": mean, "per_demo": [None if r is None else round(r, 4) for _, r in per_demo],
                      "components": components}),
            actions=_rank_actions(components, bad=-th.expert_min_correlation),
        ))  # fmt: skip
    scale = float(np.subtract(*np.percentile(np.concatenate([d.rewards for d in demos]), [95, 5])))
    moving = []
    for d in demos:
        if "object_moved" not in d.probes:
            continue
        moved = np.flatnonzero(d.probes["object_moved"] > 0.005)
        if len(moved) >= 5:
            moving.append(
                (d, moved, object_effect(d.rewards[moved], d.probes["goal_progress"][moved], scale))
            )
    if moving:
        mean_effect = float(np.mean([e for _, _, e in moving]))
        if mean_effect < th.object_min_effect:
            d, moved, _ = min(moving, key=lambda m: m[2])
            shown = sorted({int(moved[0]), int(moved[len(moved) // 2]), int(moved[-1])})
            progress = d.probes["goal_progress"][moved]
            components = {
                name: object_effect(series[moved], progress, scale)
                for name, series in d.components.items()
            }
            out.append(Finding(
                IGNORES_OBJECT, "error",
                f"the reward ignores the object: while the expert moves it toward the goal (steps {moved[0]}-"
                f"{moved[-1]} of {d.id}, progress {progress[0]:.2f} -> {progress[-1]:.2f}) the reward changes by "
                f"{mean_effect:+.1%} of its spread along the demonstrations",
                Evidence(d.id, shown, _values(d, shown, "reward", "goal_progress", "object_goal_distance"),
                         {"effect": mean_effect, "reward_spread": scale, "components": components,
                          "object_steps": len(moved)}),
                subject="object", actions=["ignores the object"],
            ))  # fmt: skip
    return out


DRIVES = 0.2
"""A component whose rank correlation with the per-step task-progress gain reaches this is
proposed for more weight when the task is never completed."""


def progress_correlations(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Rank correlation of each component with the per-step gain in task progress over the
    learner's steps (``{}`` when progress never changes)."""
    parts = [t for t in trajectories if t.length]
    gains = [np.diff(t.task_progress(), prepend=t.task_progress()[0]) for t in parts]
    if not gains or not any(np.ptp(g) > 0 for g in gains):
        return {}
    out = {}
    for name in sorted({n for t in parts for n in t.components}):
        series = np.concatenate([t.components.get(name, np.full(t.length, np.nan)) for t in parts])
        r = rank_correlation(series, np.concatenate(gains))
        if r is not None:
            out[name] = r
    return out


# --------------------------------------------------------------------------- falling


def _fallen(t: Trajectory, limits: Sequence[Limit]) -> np.ndarray:
    """Per step: is any limit violated?"""
    bad = np.zeros(t.length, dtype=bool)
    for limit in limits:
        if limit.name in t.probes:
            bad |= np.array([limit.margin(v) < 0 for v in t.probes[limit.name]], dtype=bool)
    return bad


def _failure_correlations(
    parts: Sequence[Trajectory], limit: Limit
) -> tuple[float | None, dict[str, float], np.ndarray]:
    """Rank correlation of the reward and of each component with ``limit``'s margin over
    ``parts``; also the margins."""
    margins = np.concatenate([[limit.margin(v) for v in t.probes[limit.name]] for t in parts])
    rho = rank_correlation(np.concatenate([t.rewards for t in parts]), margins)
    components: dict[str, float] = {}
    for name in sorted({n for p in parts for n in p.components}):
        series = np.concatenate([p.components.get(name, np.full(p.length, np.nan)) for p in parts])
        r = rank_correlation(series, margins)
        if r is not None:
            components[name] = r
    return rho, components, margins


def detect_rewards_failure(
    trajectories: Sequence[Trajectory],
    limits: Sequence[Limit],
    *,
    th: E2CLConfig,
    reference: Sequence[Trajectory] | None = None,
) -> list[Finding]:
    """The reward rises as the body approaches a fall: its rank correlation (or a component's)
    with a limit's margin (height above the minimum, tilt inside the maximum ...) is at most
    ``failure_correlation``.

    On ``reference`` states (random actions: independent of the learner; default
    ``trajectories``) that is a property of the reward: an error, with the components that do
    it proposed for removal. Seen only on the learner's ``trajectories`` it is the learner
    lunging (a forward-velocity term peaks in a forward dive): a warning, more stability
    proposed.
    """
    trajectories = [t for t in trajectories if t.length]
    reference = trajectories if reference is None else [t for t in reference if t.length]
    out = []
    for limit in limits:
        for parts, severity in ((reference, "error"), (trajectories, "warning")):
            parts = [t for t in parts if limit.name in t.probes]
            if sum(t.length for t in parts) < MIN_STEPS:
                continue
            rho, components, margins = _failure_correlations(parts, limit)
            culprits = [
                n
                for n, r in sorted(components.items(), key=lambda kv: kv[1])
                if r <= th.failure_correlation
            ]
            if (
                severity == "error"
                and not culprits
                and (rho is None or rho > th.failure_correlation)
            ):
                continue
            if severity == "warning" and (rho is None or rho > th.failure_correlation):
                continue
            t = max(parts, key=lambda p: p.length)
            margin = np.array([limit.margin(v) for v in t.probes[limit.name]])
            order = np.argsort(margin)
            low, high = [int(i) for i in order[:3]], [int(i) for i in order[-3:][::-1]]
            steps = low + high
            where = (
                f"rank correlation of reward with the margin {rho if rho is not None else 0.0:+.2f} over "
                f"{len(margins)} {'random-action' if severity == 'error' and reference is not trajectories else 'explored'} "
                f"steps; in {t.id} the reward is {np.mean(t.rewards[low]):.4g} on the 3 steps nearest the limit vs "
                f"{np.mean(t.rewards[high]):.4g} on the 3 farthest"
            )
            if severity == "error":
                message = (
                    f"the reward pays for falling: {', '.join(culprits) or 'it'} rises as {limit.name} "
                    f"({limit.path}) approaches its limit {limit.threshold:g} ({where})"
                )
                actions = [a for a in ("; ".join(f"drop {n}" for n in culprits), "falls") if a]
            else:
                message = (
                    f"the learner lunges: its reward is highest as {limit.name} ({limit.path}) approaches "
                    f"its limit {limit.threshold:g} ({where}), though on random states it is not"
                )
                actions = ["falls"]
            out.append(Finding(
                REWARDS_FAILURE, severity, message,
                Evidence(t.id, steps, _values(t, steps, "reward", limit.name),
                         {"correlation": rho, "limit": limit.threshold, "components": components}),
                subject=limit.name, actions=actions,
            ))  # fmt: skip
            break
    return out


def detect_implausible(
    free: Sequence[Trajectory], limits: Sequence[Limit], robot: str
) -> list[Finding]:
    """Falling or tipping over (a fall limit crossed) in the learner's own episodes; for
    manipulation, the object knocked off the table (5 cm below where it started)."""
    out = []
    fell = [(t, np.flatnonzero(_fallen(t, limits))) for t in free if t.length and limits]
    fell = [(t, s) for t, s in fell if len(s)]
    if fell:
        t, steps = fell[0]
        first = int(steps[0])
        crossed = [
            limit
            for limit in limits
            if limit.name in t.probes and limit.margin(t.probes[limit.name][first]) < 0
        ]
        what = ", ".join(
            f"{limit.name} {t.probes[limit.name][first]:.3g} beyond {limit.threshold:g}"
            for limit in crossed
        )
        tips = any(
            limit.kind == "tilt" and abs(t.probes[limit.name][first]) > math.pi / 2
            for limit in crossed
        )
        shown = _steps(range(max(0, first - 2), min(t.length, first + 3)))
        out.append(Finding(
            IMPLAUSIBLE, "warning",
            f"the {robot} {'tips over' if tips else 'falls'} instead of doing the task in {len(fell)} of {len(free)} "
            f"explored episodes (first in {t.id} at step {first}: {what})",
            Evidence(t.id, shown, _values(t, shown, "reward", *[limit.name for limit in limits]),
                     {"episodes_fallen": len(fell), "episodes": len(free),
                      "first_fall_steps": {x.id: int(s[0]) for x, s in fell}}),
            subject="fall", actions=["falls"],
        ))  # fmt: skip
    dropped = []
    for t in free:
        if "object_z" in t.probes and t.length:
            below = np.flatnonzero(t.probes["object_z"] < t.probes["object_start_z"] - 0.05)
            if len(below):
                dropped.append((t, below))
    if dropped:
        t, steps = dropped[0]
        shown = _steps(steps)
        out.append(Finding(
            IMPLAUSIBLE, "warning",
            f"the object is knocked off the table in {len(dropped)} of {len(free)} explored episodes (first in {t.id} "
            f"at step {int(steps[0])}: object height {t.probes['object_z'][steps[0]]:.3f} m, started at "
            f"{t.probes['object_start_z'][steps[0]]:.3f} m)",
            Evidence(t.id, shown, _values(t, shown, "reward", "object_z"), {"episodes": len(dropped)}),
            subject="object_dropped",
        ))  # fmt: skip
    return out


# --------------------------------------------------------------------------- success


def detect_no_success(
    free: Sequence[Trajectory], branches: Sequence[Trajectory], demos: Sequence[Trajectory],
    eval_success: float | None = None,
) -> list[Finding]:  # fmt: skip
    """The task's success metric never reached in the learner's episodes (nor in the final
    evaluation, when given); the branches from the expert's states say where it gets stuck,
    and the components that go with progress are proposed for more weight."""
    if not free or any(t.succeeded for t in free) or (eval_success or 0.0) > 0:
        return []
    best = max(free, key=lambda t: float(t.task_progress().max()) if t.length else 0.0)
    peak = int(np.argmax(best.task_progress())) if best.length else 0
    progress = float(best.task_progress()[peak]) if best.length else 0.0
    lengths = {d.id: d.length for d in demos}
    outcomes: list[dict[str, Any]] = []
    for b in branches:
        demo_id, _, t = b.id.removeprefix("branch/").partition("@")
        p = b.task_progress()
        outcomes.append({"branch": b.id, "from_step": int(t), "of": lengths.get(f"demo/{demo_id}"),
                         "success": b.succeeded, "progress_gain": float(p[-1] - p[0]) if b.length else 0.0})  # fmt: skip
    detail = ""
    if outcomes:
        won = [o for o in outcomes if o["success"]]
        latest = max(outcomes, key=lambda o: o["from_step"])
        detail = (
            f"; from the expert's states it finishes in {len(won)} of {len(outcomes)} tries"
            + ("" if won else f" (not even from step {latest['from_step']} of {latest['of']})")
        )
    correlations = progress_correlations(free)
    more = [n for n, r in sorted(correlations.items(), key=lambda kv: -kv[1]) if r >= DRIVES]
    return [Finding(
        NO_SUCCESS, "warning",
        f"the task is never completed: 0 of {len(free)} explored episodes succeed"
        + (f" (final evaluation success {eval_success:.2f})" if eval_success is not None else "")
        + f", best progress {progress:.2f} ({best.id}, step {peak}){detail}",
        Evidence(best.id, [peak], _values(best, [peak], "reward", "progress"),
                 {"best_progress": progress, "eval_success": eval_success, "branches": outcomes,
                  "progress_correlations": correlations}),
        actions=[f"more {n}" for n in more[:3]],
    )]  # fmt: skip


def detect_regressions(free: Sequence[Trajectory], metrics: Path | None, limits: Sequence[Limit], *,
                       th: E2CLConfig) -> list[Finding]:  # fmt: skip
    """Success reached and then lost within an episode, or a drop of at least
    ``regression_drop`` in the success rate between training evaluations (``metrics.csv``)."""
    out = []
    for t in free:
        if not t.succeeded:
            continue
        won = int(np.argmax(t.success))
        lost = np.flatnonzero(~t.success[won:])
        if len(lost):
            at = won + int(lost[0])
            fell = bool(limits) and bool(_fallen(t, limits)[at:].any())
            out.append(Finding(
                REGRESSION, "warning",
                f"the task is completed and then lost again in {t.id}: success at step {won}, lost at step {at}"
                + (" (the body falls)" if fell else ""),
                Evidence(t.id, [won, at], _values(t, [won, at], "reward", "progress", *t.probes), {"won": won, "lost": at}),
                subject="episode", actions=["falls"] if fell else [],
            ))  # fmt: skip
            break
    rows = read_csv(metrics) if metrics is not None else []
    if len(rows) >= 2:
        steps = [int(float(r["timesteps"])) for r in rows]
        success = [float(r["success_rate"]) for r in rows]
        peak = int(np.argmax(success))
        if success[peak] - success[-1] >= th.regression_drop:
            out.append(Finding(
                REGRESSION, "warning",
                f"success dropped during training from {success[peak]:.2f} (at {steps[peak]:,} steps) to "
                f"{success[-1]:.2f} (at {steps[-1]:,} steps)",
                Evidence("metrics.csv", [steps[peak], steps[-1]], {"success_rate": [success[peak], success[-1]]},
                         {"peak": success[peak], "last": success[-1]}),
                subject="training",
            ))  # fmt: skip
    return out


def _rising_components(vdir: Path) -> list[str]:
    """Components whose per-rollout mean rose most over training (``tb/progress*.csv``)."""
    rises = {}
    for name, points in component_series(read_progress(vdir)).items():
        if len(points) >= 3:
            w = max(1, len(points) // 3)
            start, end = np.mean([v for _, v in points[:w]]), np.mean([v for _, v in points[-w:]])
            rises[name] = float(end - start)
    return [n for n, r in sorted(rises.items(), key=lambda kv: -kv[1]) if r > 0]


def detect_hacking(vdir: Path | None, branches: Sequence[Trajectory], demos: Sequence[Trajectory], *,
                   min_rise: float = SearchConfig.hacking_min_rise,
                   flat_tol: float = SearchConfig.hacking_flat_tol) -> list[Finding]:  # fmt: skip
    """Reward hacking: the training curve's alarm (:func:`rewardlab.search.alarm.hacking_alarm`),
    and from the expert's own states the learner out-earning the expert (10% more generated
    reward per step) while making less progress (0.1 less) in at least half of the branches."""
    out = []
    if vdir is not None and (vdir / "metrics.csv").exists():
        alarm = alarm_from_metrics(vdir / "metrics.csv", min_rise=min_rise, flat_tol=flat_tol)
        if alarm.flagged:
            rows = read_csv(vdir / "metrics.csv")
            steps = [int(float(r["timesteps"])) for r in rows]
            rising = _rising_components(vdir)
            out.append(Finding(
                REWARD_HACKING, "error", f"the policy exploits the reward: {alarm.reason}",
                Evidence("metrics.csv", [steps[0], steps[-1]],
                         {"mean_reward_return": [float(rows[0]["mean_reward_return"]), float(rows[-1]["mean_reward_return"])],
                          "success_rate": [float(rows[0]["success_rate"]), float(rows[-1]["success_rate"])]},
                         {**alarm.to_dict(), "rising_components": rising}),
                subject="training", actions=[f"less {name}" for name in rising[:3]],
            ))  # fmt: skip
    demo_of = {d.id: d for d in demos}
    cases = []
    for b in branches:
        demo = demo_of.get("demo/" + b.id.removeprefix("branch/").partition("@")[0])
        if demo is None or not b.length:
            continue
        t = b.start - demo.start
        k = min(b.length, demo.length - t)
        if k < 5:
            continue
        expert_reward, learner_reward = (
            float(np.mean(demo.rewards[t : t + k])),
            float(np.mean(b.rewards[:k])),
        )
        ep, lp = demo.task_progress()[t : t + k], b.task_progress()[:k]
        expert_gain, learner_gain = float(ep[-1] - ep[0]), float(lp[-1] - lp[0])
        exploited = (
            learner_reward > expert_reward + 0.1 * abs(expert_reward) + 1e-9
            and learner_gain < expert_gain - 0.1
        )
        cases.append((b, k, exploited, expert_reward, learner_reward, expert_gain, learner_gain))
    hacked = [c for c in cases if c[2]]
    if cases and len(hacked) * 2 >= len(cases):
        b, k, _, er, lr, eg, lg = hacked[0]
        steps = [0, k - 1]
        out.append(Finding(
            REWARD_HACKING, "error",
            f"from the expert's own states the learner earns more reward than the expert ({lr:.4g} vs {er:.4g} per step "
            f"in {b.id}) while making less progress ({lg:+.2f} vs {eg:+.2f}) in {len(hacked)} of {len(cases)} branches",
            Evidence(b.id, steps, _values(b, steps, "reward", "progress"),
                     {"branches": [{"branch": c[0].id, "hacked": c[2], "expert_reward": c[3], "learner_reward": c[4],
                                    "expert_gain": c[5], "learner_gain": c[6]} for c in cases]}),
            subject="expert",
        ))  # fmt: skip
    return out


# --------------------------------------------------------------------------- actions


def detect_action_saturation(free: Sequence[Trajectory], low: np.ndarray, high: np.ndarray, *,
                             th: E2CLConfig) -> list[Finding]:  # fmt: skip
    """At least ``action_bound_fraction`` of the learner's action entries within
    ``action_bound_tol`` of the range from a bound (episodes with action noise excluded)."""
    own = [t for t in free if t.length and t.perturbation != "action"]
    if not own or sum(t.length for t in own) < MIN_STEPS:
        return []
    tol = th.action_bound_tol * (high - low)
    at_bound = [(np.abs(t.actions - low) <= tol) | (np.abs(t.actions - high) <= tol) for t in own]
    fraction = float(np.mean(np.concatenate(at_bound)))
    if fraction < th.action_bound_fraction:
        return []
    t, hits = max(zip(own, at_bound, strict=True), key=lambda p: float(p[1].mean()))
    steps = _steps(
        np.flatnonzero(hits.all(axis=1))
        if hits.all(axis=1).any()
        else np.flatnonzero(hits.any(axis=1))
    )
    per_dim = [round(float(x), 3) for x in np.mean(np.concatenate(at_bound), axis=0)]
    return [Finding(
        ACTION_SATURATION, "warning",
        f"the actions sit at their limits: {fraction:.0%} of action entries are at the bounds (per dimension {per_dim})",
        Evidence(t.id, steps, {f"action_{i}": [float(t.actions[s, i]) for s in steps] for i in range(t.actions.shape[1])},
                 {"fraction": fraction, "per_dimension": per_dim}),
        subject="actions", actions=["increase the action penalty"],
    )]  # fmt: skip


# --------------------------------------------------------------------------- all


def detect(
    exploration: Exploration,
    *,
    source: str | None,
    limits: Sequence[Limit],
    robot: str,
    action_low: np.ndarray,
    action_high: np.ndarray,
    can_terminate: bool,
    vdir: Path | None = None,
    eval_success: float | None = None,
    config: E2CLConfig | None = None,
    hacking_min_rise: float = SearchConfig.hacking_min_rise,
    hacking_flat_tol: float = SearchConfig.hacking_flat_tol,
) -> list[Finding]:
    """Every detector on one exploration; findings sorted by severity (errors first).

    Args:
        source: The reward program (maps failing lines to components).
        limits: The task's fall limits (:func:`rewardlab.e2cl.explore.body_limits`).
        robot: The robot's name for messages.
        can_terminate: Episodes can end early (a constant positive term is a survival bonus).
        vdir: The version's folder (``metrics.csv``, ``tb/``) for training-curve detectors.
        eval_success: The final evaluation's success rate, if known.
        config: The thresholds (``e2cl.*``).
        hacking_min_rise, hacking_flat_tol: The training-curve alarm's settings
            (``search.*``, :func:`rewardlab.search.alarm.hacking_alarm`).
    """
    th = config or E2CLConfig()
    learner = [*exploration.free, *exploration.branches]
    findings: list[Finding] = [
        *detect_program_failures(exploration, source),
        *detect_rewards_failure(learner, limits, th=th, reference=exploration.random or None),
        *detect_expert_disagreement(exploration.demos, th=th),
        *detect_hacking(
            vdir,
            exploration.branches,
            exploration.demos,
            min_rise=hacking_min_rise,
            flat_tol=hacking_flat_tol,
        ),
        *detect_no_success(exploration.free, exploration.branches, exploration.demos, eval_success),
        *detect_implausible(exploration.free, limits, robot),
        *detect_regressions(
            exploration.free, vdir / "metrics.csv" if vdir is not None else None, limits, th=th
        ),
        *detect_components(exploration, can_terminate=can_terminate, th=th),
        *detect_action_saturation(exploration.free, action_low, action_high, th=th),
    ]
    return sorted(findings, key=lambda f: f.rank)
