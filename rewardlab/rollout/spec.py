"""What a batched core must reproduce of a gymnasium v5 MuJoCo locomotion env, as pure functions.

:class:`LocomotionSpec` is read once from a real gymnasium env (so every ``env_kwargs`` of a
task, ``xml_file`` included, is honoured), and the functions below are the env's own
semantics written over arrays with a leading batch dimension ``N``:

* :func:`observe` -- ``_get_obs`` (``exclude_current_positions_from_observation``, the
  ``[-10, 10]`` velocity clip of Hopper/Walker2d, Ant's clipped ``cfrc_ext[1:]``);
* :func:`healthy` -- ``is_healthy`` (strict ranges for Hopper/Walker2d, inclusive z range and
  finiteness for Ant); termination is ``~healthy`` when ``terminate_when_unhealthy``;
* :func:`env_reward` -- the benchmark's own reward (``info["reward/env"]``);
* :func:`sample_initial` -- ``reset_model``'s noise, drawn from per-world generators with the
  very calls gymnasium makes, so world ``i`` seeded ``s + i`` starts where
  ``env.reset(seed=s + i)`` starts.

Example:
    >>> import numpy as np
    >>> spec = spec_for("Hopper-v5")
    >>> spec.family, spec.frame_skip, spec.obs_dim, spec.clip_qvel
    ('hopper', 4, 11, 10.0)
    >>> qpos = np.tile(spec.init_qpos, (2, 1)); qvel = np.zeros((2, spec.nv))
    >>> observe(spec, qpos, qvel).shape, healthy(spec, qpos, qvel).tolist()
    ((2, 11), [True, True])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

FAMILIES = {
    "HopperEnv": "hopper",
    "Walker2dEnv": "walker2d",
    "HalfCheetahEnv": "halfcheetah",
    "AntEnv": "ant",
}
"""gymnasium env classes the batched core reproduces, by the family name used here."""


@dataclass(frozen=True, eq=False)
class LocomotionSpec:
    """Everything the batched core needs to reproduce one gymnasium v5 MuJoCo env."""

    env_id: str
    family: str
    model: mujoco.MjModel
    frame_skip: int
    dt: float
    init_qpos: np.ndarray
    init_qvel: np.ndarray
    reset_noise_scale: float
    qvel_noise: str
    """``"uniform"`` (Hopper, Walker2d) or ``"normal"`` (HalfCheetah, Ant)."""
    obs_skip: int
    """Leading ``qpos`` entries left out of the observation (0, 1 or 2)."""
    clip_qvel: float | None
    cfrc_ext: bool
    """Ant: clipped ``cfrc_ext[1:]`` appended to the observation."""
    contact_force_range: tuple[float, float]
    terminate_when_unhealthy: bool
    healthy_z_range: tuple[float, float]
    healthy_angle_range: tuple[float, float]
    healthy_state_range: tuple[float, float]
    forward_reward_weight: float
    ctrl_cost_weight: float
    healthy_reward: float
    contact_cost_weight: float
    main_body: int
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box

    @property
    def nq(self) -> int:
        return int(self.model.nq)

    @property
    def nv(self) -> int:
        return int(self.model.nv)

    @property
    def nu(self) -> int:
        return int(self.model.nu)

    @property
    def obs_dim(self) -> int:
        return int(self.observation_space.shape[0])

    @property
    def needs_contact_forces(self) -> bool:
        """Whether observation or env reward read ``cfrc_ext`` (needs ``mj_rnePostConstraint``)."""
        return self.family == "ant"


def spec_from_env(env: gym.Env) -> LocomotionSpec:
    """Read a :class:`LocomotionSpec` from a (wrapped) gymnasium v5 MuJoCo env."""
    base: Any = env.unwrapped
    family = FAMILIES.get(type(base).__name__)
    if family is None:
        raise NotImplementedError(
            f"the batched core reproduces {sorted(FAMILIES)}; {type(base).__name__} is not supported"
        )
    if base.model.na:
        raise NotImplementedError("models with actuator activations (na > 0) are not supported")
    inf = float("inf")
    main = getattr(base, "_main_body", 1)
    if isinstance(main, str):
        main = mujoco.mj_name2id(base.model, mujoco.mjtObj.mjOBJ_BODY, main)
    return LocomotionSpec(
        env_id=env.spec.id if env.spec is not None else type(base).__name__,
        family=family,
        model=base.model,
        frame_skip=int(base.frame_skip),
        dt=float(base.dt),
        init_qpos=np.array(base.init_qpos, dtype=np.float64),
        init_qvel=np.array(base.init_qvel, dtype=np.float64),
        reset_noise_scale=float(base._reset_noise_scale),
        qvel_noise="uniform" if family in ("hopper", "walker2d") else "normal",
        obs_skip=(2 if family == "ant" else 1)
        if base._exclude_current_positions_from_observation
        else 0,
        clip_qvel=10.0 if family in ("hopper", "walker2d") else None,
        cfrc_ext=bool(getattr(base, "_include_cfrc_ext_in_observation", False)),
        contact_force_range=tuple(getattr(base, "_contact_force_range", (-1.0, 1.0))),
        terminate_when_unhealthy=bool(getattr(base, "_terminate_when_unhealthy", False)),
        healthy_z_range=tuple(getattr(base, "_healthy_z_range", (-inf, inf))),
        healthy_angle_range=tuple(getattr(base, "_healthy_angle_range", (-inf, inf))),
        healthy_state_range=tuple(getattr(base, "_healthy_state_range", (-inf, inf))),
        forward_reward_weight=float(base._forward_reward_weight),
        ctrl_cost_weight=float(base._ctrl_cost_weight),
        healthy_reward=float(getattr(base, "_healthy_reward", 0.0)),
        contact_cost_weight=float(getattr(base, "_contact_cost_weight", 0.0)),
        main_body=int(main),
        observation_space=env.observation_space,  # type: ignore[arg-type]
        action_space=env.action_space,  # type: ignore[arg-type]
    )


def _frozen(kwargs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


@cache
def _spec_cached(env_id: str, kwargs: tuple[tuple[str, Any], ...]) -> LocomotionSpec:
    env = gym.make(env_id, **dict(kwargs))
    try:
        return spec_from_env(env)
    finally:
        env.close()


def spec_for(env_id: str, **env_kwargs: Any) -> LocomotionSpec:
    """The (cached) spec of ``gymnasium.make(env_id, **env_kwargs)``."""
    return _spec_cached(env_id, _frozen(env_kwargs))


# --------------------------------------------------------------------------- pure functions


def observe(
    spec: LocomotionSpec,
    qpos: np.ndarray,
    qvel: np.ndarray,
    cfrc_ext: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Batched ``_get_obs``: ``(N, obs_dim)`` float64 from ``qpos (N, nq)``, ``qvel (N, nv)``
    (and Ant's ``cfrc_ext (N, nbody, 6)``)."""
    n = qpos.shape[0]
    if out is None:
        out = np.empty((n, spec.obs_dim), dtype=np.float64)
    npos = spec.nq - spec.obs_skip
    out[:, :npos] = qpos[:, spec.obs_skip :]
    if spec.clip_qvel is not None:
        np.clip(qvel, -spec.clip_qvel, spec.clip_qvel, out=out[:, npos : npos + spec.nv])
    else:
        out[:, npos : npos + spec.nv] = qvel
    if spec.cfrc_ext:
        if cfrc_ext is None:
            raise ValueError(f"{spec.env_id}: the observation needs cfrc_ext")
        lo, hi = spec.contact_force_range
        np.clip(cfrc_ext[:, 1:].reshape(n, -1), lo, hi, out=out[:, npos + spec.nv :])
    return out


def healthy(spec: LocomotionSpec, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Batched ``is_healthy`` as a bool array ``(N,)`` (all True for HalfCheetah)."""
    n = qpos.shape[0]
    if spec.family == "halfcheetah":
        return np.ones(n, dtype=bool)
    if spec.family == "ant":
        lo, hi = spec.healthy_z_range
        finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
        return finite & (lo <= qpos[:, 2]) & (qpos[:, 2] <= hi)
    z, angle = qpos[:, 1], qpos[:, 2]
    zlo, zhi = spec.healthy_z_range
    alo, ahi = spec.healthy_angle_range
    ok = (zlo < z) & (z < zhi) & (alo < angle) & (angle < ahi)
    if spec.family == "hopper":
        slo, shi = spec.healthy_state_range
        state = np.concatenate([qpos[:, 2:], qvel], axis=1)  # state_vector()[2:]
        ok &= ((slo < state) & (state < shi)).all(axis=1)
    return ok


def forward_position(
    spec: LocomotionSpec, qpos: np.ndarray, main_xpos: np.ndarray | None
) -> np.ndarray:
    """The x coordinate whose change per ``dt`` is the forward velocity of the env reward.

    Hopper/Walker2d/HalfCheetah read ``qpos[0]``; Ant reads the main body's ``xpos`` (from
    the last kinematics pass, one physics sub-step behind ``qpos``, as gymnasium does).
    """
    if spec.family == "ant":
        if main_xpos is None:
            raise ValueError("Ant's forward velocity needs the main body's xpos")
        return main_xpos[:, 0].copy()
    return qpos[:, 0].copy()


def env_reward(
    spec: LocomotionSpec,
    x_before: np.ndarray,
    x_after: np.ndarray,
    action: np.ndarray,
    is_healthy: np.ndarray,
    cfrc_ext: np.ndarray | None = None,
) -> np.ndarray:
    """The benchmark's own reward, batched (``forward + healthy - ctrl - contact``)."""
    act = np.asarray(action)  # in the action's own dtype, as gymnasium's control_cost
    reward = spec.forward_reward_weight * ((x_after - x_before) / spec.dt)
    reward = reward - spec.ctrl_cost_weight * np.sum(np.square(act), axis=1)
    if spec.family != "halfcheetah":
        reward = reward + is_healthy * spec.healthy_reward
    if spec.family == "ant" and cfrc_ext is not None:
        lo, hi = spec.contact_force_range
        forces = np.clip(cfrc_ext, lo, hi).reshape(len(reward), -1)
        reward = reward - spec.contact_cost_weight * np.sum(np.square(forces), axis=1)
    return reward


def sample_initial(
    spec: LocomotionSpec, rngs: Sequence[np.random.Generator]
) -> tuple[np.ndarray, np.ndarray]:
    """``reset_model``'s noisy initial ``(qpos, qvel)``, one row per generator.

    Each row makes exactly gymnasium's draws (``uniform`` for qpos, then ``uniform`` or
    ``standard_normal`` for qvel) on its own generator.
    """
    s = spec.reset_noise_scale
    qpos = np.empty((len(rngs), spec.nq))
    qvel = np.empty((len(rngs), spec.nv))
    for row, rng in enumerate(rngs):
        qpos[row] = spec.init_qpos + rng.uniform(low=-s, high=s, size=spec.nq)
        if spec.qvel_noise == "uniform":
            qvel[row] = spec.init_qvel + rng.uniform(low=-s, high=s, size=spec.nv)
        else:
            qvel[row] = spec.init_qvel + s * rng.standard_normal(spec.nv)
    return qpos, qvel
