"""Task success metrics over all worlds at once, step for step equal to the scalar trackers.

Each batched metric mirrors one tracker of :mod:`rewardlab.tasks.success` with ``(N,)`` arrays
for its fields: ``reset(me, mask)`` starts the episodes of the worlds in ``mask`` (auto-reset),
``update(me)`` follows one step in every world, and ``success``/``progress`` are arrays.
Python's ``max(a, b)``/``min(a, b)`` are reproduced exactly (including their NaN behaviour)
by :func:`py_max`/:func:`py_min`. A metric without a batched twin runs one scalar tracker per
world (:class:`PerWorldMetric`).

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace as NS
    >>> me = NS(r=NS(z=np.array([0.2, 0.5])))
    >>> m = make_batch_metric("hold_height", {"height": "r.z", "max_height": 0.3, "hold_steps": 2}, 2)
    >>> m.reset(me, np.array([True, True])); m.update(me); m.update(me)
    >>> m.success.tolist(), m.progress.tolist()
    ([True, False], [1.0, 0.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rewardlab.tasks.success import make_metric


def read_batch(me: Any, path: str) -> np.ndarray:
    """Read a dotted path (``"hopper.top.position_x"``) from a batched proxy as float64."""
    value = me
    for part in path.split("."):
        value = getattr(value, part)
    return np.asarray(value, dtype=np.float64)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi) (Python's float ``%`` semantics, as the scalar version)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def py_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise Python ``max(a, b)``: ``b`` where ``b > a``, else ``a``."""
    return np.where(b > a, b, a)


def py_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise Python ``min(a, b)``: ``b`` where ``b < a``, else ``a``."""
    return np.where(b < a, b, a)


class BatchDisplacement:
    """Batched :class:`rewardlab.tasks.success.Displacement`."""

    def __init__(
        self, n: int, position: str, distance: float, upright: str | None = None,
        max_tilt: float = math.pi, up: str | None = None, min_up: float = -1.0,
        height: str | None = None, min_height: float = -math.inf,
    ) -> None:  # fmt: skip
        self.position, self.distance, self.upright, self.max_tilt = (
            position,
            distance,
            upright,
            max_tilt,
        )
        self.up, self.min_up, self.height, self.min_height = up, min_up, height, min_height
        self.start, self.best, self.fallen = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)

    def reset(self, me: Any, mask: np.ndarray) -> None:
        self.start[mask] = read_batch(me, self.position)[mask]
        self.best[mask] = 0.0
        self.fallen[mask] = False

    def update(self, me: Any) -> None:
        if self.upright is not None:
            self.fallen |= np.abs(wrap_angle(read_batch(me, self.upright))) > self.max_tilt
        if self.up is not None:
            self.fallen |= read_batch(me, self.up) < self.min_up
        if self.height is not None:
            self.fallen |= read_batch(me, self.height) < self.min_height
        travelled = (read_batch(me, self.position) - self.start) * math.copysign(1.0, self.distance)
        self.best = np.where(self.fallen, self.best, py_max(self.best, travelled))

    @property
    def success(self) -> np.ndarray:
        return ~self.fallen & (self.best >= abs(self.distance))

    @property
    def progress(self) -> np.ndarray:
        return py_min(np.ones_like(self.best), self.best / abs(self.distance))


class BatchFlip:
    """Batched :class:`rewardlab.tasks.success.Flip`."""

    def __init__(
        self, n: int, angle: str, direction: int, height: str, min_height: float,
        turns: float = 1.0, tolerance: float = 0.6, hold_steps: int = 10,
    ) -> None:  # fmt: skip
        self.angle, self.direction, self.height, self.min_height = (
            angle,
            direction,
            height,
            min_height,
        )
        self.turns, self.tolerance, self.hold_steps = turns, tolerance, hold_steps
        self.start, self.rotated = np.zeros(n), np.zeros(n)
        self.held, self.success = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)

    def reset(self, me: Any, mask: np.ndarray) -> None:
        self.start[mask] = read_batch(me, self.angle)[mask]
        self.rotated[mask], self.held[mask], self.success[mask] = 0.0, 0, False

    def update(self, me: Any) -> None:
        angle = read_batch(me, self.angle)
        self.rotated = py_max(self.rotated, (angle - self.start) * self.direction)
        turned = ~(self.rotated < self.turns * 2 * math.pi)
        ok = (np.abs(wrap_angle(angle)) < self.tolerance) & (
            read_batch(me, self.height) >= self.min_height
        )
        self.held = np.where(turned, np.where(ok, self.held + 1, 0), self.held)
        self.success |= turned & (self.held >= self.hold_steps)

    @property
    def progress(self) -> np.ndarray:
        full = self.turns * 2 * math.pi
        held = py_min(np.ones(len(self.held)), self.held / self.hold_steps)
        return py_min(np.ones(len(self.held)), 0.9 * self.rotated / full + 0.1 * held)


class BatchJump:
    """Batched :class:`rewardlab.tasks.success.Jump`."""

    def __init__(
        self, n: int, height: str, min_height: float, position: str, max_drift: float,
        upright: str, max_tilt: float = 0.7, jumps: int = 2,
    ) -> None:  # fmt: skip
        self.height, self.min_height, self.position, self.max_drift = (
            height,
            min_height,
            position,
            max_drift,
        )
        self.upright, self.max_tilt, self.jumps = upright, max_tilt, jumps
        self.start, self.count = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.airborne, self.failed = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        self.success = np.zeros(n, dtype=bool)

    def reset(self, me: Any, mask: np.ndarray) -> None:
        self.start[mask] = read_batch(me, self.position)[mask]
        self.count[mask], self.airborne[mask] = 0, False
        self.failed[mask] = self.success[mask] = False

    def update(self, me: Any) -> None:
        drift = np.abs(read_batch(me, self.position) - self.start)
        tilt = np.abs(wrap_angle(read_batch(me, self.upright)))
        self.failed |= (drift > self.max_drift) | (tilt > self.max_tilt)
        live = ~self.failed
        high = read_batch(me, self.height) >= self.min_height
        self.count += live & high & ~self.airborne
        self.airborne = np.where(live, high, self.airborne)
        self.success |= live & (self.count >= self.jumps)

    @property
    def progress(self) -> np.ndarray:
        return py_min(np.ones(len(self.count)), self.count / self.jumps)


class BatchHoldHeight:
    """Batched :class:`rewardlab.tasks.success.HoldHeight`."""

    def __init__(
        self, n: int, height: str, hold_steps: int, max_height: float = math.inf,
        min_height: float = -math.inf, up: str | None = None, min_up: float = -1.0,
    ) -> None:  # fmt: skip
        self.height, self.hold_steps, self.max_height, self.min_height = (
            height,
            hold_steps,
            max_height,
            min_height,
        )
        self.up, self.min_up = up, min_up
        self.held, self.best = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.success = np.zeros(n, dtype=bool)

    def reset(self, me: Any, mask: np.ndarray) -> None:
        self.held[mask] = self.best[mask] = 0
        self.success[mask] = False

    def update(self, me: Any) -> None:
        h = read_batch(me, self.height)
        ok = (self.min_height <= h) & (h <= self.max_height)
        if self.up is not None:
            ok &= read_batch(me, self.up) >= self.min_up
        self.held = np.where(ok, self.held + 1, 0)
        self.best = np.maximum(self.best, self.held)
        self.success |= self.held >= self.hold_steps

    @property
    def progress(self) -> np.ndarray:
        return py_min(np.ones(len(self.best)), self.best / self.hold_steps)


class BatchOscillate:
    """Batched :class:`rewardlab.tasks.success.Oscillate` (both swing branches as masks)."""

    def __init__(
        self, n: int, angle: str, amplitude: float, swings: int, up: str | None = None,
        min_up: float = 0.5,
    ) -> None:  # fmt: skip
        self.angle, self.amplitude, self.swings, self.up, self.min_up = (
            angle,
            amplitude,
            swings,
            up,
            min_up,
        )
        self.low, self.high = np.zeros(n), np.zeros(n)
        self.rising, self.count = np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64)
        self.success = np.zeros(n, dtype=bool)

    def reset(self, me: Any, mask: np.ndarray) -> None:
        a = read_batch(me, self.angle)
        self.low[mask] = self.high[mask] = a[mask]
        self.rising[mask], self.count[mask], self.success[mask] = True, 0, False

    def update(self, me: Any) -> None:
        n, amp = len(self.count), self.amplitude
        active = (
            np.ones(n, dtype=bool) if self.up is None else ~(read_batch(me, self.up) < self.min_up)
        )
        a = read_batch(me, self.angle)
        up = active & self.rising
        down = active & ~self.rising
        self.high = np.where(up, py_max(self.high, a), self.high)
        swing = up & (self.high - a >= amp)
        counted = swing & (self.high - self.low >= amp)
        self.count += counted
        self.low = np.where(swing, a, self.low)
        self.low = np.where(down, py_min(self.low, a), self.low)
        back = down & (a - self.low >= amp)
        counted = back & (self.high - self.low >= amp)
        self.count += counted
        self.high = np.where(back, a, self.high)
        self.rising = np.where(swing, False, np.where(back, True, self.rising))
        self.success |= active & (self.count >= self.swings)

    @property
    def progress(self) -> np.ndarray:
        return py_min(np.ones(len(self.count)), self.count / self.swings)


class PerWorldMetric:
    """Fallback: one scalar tracker per world, reading per-world proxies."""

    def __init__(self, name: str, params: dict[str, Any], worlds: Sequence[Any]) -> None:
        self.worlds = worlds
        self.trackers = [make_metric(name, dict(params)) for _ in worlds]

    def reset(self, me: Any, mask: np.ndarray) -> None:
        for i in np.flatnonzero(mask).tolist():
            self.trackers[i].reset(self.worlds[i])

    def update(self, me: Any) -> None:
        for tracker, world in zip(self.trackers, self.worlds, strict=True):
            tracker.update(world)

    @property
    def success(self) -> np.ndarray:
        return np.array([bool(t.success) for t in self.trackers])

    @property
    def progress(self) -> np.ndarray:
        return np.array([float(t.progress) for t in self.trackers])


BATCH_METRICS: dict[str, Callable[..., Any]] = {
    "displacement": BatchDisplacement,
    "flip": BatchFlip,
    "jump": BatchJump,
    "hold_height": BatchHoldHeight,
    "oscillate": BatchOscillate,
}


def make_batch_metric(
    name: str, params: dict[str, Any], n: int, worlds: Sequence[Any] | None = None
) -> Any:
    """The batched twin of metric ``name`` for ``n`` worlds, else a :class:`PerWorldMetric`
    over ``worlds`` (the per-world proxies)."""
    if name in BATCH_METRICS:
        return BATCH_METRICS[name](n, **params)
    if worlds is None:
        raise KeyError(
            f"metric {name!r} has no batched version and no per-world proxies were given"
        )
    return PerWorldMetric(name, params, worlds)
