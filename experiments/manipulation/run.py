"""Manipulation benchmarks: the benchmark's own (expert) reward vs the offline generator's.

For each task and seed, PPO (``conf/algo/ppo.yaml``) is trained twice with the same budget:

* ``expert``: the benchmark's own dense reward (``reward_file=env``; MetaWorld's pinned
  ``reward_function_version``, ManiSkill's ``normalized_dense``);
* ``offline``: the program ``llm=offline`` writes from the task's instruction and card.

Both are scored only by the task's *own* success flag (deterministic evaluation episodes every
``--eval-freq`` steps, ``metrics.csv`` of each run). Writes ``results.json`` (every curve),
``results.md`` (final success with a 95% t-interval, steps to 50% success, wall time) and
``curves.png`` to ``--out`` (default: next to this file). Finished runs under ``--runs`` are
reused, so an interrupted sweep resumes where it stopped.

Usage::

    python experiments/manipulation/run.py                        # the README's numbers
    python experiments/manipulation/run.py --tasks metaworld/drawer_close --seeds 1 \\
        --steps 16384 --out /tmp/quick --runs /tmp/quick/runs     # ~1 min smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ARMS = ("expert", "offline")
BUDGETS = {
    "metaworld/drawer_close": 65_536,
    "metaworld/button_press": 131_072,
    "metaworld/window_open": 196_608,
    "metaworld/drawer_open": 491_520,
    "maniskill/pick_cube": 98_304,
}
"""Env steps per run (multiples of PPO's 4 x 1024-step rollout; run folders are named by it).
MetaWorld: about twice what a calibration run of the expert reward needed to succeed
(drawer_open: neither reward succeeded within 196,608 steps, so it gets 2.5 times that).
PickCube: what 2 CPU cores allow in the time (~310-370 PPO steps/s measured); PPO usually needs millions of
steps there."""


def available(task_name: str) -> str | None:
    """``None`` if ``task_name`` can be built here, else why not (printed, and in the report)."""
    from rewardlab.tasks import get_task
    from rewardlab.wrappers import make_env

    try:
        make_env(get_task(task_name)).close()
    except Exception as exc:  # missing package, Vulkan driver, asset ...
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (task, arm, seed) unless done; returns its evaluation curve and wall time."""
    import torch

    from rewardlab.config import TrainConfig, algo_preset
    from rewardlab.generators.offline import offline_reward
    from rewardlab.tasks import get_task
    from rewardlab.training import train_once

    torch.set_num_threads(1)
    task = get_task(job["task"])
    cfg = TrainConfig(
        total_timesteps=job["steps"], n_envs=4, seed=job["seed"], eval_freq=job["eval_freq"],
        eval_episodes=job["eval_episodes"], checkpoint_freq=10**9, stop_at_success=0.0,
        progress_bar=False, video_episodes=0,
    )  # fmt: skip
    source = offline_reward(task) if job["arm"] == "offline" else None
    run = train_once(task, source, algo_preset("ppo"), cfg, Path(job["dir"]))
    return {
        **{k: job[k] for k in ("task", "arm", "seed")},
        "curve": run.curve,
        "wall_s": run.wall_s,
    }


def steps_to(curve: list[dict[str, Any]], level: float) -> int | None:
    """First evaluation step at which the success rate reached ``level`` (``None``: never)."""
    return next((p["steps"] for p in curve if p["success"] >= level), None)


def aggregate(
    results: list[dict[str, Any]], skipped: dict[str, str], out: Path, args: argparse.Namespace
) -> str:
    """Write ``results.md``, ``results.json`` and ``curves.png``; returns the markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from rewardlab.stats import t_interval

    tasks = list(dict.fromkeys(r["task"] for r in results))
    lines = [
        f"| task | reward | budget (env steps) | final success (mean ± 95% CI, {args.seeds} seeds) | "
        "seeds reaching 50% | steps to 50% (mean of those) | wall time per run |",
        "|---|---|---|---|---|---|---|",
    ]
    fig, axes = plt.subplots(
        1, max(len(tasks), 1), figsize=(4.2 * max(len(tasks), 1), 3.4), squeeze=False
    )
    table: dict[str, Any] = {}
    for col, task in enumerate(tasks):
        ax = axes[0][col]
        for arm in ARMS:
            runs = [r for r in results if r["task"] == task and r["arm"] == arm]
            if not runs:
                continue
            n = min(len(r["curve"]) for r in runs)
            steps = np.array([p["steps"] for p in runs[0]["curve"][:n]])
            values = np.array([[p["success"] for p in r["curve"][:n]] for r in runs])
            mean = values.mean(axis=0)
            half = np.array([t_interval(values[:, i])[1] for i in range(n)])
            ax.plot(steps, mean, label=arm)
            ax.fill_between(
                steps, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), alpha=0.2
            )
            final_mean, final_half = t_interval(values[:, -1])
            reached = [s for s in (steps_to(r["curve"], 0.5) for r in runs) if s is not None]
            wall = float(np.mean([r["wall_s"] for r in runs]))
            lines.append(
                f"| {task} | {arm} | {int(steps[-1]):,} | {final_mean:.2f} ± {final_half:.2f} | {len(reached)}/{len(runs)} | "
                f"{f'{np.mean(reached):,.0f}' if reached else '—'} | {wall:.0f} s |"
            )
            table.setdefault(task, {})[arm] = {
                "steps": steps.tolist(), "per_seed": values.tolist(), "final": [final_mean, final_half],
                "steps_to_50": [steps_to(r["curve"], 0.5) for r in runs], "wall_s": [r["wall_s"] for r in runs],
            }  # fmt: skip
        ax.set_title(task, fontsize=10)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
        ax.set_xlabel("env steps")
        ax.set_ylabel("success rate (task's own flag)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    if skipped:
        lines.append("\nNot run here: " + "; ".join(f"{t} ({why})" for t, why in skipped.items()))
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "table": table, "skipped": skipped,
    }, indent=1))  # fmt: skip
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(BUDGETS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--steps", type=int, default=None, help="one budget for every task (default: BUDGETS)"
    )
    parser.add_argument("--eval-freq", type=int, default=16_384)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/manipulation"),
        help="report folder (the committed one: --out experiments/manipulation)",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/manipulation"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    skipped = {t: why for t in args.tasks if (why := available(t)) is not None}
    for task, why in skipped.items():
        print(f"skipping {task}: {why}", flush=True)
    jobs = [
        {"task": t, "arm": a, "seed": s, "steps": args.steps or BUDGETS.get(t, 131_072), "eval_freq": args.eval_freq,
         "eval_episodes": args.eval_episodes, "dir": str(args.runs / t.replace("/", "_") / f"{a}_s{s}_{args.steps or BUDGETS.get(t, 131_072)}")}
        for t in args.tasks if t not in skipped for s in range(args.seeds) for a in args.arms
    ]  # fmt: skip
    started = time.time()
    results = []
    # spawn, not fork: the availability probe above may have started simulator threads here
    with ProcessPoolExecutor(
        max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        for job, res in zip(jobs, pool.map(run_one, jobs), strict=True):
            results.append(res)
            print(f"{job['task']} {job['arm']} seed {job['seed']}: final success {res['curve'][-1]['success']:.2f}, "
                  f"50% at {steps_to(res['curve'], 0.5)} ({res['wall_s']:.0f} s; {time.time() - started:.0f} s total)", flush=True)  # fmt: skip
    print(aggregate(results, skipped, args.out, args))


if __name__ == "__main__":
    main()
