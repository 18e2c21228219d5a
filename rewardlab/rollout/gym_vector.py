"""A gymnasium ``VectorEnv`` over the rollout core (same-step auto-reset).

gymnasium 1.x vector conventions: ``reset(seed=...)`` -> ``(obs, infos)``;
``step(actions)`` -> ``(obs, rewards, terminations, truncations, infos)`` with ``infos`` a dict
of arrays (and ``_key`` masks). The core resets finished worlds in the same step, so
``metadata["autoreset_mode"]`` is ``AutoresetMode.SAME_STEP``: for finished worlds ``obs`` is
already the next episode's first observation, and ``infos["final_obs"]`` /
``infos["final_info"]`` (with ``is_success``) hold the episode's end, as ``SyncVectorEnv``
reports them in that mode.

Example:
    >>> import numpy as np
    >>> from rewardlab.tasks import get_task
    >>> from rewardlab.rollout.core import CoreConfig, RolloutCore
    >>> envs = CoreVectorEnv(RolloutCore(get_task("mujoco/halfcheetah_forward"), CoreConfig(num_worlds=3)))
    >>> obs, infos = envs.reset(seed=0)
    >>> obs, rew, term, trunc, infos = envs.step(envs.action_space.sample())
    >>> obs.shape, rew.shape, envs.single_action_space.shape, "success" in infos
    ((3, 17), (3,), (6,), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rewardlab.rollout.core import RolloutCore


class CoreVectorEnv(VectorEnv):
    """gymnasium ``VectorEnv`` over a :class:`RolloutCore`."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, core: RolloutCore) -> None:
        self.core = core
        self.num_envs = core.num_worlds
        self.single_observation_space = core.observation_space
        self.single_action_space = core.action_space
        self.observation_space = batch_space(core.observation_space, self.num_envs)
        self.action_space = batch_space(core.action_space, self.num_envs)
        self.metadata = dict(type(self).metadata)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs = self.core.reset(seed)
        return obs, {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self.core.step(np.asarray(actions))
        n = self.num_envs
        every = np.ones(n, dtype=bool)
        infos: dict[str, Any] = {
            "success": out.success, "_success": every,
            "task/progress": out.progress, "_task/progress": every,
            "reward/env": out.env_reward, "_reward/env": every,
        }  # fmt: skip
        ok = ~out.reward_error
        for name, value in out.components.items():
            infos[f"reward/{name}"], infos[f"_reward/{name}"] = value, ok
        if out.reward_error.any():
            infos["reward/error"], infos["_reward/error"] = (
                out.reward_error.astype(np.float64),
                out.reward_error,
            )
        done = out.done
        if done.any():
            final_obs = np.empty(n, dtype=object)
            for i in np.flatnonzero(done).tolist():
                final_obs[i] = out.final_obs[i]
            infos["final_obs"], infos["_final_obs"] = final_obs, done
            infos["final_info"] = {"is_success": out.success & done, "_is_success": done}
            infos["_final_info"] = done
        return out.obs, out.reward, out.terminated, out.truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.core.close()
