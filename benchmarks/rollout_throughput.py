"""Env-steps/s of the batched rollout core against gymnasium, in one run on one machine.

Usage: python benchmarks/rollout_throughput.py [--seconds 3] [--tasks ...] [--ppo-steps 16384]
       [--no-ppo] [--no-mjx] [--markdown FILE]

For each task (default HalfCheetah and Hopper forward) with the offline synthesizer's reward
program (a generated reward; ``ProgramReward`` on the gymnasium side), it measures env-steps/s
of: a gymnasium single env; ``SyncVectorEnv`` and ``AsyncVectorEnv`` of 8 envs; the ``native``
core at N = 64, 256, 1024 (default ``loop`` engine, bit-for-bit gymnasium, and the
``mujoco.rollout`` engine); the
``mjx`` core on CPU (if jax is installed); and the raw physics limit (``mujoco.rollout``
physics steps/s over open-loop random controls from reset states, 25 env steps long, divided
by ``frame_skip``). Each configuration lives in its own subprocess (its peak RSS is its own),
set up once, then timed in ``--rounds`` slices of ``--seconds``, round-robin with the other
configurations so that load from other users falls on all of them alike; the best slice
counts. Then end-to-end SB3 PPO throughput on the core versus ``DummyVecEnv``/
``SubprocVecEnv``, with the time split into env stepping, policy inference and gradient
updates.

On a shared machine absolute numbers move with other users' load; compare the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

DEFAULT_TASKS = ["mujoco/halfcheetah_forward", "mujoco/hopper_forward"]


def offline_source(task: Any) -> str:
    from rewardlab.generators.base import GenerationRequest, extract_code
    from rewardlab.generators.offline import OfflineGenerator

    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=task.instruction, messages=[])
    )
    source = extract_code(reply.text)
    assert source is not None
    return source


def rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident set size now, MiB (``VmRSS``; falls back to the peak)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024.0
    except (OSError, StopIteration):
        return rss_mb()


def _timed(step: Any, seconds: float, per_call: int, chunk: int = 10, warmup: int = 3) -> float:
    """Calls of ``step`` per second times ``per_call``, over at least ``seconds``."""
    for _ in range(warmup):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(chunk):
            step()
        n += chunk
    return n * per_call / (time.perf_counter() - start)


# --------------------------------------------------------------------------- measurements
# Each configuration lives in its own process for the whole run: set up once, then timed in
# several short slices, round-robin with the other configurations, so a burst of load from
# other users hits every configuration alike; the best slice counts (least interference).


def setup(kind: str, task_name: str, n: int) -> tuple[Any, int, Any]:
    """``(step, env-steps per call, info)`` for one configuration; ``info()`` -> extra fields."""
    import gymnasium as gym

    from rewardlab.tasks import get_task
    from rewardlab.wrappers import compile_for_task, make_env

    task = get_task(task_name)
    source = offline_source(task)
    rng = np.random.default_rng(0)
    i = [0]
    if kind == "gym_single":
        env = make_env(task, compile_for_task(source, task))
        env.reset(seed=0)
        actions = rng.uniform(-1, 1, (4096, *(env.action_space.shape or ()))).astype(np.float32)

        def step() -> None:
            _, _, term, trunc, _ = env.step(actions[i[0] % 4096])
            i[0] += 1
            if term or trunc:
                env.reset()

        return step, 1, dict
    if kind in ("gym_sync", "gym_async"):
        fns = [lambda: make_env(task, compile_for_task(source, task)) for _ in range(n)]
        venv = (
            gym.vector.SyncVectorEnv(fns) if kind == "gym_sync" else gym.vector.AsyncVectorEnv(fns)
        )
        venv.reset(seed=0)
        vactions = rng.uniform(-1, 1, (256, *(venv.action_space.shape or ()))).astype(np.float32)

        def vstep() -> None:
            venv.step(vactions[i[0] % 256])
            i[0] += 1

        return vstep, n, dict
    if kind.startswith("core_"):
        from rewardlab.rollout import CoreConfig, RolloutCore
        from rewardlab.rollout.core import Timings

        backend, _, engine = kind[5:].partition("_")
        threads = 2 if engine.endswith("2t") else 0
        engine = engine.removesuffix("2t") or "auto"
        cfg = CoreConfig(num_worlds=n, backend=backend, engine=engine, seed=0, nthread=threads)
        core = RolloutCore(task, cfg, program=source)
        core.reset()
        cactions = rng.uniform(-1, 1, (16, n, core.spec.nu)).astype(np.float32)
        core.step(cactions[0])  # decides the reward mode (one per-world pass); compiles (mjx)
        core.timings = Timings()  # count the timed slices only

        def cstep() -> None:
            core.step(cactions[i[0] % 16])
            i[0] += 1

        def info() -> dict[str, Any]:
            report = core.reward_report
            return {"shares": core.timings.table(), "reward_mode": report.mode if report else "-"}

        return cstep, n, info
    if kind == "raw":
        import mujoco
        from mujoco import rollout

        from rewardlab.rollout.spec import sample_initial, spec_for

        spec = spec_for(task.resolved_env_id(), **dict(task.env_kwargs))
        m = spec.model
        # open-loop random controls from reset states, RAW_ENV_STEPS env steps long (about a
        # random-action Hopper episode, so the contact load resembles the cores')
        qpos, qvel = sample_initial(spec, [np.random.default_rng(k) for k in range(n)])
        state = np.concatenate([np.zeros((n, 1)), qpos, qvel], axis=1)
        nstep = RAW_ENV_STEPS * spec.frame_skip
        ctrl = np.repeat(rng.uniform(-1, 1, (n, RAW_ENV_STEPS, m.nu)), spec.frame_skip, axis=1)
        runner = rollout.Rollout(nthread=0)
        data = [mujoco.MjData(m)]

        def rstep() -> None:
            runner.rollout(m, data, state, ctrl, nstep=nstep)

        return rstep, n * RAW_ENV_STEPS, dict
    raise ValueError(kind)


RAW_ENV_STEPS = 25


def _worker(args: tuple[str, str, int], commands: Any, results: Any) -> None:
    try:
        import rewardlab.rollout  # noqa: F401  # imports count as the baseline

        base = current_rss_mb()
        step, per_call, info = setup(*args)
        step()
        results.put({"ready": True})
        while (seconds := commands.get()) is not None:
            chunk = 1 if args[0] == "raw" else 10
            results.put({"steps_per_s": _timed(step, seconds, per_call, chunk=chunk, warmup=1)})
        results.put({**info(), "rss_mb": rss_mb(), "rss_delta_mb": rss_mb() - base})
    except Exception as exc:  # report, do not hang the parent
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def run_round_robin(
    plan: list[tuple[str, str, int]], task: str, seconds: float, rounds: int
) -> dict[str, dict[str, Any]]:
    """Start one worker per configuration, time them in turn ``rounds`` times, best counts."""
    ctx = mp.get_context("spawn")
    workers: dict[str, tuple[Any, Any, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    for label, kind, n in plan:  # set up one at a time (mjx compiles are CPU-heavy)
        commands, replies = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=_worker, args=((kind, task, n), commands, replies))
        proc.start()
        reply = replies.get(timeout=900)
        if "error" in reply:
            results[label] = reply
            proc.join(timeout=30)
            continue
        workers[label] = (proc, commands, replies)
        results[label] = {"slices": []}
    for _ in range(rounds):
        for label, (_, commands, replies) in workers.items():
            commands.put(seconds)
            reply = replies.get(timeout=900)
            if "error" in reply:
                results[label] = reply
            else:
                results[label]["slices"].append(reply["steps_per_s"])
    for label, (proc, commands, replies) in workers.items():
        commands.put(None)
        results[label].update(replies.get(timeout=300))
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
        if "slices" in results[label] and results[label]["slices"]:
            results[label]["steps_per_s"] = max(results[label]["slices"])
        print(
            f"  {task:28s} {label:55s} {fmt(results[label].get('steps_per_s', 0)):>10s} env-steps/s  {results[label].get('error', '')}",
            flush=True,
        )
    return results


# --------------------------------------------------------------------------- PPO


def ppo_throughput(task_name: str, kind: str, n: int, total: int) -> dict[str, Any]:
    """PPO as ``rewardlab train`` runs it (``conf/algo/ppo.yaml``: 4,096 env steps per update
    split over the n envs, observation and reward normalisation) fps, with a time split."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import (
        DummyVecEnv,
        SubprocVecEnv,
        VecMonitor,
        VecNormalize,
    )

    from rewardlab.config import algo_preset
    from rewardlab.tasks import get_task
    from rewardlab.training import algo_kwargs
    from rewardlab.wrappers import compile_for_task, make_env

    torch.set_num_threads(1)
    task = get_task(task_name)
    source = offline_source(task)
    if kind == "core":
        from rewardlab.rollout import CoreConfig, RolloutCore
        from rewardlab.rollout.sb3 import CoreVecEnv

        core = RolloutCore(task, CoreConfig(num_worlds=n, seed=0), program=source)
        base: Any = VecMonitor(CoreVecEnv(core), info_keywords=("is_success",))
    else:

        def make() -> Any:
            return Monitor(
                make_env(task, compile_for_task(source, task)), info_keywords=("is_success",)
            )

        base = (
            DummyVecEnv([make] * n)
            if kind == "dummy"
            else SubprocVecEnv([make] * n, start_method="fork")
        )
    algo = algo_preset("ppo")
    venv = VecNormalize(base, norm_obs=algo.normalize_obs, norm_reward=algo.normalize_reward)
    model = PPO(algo.policy, venv, seed=0, device="cpu", verbose=0, **algo_kwargs(algo, n))
    spent = {"env": 0.0, "collect": 0.0, "train": 0.0}

    def timed(obj: Any, name: str, key: str) -> None:
        original = getattr(obj, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start

        setattr(obj, name, wrapper)

    timed(venv, "step_wait", "env")
    timed(model, "collect_rollouts", "collect")
    timed(model, "train", "train")
    start = time.perf_counter()
    model.learn(total_timesteps=total)
    wall = time.perf_counter() - start
    venv.close()
    policy = spent["collect"] - spent["env"]
    return {
        "fps": model.num_timesteps / wall,
        "env_share": spent["env"] / wall,
        "policy_share": policy / wall,
        "train_share": spent["train"] / wall,
        "rss_mb": rss_mb(),
    }


def _ppo_worker(args: tuple[str, str, int, int], queue: Any) -> None:
    try:
        queue.put(ppo_throughput(*args))
    except Exception as exc:
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_ppo_isolated(task: str, kind: str, n: int, total: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_ppo_worker, args=((task, kind, n, total), queue))
    proc.start()
    result = queue.get(timeout=1200)
    proc.join(timeout=30)
    return result


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import PackageNotFoundError, version

    # versions without importing (a light parent keeps the children's peak RSS their own)
    versions = f"python {platform.python_version()}"
    for package in (
        "mujoco",
        "gymnasium",
        "stable-baselines3",
        "torch",
        "numpy",
        "jax",
        "mujoco-mjx",
    ):
        with contextlib.suppress(PackageNotFoundError):
            versions += f", {package} {version(package)}"
    return {
        "cpu": cpu,
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": versions,
    }


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one timed slice")
    parser.add_argument("--rounds", type=int, default=3, help="timed slices per configuration")
    parser.add_argument("--tasks", nargs="*", default=DEFAULT_TASKS)
    parser.add_argument("--sizes", nargs="*", type=int, default=[64, 256, 1024])
    parser.add_argument("--mjx-sizes", nargs="*", type=int, default=[256, 1024])
    parser.add_argument("--ppo-steps", type=int, default=16384)
    parser.add_argument("--no-ppo", action="store_true")
    parser.add_argument("--no-mjx", action="store_true")
    parser.add_argument("--markdown", help="also write the tables to this file")
    args = parser.parse_args()
    host = machine()
    lines = [
        f"Machine: {host['cpu']}, nproc={host['nproc']}; load average at start {host['load']}",
        f"Versions: {host['versions']}",
        "",
    ]
    print("\n".join(lines), flush=True)
    have_jax = (
        not args.no_mjx
        and subprocess.run(
            [sys.executable, "-c", "import jax, mujoco.mjx"], capture_output=True
        ).returncode
        == 0
    )
    for task in args.tasks:
        plan: list[tuple[str, str, int]] = [
            ("gymnasium single env", "gym_single", 1),
            ("gymnasium SyncVectorEnv, 8 envs", "gym_sync", 8),
            ("gymnasium AsyncVectorEnv, 8 envs", "gym_async", 8),
        ]
        plan += [(f"native core (loop, default), N={n}", "core_native_loop", n) for n in args.sizes]
        plan += [(f"native core (rollout), N={n}", "core_native_rollout", n) for n in args.sizes]
        plan += [("native core (rollout, 2 threads), N=1024", "core_native_rollout2t", 1024)]
        if have_jax:
            plan += [(f"mjx core (CPU), N={n}", "core_mjx", n) for n in args.mjx_sizes]
        plan += [("raw physics limit (mujoco.rollout / frame_skip), N=256", "raw", 256)]
        results = run_round_robin(plan, task, args.seconds, args.rounds)
        sync = results["gymnasium SyncVectorEnv, 8 envs"].get("steps_per_s", float("nan"))
        raw = results["raw physics limit (mujoco.rollout / frame_skip), N=256"].get(
            "steps_per_s", float("nan")
        )
        table = [
            f"### {task} (offline-synthesized reward program)",
            "",
            "| method | env-steps/s | vs Sync(8) | vs raw limit | reward share of step | reward mode | peak RSS (MiB) | RSS over imports (MiB) |",
            "|---|---:|---:|---:|---:|---|---:|---:|",
        ]
        for label, r in results.items():
            if "error" in r:
                table.append(f"| {label} | error: {r['error']} | | | | | | |")
                continue
            sps = r["steps_per_s"]
            shares = r.get("shares")
            reward = f"{shares['reward']:.1%}" if shares else ""
            table.append(
                f"| {label} | {fmt(sps)} | {sps / sync:.2f}x | {sps / raw:.0%} | {reward} | {r.get('reward_mode', '')} | {r['rss_mb']:.0f} | {r['rss_delta_mb']:.0f} |"
            )
        profile = [
            (label, r["shares"])
            for label, r in results.items()
            if "shares" in r and "error" not in r
        ]
        table += [
            "",
            "Where a core step's time goes (share of step time):",
            "",
            "| core | " + " | ".join(profile[0][1]) + " |",
            "|---|" + "---:|" * len(profile[0][1]),
        ]
        table += [
            f"| {label} | " + " | ".join(f"{v:.0%}" for v in shares.values()) + " |"
            for label, shares in profile
        ]
        lines += table + [""]
        print("\n".join(table), flush=True)
    if not args.no_ppo:
        task = "mujoco/hopper_forward"
        table = [
            f"### SB3 PPO end to end on {task} ({args.ppo_steps} steps, conf/algo/ppo.yaml: 4,096 steps per update, torch 1 thread)",
            "",
            "| vec env | PPO fps | env step share | policy inference share | gradient update share |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, kind, n in [
            ("DummyVecEnv, 8 gymnasium envs", "dummy", 8),
            ("SubprocVecEnv, 8 gymnasium envs", "subproc", 8),
            ("CoreVecEnv (native), N=8", "core", 8),
            ("CoreVecEnv (native), N=64", "core", 64),
        ]:
            r = run_ppo_isolated(task, kind, n, args.ppo_steps)
            if "error" in r:
                table.append(f"| {label} | error: {r['error']} | | | |")
            else:
                table.append(
                    f"| {label} | {fmt(r['fps'])} | {r['env_share']:.0%} | {r['policy_share']:.0%} | {r['train_share']:.0%} |"
                )
            print(table[-1], flush=True)
        lines += table + [""]
    lines.append(f"Load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(lines[-1])
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
