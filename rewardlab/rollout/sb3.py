"""A stable-baselines3 ``VecEnv`` over the rollout core, so PPO/SAC train on it unchanged.

Per world and step the ``infos`` carry what the gymnasium wrapper stack
(:func:`rewardlab.wrappers.make_env` + ``DummyVecEnv``) puts there: ``success``,
``task/progress``, ``reward/env``, every ``reward/<name>`` component (or ``reward/error``),
``TimeLimit.truncated``, and at an episode's end ``is_success`` and ``terminal_observation``.
Wrap it in ``VecMonitor(venv, info_keywords=("is_success",))`` for episode statistics.

``infos="episode"`` keeps only the end-of-episode keys (faster at large N; the reward
components are then read from :attr:`CoreVecEnv.last` instead).

Example:
    >>> import numpy as np
    >>> from rewardlab.tasks import get_task
    >>> from rewardlab.rollout.core import CoreConfig, RolloutCore
    >>> venv = CoreVecEnv(RolloutCore(get_task("mujoco/hopper_forward"), CoreConfig(num_worlds=2)))
    >>> obs = venv.reset()
    >>> obs, rewards, dones, infos = venv.step(np.zeros((2, 3), dtype=np.float32))
    >>> obs.shape, rewards.dtype, sorted(infos[0])
    ((2, 11), dtype('float32'), ['TimeLimit.truncated', 'reward/env', 'success', 'task/progress'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rewardlab.rollout.core import CoreConfig, RolloutCore, StepResult
from rewardlab.tasks.registry import TaskSpec

INFO_MODES = ("full", "episode")


class CoreVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a :class:`RolloutCore` (see the module docstring)."""

    def __init__(self, core: RolloutCore, *, infos: str = "full") -> None:
        if infos not in INFO_MODES:
            raise ValueError(f"infos must be one of {INFO_MODES}, got {infos!r}")
        self.core = core
        self.info_mode = infos
        self.render_mode = None
        self._actions: np.ndarray | None = None
        self.last: StepResult | None = None
        super().__init__(core.num_worlds, core.observation_space, core.action_space)

    # ------------------------------------------------------------------ VecEnv API

    def reset(self) -> VecEnvObs:
        seeds = self._seeds
        if any(s is not None for s in seeds):
            self.core.seed(seeds)
        obs = self.core.reset()
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        out = self.core.step(self._actions)
        self._actions = None
        self.last = out
        return out.obs, out.reward.astype(np.float32), out.done, self._infos(out)

    def _infos(self, out: StepResult) -> list[dict[str, Any]]:
        n = self.num_envs
        done = out.done
        truncated_only = (out.truncated & ~out.terminated).tolist()
        if self.info_mode == "full":
            columns: dict[str, list[Any]] = {
                "success": out.success.tolist(),
                "task/progress": out.progress.tolist(),
                "reward/env": out.env_reward.tolist(),
            }
            error = out.reward_error.tolist()
            comps = {f"reward/{k}": v.tolist() for k, v in out.components.items()}
            keys = list(columns)
            values = list(zip(*columns.values(), strict=True))
            infos = [dict(zip(keys, row, strict=True)) for row in values]
            for i, info in enumerate(infos):
                info["TimeLimit.truncated"] = truncated_only[i]
                if error[i]:
                    info["reward/error"] = 1.0
                else:
                    for key, col in comps.items():
                        info[key] = col[i]
        else:
            infos = [{} for _ in range(n)]
        if done.any():
            success = out.success
            for i in np.flatnonzero(done).tolist():
                infos[i]["TimeLimit.truncated"] = truncated_only[i]
                infos[i]["terminal_observation"] = out.final_obs[i]
                infos[i]["is_success"] = bool(success[i])
        return infos

    def rollout_report(self) -> dict[str, Any]:
        """What the core ran (:meth:`RolloutCore.rollout_report`)."""
        return self.core.rollout_report()

    def close(self) -> None:
        self.core.close()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attributes of the core, once per world; ``error_counts`` comes once (on world 0)
        so summing over worlds counts each failure once."""
        idx = self._indices(indices)
        if attr_name == "render_mode":
            return [None for _ in idx]
        if attr_name == "error_counts":
            counts = self.core.error_counts
            return [counts if i == 0 else {} for i in idx]
        if attr_name == "rollout_report":
            return [self.core.rollout_report() for _ in idx]
        value = getattr(self.core, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.core, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        result = getattr(self.core, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def make_core_vec_env(
    task: TaskSpec,
    source: str | None,
    *,
    n_envs: int,
    seed: int = 0,
    max_error_rate: float = 0.05,
    config: CoreConfig | None = None,
) -> VecEnv:
    """Drop-in for :func:`rewardlab.training.make_vec_env` on the rollout core:
    ``VecMonitor(CoreVecEnv(...), info_keywords=("is_success",))`` seeded ``seed + i``
    (``config.infos`` chooses the per-step infos).

    Example:
        >>> from rewardlab.tasks import get_task
        >>> venv = make_core_vec_env(get_task("mujoco/hopper_forward"), None, n_envs=4)
        >>> venv.num_envs, venv.reset().shape
        (4, (4, 11))
    """
    from dataclasses import replace

    from stable_baselines3.common.vec_env import VecMonitor

    cfg = replace(
        config or CoreConfig(), num_worlds=n_envs, seed=seed, max_error_rate=max_error_rate
    )
    venv = CoreVecEnv(RolloutCore(task, cfg, program=source), infos=cfg.infos)
    venv.seed(seed)
    return VecMonitor(venv, info_keywords=("is_success",))
