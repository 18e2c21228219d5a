"""Task success metrics, computed from simulator state only (never from a generated reward).

Each metric is a small stateful tracker over one episode: ``reset(me)`` at the first state,
``update(me)`` after every step, then ``success`` (bool, so far in the episode; read at the
episode's end for the verdict) and ``progress``
(a float in [0, 1] for curves). ``me`` is the environment proxy, and parameters name the
quantities to read by path (``"hopper.top_joint.angle"``), so one metric serves many robots.
Trackers are chosen by name in the task specs (``envs/<benchmark>/tasks.yaml``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def read_path(me: Any, path: str) -> float:
    """Read a dotted attribute path (``"hopper.top.position_x"``) from the env proxy."""
    value = me
    for part in path.split("."):
        value = getattr(value, part)
    return float(value)


def wrap_angle(angle: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


@dataclass
class Displacement:
    """Travel at least ``distance`` metres along ``position`` (signed: negative = backward)
    without falling.

    Falling (latched for the rest of the episode) is the ``upright`` angle leaving
    ``max_tilt`` of upright, the ``up`` axis z component dropping below ``min_up``, or
    ``height`` dropping below ``min_height``; a fall anywhere in the episode fails it, so a
    lunge that ends on the ground is not locomotion.
    """

    position: str
    distance: float
    upright: str | None = None
    max_tilt: float = math.pi
    up: str | None = None
    min_up: float = -1.0
    height: str | None = None
    min_height: float = -math.inf
    start: float = 0.0
    best: float = 0.0
    fallen: bool = False

    def reset(self, me: Any) -> None:
        self.start, self.best, self.fallen = read_path(me, self.position), 0.0, False

    def update(self, me: Any) -> None:
        if (
            (self.upright is not None and abs(wrap_angle(read_path(me, self.upright))) > self.max_tilt)
            or (self.up is not None and read_path(me, self.up) < self.min_up)
            or (self.height is not None and read_path(me, self.height) < self.min_height)
        ):
            self.fallen = True
        if self.fallen:
            return
        travelled = (read_path(me, self.position) - self.start) * math.copysign(1.0, self.distance)
        self.best = max(self.best, travelled)

    @property
    def success(self) -> bool:
        return not self.fallen and self.best >= abs(self.distance)

    @property
    def progress(self) -> float:
        return min(1.0, self.best / abs(self.distance))


@dataclass
class Flip:
    """A full rotation of ``angle`` (unwrapped pitch) in ``direction``, then upright landing.

    Success: the pitch has changed by ``turns * 2*pi`` in ``direction`` (+1 forward, -1
    backward), and afterwards the body is within ``tolerance`` of upright with ``height`` at
    least ``min_height`` for ``hold_steps`` consecutive steps.
    """

    angle: str
    direction: int
    height: str
    min_height: float
    turns: float = 1.0
    tolerance: float = 0.6
    hold_steps: int = 10
    start: float = 0.0
    rotated: float = 0.0
    held: int = 0
    success: bool = False

    def reset(self, me: Any) -> None:
        self.start, self.rotated, self.held, self.success = read_path(me, self.angle), 0.0, 0, False

    def update(self, me: Any) -> None:
        angle = read_path(me, self.angle)
        self.rotated = max(self.rotated, (angle - self.start) * self.direction)
        if self.rotated < self.turns * 2 * math.pi:
            return
        upright = abs(wrap_angle(angle)) < self.tolerance
        high = read_path(me, self.height) >= self.min_height
        self.held = self.held + 1 if upright and high else 0
        self.success = self.success or self.held >= self.hold_steps

    @property
    def progress(self) -> float:
        full = self.turns * 2 * math.pi
        return min(1.0, 0.9 * self.rotated / full + 0.1 * min(1.0, self.held / self.hold_steps))


@dataclass
class Jump:
    """Jump in place: ``jumps`` separate rises above ``min_height``, staying within
    ``max_drift`` metres of the start along ``position`` and within ``max_tilt`` of upright."""

    height: str
    min_height: float
    position: str
    max_drift: float
    upright: str
    max_tilt: float = 0.7
    jumps: int = 2
    start: float = 0.0
    count: int = 0
    airborne: bool = False
    failed: bool = False
    success: bool = False

    def reset(self, me: Any) -> None:
        self.start, self.count, self.airborne = read_path(me, self.position), 0, False
        self.failed = self.success = False

    def update(self, me: Any) -> None:
        drift = abs(read_path(me, self.position) - self.start)
        tilt = abs(wrap_angle(read_path(me, self.upright)))
        if drift > self.max_drift or tilt > self.max_tilt:
            self.failed = True
        if self.failed:
            return
        high = read_path(me, self.height) >= self.min_height
        if high and not self.airborne:
            self.count += 1
        self.airborne = high
        self.success = self.success or self.count >= self.jumps

    @property
    def progress(self) -> float:
        return min(1.0, self.count / self.jumps)


@dataclass
class HoldHeight:
    """Keep ``height`` below ``max_height`` (lie down) or above ``min_height`` (stand up) for
    ``hold_steps`` consecutive steps, optionally with ``up_z`` (an up-axis z component) at
    least ``min_up``."""

    height: str
    hold_steps: int
    max_height: float = math.inf
    min_height: float = -math.inf
    up: str | None = None
    min_up: float = -1.0
    held: int = 0
    best: int = 0
    success: bool = False

    def reset(self, me: Any) -> None:
        self.held = self.best = 0
        self.success = False

    def update(self, me: Any) -> None:
        h = read_path(me, self.height)
        ok = self.min_height <= h <= self.max_height
        if ok and self.up is not None:
            ok = read_path(me, self.up) >= self.min_up
        self.held = self.held + 1 if ok else 0
        self.best = max(self.best, self.held)
        self.success = self.success or self.held >= self.hold_steps

    @property
    def progress(self) -> float:
        return min(1.0, self.best / self.hold_steps)


@dataclass
class Oscillate:
    """Wave a limb: ``angle`` swings with peak-to-peak amplitude at least ``amplitude`` at least
    ``swings`` times, while ``up`` (an up-axis z component) stays at least ``min_up``."""

    angle: str
    amplitude: float
    swings: int
    up: str | None = None
    min_up: float = 0.5
    low: float = 0.0
    high: float = 0.0
    rising: bool = True
    count: int = 0
    success: bool = False

    def reset(self, me: Any) -> None:
        a = read_path(me, self.angle)
        self.low = self.high = a
        self.rising, self.count, self.success = True, 0, False

    def update(self, me: Any) -> None:
        if self.up is not None and read_path(me, self.up) < self.min_up:
            return
        a = read_path(me, self.angle)
        if self.rising:
            self.high = max(self.high, a)
            if self.high - a >= self.amplitude and self.high - self.low >= self.amplitude:
                self.count, self.rising, self.low = self.count + 1, False, a
            elif self.high - a >= self.amplitude:
                self.rising, self.low = False, a
        else:
            self.low = min(self.low, a)
            if a - self.low >= self.amplitude and self.high - self.low >= self.amplitude:
                self.count, self.rising, self.high = self.count + 1, True, a
            elif a - self.low >= self.amplitude:
                self.rising, self.high = True, a
        self.success = self.success or self.count >= self.swings

    @property
    def progress(self) -> float:
        return min(1.0, self.count / self.swings)


@dataclass
class BenchmarkSuccess:
    """The benchmark's own success flag (MetaWorld's ``info["success"]``), read from ``flag``
    on the env proxy after every step and latched within the episode, as MetaWorld's own
    evaluation counts it (an episode succeeds when the flag is raised at any step).

    The flag is not a card attribute: reward programs cannot read it. ``progress`` is 0 or 1.
    """

    flag: str = "benchmark_success"
    success: bool = False

    def reset(self, me: Any) -> None:
        self.success = False

    def update(self, me: Any) -> None:
        self.success = self.success or bool(read_path(me, self.flag))

    @property
    def progress(self) -> float:
        return 1.0 if self.success else 0.0


METRICS: dict[str, Callable[..., Any]] = {
    "displacement": Displacement,
    "flip": Flip,
    "jump": Jump,
    "hold_height": HoldHeight,
    "oscillate": Oscillate,
    "benchmark_success": BenchmarkSuccess,
}


def make_metric(name: str, params: dict[str, Any]) -> Any:
    """Instantiate the success tracker ``name`` with ``params`` from a task spec."""
    if name not in METRICS:
        raise KeyError(f"unknown success metric {name!r}; known: {sorted(METRICS)}")
    return METRICS[name](**params)
