"""A task's environment: gymnasium's env with the task's success metric, and the ``self``
proxy that success metrics and reward programs read (the layer below reward programs:
:mod:`rewardlab.wrappers` adds a program's reward on top).

Example:
    >>> from rewardlab.tasks import get_task
    >>> env = make_task_env(get_task("mujoco/hopper_forward"))
    >>> _ = env.reset(seed=0)
    >>> info = env.step(env.action_space.sample())[-1]
    >>> sorted(k for k in info if k.startswith("task/") or k == "success")
    ['success', 'task/progress']
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rewardlab.tasks.cards import card_benchmark
from rewardlab.tasks.proxies import PROXY_BUILDERS, Group
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import SuccessInputs, make_metric


def env_proxy(env: gym.Env, task: TaskSpec) -> Group:
    """The ``self`` proxy that reward programs and success metrics read for ``env``."""
    benchmark = card_benchmark(task.card)
    if benchmark not in PROXY_BUILDERS:
        raise KeyError(f"no proxy builder for benchmark {benchmark!r} (card {task.card})")
    return PROXY_BUILDERS[benchmark](env, task.load_card())


def card_paths(task: TaskSpec) -> tuple[set[str], set[str]]:
    """``(paths, leaves)`` of the task's card, for :meth:`RewardProgram.compile`."""
    card = task.load_card()
    return card.attribute_paths(), card.leaf_paths()


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


def make_task_env(task: TaskSpec, *, render_mode: str | None = None, **make_kwargs: Any) -> gym.Env:
    """``task``'s gymnasium environment (its horizon as the time limit, its ``env_kwargs``)
    with :class:`TaskSuccess`; the benchmark's own reward."""
    env = gym.make(
        task.resolved_env_id(),
        max_episode_steps=task.horizon,
        render_mode=render_mode,
        **{**dict(task.env_kwargs), **make_kwargs},
    )
    return TaskSuccess(env, task)
