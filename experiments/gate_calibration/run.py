"""Calibrate the pre-flight gate against training outcomes.

Two steps, both resumable:

1. ``train``: every program of the calibration set (:mod:`programs`) is trained with PPO
   (``conf/algo/ppo.yaml``, 4 envs, 1 torch thread) for a fixed budget per benchmark, per seed,
   evaluating the task's own success metric every ``--eval-freq`` steps (5 deterministic
   episodes) and stopping once an evaluation reaches ``--stop-at`` success. Each run lives in
   its own folder under ``--runs`` (:func:`rewardlab.training.train_once`: a finished run is
   reused, an interrupted one resumes from its last checkpoint); every finished run is appended
   to ``outcomes.csv`` in ``--out`` (the table of measured outcomes).
2. ``report``: the gate is run on every program (:mod:`rewardlab.gate`; the expert
   reward through :func:`rewardlab.gate.gate_benchmark_reward`), its verdicts and
   per-check numbers go to ``verdicts.json``, and ``results.md`` / ``results.json`` /
   ``calibration.png`` give, per check, rejections, false rejections (rejected, but the reward
   reached success) and false acceptances (accepted, but the reward never reached any success),
   with Wilson intervals, on the whole set and on the held-out half.

Usage::

    python experiments/gate_calibration/run.py train --shard 0/2 &     # the trainings, two processes
    python experiments/gate_calibration/run.py train --shard 1/2       # (~3.5 core-hours in all)
    python experiments/gate_calibration/run.py evaluate                # the gate's numbers per program (cached)
    python experiments/gate_calibration/run.py report                  # gate + tables (minutes)
    python experiments/gate_calibration/run.py all --out experiments/gate_calibration/results
    python experiments/gate_calibration/run.py all --tasks metaworld/drawer_close --kinds offline constant \\
        --seeds 1 --mw-steps 4096 --eval-freq 4096 --out /tmp/gc --runs /tmp/gc/runs   # smoke run

The default ``--out`` (``runs/gate_calibration/results``) never overwrites the committed results
(``experiments/gate_calibration/results``); name that folder to rebuild them.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from programs import MUJOCO_LEARNABLE_TASKS, Program, calibration_set  # noqa: E402

OUTCOME_FIELDS = (
    "task", "kind", "digest", "seed", "budget", "timesteps", "reached", "steps_to_success",
    "max_success", "final_success", "evals", "wall_s", "error",
)  # fmt: skip


def budget_of(task: str, args: argparse.Namespace) -> int:
    """The env-step budget of a run on ``task``."""
    if task.startswith("metaworld/"):
        return int(args.mw_steps)
    return int(args.mujoco_learnable_steps if task in MUJOCO_LEARNABLE_TASKS else args.mujoco_steps)


def run_dir(program: Program, seed: int, args: argparse.Namespace) -> Path:
    budget = budget_of(program.task, args)
    return (
        args.runs
        / program.task.replace("/", "_")
        / f"{program.kind}-{program.digest}_s{seed}_{budget}"
    )


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (program, seed) unless done (or failed before); returns its outcome row."""
    import torch

    from rewardlab.config import TrainConfig, algo_preset
    from rewardlab.tasks import get_task
    from rewardlab.training import train_once

    torch.set_num_threads(1)
    folder = Path(job["dir"])
    failed = folder / "failed.json"
    task = get_task(job["task"])
    cfg = TrainConfig(
        total_timesteps=job["budget"], n_envs=4, seed=job["seed"], eval_freq=job["eval_freq"],
        eval_episodes=job["eval_episodes"], checkpoint_freq=job["checkpoint_freq"],
        stop_at_success=job["stop_at"], progress_bar=False, video_episodes=0,
    )  # fmt: skip
    started = time.time()
    error = ""
    curve: list[dict[str, float]] = []
    wall = 0.0
    if failed.exists():
        error = json.loads(failed.read_text())["error"]
    else:
        try:
            run = train_once(task, job["source"], algo_preset("ppo"), cfg, folder)
            curve, wall = run.curve, run.wall_s
        except Exception as exc:  # the reward made training stop (errors, non-finite values ...)
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            folder.mkdir(parents=True, exist_ok=True)
            failed.write_text(json.dumps({"error": error, "wall_s": time.time() - started}))
    if error and not curve:
        from rewardlab.rundir import read_csv

        rows = read_csv(folder / "metrics.csv") if (folder / "metrics.csv").exists() else []
        curve = [
            {"steps": int(r["timesteps"]), "success": float(r["success_rate"]), "progress": 0.0}
            for r in rows
        ]
        wall = float(json.loads(failed.read_text()).get("wall_s", 0.0))
    reached = next((p["steps"] for p in curve if p["success"] >= job["stop_at"]), None)
    return {
        "task": job["task"], "kind": job["kind"], "digest": job["digest"], "seed": job["seed"],
        "budget": job["budget"], "timesteps": curve[-1]["steps"] if curve else 0,
        "reached": int(reached is not None), "steps_to_success": reached if reached is not None else "",
        "max_success": max((p["success"] for p in curve), default=0.0),
        "final_success": curve[-1]["success"] if curve else 0.0, "evals": len(curve),
        "wall_s": round(wall, 1), "error": error,
    }  # fmt: skip


def read_outcomes(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def select(args: argparse.Namespace) -> list[Program]:
    programs = calibration_set()
    if args.tasks:
        programs = [p for p in programs if p.task in args.tasks]
    if args.kinds:
        programs = [p for p in programs if p.kind in args.kinds]
    return programs


def priority(
    job: dict[str, Any], outcomes: list[dict[str, str]], tasks: list[str]
) -> tuple[int, int, int, int]:
    """Which run next: every program's seed 0 first (task by task), then the seeds that can still
    change a program's label (its seed 0 did not reach success), then the rest."""
    if job["seed"] == 0:
        phase = 0
    else:
        first = [r for r in outcomes if (r["task"], r["kind"], r["digest"], r["seed"]) ==
                 (job["task"], job["kind"], job["digest"], "0")]  # fmt: skip
        phase = 2 if first and first[-1]["reached"] == "1" else 1
    order = ("expert", "offline", "t2r_dist", "t2r", "t2r_staged")
    kind = order.index(job["kind"]) if job["kind"] in order else len(order)
    return phase, tasks.index(job["task"]), kind, job["seed"]


def train_all(args: argparse.Namespace) -> None:
    """Step 1 (see the module docstring): this shard's runs, one at a time, the most useful
    first (:func:`priority`, re-read from ``outcomes.csv`` before every run)."""
    out = args.out / "outcomes.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        with out.open("w", newline="") as fh:
            csv.DictWriter(fh, fieldnames=OUTCOME_FIELDS).writeheader()
    programs = select(args)
    tasks = list(dict.fromkeys(p.task for p in programs))
    every = [
        {
            "task": p.task, "kind": p.kind, "digest": p.digest, "source": p.source, "seed": seed,
            "budget": budget_of(p.task, args), "dir": str(run_dir(p, seed, args)),
            "eval_freq": args.eval_freq, "eval_episodes": args.eval_episodes,
            "checkpoint_freq": args.checkpoint_freq, "stop_at": args.stop_at,
        }
        for p in programs for seed in range(args.seeds)
    ]  # fmt: skip
    index, count = (int(x) for x in args.shard.split("/"))
    mine = [
        j
        for j in every
        if [p.name for p in programs].index(f"{j['task']}:{j['kind']}") % count == index
    ]
    started, trained = time.time(), 0
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        while True:
            rows = read_outcomes(out)
            done = {(r["task"], r["kind"], r["digest"], r["seed"], r["budget"]) for r in rows}
            pending = [
                j
                for j in mine
                if (j["task"], j["kind"], j["digest"], str(j["seed"]), str(j["budget"])) not in done
            ]
            if trained == 0:
                print(
                    f"{len(pending)} runs to train in shard {args.shard} ({len(done)} in {out})",
                    flush=True,
                )
            if not pending:
                break
            job = min(pending, key=lambda j: priority(j, rows, tasks))
            row = pool.submit(train_one, job).result()
            with out.open("a", newline="") as fh:  # one line per append: shards share the file
                csv.DictWriter(fh, fieldnames=OUTCOME_FIELDS).writerow(row)
            trained += 1
            print(
                f"[{trained}/{trained + len(pending) - 1} {time.time() - started:.0f}s] {row['task']} {row['kind']} "
                f"seed {row['seed']}: {'success at ' + str(row['steps_to_success']) if row['reached'] else 'no success'} "
                f"(max {row['max_success']:.2f}, {row['timesteps']} steps, {row['wall_s']} s){' ' + row['error'] if row['error'] else ''}",
                flush=True,
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("train", "evaluate", "report", "all"))
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--kinds", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--mw-steps", type=int, default=65_536, help="env steps per MetaWorld run")
    parser.add_argument("--mujoco-steps", type=int, default=65_536, help="env steps per MuJoCo run")
    parser.add_argument(
        "--mujoco-learnable-steps", type=int, default=131_072,
        help="env steps per run on the added MuJoCo tasks (programs.MUJOCO_LEARNABLE_TASKS)",
    )  # fmt: skip
    parser.add_argument("--eval-freq", type=int, default=16_384)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument(
        "--stop-at", type=float, default=0.8, help="success rate that counts as learned (and stops)"
    )
    parser.add_argument("--checkpoint-freq", type=int, default=32_768)
    parser.add_argument(
        "--shard",
        default="0/1",
        help="i/n: this process trains the runs of every n-th program from the i-th",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/gate_calibration/results"))
    parser.add_argument("--runs", type=Path, default=Path("runs/gate_calibration/runs"))
    args = parser.parse_args()
    if args.step in ("train", "all"):
        train_all(args)
    if args.step == "evaluate":  # the gate's numbers for every program, outcomes or not (cached)
        from report import evaluate_all

        evaluate_all(args)
    if args.step in ("report", "all"):
        from report import report

        print(report(args))


if __name__ == "__main__":
    main()
