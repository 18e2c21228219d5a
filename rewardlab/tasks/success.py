"""Task success metrics, computed from simulator state only (never from a generated reward).

Every metric is written **once, over arrays**: it follows ``n`` worlds at once, with an
``(n,)`` array for each of its fields. The gymnasium wrapper
(:class:`rewardlab.wrappers.TaskSuccess`) runs it with ``n = 1``; the rollout core
(:mod:`rewardlab.rollout.core`) with one entry per world. The protocol:

- ``reset(inputs, mask)`` starts the episodes of the worlds in ``mask`` (``(n,)`` bools);
- ``update(inputs)`` follows one environment step in every world;
- ``success`` (``(n,)`` bools: reached so far in the episode; read at the episode's end for the
  verdict) and ``progress`` (``(n,)`` floats in [0, 1], for curves).

``inputs`` is a :class:`SuccessInputs`: the card's proxy (scalar or batched, read by attribute
path: ``"hopper.top_joint.angle"``) plus, for MuJoCo tasks, the model and the ``(n, nq)``
joint positions, from which :meth:`SuccessInputs.clearance` computes how far each of the robot's
geoms is above the floor (forward kinematics of the current state; a geom whose lowest point is
within :data:`TOUCH` of the floor touches it). Metrics use it so that the obvious cheats fail:

- locomotion (:class:`Displacement`): a fall anywhere in the episode fails it (tilt, height,
  or any part but the allowed ones touching the ground), so a dive that ends on the ground, a
  knee-walk or a roll does not count;
- flips (:class:`Flip`): the full turn must happen with nothing but the feet touching the
  ground (so the body is in the air through the rotation), then a landing on the feet, upright
  and high, held; a roll over the ground restarts the count at every touch;
- jumps (:class:`Jump`): the whole body clear of the floor, with the root above a height over
  its standing height; standing on tiptoe is not a jump;
- stand up / lie down (:class:`HoldHeight`): the height band held for consecutive steps,
  upright, touching the ground only with the allowed parts (a kneeling or sitting humanoid
  does not stand);
- waving a limb (:class:`Oscillate`): swings of the limb's joint counted only while the limb is
  off the ground and the body upright and near its start; walking does not wave.

Parameters name the quantities to read by path, so one metric serves many robots; tasks pick a
metric by name in ``envs/<benchmark>/tasks.yaml``. :func:`describe_success` says in one line what
a task's metric measures; :func:`success_choices` lists the metrics registered for a card (what
``task.success=<name>`` may pick), and :class:`rewardlab.reward.expression.Expression` runs a vetted success expression over
the card's attributes, like reward code.

Example:
    >>> from types import SimpleNamespace as NS
    >>> m = make_metric("hold_height", {"height": "r.z", "max_height": 0.3, "hold_steps": 2}, n=2)
    >>> inputs = SuccessInputs(NS(r=NS(z=np.array([0.2, 0.5]))), n=2)
    >>> m.reset(inputs, np.array([True, True])); m.update(inputs); m.update(inputs)
    >>> m.success.tolist(), m.progress.tolist()
    ([True, False], [1.0, 0.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rewardlab.tasks.registry import SuccessSpec, TaskSpec

TOUCH = 0.005
"""A geom whose lowest point is closer than this to the floor (metres) touches the ground."""


def read_path(me: Any, path: str) -> float:
    """Read a dotted attribute path (``"hopper.top.position_x"``) from a scalar env proxy."""
    value = me
    for part in path.split("."):
        value = getattr(value, part)
    return float(value)


def wrap_angle(angle: Any) -> Any:
    """Wrap angles (a float or an array) to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


# --------------------------------------------------------------------------- inputs


class GroundGeometry:
    """Height of each geom's lowest point above the floor, from joint positions.

    The floor is the model's (horizontal) plane geom; the robot is every other geom. For each
    world the current ``qpos`` is put into a scratch ``MjData`` and ``mj_kinematics`` places the
    geoms; the lowest point is exact for spheres, capsules, cylinders, boxes and ellipsoids
    (other shapes use their bounding sphere).
    """

    def __init__(self, model: Any) -> None:
        import mujoco

        self.model = model
        self.data = mujoco.MjData(model)
        self._kinematics = mujoco.mj_kinematics
        plane = int(mujoco.mjtGeom.mjGEOM_PLANE)
        planes = [i for i in range(model.ngeom) if model.geom_type[i] == plane]
        if not planes:
            raise ValueError("the model has no floor plane: ground contact is undefined")
        self.floor = float(max(model.geom_pos[i][2] for i in planes))
        self.robot = tuple(i for i in range(model.ngeom) if model.geom_type[i] != plane)
        self.names = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, i): i for i in self.robot}
        self._type = model.geom_type[list(self.robot)].astype(int)
        self._size = model.geom_size[list(self.robot)].astype(np.float64)
        self._rbound = model.geom_rbound[list(self.robot)].astype(np.float64)
        self._mj = mujoco.mjtGeom

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Column indices (into :meth:`clearance`'s result) of the geoms called ``names``."""
        index = {gid: col for col, gid in enumerate(self.robot)}
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(
                f"no geom {missing} in the model; its geoms: {', '.join(sorted(filter(None, self.names)))}"
            )
        return np.array([index[self.names[n]] for n in names], dtype=np.int64)

    def clearance(self, qpos: np.ndarray) -> np.ndarray:
        """``(n, robot geoms)``: each geom's lowest point above the floor, for ``qpos (n, nq)``."""
        n, m = qpos.shape[0], self.model
        xpos, xmat = np.empty((n, m.ngeom, 3)), np.empty((n, m.ngeom, 9))
        d, kinematics, target = self.data, self._kinematics, self.data.qpos
        for i in range(n):
            target[:] = qpos[i]
            kinematics(m, d)
            xpos[i] = d.geom_xpos
            xmat[i] = d.geom_xmat
        rows = list(self.robot)
        centre = xpos[:, rows, 2]
        axes = xmat[:, rows, 6:9]  # z row of each rotation: world z of each local axis
        size, kind, mj = self._size, self._type, self._mj
        az = np.abs(axes)  # |cos| of each local axis with the world vertical
        extent = self._rbound[None, :].repeat(n, 0)
        sphere = kind == int(mj.mjGEOM_SPHERE)
        extent[:, sphere] = size[sphere, 0]
        capsule = kind == int(mj.mjGEOM_CAPSULE)
        extent[:, capsule] = size[capsule, 1] * az[:, capsule, 2] + size[capsule, 0]
        cylinder = kind == int(mj.mjGEOM_CYLINDER)
        sin = np.sqrt(np.clip(1.0 - az[:, cylinder, 2] ** 2, 0.0, 1.0))
        extent[:, cylinder] = size[cylinder, 1] * az[:, cylinder, 2] + size[cylinder, 0] * sin
        box = kind == int(mj.mjGEOM_BOX)
        extent[:, box] = np.sum(size[None, box, :] * az[:, box, :], axis=2)
        ellipsoid = kind == int(mj.mjGEOM_ELLIPSOID)
        extent[:, ellipsoid] = np.sqrt(
            np.sum((size[None, ellipsoid, :] * axes[:, ellipsoid, :]) ** 2, axis=2)
        )
        return centre - extent - self.floor


class SuccessInputs:
    """What a metric reads for ``n`` worlds at once.

    Args:
        me: the card's proxy: scalar (one world) or batched (every leaf an ``(n,)`` array).
        n: the number of worlds.
        model: the MuJoCo model (``None`` for benchmarks without one: no ground contact).
        qpos: ``(n, nq)`` joint positions, read at every :meth:`clearance` call (a live buffer).
        worlds: one scalar proxy per world (for :class:`~rewardlab.reward.expression.Expression`); default ``[me]`` when
            ``n == 1``.
        task: the task, for :class:`~rewardlab.reward.expression.Expression` (its card's attribute check).
    """

    def __init__(
        self, me: Any, n: int, *, model: Any = None, qpos: np.ndarray | None = None,
        worlds: Sequence[Any] | None = None, task: TaskSpec | None = None,
    ) -> None:  # fmt: skip
        self.me, self.n, self.model, self.qpos = me, int(n), model, qpos
        self.worlds = list(worlds) if worlds is not None else ([me] if n == 1 else [])
        self.task = task
        self._ground: GroundGeometry | None = None

    @classmethod
    def for_env(cls, env: Any, me: Any, task: TaskSpec | None = None) -> SuccessInputs:
        """One world of a gymnasium env (its MuJoCo model and data, when it has them)."""
        base = env.unwrapped
        data = getattr(base, "data", None)
        model = getattr(base, "model", None)
        qpos = None
        if (
            data is not None
            and hasattr(data, "qpos")
            and model is not None
            and hasattr(model, "ngeom")
        ):
            qpos = np.asarray(data.qpos).reshape(1, -1)  # a view: follows the simulator
        else:
            model = None
        return cls(me, 1, model=model, qpos=qpos, task=task)

    def read(self, path: str) -> np.ndarray:
        """The value at ``path`` in every world, as ``(n,)`` float64."""
        value = self.me
        for part in path.split("."):
            value = getattr(value, part)
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (self.n,))

    @property
    def ground(self) -> GroundGeometry:
        if self._ground is None:
            if self.model is None or self.qpos is None:
                raise ValueError(
                    "this metric needs ground contact, which only MuJoCo tasks provide"
                )
            self._ground = GroundGeometry(self.model)
        return self._ground

    def clearance(self) -> np.ndarray:
        """``(n, robot geoms)`` heights of each geom's lowest point above the floor."""
        assert self.qpos is not None
        return self.ground.clearance(np.asarray(self.qpos).reshape(self.n, -1))


class Contacts:
    """Which of the robot's geoms may touch the ground (``allowed``, by geom name), resolved
    against the model on first use."""

    def __init__(self, allowed: Sequence[str] | None) -> None:
        self.allowed = tuple(allowed or ())
        self._cols: tuple[np.ndarray, np.ndarray] | None = None

    def split(self, inputs: SuccessInputs, clearance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(allowed parts touch, any other part touches)`` per world."""
        if self._cols is None:
            cols = inputs.ground.columns(self.allowed)
            other = np.setdiff1d(np.arange(clearance.shape[1]), cols)
            self._cols = (cols, other)
        cols, other = self._cols
        touching = clearance < TOUCH
        return np.any(touching[:, cols], axis=1), np.any(touching[:, other], axis=1)


def _all(n: int, value: bool = False) -> np.ndarray:
    return np.full(n, value, dtype=bool)


# --------------------------------------------------------------------------- metrics


class Metric:
    """Base of the success metrics: ``(n,)`` ``success`` and ``progress``; see the module doc."""

    n: int
    success: np.ndarray

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        raise NotImplementedError

    def update(self, inputs: SuccessInputs) -> None:
        raise NotImplementedError

    @property
    def progress(self) -> np.ndarray:
        return self.success.astype(np.float64)


class Displacement(Metric):
    """Travel at least ``distance`` metres along ``position`` (signed: negative = backward)
    without falling.

    Falling (latched for the rest of the episode) is the ``upright`` angle leaving
    ``max_tilt`` of upright, the ``up`` axis z component dropping below ``min_up``, ``height``
    dropping below ``min_height``, a non-finite position, or, with ``allowed_contacts`` (geom
    names, e.g. the feet), any other part of the robot touching the ground. A fall anywhere in
    the episode fails it: a lunge or a dive that ends on the ground is not locomotion.
    """

    def __init__(
        self, n: int, position: str, distance: float, upright: str | None = None,
        max_tilt: float = math.pi, up: str | None = None, min_up: float = -1.0,
        height: str | None = None, min_height: float = -math.inf,
        allowed_contacts: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        self.n, self.position, self.distance = n, position, float(distance)
        self.upright, self.max_tilt, self.up, self.min_up = (
            upright,
            float(max_tilt),
            up,
            float(min_up),
        )
        self.height, self.min_height = height, float(min_height)
        self.contacts = Contacts(allowed_contacts) if allowed_contacts is not None else None
        self.start, self.best = np.zeros(n), np.zeros(n)
        self.fallen, self.success = _all(n), _all(n)

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        self.start[mask] = inputs.read(self.position)[mask]
        self.best[mask] = 0.0
        self.fallen[mask] = self.success[mask] = False

    def update(self, inputs: SuccessInputs) -> None:
        position = inputs.read(self.position)
        fell = ~np.isfinite(position)
        if self.upright is not None:
            fell |= ~(np.abs(wrap_angle(inputs.read(self.upright))) <= self.max_tilt)
        if self.up is not None:
            fell |= ~(inputs.read(self.up) >= self.min_up)
        if self.height is not None:
            fell |= ~(inputs.read(self.height) >= self.min_height)
        if self.contacts is not None:
            fell |= self.contacts.split(inputs, inputs.clearance())[1]
        self.fallen |= fell
        travelled = (position - self.start) * math.copysign(1.0, self.distance)
        self.best = np.where(
            self.fallen, self.best, np.maximum(self.best, np.nan_to_num(travelled, nan=0.0))
        )
        self.success = ~self.fallen & (self.best >= abs(self.distance))

    @property
    def progress(self) -> np.ndarray:
        return np.clip(self.best / abs(self.distance), 0.0, 1.0)


class Flip(Metric):
    """A full airborne rotation of ``angle`` (unwrapped pitch) in ``direction``, then a landing.

    The rotation counts from the last step at which any part other than the ``feet`` (geom
    names) touched the ground: a roll over the ground restarts it at every touch, so the body
    must be in the air through the turn. Once the pitch has changed by ``turns * 2*pi`` in
    ``direction`` (+1 forward, -1 backward), the flip succeeds when the robot stands on its feet
    (a foot touches, nothing else does), within ``tolerance`` of upright and with ``height`` at
    least ``min_height``, for ``hold_steps`` consecutive steps; any other part touching the
    ground before that fails the attempt (a crash is not a landing) and the count restarts.
    """

    def __init__(
        self, n: int, angle: str, direction: int, height: str, min_height: float,
        feet: Sequence[str], turns: float = 1.0, tolerance: float = 0.6, hold_steps: int = 10,
    ) -> None:  # fmt: skip
        self.n, self.angle, self.direction = n, angle, int(direction)
        self.height, self.min_height = height, float(min_height)
        self.contacts = Contacts(feet)
        self.turns, self.tolerance, self.hold_steps = (
            float(turns),
            float(tolerance),
            int(hold_steps),
        )
        self.start, self.rotated = np.zeros(n), np.zeros(n)
        self.turned, self.success = _all(n), _all(n)
        self.held = np.zeros(n, dtype=np.int64)

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        self.start[mask] = inputs.read(self.angle)[mask]
        self.rotated[mask], self.held[mask] = 0.0, 0
        self.turned[mask] = self.success[mask] = False

    def update(self, inputs: SuccessInputs) -> None:
        angle = inputs.read(self.angle)
        feet, body = self.contacts.split(inputs, inputs.clearance())
        restart = body & ~self.success  # anything but a foot on the ground: start again from here
        self.start = np.where(restart, angle, self.start)
        self.rotated = np.where(restart, 0.0, self.rotated)
        self.turned &= ~restart
        self.held = np.where(restart, 0, self.held)
        live = ~self.turned & ~self.success
        turn = np.nan_to_num((angle - self.start) * self.direction, nan=0.0)
        self.rotated = np.where(live, np.maximum(self.rotated, turn), self.rotated)
        self.turned |= self.rotated >= self.turns * 2 * math.pi
        standing = (
            self.turned & feet & ~body
            & (np.abs(wrap_angle(angle)) < self.tolerance)
            & (inputs.read(self.height) >= self.min_height)
        )  # fmt: skip
        self.held = np.where(standing, self.held + 1, 0)
        self.success |= standing & (self.held >= self.hold_steps)

    @property
    def progress(self) -> np.ndarray:
        full = self.turns * 2 * math.pi
        held = np.where(self.success, 1.0, np.minimum(1.0, self.held / self.hold_steps))
        rotated = np.where(self.turned | self.success, 1.0, self.rotated / full)
        return np.clip(0.9 * rotated + 0.1 * held, 0.0, 1.0)


class Jump(Metric):
    """Jump in place: ``jumps`` separate flights, each with the whole robot at least
    ``clearance`` metres above the floor and ``height`` (the root) at least ``min_height``
    (above its standing height), staying within ``max_drift`` metres of the start along
    ``position`` and within ``max_tilt`` of upright (leaving either fails the episode)."""

    def __init__(
        self, n: int, height: str, min_height: float, position: str, max_drift: float,
        upright: str, max_tilt: float = 0.7, jumps: int = 2, clearance: float = 0.05,
    ) -> None:  # fmt: skip
        self.n, self.height, self.min_height = n, height, float(min_height)
        self.position, self.max_drift, self.upright = position, float(max_drift), upright
        self.max_tilt, self.jumps, self.min_clearance = (
            float(max_tilt),
            int(jumps),
            float(clearance),
        )
        self.start, self.count = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.airborne, self.failed, self.success = _all(n), _all(n), _all(n)

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        self.start[mask] = inputs.read(self.position)[mask]
        self.count[mask] = 0
        self.airborne[mask] = self.failed[mask] = self.success[mask] = False

    def update(self, inputs: SuccessInputs) -> None:
        drift = np.abs(inputs.read(self.position) - self.start)
        tilt = np.abs(wrap_angle(inputs.read(self.upright)))
        self.failed |= ~(drift <= self.max_drift) | ~(tilt <= self.max_tilt)
        live = ~self.failed
        high = (inputs.read(self.height) >= self.min_height) & (
            inputs.clearance().min(axis=1) >= self.min_clearance
        )
        self.count += live & high & ~self.airborne
        self.airborne = np.where(live, high, self.airborne)
        self.success |= live & (self.count >= self.jumps)

    @property
    def progress(self) -> np.ndarray:
        return np.minimum(1.0, self.count / self.jumps)


class HoldHeight(Metric):
    """Keep ``height`` below ``max_height`` (lie down) or above ``min_height`` (stand up) for
    ``hold_steps`` consecutive steps, with ``up`` (an up-axis z component) at least ``min_up``
    and, with ``allowed_contacts`` (geom names, e.g. the feet), no other part of the robot
    touching the ground."""

    def __init__(
        self, n: int, height: str, hold_steps: int, max_height: float = math.inf,
        min_height: float = -math.inf, up: str | None = None, min_up: float = -1.0,
        allowed_contacts: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        self.n, self.height, self.hold_steps = n, height, int(hold_steps)
        self.max_height, self.min_height, self.up, self.min_up = (
            float(max_height),
            float(min_height),
            up,
            float(min_up),
        )
        self.contacts = Contacts(allowed_contacts) if allowed_contacts is not None else None
        self.held, self.best = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.success = _all(n)

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        self.held[mask] = self.best[mask] = 0
        self.success[mask] = False

    def update(self, inputs: SuccessInputs) -> None:
        h = inputs.read(self.height)
        ok = (self.min_height <= h) & (h <= self.max_height)
        if self.up is not None:
            ok &= inputs.read(self.up) >= self.min_up
        if self.contacts is not None:
            ok &= ~self.contacts.split(inputs, inputs.clearance())[1]
        self.held = np.where(ok, self.held + 1, 0)
        self.best = np.maximum(self.best, self.held)
        self.success |= self.held >= self.hold_steps

    @property
    def progress(self) -> np.ndarray:
        return np.minimum(1.0, self.best / self.hold_steps)


class Oscillate(Metric):
    """Wave a limb: ``angle`` swings back and forth with peak-to-peak amplitude at least
    ``amplitude``, ``swings`` times (each reversal after a full amplitude counts one), all while
    the limb (``lifted``: geom names) is at least ``lift`` metres off the ground, ``up`` (an
    up-axis z component) is at least ``min_up`` and the root (``drift``: attribute paths of its
    horizontal position) stays within ``max_drift`` metres of where the episode started.
    Putting the limb down, tipping or walking away ends the wave: the count starts again."""

    def __init__(
        self, n: int, angle: str, amplitude: float, swings: int, up: str | None = None,
        min_up: float = 0.5, lifted: Sequence[str] | None = None, lift: float = 0.02,
        drift: Sequence[str] = (), max_drift: float = math.inf,
    ) -> None:  # fmt: skip
        self.n, self.angle, self.amplitude, self.swings = n, angle, float(amplitude), int(swings)
        self.up, self.min_up, self.lift = up, float(min_up), float(lift)
        self.lifted = tuple(lifted) if lifted is not None else None
        self.drift, self.max_drift = tuple(drift), float(max_drift)
        self.origin = np.zeros((len(self.drift), n))
        self.low, self.high = np.zeros(n), np.zeros(n)
        self.rising, self.count = _all(n, True), np.zeros(n, dtype=np.int64)
        self.best, self.success = np.zeros(n, dtype=np.int64), _all(n)
        self._cols: np.ndarray | None = None

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        a = inputs.read(self.angle)
        self.low[mask] = self.high[mask] = a[mask]
        for k, path in enumerate(self.drift):
            self.origin[k, mask] = inputs.read(path)[mask]
        self.rising[mask], self.count[mask], self.best[mask], self.success[mask] = True, 0, 0, False

    def _active(self, inputs: SuccessInputs) -> np.ndarray:
        active = _all(self.n, True)
        if self.up is not None:
            active &= inputs.read(self.up) >= self.min_up
        if self.drift:
            offset = np.stack([inputs.read(p) for p in self.drift]) - self.origin
            active &= np.sqrt(np.sum(offset**2, axis=0)) <= self.max_drift
        if self.lifted is not None:
            if self._cols is None:
                self._cols = inputs.ground.columns(self.lifted)
            active &= inputs.clearance()[:, self._cols].min(axis=1) >= self.lift
        return active

    def update(self, inputs: SuccessInputs) -> None:
        amp = self.amplitude
        active = self._active(inputs)
        a = inputs.read(self.angle)
        # not waving now: the wave starts again from the current angle
        self.low, self.high = np.where(active, self.low, a), np.where(active, self.high, a)
        self.count = np.where(active, self.count, 0)
        self.rising = np.where(active, self.rising, True)
        up = active & self.rising
        down = active & ~self.rising
        self.high = np.where(up, np.maximum(self.high, a), self.high)
        swing = up & (self.high - a >= amp)
        self.count += swing & (self.high - self.low >= amp)
        self.low = np.where(swing, a, self.low)
        self.low = np.where(down, np.minimum(self.low, a), self.low)
        back = down & (a - self.low >= amp)
        self.count += back & (self.high - self.low >= amp)
        self.high = np.where(back, a, self.high)
        self.rising = np.where(swing, False, np.where(back, True, self.rising))
        self.best = np.maximum(self.best, self.count)
        self.success |= self.count >= self.swings

    @property
    def progress(self) -> np.ndarray:
        return np.minimum(1.0, self.best / self.swings)


class BenchmarkSuccess(Metric):
    """The benchmark's own success flag (MetaWorld's ``info["success"]``), read from ``flag``
    on the env proxy after every step and latched within the episode, as MetaWorld's own
    evaluation counts it (an episode succeeds when the flag is raised at any step).

    The flag is not a card attribute: reward programs cannot read it. ``progress`` is 0 or 1.
    """

    def __init__(self, n: int, flag: str = "benchmark_success") -> None:
        self.n, self.flag, self.success = n, flag, _all(n)

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        self.success[mask] = False

    def update(self, inputs: SuccessInputs) -> None:
        self.success |= inputs.read(self.flag) != 0


METRICS: dict[str, Callable[..., Metric] | str] = {
    "displacement": Displacement,
    "flip": Flip,
    "jump": Jump,
    "hold_height": HoldHeight,
    "oscillate": Oscillate,
    "benchmark_success": BenchmarkSuccess,
    "expression": "rewardlab.reward.expression:Expression",  # vetted like reward code: in reward/
}
"""Metric classes by name; a ``"module:Class"`` string is imported on first use."""


def make_metric(name: str, params: dict[str, Any], n: int = 1) -> Metric:
    """The success metric ``name`` with ``params`` (from a task spec) for ``n`` worlds; ``name``
    is a key of :data:`METRICS` or a ``"module:Class"`` entry point (a task folder's own metric,
    a :class:`Metric` subclass)."""
    target = name if ":" in name else METRICS.get(name)
    if isinstance(target, str):
        from rewardlab.tasks.registry import load_entry_point

        cls = load_entry_point(target)
    elif target is not None:
        cls = target
    else:
        raise KeyError(
            f"unknown success metric {name!r}; known: {sorted(METRICS)} or 'module:Class'"
        )
    try:
        metric: Metric = cls(n, **params)
    except TypeError as exc:
        raise TypeError(f"success metric {name!r}: {exc}") from None
    return metric


# --------------------------------------------------------------------------- naming


def describe_success(spec: SuccessSpec) -> str:
    """One line saying what a success metric measures (for messages and reports).

    Example:
        >>> from rewardlab.tasks import get_task
        >>> describe_success(get_task("mujoco/hopper_backward").success)
        'travel 3 m backward (-x along hopper.top.position_x) without falling'
    """
    p, metric = dict(spec.params), spec.metric
    if metric == "displacement":
        d = float(p["distance"])
        return f"travel {abs(d):g} m {'forward' if d > 0 else 'backward'} ({'+' if d > 0 else '-'}x along {p['position']}) without falling"
    if metric == "flip":
        return f"a {'front' if int(p['direction']) > 0 else 'back'} flip in the air ({float(p.get('turns', 1.0)):g} turn of {p['angle']}), landing on the feet"
    if metric == "jump":
        return f"{int(p.get('jumps', 2))} jumps in place (whole body off the ground, {p['height']} >= {float(p['min_height']):g} m)"
    if metric == "hold_height":
        if "max_height" in p:
            return f"lie down: {p['height']} <= {float(p['max_height']):g} m, right side up, for {int(p['hold_steps'])} steps"
        return f"stand: {p['height']} >= {float(p['min_height']):g} m, upright, on the feet, for {int(p['hold_steps'])} steps"
    if metric == "oscillate":
        return f"wave: {int(p['swings'])} swings of {p['angle']} (>= {float(p['amplitude']):g} rad) with the limb in the air"
    if metric == "benchmark_success":
        return "the benchmark's own success flag"
    if metric == "expression":
        return f"the expression {p['expr']!r} true at some step"
    return metric


class SuccessChoiceError(ValueError):
    """``task.success=...`` names no registered metric of the robot and is no valid success
    expression over its card (the message says which exist)."""


def resolve_success(task: TaskSpec, choice: str) -> SuccessSpec:
    """The success metric ``task.success=<choice>`` asks for: a metric registered for the
    task's robot (:func:`success_choices`: ``hopper_backward`` or ``backward``), or a Python
    expression over the card's attributes (``self.hopper.top.position_x < -2.0``), vetted like
    reward code (:func:`rewardlab.reward.expression.compile_expression`) and judged true at some step.

    Raises :class:`SuccessChoiceError` with the choices (and close names) otherwise.

    Example:
        >>> from rewardlab.tasks import get_task
        >>> resolve_success(get_task("mujoco/hopper_forward"), "backward").params["distance"]
        -3.0
    """
    from rewardlab.tasks.registry import SuccessSpec

    choice = choice.strip()
    choices = success_choices(task)
    if choice in choices:
        chosen = choices[choice]
        return SuccessSpec(chosen.metric, dict(chosen.params))
    names = ", ".join(sorted(choices))
    if choice.isidentifier():
        import difflib

        close = difflib.get_close_matches(choice, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SuccessChoiceError(
            f"task.success={choice!r} is no success metric of {task.card} (registered: {names}){hint}; "
            "or give a Python expression over the card, e.g. task.success='self.<robot>.<part>.position_x < -2'"
        )
    try:  # vetted and compiled like reward code (rewardlab.reward.expression)
        make_metric("expression", {"expr": choice, "card": task.card})
    except ValueError as exc:
        why = str(exc)
        raise SuccessChoiceError(
            f"task.success={choice!r} is neither a registered metric ({names}) nor an acceptable "
            f"expression over {task.card}: {why}"
        ) from None
    return SuccessSpec("expression", {"expr": choice, "card": task.card})


def success_choices(task: TaskSpec) -> dict[str, SuccessSpec]:
    """The registered success metrics for ``task``'s robot: every task on the same card, by its
    name without the benchmark (``hopper_backward``) and without the robot prefix
    (``backward``), for ``task.success=<name>``."""
    from rewardlab.tasks.registry import list_tasks

    out: dict[str, SuccessSpec] = {}
    for other in list_tasks():
        if other.card != task.card:
            continue
        short = other.name.split("/", 1)[1]
        out[short] = other.success
        robot, _, behaviour = short.partition("_")
        if behaviour:
            out.setdefault(behaviour, other.success)
    return out
