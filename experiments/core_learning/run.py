"""Does training on the rollout core learn as well per env step as the gymnasium envs?

Issue 14 measured the README's fast path, ``train.backend=native train.n_envs=64``, reaching
task progress 0.09 at 65,536 steps where 4 gymnasium envs reached 0.48-0.50: with the PPO
preset's ``n_steps: 1024`` per env, 64 envs collect one 65,536-step rollout per update, so
the whole budget is a single update. The preset now fixes the rollout per update
(``algo.steps_per_update: 4096``) and ``n_steps`` follows ``n_envs``. Three arms, PPO
(``conf/algo/ppo.yaml``) on ``mujoco/hopper_forward`` with the offline synthesizer's reward
(``llm=offline``, what ``rewardlab train`` writes), same budget and evaluation:

* ``gym4``: ``train.backend=dummy train.n_envs=4`` (n_steps 1024, 4,096 steps per update);
* ``core64``: ``train.backend=native train.n_envs=64`` (n_steps 64, 4,096 steps per update);
* ``core64_nsteps1024``: the same with ``algo.kwargs.n_steps=1024`` (65,536 steps per
  update: what the preset gave before).

Scored by the task's own progress measure and success metric (deterministic evaluation
episodes on gymnasium envs every ``--eval-freq`` steps, never the generated reward). Writes
``results.md`` (final progress and success, mean with a 95% t-interval over seeds),
``results.json`` and ``curves.png`` to ``--out`` (default ``runs/experiments/core_learning``;
the committed report next to this file is rebuilt with ``--out experiments/core_learning``);
finished runs under ``--runs`` are reused.

Usage::

    python experiments/core_learning/run.py --seeds 5 --out experiments/core_learning  # the README's numbers
    python experiments/core_learning/run.py --arms core64 --seeds 1 --steps 4096 \\
        --eval-freq 4096 --eval-episodes 1 --out /tmp/q --runs /tmp/q/runs   # smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

TASK = "mujoco/hopper_forward"
ARMS: dict[str, dict[str, Any]] = {
    "gym4": {"backend": "dummy", "n_envs": 4, "algo_kwargs": {}},
    "core64": {"backend": "native", "n_envs": 64, "algo_kwargs": {}},
    "core64_nsteps1024": {"backend": "native", "n_envs": 64, "algo_kwargs": {"n_steps": 1024}},
}
LABELS = {
    "gym4": "gymnasium, 4 envs (n_steps 1024)",
    "core64": "core, 64 envs (n_steps 64)",
    "core64_nsteps1024": "core, 64 envs, n_steps 1024 (before)",
}


def run_one(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one (arm, seed) unless done; its evaluation curve, wall time and per-update size."""
    import torch

    from rewardlab.config import TrainConfig, algo_preset
    from rewardlab.generators.offline import offline_reward
    from rewardlab.tasks import get_task
    from rewardlab.training import algo_kwargs, train_once

    torch.set_num_threads(1)
    spec = ARMS[arm]
    task = get_task(TASK)
    cfg = TrainConfig(
        total_timesteps=args.steps, n_envs=spec["n_envs"], backend=spec["backend"], seed=seed,
        eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, checkpoint_freq=10**9,
        stop_at_success=0.0, progress_bar=False, video_episodes=0,
    )  # fmt: skip
    algo = algo_preset("ppo", **spec["algo_kwargs"])
    run = train_once(
        task, offline_reward(task), algo, cfg, args.runs / f"{arm}_s{seed}_{args.steps}"
    )
    per_update = int(algo_kwargs(algo, spec["n_envs"])["n_steps"]) * spec["n_envs"]
    return {
        "arm": arm,
        "seed": seed,
        "curve": run.curve,
        "wall_s": run.wall_s,
        "per_update": per_update,
    }


def aggregate(results: list[dict[str, Any]], out: Path, args: argparse.Namespace) -> str:
    """Write ``results.md``, ``results.json`` and ``curves.png``; returns the markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardlab.stats import t_interval

    lines = [
        "| arm | env steps per PPO update | final progress (mean ± 95% CI) | final success (mean ± 95% CI) | seeds | wall time per run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    table: dict[str, Any] = {}
    for arm in ARMS:
        runs = [r for r in results if r["arm"] == arm]
        if not runs:
            continue
        n = min(len(r["curve"]) for r in runs)
        steps = np.array([p["steps"] for p in runs[0]["curve"][:n]])
        entry: dict[str, Any] = {"steps": steps.tolist(), "per_update": runs[0]["per_update"]}
        for col, key in enumerate(("progress", "success")):
            values = np.array([[p[key] for p in r["curve"][:n]] for r in runs])
            mean = values.mean(axis=0)
            half = np.array([t_interval(values[:, i])[1] for i in range(n)])
            axes[col].plot(steps, mean, "o-", label=LABELS[arm])
            axes[col].fill_between(steps, mean - half, mean + half, alpha=0.2)
            entry[key] = {"per_seed": values.tolist(), "final": list(t_interval(values[:, -1]))}
        wall = float(np.mean([r["wall_s"] for r in runs]))
        p, s = entry["progress"]["final"], entry["success"]["final"]
        lines.append(
            f"| {LABELS[arm]} | {entry['per_update']:,} | {p[0]:.2f} ± {p[1]:.2f} | {s[0]:.2f} ± {s[1]:.2f} | {len(runs)} | {wall:.0f} s |"
        )
        table[arm] = entry
    for ax, key in zip(axes, ("task progress", "success rate"), strict=True):
        ax.set(xlabel="env steps", ylabel=key, title=key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"{TASK}, PPO, offline reward: evaluation (mean and 95% t-interval over seeds)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "table": table,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=65_536)
    parser.add_argument("--eval-freq", type=int, default=16_384)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/core_learning"),
        help="report folder (the committed one: --out experiments/core_learning)",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/core_learning"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = []
    for seed in range(args.seeds):
        for arm in args.arms:
            res = run_one(arm, seed, args)
            results.append(res)
            last = res["curve"][-1]
            print(f"{arm} seed {seed}: progress {last['progress']:.2f}, success {last['success']:.2f} "
                  f"({res['wall_s']:.0f} s; {time.time() - started:.0f} s total)", flush=True)  # fmt: skip
    text = aggregate(results, args.out, args)
    print(text)
    return text


if __name__ == "__main__":
    main()
