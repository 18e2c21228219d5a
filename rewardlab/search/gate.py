"""The pre-flight gate: what a reward program must pass before it may cost training time.

:func:`gate` is the one entry point (the search, ``rewardlab train``/``refine`` and other loops
call it). A program passes only if

a. the spine's **static and smoke checks** pass (:func:`rewardlab.reward.check.check_program`;
   the generation loop has usually just run that check on the very program, and
   :func:`remember_check` hands its report over so it is not run twice);
b. it is **finite and well-scaled** on the task's reference rollouts
   (:mod:`rewardlab.search.rollouts`: random, zero-action and perturbed rollouts, plus
   scripted-expert demonstrations, noisy and truncated demonstrations where the task has an
   expert): every call returns a finite number, the largest per-step ``|r|`` is at most
   ``gate.max_abs`` and at least ``gate.min_abs`` (not ~0 everywhere);
c. the **total varies** over those states (a constant reward is rejected; a constant named
   component is a warning);
d. where demonstrations exist, it **ranks successful demonstrations above failed rollouts**:
   the ranking accuracy (the fraction of (successful demo, failed rollout) pairs, all of equal
   length, whose returns are ordered right; ties count half) must reach
   ``gate.min_ranking_accuracy``. Also reported: the accuracy against each kind of failure and
   the *progress order* (mean Spearman correlation of per-step reward with time along each
   demonstration up to its success; a warning when negative, never a rejection, since rewards
   paying progress *increments* need not rise).

The program runs on the recorded states only inside the limited child
(:func:`rewardlab.reward.trajectories.evaluate_on_rollouts`); the rollouts themselves are
recorded by trusted code and cached, so gating K candidates records them once.

Verdicts are memoized per (task, program, settings) in this process: a reward writer that sends
the same program again gets the same verdict at no cost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.config import GateConfig
from rewardlab.reward.check import CheckReport, check_program
from rewardlab.reward.trajectories import TrajectoryEvaluation, evaluate_on_rollouts
from rewardlab.search.rollouts import DEMO_KIND, REPLAYABLE, ReferenceRollouts, reference_rollouts
from rewardlab.tasks.registry import TaskSpec

__all__ = [
    "GATE_NAME", "GateReport", "evaluate_on_rollouts", "gate", "gate_settings", "remember_check",
]  # fmt: skip

GATE_NAME = "preflight"

_CHECKED: dict[tuple[Any, ...], CheckReport] = {}
_VERDICTS: dict[tuple[Any, ...], GateReport] = {}


def gate_settings(cfg: Any) -> tuple[GateConfig, str | None]:
    """``(GateConfig, cache directory)`` from a run config (defaults where ``cfg`` has no
    ``gate`` node; ``cfg`` may be a Hydra/OmegaConf config or any object with attributes)."""
    node = getattr(cfg, "gate", None)
    if node is None:
        return GateConfig(cache_dir=None), None
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    values = node if isinstance(node, dict) else vars(node)
    names = {f.name for f in fields(GateConfig)}
    settings = GateConfig(**{k: v for k, v in values.items() if k in names})
    cache = settings.cache_dir
    if cache is not None and "${" in str(cache):  # an unresolved interpolation: no disk cache
        cache = None
    return settings, cache


def _check_key(task: TaskSpec, source: str, cfg: Any) -> tuple[Any, ...]:
    c = cfg.check
    return (repr(task.to_dict()), source, int(c.steps), float(c.timeout_s), int(c.memory_mb))


def remember_check(task: TaskSpec, source: str, cfg: Any, report: CheckReport) -> None:
    """Let the next :func:`gate` call on exactly this program, task and check settings reuse
    ``report`` (a check the generation loop already ran) instead of running it again."""
    _CHECKED[_check_key(task, source, cfg)] = report


@dataclass
class GateReport:
    """The gate's verdict on one program.

    Attributes:
        ok: The program may be trained.
        findings: Why it may not (one line each, with line numbers where known).
        warnings: Problems that do not block training (a constant component, no
            demonstrations to rank with ...); they are shown to the reward writer.
        stats: Measurements: ``check`` (the smoke run's numbers), ``rollouts`` (kinds, states,
            notes), ``reward`` and ``components`` (min/mean/max/std over the reference
            states), ``returns`` (mean return per rollout kind), ``ranking`` (pairs, accuracy
            per failure kind), ``progress_order``, timings.
        gate: Which gate produced the report.
        ranking_accuracy: Fraction of (successful demo, failed rollout) pairs ranked right
            (``None`` without demonstrations, or when the program was rejected earlier).
        progress_order: Mean Spearman correlation of per-step reward with time along the
            demonstrations up to success (``None`` without demonstrations).
    """

    ok: bool
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    gate: str = GATE_NAME
    ranking_accuracy: float | None = None
    progress_order: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (what ``gate.json`` holds)."""
        return {
            "ok": self.ok,
            "gate": self.gate,
            "findings": list(self.findings),
            "warnings": list(self.warnings),
            "ranking_accuracy": self.ranking_accuracy,
            "progress_order": self.progress_order,
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        """The report saved by :meth:`to_dict` (``gate.json``)."""
        return cls(
            ok=bool(data["ok"]), findings=list(data.get("findings", [])), warnings=list(data.get("warnings", [])),
            stats=dict(data.get("stats", {})), gate=str(data.get("gate", GATE_NAME)),
            ranking_accuracy=data.get("ranking_accuracy"), progress_order=data.get("progress_order"),
        )  # fmt: skip

    def summary(self) -> str:
        """One line: the verdict and the first reason."""
        if self.ok:
            head = "passed"
            if self.ranking_accuracy is not None:
                head += f" (ranking accuracy {self.ranking_accuracy:.2f})"
            return head + (f" ({self.warnings[0]})" if self.warnings else "")
        return "rejected: " + (self.findings[0] if self.findings else "no reason given")

    def feedback_lines(self) -> list[str]:
        """What a reward writer should be told: the findings, the warnings, then the numbers
        the gate measured on the reference rollouts."""
        lines = [*self.findings, *(f"warning: {w}" for w in self.warnings)]
        roll = self.stats.get("rollouts") or {}
        reward = self.stats.get("reward")
        if reward:
            lines.append(
                f"per-step reward on {roll.get('states', '?')} states of {roll.get('count', '?')} reference "
                f"rollouts ({_kinds(roll.get('kinds', {}))}): min {reward['min']:.4g}, mean {reward['mean']:.4g}, "
                f"max {reward['max']:.4g}"
            )
        for name, comp in (self.stats.get("components") or {}).items():
            lines.append(f"component `{name}`: min {comp['min']:.4g}, mean {comp['mean']:.4g}, max {comp['max']:.4g}")
        returns = self.stats.get("returns")
        if returns:
            lines.append("mean return per rollout kind: " + ", ".join(f"{k} {v:.4g}" for k, v in returns.items()))
        ranking = self.stats.get("ranking")
        rejected_for_ranking = any(f.startswith("ranking accuracy") for f in self.findings)
        if self.ranking_accuracy is not None and ranking and not rejected_for_ranking:
            per = ", ".join(f"vs {k} {v:.2f}" for k, v in ranking.get("by_kind", {}).items())
            lines.append(
                f"ranking accuracy {self.ranking_accuracy:.2f}: successful demonstrations outscored failed "
                f"rollouts in {self.ranking_accuracy:.0%} of {ranking['pairs']} pairs ({per})"
            )
        if self.progress_order is not None:
            lines.append(
                f"progress order {self.progress_order:+.2f}: Spearman correlation of per-step reward with "
                "time along the demonstrations until success (positive: the reward rises as the expert progresses)"
            )
        return lines


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max()),
            "std": float(values.std())}  # fmt: skip


def _constant(values: np.ndarray, tol: float) -> bool:
    return float(values.max() - values.min()) <= tol * max(1.0, abs(float(values.mean())))


def _ranking(ref: ReferenceRollouts, returns: list[float]) -> tuple[float | None, dict[str, Any]]:
    good = [i for i, r in enumerate(ref.rollouts) if r.kind == DEMO_KIND]
    bad = [i for i, r in enumerate(ref.rollouts) if r.kind != DEMO_KIND and not r.success]
    if not good or not bad:
        return None, {"pairs": 0}
    score: dict[str, list[float]] = {}
    for i in good:
        for j in bad:
            a, b = returns[i], returns[j]
            tie = abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
            score.setdefault(ref.rollouts[j].kind, []).append(0.5 if tie else float(a > b))
    allv = [v for vs in score.values() for v in vs]
    return float(np.mean(allv)), {
        "pairs": len(allv), "successful": len(good), "failed": len(bad),
        "by_kind": {k: float(np.mean(v)) for k, v in score.items()},
    }  # fmt: skip


def _progress_order(ref: ReferenceRollouts, ev: TrajectoryEvaluation) -> float | None:
    from scipy.stats import spearmanr

    values = []
    for rollout, rewards in zip(ref.rollouts, ev.rewards, strict=True):
        first = rollout.first_success
        if rollout.kind != DEMO_KIND or first is None or first < 2:
            continue
        r = rewards[: first + 1]
        if np.ptp(r) <= 0:
            values.append(0.0)
            continue
        rho = spearmanr(np.arange(len(r)), r).statistic
        if rho is not None and math.isfinite(float(rho)):
            values.append(float(rho))
    return float(np.mean(values)) if values else None


def judge(ref: ReferenceRollouts, ev: TrajectoryEvaluation, s: GateConfig) -> GateReport:
    """The verdict of checks (b)-(d) from a program's outputs on the reference rollouts."""
    findings = [str(f) for f in ev.findings]
    warnings = list(ref.notes if not ref.has_demos else [])
    stats: dict[str, Any] = {"rollouts": {"count": len(ref.rollouts), "states": sum(r.length for r in ref.rollouts),
                                          "kinds": ref.kinds(), "length": ref.length, "notes": ref.notes}}  # fmt: skip
    if findings or not ev.rewards:
        return GateReport(False, findings or ["the program returned nothing on the reference states"], warnings, stats)
    every = np.concatenate(ev.rewards)
    stats["reward"] = _summary(every)
    stats["components"] = {}
    for name, per in ev.components.items():
        values = np.concatenate(per)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        stats["components"][name] = _summary(values)
        if _constant(values, s.constant_tol):
            warnings.append(f"component `{name}` is constant ({values[0]:.4g}) on all {len(values)} reference states: "
                            "it tells states apart only through episode length (early termination); "
                            "if it should shape behaviour, rewrite it so it varies, else drop it")  # fmt: skip
    peak = float(np.abs(every).max())
    if peak > s.max_abs:
        worst = max(range(len(ev.rewards)), key=lambda i: float(np.abs(ev.rewards[i]).max()))
        findings.append(f"badly scaled: per-step |reward| reaches {peak:.3g} (on a {ref.rollouts[worst].kind} rollout); "
                        f"keep it within {s.max_abs:g}")  # fmt: skip
    elif peak < s.min_abs:
        findings.append(f"the reward is ~0 everywhere: per-step |reward| at most {peak:.3g} on all {len(every)} "
                        "reference states; scale it up")  # fmt: skip
    elif _constant(every, s.constant_tol):
        findings.append(f"the reward is constant ({every[0]:.4g}) on all {len(every)} reference states "
                        f"({_kinds(ref.kinds())} rollouts): it gives no learning signal")  # fmt: skip
    returns = [float(r.sum()) for r in ev.rewards]
    by_kind: dict[str, list[float]] = {}
    for rollout, ret in zip(ref.rollouts, returns, strict=True):
        by_kind.setdefault(rollout.kind, []).append(ret)
    stats["returns"] = {k: float(np.mean(v)) for k, v in by_kind.items()}
    ranking: dict[str, Any] = {"pairs": 0}
    accuracy: float | None = None
    if ref.has_demos:
        accuracy, ranking = _ranking(ref, returns)
    order = _progress_order(ref, ev) if ref.has_demos else None
    stats["ranking"] = ranking
    stats["progress_order"] = order
    if accuracy is not None and accuracy < s.min_ranking_accuracy:
        per_kind = ", ".join(f"{v:.2f} vs {k}" for k, v in ranking["by_kind"].items())
        findings.append(
            f"ranking accuracy {accuracy:.2f} < {s.min_ranking_accuracy:.2f}: successful demonstrations outscore "
            f"failed rollouts in only {accuracy:.0%} of {ranking['pairs']} pairs ({per_kind}); the reward does not "
            "prefer doing the task"
        )
    if order is not None and order < 0:
        warnings.append(f"the reward falls as the expert progresses (progress order {order:+.2f}): check the signs "
                        "of distance terms")  # fmt: skip
    if ref.has_demos and accuracy is None:
        warnings.append("no failed rollout to rank the demonstrations against")
    return GateReport(not findings, findings, warnings, stats, ranking_accuracy=accuracy, progress_order=order)


def gate(task: TaskSpec, source: str, cfg: Any) -> GateReport:
    """Decide whether ``source`` is worth training on ``task`` (see the module docstring).

    Args:
        task: The task the program is written for.
        source: The reward program.
        cfg: The run's config: ``cfg.check`` (smoke run: ``steps``, ``timeout_s``,
            ``memory_mb``) and ``cfg.gate`` (:class:`rewardlab.config.GateConfig`; defaults
            without it).

    Returns:
        The :class:`GateReport`.
    """
    settings, cache_dir = gate_settings(cfg)
    key = (*_check_key(task, source, cfg), repr(sorted(vars(settings).items())), cache_dir)
    known = _VERDICTS.get(key)
    if known is not None:
        _CHECKED.pop(_check_key(task, source, cfg), None)
        return known
    started = time.monotonic()
    report = _CHECKED.pop(_check_key(task, source, cfg), None) or check_program(
        task, source, steps=int(cfg.check.steps), timeout_s=float(cfg.check.timeout_s),
        memory_mb=int(cfg.check.memory_mb),
    )  # fmt: skip
    data = report.to_dict()
    check_stats = dict(data["stats"])
    check_warnings = [str(w) for w in check_stats.pop("warnings", [])]
    if not report.ok:
        verdict = GateReport(False, [str(f) for f in report.findings], check_warnings, {"check": check_stats})
    elif task.benchmark not in REPLAYABLE:
        skipped = f"trajectory checks skipped: {task.benchmark} states cannot be replayed in the sandbox (only {', '.join(REPLAYABLE)})"
        verdict = GateReport(True, [], [*check_warnings, skipped], {"check": check_stats})
    else:
        try:
            ref = reference_rollouts(task, settings, cache_dir)
        except Exception as exc:  # e.g. a benchmark without MuJoCo states: checks (a) only, said so
            verdict = GateReport(True, [], [*check_warnings, f"trajectory checks skipped: {type(exc).__name__}: {exc}"], {"check": check_stats})
        else:
            ev = evaluate_on_rollouts(task, source, ref.path, timeout_s=settings.timeout_s,
                                      memory_mb=int(cfg.check.memory_mb))  # fmt: skip
            verdict = judge(ref, ev, settings)
            # The smoke run's only warning (a constant reward on its few random states) is
            # superseded by the constancy check on the reference rollouts.
            kept = [w for w in check_warnings if not w.startswith("the reward is constant")]
            verdict.warnings = kept + verdict.warnings
            verdict.stats["check"] = check_stats
            verdict.stats["timing"] = {"evaluate_s": ev.stats.get("elapsed_s"), "record_s": ref.record_s,
                                       "rollouts_file": str(Path(ref.path).name)}  # fmt: skip
            verdict.stats["eval"] = {k: ev.stats.get(k) for k in ("states", "calls_ok", "calls_failed", "mean_call_us")}
    verdict.stats.setdefault("timing", {})["gate_s"] = round(time.monotonic() - started, 3)
    _VERDICTS[key] = verdict
    return verdict
