"""Batched compact representations: the card's proxies with array values, one entry per world.

:func:`build_batch_proxy` builds the same ``self`` tree as
:func:`rewardlab.tasks.proxies.build_env_proxy` (same names, same errors for names the card
does not define), but every scalar leaf is a fresh ``float64`` array of shape ``(N,)`` read from
the batch state when accessed. Vector leaves (``quaternion``) put the batch axis *last*
(``(4, N)``), so per-world indexing such as ``q[0]`` keeps its meaning over a batch. Values are
copies: reward code cannot write into the simulator state.

:func:`build_world_proxies` gives, for the per-world fallback, one ordinary scalar proxy per
world over row views of the same batch arrays (the very classes the gymnasium wrappers use).

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from rewardlab.tasks.cards import load_card
    >>> from rewardlab.rollout.spec import spec_for
    >>> spec = spec_for("Hopper-v5")
    >>> src = SimpleNamespace(qpos=np.tile(spec.init_qpos, (3, 1)), qvel=np.zeros((3, spec.nv)))
    >>> me = build_batch_proxy(load_card("mujoco/hopper"), spec.model, src, spec.dt)
    >>> me.hopper.top.position_z.tolist(), me.dt
    ([1.25, 1.25, 1.25], 0.008)
    >>> worlds = build_world_proxies(load_card("mujoco/hopper"), spec.model, src, spec.dt)
    >>> worlds[2].hopper.top.position_z
    1.25
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import mujoco
import numpy as np

from rewardlab.tasks.proxies import (
    FreeJoint,
    Group,
    HingeJoint,
    Proxy,
    SlideJoint,
    _joint_id,
    build_env_proxy,
    up_axis,
)


class BatchHingeJoint(Proxy):
    """A hinge over all worlds: ``angle`` and ``angular_velocity`` as ``(N,)`` arrays."""

    __slots__ = ("_src", "_qa", "_va")
    _fields = HingeJoint._fields

    def __init__(self, path: str, model: mujoco.MjModel, src: Any, joint: str) -> None:
        super().__init__(path)
        jid = _joint_id(model, joint)
        object.__setattr__(self, "_src", src)
        object.__setattr__(self, "_qa", int(model.jnt_qposadr[jid]))
        object.__setattr__(self, "_va", int(model.jnt_dofadr[jid]))

    @property
    def angle(self) -> np.ndarray:
        return self._src.qpos[:, self._qa].copy()

    @property
    def angular_velocity(self) -> np.ndarray:
        return self._src.qvel[:, self._va].copy()


class BatchSlideJoint(Proxy):
    """A planar x/z slide root over all worlds."""

    __slots__ = ("_src", "_qx", "_qz", "_vx", "_vz")
    _fields = SlideJoint._fields

    def __init__(self, path: str, model: mujoco.MjModel, src: Any, joints: list[str]) -> None:
        super().__init__(path)
        jx, jz = (_joint_id(model, j) for j in joints)
        object.__setattr__(self, "_src", src)
        object.__setattr__(self, "_qx", int(model.jnt_qposadr[jx]))
        object.__setattr__(self, "_qz", int(model.jnt_qposadr[jz]))
        object.__setattr__(self, "_vx", int(model.jnt_dofadr[jx]))
        object.__setattr__(self, "_vz", int(model.jnt_dofadr[jz]))

    @property
    def position_x(self) -> np.ndarray:
        return self._src.qpos[:, self._qx].copy()

    @property
    def position_z(self) -> np.ndarray:
        return self._src.qpos[:, self._qz].copy()

    @property
    def velocity_x(self) -> np.ndarray:
        return self._src.qvel[:, self._vx].copy()

    @property
    def velocity_z(self) -> np.ndarray:
        return self._src.qvel[:, self._vz].copy()


def rotate_by_quaternion(vec: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """Rotate ``vec (N, 3)`` by unit quaternions ``quat (N, 4)`` (w, x, y, z), batched
    ``mju_rotVecQuat``.

    Example:
        >>> q = np.array([[np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]])  # 90 deg about z
        >>> np.round(rotate_by_quaternion(np.array([[1.0, 0.0, 0.0]]), q), 6).tolist()
        [[0.0, 1.0, 0.0]]
    """
    w, u = quat[:, :1], quat[:, 1:]
    t = 2.0 * np.cross(u, vec)
    return vec + w * t + np.cross(u, t)


class BatchFreeJoint(Proxy):
    """A free-floating root over all worlds (world-frame quantities, as :class:`FreeJoint`)."""

    __slots__ = ("_src", "_q", "_v", "_up")
    _fields = FreeJoint._fields

    def __init__(
        self, path: str, model: mujoco.MjModel, src: Any, joint: str, body: str,
        up: tuple[float, float, float] | list[float] = (0.0, 0.0, 1.0),
    ) -> None:  # fmt: skip
        super().__init__(path)
        jid = _joint_id(model, joint)
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body) < 0:
            raise KeyError(f"body {body!r} not in model")
        object.__setattr__(self, "_src", src)
        object.__setattr__(self, "_q", int(model.jnt_qposadr[jid]))
        object.__setattr__(self, "_v", int(model.jnt_dofadr[jid]))
        object.__setattr__(self, "_up", up_axis(up))

    def _qp(self, k: int) -> np.ndarray:
        return self._src.qpos[:, self._q + k].copy()

    def _qv(self, k: int) -> np.ndarray:
        return self._src.qvel[:, self._v + k].copy()

    position_x = property(lambda self: self._qp(0))
    position_y = property(lambda self: self._qp(1))
    position_z = property(lambda self: self._qp(2))
    velocity_x = property(lambda self: self._qv(0))
    velocity_y = property(lambda self: self._qv(1))
    velocity_z = property(lambda self: self._qv(2))

    def _world_angular_velocity(self) -> np.ndarray:
        quat = self._src.qpos[:, self._q + 3 : self._q + 7]
        return rotate_by_quaternion(self._src.qvel[:, self._v + 3 : self._v + 6], quat)

    angular_velocity_x = property(lambda self: self._world_angular_velocity()[:, 0].copy())
    angular_velocity_y = property(lambda self: self._world_angular_velocity()[:, 1].copy())
    angular_velocity_z = property(lambda self: self._world_angular_velocity()[:, 2].copy())

    @property
    def quaternion(self) -> np.ndarray:
        """``(4, N)``: batch axis last, so ``quaternion[0]`` is every world's w."""
        return np.array(self._src.qpos[:, self._q + 3 : self._q + 7].T, dtype=np.float64)

    @property
    def up_z(self) -> np.ndarray:
        q = self._src.qpos[:, self._q + 3 : self._q + 7]
        w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
        norm = w * w + x * x + y * y + z * z
        ux, uy, uz = self._up
        with np.errstate(divide="ignore", invalid="ignore"):
            up = (
                2.0 * (x * z - w * y) * ux
                + 2.0 * (y * z + w * x) * uy
                + (w * w - x * x - y * y + z * z) * uz
            ) / norm
        return np.where(norm > 0, up, np.nan)


BATCH_PART_TYPES: dict[str, Callable[..., Proxy]] = {
    "HingeJoint": BatchHingeJoint,
    "SlideJoint": BatchSlideJoint,
    "FreeJoint": BatchFreeJoint,
}


def build_batch_proxy(card: Any, model: mujoco.MjModel, src: Any, dt: float) -> Group:
    """The batched ``self`` for ``card``: leaves read ``src.qpos (N, nq)`` / ``src.qvel (N, nv)``
    at every access (``src`` may swap its arrays between steps)."""
    if getattr(card, "attributes", None) or getattr(card, "robot_fields", dict)():
        raise NotImplementedError(f"card {card.name}: batched proxies cover robot parts only")
    robot_path = f"self.{card.robot}"
    parts: dict[str, Proxy] = {}
    for name, spec in card.parts.items():
        kind = BATCH_PART_TYPES[spec["type"]]
        kwargs = {k: v for k, v in spec.items() if k not in ("type", "doc")}
        parts[name] = kind(f"{robot_path}.{name}", model, src, **kwargs)
    return Group("self", {card.robot: Group(robot_path, parts), "dt": float(dt)})


def build_world_proxies(card: Any, model: mujoco.MjModel, src: Any, dt: float) -> list[Group]:
    """One scalar ``self`` per world over row views of ``src.qpos``/``src.qvel``.

    The rows are views: they follow in-place updates of the batch arrays, so build these once
    over buffers that are only ever written in place.
    """
    return [
        build_env_proxy(card, model, SimpleNamespace(qpos=src.qpos[i], qvel=src.qvel[i]), dt)
        for i in range(src.qpos.shape[0])
    ]


def snapshot_paths(me: Any, prefix: str = "self") -> dict[str, np.ndarray]:
    """Every leaf of a batched proxy by attribute path, e.g. ``{"self.hopper.top.position_x": (N,)}``."""
    out: dict[str, np.ndarray] = {}
    for name in me.fields():
        value = getattr(me, name)
        path = f"{prefix}.{name}"
        if isinstance(value, Proxy):
            out.update(snapshot_paths(value, path))
        elif isinstance(value, np.ndarray):
            out[path] = value
    return out
