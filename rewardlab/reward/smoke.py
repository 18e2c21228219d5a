"""The smoke-run child process of :func:`rewardlab.reward.check.check_program`.

Run as ``python -m rewardlab.reward.smoke``: reads one JSON request on stdin, writes one JSON
report on stdout, and nothing else goes to stdout (stray output is sent to stderr).

Request: ``{"task": TaskSpec.to_dict(), "source": str, "steps": int, "seed": int,
"memory_mb": int, "cpu_s": float}``.

Report: ``{"findings": [{"stage", "message", "line"}, ...], "stats": {...}}`` where findings
are the first occurrence of each distinct failure (the message ends with how many states it
happened on) and stats describe the rewards, components and call times on the states seen.

The task's environment is built first; then the address-space and CPU-time limits are
applied, and only then is the untrusted program compiled (module-level code runs at compile
time) and evaluated, so whatever it does is confined to this process.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from rewardlab.reward.program import RewardProgramError, RewardRuntimeError
from rewardlab.reward.sandbox import Finding
from rewardlab.tasks.registry import TaskSpec
from rewardlab.wrappers import compile_for_task, env_proxy, make_env


def apply_limits(memory_mb: int, cpu_s: float) -> None:
    """Cap this process's address space at ``memory_mb`` MiB and its CPU time at ``cpu_s``.

    Both soft and hard limits are lowered (untrusted code cannot raise them again); existing
    lower hard limits are kept. Exceeding the CPU limit ends the process with ``SIGXCPU``.
    """

    def lower(kind: int, value: int, hard_value: int) -> None:
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value, hard_value = min(value, hard), min(hard_value, hard)
        resource.setrlimit(kind, (value, hard_value))

    if memory_mb > 0:
        limit = int(memory_mb) << 20
        lower(resource.RLIMIT_AS, limit, limit)
    if cpu_s > 0:
        seconds = math.ceil(cpu_s)
        lower(resource.RLIMIT_CPU, seconds, seconds + 2)


def _summary(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "min": float(arr.min()),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
        "std": float(arr.std()),
    }


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Build the env, apply the limits, compile and smoke-run the program; return the report."""
    task = TaskSpec.from_dict(request["task"])
    steps, seed = int(request.get("steps", 200)), int(request.get("seed", 0))
    env = make_env(task)
    try:
        me = env_proxy(env, task)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        apply_limits(int(request.get("memory_mb", 0)), float(request.get("cpu_s", 0)))

        try:
            program = compile_for_task(request["source"], task)
        except RewardProgramError as exc:
            return {"findings": [asdict(f) for f in exc.findings], "stats": {"steps": 0}}

        errors: dict[str, Finding] = {}
        counts: dict[str, int] = {}
        rewards: list[float] = []
        components: dict[str, list[float]] = {}
        call_s: list[float] = []
        episodes = 1
        for _ in range(steps):
            action = env.action_space.sample()
            obs, _, terminated, truncated, _ = env.step(action)
            start = time.perf_counter()
            try:
                reward, parts = program(me, action, obs)
            except RewardRuntimeError as exc:
                key = str(exc.finding)
                errors.setdefault(key, exc.finding)
                counts[key] = counts.get(key, 0) + 1
            else:
                call_s.append(time.perf_counter() - start)  # successful calls only
                rewards.append(reward)
                for name, value in parts.items():
                    components.setdefault(name, []).append(value)
            if terminated or truncated:
                obs, _ = env.reset()
                episodes += 1
    finally:
        env.close()

    findings = [
        {**asdict(f), "message": f"{f.message} (on {counts[key]} of {steps} states)"}
        for key, f in errors.items()
    ]
    timed = call_s[1:] or call_s  # the first call pays one-off costs (facade creation)
    stats: dict[str, Any] = {
        "steps": steps,
        "episodes": episodes,
        "calls_ok": len(rewards),
        "calls_failed": steps - len(rewards),
        "error_counts": {key: counts[key] for key in errors},
        "takes_obs": program.takes_obs,
        "mean_call_us": 1e6 * float(np.mean(timed)) if timed else 0.0,
        "max_call_us": 1e6 * float(np.max(timed)) if timed else 0.0,
        "reward": _summary(rewards) if rewards else None,
        "components": {name: _summary(vals) for name, vals in components.items()},
    }
    return {"findings": findings, "stats": stats}


def main() -> None:
    """Entry point: JSON request on stdin -> JSON report on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else written to stdout (also from C code) goes to stderr
    sys.stdout = sys.stderr
    try:
        report = run(json.load(sys.stdin))
    except BaseException as exc:  # report whatever happened
        finding = Finding("smoke", f"the smoke run failed: {type(exc).__name__}: {exc}")
        report = {"findings": [asdict(finding)], "stats": {}}
    out.write(json.dumps(report))
    out.flush()


if __name__ == "__main__":
    main()
