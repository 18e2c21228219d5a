"""Tabular learners: epsilon-greedy Q-learning and softmax REINFORCE.

The update rules are small pure functions (:func:`q_update`, :func:`reinforce_gradient`);
the loops sample from the MDP's model through :class:`FastModel` (plain Python lists and
:func:`bisect.bisect`, a few microseconds a step, which keeps multi-seed experiments at a few
minutes on two cores). The gymnasium envs in :mod:`rewardlab.shaping.tabular_envs` have the
same dynamics (the tests check it).

Learning progress is measured exactly, without rollouts: the expected discounted return of
the learner's current policy under the *original* reward over the env's horizon
(:func:`rewardlab.shaping.mdp.expected_return`).

Example:
    >>> q_update(q_sa=0.0, reward=1.0, next_value=2.0, alpha=0.5, gamma=0.9)
    1.4
    >>> import numpy as np
    >>> step = Episode(states=[0], actions=[0], rewards=[1.0], rewards_bar=[1.0],
    ...                next_states=[1], probs=[np.array([0.5, 0.5])])
    >>> reinforce_gradient([step], softmax(np.zeros((2, 2))), gamma=0.9)[0].tolist()
    [0.5, -0.5]
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rewardlab.shaping.mdp import (
    FloatArray,
    IntArray,
    TabularMDP,
    as_stochastic,
    expected_return,
    greedy_stochastic,
)

#: ``reward(s, a, s_next)`` seen by a learner.
RewardFn = Callable[[int, int, int], float]


@dataclass(frozen=True)
class FastModel:
    """Sparse, list-based sampler over a :class:`TabularMDP` (for the learners' inner loops)."""

    next_states: list[list[list[int]]]
    cum_probs: list[list[list[float]]]
    start_states: list[int]
    start_cum: list[float]
    terminal: frozenset[int]
    gamma: float
    horizon: int

    def sample_next(self, s: int, a: int, u: float) -> int:
        """Next state for uniform draw ``u`` in ``[0, 1)``."""
        cum = self.cum_probs[s][a]
        return self.next_states[s][a][min(bisect_right(cum, u), len(cum) - 1)]

    def sample_start(self, u: float) -> int:
        """Start state for uniform draw ``u``."""
        i = min(bisect_right(self.start_cum, u), len(self.start_cum) - 1)
        return self.start_states[i]


def fast_model(mdp: TabularMDP) -> FastModel:
    """Build the sampler for ``mdp``."""
    nxt: list[list[list[int]]] = []
    cum: list[list[list[float]]] = []
    for s in range(mdp.n_states):
        nxt.append([])
        cum.append([])
        for a in range(mdp.n_actions):
            idx = np.flatnonzero(mdp.P[s, a] > 0)
            nxt[s].append(idx.tolist())
            cum[s].append(np.cumsum(mdp.P[s, a, idx]).tolist())
    starts = np.flatnonzero(mdp.start > 0)
    return FastModel(
        nxt,
        cum,
        starts.tolist(),
        np.cumsum(mdp.start[starts]).tolist(),
        frozenset(mdp.terminal),
        mdp.gamma,
        mdp.horizon,
    )


def table_reward(reward: FloatArray) -> RewardFn:
    """A :data:`RewardFn` reading an ``(S, A)`` table."""
    table = np.asarray(reward, dtype=float).tolist()

    def fn(s: int, a: int, s_next: int) -> float:
        return float(table[s][a])

    return fn


@dataclass(frozen=True)
class Curve:
    """A learning curve: expected original return at the given episode counts."""

    episodes: IntArray
    returns: FloatArray


# ----------------------------------------------------------------------------- Q-learning


def q_update(q_sa: float, reward: float, next_value: float, alpha: float, gamma: float) -> float:
    """Q-learning: ``q + alpha (r + gamma max_b Q(s', b) - q)`` (``next_value`` = the max)."""
    return q_sa + alpha * (reward + gamma * next_value - q_sa)


def _greedy(q_row: list[float], rng: random.Random, random_ties: bool) -> int:
    best = max(q_row)
    if not random_ties:
        return q_row.index(best)
    ties = [a for a, q in enumerate(q_row) if q == best]
    return ties[0] if len(ties) == 1 else ties[int(rng.random() * len(ties))]


def run_q_learning(
    mdp: TabularMDP,
    reward: FloatArray,
    episodes: int,
    *,
    alpha: float = 0.5,
    epsilon: float = 0.1,
    seed: int = 0,
    eval_every: int = 50,
    random_ties: bool = False,
) -> Curve:
    """Epsilon-greedy Q-learning on ``reward``, Q initialised to 0.

    The greedy action is the first maximiser (numpy's ``argmax``, as in the thesis's code), or
    a uniformly random one with ``random_ties``; the evaluated policy acts the same way.

    Episodes end on a terminal state or after ``mdp.horizon`` steps (bootstrapping through the
    time limit). Every ``eval_every`` episodes the greedy policy (uniform over tied maxima) is
    evaluated exactly on ``mdp.R``.
    """
    fm = fast_model(mdp)
    rng = random.Random(seed)
    A = mdp.n_actions
    R = np.asarray(reward, dtype=float).tolist()
    Q = [[0.0] * A for _ in range(mdp.n_states)]
    xs, ys = [], []
    for ep in range(episodes + 1):
        if ep % eval_every == 0:
            xs.append(ep)
            ys.append(expected_return(mdp, _eval_policy(Q, random_ties), horizon=mdp.horizon))
        if ep == episodes:
            break
        s = fm.sample_start(rng.random())
        for _ in range(fm.horizon):
            a = int(rng.random() * A) if rng.random() < epsilon else _greedy(Q[s], rng, random_ties)
            s2 = fm.sample_next(s, a, rng.random())
            Q[s][a] = q_update(Q[s][a], R[s][a], max(Q[s2]), alpha, fm.gamma)
            s = s2
            if s in fm.terminal:
                break
    return Curve(np.array(xs), np.array(ys))


def _eval_policy(Q: list[list[float]], random_ties: bool) -> FloatArray:
    q = np.array(Q)
    if random_ties:
        return greedy_stochastic(q)
    return as_stochastic(np.argmax(q, axis=1), q.shape[1])


# ----------------------------------------------------------------------------- REINFORCE


def softmax(theta: FloatArray) -> FloatArray:
    """Row-wise softmax of the ``(S, A)`` preferences."""
    z = theta - theta.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass
class Episode:
    """One rollout: per step the state, action, learner reward ``r_hat``, original reward
    ``r_bar``, next state and the learner's action probabilities at that time."""

    states: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    rewards_bar: list[float] = field(default_factory=list)
    next_states: list[int] = field(default_factory=list)
    probs: list[FloatArray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.states)


def discounted_returns(rewards: Sequence[float], gamma: float) -> FloatArray:
    """Return-to-go ``G_t = sum_k gamma^k r_{t+k}``.

    Example:
        >>> discounted_returns([1.0, 0.0, 2.0], 0.5).tolist()
        [1.5, 1.0, 2.0]
    """
    out = np.zeros(len(rewards))
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def sample_episode(
    fm: FastModel,
    policy: FloatArray,
    reward_fn: RewardFn,
    rng: random.Random,
    reward_bar: FloatArray,
    on_step: Callable[[int, int, int], None] | None = None,
) -> Episode:
    """Roll out ``policy`` for at most ``fm.horizon`` steps.

    ``reward_fn(s, a, s')`` is the learner's reward; ``on_step`` (if given) is called after
    each step, e.g. to update visit counts.
    """
    cum = np.cumsum(policy, axis=1).tolist()
    rbar = reward_bar.tolist()
    ep = Episode()
    s = fm.sample_start(rng.random())
    for _ in range(fm.horizon):
        row = cum[s]
        a = min(bisect_right(row, rng.random() * row[-1]), len(row) - 1)
        s2 = fm.sample_next(s, a, rng.random())
        ep.states.append(s)
        ep.actions.append(a)
        ep.rewards.append(reward_fn(s, a, s2))
        ep.rewards_bar.append(rbar[s][a])
        ep.next_states.append(s2)
        ep.probs.append(policy[s])
        if on_step is not None:
            on_step(s, a, s2)
        s = s2
        if s in fm.terminal:
            break
    return ep


def reinforce_gradient(episodes: Sequence[Episode], policy: FloatArray, gamma: float) -> FloatArray:
    """``sum_t G_hat_t (onehot(a_t) - pi(.|s_t)) / (number of steps)`` over ``episodes``.

    The gradient of the softmax policy's log-likelihood weighted by the learner's return-to-go,
    averaged over all steps (as in the thesis's tabular REINFORCE).
    """
    grad = np.zeros_like(policy)
    total = 0
    for ep in episodes:
        G = discounted_returns(ep.rewards, gamma)
        for s, a, g in zip(ep.states, ep.actions, G, strict=True):
            grad[s] -= g * policy[s]
            grad[s, a] += g
        total += len(ep)
    return grad / max(total, 1)


def reinforce_update(
    theta: FloatArray, episodes: Sequence[Episode], lr: float, gamma: float
) -> FloatArray:
    """One REINFORCE ascent step; returns new preferences."""
    return theta + lr * reinforce_gradient(episodes, softmax(theta), gamma)


def policy_return(mdp: TabularMDP, theta: FloatArray) -> float:
    """Expected original return of the softmax policy over the env's horizon."""
    return expected_return(mdp, softmax(theta), horizon=mdp.horizon)
