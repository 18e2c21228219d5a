"""How many experts, of which polynomial order, for a given amount of data.

Mendes & Jiang ("Convergence rates for mixture-of-experts", arXiv 1110.2058) bound the
Kullback-Leibler risk of the maximum-likelihood mixture of ``m`` experts, each a (generalized
linear) polynomial regression of order ``k`` in ``s`` covariates, when the true regression
function has smoothness ``alpha`` (a Sobolev class with ``alpha`` derivatives):

    KL = O_p( m^(-2 min(alpha, k + 1) / s)  +  (m J_k + v_m) log(n) / n )

- the first term is the approximation error: ``m`` local polynomials of order ``k`` approximate
  a function of smoothness ``alpha``; more experts or a higher order (up to ``alpha - 1``) help;
- the second is the estimation error: ``J_k = C(s + k, k)`` coefficients per expert and
  ``v_m = (m - 1)(s + 1)`` softmax-gate parameters, each paying ``log(n) / n``.

:func:`suggest_experts` minimizes ``C_a * approx + C_e * estimation`` over ``m`` and ``k``. The
constants ``C_a``, ``C_e`` are not given by the theory (they depend on the target function, the
noise and the covariate distribution); both default to 1, and :func:`calibrate_constants` fits
them to measured risks (``experiments/moe_theory`` compares both against a sweep).

Assumptions, stated with every suggestion: covariates in a bounded set (``[0, 1]^s`` in the
paper), the target in the Sobolev class with ``alpha`` derivatives, one-parameter
exponential-family experts (Gaussian with a fixed variance, Bernoulli, Poisson, ...) with
polynomial predictors, softmax gating with linear logits, the MLE computed exactly (in practice
EM reaches a local maximum), and rates up to constants: use the suggestion as an order of
magnitude, not a tuned value.

Example::

    >>> from rewardlab.moe import suggest_experts
    >>> s = suggest_experts(10_000, s=1, alpha=2.0, k_choices=(0, 1, 2))
    >>> (s.m, s.k)
    (4, 1)
    >>> suggest_experts(1_000_000, s=1, alpha=2.0, k_choices=(0, 1, 2)).m > s.m
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize


@dataclass(frozen=True)
class RateConstants:
    """Constants in front of the two terms of the risk bound."""

    approx: float = 1.0
    """``C_a``: multiplies ``m^(-2 min(alpha, k + 1) / s)``."""
    estimation: float = 1.0
    """``C_e``: multiplies ``(m J_k + v_m) log(n) / n``."""


def params_per_expert(s: int, k: int) -> int:
    """``J_k``: coefficients of a polynomial of order ``k`` in ``s`` covariates."""
    return math.comb(s + k, k)


def gate_params(m: int, s: int) -> int:
    """``v_m``: free parameters of a softmax gate with linear logits (one expert as reference)."""
    return (m - 1) * (s + 1)


def risk_terms(
    n: float, m: int, k: int, s: int, alpha: float, constants: RateConstants = RateConstants()
) -> tuple[float, float]:
    """``(C_a * approximation, C_e * estimation)`` terms of the Mendes & Jiang bound."""
    approx = constants.approx * m ** (-2.0 * min(alpha, k + 1.0) / s)
    est = constants.estimation * (m * params_per_expert(s, k) + gate_params(m, s)) * math.log(n) / n
    return approx, est


def risk_bound(
    n: float, m: int, k: int, s: int, alpha: float, constants: RateConstants = RateConstants()
) -> float:
    """The bound ``C_a * approximation + C_e * estimation`` on the KL risk."""
    return sum(risk_terms(n, m, k, s, alpha, constants))


def optimal_rate_exponent(s: int, alpha: float, k: int) -> float:
    """Exponent ``r`` of the best achievable risk ``(n / log n)^(-r)`` for order ``k`` when ``m``
    is tuned to ``n``: ``r = 2b / (s + 2b)``, ``b = min(alpha, k + 1)``."""
    b = min(alpha, k + 1.0)
    return 2 * b / (s + 2 * b)


@dataclass(frozen=True)
class Suggestion:
    """Number of experts and polynomial order minimizing the risk bound for ``n`` observations."""

    n: int
    """Data size the suggestion is for."""
    m: int
    """Suggested number of experts."""
    k: int
    """Suggested polynomial order of the experts."""
    bound: float
    """The bound at ``(m, k)`` (meaningful relative to other ``(m, k)``, up to the constants)."""
    approx_term: float
    """Its approximation part ``C_a m^(-2 min(alpha, k+1)/s)``."""
    estimation_term: float
    """Its estimation part ``C_e (m J_k + v_m) log(n)/n``."""
    table: tuple[tuple[int, int, float], ...] = field(repr=False)
    """``(m, k, bound)`` for every candidate, in search order."""
    assumptions: str = field(repr=False)
    """The assumptions behind the numbers, in one paragraph."""


def suggest_experts(
    n: int,
    s: int,
    alpha: float = 2.0,
    k_choices: Sequence[int] = (0, 1, 2, 3),
    *,
    m_max: int = 64,
    constants: RateConstants = RateConstants(),
) -> Suggestion:
    """Suggest ``(m, k)`` for ``n`` observations of ``s`` covariates from the Mendes & Jiang
    trade-off (see the module docstring for the bound and its assumptions).

    ``alpha``: smoothness of the target regression function (derivatives); ``k_choices``: the
    polynomial orders allowed (``(1,)`` to choose ``m`` only); ``m_max``: largest ``m`` tried.
    Ties go to the smaller model. Raises ``ValueError`` for out-of-range arguments.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if s < 1:
        raise ValueError(f"s must be >= 1, got {s}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if m_max < 1:
        raise ValueError(f"m_max must be >= 1, got {m_max}")
    ks = sorted(set(int(k) for k in k_choices))
    if not ks or ks[0] < 0:
        raise ValueError(f"k_choices must be non-negative orders, got {tuple(k_choices)}")
    table = tuple(
        (m, k, risk_bound(n, m, k, s, alpha, constants)) for k in ks for m in range(1, m_max + 1)
    )
    best = min(table, key=lambda row: (row[2], row[0] * params_per_expert(s, row[1])))
    approx, est = risk_terms(n, best[0], best[1], s, alpha, constants)
    assumptions = (
        f"Mendes & Jiang bound C_a m^(-2 min(alpha, k+1)/s) + C_e (m J_k + v_m) log(n)/n with "
        f"alpha={alpha}, s={s}, C_a={constants.approx:g}, C_e={constants.estimation:g}, "
        f"J_k=C(s+k,k), v_m=(m-1)(s+1): bounded covariates, target with {alpha} derivatives, "
        "one-parameter exponential-family polynomial experts, softmax gate with linear logits, "
        "exact MLE; an order of magnitude, not a tuned value."
    )
    return Suggestion(n, best[0], best[1], best[2], approx, est, table, assumptions)


def calibrate_constants(
    records: Sequence[tuple[float, int, int, float]], s: int, alpha: float
) -> RateConstants:
    """Fit ``C_a, C_e >= 0`` to measured ``(n, m, k, risk)`` records by non-negative least
    squares on relative errors (each record weighted by ``1 / risk``)."""
    if len(records) < 2:
        raise ValueError(f"need at least 2 records, got {len(records)}")
    rows, target = [], []
    for n, m, k, risk in records:
        if risk <= 0 or not math.isfinite(risk):
            continue
        a, e = risk_terms(n, m, k, s, alpha)
        rows.append([a / risk, e / risk])
        target.append(1.0)
    if len(rows) < 2:
        raise ValueError("need at least 2 records with a positive, finite risk")
    coefs, _ = optimize.nnls(np.array(rows), np.array(target))
    return RateConstants(float(coefs[0]), float(coefs[1]))
