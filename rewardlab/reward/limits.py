"""The sandbox's limits: sizes reward code may create, the per-call :class:`Budget` (ticks and
wall-clock time), and :func:`limit_process_memory`."""

from __future__ import annotations

import resource
import time

from rewardlab.reward.findings import BudgetExceeded

MAX_ELEMENTS = 1_000_000
"""Largest array or sequence (elements) that reward code may create in one operation."""

MAX_INT_BITS = 4096
"""Largest integer (bits) that ``**`` / ``<<`` may produce."""

DEFAULT_TICKS = 200_000
"""Default per-call budget: loop iterations + function calls + comprehension elements."""

DEFAULT_SECONDS = 1.0
"""Default per-call wall-clock budget (checked every few hundred ticks)."""

MAX_ITEMSIZE = 32
"""Largest numpy dtype item size (bytes) reward code may use (complex256 is 32)."""


class Budget:
    """A per-call tick counter and wall-clock limit shared by one compiled program.

    Args:
        limit: ticks (loop iterations + calls + comprehension elements) per call.
        seconds: wall-clock time per call, checked every :attr:`CHECK_EVERY` ticks.
    """

    __slots__ = ("limit", "seconds", "left", "line", "deadline", "checkpoint")
    CHECK_EVERY = 64
    left: int
    checkpoint: int
    deadline: float

    def __init__(self, limit: int, seconds: float = DEFAULT_SECONDS) -> None:
        self.limit = limit
        self.seconds = seconds
        self.line = 0
        self.reset()

    def tick(self, line: int) -> None:
        self.left -= 1
        if self.left < self.checkpoint:
            self._check(line)

    def _check(self, line: int) -> None:
        if self.left < 0:
            self.line = line
            raise BudgetExceeded(
                f"reward program exceeded its budget of {self.limit:,} loop iterations/calls "
                f"per step (line {line}): infinite or very long loop?"
            )
        if time.perf_counter() > self.deadline:
            self.line = line
            self.checkpoint = self.limit + 1  # every later tick re-checks and raises again
            raise BudgetExceeded(
                f"reward program exceeded its time budget of {self.seconds:g} s per step "
                f"(line {line}): very long loop?"
            )
        self.checkpoint = max(self.left - self.CHECK_EVERY, 0)

    def reset(self) -> None:
        self.left = self.limit
        self.checkpoint = max(self.limit - self.CHECK_EVERY, 0)
        self.deadline = time.perf_counter() + self.seconds


def limit_process_memory(max_bytes: int) -> None:
    """Cap this process's data segment (heap and anonymous mappings) at ``max_bytes``.

    Allocations beyond it raise :class:`MemoryError` instead of exhausting the machine. Linux
    only; a no-op where ``RLIMIT_DATA`` is unavailable. The cap never raises a lower hard
    limit.
    """
    if not hasattr(resource, "RLIMIT_DATA"):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        max_bytes = min(max_bytes, hard)
    if soft == resource.RLIM_INFINITY or soft > max_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, hard))
