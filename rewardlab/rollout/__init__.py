"""Vectorized rollout core: N MuJoCo worlds stepped together, batched rewards and metrics.

* :class:`~rewardlab.rollout.core.RolloutCore` -- the core (auto-reset, success metric,
  reward program) over a back-end chosen by :class:`~rewardlab.rollout.core.CoreConfig`:
  ``native`` (:mod:`rewardlab.rollout.native`, MuJoCo's C engine) or ``mjx``
  (:mod:`rewardlab.rollout.mjx`, JAX).
* :mod:`rewardlab.rollout.reward` -- one sandboxed reward call for all worlds where that
  computes what the program computes per world (over :mod:`rewardlab.rollout.batch` values, as
  written or lifted by :mod:`rewardlab.rollout.lift`), per world otherwise; every decision and
  fallback counted in the core's ``rollout_report()`` (``rewards/v<N>/rollout.json``).
* :func:`rewardlab.rollout.support.supports` -- which task runs on which training back-end.
* :class:`~rewardlab.rollout.sb3.CoreVecEnv` (stable-baselines3) and
  :class:`~rewardlab.rollout.gym_vector.CoreVectorEnv` (gymnasium) adapters.

Example:
    >>> import numpy as np
    >>> from rewardlab.tasks import get_task
    >>> core = RolloutCore(get_task("mujoco/hopper_forward"), CoreConfig(num_worlds=4))
    >>> core.reset(seed=0).shape
    (4, 11)
"""

from rewardlab.rollout.core import CoreConfig, RolloutCore, StepResult

__all__ = ["CoreConfig", "RolloutCore", "StepResult"]
