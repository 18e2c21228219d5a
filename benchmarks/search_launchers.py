"""Wall time and CPU use of a search rung of 8 candidates on each launcher, by worker count.

One rung of a search: 8 distinct candidate programs (the offline synthesizer's deterministic
weight variants for ``mujoco/hopper_forward``) each trained for ``--steps`` PPO steps and then
evaluated on 20 decision episodes, through :func:`rewardlab.search.launch.launch` with

* ``inline``: one after the other in one process (the baseline: no process start-up);
* ``joblib`` with 2 and 4 workers (Hydra's joblib launcher; each job a fresh supervised child);
* ``ray`` with 1, 2 and 4 workers (a local Ray instance of that many CPUs, started for the
  configuration and counted in its wall time; each job a fresh supervised child).

Every configuration runs in its own process, round-robin over ``--rounds`` (so load drift hits
all of them alike); the median round counts. Reported per configuration: wall time, its ratio
to joblib with 2 workers measured in the same run, the CPU seconds of the trainings (each job
measures its own) and of the whole process tree that was reaped (launcher, workers, Ray's
runtime where its processes are children of the configuration's process), and CPU utilisation
= training CPU / (wall x cores). The machine is shared: absolute numbers move with other
users' load; ratios within one run are what to compare.

Usage::

    python benchmarks/search_launchers.py                      # ~10-20 min on 2 busy cores
    python benchmarks/search_launchers.py --steps 1024 --rounds 1 --markdown /tmp/l.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("inline", 1), ("joblib", 2), ("joblib", 4), ("ray", 1), ("ray", 2), ("ray", 4)]
CANDIDATES = 8


def one(launcher: str, workers: int, steps: int, out: Path) -> dict[str, Any]:
    """Run the rung once in this process; its numbers."""
    from omegaconf import OmegaConf

    from rewardlab.config import RewardLabConfig
    from rewardlab.generators.base import GenerationRequest, extract_code
    from rewardlab.generators.offline import OfflineGenerator
    from rewardlab.search.launch import Job, launch
    from rewardlab.search.variants import OfflineVariants
    from rewardlab.tasks import get_task

    task = get_task("mujoco/hopper_forward")
    cfg = OmegaConf.structured(RewardLabConfig)
    cfg.task = OmegaConf.structured(task)
    cfg.train.n_envs, cfg.train.eval_freq, cfg.train.eval_episodes = 4, steps, 1
    cfg.algo.kwargs = {"n_steps": 256}
    cfg.search.launcher, cfg.search.n_jobs = launcher, workers
    generator = OfflineVariants(OfflineGenerator(), period=CANDIDATES)
    jobs = []
    for k in range(CANDIDATES):
        reply = generator.propose(
            GenerationRequest(task=task, instruction=task.instruction, messages=[], sample=k)
        )
        source = extract_code(reply.text)
        assert source is not None
        (out / f"c{k}.py").write_text(source)
        jobs.append(
            Job(
                f"c{k}",
                str(out / f"c{k}"),
                str(out / f"c{k}.py"),
                budget=steps,
                seed=0,
                decision_episodes=20,
            )
        )
    started = time.perf_counter()
    results = launch(cfg, task, jobs, out / "batch", log=lambda _: None)
    wall = time.perf_counter() - started
    if launcher == "ray":
        import ray

        ray.shutdown()  # reap the local instance, so its CPU time is counted below
    failed = [r.get("error") for r in results if r.get("status") != "ok"]
    if failed:
        raise RuntimeError(f"{launcher} x{workers}: {failed}")
    return {"wall_s": wall, "train_cpu_s": sum(float(r["cpu_s"]) for r in results),
            "job_cpu_s": sum(float(a.get("cpu_s", 0.0)) for r in results for a in r.get("attempts", [])),
            "job_wall_s": sum(float(r["wall_s"]) for r in results)}  # fmt: skip


def run_config(launcher: str, workers: int, steps: int) -> dict[str, Any]:
    """One configuration in a fresh process; adds the CPU of its reaped process tree."""
    with tempfile.TemporaryDirectory(prefix="rl-bench-") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
        res = subprocess.run([sys.executable, __file__, "--one", launcher, str(workers), "--steps", str(steps), "--dir", tmp],
                             capture_output=True, text=True, env=env)  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            raise RuntimeError(
                f"{launcher} x{workers} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
            )
        numbers = json.loads(res.stdout.strip().splitlines()[-1])
    tree = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**numbers, "tree_cpu_s": tree}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2048, help="PPO steps per candidate")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.steps, args.dir)))
        return 0
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {f"{launcher} x{w}": [] for launcher, w in CONFIGS}
    for r in range(args.rounds):
        for launcher, workers in CONFIGS:
            numbers = run_config(launcher, workers, args.steps)
            runs[f"{launcher} x{workers}"].append(numbers)
            print(f"round {r}: {launcher} x{workers}: {numbers['wall_s']:.1f} s wall", flush=True)
    median = {
        name: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for name, rs in runs.items()
    }
    ref = median["joblib x2"]["wall_s"]
    lines = [
        f"- {CANDIDATES} candidates x {args.steps} PPO steps (4 envs, 20 decision episodes each) on mujoco/hopper_forward; "
        f"{args.rounds} round(s), median; `nproc` = {cores}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"- Versions: python {platform.python_version()}, ray {version('ray')}, hydra-joblib-launcher "
        f"{version('hydra-joblib-launcher')}, joblib {version('joblib')}",
        "",
        "| launcher x workers | wall s | wall / joblib x2 | training CPU s | CPU s of job processes | reaped tree CPU s | utilisation (training CPU / wall x cores) |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, m in median.items():
        lines.append(f"| {name} | {m['wall_s']:.1f} | {m['wall_s'] / ref:.2f} | {m['train_cpu_s']:.0f} | "
                     f"{m['job_cpu_s']:.0f} | {m['tree_cpu_s']:.0f} | {m['train_cpu_s'] / (m['wall_s'] * cores):.0%} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


def version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _v

    try:
        return _v(name)
    except PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    raise SystemExit(main())
