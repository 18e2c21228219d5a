"""ROOM, LINEK and CHAIN: tabular environments with their model exposed.

Each environment exists twice, on purpose:

- a *model* built by :func:`room_mdp`, :func:`linek_mdp` or :func:`chain_mdp`
  (a :class:`~rewardlab.shaping.mdp.TabularMDP`: ``P``, ``R``, ``gamma``, start distribution,
  terminal states, horizon) which the reward designers and the evaluation use;
- a gymnasium env (:class:`RoomEnv`, :class:`LineKEnv`, :class:`ChainEnv`, registered as
  ``rewardlab/Room-v0``, ``rewardlab/LineK-v0``, ``rewardlab/Chain-v0``) whose ``step`` simulates
  the dynamics procedurally (LINEK even moves a continuous position and snaps it to the grid),
  independently of ``P``. The tests check that the two agree.

Layouts (``x`` grows to the right, ``y`` upwards):

ROOM
    7x7 grid, 49 cells plus one terminal state (index 49); cell ``(x, y)`` is state ``7 y + x``.
    A vertical wall between columns 3 and 4 has gates at rows 1 and 5, a horizontal wall between
    rows 3 and 4 has gates at columns 1 and 4: four rooms connected in a ring (the
    asymmetry keeps the optimal action unique in every non-goal cell). Actions
    ``0=up, 1=left, 2=down, 3=right``; with probability ``slip`` (0.1) one of the *other* three
    actions is executed instead; bumping into a wall or the border leaves the agent in place.
    Start ``(0, 0)``, goal ``(6, 6)``: any action in the goal pays 10 and ends the episode.
    ``gamma = 0.95``, horizon 50.
LINEK
    A line ``[0, 1]`` discretised into 20 cells of width 0.05, times a key bit, plus a terminal
    state: 41 states, ``key * 20 + cell``, terminal 40. Actions ``0=left, 1=right, 2=pick``.
    ``left``/``right`` move by ``U(0.074, 0.076)`` and snap to the nearest cell centre (so one
    or two cells with probability 1/2 each); ``pick`` in the key region ``[0.1, 0.2]`` (cells 2,
    3) sets the key bit. With probability ``slip`` (0.1) one of the other two actions is executed.
    ``right`` in the goal region ``[0.9, 1]`` (cells 18, 19) ends the episode and pays 10 only
    when holding the key. Start at cell 9 (x = 0.475) without key. ``gamma = 0.95``, horizon 50.
CHAIN
    Positions ``0..60`` plus a terminal state 61; actions ``0=left, 1=right``; with probability
    ``slip`` (0.05) the executed action is uniformly random. Start at 40, goal at 60 (``right``
    there pays 1 per step and stays), ``left`` at 0 ends the episode, and a *distractor* pays
    0.01 for ``left`` at position 25 (15 steps left of the start, versus 20 to the goal).
    ``gamma = 0.99``, horizon 40.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("rewardlab/Room-v0")
    >>> obs, info = env.reset(seed=0)
    >>> int(obs), env.unwrapped.P.shape, env.unwrapped.gamma
    (0, (50, 4, 50), 0.95)
    >>> room_mdp().meta["goal"]
    48
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rewardlab.shaping.mdp import FloatArray, TabularMDP

# ----------------------------------------------------------------------------- ROOM

ROOM_SIZE = 7
ROOM_MOVES = ((0, 1), (-1, 0), (0, -1), (1, 0))  # up, left, down, right
ROOM_V_GATES = (1, 5)  # rows where the wall between x=3 and x=4 is open
ROOM_H_GATES = (1, 4)  # columns where the wall between y=3 and y=4 is open


def room_blocked(x: int, y: int, dx: int, dy: int, size: int = ROOM_SIZE) -> bool:
    """True when moving from cell ``(x, y)`` by ``(dx, dy)`` hits the border or a wall."""
    nx, ny = x + dx, y + dy
    if not (0 <= nx < size and 0 <= ny < size):
        return True
    mid = size // 2  # walls sit between mid and mid + 1
    if dx != 0 and {x, nx} == {mid, mid + 1} and y not in ROOM_V_GATES:
        return True
    return dy != 0 and {y, ny} == {mid, mid + 1} and x not in ROOM_H_GATES


def room_move(state: int, action: int, size: int = ROOM_SIZE) -> int:
    """Deterministic effect of ``action`` in ROOM cell ``state`` (no slip, no goal logic)."""
    x, y = state % size, state // size
    dx, dy = ROOM_MOVES[action]
    if room_blocked(x, y, dx, dy, size):
        return state
    return (y + dy) * size + (x + dx)


def room_mdp(slip: float = 0.1, gamma: float = 0.95, goal_reward: float = 10.0) -> TabularMDP:
    """The ROOM model (see the module docstring)."""
    n_cells = ROOM_SIZE * ROOM_SIZE
    S, A, term = n_cells + 1, 4, n_cells
    goal = n_cells - 1
    P = np.zeros((S, A, S))
    for s in range(n_cells):
        for a in range(A):
            if s == goal:
                P[s, a, term] = 1.0
                continue
            for b in range(A):
                p = 1.0 - slip if b == a else slip / (A - 1)
                P[s, a, room_move(s, b)] += p
    P[term, :, term] = 1.0
    R = np.zeros((S, A))
    R[goal, :] = goal_reward
    start = np.zeros(S)
    start[0] = 1.0
    gates = [(ROOM_SIZE // 2, y) for y in ROOM_V_GATES] + [
        (x, ROOM_SIZE // 2) for x in ROOM_H_GATES
    ]
    meta: dict[str, Any] = {"goal": goal, "size": ROOM_SIZE, "gates": gates, "slip": slip}
    return TabularMDP(P, R, gamma, start, (term,), horizon=50, name="ROOM", meta=meta)


# ----------------------------------------------------------------------------- LINEK

LINEK_CELLS = 20
LINEK_WIDTH = 1.0 / LINEK_CELLS
LINEK_KEY_CELLS = (2, 3)  # centres 0.125, 0.175 lie in [0.1, 0.2]
LINEK_GOAL_CELLS = (18, 19)  # centres 0.925, 0.975 lie in [0.9, 1]
LINEK_START_CELL = 9  # nearest centre to 0.5 (first of the two at equal distance)
LINEK_STEP = (0.074, 0.076)


def linek_center(cell: int) -> float:
    """Centre of LINEK cell ``cell``."""
    return (cell + 0.5) * LINEK_WIDTH


def linek_snap(x: float) -> int:
    """The cell whose centre is nearest to ``x`` (clipped to the line)."""
    return int(np.clip(np.rint(x / LINEK_WIDTH - 0.5), 0, LINEK_CELLS - 1))


def linek_mdp(slip: float = 0.1, gamma: float = 0.95, goal_reward: float = 10.0) -> TabularMDP:
    """The LINEK model (see the module docstring)."""
    n = LINEK_CELLS
    S, A, term = 2 * n + 1, 3, 2 * n
    P = np.zeros((S, A, S))
    for key in (0, 1):
        for i in range(n):
            s = key * n + i
            for a in range(A):
                if i in LINEK_GOAL_CELLS and a == 1:
                    P[s, a, term] = 1.0
                    continue
                for b in range(A):
                    p = 1.0 - slip if b == a else slip / (A - 1)
                    if b == 2:
                        k = 1 if i in LINEK_KEY_CELLS else key
                        P[s, a, k * n + i] += p
                    else:
                        sign = -1 if b == 0 else 1
                        for step in (1, 2):  # snapping makes the move 1 or 2 cells, 1/2 each
                            j = int(np.clip(i + sign * step, 0, n - 1))
                            P[s, a, key * n + j] += p / 2
    P[term, :, term] = 1.0
    R = np.zeros((S, A))
    for i in LINEK_GOAL_CELLS:
        R[n + i, 1] = goal_reward
    start = np.zeros(S)
    start[LINEK_START_CELL] = 1.0
    meta: dict[str, Any] = {
        "goal": [n + i for i in LINEK_GOAL_CELLS],
        "key_cells": list(LINEK_KEY_CELLS),
        "cells": n,
        "slip": slip,
    }
    return TabularMDP(P, R, gamma, start, (term,), horizon=50, name="LINEK", meta=meta)


# ----------------------------------------------------------------------------- CHAIN

CHAIN_LEFT = 40  # steps from the start to the left end
CHAIN_RIGHT = 20  # steps from the start to the goal
CHAIN_DISTRACTOR_OFFSET = 15  # the distractor sits this many steps left of the start


def chain_mdp(
    slip: float = 0.05,
    gamma: float = 0.99,
    distractor: float = 0.01,
    goal_reward: float = 1.0,
    n_left: int = CHAIN_LEFT,
    n_right: int = CHAIN_RIGHT,
    horizon: int = 40,
) -> TabularMDP:
    """The CHAIN model (see the module docstring)."""
    n_pos = n_left + n_right + 1
    S, A, term = n_pos + 1, 2, n_pos
    start_pos, goal = n_left, n_pos - 1
    P = np.zeros((S, A, S))
    for s in range(n_pos):
        for a in range(A):
            for b in range(A):
                p = (1.0 - slip) * (b == a) + slip / A
                if b == 0:
                    P[s, a, term if s == 0 else s - 1] += p
                else:
                    P[s, a, min(s + 1, goal)] += p
    P[term, :, term] = 1.0
    R = np.zeros((S, A))
    R[goal, 1] = goal_reward
    distractor_state = start_pos - CHAIN_DISTRACTOR_OFFSET
    R[distractor_state, 0] = distractor
    start = np.zeros(S)
    start[start_pos] = 1.0
    meta: dict[str, Any] = {"goal": goal, "distractor": distractor_state, "slip": slip}
    return TabularMDP(P, R, gamma, start, (term,), horizon=horizon, name="CHAIN", meta=meta)


# ----------------------------------------------------------------------------- gym envs


class TabularEnv(gym.Env[np.int64, np.int64]):
    """A gymnasium env over a :class:`TabularMDP` (observation = state index).

    The model is available as ``P``, ``R``, ``gamma``, ``start_distribution``,
    ``terminal_states`` and ``mdp`` (through a ``gym.make`` wrapper: ``env.unwrapped.P``).
    ``reset(options={"state": s})`` starts from a chosen state. Subclasses simulate
    ``_transition`` procedurally; this base class samples from ``P``.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, mdp: TabularMDP) -> None:
        self.mdp = mdp
        self.observation_space = spaces.Discrete(mdp.n_states)
        self.action_space = spaces.Discrete(mdp.n_actions)
        self.state = int(np.argmax(mdp.start))

    @property
    def P(self) -> FloatArray:
        """Transition tensor ``(S, A, S)``."""
        return self.mdp.P

    @property
    def R(self) -> FloatArray:
        """Reward ``(S, A)``."""
        return self.mdp.R

    @property
    def gamma(self) -> float:
        """Discount factor."""
        return self.mdp.gamma

    @property
    def start_distribution(self) -> FloatArray:
        """Start-state distribution ``(S,)``."""
        return self.mdp.start

    @property
    def terminal_states(self) -> tuple[int, ...]:
        """Absorbing terminal states."""
        return self.mdp.terminal

    def _set_state(self, state: int) -> None:
        self.state = int(state)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.int64, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "state" in options:
            self._set_state(int(options["state"]))
        else:
            self._set_state(int(self.np_random.choice(self.mdp.n_states, p=self.mdp.start)))
        return np.int64(self.state), {}

    def _transition(self, state: int, action: int) -> int:
        return int(self.np_random.choice(self.mdp.n_states, p=self.mdp.P[state, action]))

    def step(self, action: np.int64 | int) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        a = int(action)
        reward = float(self.mdp.R[self.state, a])
        self._set_state(self._transition(self.state, a))
        terminated = self.state in self.mdp.terminal
        return np.int64(self.state), reward, terminated, False, {}

    def _slipped(self, action: int, n_actions: int, slip: float, include_self: bool) -> int:
        """The executed action: ``action``, or with probability ``slip`` a random one."""
        if self.np_random.random() >= slip:
            return action
        if include_self:
            return int(self.np_random.integers(n_actions))
        others = [b for b in range(n_actions) if b != action]
        return int(others[int(self.np_random.integers(len(others)))])


class RoomEnv(TabularEnv):
    """ROOM (see the module docstring)."""

    def __init__(self, slip: float = 0.1, gamma: float = 0.95) -> None:
        super().__init__(room_mdp(slip=slip, gamma=gamma))
        self.slip = slip

    def _transition(self, state: int, action: int) -> int:
        if state == self.mdp.meta["goal"] or state in self.mdp.terminal:
            return self.mdp.terminal[0]
        return room_move(state, self._slipped(action, 4, self.slip, include_self=False))


class LineKEnv(TabularEnv):
    """LINEK with a continuous position snapped to the grid (see the module docstring)."""

    def __init__(self, slip: float = 0.1, gamma: float = 0.95) -> None:
        super().__init__(linek_mdp(slip=slip, gamma=gamma))
        self.slip = slip
        self.x = linek_center(LINEK_START_CELL)
        self.key = 0

    def _set_state(self, state: int) -> None:
        super()._set_state(state)
        if state < 2 * LINEK_CELLS:
            self.key, cell = divmod(state, LINEK_CELLS)
            self.x = linek_center(cell)

    def _transition(self, state: int, action: int) -> int:
        term = self.mdp.terminal[0]
        cell = linek_snap(self.x)
        if state == term or (cell in LINEK_GOAL_CELLS and action == 1):
            return term
        b = self._slipped(action, 3, self.slip, include_self=False)
        if b == 2:
            if cell in LINEK_KEY_CELLS:
                self.key = 1
        else:
            d = float(self.np_random.uniform(*LINEK_STEP))
            x = float(np.clip(self.x + (d if b == 1 else -d), 0.0, 1.0))
            self.x = linek_center(linek_snap(x))
        return self.key * LINEK_CELLS + linek_snap(self.x)

    def step(self, action: np.int64 | int) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["x"] = self.x
        info["key"] = self.key
        return obs, reward, terminated, truncated, info


class ChainEnv(TabularEnv):
    """CHAIN with a distractor (see the module docstring)."""

    def __init__(self, slip: float = 0.05, gamma: float = 0.99, distractor: float = 0.01) -> None:
        super().__init__(chain_mdp(slip=slip, gamma=gamma, distractor=distractor))
        self.slip = slip

    def _transition(self, state: int, action: int) -> int:
        term = self.mdp.terminal[0]
        goal = int(self.mdp.meta["goal"])
        if state == term:
            return term
        if self._slipped(action, 2, self.slip, include_self=True) == 0:
            return term if state == 0 else state - 1
        return min(state + 1, goal)


ENV_IDS = {
    "rewardlab/Room-v0": ("rewardlab.shaping.tabular_envs:RoomEnv", 50),
    "rewardlab/LineK-v0": ("rewardlab.shaping.tabular_envs:LineKEnv", 50),
    "rewardlab/Chain-v0": ("rewardlab.shaping.tabular_envs:ChainEnv", 40),
}


def register_envs() -> None:
    """Register the three envs with gymnasium (idempotent)."""
    for env_id, (entry_point, horizon) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=horizon)


register_envs()
