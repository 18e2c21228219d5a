"""Executable compact representations: proxy objects read live from the simulator.

Reward programs receive ``self``: an :class:`EnvProxy` whose attributes are the ones an
environment card declares (``self.hopper.top.position_x``, ``self.ant.torso.velocity_x`` ...).
Every value is read from ``MjData`` when the attribute is accessed, so the same object stays
valid across steps and resets, and no reward source is ever rewritten.

Reading an attribute the card does not define raises :class:`AttributeError` naming the full
path and the attributes that do exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import mujoco
import numpy as np


class Proxy:
    """Base of all proxies: attributes are the card's names, misses get a precise error."""

    __slots__ = ("_path",)
    _fields: tuple[str, ...] = ()

    def __init__(self, path: str) -> None:
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: an attribute the card does not define.
        raise AttributeError(
            f"{self._path} has no attribute {name!r}; "
            f"the card defines: {', '.join(self.fields()) or '(nothing)'}"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._path} is read-only (tried to set {name!r})")

    def fields(self) -> tuple[str, ...]:
        """Names this proxy exposes to reward code."""
        return self._fields

    def snapshot(self) -> dict[str, Any]:
        """Current values of all fields (nested proxies become nested dicts)."""
        out: dict[str, Any] = {}
        for name in self.fields():
            value = getattr(self, name)
            out[name] = value.snapshot() if isinstance(value, Proxy) else value
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path}>"


def _joint_id(model: mujoco.MjModel, name: str) -> int:
    jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if jid < 0:
        raise KeyError(f"joint {name!r} not in model")
    return int(jid)


class _OneDofJoint(Proxy):
    """One hinge or slide joint: its coordinate and rate, read from ``MjData`` at every access."""

    __slots__ = ("_qpos", "_qvel", "_qa", "_va")

    def __init__(self, path: str, model: mujoco.MjModel, data: mujoco.MjData, joint: str) -> None:
        super().__init__(path)
        jid = _joint_id(model, joint)
        # MjData's arrays are fixed buffers: keep views, read them at every access.
        object.__setattr__(self, "_qpos", data.qpos)
        object.__setattr__(self, "_qvel", data.qvel)
        object.__setattr__(self, "_qa", int(model.jnt_qposadr[jid]))
        object.__setattr__(self, "_va", int(model.jnt_dofadr[jid]))


class HingeJoint(_OneDofJoint):
    """A hinge: ``angle`` (rad, unwrapped) and ``angular_velocity`` (rad/s)."""

    __slots__ = ()
    _fields = ("angle", "angular_velocity")

    @property
    def angle(self) -> float:
        return float(self._qpos[self._qa])

    @property
    def angular_velocity(self) -> float:
        return float(self._qvel[self._va])


class SlideJoint(Proxy):
    """A planar root made of an x slide and a z slide joint (Text2Reward's ``SlideJoint``)."""

    __slots__ = ("_qpos", "_qvel", "_qx", "_qz", "_vx", "_vz")
    _fields = ("position_x", "position_z", "velocity_x", "velocity_z")

    def __init__(
        self, path: str, model: mujoco.MjModel, data: mujoco.MjData, joints: list[str]
    ) -> None:
        super().__init__(path)
        jx, jz = (_joint_id(model, j) for j in joints)
        object.__setattr__(self, "_qpos", data.qpos)
        object.__setattr__(self, "_qvel", data.qvel)
        object.__setattr__(self, "_qx", int(model.jnt_qposadr[jx]))
        object.__setattr__(self, "_qz", int(model.jnt_qposadr[jz]))
        object.__setattr__(self, "_vx", int(model.jnt_dofadr[jx]))
        object.__setattr__(self, "_vz", int(model.jnt_dofadr[jz]))

    @property
    def position_x(self) -> float:
        return float(self._qpos[self._qx])

    @property
    def position_z(self) -> float:
        return float(self._qpos[self._qz])

    @property
    def velocity_x(self) -> float:
        return float(self._qvel[self._vx])

    @property
    def velocity_z(self) -> float:
        return float(self._qvel[self._vz])


class FreeJoint(Proxy):
    """A free-floating root (Text2Reward's ``FreeJoint``), world-frame quantities.

    ``quaternion`` (w, x, y, z) and ``up_z`` (z component of the body's up axis, 1 upright,
    -1 upside down) are rewardlab extensions beyond the published representation. The body's
    up axis is its local ``up`` (default +z); a card sets it where the model's body frame is
    not upright (HumanoidStandup's torso is modelled lying down: its head is along local -x).
    """

    __slots__ = ("_qpos", "_qvel", "_q", "_v", "_up")
    _fields = (
        "position_x", "position_y", "position_z",
        "velocity_x", "velocity_y", "velocity_z",
        "angular_velocity_x", "angular_velocity_y", "angular_velocity_z",
        "quaternion", "up_z",
    )  # fmt: skip

    def __init__(
        self, path: str, model: mujoco.MjModel, data: mujoco.MjData, joint: str, body: str,
        up: tuple[float, float, float] | list[float] = (0.0, 0.0, 1.0),
    ) -> None:  # fmt: skip
        super().__init__(path)
        jid = _joint_id(model, joint)
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
        if bid < 0:
            raise KeyError(f"body {body!r} not in model")
        object.__setattr__(self, "_qpos", data.qpos)
        object.__setattr__(self, "_qvel", data.qvel)
        object.__setattr__(self, "_q", int(model.jnt_qposadr[jid]))
        object.__setattr__(self, "_v", int(model.jnt_dofadr[jid]))
        object.__setattr__(self, "_up", up_axis(up))

    position_x = property(lambda self: float(self._qpos[self._q]))
    position_y = property(lambda self: float(self._qpos[self._q + 1]))
    position_z = property(lambda self: float(self._qpos[self._q + 2]))
    # A free joint's linear velocity is in the world frame, its angular velocity in the body
    # frame; rotate the latter to the world frame with the body's orientation matrix.
    velocity_x = property(lambda self: float(self._qvel[self._v]))
    velocity_y = property(lambda self: float(self._qvel[self._v + 1]))
    velocity_z = property(lambda self: float(self._qvel[self._v + 2]))

    def _world_angular_velocity(self) -> np.ndarray:
        # Rotate by the orientation in qpos (current), not data.xmat (computed before the
        # last integration step, so one physics sub-step old after env.step).
        result = np.empty(3)
        mujoco.mju_rotVecQuat(
            result, self._qvel[self._v + 3 : self._v + 6], self._qpos[self._q + 3 : self._q + 7]
        )
        return result

    angular_velocity_x = property(lambda self: float(self._world_angular_velocity()[0]))
    angular_velocity_y = property(lambda self: float(self._world_angular_velocity()[1]))
    angular_velocity_z = property(lambda self: float(self._world_angular_velocity()[2]))

    @property
    def quaternion(self) -> np.ndarray:
        return np.array(self._qpos[self._q + 3 : self._q + 7], dtype=np.float64)

    @property
    def up_z(self) -> float:
        w, x, y, z = self._qpos[self._q + 3 : self._q + 7]
        norm = w * w + x * x + y * y + z * z
        if not norm > 0:
            return math.nan
        ux, uy, uz = self._up  # z row of the rotation matrix, applied to the body's up axis
        return float(
            (
                2.0 * (x * z - w * y) * ux
                + 2.0 * (y * z + w * x) * uy
                + (w * w - x * x - y * y + z * z) * uz
            )
            / norm
        )


def up_axis(up: Any) -> tuple[float, float, float]:
    """A body's up axis from a card (``[x, y, z]`` in the body frame), as a unit vector."""
    axis = np.asarray(up, dtype=np.float64).reshape(3)
    length = float(np.linalg.norm(axis))
    if not length > 0:
        raise ValueError(f"up axis {up!r} has no direction")
    ux, uy, uz = (axis / length).tolist()
    return ux, uy, uz


class Slider(_OneDofJoint):
    """A single slide joint (a cart on a rail): ``position`` (m) and ``velocity`` (m/s)."""

    __slots__ = ()
    _fields = ("position", "velocity")

    @property
    def position(self) -> float:
        return float(self._qpos[self._qa])

    @property
    def velocity(self) -> float:
        return float(self._qvel[self._va])


PART_TYPES: dict[str, Callable[..., Proxy]] = {
    "Slider": Slider,
    "HingeJoint": HingeJoint,
    "SlideJoint": SlideJoint,
    "FreeJoint": FreeJoint,
}


class Group(Proxy):
    """A named collection of parts (the robot), or the environment itself."""

    __slots__ = ("_names", "__dict__")

    def __init__(self, path: str, members: dict[str, Any]) -> None:
        super().__init__(path)
        object.__setattr__(self, "_names", tuple(members))
        for name, value in members.items():
            object.__setattr__(self, name, value)

    def fields(self) -> tuple[str, ...]:
        return self._names


EnvProxy = Group
"""The ``self`` that reward programs see: the robot under its card name, plus ``dt``."""


class SuccessRecorder(Protocol):
    """What :class:`BenchmarkEnvProxy` reads the benchmark's own success flag from."""

    success: bool


class BenchmarkEnvProxy(Group):
    """The ``self`` of manipulation reward programs (MetaWorld, ManiSkill): the robot and
    objects as proxy members, plain values of the card (``goal_position``) read from the env at
    every access, and ``dt``.

    ``benchmark_success`` (the benchmark's flag after the last step, from ``recorder``) is for
    the task's success metric only: it is not a card attribute, so the reward check rejects
    programs that read it.
    """

    __slots__ = ("_values", "_recorder")

    def __init__(
        self,
        members: dict[str, Any],
        values: dict[str, Callable[[], Any]],
        recorder: SuccessRecorder,
    ) -> None:
        super().__init__("self", members)
        object.__setattr__(self, "_names", (*members, *values))
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_recorder", recorder)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a live value, or a name the card lacks.
        reader = self._values.get(name)
        if reader is not None:
            return reader()
        return super().__getattr__(name)

    @property
    def benchmark_success(self) -> bool:
        return bool(self._recorder.success)


W = TypeVar("W")


def find_wrapper(env: Any, kind: type[W], how: str) -> W:
    """The ``kind`` layer inside ``env``'s wrapper stack; a :class:`TypeError` saying ``how``
    such envs are made when there is none."""
    layer = env
    while not isinstance(layer, kind):
        if not hasattr(layer, "env"):
            raise TypeError(f"{env} has no {kind.__name__} layer: {how}")
        layer = layer.env
    return layer


def build_env_proxy(card: Any, model: mujoco.MjModel, data: mujoco.MjData, dt: float) -> Group:
    """Build the ``self`` proxy for ``card`` over a live ``(model, data)`` pair.

    Example:
        >>> import gymnasium as gym
        >>> from rewardlab.tasks.cards import load_card
        >>> env = gym.make("Hopper-v5"); _ = env.reset(seed=0)
        >>> me = build_env_proxy(load_card("mujoco/hopper"), env.unwrapped.model,
        ...                      env.unwrapped.data, env.unwrapped.dt)
        >>> round(me.hopper.top.position_z, 1), me.dt
        (1.2, 0.008)
    """
    robot_path = f"self.{card.robot}"
    parts: dict[str, Proxy] = {}
    for name, spec in card.parts.items():
        kind = PART_TYPES[spec["type"]]
        kwargs = {k: v for k, v in spec.items() if k not in ("type", "doc")}
        parts[name] = kind(f"{robot_path}.{name}", model, data, **kwargs)
    robot = Group(robot_path, parts)
    return Group("self", {card.robot: robot, "dt": float(dt)})


def mujoco_env_proxy(env: Any, card: Any) -> Group:
    """Proxy builder of the gymnasium MuJoCo benchmark: read the env's ``MjData``."""
    base = env.unwrapped
    return build_env_proxy(card, base.model, base.data, float(base.dt))


PROXY_BUILDERS: dict[str, Callable[[Any, Any], Group]] = {"mujoco": mujoco_env_proxy}
"""How each benchmark (the card's folder under ``envs/``) builds the ``self`` proxy of a live
env. A new benchmark registers its builder here; nothing else dispatches on benchmarks."""

# Benchmarks whose proxies need more than MjData add their builders (and gymnasium ids) to
# PROXY_BUILDERS when imported; metaworld and mani_skill themselves are imported only when such
# an env is made.
import rewardlab.tasks.maniskill  # noqa: E402, F401
import rewardlab.tasks.metaworld  # noqa: E402, F401
