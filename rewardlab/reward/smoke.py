"""The smoke-run child process of :func:`rewardlab.reward.check.check_program`.

Run as ``python -m rewardlab.reward.smoke``: reads one JSON request on stdin, writes one JSON
report on stdout, and nothing else goes to stdout (stray output is sent to stderr).

Two modes:

* **smoke run** (the default), for :func:`rewardlab.reward.check.check_program`. Request:
  ``{"task": TaskSpec.to_dict(), "program": RewardProgram.to_message(), "steps": int, "seed": int, "memory_mb": int,
  "cpu_s": float}``. Report: ``{"findings": [{"stage", "message", "line"}, ...], "stats":
  {...}}`` where findings are the first occurrence of each distinct failure (the message ends
  with how many states it happened on) and stats describe the rewards, components and call
  times on the states seen.
* **recorded states** (``"mode": "states"``), for
  :func:`rewardlab.reward.trajectories.evaluate_on_rollouts`. Request: ``{"mode": "states",
  "task", "program", "rollouts": <.npz path>, "memory_mb", "cpu_s", "max_abs": float | None}``.
  The env is reset with each rollout's seed and every recorded state is restored before the
  program is called with the recorded action and observation. Report: ``{"findings", "stats",
  "rewards": [[float | None per step] per rollout], "components": {name: [[...] per
  rollout]}}`` (``None`` where the call failed or did not return that component).

The task's environment is built first; then the OS wall goes up
(:func:`rewardlab.reward.confine.apply_wall`: seccomp, Landlock, no_new_privs, the request's
address-space and CPU-time limits, no file growth, no new processes or threads), and only then
is the program (vetted and compiled by the trusted process) loaded (its module-level code runs
now) and evaluated, so whatever it does is confined to this process and cannot leave it. The process's environment
holds no keys (:func:`rewardlab.reward.confine.worker_environment`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from rewardlab.reward.confine import apply_wall
from rewardlab.reward.findings import Finding
from rewardlab.reward.program import (
    RewardProgram,
    RewardProgramError,
    RewardRuntimeError,
)
from rewardlab.tasks.envs import env_proxy, make_task_env
from rewardlab.tasks.registry import TaskSpec


def _load(request: dict[str, Any], max_abs: float | None = None) -> RewardProgram:
    """The program the trusted process compiled (:meth:`RewardProgram.to_message`), loaded
    here, behind the wall: its module-level code runs now."""
    program = RewardProgram.from_message(request["program"])
    if max_abs is not None:
        program.max_abs = max_abs
    return program.fresh()


def _wall(request: dict[str, Any]) -> None:
    """The OS wall (:func:`rewardlab.reward.confine.apply_wall`) with the request's limits."""
    cpu_s = float(request.get("cpu_s", 0))
    apply_wall(
        memory_mb=int(request.get("memory_mb", 0)),
        cpu_s=cpu_s if cpu_s > 0 else None,
        threads=False,
    )


def _summary(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "min": float(arr.min()),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
        "std": float(arr.std()),
    }


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Build the env, apply the limits, load and smoke-run the program; return the report."""
    task = TaskSpec.from_dict(request["task"])
    steps, seed = int(request.get("steps", 200)), int(request.get("seed", 0))
    env = make_task_env(task)
    try:
        me = env_proxy(env, task)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        _wall(request)

        try:
            program = _load(request)
        except RewardProgramError as exc:
            return {"findings": [asdict(f) for f in exc.findings], "stats": {"steps": 0}}

        errors: dict[str, Finding] = {}
        counts: dict[str, int] = {}
        rewards: list[float] = []
        components: dict[str, list[float]] = {}
        call_s: list[float] = []
        step_s: list[float] = []
        episodes = 1
        for _ in range(steps):
            action = env.action_space.sample()
            before = time.thread_time()
            obs, _, terminated, truncated, _ = env.step(action)
            start = time.thread_time()
            step_s.append(start - before)
            try:
                reward, parts = program(me, action, obs)
            except RewardRuntimeError as exc:
                key = str(exc.finding)
                errors.setdefault(key, exc.finding)
                counts[key] = counts.get(key, 0) + 1
            else:
                call_s.append(time.thread_time() - start)  # successful calls only
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
    stepped = step_s[1:] or step_s
    stats: dict[str, Any] = {
        "steps": steps,
        "episodes": episodes,
        "calls_ok": len(rewards),
        "calls_failed": steps - len(rewards),
        "error_counts": {key: counts[key] for key in errors},
        "takes_obs": program.takes_obs,
        "mean_call_us": 1e6 * float(np.mean(timed)) if timed else 0.0,
        "max_call_us": 1e6 * float(np.max(timed)) if timed else 0.0,
        "median_call_us": 1e6 * float(np.median(timed)) if timed else 0.0,
        "median_step_us": 1e6 * float(np.median(stepped)) if stepped else 0.0,
        "reward": _summary(rewards) if rewards else None,
        "components": {name: _summary(vals) for name, vals in components.items()},
    }
    return {"findings": findings, "stats": stats}


def evaluate_states(request: dict[str, Any]) -> dict[str, Any]:
    """Build the env, load the rollouts, apply the limits, load the program and evaluate
    it on every recorded state (the ``states`` mode, see the module docstring)."""
    from rewardlab.reward.trajectories import load_rollouts, restore_state

    task = TaskSpec.from_dict(request["task"])
    rollouts = load_rollouts(request["rollouts"])
    max_abs = request.get("max_abs")
    env = make_task_env(task)
    try:
        me = env_proxy(env, task)
        env.reset(seed=rollouts[0].seed if rollouts else 0)
        _wall(request)
        try:
            program = _load(request, math.inf if max_abs is None else float(max_abs))
        except RewardProgramError as exc:
            return {"findings": [asdict(f) for f in exc.findings], "stats": {"states": 0}}

        total = sum(r.length for r in rollouts)
        errors: dict[str, Finding] = {}
        counts: dict[str, int] = {}
        where: dict[str, str] = {}
        rewards: list[list[float | None]] = []
        components: dict[str, list[list[float | None]]] = {}
        call_s: list[float] = []
        for i, rollout in enumerate(rollouts):
            env.reset(seed=rollout.seed)
            per: list[float | None] = [None] * rollout.length
            parts_of: dict[str, list[float | None]] = {}
            for t in range(rollout.length):
                restore_state(env, rollout.states[t])
                start = time.thread_time()
                try:
                    reward, parts = program(me, rollout.actions[t], rollout.observations[t])
                except RewardRuntimeError as exc:
                    key = str(exc.finding)
                    errors.setdefault(key, exc.finding)
                    counts[key] = counts.get(key, 0) + 1
                    where.setdefault(
                        key, f"{rollout.kind} rollout {i} (reset seed {rollout.seed}), step {t}"
                    )
                    continue
                call_s.append(time.thread_time() - start)
                per[t] = reward
                for name, value in parts.items():
                    if name not in parts_of:
                        parts_of[name] = [None] * rollout.length
                    parts_of[name][t] = value
            rewards.append(per)
            for name in [*components, *(n for n in parts_of if n not in components)]:
                components.setdefault(name, [[None] * r.length for r in rollouts[:i]])
                components[name].append(parts_of.get(name, [None] * rollout.length))
    finally:
        env.close()
    findings = [
        {
            **asdict(f),
            "message": f"{f.message} (on {counts[key]} of {total} recorded states; first: {where[key]})",
        }
        for key, f in errors.items()
    ]
    timed = call_s[1:] or call_s
    stats = {
        "rollouts": len(rollouts), "states": total, "calls_ok": len(call_s),
        "calls_failed": total - len(call_s),
        "mean_call_us": 1e6 * float(np.mean(timed)) if timed else 0.0,
    }  # fmt: skip
    return {"findings": findings, "stats": stats, "rewards": rewards, "components": components}


def main() -> None:
    """Entry point: JSON request on stdin -> JSON report on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else written to stdout (also from C code) goes to stderr
    sys.stdout = sys.stderr
    try:
        request = json.load(sys.stdin)
        report = evaluate_states(request) if request.get("mode") == "states" else run(request)
    except BaseException as exc:  # report whatever happened
        finding = Finding("smoke", f"the smoke run failed: {type(exc).__name__}: {exc}")
        report = {"findings": [asdict(finding)], "stats": {}}
    out.write(json.dumps(report))
    out.flush()


if __name__ == "__main__":
    main()
