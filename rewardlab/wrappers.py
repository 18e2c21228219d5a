"""The public env API: a task's environment (:mod:`rewardlab.tasks.envs`: success metric,
``self`` proxy) with a reward program's output as its reward (:class:`ProgramReward`).

Example:
    >>> from rewardlab.tasks import get_task
    >>> env = make_env(get_task("mujoco/hopper_forward"))
    >>> _ = env.reset(seed=0)
    >>> _, _, _, _, info = env.step(env.action_space.sample())
    >>> sorted(k for k in info if k.startswith("task/") or k == "success")
    ['success', 'task/progress']
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, SupportsFloat

import gymnasium as gym

from rewardlab.reward.program import RewardProgram, RewardRuntimeError, compile_for_task
from rewardlab.reward.sandbox import Finding
from rewardlab.tasks.envs import TaskSuccess, card_paths, env_proxy, make_task_env
from rewardlab.tasks.registry import TaskSpec

__all__ = [
    "ProgramReward", "RewardFailure", "TaskSuccess", "card_paths", "compile_for_task", "env_proxy", "make_env",
]  # fmt: skip


class RewardFailure(RuntimeError):
    """The reward program failed too often to keep training on it."""


class RewardWrapper(gym.Wrapper):
    """What every wrapper that replaces the reward with a program's offers: :attr:`errors`
    (first finding of each kind) and :attr:`error_counts` (failed calls per finding)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.errors: dict[str, Finding] = {}
        self.error_counts: Counter[str] = Counter()


class ProgramReward(RewardWrapper):
    """Replace the environment's reward with a :class:`RewardProgram`'s output, in this
    process (used inside confined workers; elsewhere :func:`rewardlab.workers.confined.program_env` confines it).

    ``info["reward/<name>"]`` carries each named component, ``info["reward/env"]`` the
    benchmark's own reward. A call that raises, runs over budget or returns a non-finite or
    insane value yields reward 0, sets ``info["reward/error"] = 1`` and is recorded in
    :attr:`errors` (first finding of each kind, with counts); when more than
    ``max_error_rate`` of the last ``window`` steps failed, :class:`RewardFailure` stops
    training with the findings in the message.
    """

    def __init__(
        self,
        env: gym.Env,
        task: TaskSpec,
        program: RewardProgram,
        *,
        max_error_rate: float = 0.05,
        window: int = 1000,
    ) -> None:
        super().__init__(env)
        self.program = program
        self.me = env_proxy(env, task)
        self.max_error_rate = max_error_rate
        self.window = window
        self.last_error: str | None = None
        """The finding of the last step's call (``None``: it worked)."""
        self._recent: deque[bool] = deque(maxlen=window)
        self._recent_failures = 0
        self._keys: dict[str, str] = {}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info["reward/env"] = float(env_reward)
        failed = False
        self.last_error = None
        try:
            reward, components = self.program(self.me, action, obs)
            keys = self._keys
            for name, value in components.items():
                key = keys.get(name) or keys.setdefault(name, f"reward/{name}")
                info[key] = value
        except RewardRuntimeError as exc:
            reward, failed = 0.0, True
            key = self.last_error = str(exc.finding)
            self.errors.setdefault(key, exc.finding)
            self.error_counts[key] += 1
            info["reward/error"] = 1.0
        if len(self._recent) == self.window:
            self._recent_failures -= self._recent[0]
        self._recent.append(failed)
        self._recent_failures += failed
        if failed and self._recent_failures > self.max_error_rate * max(len(self._recent), 100):
            raise RewardFailure(
                f"reward program failed on {self._recent_failures} of the last {len(self._recent)} "
                "steps:\n" + "\n".join(f"  {k} (x{n})" for k, n in self.error_counts.most_common(5))
            )
        return obs, reward, terminated, truncated, info


def make_env(
    task: TaskSpec,
    program: RewardProgram | None = None,
    *,
    render_mode: str | None = None,
    max_error_rate: float = 0.05,
    **make_kwargs: Any,
) -> gym.Env:
    """Make ``task``'s environment with its success metric and, if given, ``program``'s reward
    computed **in this process** (:class:`ProgramReward`).

    That is what the confined workers do inside themselves, and what tests and benchmarks of
    trusted programs may do. rewardlab runs generated code with
    :func:`rewardlab.workers.confined.program_env` instead, which ships the compiled program to
    a confined worker and keeps it out of this process. Without a program the benchmark's own
    reward is kept (the "expert" reward).
    """
    env = make_task_env(task, render_mode=render_mode, **make_kwargs)
    if program is not None:
        env = ProgramReward(env, task, program, max_error_rate=max_error_rate)
    return env
