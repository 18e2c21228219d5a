"""Tabular MDPs and their exact solution: values, optimal policies, occupancies.

Everything here is a small pure function over numpy arrays. Conventions used throughout
:mod:`rewardlab.shaping`:

- ``P`` has shape ``(S, A, S)`` with ``P[s, a, s2] = Pr(s2 | s, a)``;
- rewards are ``(S, A)`` arrays ``R[s, a]`` (received on taking ``a`` in ``s``);
- terminal states are absorbing with zero reward;
- a policy is an ``(S, A)`` array of action probabilities (a deterministic policy is an
  ``(S,)`` integer array; :func:`as_stochastic` converts);
- ``horizon=None`` means the infinite-horizon discounted value, an integer ``h`` means the
  discounted value of the first ``h`` steps (the episodes the learners actually see).

Example:
    >>> import numpy as np
    >>> mdp = line_mdp()            # 0 -go-> 1 -go-> goal -any-> terminal, reward 1 at goal
    >>> Q, V = optimal_values(mdp)
    >>> np.round(V[:3], 3).tolist()
    [0.81, 0.9, 1.0]
    >>> optimal_policy(Q).tolist()[:3]
    [1, 1, 0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Relative tolerance under which two action values count as tied.
TIE_TOL = 1e-8


@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP with its model exposed.

    Attributes:
        P: transition tensor ``(S, A, S)``.
        R: reward ``(S, A)``.
        gamma: discount factor.
        start: start-state distribution ``(S,)``.
        terminal: indices of the absorbing terminal states.
        horizon: episode length used by the learners and for evaluation.
        name: a label for plots and reports.
        meta: free-form layout information (goal state, gates, ...).
    """

    P: FloatArray
    R: FloatArray
    gamma: float
    start: FloatArray
    terminal: tuple[int, ...]
    horizon: int
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        S, A, S2 = self.P.shape
        if S != S2 or self.R.shape != (S, A) or self.start.shape != (S,):
            raise ValueError(f"inconsistent shapes P={self.P.shape} R={self.R.shape}")
        if not np.allclose(self.P.sum(axis=2), 1.0):
            raise ValueError("rows of P must sum to 1")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError("gamma must be in [0, 1)")

    @property
    def n_states(self) -> int:
        """Number of states ``S`` (terminal states included)."""
        return int(self.P.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.P.shape[1])

    def nonterminal(self) -> IntArray:
        """Indices of the non-terminal states."""
        mask = np.ones(self.n_states, dtype=bool)
        mask[list(self.terminal)] = False
        return np.flatnonzero(mask)


def line_mdp(gamma: float = 0.9) -> TabularMDP:
    """A 4-state deterministic line used in examples and tests.

    States ``0, 1, 2=goal, 3=terminal``; actions ``0=stay, 1=go``. ``go`` moves right, ``stay``
    stays; any action in the goal gives reward 1 and ends the episode.
    """
    S, A = 4, 2
    P = np.zeros((S, A, S))
    for s in (0, 1):
        P[s, 0, s] = 1.0
        P[s, 1, s + 1] = 1.0
    P[2, :, 3] = 1.0
    P[3, :, 3] = 1.0
    R = np.zeros((S, A))
    R[2, :] = 1.0
    start = np.array([1.0, 0.0, 0.0, 0.0])
    return TabularMDP(P, R, gamma, start, (3,), horizon=10, name="line", meta={"goal": 2})


def as_stochastic(policy: IntArray | FloatArray, n_actions: int) -> FloatArray:
    """An ``(S, A)`` probability table from a deterministic ``(S,)`` policy (or pass-through)."""
    pol = np.asarray(policy)
    if pol.ndim == 2:
        return pol.astype(float)
    out = np.zeros((pol.shape[0], n_actions))
    out[np.arange(pol.shape[0]), pol.astype(int)] = 1.0
    return out


def state_transition(mdp: TabularMDP, policy: FloatArray) -> FloatArray:
    """``P_pi[s, s2] = sum_a pi(a|s) P[s, a, s2]``."""
    return np.einsum("sa,sat->st", policy, mdp.P)


def q_from_v(mdp: TabularMDP, V: FloatArray, reward: FloatArray | None = None) -> FloatArray:
    """One Bellman backup ``Q = R + gamma * P V``."""
    R = mdp.R if reward is None else reward
    return R + mdp.gamma * (mdp.P @ V)


def policy_values(
    mdp: TabularMDP,
    policy: IntArray | FloatArray,
    reward: FloatArray | None = None,
    horizon: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    """``(Q, V)`` of ``policy``: exact linear solve, or ``horizon`` backward steps.

    Example:
        >>> mdp = line_mdp()
        >>> _, V = policy_values(mdp, np.array([1, 1, 0, 0]), horizon=2)
        >>> np.round(V[:3], 3).tolist()    # the goal is 2 steps from state 0: not yet paid
        [0.0, 0.9, 1.0]
    """
    pi = as_stochastic(policy, mdp.n_actions)
    R = mdp.R if reward is None else np.asarray(reward, dtype=float)
    if horizon is None:
        P_pi = state_transition(mdp, pi)
        r_pi = (pi * R).sum(axis=1)
        V = np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi, r_pi)
        return q_from_v(mdp, V, R), V
    V = np.zeros(mdp.n_states)
    Q = np.zeros_like(R)
    for _ in range(horizon):
        Q = q_from_v(mdp, V, R)
        V = (pi * Q).sum(axis=1)
    return Q, V


def expected_return(
    mdp: TabularMDP,
    policy: IntArray | FloatArray,
    reward: FloatArray | None = None,
    horizon: int | None = None,
) -> float:
    """Expected discounted return of ``policy`` from the start distribution."""
    _, V = policy_values(mdp, policy, reward, horizon)
    return float(mdp.start @ V)


def optimal_values(
    mdp: TabularMDP, reward: FloatArray | None = None, max_iter: int = 1000
) -> tuple[FloatArray, FloatArray]:
    """Optimal ``(Q*, V*)`` by policy iteration (exact up to the linear solves).

    Ties are resolved in favour of the current action, so the iteration terminates.
    """
    R = mdp.R if reward is None else np.asarray(reward, dtype=float)
    pi = np.argmax(R, axis=1)
    for _ in range(max_iter):
        Q, V = policy_values(mdp, pi, R)
        best = Q.max(axis=1)
        keep = Q[np.arange(mdp.n_states), pi] >= best - TIE_TOL * (1.0 + np.abs(best))
        new_pi = np.where(keep, pi, np.argmax(Q, axis=1))
        if np.array_equal(new_pi, pi):
            return Q, V
        pi = new_pi
    raise RuntimeError("policy iteration did not converge")


def optimal_action_mask(Q: FloatArray, tol: float = TIE_TOL) -> BoolArray:
    """``mask[s, a]`` is True when ``a`` is optimal in ``s`` (relative tie tolerance)."""
    best = Q.max(axis=1, keepdims=True)
    return np.asarray(Q - best >= -tol * (1.0 + np.abs(best)))


def optimal_policy(Q: FloatArray, tol: float = TIE_TOL) -> IntArray:
    """The deterministic greedy policy; ties go to the lowest action index."""
    return np.argmax(optimal_action_mask(Q, tol), axis=1).astype(np.int64)


def greedy_stochastic(Q: FloatArray, tol: float = 0.0) -> FloatArray:
    """Uniform over the argmax set of each row (how a tie-breaking greedy learner acts)."""
    mask = optimal_action_mask(Q, tol).astype(float)
    return np.asarray(mask / mask.sum(axis=1, keepdims=True))


def advantages(Q: FloatArray, policy: IntArray | FloatArray) -> FloatArray:
    """``A(s, a) = Q(s, a) - sum_b pi(b|s) Q(s, b)``."""
    pi = as_stochastic(policy, Q.shape[1])
    return np.asarray(Q - (pi * Q).sum(axis=1, keepdims=True))


def state_occupancy(mdp: TabularMDP, policy: IntArray | FloatArray) -> FloatArray:
    """Normalised discounted state occupancy of ``policy``, terminal states excluded.

    ``mu = (1 - gamma) (I - gamma P_pi^T)^{-1} start``, then terminal entries are zeroed and the
    vector renormalised to sum to one.
    """
    pi = as_stochastic(policy, mdp.n_actions)
    P_pi = state_transition(mdp, pi)
    mu = np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi.T, (1 - mdp.gamma) * mdp.start)
    mu[list(mdp.terminal)] = 0.0
    mu = np.clip(mu, 0.0, None)
    return np.asarray(mu / mu.sum())


def potential_shaping(mdp: TabularMDP, potential: FloatArray) -> FloatArray:
    """``R(s, a) + gamma E[Phi(s')] - Phi(s)``: potential-based shaping in expectation form.

    With ``potential = V*`` this is the PBRS baseline; it keeps every optimal policy.
    """
    phi = np.asarray(potential, dtype=float).copy()
    phi[list(mdp.terminal)] = 0.0
    return np.asarray(mdp.R + mdp.gamma * (mdp.P @ phi) - phi[:, None])
