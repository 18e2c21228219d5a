"""EXPRD: explicable reward design by linear programming (Devidze et al., NeurIPS 2021).

Given a tabular MDP with original reward ``Rbar`` and the teacher's optimal policy ``pi*``,
find a reward ``R`` that

- keeps ``pi*`` optimal with the original margins (*invariance*):
  ``A_inf R >= delta`` where ``A_inf = (I^{pi*} - I)(I - gamma P^{pi*})^{-1}`` maps a reward to
  the optimality gaps ``Q_R(s, pi*(s)) - Q_R(s, a)`` and
  ``delta_s = min_{a not optimal} Qbar(s, pi*(s)) - Qbar(s, a)``;
- is bounded, ``|R| <= Rmax``, and *sparse*: ``R(s, .) = 0`` outside a set ``Z``;
- maximises the h-step *informativeness*
  ``I_H(R) = -1/(|H| |S|) sum_h sum_s max_{a not optimal} [delta_s - A_h R (s, a)]_+`` with
  ``A_h = (I^{pi*} - I) sum_{t=0..h} gamma^t (P^{pi*})^t``: how far short of the final margin
  the gaps seen within ``h`` steps fall.

The hinge is linearised with one slack per ``(h, s)`` and solved with HiGHS (``scipy.optimize.
linprog``). The optimum is rarely unique; a second LP picks, among the optimal rewards, the
one with the largest total invariance margin (in units of ``delta_s``). :func:`greedy_exprd` grows ``Z`` from the goal states by ``B`` states, each time the
one whose LP gives the highest informativeness.

The reward may be parameterised linearly, ``R = Phi w`` (``features``); the tabular case is a
column selection of the identity (:func:`support_features`). :mod:`rewardlab.shaping.expadard`
reuses the invariance rows with its own objective.

Example:
    >>> from rewardlab.shaping.mdp import line_mdp
    >>> problem = design_problem(line_mdp(), horizons=(1,))
    >>> [round(float(d), 3) for d in problem.delta[:2]]
    [0.081, 0.09]
    >>> round(solve_exprd(problem, support=[2]).informativeness, 5)   # Z = {goal}
    -0.02025
    >>> result = greedy_exprd(problem, budget=1)          # adding state 0 fixes it
    >>> result.support, abs(result.design.informativeness) < 1e-6
    ([2, 0], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from rewardlab.shaping.mdp import (
    BoolArray,
    FloatArray,
    IntArray,
    TabularMDP,
    optimal_action_mask,
    optimal_policy,
    optimal_values,
)

#: The thesis's horizon set ``H``.
DEFAULT_HORIZONS = (1, 4, 8, 16, 32)
#: The thesis's reward bound ``Rmax``.
DEFAULT_RMAX = 10.0
#: Relative slack on the margins so that ``Rbar`` itself stays strictly feasible numerically.
MARGIN_SLACK = 1e-5


@dataclass(frozen=True)
class DesignProblem:
    """Everything the LPs need about an MDP and its teacher.

    Attributes:
        mdp: the MDP (its ``R`` is the original reward ``Rbar``).
        policy: the teacher's deterministic optimal policy ``pi*`` ``(S,)``.
        optimal: ``optimal[s, a]`` is True when ``a`` is optimal under ``Rbar``.
        delta: margins ``delta_s`` (0 where every action is optimal).
        gap_inf: ``A_inf`` ``(SA, SA)``.
        gap_h: the ``A_h`` for ``h`` in ``horizons``.
        horizons: the horizon set ``H``.
        rmax: reward bound.
    """

    mdp: TabularMDP
    policy: IntArray
    optimal: BoolArray
    delta: FloatArray
    gap_inf: FloatArray
    gap_h: tuple[FloatArray, ...]
    horizons: tuple[int, ...]
    rmax: float

    @property
    def suboptimal(self) -> BoolArray:
        """``(S, A)`` mask of strictly suboptimal actions."""
        return np.asarray(~self.optimal)


@dataclass(frozen=True)
class Design:
    """A designed reward.

    Attributes:
        reward: ``(S, A)`` reward.
        weights: the LP's parameter vector ``w`` (``reward = Phi w``).
        informativeness: ``I_H(reward)`` (``nan`` when the problem has no horizons).
        objective: the LP's own objective value (sign as maximised).
        support: states with a non-zero reward entry.
    """

    reward: FloatArray
    weights: FloatArray
    informativeness: float
    objective: float
    support: tuple[int, ...]


@dataclass(frozen=True)
class GreedyResult:
    """Output of :func:`greedy_exprd`: the chosen ``Z`` (goal states first, then picks in
    order), the final design, and the informativeness after each addition."""

    support: list[int]
    design: Design
    history: list[float]


def invariance_margins(Q: FloatArray, optimal: BoolArray, policy: IntArray) -> FloatArray:
    """``delta_s = min_{a not optimal} Q(s, pi(s)) - Q(s, a)``, 0 when all actions are optimal."""
    S = Q.shape[0]
    q_pi = Q[np.arange(S), policy][:, None]
    gaps = np.where(optimal, np.inf, q_pi - Q)
    delta = gaps.min(axis=1)
    return np.asarray(np.where(np.isfinite(delta), delta, 0.0))


def sa_transition(mdp: TabularMDP, policy: IntArray) -> FloatArray:
    """``P^pi[(s, a), (s2, a2)] = P[s, a, s2] 1[a2 = pi(s2)]`` (state-action chain)."""
    S, A = mdp.n_states, mdp.n_actions
    out = np.zeros((S, A, S, A))
    out[:, :, np.arange(S), policy] = mdp.P
    return out.reshape(S * A, S * A)


def gap_operator(policy: IntArray, n_actions: int) -> FloatArray:
    """``I^pi - I``: maps ``Q`` (flattened) to ``Q(s, pi(s)) - Q(s, a)``."""
    S, A = policy.shape[0], n_actions
    I_pi = np.zeros((S, A, S, A))
    I_pi[np.arange(S), :, np.arange(S), policy] = 1.0
    return I_pi.reshape(S * A, S * A) - np.eye(S * A)


def gap_matrices(
    mdp: TabularMDP, policy: IntArray, horizons: Sequence[int]
) -> tuple[FloatArray, tuple[FloatArray, ...]]:
    """``(A_inf, (A_h for h in horizons))`` for the deterministic ``policy``."""
    SA = mdp.n_states * mdp.n_actions
    P_pi = sa_transition(mdp, policy)
    G = gap_operator(policy, mdp.n_actions)
    A_inf = G @ np.linalg.inv(np.eye(SA) - mdp.gamma * P_pi)
    out: list[FloatArray] = []
    acc, power = np.eye(SA), np.eye(SA)
    wanted = sorted(set(horizons))
    cum: dict[int, FloatArray] = {}
    for t in range(1, (wanted[-1] if wanted else 0) + 1):
        power = mdp.gamma * (power @ P_pi)
        acc = acc + power
        if t in wanted:
            cum[t] = G @ acc
    if 0 in wanted:
        cum[0] = G.copy()
    for h in horizons:
        out.append(cum[h])
    return A_inf, tuple(out)


def design_problem(
    mdp: TabularMDP,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    rmax: float = DEFAULT_RMAX,
) -> DesignProblem:
    """Solve ``mdp`` for the teacher (``pi*``, margins) and precompute the gap matrices."""
    Q, _ = optimal_values(mdp)
    optimal = optimal_action_mask(Q)
    policy = optimal_policy(Q)
    delta = invariance_margins(Q, optimal, policy)
    A_inf, A_h = gap_matrices(mdp, policy, horizons)
    return DesignProblem(mdp, policy, optimal, delta, A_inf, A_h, tuple(horizons), rmax)


def support_features(n_states: int, n_actions: int, support: Sequence[int]) -> FloatArray:
    """``Phi`` selecting the ``(s, a)`` entries of the states in ``support``."""
    cols = [s * n_actions + a for s in sorted(set(support)) for a in range(n_actions)]
    Phi = np.zeros((n_states * n_actions, len(cols)))
    Phi[cols, np.arange(len(cols))] = 1.0
    return Phi


def informativeness(problem: DesignProblem, reward: FloatArray) -> float:
    """``I_H(reward)`` (0 is the best value: every ``h``-step gap reaches its margin)."""
    if not problem.horizons:
        return float("nan")
    sub = problem.suboptimal
    total = 0.0
    for A_h in problem.gap_h:
        short = problem.delta[:, None] - (A_h @ reward.ravel()).reshape(sub.shape)
        short = np.where(sub, short, -np.inf).max(axis=1)
        total += float(np.clip(short[np.isfinite(short)], 0.0, None).sum())
    return -total / (len(problem.horizons) * problem.mdp.n_states)


@dataclass(frozen=True)
class Rows:
    """Linear constraints in ``w``: ``A_ub w <= b_ub`` and ``A_eq w = b_eq``."""

    A_ub: FloatArray
    b_ub: FloatArray
    A_eq: FloatArray
    b_eq: FloatArray


def invariance_rows(
    problem: DesignProblem, features: FloatArray, slack: float = MARGIN_SLACK
) -> Rows:
    """The invariance constraints on ``w`` for ``R = Phi w``.

    Strictly suboptimal ``(s, a)`` need ``A_inf R (s, a) >= delta_s / (1 + slack)``; actions
    tied with ``pi*(s)`` under ``Rbar`` stay tied (``A_inf R (s, a) = 0``), so the designed
    reward has exactly the teacher's set of optimal policies. Inequality rows are divided by
    their margin so that tiny margins stay above the solver's tolerance.
    """
    S, A = problem.optimal.shape
    rows = problem.gap_inf @ features
    not_pi = np.ones((S, A), dtype=bool)
    not_pi[np.arange(S), problem.policy] = False
    sub = problem.suboptimal.ravel()
    delta = np.broadcast_to(problem.delta[:, None], (S, A)).ravel()
    ineq = sub
    tied = not_pi.ravel() & ~sub
    tied &= np.abs(rows).max(axis=1) > 0
    eq = rows[tied]
    eq = eq / np.abs(eq).max(axis=1, keepdims=True)
    return Rows(
        A_ub=-rows[ineq] / delta[ineq][:, None],
        b_ub=np.full(int(ineq.sum()), -1.0 / (1.0 + slack)),
        A_eq=eq,
        b_eq=np.zeros(eq.shape[0]),
    )


def _bounds_rows(
    features: FloatArray, rmax: float
) -> tuple[FloatArray, FloatArray, list[tuple[float | None, float | None]]]:
    """``|Phi w| <= rmax`` as variable bounds (column selections) or as ``<=`` rows."""
    k = features.shape[1]
    binary = np.all((features == 0) | (features == 1))
    if binary and np.all(features.sum(axis=0) == 1) and np.all(features.sum(axis=1) <= 1):
        return np.zeros((0, k)), np.zeros(0), [(-rmax, rmax)] * k
    used = np.abs(features).sum(axis=1) > 0
    Fu = features[used]
    A = np.vstack([Fu, -Fu])
    return A, np.full(A.shape[0], rmax), [(None, None)] * k


def _linprog(
    c: FloatArray,
    A_ub: FloatArray,
    b_ub: FloatArray,
    A_eq: FloatArray,
    b_eq: FloatArray,
    bounds: list[tuple[float | None, float | None]],
) -> FloatArray:
    eq = {"A_eq": A_eq, "b_eq": b_eq} if A_eq.shape[0] else {}
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs", **eq)
    if res.status != 0:
        raise RuntimeError(f"LP failed: {res.message}")
    return np.asarray(res.x, dtype=float)


def _lexicographic_linprog(
    c: FloatArray,
    A_ub: FloatArray,
    b_ub: FloatArray,
    A_eq: FloatArray,
    b_eq: FloatArray,
    bounds: list[tuple[float | None, float | None]],
    secondary: FloatArray | None,
) -> FloatArray:
    """Minimise ``c . x``; then, among the minimisers (up to ``1e-7``), minimise
    ``secondary . x`` (skipped when ``secondary`` is None)."""
    x = _linprog(c, A_ub, b_ub, A_eq, b_eq, bounds)
    if secondary is None:
        return x
    best = float(c @ x)
    A2 = np.vstack([A_ub, c[None, :]])
    b2 = np.concatenate([b_ub, [best + 1e-7 * max(1.0, abs(best))]])
    return _linprog(secondary, A2, b2, A_eq, b_eq, bounds)


def _margin_tie_break(rows: Rows, n_vars: int) -> FloatArray:
    """Secondary objective (minimised) = minus the total invariance margin in units of
    ``delta_s``: among equally informative rewards, prefer the one separating the teacher's
    actions most. (A linear objective leaves many reward entries undetermined; a simplex solver
    would return an arbitrary vertex, an interior-point solver, as in the thesis's code, a
    central point; this rule is solver-independent.)"""
    out = np.zeros(n_vars)
    out[: rows.A_ub.shape[1]] = rows.A_ub.sum(axis=0)
    return out


def _design(problem: DesignProblem, features: FloatArray, w: FloatArray, obj: float) -> Design:
    S, A = problem.optimal.shape
    reward = (features @ w).reshape(S, A)
    reward[np.abs(reward) < 1e-10] = 0.0
    support = tuple(int(s) for s in np.flatnonzero(np.abs(reward).sum(axis=1) > 0))
    info = informativeness(problem, reward)
    return Design(reward, w, info, obj, support)


def solve_linear_design(
    problem: DesignProblem,
    features: FloatArray,
    objective: FloatArray,
    tie_break: bool = True,
    rows: Rows | None = None,
) -> Design:
    """Maximise ``objective . w`` subject to invariance and ``|Phi w| <= Rmax``.

    Ties are broken toward the largest total invariance margin (``tie_break``). ``rows`` may
    pass precomputed :func:`invariance_rows` when the same features are used repeatedly.
    """
    inv = invariance_rows(problem, features) if rows is None else rows
    A_b, b_b, bounds = _bounds_rows(features, problem.rmax)
    k = features.shape[1]
    scale = float(np.abs(objective).max()) or 1.0
    A_ub, b_ub = np.vstack([inv.A_ub, A_b]), np.concatenate([inv.b_ub, b_b])
    second = _margin_tie_break(inv, k) if tie_break else None
    w = _lexicographic_linprog(-objective / scale, A_ub, b_ub, inv.A_eq, inv.b_eq, bounds, second)
    return _design(problem, features, w, float(objective @ w))


def solve_min_norm(problem: DesignProblem, features: FloatArray) -> Design:
    """The reward ``Phi w`` with the smallest ``|w|_1`` satisfying invariance and the bounds."""
    inv = invariance_rows(problem, features)
    A_b, b_b, bounds = _bounds_rows(features, problem.rmax)
    k = features.shape[1]
    eye = np.eye(k)
    A_ub = np.block(
        [
            [inv.A_ub, np.zeros((inv.A_ub.shape[0], k))],
            [A_b, np.zeros((A_b.shape[0], k))],
            [eye, -eye],
            [-eye, -eye],
        ]
    )
    b_ub = np.concatenate([inv.b_ub, b_b, np.zeros(2 * k)])
    A_eq = np.hstack([inv.A_eq, np.zeros((inv.A_eq.shape[0], k))])
    c = np.concatenate([np.zeros(k), np.ones(k)])
    x = _linprog(c, A_ub, b_ub, A_eq, inv.b_eq, bounds + [(0.0, None)] * k)
    return _design(problem, features, x[:k], -float(c @ x))


def solve_exprd(
    problem: DesignProblem,
    support: Sequence[int] | None = None,
    features: FloatArray | None = None,
    tie_break: bool = True,
) -> Design:
    """Solve the EXPRD LP over ``support`` (a set of states) or a feature matrix ``Phi``.

    Args:
        problem: from :func:`design_problem` (needs at least one horizon).
        support: the sparsity set ``Z``; ``R(s, .)`` is a free variable for ``s`` in ``Z``
            and 0 elsewhere. Ignored when ``features`` is given.
        features: ``Phi`` of shape ``(S*A, k)``; ``R = Phi w``.
        tie_break: among the maximisers of ``I_H``, return the one with the largest total
            invariance margin (a second LP); off, the solver's vertex is returned.
    """
    if not problem.horizons:
        raise ValueError("EXPRD needs at least one horizon")
    S, A = problem.optimal.shape
    if features is None:
        if support is None:
            raise ValueError("give support or features")
        features = support_features(S, A, support)
    k = features.shape[1]
    sub = problem.suboptimal
    states = [s for s in range(S) if sub[s].any()]
    n_t = len(states) * len(problem.horizons)
    # variables: [w (k), u (n_t)] with u = t / delta_s the shortfall in units of the margin;
    # minimise sum(delta_s u) / (|H| |S|), rows: 1 - A_h Phi w / delta_s <= u, u >= 0
    weight = np.tile(problem.delta[states], len(problem.horizons))
    c = np.concatenate([np.zeros(k), weight / (len(problem.horizons) * S)])
    blocks, rhs = [], []
    row_s, row_a = np.nonzero(sub)
    pos = {s: i for i, s in enumerate(states)}
    t_col = np.array([pos[int(s)] for s in row_s])
    for j, A_h in enumerate(problem.gap_h):
        G = (A_h @ features)[row_s * A + row_a] / problem.delta[row_s][:, None]
        T = np.zeros((len(row_s), n_t))
        T[np.arange(len(row_s)), j * len(states) + t_col] = -1.0
        blocks.append(np.hstack([-G, T]))
        rhs.append(-np.ones(len(row_s)))
    inv = invariance_rows(problem, features)
    A_b, b_b, w_bounds = _bounds_rows(features, problem.rmax)
    blocks += [np.hstack([inv.A_ub, np.zeros((inv.A_ub.shape[0], n_t))])]
    blocks += [np.hstack([A_b, np.zeros((A_b.shape[0], n_t))])]
    rhs += [inv.b_ub, b_b]
    A_eq = np.hstack([inv.A_eq, np.zeros((inv.A_eq.shape[0], n_t))])
    bounds = w_bounds + [(0.0, None)] * n_t
    second = _margin_tie_break(inv, len(c)) if tie_break else None
    x = _lexicographic_linprog(
        c, np.vstack(blocks), np.concatenate(rhs), A_eq, inv.b_eq, bounds, second
    )
    return _design(problem, features, x[:k], -float(c @ x))


def goal_states(mdp: TabularMDP) -> list[int]:
    """States where the original reward is non-zero (the initial ``Z``)."""
    return [int(s) for s in np.flatnonzero(np.abs(mdp.R).sum(axis=1) > 0)]


def greedy_exprd(
    problem: DesignProblem,
    budget: int,
    candidates: Sequence[int] | None = None,
    initial: Sequence[int] | None = None,
) -> GreedyResult:
    """Grow ``Z`` from ``initial`` (default: the goal states) by ``budget`` states, greedily.

    Each round solves the LP for every remaining candidate and keeps the one with the highest
    informativeness (ties: the first candidate). ``|Z| <= len(initial) + budget``. The final
    design is re-solved with the margin tie-break.
    """
    mdp = problem.mdp
    support = list(goal_states(mdp) if initial is None else initial)
    if candidates is None:
        candidates = [int(s) for s in mdp.nonterminal() if s not in support]
    design = solve_exprd(problem, support, tie_break=False)
    history = [design.informativeness]
    for _ in range(budget):
        best: Design | None = None
        best_s = -1
        for s in candidates:
            if s in support:
                continue
            d = solve_exprd(problem, support + [s], tie_break=False)
            if best is None or d.informativeness > best.informativeness + 1e-12:
                best, best_s = d, s
        if best is None:
            break
        support.append(best_s)
        history.append(best.informativeness)
    return GreedyResult(support, solve_exprd(problem, support), history)
