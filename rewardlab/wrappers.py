"""Gymnasium wrappers that attach a task's success metric and a reward program to an env.

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
import numpy as np

from rewardlab.reward.program import RewardProgram, RewardRuntimeError
from rewardlab.reward.sandbox import Finding
from rewardlab.tasks.proxies import PROXY_BUILDERS, Group
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import SuccessInputs, make_metric


def env_proxy(env: gym.Env, task: TaskSpec) -> Group:
    """The ``self`` proxy that reward programs and success metrics read for ``env``."""
    benchmark = task.card.split("/", 1)[0]
    if benchmark not in PROXY_BUILDERS:
        raise KeyError(f"no proxy builder for benchmark {benchmark!r} (card {task.card})")
    return PROXY_BUILDERS[benchmark](env, task.load_card())


def card_paths(task: TaskSpec) -> tuple[set[str], set[str]]:
    """``(paths, leaves)`` of the task's card, for :meth:`RewardProgram.compile`."""
    card = task.load_card()
    return card.attribute_paths(), card.leaf_paths()


def compile_for_task(source: str, task: TaskSpec, **kwargs: Any) -> RewardProgram:
    """Compile ``source`` with the attribute check against ``task``'s card."""
    paths, leaves = card_paths(task)
    return RewardProgram.compile(source, self_paths=paths, self_leaves=leaves, **kwargs)


ONE_WORLD = np.ones(1, dtype=bool)


class TaskSuccess(gym.Wrapper):
    """Track the task's success metric from simulator state.

    Adds ``info["success"]`` (latched within the episode) and ``info["task/progress"]`` each
    step, and ``info["is_success"]`` on the last step of an episode (the key SB3's Monitor,
    EvalCallback and ``evaluate_policy`` read).
    """

    def __init__(self, env: gym.Env, task: TaskSpec) -> None:
        super().__init__(env)
        self.task = task
        self.me = env_proxy(env, task)
        self.inputs = SuccessInputs.for_env(env, self.me, task)
        self.metric = make_metric(task.success.metric, dict(task.success.params), n=1)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.metric.reset(self.inputs, ONE_WORLD)
        info.update(success=False, **{"task/progress": 0.0})
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.metric.update(self.inputs)
        info["success"] = bool(self.metric.success[0])
        info["task/progress"] = float(self.metric.progress[0])
        if terminated or truncated:
            info["is_success"] = info["success"]
        return obs, reward, terminated, truncated, info


class RewardFailure(RuntimeError):
    """The reward program failed too often to keep training on it."""


class ProgramReward(gym.Wrapper):
    """Replace the environment's reward with a :class:`RewardProgram`'s output.

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
        self.errors: dict[str, Finding] = {}
        self.error_counts: Counter[str] = Counter()
        self._recent: deque[bool] = deque(maxlen=window)
        self._recent_failures = 0
        self._keys: dict[str, str] = {}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info["reward/env"] = float(env_reward)
        failed = False
        try:
            reward, components = self.program(self.me, action, obs)
            keys = self._keys
            for name, value in components.items():
                key = keys.get(name) or keys.setdefault(name, f"reward/{name}")
                info[key] = value
        except RewardRuntimeError as exc:
            reward, failed = 0.0, True
            key = str(exc.finding)
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
    """Make ``task``'s environment with its success metric and, if given, ``program``'s reward.

    Without a program the benchmark's own reward is kept (the "expert" reward).
    """
    env = gym.make(
        task.resolved_env_id(),
        max_episode_steps=task.horizon,
        render_mode=render_mode,
        **{**dict(task.env_kwargs), **make_kwargs},
    )
    env = TaskSuccess(env, task)
    if program is not None:
        env = ProgramReward(env, task, program, max_error_rate=max_error_rate)
    return env
