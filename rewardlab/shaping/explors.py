"""ExploRS: exploration-guided, self-designed reward shaping (Devidze et al., NeurIPS 2022).

The learner is trained on ``r_hat(s, a, s') = rbar(s, a) + R_phi(s, a) + B(s')``:

- ``B(s') = lambda / sqrt((lambda / B_max)^2 + N(s'))`` is a count-based exploration bonus
  (:func:`exploration_bonus`; ``N`` counts visits, 0 for terminal states);
- ``R_phi = phi`` is a tabular intrinsic reward updated every ``N_r`` episodes on the recent
  episodes by a meta-gradient-style rule driven by the *extrinsic* return ``Gbar``
  (:func:`intrinsic_update`): ``phi(s, .) += eta_phi pi(a|s) (Gbar - V(s)) (onehot(a) -
  pi(.|s))`` summed over the buffer's steps, with a critic ``V`` on ``Gbar``
  (:func:`critic_update`).

``use_bonus=False`` gives the *shaping-only* ablation (SelfRS), ``use_shaping=False`` the
*bonus-only* one (ExploB), both off the original reward.

Example:
    >>> exploration_bonus(3.0)                     # lambda = B_max = 1: 1 / sqrt(1 + 3)
    0.5
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rewardlab.shaping.learners import (
    Curve,
    Episode,
    discounted_returns,
    fast_model,
    policy_return,
    reinforce_update,
    sample_episode,
    softmax,
)
from rewardlab.shaping.mdp import FloatArray, TabularMDP


def exploration_bonus(count: float, lam: float = 1.0, b_max: float = 1.0) -> float:
    """``lambda / sqrt((lambda / B_max)^2 + count)`` (equals ``B_max`` at ``count = 0``)."""
    return lam / math.sqrt((lam / b_max) ** 2 + count)


def intrinsic_update(
    phi: FloatArray, V: FloatArray, episodes: Sequence[Episode], gamma: float, eta: float
) -> FloatArray:
    """One meta-gradient-style step on the intrinsic reward table ``phi`` ``(S, A)``.

    For every step ``(s, a)`` of ``episodes``, with ``pi`` the learner's action probabilities
    recorded at that step and ``Gbar`` the extrinsic return-to-go from it:
    ``phi(s, .) += eta * pi(a|s) (Gbar - V(s)) (onehot(a) - pi(.|s))``. Returns a new table.
    """
    grad = np.zeros_like(phi)
    for ep in episodes:
        G = discounted_returns(ep.rewards_bar, gamma)
        for s, a, p, g in zip(ep.states, ep.actions, ep.probs, G, strict=True):
            w = p[a] * (g - V[s])
            grad[s] -= w * p
            grad[s, a] += w
    return phi + eta * grad


def critic_update(
    V: FloatArray, episodes: Sequence[Episode], gamma: float, eta: float
) -> FloatArray:
    """``V(s) += eta * sum_{steps at s} (Gbar - V(s)) / (number of steps)``; returns a new V."""
    grad = np.zeros_like(V)
    total = 0
    for ep in episodes:
        G = discounted_returns(ep.rewards_bar, gamma)
        for s, g in zip(ep.states, G, strict=True):
            grad[s] += g - V[s]
        total += len(ep)
    return V + eta * grad / max(total, 1)


@dataclass(frozen=True)
class ExploRSConfig:
    """Hyper-parameters (defaults: the thesis's, except ``episodes`` and ``lr``)."""

    episodes: int = 3000
    lr: float = 0.5
    every: int = 2
    recent: int = 5
    redesign_every: int = 5
    buffer: int = 10
    eta_phi: float = 0.01
    eta_critic: float = 0.01
    lam: float = 1.0
    b_max: float = 1.0
    use_bonus: bool = True
    use_shaping: bool = True
    eval_every: int = 25


@dataclass(frozen=True)
class ExploRSResult:
    """Learning curve, final learner policy, intrinsic reward table and visit counts."""

    curve: Curve
    policy: FloatArray
    phi: FloatArray
    counts: FloatArray


def train_explors(mdp: TabularMDP, cfg: ExploRSConfig, seed: int) -> ExploRSResult:
    """Train tabular REINFORCE on ``rbar + phi + bonus`` (each part switchable)."""
    fm = fast_model(mdp)
    rng = random.Random(seed)
    S, A = mdp.n_states, mdp.n_actions
    theta = np.zeros((S, A))
    phi = np.zeros((S, A))
    V = np.zeros(S)
    counts = [0.0] * S
    terminal = set(mdp.terminal)
    rbar = mdp.R.tolist()
    buffer: deque[Episode] = deque(maxlen=max(cfg.buffer, cfg.recent))
    xs, ys = [], []

    def count(s: int, a: int, s2: int) -> None:
        counts[s] += 1.0

    for ep in range(cfg.episodes + 1):
        if ep % cfg.eval_every == 0:
            xs.append(ep)
            ys.append(policy_return(mdp, theta))
        if ep == cfg.episodes:
            break
        phi_rows = phi.tolist()

        def reward(s: int, a: int, s2: int, phi_rows: list[list[float]] = phi_rows) -> float:
            r = rbar[s][a]
            if cfg.use_shaping:
                r += phi_rows[s][a]
            if cfg.use_bonus and s2 not in terminal:
                r += exploration_bonus(counts[s2], cfg.lam, cfg.b_max)
            return r

        hook = count if cfg.use_bonus else None
        buffer.append(sample_episode(fm, softmax(theta), reward, rng, mdp.R, on_step=hook))
        if cfg.use_shaping and (ep + 1) % cfg.redesign_every == 0:
            recent = list(buffer)[-cfg.buffer :]
            phi = intrinsic_update(phi, V, recent, mdp.gamma, cfg.eta_phi)
            V = critic_update(V, recent, mdp.gamma, cfg.eta_critic)
        if (ep + 1) % cfg.every == 0:
            theta = reinforce_update(theta, list(buffer)[-cfg.recent :], cfg.lr, mdp.gamma)
    return ExploRSResult(Curve(np.array(xs), np.array(ys)), softmax(theta), phi, np.array(counts))
