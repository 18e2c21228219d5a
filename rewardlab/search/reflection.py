"""Reward reflection: what training showed about a reward program, as the next prompt.

Eureka's reward reflection, computed from a candidate's training records:

* **per-component statistics** from ``tb/progress.csv`` (columns ``reward/<name>`` logged once
  per rollout against ``time/total_timesteps``): a handful of snapshots over training and the
  min / mean / max, the component's share of the total magnitude, and the correlation of its
  per-evaluation mean with the task's success rate and progress (``metrics.csv``);
* the **success curve** (success, progress and generated return at every evaluation);
* the **pre-flight gate's numbers** on this program (its ``gate.json``: reward ranges on the
  reference rollouts, ranking accuracy of demonstrations over failures, progress order,
  constant components) and its findings on the programs sampled with it that were rejected,
  and the reward-hacking alarm, when raised;
* **heuristics** (Eureka's tips): success near zero -> rewrite; a component that barely
  changes -> rescale or drop it; a component that dominates the magnitude -> rescale it; a
  component that moves against task progress -> fix or drop it.

:func:`reflection_messages` renders ``prompts/reflection.j2`` after the generation prompt and
the previous best program (system + generation prompt + previous code + reflection).
:attr:`Reflection.edits` carries the same heuristics as feedback lines the offline synthesizer
applies deterministically (``"reduce alive"``, ``"more progress"``).

A training resumed from a checkpoint (the next rung of successive halving) continues
``tb/progress.csv`` (:class:`rewardlab.training.ContinuedCSV`); :func:`read_progress` also joins
the ``tb/progress_until_<steps>.csv`` parts that searches made before that kept aside.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.generators.prompts import generation_messages, render
from rewardlab.rundir import read_csv
from rewardlab.tasks.registry import TaskSpec

STEPS = "time/total_timesteps"
EXCLUDED = ("reward/env", "reward/error")
_PART = re.compile(r"progress_until_(\d+)\.csv$")

CONSTANT_RANGE = 0.05
"""A component whose values span less than this fraction of its mean magnitude is constant."""
DOMINANT_SHARE = 0.8
"""A component with more than this share of the total magnitude dominates the reward."""
SUCCESS_FLOOR = 0.05
"""Success never above this over training counts as "near zero"."""
CORRELATION = 0.5
"""|correlation| at or above this with task progress is a clear relation."""


def read_progress(directory: Path) -> list[dict[str, str]]:
    """Every ``tb/progress*.csv`` row of a training directory, in training order (older
    searches kept the log before each resume as ``progress_until_<steps>.csv``)."""
    tb = directory / "tb"
    parts = sorted(
        (int(m.group(1)), p) for p in tb.glob("progress_until_*.csv") if (m := _PART.search(p.name))
    )
    rows = [r for _, p in parts for r in read_csv(p)]
    rows += read_csv(tb / "progress.csv")
    return [r for r in rows if r.get(STEPS)]


def component_series(rows: list[dict[str, str]]) -> dict[str, list[tuple[int, float]]]:
    """``{component: [(steps, mean per step in that rollout), ...]}`` from progress rows."""
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        steps = int(float(row[STEPS]))
        for key, value in row.items():
            if key.startswith("reward/") and key not in EXCLUDED and value not in ("", None):
                try:
                    v = float(value)
                except ValueError:
                    continue
                if math.isfinite(v):
                    series.setdefault(key[7:], []).append((steps, v))
    return series


def correlation(a: list[float], b: list[float]) -> float | None:
    """Pearson correlation; ``None`` with fewer than 3 pairs or a constant side."""
    if len(a) < 3 or len(a) != len(b):
        return None
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if float(np.std(x)) < 1e-12 or float(np.std(y)) < 1e-12:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def per_eval_means(points: list[tuple[int, float]], eval_steps: list[int]) -> list[float | None]:
    """The component's mean over the rollouts between consecutive evaluations (the last
    value before an evaluation when no rollout fell in between)."""
    out: list[float | None] = []
    previous = -1
    for steps in eval_steps:
        window = [v for s, v in points if previous < s <= steps]
        if not window:
            before = [v for s, v in points if s <= steps]
            window = before[-1:]
        out.append(sum(window) / len(window) if window else None)
        previous = steps
    return out


@dataclass
class ComponentStats:
    """One reward component over training."""

    name: str
    steps: list[int]
    snapshots: list[float]
    min: float
    mean: float
    max: float
    share: float
    """|mean| as a fraction of the sum of all components' |mean|."""
    corr_success: float | None
    corr_progress: float | None
    constant: bool
    dominant: bool = False


@dataclass
class Reflection:
    """What training showed about one reward program (see the module docstring)."""

    candidate: str
    timesteps: int
    curve: list[dict[str, float]]
    success_final: float
    success_best: float
    progress_final: float
    components: list[ComponentStats]
    tips: list[str] = field(default_factory=list)
    edits: list[str] = field(default_factory=list)
    gate_notes: list[str] = field(default_factory=list)
    hacking: str | None = None
    others: list[str] = field(default_factory=list)
    """One line per other candidate of the search so far (verdict, budget, success)."""
    gate: list[str] = field(default_factory=list)
    """The pre-flight gate's feedback lines on this program (from its ``gate.json``)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return asdict(self)


def _snapshots(points: list[tuple[int, float]], n: int) -> list[tuple[int, float]]:
    if len(points) <= n:
        return list(points)
    idx = np.linspace(0, len(points) - 1, n).round().astype(int)
    return [points[i] for i in idx]


def component_stats(
    directory: Path, *, snapshots: int = 10
) -> tuple[list[ComponentStats], list[dict[str, float]]]:
    """Per-component statistics and the evaluation curve of a training directory."""
    metrics = read_csv(directory / "metrics.csv")
    curve = [
        {"steps": int(r["timesteps"]), "success": float(r["success_rate"]),
         "progress": float(r.get("mean_progress") or 0.0),
         "reward_return": float(r.get("mean_reward_return") or 0.0)}
        for r in metrics
    ]  # fmt: skip
    eval_steps = [int(c["steps"]) for c in curve]
    series = component_series(read_progress(directory))
    means = {name: sum(v for _, v in pts) / len(pts) for name, pts in series.items() if pts}
    total = sum(abs(m) for m in means.values()) or 1.0
    stats: list[ComponentStats] = []
    for name, pts in series.items():
        values = [v for _, v in pts]
        lo, hi, mu = min(values), max(values), means[name]
        per_eval = per_eval_means(pts, eval_steps)
        pairs = [(v, c) for v, c in zip(per_eval, curve, strict=True) if v is not None]
        comp = [v for v, _ in pairs]
        snap = _snapshots(pts, snapshots)
        stats.append(ComponentStats(
            name=name, steps=[s for s, _ in snap], snapshots=[v for _, v in snap], min=lo, mean=mu,
            max=hi, share=abs(mu) / total,
            corr_success=correlation(comp, [c["success"] for _, c in pairs]),
            corr_progress=correlation(comp, [c["progress"] for _, c in pairs]),
            constant=len(values) >= 3 and (hi - lo) <= max(CONSTANT_RANGE * abs(mu), 1e-9),
        ))  # fmt: skip
    if len(stats) >= 2:
        for s in stats:
            s.dominant = s.share > DOMINANT_SHARE
    return stats, curve


def heuristics(
    components: list[ComponentStats], success_best: float
) -> tuple[list[str], list[str]]:
    """Eureka's tips for these statistics, as ``(tips for a reward writer, offline edits)``."""
    tips: list[str] = []
    edits: list[str] = []
    reduced: set[str] = set()
    if success_best <= SUCCESS_FLOOR:
        tips.append(
            f"The task success rate stayed near zero (best {success_best:.2f}): rewrite the reward "
            "function rather than tuning it; think about which part of the task it fails to reward."
        )
    for c in components:
        if c.constant:
            tips.append(
                f"`{c.name}` barely changed during training ({c.min:.4g} .. {c.max:.4g}): RL cannot "
                "optimize it as written; change its scale or temperature, rewrite it, or drop it."
            )
            edits.append(f"reduce {c.name}")
            reduced.add(c.name)
        elif c.dominant:
            tips.append(
                f"`{c.name}` is {100 * c.share:.0f}% of the total reward magnitude: rescale it so the "
                "other terms matter."
            )
            edits.append(f"reduce {c.name}")
            reduced.add(c.name)
        elif c.corr_progress is not None and c.corr_progress <= -CORRELATION:
            tips.append(
                f"`{c.name}` moves against task progress (correlation {c.corr_progress:+.2f}): the "
                "policy trades the task for it; fix or drop it."
            )
            edits.append(f"reduce {c.name}")
            reduced.add(c.name)
    helpful = [
        c for c in components
        if not c.constant and c.name not in reduced and c.corr_progress is not None and c.corr_progress >= CORRELATION
    ]  # fmt: skip
    if helpful:
        top = max(helpful, key=lambda c: c.corr_progress or 0.0)
        tips.append(
            f"`{top.name}` rises with task progress (correlation {top.corr_progress:+.2f}): it points "
            "the right way; consider giving it more weight."
        )
        edits.append(f"more {top.name}")
    return tips, edits


def reflect(
    directory: Path,
    *,
    label: str,
    gate_notes: list[str] | None = None,
    hacking: str | None = None,
    others: list[str] | None = None,
    snapshots: int = 10,
) -> Reflection:
    """Build the :class:`Reflection` of the candidate trained in ``directory``.

    Args:
        directory: The candidate's training folder (``metrics.csv``, ``tb/``).
        label: How the candidate is named in the prompt and records.
        gate_notes: Findings on sampled programs the gate (or the checks) rejected.
        hacking: The reward-hacking alarm's reason, when it was raised for this candidate.
        others: One line per other candidate (verdict, budget, success).
        snapshots: Values shown per component.
    """
    from rewardlab.gate import GateReport
    from rewardlab.rundir import read_json

    components, curve = component_stats(directory, snapshots=snapshots)
    gate_lines = (
        GateReport.from_dict(read_json(directory / "gate.json")).feedback_lines()
        if (directory / "gate.json").exists()
        else []
    )
    success_best = max((c["success"] for c in curve), default=0.0)
    tips, edits = heuristics(components, success_best)
    last = curve[-1] if curve else {"steps": 0, "success": 0.0, "progress": 0.0}
    return Reflection(
        candidate=label, timesteps=int(last["steps"]), curve=curve,
        success_final=float(last["success"]), success_best=float(success_best),
        progress_final=float(last["progress"]), components=components, tips=tips, edits=edits,
        gate_notes=list(gate_notes or []), hacking=hacking, others=list(others or []), gate=gate_lines,
    )  # fmt: skip


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def render_reflection(reflection: Reflection) -> str:
    """The reflection message (``prompts/reflection.j2``)."""
    components = [
        {
            "name": c.name,
            "snapshots": ", ".join(_fmt(v) for v in c.snapshots),
            "min": _fmt(c.min), "mean": _fmt(c.mean), "max": _fmt(c.max),
            "share": f"{100 * c.share:.0f}",
            "corr_success": _fmt(c.corr_success, "+.2f"),
            "corr_progress": _fmt(c.corr_progress, "+.2f"),
            "constant": c.constant,
        }
        for c in reflection.components
    ]  # fmt: skip
    curve = [
        {"steps": int(c["steps"]), "success": f"{c['success']:.2f}", "progress": f"{c['progress']:.2f}",
         "reward_return": _fmt(c["reward_return"], ".4g")}
        for c in reflection.curve
    ]  # fmt: skip
    return render(
        "reflection", timesteps=reflection.timesteps, curve=curve, components=components,
        success_final=f"{reflection.success_final:.2f}", success_best=f"{reflection.success_best:.2f}",
        tips=reflection.tips, gate_notes=reflection.gate_notes, hacking=reflection.hacking,
        others=reflection.others, gate=reflection.gate,
    )  # fmt: skip


def reflection_messages(
    task: TaskSpec,
    instruction: str,
    previous_source: str,
    reflection: Reflection,
    *,
    few_shot: bool = False,
) -> list[dict[str, str]]:
    """The next iteration's prompt: system + generation prompt + the previous best program
    (as the assistant's answer) + the reflection."""
    return [
        *generation_messages(task, instruction, few_shot=few_shot),
        {"role": "assistant", "content": f"```python\n{previous_source.rstrip()}\n```"},
        {"role": "user", "content": render_reflection(reflection)},
    ]
