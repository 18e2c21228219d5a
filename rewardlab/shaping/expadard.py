"""ExpAdaRD: adaptive, learner-aware reward design (Devidze et al., AAMAS 2024).

The teacher re-designs the reward every ``N_r`` learner episodes from the learner's current
policy ``pi_L`` by maximising the learner-aware informativeness

``I_L(R) = sum_{s,a} mu_T(s) mu_L(s,a) pi_L(a|s) [A_T(s,a) - sum_b pi_L(b|s) A_T(s,b)]
[R(s,a) - sum_b pi_L(b|s) R(s,b)]``

(``A_T``: the teacher's optimal advantage under ``Rbar``; ``mu_T``: the state occupancy of an
epsilon-greedy teacher; ``mu_L(s,a) = mu_L(s) pi_L(a|s)``: the learner's occupancy) subject to
the EXPRD invariance constraints and ``|R| <= Rmax``, over ``R = Phi w`` (for ROOM: nine
overlapping 3x3 squares inside the rooms plus a goal indicator, per action). ``I_L`` is linear in
``R``: :func:`learner_aware_coefficients` returns ``c`` with ``I_L(R) = <c, R>``, and the LP is
:func:`rewardlab.shaping.exprd.solve_linear_design`.

Example:
    >>> import numpy as np
    >>> A_T = np.array([[0.0, -1.0]])                    # one state, action 0 optimal
    >>> c = learner_aware_coefficients(A_T, np.array([1.0]), np.array([[0.5, 0.5]]),
    ...                                np.array([1.0]))
    >>> c.tolist()                                       # I_L(R) = (R(s,0) - R(s,1)) / 8
    [[0.125, -0.125]]
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import numpy as np

from rewardlab.shaping.exprd import (
    Design,
    DesignProblem,
    Rows,
    design_problem,
    invariance_rows,
    solve_linear_design,
)
from rewardlab.shaping.learners import (
    Curve,
    Episode,
    fast_model,
    policy_return,
    reinforce_update,
    sample_episode,
    softmax,
    table_reward,
)
from rewardlab.shaping.mdp import (
    FloatArray,
    TabularMDP,
    advantages,
    optimal_values,
    state_occupancy,
)


def room_region_features(mdp: TabularMDP, region: int = 3) -> FloatArray:
    """``Phi`` ``(S*A, (K+1)*A)``: overlapping ``region`` x ``region`` square indicators that
    each lie inside one room (every placement, so they cover the grid), plus a goal indicator,
    each per action. The 7x7 ROOM has 4 + 2 + 2 + 1 = 9 squares, so 40 columns.
    """
    size = int(mdp.meta["size"])
    goal = int(mdp.meta["goal"])
    mid = size // 2  # the walls run between mid and mid + 1
    spans = [(0, mid), (mid + 1, size - 1)]
    squares: list[tuple[int, int]] = []
    for ylo, yhi in spans:
        for xlo, xhi in spans:
            for y0 in range(ylo, yhi - region + 2):
                for x0 in range(xlo, xhi - region + 2):
                    squares.append((x0, y0))
    feats = np.zeros((mdp.n_states, len(squares) + 1))
    for s in range(size * size):
        x, y = s % size, s // size
        for i, (x0, y0) in enumerate(squares):
            if x0 <= x < x0 + region and y0 <= y < y0 + region:
                feats[s, i] = 1.0
    feats[goal, -1] = 1.0
    return per_action(feats, mdp.n_actions)


def per_action(state_features: FloatArray, n_actions: int) -> FloatArray:
    """``Phi[(s, a), (f, b)] = state_features[s, f] 1[a = b]``."""
    return np.asarray(np.kron(state_features, np.eye(n_actions)), dtype=np.float64)


@dataclass(frozen=True)
class AdaptiveTeacher:
    """The teacher's fixed quantities: the EXPRD problem, the reward features ``Phi`` and their
    invariance rows, the optimal advantage ``A_T`` under ``Rbar`` and the epsilon-greedy
    teacher's occupancy ``mu_T``."""

    problem: DesignProblem
    features: FloatArray
    rows: Rows
    advantage: FloatArray
    occupancy: FloatArray


def adaptive_teacher(
    mdp: TabularMDP,
    features: FloatArray,
    epsilon: float = 0.4,
    problem: DesignProblem | None = None,
) -> AdaptiveTeacher:
    """Compute the teacher's quantities (``epsilon`` = 0.4 as in the thesis's code)."""
    problem = problem or design_problem(mdp, horizons=())
    Q, _ = optimal_values(mdp)
    A_T = advantages(Q, problem.policy)
    greedy = np.zeros_like(Q)
    greedy[np.arange(mdp.n_states), problem.policy] = 1.0
    mu_T = state_occupancy(mdp, (1 - epsilon) * greedy + epsilon / mdp.n_actions)
    rows = invariance_rows(problem, features)
    return AdaptiveTeacher(problem, features, rows, A_T, mu_T)


def learner_aware_coefficients(
    A_T: FloatArray, mu_T: FloatArray, pi_L: FloatArray, mu_L: FloatArray
) -> FloatArray:
    """``c`` ``(S, A)`` with ``I_L(R) = sum c * R`` (see the module docstring).

    With ``u(s,a) = mu_T(s) mu_L(s) pi_L(a|s)^2 [A_T(s,a) - sum_b pi_L(b|s) A_T(s,b)]``,
    ``c(s,b) = u(s,b) - pi_L(b|s) sum_a u(s,a)``.
    """
    centred = A_T - (pi_L * A_T).sum(axis=1, keepdims=True)
    u = (mu_T * mu_L)[:, None] * pi_L**2 * centred
    return np.asarray(u - pi_L * u.sum(axis=1, keepdims=True))


def learner_aware_informativeness(
    A_T: FloatArray, mu_T: FloatArray, pi_L: FloatArray, mu_L: FloatArray, reward: FloatArray
) -> float:
    """``I_L(reward)`` computed literally from its definition (used to check the coefficients)."""
    a_c = A_T - (pi_L * A_T).sum(axis=1, keepdims=True)
    r_c = reward - (pi_L * reward).sum(axis=1, keepdims=True)
    mu_sa = mu_L[:, None] * pi_L
    return float((mu_T[:, None] * mu_sa * pi_L * a_c * r_c).sum())


def adaptive_design(mdp: TabularMDP, teacher: AdaptiveTeacher, pi_L: FloatArray) -> Design:
    """Solve the learner-aware LP for the learner policy ``pi_L``."""
    mu_L = state_occupancy(mdp, pi_L)
    c = learner_aware_coefficients(teacher.advantage, teacher.occupancy, pi_L, mu_L)
    Phi = teacher.features
    return solve_linear_design(teacher.problem, Phi, Phi.T @ c.ravel(), rows=teacher.rows)


@dataclass(frozen=True)
class ReinforceConfig:
    """REINFORCE schedule: update every ``every`` episodes on the last ``recent`` ones; the
    teacher (if adaptive) re-designs every ``redesign_every`` episodes.

    Defaults are the thesis's (step size 0.01, ``N_r = 5``, update every 2 episodes on the
    last 5) except ``episodes`` (the thesis ran 2 * 10^5). A much larger step size (0.5)
    saturates the softmax within a few updates on the designed rewards (returns of order
    +-100), and the learner-aware objective cannot pull a saturated learner back: its
    coefficients in a state vanish as ``pi_L(.|s)`` becomes deterministic
    (:func:`learner_aware_coefficients`); see ``experiments/shaping_tabular/README.md``.
    """

    episodes: int = 50_000
    lr: float = 0.01
    every: int = 2
    recent: int = 5
    redesign_every: int = 5
    eval_every: int = 20


def train_reinforce_with_teacher(
    mdp: TabularMDP,
    cfg: ReinforceConfig,
    seed: int,
    reward: FloatArray | None = None,
    teacher: AdaptiveTeacher | None = None,
) -> tuple[Curve, int]:
    """Train tabular REINFORCE on a fixed ``reward`` or on the adaptive teacher's rewards.

    Returns the learning curve (expected original return) and the number of LP solves.
    """
    if (reward is None) == (teacher is None):
        raise ValueError("give either a fixed reward or an adaptive teacher")
    fm = fast_model(mdp)
    rng = random.Random(seed)
    theta = np.zeros((mdp.n_states, mdp.n_actions))
    current = reward
    buffer: deque[Episode] = deque(maxlen=max(cfg.recent, 2 * cfg.redesign_every))
    xs, ys, solves = [], [], 0
    for ep in range(cfg.episodes + 1):
        if ep % cfg.eval_every == 0:
            xs.append(ep)
            ys.append(policy_return(mdp, theta))
        if ep == cfg.episodes:
            break
        if teacher is not None and ep % cfg.redesign_every == 0:
            current = adaptive_design(mdp, teacher, softmax(theta)).reward
            solves += 1
        assert current is not None
        buffer.append(sample_episode(fm, softmax(theta), table_reward(current), rng, mdp.R))
        if (ep + 1) % cfg.every == 0:
            theta = reinforce_update(theta, list(buffer)[-cfg.recent :], cfg.lr, mdp.gamma)
    return Curve(np.array(xs), np.array(ys)), solves
