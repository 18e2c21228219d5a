"""Step 2 of the calibration (``run.py report``): the gate on every program, joined with the
measured training outcomes.

Per program the gate's evaluation on the task's reference rollouts is computed once (the
sandboxed child, :func:`rewardlab.reward.trajectories.evaluate_on_rollouts`; the expert reward
from the environment's recorded values) and cached under ``--runs/gate_evals``; verdicts are
then pure functions of those numbers (:func:`rewardlab.gate.judge`), so thresholds can be
fitted and cross-validated without running any program again.

Outcome of a program (over its seeds, each trained at the stated budget):

* ``learned``: an evaluation of at least one seed reached ``--stop-at`` success;
* ``never``: no evaluation of any seed had any success;
* ``partial``: in between (counted as *learned* for false rejections and as *not learned* for
  false acceptances: both rates err on the side of blaming the gate).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from programs import Program, calibration_set

CHECKS = ("check", "finite", "scale", "constant", "preference", "action_cost", "progress", "sparse")
"""The gate's checks, in the order the gate applies them (``action_cost``, ``progress`` and
``sparse`` only warn)."""


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of ``k`` successes in ``n`` trials (``(nan, nan)`` for n=0)."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def rate(k: int, n: int) -> str:
    if n == 0:
        return "— (0 programs)"
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.0%} [{lo:.0%}, {hi:.0%}]"


# --------------------------------------------------------------------------- outcomes


def outcomes(path: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per program name: label, per-seed rows; only runs of this budget, and only programs
    with ``args.seeds`` finished seeds."""
    from run import budget_of, read_outcomes

    seeds = args.seeds
    by: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in read_outcomes(path):
        if int(row["budget"]) != budget_of(row["task"], args):
            continue
        by[(row["task"], row["kind"], row["digest"])].append(row)
    out: dict[str, dict[str, Any]] = {}
    for (task, kind, digest), rows in by.items():
        seen = {r["seed"]: r for r in rows}
        if len(seen) < seeds:
            continue
        rows = [seen[s] for s in sorted(seen)][:seeds]
        reached = [int(r["reached"]) for r in rows]
        best = max(float(r["max_success"]) for r in rows)
        label = "learned" if any(reached) else ("never" if best == 0.0 else "partial")
        steps = [int(r["steps_to_success"]) for r in rows if r["steps_to_success"]]
        out[f"{task}:{kind}"] = {
            "task": task, "kind": kind, "digest": digest, "label": label, "seeds_reached": sum(reached),
            "max_success": best, "steps_to_success": steps, "budget": int(rows[0]["budget"]),
            "errors": [r["error"] for r in rows if r["error"]],
        }  # fmt: skip
    return out


# --------------------------------------------------------------------------- gate evaluations


def _eval_path(folder: Path, program: Program, ref_key: str) -> Path:
    return (
        folder / program.task.replace("/", "_") / f"{program.kind}-{program.digest}-{ref_key}.json"
    )


def evaluate(program: Program, cfg: Any, folder: Path) -> dict[str, Any]:
    """The program's static/smoke check and its per-step rewards on the reference rollouts
    (cached in ``folder``)."""
    from rewardlab.gate import benchmark_evaluation, gate_settings
    from rewardlab.reference_rollouts import REPLAYABLE, cache_key, reference_rollouts
    from rewardlab.reward.check import check_program
    from rewardlab.reward.trajectories import evaluate_on_rollouts
    from rewardlab.tasks import get_task

    task = get_task(program.task)
    settings, cache_dir = gate_settings(cfg)
    assert task.benchmark in REPLAYABLE
    path = _eval_path(folder, program, cache_key(task, settings))
    if path.exists():
        return json.loads(path.read_text())
    ref = reference_rollouts(task, settings, cache_dir)
    if program.source is None:
        check: dict[str, Any] = {"ok": True, "findings": []}
        ev = benchmark_evaluation(ref)
    else:
        report = check_program(task, program.source, steps=int(cfg.check.steps), timeout_s=float(cfg.check.timeout_s),
                               memory_mb=int(cfg.check.memory_mb))  # fmt: skip
        check = {"ok": report.ok, "findings": [str(f) for f in report.findings]}
        ev = evaluate_on_rollouts(task, program.source, ref.path, timeout_s=settings.timeout_s,
                                  memory_mb=int(cfg.check.memory_mb))  # fmt: skip
    data = {
        "check": check, "findings": [str(f) for f in ev.findings],
        "rewards": [[None if not np.isfinite(v) else float(v) for v in r] for r in ev.rewards],
        "nonfinite": [[int(i) for i in np.flatnonzero(~np.isfinite(r))] for r in ev.rewards],
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


def verdict(data: dict[str, Any], program: Program, cfg: Any, settings: Any) -> dict[str, Any]:
    """The gate's verdict (per check) from cached numbers, under ``settings``."""
    from rewardlab.gate import judge
    from rewardlab.reference_rollouts import reference_rollouts
    from rewardlab.reward.sandbox import Finding
    from rewardlab.reward.trajectories import TrajectoryEvaluation
    from rewardlab.tasks import get_task

    if not data["check"]["ok"]:
        return {
            "ok": False,
            "checks": {"check": "reject"},
            "findings": data["check"]["findings"],
            "stats": {},
        }
    ref = reference_rollouts(get_task(program.task), settings, settings.cache_dir)
    rewards = [
        np.array([np.nan if v is None else v for v in r], dtype=np.float64) for r in data["rewards"]
    ]
    ev = TrajectoryEvaluation(
        rewards=rewards, findings=[Finding("gate", f) for f in data["findings"]]
    )
    report = judge(ref, ev, settings)
    checks = dict(report.stats.get("checks", {}))
    checks["check"] = "pass" if program.source is not None else "skip"
    return {"ok": report.ok, "checks": checks, "findings": report.findings, "warnings": report.warnings,
            "stats": {k: report.stats.get(k) for k in ("preference", "reward")}}  # fmt: skip


# --------------------------------------------------------------------------- tables


def check_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per check: programs it rejected, false rejections, and the whole gate's false
    acceptances."""
    learners = [r for r in rows if r["label"] != "never"]
    never = [r for r in rows if r["label"] == "never"]
    lines = [
        "| check | rejected | rejected, learned (false rejections / programs that learned) | "
        "rejected, never learned / programs that never learned |",
        "|---|---|---|---|",
    ]
    for check in CHECKS:
        rej = [r for r in rows if r["verdict"]["checks"].get(check) == "reject"]
        fr = [r for r in rej if r["label"] != "never"]
        caught = [r for r in rej if r["label"] == "never"]
        lines.append(
            f"| {check} | {len(rej)} | {rate(len(fr), len(learners))} | "
            f"{rate(len(caught), len(never))} |"
        )
    rej = [r for r in rows if not r["verdict"]["ok"]]
    acc = [r for r in rows if r["verdict"]["ok"]]
    fa = [r for r in acc if r["label"] == "never"]
    lines.append(
        f"| **whole gate** | {len(rej)} | {rate(sum(r['label'] != 'never' for r in rej), len(learners))} | "
        f"{rate(len(rej) - sum(r['label'] != 'never' for r in rej), len(never))} |"
    )
    lines += [
        "",
        "| warning (never a rejection) | warned | warned, learned / programs that learned | "
        "warned, never learned / programs that never learned |",
        "|---|---|---|---|",
    ]
    for check in CHECKS:
        warned = [r for r in rows if r["verdict"]["checks"].get(check) == "warn"]
        if warned:
            lines.append(f"| {check} | {len(warned)} | {rate(sum(r['label'] != 'never' for r in warned), len(learners))} | "
                         f"{rate(sum(r['label'] == 'never' for r in warned), len(never))} |")  # fmt: skip
    lines.append("")
    lines.append(
        f"False acceptances (accepted, never learned): {rate(len(fa), len(never))} of the programs that never learned; "
        f"{rate(len(fa), len(acc))} of the accepted programs."
    )
    return lines


def program_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| task | program | outcome | seeds reaching success | steps to success | max success | gate | "
        "trajectory preference (neutral / recorded) | success states | progress order |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pref = (r["verdict"].get("stats") or {}).get("preference") or {}
        traj = pref.get("trajectory") or {}
        v = r["verdict"]
        gate = (
            "pass"
            if v["ok"]
            else "reject: " + ", ".join(c for c, s in v["checks"].items() if s == "reject")
        )
        fmt = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(
            f"| {r['task']} | {r['kind']} | {r['label']} | {r['seeds_reached']} | "
            f"{', '.join(f'{s:,}' for s in r['steps_to_success']) or '—'} | {r['max_success']:.2f} | {gate} | "
            f"{fmt(traj.get('neutral'))} / {fmt(traj.get('recorded'))} | {fmt(pref.get('success_states'))} | "
            f"{fmt(pref.get('progress_order'))} |"
        )
    return lines


def gate_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(run config, GateConfig)``: the defaults, rollouts cached under ``--runs``."""
    from omegaconf import OmegaConf

    from rewardlab.config import RewardLabConfig
    from rewardlab.gate import gate_settings

    cfg = OmegaConf.structured(RewardLabConfig)
    cfg.runs_dir = str(args.runs)
    settings, _ = gate_settings(cfg)
    settings = replace(settings, cache_dir=str(args.runs / ".gate_cache"))
    cfg.gate.cache_dir = settings.cache_dir
    return cfg, settings


def evaluate_all(args: argparse.Namespace) -> None:
    """Compute (and cache) the gate's numbers for every selected program."""
    from run import select

    cfg, _ = gate_config(args)
    programs = select(args)
    for i, program in enumerate(programs, 1):
        data = evaluate(program, cfg, args.runs / "gate_evals")
        print(f"[{i}/{len(programs)}] {program.name}: check {'ok' if data['check']['ok'] else 'rejected'}, "
              f"{len(data['findings'])} findings", flush=True)  # fmt: skip


STATISTICS = {
    "trajectory (neutral actions)": lambda p: (p.get("trajectory") or {}).get("neutral"),
    "trajectory (actions as executed)": lambda p: (p.get("trajectory") or {}).get("recorded"),
    "trajectory (discounted, neutral)": lambda p: (p.get("trajectory") or {}).get("discounted"),
    "success states": lambda p: p.get("success_states"),
    "progress order": lambda p: p.get("progress_order"),
}
"""Candidate statistics for the preference check (from :func:`rewardlab.gate.preference`)."""
GRID = np.round(np.arange(-1.0, 1.0001, 0.05), 2)


def statistic(row: dict[str, Any], name: str) -> float | None:
    pref = (row["verdict"].get("stats") or {}).get("preference") or {}
    value = STATISTICS[name](pref)
    return None if value is None else float(value)


def fit_threshold(rows: list[dict[str, Any]], name: str, max_fr: float = 0.05) -> float:
    """A threshold (on the 0.05 grid; reject when ``statistic < threshold``) that rejects at most
    ``max_fr`` of the rewards in ``rows`` that learned (partial counts as learned) and as many
    of those that never learned as such a threshold can; among the thresholds that do as well,
    the middle one (the widest margin on both sides)."""
    learners = [v for r in rows if r["label"] != "never" and (v := statistic(r, name)) is not None]
    never = [v for r in rows if r["label"] == "never" and (v := statistic(r, name)) is not None]
    allowed = [t for t in GRID if sum(v < t for v in learners) <= max_fr * len(learners)]
    caught = {float(t): sum(v < t for v in never) for t in allowed}
    best = max(caught.values())
    ties = [t for t, c in caught.items() if c == best]
    return float(GRID[np.abs(GRID - (min(ties) + max(ties)) / 2).argmin()])


def cross_validate(rows: list[dict[str, Any]], name: str, folds: int = 2) -> dict[str, Any]:
    """Task-wise ``folds``-fold cross-validation of :func:`fit_threshold`: every task's programs
    are judged with a threshold fitted on the other folds' tasks only."""
    tasks = list(dict.fromkeys(r["task"] for r in rows if statistic(r, name) is not None))
    fold_of = {t: i % folds for i, t in enumerate(tasks)}
    judged = [
        r
        for r in rows
        if r["task"] in fold_of and r["verdict"]["checks"].get("constant") != "reject"
    ]
    thresholds, fr, fa, learners, never = [], 0, 0, 0, 0
    for k in range(folds):
        theta = fit_threshold([r for r in judged if fold_of[r["task"]] != k], name)
        thresholds.append(theta)
        for r in (r for r in judged if fold_of[r["task"]] == k):
            value = statistic(r, name)
            assert value is not None
            rejected = value < theta
            if r["label"] == "never":
                never += 1
                fa += not rejected
            else:
                learners += 1
                fr += rejected
    return {"thresholds": thresholds, "fr": fr, "learners": learners, "caught": never - fa, "never": never,
            "full_fit": fit_threshold(judged, name)}  # fmt: skip


def cv_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| statistic (reject below the threshold) | threshold per fold (fitted on the other fold) | "
        "held-out false rejections / learned | held-out never-learned caught / never learned | fitted on all |",
        "|---|---|---|---|---|",
    ]
    for name in STATISTICS:
        cv = cross_validate(rows, name)
        lines.append(
            f"| {name} | {', '.join(f'{t:.2f}' for t in cv['thresholds'])} | {rate(cv['fr'], cv['learners'])} | "
            f"{rate(cv['caught'], cv['never'])} | {cv['full_fit']:.2f} |"
        )
    return lines


def kind_table(rows: list[dict[str, Any]], before: dict[str, Any]) -> list[str]:
    """Per kind of program: outcomes, and how many the gate rejected before and after."""
    lines = [
        "| program kind | programs | learned | partial | never | rejected by the gate before (e66c883) | "
        "rejected now |",
        "|---|---|---|---|---|---|---|",
    ]
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    for kind in kinds:
        of = [r for r in rows if r["kind"] == kind]
        old = [before[r["task"] + ":" + kind] for r in of if r["task"] + ":" + kind in before]
        old_text = (
            f"{sum(not v['ok'] for v in old)}/{len(old)}" if old else "— (could not be checked)"
        )
        lines.append(
            f"| {kind} | {len(of)} | {sum(r['label'] == 'learned' for r in of)} | {sum(r['label'] == 'partial' for r in of)} | "
            f"{sum(r['label'] == 'never' for r in of)} | {old_text} | {sum(not r['verdict']['ok'] for r in of)}/{len(of)} |"
        )
    return lines


def before_after(rows: list[dict[str, Any]], before: dict[str, Any]) -> list[str]:
    """False rejections and false acceptances of the gate before this calibration and now, on
    the programs both could check (the old gate could not check the benchmark's own reward)."""
    both = [r for r in rows if r["task"] + ":" + r["kind"] in before]
    lines = [
        "| gate | programs | rejected | false rejections / learned | false acceptances / never learned |",
        "|---|---|---|---|---|",
    ]
    for name, ok in (
        ("before (e66c883: ranking >= 0.6 on short rollouts, raw scripted actions)",
         lambda r: bool(before[r["task"] + ":" + r["kind"]]["ok"])),
        ("now", lambda r: bool(r["verdict"]["ok"])),
    ):  # fmt: skip
        learners = [r for r in both if r["label"] != "never"]
        never = [r for r in both if r["label"] == "never"]
        lines.append(
            f"| {name} | {len(both)} | {sum(not ok(r) for r in both)} | {rate(sum(not ok(r) for r in learners), len(learners))} | "
            f"{rate(sum(ok(r) for r in never), len(never))} |"
        )
    return lines


def plot(rows: list[dict[str, Any]], before: dict[str, Any], threshold: float, path: Path) -> None:
    """Per MetaWorld program, the ranking statistic of the gate before (left) and now (right)
    against the best success any seed reached; X marks a rejection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    colors = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kinds)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    panels = (
        ("before (e66c883): ranking accuracy, short rollouts, raw actions", 0.6,
         lambda r: (before.get(r["task"] + ":" + r["kind"]) or {}).get("ranking_accuracy"),
         lambda r: bool((before.get(r["task"] + ":" + r["kind"]) or {}).get("ok"))),
        ("now: trajectory preference, whole episodes, neutral actions", threshold,
         lambda r: statistic(r, "trajectory (neutral actions)"), lambda r: bool(r["verdict"]["ok"])),
    )  # fmt: skip
    for ax, (title, line, value, accepted) in zip(axes, panels, strict=True):
        rng = np.random.default_rng(0)
        for kind in kinds:
            pts = [
                (v, r["max_success"], accepted(r))
                for r in rows
                if r["kind"] == kind and (v := value(r)) is not None
            ]
            if not pts:
                continue
            x = np.array([p[0] for p in pts]) + rng.uniform(-0.015, 0.015, len(pts))
            y = np.array([p[1] for p in pts]) + rng.uniform(-0.02, 0.02, len(pts))
            ok = np.array([p[2] for p in pts])
            ax.scatter(
                x[ok], y[ok], color=colors[kind], label=kind, s=34, edgecolor="k", linewidth=0.4
            )
            ax.scatter(
                x[~ok], y[~ok], color=colors[kind], s=50, marker="X", edgecolor="k", linewidth=0.4
            )
        ax.axvline(line, color="0.3", linestyle="--", linewidth=1)
        ax.text(line, 1.08, f" reject below {line:.2f}", fontsize=8, va="bottom")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("fraction of (demonstration, failure) pairs ranked right")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.15)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best success rate of any seed (5 episodes)")
    axes[1].legend(
        fontsize=7,
        ncol=2,
        loc="center left",
        title="circle: accepted, X: rejected",
        title_fontsize=7,
    )
    fig.suptitle(
        "MetaWorld programs of the calibration set: the gate's statistic vs what PPO reached",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args: argparse.Namespace) -> str:
    """Gate every program with finished outcomes; write ``verdicts.json``, ``results.md``."""
    cfg, settings = gate_config(args)
    measured = outcomes(args.out / "outcomes.csv", args)
    rows = []
    for program in calibration_set():
        if program.name not in measured or measured[program.name]["digest"] != program.digest:
            continue
        data = evaluate(program, cfg, args.runs / "gate_evals")
        rows.append({**measured[program.name], "verdict": verdict(data, program, cfg, settings)})
    before_path = args.out / "baseline_verdicts.json"
    before = (
        {k: v for k, v in json.loads(before_path.read_text()).items()}
        if before_path.exists()
        else {}
    )
    before = {
        k: v for k, v in before.items() if k in measured and v["digest"] == measured[k]["digest"]
    }
    demo = [r for r in rows if r["task"].startswith("metaworld/")]
    lines = [
        f"{len(rows)} programs with {args.seeds} finished seeds each ({len(demo)} on MetaWorld, "
        f"{len(rows) - len(demo)} on MuJoCo)", "", *check_table(rows), "",
        "MetaWorld only (the tasks with scripted demonstrations, where every check applies; on "
        "tasks without them the gate checks only finiteness, scale and variation):", "",
        *check_table(demo), "",
        "MuJoCo only (no demonstrations: the gate checks finiteness, scale and variation):", "",
        *check_table([r for r in rows if r["task"].startswith("mujoco/")]), "",
        "Before and after, on the programs the old gate could check:", "", *before_after(rows, before), "",
        "Per kind of program:", "", *kind_table(rows, before), "",
        "Preference check, task-wise 2-fold cross-validation (programs on demonstration tasks that the "
        "constant check did not already reject):", "", *cv_table(rows), "", *program_table(rows),
    ]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, before, settings.min_ranking_accuracy, args.out / "calibration.png")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    (args.out / "verdicts.json").write_text(json.dumps(rows, indent=1, default=str))
    return text
