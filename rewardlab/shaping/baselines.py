"""Baseline rewards: original, PBRS with the optimal value, invariance-only.

The two ExploRS ablations (bonus-only, shaping-only) are configurations of
:func:`rewardlab.shaping.explors.train_explors` (``use_shaping=False`` / ``use_bonus=False``).

Example:
    >>> import numpy as np
    >>> from rewardlab.shaping.mdp import line_mdp, optimal_values
    >>> mdp = line_mdp()
    >>> np.round(pbrs_optimal(mdp)[0], 3).tolist()      # -A*(0, stay), 0 for the optimal go
    [-0.081, 0.0]
"""

from __future__ import annotations

from rewardlab.shaping.exprd import Design, DesignProblem, solve_min_norm, support_features
from rewardlab.shaping.mdp import FloatArray, TabularMDP, optimal_values, potential_shaping


def original_reward(mdp: TabularMDP) -> FloatArray:
    """The MDP's own (sparse) reward."""
    return mdp.R.copy()


def pbrs_optimal(mdp: TabularMDP) -> FloatArray:
    """Potential-based shaping with ``Phi = V*``: ``Rbar + gamma E[V*(s')] - V*(s)``.

    Every ``(s, a)`` then pays ``Q*(s, a) - V*(s)`` in expectation: the most informative
    reward that keeps the optimal policies (dense, so not sparse like EXPRD's).
    """
    _, V = optimal_values(mdp)
    return potential_shaping(mdp, V)


def invariance_only(problem: DesignProblem, features: FloatArray | None = None) -> Design:
    """A reward chosen without any informativeness objective: the smallest (``|w|_1``) one
    that satisfies the invariance constraints and the bounds (all states by default).

    It keeps the teacher's optimal policies with their margins but, on ROOM, pays nothing at
    the goal: invariance alone does not make a reward useful to a learner.
    """
    mdp = problem.mdp
    if features is None:
        features = support_features(mdp.n_states, mdp.n_actions, mdp.nonterminal().tolist())
    return solve_min_norm(problem, features)
