"""Mixture-of-experts policies against parameter-matched dense MLPs in multi-task training.

Two parts, each arm at the same parameter count (the dense arm's width is chosen so its
trainable parameters match the MoE arm's, both printed; on the toy also a dense arm matched
on active parameters) and the same env steps:

* ``toy``: the two conflicting one-step tasks of :mod:`rewardlab.moe.toy` (opposite targets
  ``+-0.8 sin(3x)`` for the same ``x``; task 0's reward ``--toy-scale`` times task 1's, no
  per-task normalisation), PPO (:func:`rewardlab.moe.toy.train_toy`), arms ``--toy-arms``:
  ``moe`` = one top-1 layer of 2 experts (``moe.router=topk moe.k=1 moe.hidden=8``,
  ``net_arch=[8]``) in actor and critic routed by the task id (``moe.route_on=task``),
  ``moe_st`` the same with its routers started balanced and hard (task ``t`` on expert ``t``,
  weight 1, straight-through gradient: ``moe.spread_tasks moe.straight_through``),
  ``moe_obs`` the same layer routed by the whole observation, ``dense`` the smallest ``[w, w]``
  MLP with at least the MoE's parameters, ``dense_active`` the MLP of one expert's widths
  (``[h, h]``: the MoE's compute per input, fewer total parameters). ``--toy-tasks 4`` adds
  the targets ``+-0.8 cos(3x)`` and gives the MoE arms 4 experts; ``--toy-hidden h`` sets
  the experts' widths, ``--toy-freq f`` the targets' frequency (``sin(f x)``). Score: per task, the share of 41 grid points whose
  deterministic action is within 0.2 of the target; for MoE arms also the actor's mean gate
  weight per (task, expert), and in how many seeds the two tasks' top experts differ.
* ``mt``: MetaWorld tasks from MT10 (``--members``; metaworld 3.1.1, the benchmark's reward v2
  ``reward_file=env``, success = the benchmark's flag at any step, horizon ``--horizon``, the
  one-hot task id in the observation, rewards normalised per task), SAC with a dense MLP
  against MoE actor and critics (``--routers``). Score: success per task on ``--eval-episodes``
  deterministic episodes per member at the end (and every ``--eval-freq`` steps); per arm the
  mean over members per seed, with a 95% t-interval over seeds, and the IQM over (seed, task)
  scores with a stratified bootstrap interval. Router load curves come from each run's
  ``moe.csv``.

Writes ``results.json``, ``results.md`` and ``curves.png`` to ``--out`` (default
``runs/experiments/moe_multitask``; the committed reports next to this file are rebuilt by the
commands in its README: ``--parts mt`` into ``experiments/moe_multitask``, ``--parts toy`` per
``--toy-scale`` into ``toy_scale100/`` and ``toy_scale1/``); finished runs under ``--runs`` are
reused.

Usage::

    nice -n 10 python experiments/moe_multitask/run.py --parts toy --seeds 8 --out experiments/moe_multitask/toy_scale100
    python experiments/moe_multitask/run.py --parts toy mt --seeds 1 --toy-steps 256 --steps 300 \\
        --members reach --eval-freq 300 --eval-episodes 1 --horizon 20 --out /tmp/q --runs /tmp/q/runs  # smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

MT_ARCH = [64, 64]
MT_MOE = {"experts": 4, "k": 2, "shared": 1, "hidden": 32}


def matched_width(target: int, count: Any, start: int = 2) -> int:
    """The width ``w`` of a dense ``[w, w]`` network whose parameter count ``count(w)`` is
    closest to ``target``."""
    return min(range(start, 1024), key=lambda w: abs(count(w) - target))


# ----------------------------------------------------------------------------- toy


def toy_settings(args: argparse.Namespace) -> Any:
    from rewardlab.moe.toy import ToySettings

    scales = (args.toy_scale, *[1.0] * (args.toy_tasks - 1))
    return ToySettings(steps=args.toy_steps, scales=scales, experts=args.toy_tasks,
                       hidden=args.toy_hidden, latent=args.toy_hidden, freq=args.toy_freq)  # fmt: skip


def toy_run(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from rewardlab.moe.toy import train_toy

    return train_toy(arm, seed, toy_settings(args)).to_dict()


def toy_active(arm: str, args: argparse.Namespace) -> int:
    """The active parameters of ``arm``'s policy (a function of the architecture alone)."""
    from rewardlab.moe.toy import active_parameters, arm_kwargs, toy_model

    settings = toy_settings(args)
    return active_parameters(toy_model(*arm_kwargs(arm, settings), 0, settings).policy)


def toy_shape(args: argparse.Namespace) -> str:
    """The toy's task count, expert width and frequency in cache names (empty for the first
    runs' 2 tasks of width 8 at frequency 3, whose caches keep their names)."""
    shape = (
        ""
        if (args.toy_tasks, args.toy_hidden) == (2, 8)
        else f"_t{args.toy_tasks}_h{args.toy_hidden}"
    )
    return shape + ("" if args.toy_freq == 3.0 else f"_f{args.toy_freq:g}")


# ----------------------------------------------------------------------------- MetaWorld


def mt_task(args: argparse.Namespace) -> Any:
    from rewardlab.multitask import load_set

    task = load_set("mt10")
    task.members = [m if "/" in m else f"metaworld/{m}" for m in args.members]
    task.name = "multi/mt10:" + ",".join(m.split("/")[-1] for m in task.members)
    task.horizon = args.horizon
    return task


def mt_dir(arm: str, seed: int, args: argparse.Namespace) -> Path:
    members = "-".join(m.split("/")[-1] for m in args.members)
    return args.runs / f"mt_{arm}_s{seed}_{args.steps}_{members}_h{args.horizon}"


def mt_run(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from gymnasium import spaces
    from stable_baselines3.sac.policies import SACPolicy

    from rewardlab.config import MoEConfig, TrainConfig, algo_preset
    from rewardlab.moe.policies import MoESACPolicy, parameter_counts
    from rewardlab.rundir import read_csv
    from rewardlab.training import train_once

    torch.set_num_threads(1)
    task = mt_task(args)
    n = len(task.members)
    obs = spaces.Box(-np.inf, np.inf, (39 + n,), np.float32)  # MetaWorld's 39 + the task id
    act = spaces.Box(-1, 1, (4,), np.float32)

    def count(policy: Any, **kwargs: Any) -> int:
        return parameter_counts(policy(obs, act, lambda _: 3e-4, **kwargs))["total"]

    moe_cfg = MoEConfig(router=arm if arm != "dense" else "sigmoid", **MT_MOE)  # type: ignore[arg-type]
    target = count(MoESACPolicy, net_arch=MT_ARCH, moe=moe_cfg.to_dict())
    if arm == "dense":
        width = matched_width(target, lambda w: count(SACPolicy, net_arch=[w, w]))
        arch, policy, moe = [width, width], "MlpPolicy", None
    else:
        arch, policy, moe = MT_ARCH, "moe", moe_cfg
    algo = algo_preset("sac", learning_starts=args.learning_starts, batch_size=128, buffer_size=max(args.steps, 1000),
                       policy_kwargs={"net_arch": arch})  # fmt: skip
    algo.policy = policy  # type: ignore[assignment]
    train = TrainConfig(
        total_timesteps=args.steps, n_envs=n, seed=seed, eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
        checkpoint_freq=10**9, checkpoint_minutes=0, stop_at_success=0.0, progress_bar=False, video_episodes=0,
    )  # fmt: skip
    run_dir = mt_dir(arm, seed, args)
    sweep = train_once(task, None, algo, train, run_dir, moe=moe)
    rows = read_csv(run_dir / "metrics.csv")
    curve = [
        {
            "steps": int(r["timesteps"]),
            "success": {m: float(r[f"success/{m}"]) for m in task.members},
        }
        for r in rows
    ]
    loads = [{"steps": int(r["timesteps"]), **{k: float(v) for k, v in r.items() if "/load/" in k and k.startswith("moe/actor")}}
             for r in read_csv(run_dir / "moe.csv")]  # fmt: skip
    return {"arm": arm, "seed": seed, "parameters": target if arm != "dense" else count(SACPolicy, net_arch=arch),
            "width": arch, "curve": curve, "final": curve[-1]["success"] if curve else {}, "loads": loads,
            "wall_s": sweep.wall_s}  # fmt: skip


def run_unit(unit: tuple[str, str, int], args: argparse.Namespace) -> dict[str, Any] | None:
    part, arm, seed = unit
    budget = (f"{args.toy_steps}_x{args.toy_scale:g}{toy_shape(args)}" if part == "toy"
              else f"{args.steps}_{'-'.join(args.members)}_h{args.horizon}_e{args.eval_episodes}")  # fmt: skip
    # toy2: the task-routed toy of rewardlab.moe.toy (not the earlier obs-routed runs' caches)
    cache = args.runs / f"{'toy2' if part == 'toy' else part}_{arm}_s{seed}_{budget}.json"
    if cache.is_file():  # finished earlier: re-aggregate without training
        result = dict(json.loads(cache.read_text()))
        if part == "toy" and "active" not in result:  # cached before active counts were kept
            result["active"] = toy_active(arm, args)
        return result
    if args.finished_only and not (
        part == "mt" and (mt_dir(arm, seed, args) / "done.json").is_file()
    ):
        return None
    result = (toy_run if part == "toy" else mt_run)(arm, seed, args)
    cache.write_text(json.dumps(result))
    print(f"{part} {arm} seed {seed}: success per task {result['final']} ({result['parameters']:,} params, "
          f"{result['wall_s']:.0f} s)", flush=True)  # fmt: skip
    return result


# ----------------------------------------------------------------------------- report


def summarize(runs: list[dict[str, Any]], arms: list[str]) -> dict[str, dict[str, Any]]:
    from rewardlab.stats import interval, t_interval

    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        finals = [
            list(r["final"].values()) if isinstance(r["final"], dict) else r["final"] for r in mine
        ]
        per_seed = [float(np.mean(f)) for f in finals]
        matrix = np.array(finals, dtype=float)  # seeds x tasks
        center, half = t_interval(per_seed)
        low, high = (
            (center - half, center + half) if len(per_seed) > 1 else (float("nan"), float("nan"))
        )
        out[arm] = {
            "parameters": mine[0]["parameters"], "active": mine[0].get("active", mine[0]["parameters"]), "seeds": len(mine), "mean": float(np.mean(per_seed)),
            "t95": [low, high], "iqm": interval(matrix, "iqm").to_dict(), "per_task_mean": matrix.mean(0).tolist(),
            "wall_s": float(np.mean([r["wall_s"] for r in mine])),
        }  # fmt: skip
        routed = [np.array(r["routing"]) for r in mine if r.get("routing")]
        if routed:  # toy MoE arms: does every task have its own top expert?
            out[arm]["tasks_split"] = sum(int(len(set(g.argmax(1))) == len(g)) for g in routed)
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ("toy", "mt") if results.get(p)]
    fig, axes = plt.subplots(
        1,
        len(parts) + (1 if results.get("mt") else 0),
        figsize=(5 * (len(parts) + 1), 3.6),
        squeeze=False,
    )
    for ax, part in zip(axes[0], parts, strict=False):
        for arm in results[part]["arms"]:
            runs = [r for r in results[part]["runs"] if r["arm"] == arm]
            if not runs or not runs[0]["curve"]:
                continue
            steps = [c["steps"] for c in runs[0]["curve"]]
            values = np.array([[np.mean(list(c["success"].values()) if isinstance(c["success"], dict) else c["success"])
                                for c in r["curve"]] for r in runs if len(r["curve"]) == len(steps)])  # fmt: skip
            mean = values.mean(0)
            ax.plot(
                steps,
                mean,
                marker="o",
                label=f"{arm} ({runs[0]['parameters']:,} params, {runs[0].get('active', runs[0]['parameters']):,} active)",
            )
            if len(values) > 1:
                ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
        ax.set_title({"toy": "conflicting toy tasks (PPO)", "mt": "MetaWorld members (SAC)"}[part])
        ax.set_xlabel("env steps")
        ax.set_ylabel("success (mean over tasks; band: min-max over seeds)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    if results.get("mt"):
        ax = axes[0][-1]
        for r in results["mt"]["runs"]:
            if r["arm"] != "dense" and r["loads"] and r["seed"] == 0:
                keys = sorted(k for k in r["loads"][0] if k != "steps")
                steps = [x["steps"] for x in r["loads"]]
                for k in keys:
                    ax.plot(
                        steps,
                        [x[k] for x in r["loads"]],
                        label=f"{r['arm']} expert {k.rsplit('/', 1)[-1]}",
                    )
        ax.set_title("actor router load per expert (seed 0)")
        ax.set_xlabel("env steps")
        ax.set_ylabel("share of assignments")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_md(results: dict[str, Any], path: Path) -> None:
    lines = ["# moe_multitask results", "", f"Settings: `{json.dumps(results['settings'])}`", ""]
    for part in ("toy", "mt"):
        if not results.get(part):
            continue
        tasks = results[part]["tasks"]
        lines += [f"## {part}", "", "| arm | params (active) | seeds | mean success [95% t-CI over seeds] | IQM [95% bootstrap] | per task (mean over seeds) | wall s/run |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for arm, s in results[part]["summary"].items():
            iqm = s["iqm"]
            ci = f"[{s['t95'][0]:.2f}, {s['t95'][1]:.2f}]" if s["seeds"] > 1 else "(1 seed)"
            per = ", ".join(
                f"{t.split('/')[-1]} {v:.2f}"
                for t, v in zip(tasks, s["per_task_mean"], strict=True)
            )
            if "tasks_split" in s:
                per += f"; tasks on different experts in {s['tasks_split']}/{s['seeds']} seeds"
            lines.append(f"| {arm} | {s['parameters']:,} ({s['active']:,}) | {s['seeds']} | {s['mean']:.2f} {ci} | "
                         f"{iqm['estimate']:.2f} [{iqm['low']:.2f}, {iqm['high']:.2f}] | {per} | {s['wall_s']:.0f} |")  # fmt: skip
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", nargs="+", default=["toy", "mt"], choices=["toy", "mt"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--toy-steps", type=int, default=24_000)
    ap.add_argument(
        "--toy-scale", type=float, default=100.0, help="task 0's reward scale (task 1's is 1)"
    )
    ap.add_argument("--toy-arms", nargs="+", default=["dense", "moe", "moe_obs"],
                    choices=["dense", "dense_active", "moe", "moe_st", "moe_obs"])  # fmt: skip
    ap.add_argument("--toy-tasks", type=int, default=2, choices=[2, 4],
                    help="toy tasks (4: +-0.8 sin(3x), +-0.8 cos(3x)); the MoE arms get one expert per task")  # fmt: skip
    ap.add_argument("--toy-freq", type=float, default=3.0,
                    help="toy targets +-0.8 sin(freq x) (and +-0.8 cos(freq x))")  # fmt: skip
    ap.add_argument("--toy-hidden", type=int, default=8,
                    help="toy MoE arms: each expert's widths [h, h]; dense_active is [h, h]")  # fmt: skip
    ap.add_argument(
        "--members", nargs="+", default=["reach", "drawer_close", "button_press_topdown"]
    )
    ap.add_argument(
        "--routers", nargs="+", default=["sigmoid"], help="MoE arms of the mt part (besides dense)"
    )
    ap.add_argument("--steps", type=int, default=6_000)
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--learning-starts", type=int, default=600)
    ap.add_argument("--eval-freq", type=int, default=2_000)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument(
        "--finished-only",
        action="store_true",
        help="aggregate the finished runs under --runs; train none",
    )
    ap.add_argument("--jobs", type=int, default=1, help="(arm, seed) runs in parallel processes")
    ap.add_argument("--out", type=Path, default=Path("runs/experiments/moe_multitask"))
    ap.add_argument("--runs", type=Path, default=Path("runs/experiments/moe_multitask/runs"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                            if k not in ("out", "runs")}}  # fmt: skip
    units = [(part, arm, seed) for part in args.parts for seed in range(args.seeds)
             for arm in (args.toy_arms if part == "toy" else ["dense", *args.routers])]  # fmt: skip
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            done = list(pool.map(run_unit, units, [args] * len(units)))
    else:
        done = [run_unit(u, args) for u in units]
    for part in args.parts:
        runs = [r for (p, _, _), r in zip(units, done, strict=True) if p == part and r is not None]
        if not runs:
            continue
        arms = list(dict.fromkeys(r["arm"] for r in runs))
        tasks = (["task0 (reward x scale)", *[f"task{t}" for t in range(1, args.toy_tasks)]]
                 if part == "toy" else mt_task(args).members)  # fmt: skip
        results[part] = {
            "arms": arms,
            "tasks": tasks,
            "runs": runs,
            "summary": summarize(runs, arms),
        }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    write_md(results, args.out / "results.md")
    plot(results, args.out / "curves.png")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
