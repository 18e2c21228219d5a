"""Scripted-teacher shaping on MetaWorld: PPO unshaped vs shaped by the scripted policy's value.

For each task, the value of MetaWorld's scripted policy under the task's expert reward is fitted
once (``shaping.teacher=scripted``: :func:`rewardlab.shaping.scripted.fit_scripted_value` with
the default ``ShapingConfig``, the learner's gamma 0.99); its report is copied next to this file
as ``teacher_fit_<task>.json``. Then PPO (``conf/algo/ppo.yaml``, 4 envs) is trained on the
benchmark's own reward (``reward_file=env``), ``--seeds`` seeds per arm, one training at a time:

* ``unshaped``: the expert reward alone;
* ``scripted teacher``: the expert reward plus ``gamma Phi(s') - Phi(s)`` with ``Phi`` the fitted
  value (``shaping=teacher shaping.teacher=<the fitted value.pt>``).

Every run is scored by the benchmark's success flag (deterministic evaluation episodes every
``--eval-freq`` steps). Writes ``results.json`` (every curve of every seed), ``results.md``
(success mean ± 95% t-interval at fixed step counts, area under the curve, Welch tests) and
``curves.png`` to ``--out`` (default: next to this file); finished runs under ``--runs`` are
reused, so an interrupted sweep resumes.

Usage::

    nice -n 10 python experiments/shaping_metaworld/run.py        # the README's numbers (~25 min)
    python experiments/shaping_metaworld/run.py --tasks metaworld/drawer_close --seeds 1 \\
        --scale 0.25 --out /tmp/quick --runs /tmp/quick/runs    # ~1 min smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ARMS = ("unshaped", "scripted teacher")
BUDGETS = {"metaworld/drawer_close": 49_152, "metaworld/button_press": 98_304}
"""Env steps per run (multiples of PPO's 4 x 1024-step rollout)."""


def slug(task: str) -> str:
    return task.split("/", 1)[1]


def fit_teacher(task_name: str, runs: Path) -> Path:
    """Fit (or reuse) the scripted policy's value for ``task_name``; returns its ``value.pt``."""
    import torch

    from rewardlab.config import ShapingConfig, algo_preset
    from rewardlab.shaping.continuous import learner_gamma
    from rewardlab.shaping.scripted import fit_scripted_value
    from rewardlab.tasks import get_task

    torch.set_num_threads(1)
    folder = runs / slug(task_name) / "teacher"
    if not (folder / "fit.json").exists():
        cfg = ShapingConfig(kind="teacher", teacher="scripted")
        fit_scripted_value(
            get_task(task_name), folder, gamma=learner_gamma(algo_preset("ppo")), episodes=cfg.scripted_episodes,
            noise=tuple(cfg.scripted_noise), epochs=cfg.value_epochs,
        )  # fmt: skip
    return folder / "value.pt"


def run_one(
    task_name: str, arm: str, seed: int, steps: int, value: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Train one (task, arm, seed) unless done; return its success curve and wall time."""
    import torch

    from rewardlab.config import ShapingConfig, TrainConfig, algo_preset
    from rewardlab.tasks import get_task
    from rewardlab.training import train_once

    torch.set_num_threads(1)
    run_dir = args.runs / slug(task_name) / f"{arm.replace(' ', '_')}_s{seed}"
    cfg = TrainConfig(
        total_timesteps=steps, n_envs=4, seed=seed, eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
        checkpoint_freq=10**9, stop_at_success=0.0, progress_bar=False, video_episodes=0,
    )  # fmt: skip
    shaping = ShapingConfig(kind="teacher", teacher=str(value)) if arm != "unshaped" else None
    run = train_once(get_task(task_name), None, algo_preset("ppo"), cfg, run_dir, shaping=shaping)
    return {"task": task_name, "arm": arm, "seed": seed, "curve": run.curve, "wall_s": run.wall_s}


def first_reaching(curve: list[float], steps: list[int], level: float) -> int | None:
    """The first evaluation step at which success reaches ``level`` (``None``: never)."""
    return next((s for s, v in zip(steps, curve, strict=True) if v >= level), None)


def aggregate(
    results: list[dict[str, Any]],
    fits: dict[str, dict[str, Any]],
    out: Path,
    args: argparse.Namespace,
    wall: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardlab.stats import t_interval, welch_p

    tasks = list(dict.fromkeys(r["task"] for r in results))
    train_s = sum(r["wall_s"] for r in results)
    fit_s = sum(f["seconds"] for f in fits.values())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.8 * len(tasks), 4.2), squeeze=False)
    lines = [
        f"# Results: PPO on the expert reward, unshaped vs scripted-teacher PBRS, {args.seeds} seeds "
        f"(success rate over {args.eval_episodes} deterministic evaluation episodes; mean ± 95% t-interval half-width)\n",
        f"Budget: {train_s / 60:.1f} min of training and {fit_s:.0f} s of teacher fitting, one process on one core "
        f"(nice 10, one training at a time, on a machine shared with other jobs); this invocation {wall / 60:.1f} min.\n",
    ]
    table: dict[str, Any] = {}
    for col, task in enumerate(tasks):
        fit = fits[task]
        lines.append(
            f"\n## {task}\n\nTeacher fit: {fit['steps']:,} scripted steps ({fit['episodes_per_noise']} episodes x noise "
            f"{fit['noise']}), held-out R^2 {fit['heldout_r2']:.2f} (pure Monte-Carlo targets: {fit['heldout_r2_pure_mc']:.2f}), "
            f"value rising on {100 * fit['heldout_demo_fraction_rising_to_success']:.0f}% of the held-out demonstrations' "
            f"steps to success, V in [{fit['value_range'][0]:.0f}, {fit['value_range'][1]:.0f}], {fit['seconds']:.0f} s.\n"
        )  # fmt: skip
        ax = axes[0][col]
        for arm in ARMS:
            runs = [r for r in results if r["task"] == task and r["arm"] == arm]
            if not runs:
                continue
            n = min(len(r["curve"]) for r in runs)
            steps = [p["steps"] for p in runs[0]["curve"][:n]]
            values = np.array([[p["success"] for p in r["curve"][:n]] for r in runs])
            stats_ = [t_interval(values[:, i]) for i in range(n)]
            mean = np.array([m for m, _ in stats_])
            half = np.nan_to_num(np.array([h for _, h in stats_]))
            ax.plot(steps, mean, marker="o", ms=3, label=arm)
            ax.fill_between(
                steps, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), alpha=0.15
            )
            table.setdefault(task, {})[arm] = {
                "steps": steps, "mean": mean.tolist(), "ci": half.tolist(), "per_seed": values.tolist(),
                "wall_s": [round(r["wall_s"], 1) for r in runs],
            }  # fmt: skip
        ax.set(
            title=f"{task} (PPO, {len(runs)} seeds)",
            xlabel="env steps",
            ylabel="evaluation success rate",
            ylim=(-0.02, 1.02),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        entries = table[task]
        steps = entries[ARMS[0]]["steps"]
        picks = sorted(
            {
                steps[len(steps) // 4],
                steps[len(steps) // 2],
                steps[(3 * len(steps)) // 4],
                steps[-1],
            }
        )
        lines.append(
            "| arm | "
            + " | ".join(f"{s:,} steps" for s in picks)
            + " | area under curve | first step with success >= 0.8 (per seed) | Welch p vs unshaped: final, area | wall s/run |"
        )
        lines.append("|---|" + "---|" * (len(picks) + 4))
        base = entries.get("unshaped")
        for arm, e in entries.items():
            cells = [
                f"{e['mean'][e['steps'].index(s)]:.2f} ± {e['ci'][e['steps'].index(s)]:.2f}"
                for s in picks
            ]
            auc = [float(np.mean(seed)) for seed in e["per_seed"]]
            m, h = t_interval(np.array(auc))
            firsts = [first_reaching(seed, e["steps"], 0.8) for seed in e["per_seed"]]
            first_text = ", ".join(f"{f:,}" if f is not None else "never" for f in firsts)
            tests = "—"
            if base is not None and arm != "unshaped":
                p_final = welch_p([s[-1] for s in e["per_seed"]], [s[-1] for s in base["per_seed"]])
                p_auc = welch_p(auc, [float(np.mean(seed)) for seed in base["per_seed"]])
                tests = f"{p_final:.3f}, {p_auc:.3f}"
            lines.append(
                f"| {arm} | "
                + " | ".join(cells)
                + f" | {m:.2f} ± {np.nan_to_num(h):.2f} | {first_text} | {tests} | {np.mean(e['wall_s']):.0f} |"
            )
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "table": table,
        "teacher_fits": fits, "wall_s": round(wall, 1),
    }, indent=1))  # fmt: skip
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the step budgets")
    parser.add_argument("--eval-freq", type=int, default=8192)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/shaping_metaworld"),
        help="report folder (the committed one: --out experiments/shaping_metaworld)",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/shaping_metaworld"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import rewardlab.wrappers  # noqa: F401 - registers every benchmark's envs and proxies first

    started = time.time()
    results, fits = [], {}
    for task in args.tasks:
        value = fit_teacher(task, args.runs)
        fits[task] = json.loads((value.parent / "fit.json").read_text())
        shutil.copyfile(value.parent / "fit.json", args.out / f"teacher_fit_{slug(task)}.json")
        print(
            f"{task}: teacher fitted, held-out R^2 {fits[task]['heldout_r2']:.2f} ({time.time() - started:.0f} s total)",
            flush=True,
        )
        steps = max(4096, int(round(BUDGETS.get(task, 98_304) * args.scale / 4096)) * 4096)
        for seed in range(args.seeds):
            for arm in ARMS:
                res = run_one(task, arm, seed, steps, value, args)
                results.append(res)
                print(f"{task} {arm} seed {seed}: final success {res['curve'][-1]['success']:.2f} "
                      f"({res['wall_s']:.0f} s; {time.time() - started:.0f} s total)", flush=True)  # fmt: skip
    aggregate(results, fits, args.out, args, time.time() - started)


if __name__ == "__main__":
    main()
