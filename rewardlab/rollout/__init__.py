"""Vectorized rollout core: N MuJoCo worlds stepped together, batched rewards and metrics.

* :class:`~rewardlab.rollout.core.RolloutCore` -- the core (auto-reset, success metric,
  reward program) over a back-end chosen by :class:`~rewardlab.rollout.core.CoreConfig`:
  ``native`` (:mod:`rewardlab.rollout.native`, MuJoCo's C engine) or ``mjx``
  (:mod:`rewardlab.rollout.mjx`, JAX).
* :mod:`rewardlab.rollout.reward` -- one sandboxed reward call for all worlds when the program
  allows it (as written, or lifted by :mod:`rewardlab.rollout.lift`), per world otherwise.
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
