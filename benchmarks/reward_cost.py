"""Cost of evaluating a reward program per environment step, as a ratio to the bare step.

Usage: python benchmarks/reward_cost.py [--steps 20000] [--tasks mujoco/hopper_forward ...]

For each task it times, in the same process and with the same random action sequence:
  bare     gymnasium env (the task's env id and horizon), no rewardlab wrapper
  program  the same env + rewardlab's ProgramReward wrapper running the offline synthesizer's
           program for the task (proxies, sandbox budget and output checks included)
and isolates the reward call itself (program(me, action) on live state) to separate wrapper
overhead from the program's own cost. Target: program overhead under 10% of the bare step.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from rewardlab.generators.base import GenerationRequest, extract_code
from rewardlab.generators.offline import OfflineGenerator
from rewardlab.tasks import TaskSpec, get_task
from rewardlab.wrappers import ProgramReward, compile_for_task, env_proxy

DEFAULT_TASKS = ["mujoco/hopper_forward", "mujoco/hopper_backflip", "mujoco/halfcheetah_forward", "mujoco/ant_forward"]


def time_steps(env: gym.Env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return (time.perf_counter() - start) / len(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--tasks", nargs="*", default=DEFAULT_TASKS)
    args = parser.parse_args()
    print(f"{'task':28s} {'bare us/step':>12s} {'+program':>10s} {'reward call us':>14s} {'overhead':>9s} {'call/bare':>9s}")
    for name in args.tasks:
        task = get_task(name)
        reply = OfflineGenerator().propose(GenerationRequest(task=task, instruction=task.instruction, messages=[]))
        source = extract_code(reply.text)
        assert source is not None

        def make(task: TaskSpec = task) -> gym.Env:
            return gym.make(task.resolved_env_id(), max_episode_steps=task.horizon, **dict(task.env_kwargs))

        rng = np.random.default_rng(0)
        probe = make()
        actions = rng.uniform(probe.action_space.low, probe.action_space.high, size=(args.steps, *probe.action_space.shape)).astype(np.float32)
        probe.close()
        bare_env, prog_env = make(), ProgramReward(make(), task, compile_for_task(source, task))
        time_steps(bare_env, actions[:500])  # warm-up
        time_steps(prog_env, actions[:500])
        bare = min(time_steps(bare_env, actions) for _ in range(2))
        with_program = min(time_steps(prog_env, actions) for _ in range(2))
        program = compile_for_task(source, task)
        me = env_proxy(prog_env, task)
        start = time.perf_counter()
        for a in actions[:5000]:
            program(me, a, None)
        call = (time.perf_counter() - start) / 5000
        print(
            f"{name:28s} {bare * 1e6:12.1f} {with_program * 1e6:10.1f} {call * 1e6:14.1f} "
            f"{(with_program - bare) / bare:9.1%} {call / bare:9.1%}"
        )
        bare_env.close()
        prog_env.close()


if __name__ == "__main__":
    main()
