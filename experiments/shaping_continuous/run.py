"""Continuous-control shaping: none / teacher / adaptive / meta on two MuJoCo tasks.

For each task:

1. a *teacher*: PPO trained on the benchmark's own (expert) reward, ``--teacher-steps`` steps;
2. *learners*: PPO (``conf/algo/ppo.yaml`` settings; ``--algo sac`` for SAC) on the offline
   synthesizer's generated reward for the task, one arm per shaping: ``none`` (the unshaped
   baseline), ``teacher`` (PBRS with the teacher critic's raw, reward-normalised output, the
   default), ``teacher_units`` (the same in the teacher's reward units: an ablation of the scale),
   ``adaptive`` (component re-weighting), ``meta`` (learned intrinsic reward + novelty),
   ``--seeds`` seeds each, ``--steps`` env steps each, default ``ShapingConfig`` otherwise.

Every learner is scored by the task's *own* metric (success rate and progress, deterministic
evaluation episodes every ``--eval-freq`` steps, ``metrics.csv`` of each run directory). Writes
``results.json`` (every curve of every seed), ``results.md`` (mean and 95% t-interval over seeds
at fixed step counts) and ``curves.png`` to ``--out`` (default: next to this file); run
directories go to ``--runs`` and finished runs are reused, so an interrupted sweep resumes.

Usage::

    python experiments/shaping_continuous/run.py                       # the README's numbers
    python experiments/shaping_continuous/run.py --steps 8192 --teacher-steps 8192 --seeds 2 \\
        --eval-freq 4096 --out /tmp/quick --runs /tmp/quick/runs        # ~3 min smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ARMS: dict[str, dict[str, Any]] = {
    "none": {"kind": "none"},
    "teacher": {"kind": "teacher", "teacher_reward_units": False},
    "teacher_units": {"kind": "teacher", "teacher_reward_units": True},
    "adaptive": {"kind": "adaptive"},
    "meta": {"kind": "meta"},
}
KINDS = tuple(ARMS)
TASKS = ("mujoco/hopper_forward", "mujoco/halfcheetah_forward")


def generated_reward(task_name: str) -> str:
    from rewardlab.generators.offline import offline_reward
    from rewardlab.tasks import get_task

    return offline_reward(get_task(task_name))


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (task, kind, seed) or the task's teacher; returns its metrics rows."""
    import torch

    from rewardlab.config import ShapingConfig, TrainConfig, algo_preset
    from rewardlab.rundir import read_csv
    from rewardlab.tasks import get_task
    from rewardlab.training import train_once

    torch.set_num_threads(1)
    run_dir = Path(job["dir"])
    task = get_task(job["task"])
    source = None if job["kind"] == "expert_teacher" else generated_reward(job["task"])
    cfg = TrainConfig(
        total_timesteps=job["steps"], n_envs=4, seed=job["seed"], eval_freq=job["eval_freq"],
        eval_episodes=job["eval_episodes"], checkpoint_freq=10**9, stop_at_success=0.0,
        progress_bar=False, video_episodes=0,
    )  # fmt: skip
    shaping = (
        ShapingConfig(**ARMS[job["kind"]], teacher=job.get("teacher"))
        if job["kind"] in KINDS
        else None
    )
    algo = algo_preset(job.get("algo", "ppo"), **(job.get("algo_kwargs") or {}))
    run = train_once(task, source, algo, cfg, run_dir, shaping=shaping)
    weights = read_csv(run_dir / "shaping.csv") if (run_dir / "shaping.csv").exists() else []
    return {
        **{k: job[k] for k in ("task", "kind", "seed")},
        "curve": run.curve,
        "wall_s": run.wall_s,
        "weights": weights,
    }


def aggregate(results: list[dict[str, Any]], out: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardlab.stats import t_interval, welch_p

    learners = [r for r in results if r["kind"] in KINDS]
    teachers = {r["task"]: r for r in results if r["kind"] == "expert_teacher"}
    tasks = list(dict.fromkeys(r["task"] for r in learners))
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.5 * len(tasks), 7), squeeze=False)
    lines = [
        f"# Results: {args.algo.upper()} learners, {args.seeds} seeds, {args.steps:,} steps each (mean ± 95% t-interval half-width)\n"
    ]
    table: dict[str, Any] = {}
    for col, task in enumerate(tasks):
        teacher = teachers.get(task)
        if teacher:
            last = teacher["curve"][-1]
            lines.append(f"\n## {task}\n\nTeacher (PPO on the expert reward, {last['steps']:,} steps): "
                         f"success {last['success']:.2f}, progress {last['progress']:.3f} (final evaluation, {args.eval_episodes} episodes).\n")  # fmt: skip
        for row, metric in enumerate(("progress", "success")):
            ax = axes[row][col]
            for kind in KINDS:
                runs = [r for r in learners if r["task"] == task and r["kind"] == kind]
                if not runs:
                    continue
                n = min(len(r["curve"]) for r in runs)
                steps = np.array([p["steps"] for p in runs[0]["curve"][:n]])
                values = np.array([[p[metric] for p in r["curve"][:n]] for r in runs])
                stats_ = [t_interval(values[:, i]) for i in range(n)]
                mean = np.array([m for m, _ in stats_])
                half = np.array([h for _, h in stats_])
                ax.plot(steps, mean, label=kind)
                ax.fill_between(
                    steps, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), alpha=0.15
                )
                table.setdefault(task, {}).setdefault(metric, {})[kind] = {
                    "steps": steps.tolist(), "mean": mean.tolist(), "ci": half.tolist(),
                    "per_seed": values.tolist(),
                }  # fmt: skip
            ax.set_title(f"{task}: {metric}")
            ax.set_xlabel("env steps")
            ax.set_ylabel(
                f"evaluation {metric} ({'fraction of the distance' if metric == 'progress' else 'rate'})"
            )
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for metric in ("progress", "success"):
            entries = table[task][metric]
            steps = (
                entries["none"]["steps"]
                if "none" in entries
                else next(iter(entries.values()))["steps"]
            )
            picks = sorted(
                {
                    steps[len(steps) // 4],
                    steps[len(steps) // 2],
                    steps[(3 * len(steps)) // 4],
                    steps[-1],
                }
            )
            lines.append(f"\n{metric}:\n\n| shaping | " + " | ".join(f"{s:,} steps" for s in picks)
                         + " | area under curve | Welch p vs none: final, area |")  # fmt: skip
            lines.append("|---|" + "---|" * (len(picks) + 2))
            base = entries.get("none")
            for kind, e in entries.items():
                cells = [
                    f"{e['mean'][e['steps'].index(s)]:.3f} ± {e['ci'][e['steps'].index(s)]:.3f}"
                    for s in picks
                    if s in e["steps"]
                ]
                auc = [float(np.mean(seed)) for seed in e["per_seed"]]
                m, h = t_interval(np.array(auc))
                tests = "—"
                if base is not None and kind != "none":
                    p_final = welch_p(
                        [s[-1] for s in e["per_seed"]], [s[-1] for s in base["per_seed"]]
                    )
                    p_auc = welch_p(auc, [float(np.mean(seed)) for seed in base["per_seed"]])
                    tests = f"{p_final:.3f}, {p_auc:.3f}"
                lines.append(
                    f"| {kind} | " + " | ".join(cells) + f" | {m:.3f} ± {h:.3f} | {tests} |"
                )
        walls = {
            k: np.mean([r["wall_s"] for r in learners if r["task"] == task and r["kind"] == k])
            for k in KINDS
        }
        lines.append(
            "\nMean wall time per learner run: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items() if np.isfinite(v))
            + ".\n"
        )
        adaptive = [
            r for r in learners if r["task"] == task and r["kind"] == "adaptive" and r["weights"]
        ]
        if adaptive:
            final = {
                k: [float(r["weights"][-1][k]) for r in adaptive if r["weights"][-1].get(k)]
                for k in adaptive[0]["weights"][-1]
                if k.startswith("weight/")
            }
            lines.append(
                "Adaptive weights at the end (mean over seeds): "
                + ", ".join(f"{k[7:]} {np.mean(v):.2f}" for k, v in final.items())
                + ".\n"
            )
    fig.tight_layout()
    suffix = "" if args.algo == "ppo" else f"_{args.algo}"
    fig.savefig(out / f"curves{suffix}.png", dpi=110)
    (out / f"results{suffix}.md").write_text("\n".join(lines) + "\n")
    (out / f"results{suffix}.json").write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "table": table,
        "teachers": {t: r["curve"] for t, r in teachers.items()},
        "generated_rewards": {t: generated_reward(t) for t in tasks},
        "adaptive_weights": {f"{r['task']}/{r['seed']}": r["weights"] for r in learners if r["kind"] == "adaptive"},
        "wall_s": {f"{r['task']}/{r['kind']}/{r['seed']}": round(r["wall_s"], 1) for r in results},
    }, indent=1))  # fmt: skip
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=81_920)
    parser.add_argument("--teacher-steps", type=int, default=163_840)
    parser.add_argument("--eval-freq", type=int, default=8192)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--algo",
        choices=["ppo", "sac"],
        default="ppo",
        help="the learners' algorithm (teachers: PPO)",
    )
    parser.add_argument(
        "--learning-starts", type=int, default=None, help="SAC: override conf/algo/sac.yaml"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/shaping_continuous"),
        help="report folder (the committed one: --out experiments/shaping_continuous)",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/shaping_continuous"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    common = {"eval_freq": args.eval_freq, "eval_episodes": args.eval_episodes}
    teachers = [
        {"task": t, "kind": "expert_teacher", "seed": 100, "steps": args.teacher_steps,
         "dir": str(args.runs / t.replace("/", "_") / "teacher"), **common}
        for t in args.tasks
    ]  # fmt: skip
    learners = [
        {"task": t, "kind": k, "seed": s, "steps": args.steps, "teacher": tj["dir"], "algo": args.algo,
         "algo_kwargs": {"learning_starts": args.learning_starts} if args.learning_starts is not None else {},
         "dir": str(args.runs / t.replace("/", "_") / (f"{k}_s{s}" if args.algo == "ppo" else f"{args.algo}_{k}_s{s}")), **common}
        for t, tj in zip(args.tasks, teachers, strict=True) for s in range(args.seeds) for k in args.kinds
    ]  # fmt: skip
    started = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, teachers))
        print(f"teachers done after {time.time() - started:.0f} s", flush=True)
        for job, res in zip(learners, pool.map(run_one, learners), strict=True):
            results.append(res)
            print(f"{job['task']} {job['kind']} seed {job['seed']}: final progress {res['curve'][-1]['progress']:.3f} "
                  f"success {res['curve'][-1]['success']:.2f} ({res['wall_s']:.0f} s; {time.time() - started:.0f} s total)", flush=True)  # fmt: skip
    aggregate(results, args.out, args)


if __name__ == "__main__":
    main()
