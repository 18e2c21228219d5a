"""The pre-flight gate: what a reward program must pass before it may cost training time.

:func:`gate` is the one entry point (the search, ``rewardlab train``/``refine`` and other loops
call it). A program passes only if

a. the spine's **static and smoke checks** pass (:func:`rewardlab.reward.check.check_program`;
   the generation loop has usually just run that check on the very program, and
   :func:`remember_check` hands its report over so it is not run twice);
b. it is **finite and well-scaled** on the task's reference rollouts
   (:mod:`rewardlab.reference_rollouts`: random, zero-action and perturbed rollouts, plus
   scripted-expert demonstrations, noisy and truncated demonstrations where the task has an
   expert; whole episodes, actions as the environment executes them): every call returns a
   finite number, the largest per-step ``|r|`` is at most ``gate.max_abs`` and at least
   ``gate.min_abs`` (not ~0 everywhere);
c. the **total varies** over those states (a constant reward is rejected; a constant named
   component is a warning);
d. where demonstrations exist, it **prefers doing the task** (CARD's trajectory preference,
   :func:`preference`): the fraction of (successful demonstration, failed rollout) pairs whose
   whole-episode returns are ordered right (ties count half) must reach
   ``gate.min_ranking_accuracy``. Returns are compared on the same states with a neutral
   (zero) action at every step, so that a ``-w * norm(action)`` term does not punish the
   scripted experts' full-effort actions (which a trained policy need not copy), and over
   whole episodes, so that the time a successful policy holds the goal counts as it does in
   training. Also reported: the preference with the actions as executed and discounted, per
   kind of failure, the probability that a state after success outscores a failed rollout's
   state, and the *progress order* (mean Spearman correlation of per-step reward with time
   along each demonstration up to its success; a warning when negative, never a rejection,
   since rewards paying progress *increments* need not rise). When the preference passes on
   neutral actions but falls below ``gate.min_ranking_accuracy`` with the actions as executed,
   an ``action_cost`` **warning** says the action penalty outweighs the task (calibration:
   both over-heavy penalties of the set, no reward that learned; too few to reject on).

Every check's verdict is in ``stats["checks"]`` (``pass``, ``warn``, ``reject``, ``skip``).
The thresholds are measured against training outcomes in ``experiments/gate_calibration``
(README: false rejections and false acceptances per check).

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
from rewardlab.reference_rollouts import (
    DEMO_KIND,
    REPLAYABLE,
    ReferenceRollouts,
    reference_rollouts,
)
from rewardlab.reward.check import CheckReport, check_program
from rewardlab.reward.trajectories import Rollout, TrajectoryEvaluation, evaluate_on_rollouts
from rewardlab.tasks.registry import TaskSpec

__all__ = [
    "GATE_NAME", "GateReport", "benchmark_evaluation", "evaluate_on_rollouts", "gate", "gate_benchmark_reward",
    "gate_settings", "judge", "preference", "remember_check",
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
            lines.append(
                f"component `{name}`: min {comp['min']:.4g}, mean {comp['mean']:.4g}, max {comp['max']:.4g}"
            )
        returns = self.stats.get("returns")
        if returns:
            lines.append("mean return per rollout kind (actions as executed): "
                         + ", ".join(f"{k} {v:.4g}" for k, v in returns.items()))  # fmt: skip
        pref = self.stats.get("preference") or {}
        traj = pref.get("trajectory")
        rejected_for_ranking = any(f.startswith("ranking accuracy") for f in self.findings)
        if traj and not rejected_for_ranking:
            per = ", ".join(f"vs {k} {v:.2f}" for k, v in pref.get("by_kind", {}).items())
            lines.append(
                f"ranking accuracy {traj['neutral']:.2f} (CARD's trajectory preference): over whole episodes, successful "
                f"demonstrations outscored failed rollouts in {traj['neutral']:.0%} of {pref['pairs']} pairs ({per}; "
                f"states compared with neutral actions; {traj['recorded']:.2f} with the actions as executed)"
            )  # fmt: skip
        if pref.get("success_states") is not None:
            lines.append(f"success states {pref['success_states']:.2f}: probability that a state of a demonstration after "
                         "its success outscores a state of a failed rollout")  # fmt: skip
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


def _tied(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _pair_accuracy(good: list[float], bad: list[float]) -> float:
    """Fraction of (good, bad) pairs with ``good > bad``; ties count half."""
    scores = [0.5 if _tied(a, b) else float(a > b) for a in good for b in bad]
    return float(np.mean(scores))


def _auc(good: np.ndarray, bad: np.ndarray) -> float:
    """P(a value drawn from ``good`` > one drawn from ``bad``), ties half (Mann-Whitney)."""
    from scipy.stats import rankdata

    both = np.concatenate([good, bad])
    scale = max(1.0, float(np.abs(both).max()))
    ranks = rankdata(np.round(both / scale, 9))  # values equal to 1e-9 relative are ties
    return float(
        (ranks[: len(good)].sum() - len(good) * (len(good) + 1) / 2) / (len(good) * len(bad))
    )


def _discounted(r: np.ndarray, gamma: float) -> float:
    return float(np.sum(r * gamma ** np.arange(len(r))))


def _spearman_to_success(rollout: Rollout, rewards: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    first = rollout.first_success
    if first is None or first < 2:
        return None
    r = rewards[: first + 1]
    if np.ptp(r) <= 0:
        return 0.0
    rho = spearmanr(np.arange(len(r)), r).statistic
    return float(rho) if rho is not None and math.isfinite(float(rho)) else None


def preference(
    ref: ReferenceRollouts, rewards: list[np.ndarray], neutral: list[np.ndarray]
) -> dict[str, Any]:
    """How the reward orders the task's demonstrations against its failures (demonstration
    tasks only), read in several ways; which of them the gate acts on, and at what threshold,
    is :func:`judge`'s business (calibrated in ``experiments/gate_calibration``).

    ``rewards`` and ``neutral`` hold the per-step rewards of ``ref.rollouts`` as recorded and of
    their neutral-action copies. Returned (``None`` where undefined):

    * ``trajectory``: CARD's trajectory preference: the fraction of (successful demonstration,
      failed rollout) pairs whose whole-episode returns are ordered right (ties half), on the
      neutral-action copies (``neutral``), with the actions as executed (``recorded``), and
      with discounted returns (``gamma`` 0.99) from the first step (``discounted``); also per
      kind of failure (``by_kind``, neutral);
    * ``success_states``: the probability that a state of a demonstration at or after its
      success outscores a state of a failed rollout (per step, neutral actions): does the
      reward pay more for the task being done than for anything the failures do;
    * ``progress_order``: mean Spearman correlation of the per-step reward (neutral) with time
      along the demonstrations up to success (positive: the reward rises as the expert
      progresses);
    * ``pairs``, ``successful``, ``failed``: the counts behind them.
    """
    plain = ref.rollouts
    good = [i for i, r in enumerate(plain) if r.kind == DEMO_KIND]
    bad = [i for i, r in enumerate(plain) if r.kind != DEMO_KIND and not r.success]
    out: dict[str, Any] = {
        "successful": len(good),
        "failed": len(bad),
        "pairs": len(good) * len(bad),
    }
    if not good or not bad:
        return out
    totals = {"neutral": [float(r.sum()) for r in neutral], "recorded": [float(r.sum()) for r in rewards],
              "discounted": [_discounted(r, 0.99) for r in neutral]}  # fmt: skip
    out["trajectory"] = {
        k: _pair_accuracy([v[i] for i in good], [v[j] for j in bad]) for k, v in totals.items()
    }
    kinds = sorted({plain[j].kind for j in bad})
    out["by_kind"] = {
        k: _pair_accuracy([totals["neutral"][i] for i in good], [totals["neutral"][j] for j in bad if plain[j].kind == k])
        for k in kinds
    }  # fmt: skip
    done = np.concatenate([neutral[i][int(plain[i].first_success or 0) :] for i in good])
    failed = np.concatenate([neutral[j] for j in bad])
    out["success_states"] = _auc(done, failed)
    orders = [rho for i in good if (rho := _spearman_to_success(plain[i], neutral[i])) is not None]
    out["progress_order"] = float(np.mean(orders)) if orders else None
    out["returns"] = {
        "demo": float(np.mean([totals["neutral"][i] for i in good])),
        **{k: float(np.mean([totals["neutral"][j] for j in bad if plain[j].kind == k])) for k in kinds},
    }  # fmt: skip
    return out


def judge(ref: ReferenceRollouts, ev: TrajectoryEvaluation, s: GateConfig) -> GateReport:
    """The verdict of checks (b)-(d) from a program's outputs on the reference rollouts
    (``ev`` holds one row per rollout of the evaluation file: as recorded, then neutral)."""
    findings = [str(f) for f in ev.findings]
    warnings = list(ref.notes if not ref.has_demos else [])
    checks: dict[str, str] = {}
    stats: dict[str, Any] = {"rollouts": {"count": len(ref.rollouts), "states": sum(r.length for r in ref.rollouts),
                                          "kinds": ref.kinds(), "length": ref.length, "notes": ref.notes},
                             "checks": checks}  # fmt: skip
    if findings or not ev.rewards:
        checks["finite"] = "reject"
        return GateReport(
            False,
            findings or ["the program returned nothing on the reference states"],
            warnings,
            stats,
        )
    checks["finite"] = "pass"
    rewards, neutral = ref.split(ev.rewards)
    every = np.concatenate(rewards)
    stats["reward"] = _summary(every)
    stats["components"] = {}
    for name, per in ev.components.items():
        values = np.concatenate(ref.split(per)[0])
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        stats["components"][name] = _summary(values)
        if _constant(values, s.constant_tol):
            warnings.append(f"component `{name}` is constant ({values[0]:.4g}) on all {len(values)} reference states: "
                            "it tells states apart only through episode length (early termination); "
                            "if it should shape behaviour, rewrite it so it varies, else drop it")  # fmt: skip
    peak = float(np.abs(np.concatenate([every, *neutral])).max())
    checks["scale"] = "pass"
    if peak > s.max_abs:
        worst = max(range(len(rewards)), key=lambda i: float(np.abs(rewards[i]).max()))
        findings.append(f"badly scaled: per-step |reward| reaches {peak:.3g} (on a {ref.rollouts[worst].kind} rollout); "
                        f"keep it within {s.max_abs:g}")  # fmt: skip
        checks["scale"] = "reject"
    elif peak < s.min_abs:
        findings.append(f"the reward is ~0 everywhere: per-step |reward| at most {peak:.3g} on all {len(every)} "
                        "reference states; scale it up")  # fmt: skip
        checks["scale"] = "reject"
    checks["constant"] = "pass"
    if _constant(every, s.constant_tol):
        findings.append(f"the reward is constant ({every[0]:.4g}) on all {len(every)} reference states "
                        f"({_kinds(ref.kinds())} rollouts): it gives no learning signal")  # fmt: skip
        checks["constant"] = "reject"
    failed = [
        r for rollout, r in zip(ref.rollouts, neutral, strict=True) if not rollout.successes.any()
    ]
    if failed and checks["constant"] == "pass":
        span = float(np.ptp(np.concatenate(neutral)))
        flat = float(np.ptp(np.concatenate(failed)))
        stats["signal"] = {"failed_span": flat, "span": span, "failed_rollouts": len(failed)}
        checks["sparse"] = "pass"
        if flat <= s.constant_tol * max(1.0, span):
            warnings.append(f"the reward is flat ({float(failed[0][0]):.4g}) on every state of the {len(failed)} reference "
                            "rollouts that never succeed (compared with neutral actions): it pays only at or near success, so "
                            "a policy that has not succeeded yet gets no signal; add a dense term that grows toward success")  # fmt: skip
            checks["sparse"] = "warn"
    stats["returns"] = {}
    for rollout, r in zip(ref.rollouts, rewards, strict=True):
        stats["returns"].setdefault(rollout.kind, []).append(float(r.sum()))
    stats["returns"] = {k: float(np.mean(v)) for k, v in stats["returns"].items()}
    accuracy: float | None = None
    order: float | None = None
    if ref.has_demos:
        pref = preference(ref, rewards, neutral)
        stats["preference"] = pref
        traj = pref.get("trajectory")
        if traj is None:
            warnings.append("no failed rollout to rank the demonstrations against")
        else:
            accuracy = float(traj["neutral"])
            order = pref["progress_order"]
            checks["preference"] = "pass"
            if checks["constant"] == "pass" and accuracy < s.min_ranking_accuracy:
                per_kind = ", ".join(f"{v:.2f} vs {k}" for k, v in pref["by_kind"].items())
                findings.append(
                    f"ranking accuracy {accuracy:.2f} < {s.min_ranking_accuracy:.2f} (CARD's trajectory preference): over "
                    "whole episodes, successful "
                    f"demonstrations outscore failed rollouts in only {accuracy:.0%} of {pref['pairs']} pairs "
                    f"({per_kind}; states compared with neutral actions); the reward does not prefer doing the task"
                )  # fmt: skip
                checks["preference"] = "reject"
            executed = float(traj["recorded"])
            if checks["constant"] == "pass" and checks["preference"] == "pass":
                checks["action_cost"] = "pass"
            if checks.get("action_cost") == "pass" and executed < s.min_ranking_accuracy:
                warnings.append(
                    f"the action cost outweighs the task: with the actions as executed, successful demonstrations "
                    f"outscore failed rollouts in only {executed:.0%} of {pref['pairs']} pairs ({accuracy:.0%} on the "
                    "same states with neutral actions), so acting firmly to do the task earns less than doing little; "
                    "lower the action penalty (e.g. 0.01 * norm(action)) unless the task needs gentle motions"
                )  # fmt: skip
                checks["action_cost"] = "warn"
            if order is not None and order < 0:
                warnings.append(f"the reward falls as the expert progresses (progress order {order:+.2f}): check the "
                                "signs of distance terms")  # fmt: skip
                checks["progress"] = "warn"
            else:
                checks["progress"] = "pass"
    return GateReport(
        not findings, findings, warnings, stats, ranking_accuracy=accuracy, progress_order=order
    )


def benchmark_evaluation(ref: ReferenceRollouts) -> TrajectoryEvaluation:
    """The task's own (expert) reward on its reference rollouts, as the environment returned it
    when they were recorded (trusted values, no program runs). The neutral-action copies get the
    same values: the benchmark's reward cannot be re-run with other actions, and MetaWorld's
    ``v2`` rewards read the state, not the action."""
    values = [np.asarray(r.rewards, dtype=np.float64) for r in ref.rollouts]
    return TrajectoryEvaluation(
        rewards=values + [v.copy() for v in values], stats={"elapsed_s": 0.0}
    )


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
        verdict = GateReport(
            False, [str(f) for f in report.findings], check_warnings, {"check": check_stats}
        )
    elif task.benchmark not in REPLAYABLE:
        skipped = f"trajectory checks skipped: {task.benchmark} states cannot be replayed in the sandbox (only {', '.join(REPLAYABLE)})"
        verdict = GateReport(True, [], [*check_warnings, skipped], {"check": check_stats})
    else:
        try:
            ref = reference_rollouts(task, settings, cache_dir)
        except Exception as exc:  # e.g. a benchmark without MuJoCo states: checks (a) only, said so
            verdict = GateReport(
                True,
                [],
                [*check_warnings, f"trajectory checks skipped: {type(exc).__name__}: {exc}"],
                {"check": check_stats},
            )
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
            verdict.stats["eval"] = {
                k: ev.stats.get(k) for k in ("states", "calls_ok", "calls_failed", "mean_call_us")
            }
    verdict.stats.setdefault("checks", {})["check"] = "pass" if report.ok else "reject"
    verdict.stats.setdefault("timing", {})["gate_s"] = round(time.monotonic() - started, 3)
    _VERDICTS[key] = verdict
    return verdict


def gate_benchmark_reward(task: TaskSpec, cfg: Any) -> GateReport:
    """The gate's checks (b)-(d) on the task's own dense reward (``reward_file=env``), read
    from the values the environment returned on the reference rollouts (trusted code: there is
    no program to vet). Same settings and verdict as :func:`gate`."""
    settings, cache_dir = gate_settings(cfg)
    if task.benchmark not in REPLAYABLE:
        return GateReport(True, [], [f"trajectory checks skipped: {task.benchmark} states cannot be replayed"],
                          {"checks": {"check": "skip"}})  # fmt: skip
    ref = reference_rollouts(task, settings, cache_dir)
    verdict = judge(ref, benchmark_evaluation(ref), settings)
    verdict.stats["checks"]["check"] = "skip"
    return verdict
