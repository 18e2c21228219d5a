"""Cost of evaluating a reward program per environment step, as a ratio to the bare step.

Usage: python benchmarks/reward_cost.py [--slices 40] [--slice-steps 500] [--tasks mujoco/hopper_forward ...]
       [--markdown FILE]

For each task, in one process and with one random action sequence, three things are timed:

  bare     the gymnasium env (the task's env id and horizon), no rewardlab wrapper
  program  the same env + rewardlab's ProgramReward wrapper running the offline synthesizer's
           program for the task (proxies, sandbox budget and output checks included)
  call     the reward call alone (``program(me, action)`` on the live state of the program env)

They are *interleaved*: the run is cut into ``--slices`` slices; in each slice the three are
timed back to back on ``--slice-steps`` steps each, in an order that alternates (bare first in
even slices, last in odd ones), so load from other users of the machine falls on all of them
alike. Each slice gives a ratio ``program / bare`` and ``call / bare`` from times measured
seconds apart; the table reports the median ratio over slices with the 2.5-97.5% range of a
bootstrap of the median (1,000 resamples), and the per-step times of the median slice.
Target: program overhead under 10% of the bare step.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rewardlab.generators.base import GenerationRequest, extract_code
from rewardlab.generators.offline import OfflineGenerator
from rewardlab.tasks import TaskSpec, get_task
from rewardlab.wrappers import ProgramReward, compile_for_task, env_proxy

DEFAULT_TASKS = [
    "mujoco/hopper_forward",
    "mujoco/hopper_backflip",
    "mujoco/halfcheetah_forward",
    "mujoco/ant_forward",
]


class Stepper:
    """Steps an env through a fixed action sequence, resetting at episode ends, in slices."""

    def __init__(self, env: gym.Env, actions: np.ndarray) -> None:
        self.env, self.actions, self.t = env, actions, 0
        env.reset(seed=0)

    def run(self, steps: int) -> float:
        """Seconds per step over the next ``steps`` actions."""
        env, actions = self.env, self.actions
        start = time.perf_counter()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(actions[self.t % len(actions)])
            self.t += 1
            if term or trunc:
                env.reset()
        return (time.perf_counter() - start) / steps


def median_interval(
    values: np.ndarray, rng: np.random.Generator, reps: int = 1000
) -> tuple[float, float, float]:
    """Median and the 2.5-97.5% percentiles of its bootstrap distribution."""
    boots = np.median(rng.choice(values, size=(reps, len(values)), replace=True), axis=1)
    return (
        float(np.median(values)),
        float(np.percentile(boots, 2.5)),
        float(np.percentile(boots, 97.5)),
    )


def measure(task: TaskSpec, slices: int, slice_steps: int) -> dict[str, Any]:
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=task.instruction, messages=[])
    )
    source = extract_code(reply.text)
    assert source is not None

    def make() -> gym.Env:
        return gym.make(
            task.resolved_env_id(), max_episode_steps=task.horizon, **dict(task.env_kwargs)
        )

    rng = np.random.default_rng(0)
    probe = make()
    space = probe.action_space
    actions = rng.uniform(space.low, space.high, size=(20_000, *space.shape)).astype(np.float32)  # type: ignore[attr-defined]
    probe.close()
    bare = Stepper(make(), actions)
    prog_env = ProgramReward(make(), task, compile_for_task(source, task))
    program_stepper = Stepper(prog_env, actions)
    program = compile_for_task(source, task)
    me = env_proxy(prog_env, task)

    def call(steps: int) -> float:
        start = time.perf_counter()
        for k in range(steps):
            program(me, actions[k % len(actions)], None)
        return (time.perf_counter() - start) / steps

    timers: dict[str, Callable[[int], float]] = {
        "bare": bare.run,
        "program": program_stepper.run,
        "call": call,
    }
    for timer in timers.values():  # warm-up
        timer(200)
    rows: list[dict[str, float]] = []
    for k in range(slices):
        order = list(timers) if k % 2 == 0 else list(reversed(timers))
        rows.append({name: timers[name](slice_steps) for name in order})
    bare.env.close()
    prog_env.close()
    times = {name: np.array([r[name] for r in rows]) for name in timers}
    overhead = times["program"] / times["bare"] - 1.0
    call_share = times["call"] / times["bare"]
    boot = np.random.default_rng(1)
    mid = int(np.argsort(overhead)[len(overhead) // 2])
    return {
        "task": task.name, "slices": slices, "slice_steps": slice_steps,
        "bare_us": times["bare"][mid] * 1e6, "program_us": times["program"][mid] * 1e6, "call_us": times["call"][mid] * 1e6,
        "overhead": median_interval(overhead, boot), "call_share": median_interval(call_share, boot),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--slice-steps", type=int, default=500)
    parser.add_argument("--tasks", nargs="*", default=DEFAULT_TASKS)
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"Interleaved: {args.slices} slices x {args.slice_steps} steps per configuration; load average at start {load}.",
        "",
        "| task | bare us/step | +program us/step | reward call us | program overhead (median, 95% CI) | call / bare step (median, 95% CI) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name in args.tasks:
        r = measure(get_task(name), args.slices, args.slice_steps)
        o, c = r["overhead"], r["call_share"]
        line = (
            f"| {name} | {r['bare_us']:.1f} | {r['program_us']:.1f} | {r['call_us']:.1f} "
            f"| {o[0]:.1%} ({o[1]:.1%} to {o[2]:.1%}) | {c[0]:.1%} ({c[1]:.1%} to {c[2]:.1%}) |"
        )
        lines.append(line)
        print(line, flush=True)
    lines.append(f"\nLoad average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(lines[-1])
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
