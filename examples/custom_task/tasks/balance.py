"""The success metric of ``mujoco/pendulum_balance``: the pole stays within ``max_angle`` of
upright and the cart within ``max_offset`` of the centre for ``steps`` consecutive steps.

A success metric follows ``n`` worlds at once (``n = 1`` in a gymnasium env): rewardlab
calls ``reset(inputs, mask)`` when the episodes of the worlds in ``mask`` start and
``update(inputs)`` after every step; ``inputs.read(path)`` gives the card attribute ``path``
(the same names reward programs read) as an ``(n,)`` array. ``success`` and ``progress`` are
``(n,)`` arrays (see :mod:`rewardlab.tasks.success`).
"""

from __future__ import annotations

import numpy as np

from rewardlab.tasks.success import Metric, SuccessInputs


class Balance(Metric):
    def __init__(
        self,
        n: int,
        angle: str,
        position: str,
        steps: int = 200,
        max_angle: float = 0.2,
        max_offset: float = 0.5,
    ) -> None:
        self.n, self.angle, self.position = n, angle, position
        self.steps, self.max_angle, self.max_offset = (
            int(steps),
            float(max_angle),
            float(max_offset),
        )
        self.held = np.zeros(n, dtype=np.int64)
        self.best = np.zeros(n, dtype=np.int64)
        self.success = np.zeros(n, dtype=bool)

    def reset(self, inputs: SuccessInputs, mask: np.ndarray) -> None:
        self.held[mask] = self.best[mask] = 0
        self.success[mask] = False

    def update(self, inputs: SuccessInputs) -> None:
        upright = np.abs(inputs.read(self.angle)) <= self.max_angle
        centred = np.abs(inputs.read(self.position)) <= self.max_offset
        self.held = np.where(upright & centred, self.held + 1, 0)
        self.best = np.maximum(self.best, self.held)
        self.success = self.best >= self.steps

    @property
    def progress(self) -> np.ndarray:
        return np.minimum(1.0, self.best / self.steps)
