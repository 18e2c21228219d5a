"""Maximum-likelihood (EM) estimation of mixtures of experts, as studied in the MoE theory papers.

The conditional density of a response ``y`` given covariates ``x`` (``d`` of them) is

    p(y | x) = w_sh * sum_s omega_s f(y | x; kappa_s)  +  (1 - w_sh) * sum_i g_i(x) f(y | x; eta_i)

with ``S`` *shared* experts (always on, input-independent weights ``omega``; total weight
``w_sh`` fixed, 1/2 in arXiv 2505.10860, eq. 1; ``w_sh = 0`` without shared experts) and ``m``
*routed* experts mixed by a gate ``g(x)``:

- ``softmax``: ``g = softmax(beta_1^T x + beta_0)``;
- ``modified_softmax``: ``g = softmax(beta_1^T M(x) + beta_0)`` with a bounded, elementwise
  transform ``M`` (``tanh``, ``sigmoid`` or ``rational`` = ``x / sqrt(1 + x^2)``), the fix of
  arXiv 2310.14188 for the slow rates of softmax gating when expert parameters vanish;
- ``normalized_sigmoid``: ``g_i = sigma(z_i) / sum_j sigma(z_j)``, ``z = beta_1^T x + beta_0``
  (DeepSeek-V3's gate, arXiv 2505.10860 appendix A);

each optionally restricted to its ``top_k`` largest scores (the others get weight 0, the chosen
ones are renormalized). Experts are polynomials of order ``k`` in ``x`` (all monomials of total
degree <= k, ``J_k = C(d + k, k)`` coefficients):

- ``gaussian``: ``f(y | x) = N(y; eta^T phi_k(x), nu)`` (regression);
- ``multinomial``: ``P(y = c | x) = softmax_c(A phi_k(x))`` over ``C`` classes, the last class the
  reference (logit 0) (classification; ``k = 1`` is the multinomial logistic expert of
  arXiv 2310.14188).

:func:`fit_em` maximizes the likelihood by EM. The shared weights and the Gaussian experts have
closed-form M-steps; the gate (all kinds) and the multinomial experts are updated by damped
Newton steps on the expected complete-data log-likelihood, warm-started at the current values,
and a step is kept only if it does not decrease that objective (for top-K gates, evaluated with
the selection the new parameters make; the step is halved until it does). That is a generalized
EM: the observed-data log-likelihood never decreases from one iteration to the next
(``FitResult.loglik_history``), and limit points are stationary points under the usual
regularity conditions (Wu, 1983) -- a local, not necessarily the global, maximum; several starts (``EMConfig.n_init``) or a start near the
truth (:func:`near_truth_init`, as the papers' simulations do) address that.

Example (recover a two-expert Gaussian mixture of linear experts)::

    >>> import numpy as np
    >>> from rewardlab.moe.estimation import MixtureOfExperts, MoEParams, MoESpec, fit_em
    >>> spec = MoESpec(n_experts=2, order=1)
    >>> truth = MixtureOfExperts(spec, MoEParams(
    ...     gate_slope=[[4.0], [0.0]], gate_bias=[0.0, 0.0],
    ...     coef=[[1.0, 2.0], [-1.0, -2.0]], var=[0.05, 0.05]))
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, size=2000)
    >>> y = truth.sample(x, rng)
    >>> fit = fit_em(x, y, spec)
    >>> bool(np.all(np.diff(fit.loglik_history) >= -1e-9))
    True
    >>> order = np.argsort(fit.model.params.coef[:, 0, 0])   # label switching
    >>> np.round(fit.model.params.coef[order, 0, :], 1)
    array([[-1., -2.],
           [ 1.,  2.]])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

Array = NDArray[np.float64]
Mask = NDArray[np.bool_]
GateKind = Literal["softmax", "modified_softmax", "normalized_sigmoid"]
ExpertKind = Literal["gaussian", "multinomial"]
Transform = Literal["tanh", "sigmoid", "rational"]

GATES: tuple[GateKind, ...] = ("softmax", "modified_softmax", "normalized_sigmoid")
EXPERTS: tuple[ExpertKind, ...] = ("gaussian", "multinomial")
TRANSFORMS: tuple[Transform, ...] = ("tanh", "sigmoid", "rational")


@dataclass(frozen=True)
class MoESpec:
    """Structure of a mixture of experts (what is fitted, not the parameter values)."""

    n_experts: int
    """Number of routed experts ``m`` (mixed by the gate)."""
    order: int = 1
    """Polynomial order ``k`` of every expert (0 = constant, 1 = linear, ...)."""
    expert: ExpertKind = "gaussian"
    """``gaussian`` (regression, one variance per expert) or ``multinomial`` (classification)."""
    n_classes: int = 2
    """Number of classes ``C`` of a ``multinomial`` expert (ignored for ``gaussian``)."""
    gate: GateKind = "softmax"
    """``softmax``, ``modified_softmax`` (softmax of ``beta_1^T M(x) + beta_0``) or
    ``normalized_sigmoid``."""
    transform: Transform = "tanh"
    """The bounded transform ``M`` of ``modified_softmax``, applied elementwise."""
    top_k: int | None = None
    """Keep only the ``top_k`` largest gate scores per input (sparse gating); ``None`` = dense."""
    n_shared: int = 0
    """Number of shared (always-on) experts ``S``; 0 = no shared experts."""
    shared_weight: float = 0.5
    """Total mixture weight of the shared experts when ``n_shared > 0`` (fixed, not fitted;
    1/2 as in arXiv 2505.10860)."""

    def __post_init__(self) -> None:
        if self.n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {self.n_experts}")
        if self.order < 0:
            raise ValueError(f"order must be >= 0, got {self.order}")
        if self.expert not in EXPERTS:
            raise ValueError(f"expert must be one of {EXPERTS}, got {self.expert!r}")
        if self.expert == "multinomial" and self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {self.gate!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if self.top_k is not None and not 1 <= self.top_k <= self.n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={self.n_experts}], got {self.top_k}")
        if self.n_shared < 0:
            raise ValueError(f"n_shared must be >= 0, got {self.n_shared}")
        if self.n_shared and not 0.0 < self.shared_weight < 1.0:
            raise ValueError(f"shared_weight must be in (0, 1), got {self.shared_weight}")

    @property
    def n_outputs(self) -> int:
        """Rows ``P`` of an expert's coefficient matrix: 1 (Gaussian mean) or ``C - 1`` logits."""
        return 1 if self.expert == "gaussian" else self.n_classes - 1

    @property
    def n_components(self) -> int:
        """Shared plus routed experts."""
        return self.n_shared + self.n_experts


def n_poly_terms(d: int, order: int) -> int:
    """``J_k``: number of monomials of total degree <= ``order`` in ``d`` variables."""
    return math.comb(d + order, order)


def polynomial_features(x: ArrayLike, order: int) -> Array:
    """All monomials of total degree <= ``order`` of the rows of ``x`` (``(n, d)`` or ``(n,)``),
    constant first, then by degree: ``(n, J_k)``."""
    xs = _as_2d(x)
    cols = [np.ones(len(xs))]
    for degree in range(1, order + 1):
        for combo in itertools.combinations_with_replacement(range(xs.shape[1]), degree):
            cols.append(np.prod(xs[:, list(combo)], axis=1))
    return np.stack(cols, axis=1)


def gate_transform(x: ArrayLike, transform: Transform) -> Array:
    """The bounded transform ``M`` of the modified softmax gate, elementwise."""
    xs = _as_2d(x)
    if transform == "tanh":
        return np.tanh(xs)
    if transform == "sigmoid":
        return np.asarray(special.expit(xs))
    if transform == "rational":
        return xs / np.sqrt(1.0 + xs * xs)
    raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")


def _as_2d(x: ArrayLike) -> Array:
    xs = np.asarray(x, dtype=float)
    if xs.ndim == 1:
        xs = xs[:, None]
    if xs.ndim != 2:
        raise ValueError(f"x must have shape (n,) or (n, d), got {xs.shape}")
    return xs


@dataclass
class MoEParams:
    """Parameter values of a mixture of experts (shapes follow :class:`MoESpec`)."""

    gate_slope: ArrayLike
    """``beta_1``: ``(m, d)`` gate slopes (``(m,)`` accepted for ``d = 1``)."""
    gate_bias: ArrayLike
    """``beta_0``: ``(m,)`` gate intercepts."""
    coef: ArrayLike
    """Routed expert coefficients ``(m, P, J_k)`` (``(m, J_k)`` accepted when ``P = 1``): the
    Gaussian mean's polynomial, or the ``C - 1`` non-reference class logits."""
    var: ArrayLike | None = None
    """Gaussian expert variances ``(m,)`` (ones, and unused, for multinomial experts)."""
    shared_weights: ArrayLike = field(default_factory=lambda: np.zeros(0))
    """``omega``: ``(S,)`` weights of the shared experts, summing to 1."""
    shared_coef: ArrayLike | None = None
    """Shared expert coefficients ``(S, P, J_k)``."""
    shared_var: ArrayLike | None = None
    """Shared Gaussian expert variances ``(S,)``."""

    def __post_init__(self) -> None:
        slope = np.asarray(self.gate_slope, dtype=float)
        slope = slope[:, None] if slope.ndim == 1 else slope
        bias = np.asarray(self.gate_bias, dtype=float).reshape(-1)
        coef = np.asarray(self.coef, dtype=float)
        coef = coef[:, None, :] if coef.ndim == 2 else coef
        if coef.ndim != 3:
            raise ValueError(f"coef must have shape (m, P, J) or (m, J), got {coef.shape}")
        m, p, j = coef.shape
        var = np.ones(m) if self.var is None else np.asarray(self.var, dtype=float).reshape(-1)
        omega = np.asarray(self.shared_weights, dtype=float).reshape(-1)
        s = len(omega)
        kappa = (
            np.zeros((0, p, j))
            if self.shared_coef is None
            else np.asarray(self.shared_coef, dtype=float)
        )
        kappa = kappa[:, None, :] if kappa.ndim == 2 else kappa
        tau = (
            np.ones(s)
            if self.shared_var is None
            else np.asarray(self.shared_var, dtype=float).reshape(-1)
        )
        if slope.ndim != 2 or slope.shape[0] != m or bias.shape != (m,) or var.shape != (m,):
            raise ValueError(
                f"routed parameter shapes disagree: gate_slope {slope.shape}, gate_bias "
                f"{bias.shape}, coef {coef.shape}, var {var.shape}"
            )
        if kappa.shape != (s, p, j) or tau.shape != (s,):
            raise ValueError(
                f"shared parameter shapes disagree: weights {omega.shape}, coef {kappa.shape}, "
                f"var {tau.shape}"
            )
        self.gate_slope, self.gate_bias, self.coef, self.var = slope, bias, coef, var
        self.shared_weights, self.shared_coef, self.shared_var = omega, kappa, tau

    # Typed views (the fields hold ndarrays after __post_init__).
    @property
    def beta1(self) -> Array:
        return np.asarray(self.gate_slope)

    @property
    def beta0(self) -> Array:
        return np.asarray(self.gate_bias)

    @property
    def eta(self) -> Array:
        return np.asarray(self.coef)

    @property
    def nu(self) -> Array:
        return np.asarray(self.var)

    @property
    def omega(self) -> Array:
        return np.asarray(self.shared_weights)

    @property
    def kappa(self) -> Array:
        return np.asarray(self.shared_coef)

    @property
    def tau(self) -> Array:
        return np.asarray(self.shared_var)

    def copy(self) -> MoEParams:
        return MoEParams(
            self.beta1.copy(),
            self.beta0.copy(),
            self.eta.copy(),
            self.nu.copy(),
            self.omega.copy(),
            self.kappa.copy(),
            self.tau.copy(),
        )

    def check(self, spec: MoESpec, d: int | None = None) -> None:
        """Raise ``ValueError`` (one line) if the shapes do not fit ``spec`` (and ``d`` inputs)."""
        m, p, j = self.eta.shape
        if m != spec.n_experts:
            raise ValueError(f"params have {m} routed experts, spec has {spec.n_experts}")
        if p != spec.n_outputs:
            raise ValueError(f"params have {p} output rows per expert, spec needs {spec.n_outputs}")
        if len(self.omega) != spec.n_shared:
            raise ValueError(
                f"params have {len(self.omega)} shared experts, spec has {spec.n_shared}"
            )
        dim = self.beta1.shape[1]
        if d is not None and dim != d:
            raise ValueError(f"params have gate slopes for {dim} inputs, data has {d}")
        if j != n_poly_terms(dim, spec.order):
            raise ValueError(
                f"params have {j} coefficients per expert, order {spec.order} in {dim} inputs needs "
                f"{n_poly_terms(dim, spec.order)}"
            )


@dataclass
class MixtureOfExperts:
    """A mixture of experts: structure plus parameter values."""

    spec: MoESpec
    params: MoEParams

    def __post_init__(self) -> None:
        self.params.check(self.spec)

    @property
    def d(self) -> int:
        """Number of covariates."""
        return int(self.params.beta1.shape[1])

    def gate_inputs(self, x: ArrayLike) -> Array:
        """What the gate sees: ``x``, or ``M(x)`` for the modified softmax."""
        xs = _as_2d(x)
        return (
            gate_transform(xs, self.spec.transform) if self.spec.gate == "modified_softmax" else xs
        )

    def gate_logits(self, x: ArrayLike) -> Array:
        """``z = beta_1^T x + beta_0`` (or ``M(x)``), shape ``(n, m)``."""
        return self.gate_inputs(x) @ self.params.beta1.T + self.params.beta0

    def log_gate(self, x: ArrayLike) -> Array:
        """Log routed gate weights ``log g_i(x)`` (``-inf`` for experts outside the top-K)."""
        z = self.gate_logits(x)
        return _log_gate(self.spec, z, _selection(self.spec, z))

    def log_weights(self, x: ArrayLike) -> Array:
        """Log mixture weights of all components (shared first, then routed): ``(n, S + m)``."""
        return _log_weights(self.spec, self.params, self.log_gate(x))

    def weights(self, x: ArrayLike) -> Array:
        """Mixture weights of all components (shared first, then routed): ``(n, S + m)``."""
        return np.exp(self.log_weights(x))

    def expert_outputs(self, x: ArrayLike) -> Array:
        """Each component's output ``(n, S + m, P)``: the Gaussian mean, or the non-reference
        class logits."""
        feats = polynomial_features(x, self.spec.order)
        return _expert_outputs(self.params, feats)

    def expert_functions(self, x: ArrayLike) -> Array:
        """Each component's regression function ``(n, S + m, Q)``: the Gaussian mean (``Q = 1``)
        or the class probabilities (``Q = C``)."""
        out = self.expert_outputs(x)
        if self.spec.expert == "gaussian":
            return out
        return np.asarray(special.softmax(_with_reference(out), axis=-1))

    def log_component_density(self, x: ArrayLike, y: ArrayLike) -> Array:
        """``log f(y | x; theta_c)`` for every component: ``(n, S + m)``."""
        feats = polynomial_features(x, self.spec.order)
        return _log_density(self.spec, self.params, feats, _check_y(self.spec, y, len(feats)))

    def log_prob(self, x: ArrayLike, y: ArrayLike) -> Array:
        """``log p(y | x)`` per observation."""
        lj = self.log_weights(x) + self.log_component_density(x, y)
        return np.asarray(logsumexp(lj, axis=1))

    def loglik(self, x: ArrayLike, y: ArrayLike) -> float:
        """Mean log-likelihood of ``(x, y)``."""
        return float(np.mean(self.log_prob(x, y)))

    def predict(self, x: ArrayLike) -> Array:
        """``E[y | x]`` (Gaussian, ``(n,)``) or the class probabilities (``(n, C)``)."""
        w = self.weights(x)
        f = self.expert_functions(x)
        out = np.einsum("nc,ncq->nq", w, f)
        return out[:, 0] if self.spec.expert == "gaussian" else out

    def sample(self, x: ArrayLike, rng: np.random.Generator) -> np.ndarray:
        """Draw one ``y`` per row of ``x``: floats (Gaussian) or class indices (multinomial)."""
        w = self.weights(x)
        n = len(w)
        comp = (rng.random(n)[:, None] > np.cumsum(w, axis=1)).sum(axis=1)
        comp = np.minimum(comp, w.shape[1] - 1)
        f = self.expert_functions(x)[np.arange(n), comp]
        if self.spec.expert == "gaussian":
            sd = np.sqrt(np.concatenate([self.params.tau, self.params.nu]))[comp]
            return f[:, 0] + sd * rng.standard_normal(n)
        u = rng.random(n)[:, None]
        return np.minimum((u > np.cumsum(f, axis=1)).sum(axis=1), self.spec.n_classes - 1)


def logsumexp(a: Array, axis: int = -1, keepdims: bool = False) -> Array:
    """``log(sum(exp(a)))`` along ``axis`` (plain numpy; rows that are all ``-inf`` give ``-inf``)."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def _with_reference(logits: Array) -> Array:
    """Append the reference class's zero logit on the last axis."""
    return np.concatenate([logits, np.zeros(logits.shape[:-1] + (1,))], axis=-1)


def _check_y(spec: MoESpec, y: ArrayLike, n: int) -> Array:
    ys = np.asarray(y, dtype=float).reshape(-1)
    if len(ys) != n:
        raise ValueError(f"x has {n} rows but y has {len(ys)}")
    if not np.all(np.isfinite(ys)):
        raise ValueError("y has non-finite values")
    if spec.expert == "multinomial" and (
        np.any(ys != np.round(ys)) or ys.min() < 0 or ys.max() > spec.n_classes - 1
    ):
        raise ValueError(f"multinomial y must be class indices in 0..{spec.n_classes - 1}")
    return ys


def _selection(spec: MoESpec, z: Array) -> Mask | None:
    """Boolean ``(n, m)`` mask of the top-K experts per row (``None`` = all)."""
    if spec.top_k is None or spec.top_k >= spec.n_experts:
        return None
    idx = np.argpartition(-z, spec.top_k - 1, axis=1)[:, : spec.top_k]
    mask = np.zeros(z.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def _log_scores(spec: MoESpec, z: Array) -> Array:
    """Unnormalized log gate scores: ``z`` (softmax kinds) or ``log sigma(z)``."""
    return -np.logaddexp(0.0, -z) if spec.gate == "normalized_sigmoid" else z


def _log_gate(spec: MoESpec, z: Array, mask: Mask | None) -> Array:
    scores = _log_scores(spec, z)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return scores - logsumexp(scores, axis=1, keepdims=True)


def _log_weights(spec: MoESpec, params: MoEParams, log_gate: Array) -> Array:
    if spec.n_shared == 0:
        return log_gate
    with np.errstate(divide="ignore"):
        shared = math.log(spec.shared_weight) + np.log(params.omega)
    routed = math.log1p(-spec.shared_weight) + log_gate
    return np.concatenate([np.broadcast_to(shared, (len(log_gate), len(shared))), routed], axis=1)


def _expert_outputs(params: MoEParams, feats: Array) -> Array:
    coef = np.concatenate([params.kappa, params.eta], axis=0)  # (S + m, P, J)
    return np.einsum("nj,cpj->ncp", feats, coef)


def _log_density(spec: MoESpec, params: MoEParams, feats: Array, y: Array) -> Array:
    out = _expert_outputs(params, feats)
    if spec.expert == "gaussian":
        var = np.concatenate([params.tau, params.nu])
        resid = y[:, None] - out[:, :, 0]
        return np.asarray(-0.5 * (np.log(2 * np.pi * var) + resid * resid / var))
    logits = _with_reference(out)  # (n, c, C)
    lse = logsumexp(logits, axis=-1)
    picked = np.take_along_axis(
        logits, y.astype(int)[:, None, None].repeat(logits.shape[1], 1), axis=-1
    )
    return np.asarray(picked[:, :, 0] - lse)


# --------------------------------------------------------------------------------------------
# EM


@dataclass(frozen=True)
class EMConfig:
    """Settings of :func:`fit_em`."""

    max_iter: int = 500
    """Maximum EM iterations."""
    tol: float = 1e-8
    """Stop when the mean log-likelihood changes by less than ``tol * (1 + |loglik|)``."""
    inner_iter: int = 2
    """Damped Newton steps per M-step for the gate and for multinomial experts."""
    bound: float = 100.0
    """Gate parameters and multinomial expert coefficients are kept in ``[-bound, bound]`` (a
    compact parameter set, as the theory assumes; the multinomial MLE can diverge otherwise)."""
    var_floor: float = 1e-6
    """Lower bound on Gaussian expert variances (the likelihood is unbounded without one)."""
    n_init: int = 1
    """Number of starts when no ``init`` is given; the highest final likelihood is kept."""
    radius: float | None = None
    """:func:`fit_lbfgs` only: keep every parameter (variances as logs, shared weights as
    logits) within ``radius`` of its starting value, i.e. maximize the likelihood over a compact
    box around the start (used with a start near the truth to study the local MLE); ``None`` =
    only ``bound``."""
    seed: int = 0
    """Seed of the starts' randomness."""


@dataclass
class FitResult:
    """Outcome of :func:`fit_em`."""

    model: MixtureOfExperts
    """The fitted mixture."""
    loglik_history: list[float]
    """Mean log-likelihood of the data at the start of every iteration and after the last one."""
    n_iter: int
    """EM iterations run."""
    converged: bool
    """Whether the tolerance was met before ``max_iter``."""

    @property
    def loglik(self) -> float:
        """Final mean log-likelihood."""
        return self.loglik_history[-1]


def fit_em(
    x: ArrayLike,
    y: ArrayLike,
    spec: MoESpec,
    *,
    init: MoEParams | None = None,
    config: EMConfig = EMConfig(),
) -> FitResult:
    """Maximum-likelihood fit of ``spec`` to ``(x, y)`` by (generalized) EM.

    ``init`` starts from given parameters (e.g. :func:`near_truth_init`); otherwise
    ``config.n_init`` data-driven starts (:func:`initial_params`) are run and the best kept.
    Raises ``ValueError`` with a one-line reason for malformed inputs.
    """
    return _fit(_run_em, x, y, spec, init, config)


def fit_lbfgs(
    x: ArrayLike,
    y: ArrayLike,
    spec: MoESpec,
    *,
    init: MoEParams | None = None,
    config: EMConfig = EMConfig(),
) -> FitResult:
    """Maximum-likelihood fit by L-BFGS-B on the full log-likelihood (all parameters at once;
    variances as logs, shared weights as softmax logits, the gate and multinomial coefficients
    in ``[-bound, bound]``). Gradients come from Fisher's identity (the gradient of the
    expected complete-data log-likelihood at the current responsibilities). Guarantee: each
    iteration's line search enforces sufficient decrease, so ``loglik_history`` (one entry per
    iteration) never decreases; the limit is a stationary point (a local maximum in practice),
    reached in far fewer iterations than EM where EM is slow (over-specified mixtures). With a
    top-K gate the objective is only piecewise smooth and the line search may stop early."""
    return _fit(_run_lbfgs, x, y, spec, init, config)


Runner = Callable[[MoESpec, MoEParams, Array, Array, EMConfig], FitResult]


def _fit(
    runner: Runner,
    x: ArrayLike,
    y: ArrayLike,
    spec: MoESpec,
    init: MoEParams | None,
    config: EMConfig,
) -> FitResult:
    xs = _as_2d(x)
    if len(xs) < 2:
        raise ValueError(f"need at least 2 observations, got {len(xs)}")
    if not np.all(np.isfinite(xs)):
        raise ValueError("x has non-finite values")
    ys = _check_y(spec, y, len(xs))
    if init is not None:
        init.check(spec, xs.shape[1])
        return runner(spec, init.copy(), xs, ys, config)
    rng = np.random.default_rng(config.seed)
    best: FitResult | None = None
    for _ in range(max(1, config.n_init)):
        res = runner(spec, initial_params(spec, xs, ys, rng, bound=config.bound), xs, ys, config)
        if best is None or res.loglik > best.loglik:
            best = res
    assert best is not None
    return best


class _Data:
    """Per-fit constants: inputs, features, gate inputs, responses."""

    def __init__(self, spec: MoESpec, x: Array, y: Array) -> None:
        self.x = x
        self.y = y
        self.feats = polynomial_features(x, spec.order)
        self.gate_x = gate_transform(x, spec.transform) if spec.gate == "modified_softmax" else x
        self.onehot = (
            np.eye(spec.n_classes)[y.astype(int), : spec.n_classes - 1]
            if spec.expert == "multinomial"
            else np.zeros((len(y), 0))
        )


def _run_em(spec: MoESpec, params: MoEParams, x: Array, y: Array, config: EMConfig) -> FitResult:
    data = _Data(spec, x, y)
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, config.max_iter + 1):  # noqa: B007 (it is reported)
        params, ll = _em_step(spec, params, data, config)
        history.append(ll)
        if len(history) >= 2 and abs(history[-1] - history[-2]) < config.tol * (
            1.0 + abs(history[-1])
        ):
            converged = True
            break
    history.append(_loglik(spec, params, data))
    return FitResult(MixtureOfExperts(spec, params), history, it, converged)


def _loglik(spec: MoESpec, params: MoEParams, data: _Data) -> float:
    z = data.gate_x @ params.beta1.T + params.beta0
    lw = _log_weights(spec, params, _log_gate(spec, z, _selection(spec, z)))
    return float(np.mean(logsumexp(lw + _log_density(spec, params, data.feats, data.y), axis=1)))


def _em_step(
    spec: MoESpec, params: MoEParams, data: _Data, config: EMConfig
) -> tuple[MoEParams, float]:
    """One E-step and one (generalized) M-step; returns the new parameters and the mean
    log-likelihood of the old ones."""
    z = data.gate_x @ params.beta1.T + params.beta0
    mask = _selection(spec, z)
    lj = _log_weights(spec, params, _log_gate(spec, z, mask)) + _log_density(
        spec, params, data.feats, data.y
    )
    lp = logsumexp(lj, axis=1)
    resp = np.exp(lj - lp[:, None])
    ll = float(np.mean(lp))
    new = params.copy()
    s = spec.n_shared
    if s:
        tot = resp[:, :s].sum(axis=0)
        if tot.sum() > 0:
            new.shared_weights = tot / tot.sum()
    if spec.n_experts > 1:
        new.gate_slope, new.gate_bias = _gate_mstep(spec, params, resp[:, s:], data, config)
    live = resp.sum(axis=0) > 1e-10  # an expert with no responsibility keeps its parameters
    if spec.expert == "gaussian":
        var = np.concatenate([new.tau, new.nu])
        coef = np.concatenate([new.kappa, new.eta])
        for c in np.flatnonzero(live):
            coef[c, 0], var[c] = _gaussian_mstep(data.feats, data.y, resp[:, c], config.var_floor)
    else:
        var = np.concatenate([new.tau, new.nu])
        coef = _multinomial_mstep(
            np.concatenate([new.kappa, new.eta]), data.feats, data.onehot, resp, live, config
        )
    new.shared_coef, new.coef = coef[:s], coef[s:]
    new.shared_var, new.var = var[:s], var[s:]
    return new, ll


Derivs = tuple[Array, Array]


def _newton_ascent(
    derivs: Callable[[Array], Derivs],
    q_true: Callable[[Array], Array],
    theta0: Array,
    active: Mask,
    steps: int,
    bound: float,
) -> Array:
    """Damped Newton ascent, batched over ``K`` independent problems (rows of ``theta0``): on a
    smooth surrogate (``derivs`` -> gradients ``(K, D)``, Hessians ``(K, D, D)``) with the exact
    objectives ``q_true`` (``(K,)``) checked, so every kept step increases its problem's
    objective (the step is halved up to 20 times; iterates are projected onto
    ``[-bound, bound]``). Hessian eigenvalues enter by absolute value (floored), so a
    non-concave objective still gets an ascent direction. Rows not ``active`` stay put."""
    theta = theta0.copy()
    q = q_true(theta)
    active = active & np.isfinite(q)
    for _ in range(steps):
        if not active.any():
            break
        grad, hess = derivs(theta)
        lam, vec = np.linalg.eigh(-hess)
        floor = 1e-8 * np.maximum(1.0, np.max(np.abs(lam), axis=1))
        coords = np.einsum("kji,kj->ki", vec, grad) / np.maximum(np.abs(lam), floor[:, None])
        step = np.einsum("kij,kj->ki", vec, coords)
        step[~active] = 0.0
        pending, improved = active.copy(), np.zeros(len(theta), dtype=bool)
        q_new = q.copy()
        for _ in range(20):
            trial = np.clip(theta + step, -bound, bound)
            q_trial = q_true(trial)
            ok = pending & (q_trial >= q)
            theta[ok], q_new[ok] = trial[ok], q_trial[ok]
            improved |= ok
            pending &= ~ok
            if not pending.any():
                break
            step[pending] /= 2
        active = improved & (q_new - q > 1e-12 * (1.0 + np.abs(q_new)))
        q = q_new
    return theta


def _block_hessian(h: Array, feats: Array) -> Array:
    """``sum_n h[n, k] (x) feats_n feats_n^T`` for per-row, per-problem ``(P, P)`` blocks
    ``h`` of shape ``(n, K, P, P)``: ``(K, P J, P J)``."""
    n, kk, p, _ = h.shape
    j = feats.shape[1]
    outer = (feats[:, :, None] * feats[:, None, :]).reshape(n, j * j)
    full = np.einsum("nkq,nr->kqr", h.reshape(n, kk, p * p), outer).reshape(kk, p, p, j, j)
    return full.transpose(0, 1, 3, 2, 4).reshape(kk, p * j, p * j)


def _gate_mstep(
    spec: MoESpec, params: MoEParams, r: Array, data: _Data, config: EMConfig
) -> tuple[Array, Array]:
    """Raise ``sum_n sum_i r_ni log g_i(x_n)`` over the routed gate (damped Newton, top-K
    selection held fixed in the surrogate, exact objective checked)."""
    m, d = params.beta1.shape
    xt = np.hstack([data.gate_x, np.ones((len(r), 1))])
    rtot = r.sum(axis=1)
    sigmoid = spec.gate == "normalized_sigmoid"
    mask0 = _selection(spec, data.gate_x @ params.beta1.T + params.beta0)

    def q_of(lg: Array) -> float:
        with np.errstate(invalid="ignore"):
            return float(np.where(r > 0, r * lg, 0.0).sum())

    def q_true(theta: Array) -> Array:
        z = xt @ theta.reshape(m, d + 1).T
        return np.array([q_of(_log_gate(spec, z, _selection(spec, z)))])

    def derivs(theta: Array) -> Derivs:
        z = xt @ theta.reshape(m, d + 1).T
        p = np.exp(_log_gate(spec, z, mask0))
        gu = r - rtot[:, None] * p
        hz = -rtot[:, None, None] * (p[:, :, None] * np.eye(m) - p[:, :, None] * p[:, None, :])
        if sigmoid:
            a = special.expit(-z)  # d log sigma(z) / dz
            hz = a[:, :, None] * hz * a[:, None, :]
            hz[:, np.arange(m), np.arange(m)] -= gu * a * (1.0 - a)
            gu = gu * a
        grad = (gu.T @ xt).reshape(1, -1)
        return grad, _block_hessian(hz[:, None], xt)

    theta0 = np.hstack([params.beta1, params.beta0[:, None]]).reshape(1, -1)
    theta = _newton_ascent(
        derivs, q_true, theta0, np.ones(1, dtype=bool), config.inner_iter, config.bound
    )
    block = theta.reshape(m, d + 1)
    return block[:, :d].copy(), block[:, d].copy()


def _gaussian_mstep(feats: Array, y: Array, w: Array, var_floor: float) -> tuple[Array, float]:
    sw = np.sqrt(w)
    coef = np.asarray(np.linalg.lstsq(feats * sw[:, None], y * sw, rcond=None)[0], dtype=float)
    resid = y - feats @ coef
    var = float(np.sum(w * resid * resid) / w.sum())
    return coef, max(var, var_floor)


def _multinomial_mstep(
    coef: Array, feats: Array, onehot: Array, weights: Array, active: Mask, config: EMConfig
) -> Array:
    """Raise ``sum_n w_nk log P_k(y_n | x_n)`` of every multinomial expert ``k`` (coefficients
    ``(K, P, J)``, weights ``(n, K)``); damped Newton, concave, batched over experts."""
    kk, p, j = coef.shape
    ref = onehot.sum(axis=1) - 1.0  # -1 for the reference class, 0 otherwise

    def logp(theta: Array) -> tuple[Array, Array]:
        logits = np.einsum("nj,kpj->nkp", feats, theta.reshape(kk, p, j))
        lse = logsumexp(_with_reference(logits), axis=-1)
        return logits - lse[:, :, None], lse

    def q_true(theta: Array) -> Array:
        lp, lse = logp(theta)
        return np.asarray(
            np.sum(weights * (np.einsum("np,nkp->nk", onehot, lp) + ref[:, None] * lse), axis=0)
        )

    def derivs(theta: Array) -> Derivs:
        prob = np.exp(logp(theta)[0])  # (n, K, P)
        grad = np.einsum("nk,nkp,nj->kpj", weights, onehot[:, None, :] - prob, feats).reshape(
            kk, p * j
        )
        h = -weights[:, :, None, None] * (
            prob[:, :, :, None] * np.eye(p) - prob[:, :, :, None] * prob[:, :, None, :]
        )
        return grad, _block_hessian(h, feats)

    theta = _newton_ascent(
        derivs, q_true, coef.reshape(kk, p * j), active, config.inner_iter, config.bound
    )
    return theta.reshape(kk, p, j)


class _Packing:
    """Flat parameter vector <-> :class:`MoEParams` for :func:`fit_lbfgs`."""

    def __init__(self, spec: MoESpec, params: MoEParams, config: EMConfig) -> None:
        m, p, j = params.eta.shape
        d = params.beta1.shape[1]
        s = spec.n_shared
        gauss = spec.expert == "gaussian"
        self.sizes = [m * (d + 1), m * p * j, m if gauss else 0, s, s * p * j, s if gauss else 0]
        self.shapes = (m, d, p, j, s)
        coef_bound = (None, None) if gauss else (-config.bound, config.bound)
        logvar = (math.log(config.var_floor), None)
        self.bounds = (
            [(-config.bound, config.bound)] * self.sizes[0]
            + [coef_bound] * self.sizes[1]
            + [logvar] * self.sizes[2]
            + [(-30.0, 30.0)] * self.sizes[3]
            + [coef_bound] * self.sizes[4]
            + [logvar] * self.sizes[5]
        )
        self.gauss = gauss

    def pack(self, params: MoEParams) -> Array:
        with np.errstate(divide="ignore"):
            parts = [
                np.hstack([params.beta1, params.beta0[:, None]]).reshape(-1),
                params.eta.reshape(-1),
                np.log(params.nu) if self.gauss else np.zeros(0),
                np.clip(np.log(params.omega), -30.0, 30.0),
                params.kappa.reshape(-1),
                np.log(params.tau) if self.gauss else np.zeros(0),
            ]
        return np.concatenate(parts)

    def unpack(self, vec: Array) -> MoEParams:
        m, d, p, j, s = self.shapes
        g, eta, lv, lw, kap, ltau = np.split(vec, np.cumsum(self.sizes)[:-1])
        gate = g.reshape(m, d + 1)
        omega = np.exp(lw - logsumexp(lw)) if s else np.zeros(0)
        return MoEParams(
            gate[:, :d],
            gate[:, d],
            eta.reshape(m, p, j),
            np.exp(lv) if self.gauss else None,
            omega,
            kap.reshape(s, p, j),
            np.exp(ltau) if self.gauss else None,
        )


def _negloglik_grad(spec: MoESpec, pk: _Packing, vec: Array, data: _Data) -> tuple[float, Array]:
    params = pk.unpack(vec)
    n = len(data.y)
    s = spec.n_shared
    z = data.gate_x @ params.beta1.T + params.beta0
    mask = _selection(spec, z)
    lg = _log_gate(spec, z, mask)
    lj = _log_weights(spec, params, lg) + _log_density(spec, params, data.feats, data.y)
    lp = logsumexp(lj, axis=1)
    r = np.exp(lj - lp[:, None])
    rr = r[:, s:]
    dz = rr - rr.sum(axis=1, keepdims=True) * np.exp(lg)
    if spec.gate == "normalized_sigmoid":
        dz = dz * special.expit(-z)
    if mask is not None:
        dz = np.where(mask, dz, 0.0)
    xt = np.hstack([data.gate_x, np.ones((n, 1))])
    grads = [(dz.T @ xt).reshape(-1)]
    out = _expert_outputs(params, data.feats)  # (n, S+m, P)
    if spec.expert == "gaussian":
        var = np.concatenate([params.tau, params.nu])
        resid = data.y[:, None] - out[:, :, 0]
        g_coef = np.einsum("nc,nj->cj", r * resid / var, data.feats)[:, None, :]
        g_lv = np.sum(r * (resid * resid / (2 * var) - 0.5), axis=0)
    else:
        prob = np.exp(out - logsumexp(_with_reference(out), axis=-1)[:, :, None])
        g_coef = np.einsum("nc,ncp,nj->cpj", r, data.onehot[:, None, :] - prob, data.feats)
        g_lv = np.zeros(spec.n_components)
    tot = r[:, :s].sum(axis=0)
    g_lw = tot - params.omega * tot.sum()
    grads += [
        g_coef[s:].reshape(-1),
        g_lv[s:] if pk.gauss else np.zeros(0),
        g_lw,
        g_coef[:s].reshape(-1),
        g_lv[:s] if pk.gauss else np.zeros(0),
    ]
    return -float(np.mean(lp)), -np.concatenate(grads) / n


def _run_lbfgs(spec: MoESpec, params: MoEParams, x: Array, y: Array, config: EMConfig) -> FitResult:
    data = _Data(spec, x, y)
    pk = _Packing(spec, params, config)
    low = np.array([-np.inf if b[0] is None else b[0] for b in pk.bounds])
    high = np.array([np.inf if b[1] is None else b[1] for b in pk.bounds])
    vec0 = np.clip(pk.pack(params), low, high)
    if config.radius is not None:
        low, high = np.maximum(low, vec0 - config.radius), np.minimum(high, vec0 + config.radius)
    history = [-_negloglik_grad(spec, pk, vec0, data)[0]]

    def record(intermediate_result: optimize.OptimizeResult) -> None:
        history.append(-float(intermediate_result.fun))

    res = optimize.minimize(
        lambda v: _negloglik_grad(spec, pk, v, data),
        vec0,
        jac=True,
        method="L-BFGS-B",
        bounds=optimize.Bounds(low, high),
        callback=record,
        options={"maxiter": config.max_iter, "ftol": config.tol, "gtol": 1e-10, "maxcor": 20},
    )
    final = pk.unpack(np.asarray(res.x))
    history.append(_loglik(spec, final, data))
    return FitResult(MixtureOfExperts(spec, final), history, int(res.nit), bool(res.success))


# --------------------------------------------------------------------------------------------
# Starting values


def initial_params(
    spec: MoESpec,
    x: ArrayLike,
    y: ArrayLike,
    rng: np.random.Generator,
    *,
    bound: float = EMConfig.bound,
) -> MoEParams:
    """A data-driven start: gate centres picked k-means++-style among the (gate) inputs, gate
    set to route each input mostly to its nearest centre (parameters clipped to ``bound``),
    experts fitted on those soft partitions, plus a small random perturbation; shared experts
    fitted on all data."""
    xs = _as_2d(x)
    ys = _check_y(spec, y, len(xs))
    data = _Data(spec, xs, ys)
    gx = data.gate_x
    m = spec.n_experts
    centres = [gx[rng.integers(len(gx))]]
    for _ in range(1, m):
        d2 = np.min([np.sum((gx - c) ** 2, axis=1) for c in centres], axis=0)
        prob = d2 / d2.sum() if d2.sum() > 0 else np.full(len(gx), 1 / len(gx))
        centres.append(gx[rng.choice(len(gx), p=prob)])
    cen = np.array(centres)
    spread = float(np.mean(np.var(gx, axis=0))) or 1.0
    # softmax of -sharp/2 * |x - c|^2: a soft nearest-centre partition, neighbouring logits a few
    # units apart across a cell
    sharp = 0.7 * m**2 / spread
    beta1 = np.clip(sharp * cen, -bound, bound)
    beta0 = np.clip(-0.5 * sharp * np.sum(cen**2, axis=1), -bound, bound)
    z = gx @ beta1.T + beta0
    if spec.gate == "normalized_sigmoid":  # make every score small: normalized sigmoid ~ softmax
        shift = float(np.max(z)) + 2.0
        beta0 = beta0 - shift
        z = z - shift
    resp = np.exp(_log_gate(spec, z, _selection(spec, z)))
    p, j = spec.n_outputs, data.feats.shape[1]
    coef = np.zeros((m, p, j))
    var = np.ones(m)
    scale = float(np.std(ys)) if spec.expert == "gaussian" else 1.0
    start = replace(EMConfig(), inner_iter=10)
    if spec.expert == "gaussian":
        for i in range(m):
            coef[i, 0], var[i] = _gaussian_mstep(data.feats, ys, resp[:, i] + 1e-6, 1e-6)
    else:
        coef = _multinomial_mstep(
            coef, data.feats, data.onehot, resp + 1e-6, np.ones(m, dtype=bool), start
        )
    coef += 0.05 * scale * rng.standard_normal(coef.shape)
    s = spec.n_shared
    shared_coef = np.zeros((s, p, j))
    shared_var = np.ones(s)
    ones = np.ones((len(ys), s))
    if spec.expert == "gaussian":
        for i in range(s):
            shared_coef[i, 0], shared_var[i] = _gaussian_mstep(data.feats, ys, ones[:, i], 1e-6)
    elif s:
        shared_coef = _multinomial_mstep(
            shared_coef, data.feats, data.onehot, ones, np.ones(s, dtype=bool), start
        )
    shared_coef += 0.1 * scale * rng.standard_normal(shared_coef.shape)
    return MoEParams(
        beta1, beta0, coef, var, np.full(s, 1.0 / s) if s else np.zeros(0), shared_coef, shared_var
    )


def near_truth_init(
    truth: MoEParams,
    spec: MoESpec,
    rng: np.random.Generator,
    *,
    split: Sequence[int] = (0,),
    split_shared: Sequence[int] = (0,),
    scale: float = 0.1,
) -> MoEParams:
    """Start for ``spec`` near the true parameters, as in the papers' simulations: every true
    atom is kept; when ``spec`` has more routed (shared) experts than ``truth``, the extra ones
    are copies of the true atoms listed in ``split`` (``split_shared``), taken in turn, and each
    copy halves the gate (shared) mass of its atom; then every parameter is perturbed by
    ``scale`` times a standard normal (variances multiplicatively)."""
    m_true, s_true = len(truth.beta0), len(truth.omega)
    if spec.n_experts < m_true or spec.n_shared < s_true:
        raise ValueError(
            f"spec has fewer experts ({spec.n_shared} shared, {spec.n_experts} routed) than the "
            f"truth ({s_true}, {m_true})"
        )
    b1, b0, eta, nu = (a.copy() for a in (truth.beta1, truth.beta0, truth.eta, truth.nu))
    extra = spec.n_experts - m_true
    for t in range(extra):
        src = list(split)[t % len(split)]
        if not 0 <= src < m_true:
            raise ValueError(f"split index {src} is not a true routed expert (0..{m_true - 1})")
        half = _half_mass_bias(spec.gate, b0[src])
        b0[src] = half
        b1, b0 = np.vstack([b1, b1[src]]), np.append(b0, half)
        eta, nu = np.concatenate([eta, eta[src : src + 1]]), np.append(nu, nu[src])
    om, ka, ta = truth.omega.copy(), truth.kappa.copy(), truth.tau.copy()
    for t in range(spec.n_shared - s_true):
        src = list(split_shared)[t % len(split_shared)]
        if not 0 <= src < s_true:
            raise ValueError(
                f"split_shared index {src} is not a true shared expert (0..{s_true - 1})"
            )
        om[src] /= 2
        om, ka, ta = (
            np.append(om, om[src]),
            np.concatenate([ka, ka[src : src + 1]]),
            np.append(ta, ta[src]),
        )

    def jitter(a: Array) -> Array:
        return a + scale * rng.standard_normal(a.shape)

    def jitter_pos(a: Array) -> Array:
        return a * np.exp(scale * rng.standard_normal(a.shape))

    om = jitter_pos(om)
    return MoEParams(
        jitter(b1),
        jitter(b0),
        jitter(eta),
        jitter_pos(nu),
        om / om.sum() if len(om) else om,
        jitter(ka),
        jitter_pos(ta),
    )


def _half_mass_bias(gate: GateKind, b0: float) -> float:
    """The intercept that halves an atom's gate mass (``exp`` for softmax, ``sigmoid`` else)."""
    if gate == "normalized_sigmoid":
        return float(special.logit(special.expit(b0) / 2))
    return float(b0 - math.log(2.0))
