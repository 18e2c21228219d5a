"""Two conflicting toy tasks for multi-task policies (one-step episodes, so a run takes
seconds): the observation is ``[x, one-hot task id]`` with ``x ~ U(-1, 1)``; task 0 wants the
action ``a = 0.8 sin(3x)``, task 1 the opposite ``-0.8 sin(3x)``, and the reward is
``-scale_t * |a - target|``. With unequal ``scales`` (the reward of one task orders of
magnitude larger, as generated rewards are) the tasks also compete for the optimiser: a shared
network's updates follow the large task.

:func:`task_success` scores a policy per task on a fixed grid of ``x`` (deterministic actions):
the share of points whose action is within ``tol`` of the target.

Example:
    >>> env = OppositeTasks()
    >>> obs, _ = env.reset(seed=0)
    >>> obs.shape, float(obs[1] + obs[2])
    ((3,), 1.0)
    >>> _, reward, done, _, _ = env.step(np.array([env.target()], np.float32))
    >>> round(float(reward), 4), done
    (-0.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class OppositeTasks(gym.Env[np.ndarray, np.ndarray]):
    """The two tasks; each reset draws the task (uniformly) and ``x``."""

    def __init__(self, scales: Sequence[float] = (1.0, 1.0)) -> None:
        self.scales = tuple(float(s) for s in scales)
        self.observation_space = spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)
        self.task, self.x = 0, 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.task = int(self.np_random.integers(2))
        self.x = float(self.np_random.uniform(-1, 1))
        return observation(self.x, self.task), {}

    def target(self) -> float:
        return target(self.x, self.task)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        error = abs(float(np.clip(action[0], -1, 1)) - self.target())
        return (
            observation(self.x, self.task),
            -self.scales[self.task] * error,
            True,
            False,
            {"task": self.task},
        )


def observation(x: float, task: int) -> np.ndarray:
    return np.array([x, task == 0, task == 1], np.float32)


def target(x: float | np.ndarray, task: int) -> Any:
    return (1 - 2 * task) * 0.8 * np.sin(3 * np.asarray(x))


def task_success(model: Any, tol: float = 0.2, points: int = 41) -> list[float]:
    """Per task, the share of ``points`` grid values of ``x`` in [-1, 1] where ``model``'s
    deterministic action is within ``tol`` of the target."""
    xs = np.linspace(-1, 1, points)
    out = []
    for task in (0, 1):
        obs = np.stack([observation(x, task) for x in xs])
        actions = np.clip(model.predict(obs, deterministic=True)[0][:, 0], -1, 1)
        out.append(float(np.mean(np.abs(actions - target(xs, task)) <= tol)))
    return out
