"""Mixture-of-experts estimation (rewardlab.moe.estimation*): gates, likelihood, EM / L-BFGS
fitting on data drawn from known mixtures, Voronoi losses, the experts-suggestion helper."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from rewardlab.moe import Suggestion, suggest_experts
from rewardlab.moe.estimation import (
    EMConfig,
    MixtureOfExperts,
    MoEParams,
    MoESpec,
    _Data,
    _negloglik_grad,
    _Packing,
    fit_em,
    fit_lbfgs,
    initial_params,
    near_truth_init,
    polynomial_features,
)
from rewardlab.moe.estimation_metrics import (
    expert_errors,
    kl_risk,
    loglog_slope,
    match_experts,
    voronoi_cells,
    voronoi_loss,
)
from rewardlab.moe.estimation_rates import RateConstants, calibrate_constants, risk_bound

GATES = ("softmax", "modified_softmax", "normalized_sigmoid")


def two_linear_experts(gate: str = "softmax", **spec_kw: object) -> MixtureOfExperts:
    """Gaussian truth: two linear experts split around x = 0 by the gate."""
    spec = MoESpec(2, order=1, gate=gate, **spec_kw)  # type: ignore[arg-type]
    params = MoEParams([[4.0], [0.0]], [0.0, 0.0], [[1.0, 2.0], [-1.0, -2.0]], [0.05, 0.1])
    if spec.n_shared:
        params = MoEParams(
            params.beta1, params.beta0, params.eta, params.nu, [1.0], [[0.0, 3.0]], [0.05]
        )
    return MixtureOfExperts(spec, params)


def three_class_truth(gate: str = "softmax") -> MixtureOfExperts:
    """Multinomial truth: two linear multinomial-logistic experts over three classes."""
    spec = MoESpec(2, order=1, expert="multinomial", n_classes=3, gate=gate)
    coef = [[[0.5, 1.0], [0.0, -1.0]], [[-0.5, -1.0], [0.5, 1.0]]]
    return MixtureOfExperts(spec, MoEParams([[2.0], [0.0]], [0.0, 0.0], coef))


# ---------------------------------------------------------------------------------- gates


def test_polynomial_features_are_all_monomials() -> None:
    feats = polynomial_features(np.array([[2.0, 3.0]]), 2)
    assert feats.tolist() == [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    assert polynomial_features(np.zeros((4, 3)), 3).shape == (4, math.comb(6, 3))


@pytest.mark.parametrize("gate", GATES)
def test_gate_weights_are_a_distribution(gate: str) -> None:
    model = two_linear_experts(gate, n_shared=1)
    w = model.weights(np.linspace(-5, 5, 41))
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[:, 0], 0.5)  # the shared expert's fixed total weight


def test_softmax_gates_are_translation_invariant_and_the_sigmoid_gate_is_not() -> None:
    x = np.linspace(-3, 3, 25)
    for gate in GATES:
        model = two_linear_experts(gate)
        p = model.params
        moved = MixtureOfExperts(model.spec, MoEParams(p.beta1 + 1.5, p.beta0 - 2.0, p.eta, p.nu))
        same = np.allclose(model.weights(x), moved.weights(x))
        assert same == (gate != "normalized_sigmoid"), gate


def test_modified_softmax_sees_a_bounded_input() -> None:
    model = two_linear_experts("modified_softmax")
    far = model.weights(np.array([1e3, 1e6]))
    np.testing.assert_allclose(far[0], far[1])  # tanh saturates: no expert takes all the weight
    assert 0.0 < far[0, 1] < 1.0
    plain = two_linear_experts("softmax").weights(np.array([1e3]))
    assert plain[0, 1] < 1e-12  # the plain softmax gate does give one expert everything


@pytest.mark.parametrize("gate", ["softmax", "normalized_sigmoid"])
def test_top_k_keeps_the_k_largest_and_renormalizes(gate: str) -> None:
    rng = np.random.default_rng(0)
    params = MoEParams(
        rng.normal(size=(4, 2)), rng.normal(size=4), rng.normal(size=(4, 3)), np.ones(4)
    )
    dense = MixtureOfExperts(MoESpec(4, gate=gate), params)  # type: ignore[arg-type]
    sparse = MixtureOfExperts(MoESpec(4, gate=gate, top_k=2), params)  # type: ignore[arg-type]
    x = rng.normal(size=(50, 2))
    wd, ws = dense.weights(x), sparse.weights(x)
    assert np.all((ws > 0).sum(axis=1) == 2)
    top = np.argsort(-wd, axis=1)[:, :2]
    kept = np.take_along_axis(wd, top, axis=1)
    np.testing.assert_allclose(
        np.take_along_axis(ws, top, axis=1), kept / kept.sum(axis=1, keepdims=True)
    )


def test_conditional_densities_normalize() -> None:
    model = two_linear_experts("normalized_sigmoid", n_shared=1)
    ys = np.linspace(-15, 15, 4001)
    for x0 in (-1.0, 0.3):
        dens = np.exp(model.log_prob(np.full(len(ys), x0), ys))
        assert abs(np.trapezoid(dens, ys) - 1.0) < 1e-6
    cls = three_class_truth()
    xs = np.repeat([-1.0, 0.5], 3)
    probs = np.exp(cls.log_prob(xs, np.tile([0, 1, 2], 2))).reshape(2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs, cls.predict(np.array([-1.0, 0.5])))


def test_samples_follow_the_model() -> None:
    model = two_linear_experts()
    rng = np.random.default_rng(1)
    x = np.full(40_000, 0.4)
    y = model.sample(x, rng)
    assert abs(y.mean() - model.predict(x[:1])[0]) < 0.02
    cls = three_class_truth()
    c = cls.sample(x, rng)
    np.testing.assert_allclose(
        np.bincount(c, minlength=3) / len(c), cls.predict(x[:1])[0], atol=0.01
    )


def test_bad_inputs_fail_with_one_line_reasons() -> None:
    with pytest.raises(ValueError, match="top_k"):
        MoESpec(2, top_k=3)
    with pytest.raises(ValueError, match="gate must be one of"):
        MoESpec(2, gate="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="routed experts"):
        MixtureOfExperts(MoESpec(3), two_linear_experts().params)
    spec = MoESpec(2, expert="multinomial", n_classes=3)
    with pytest.raises(ValueError, match="class indices"):
        fit_em(np.zeros(5), np.array([0, 1, 2, 3, 0]), spec)
    with pytest.raises(ValueError, match="x has 5 rows but y has 4"):
        fit_em(np.zeros(5), np.zeros(4), MoESpec(2))
    with pytest.raises(ValueError, match="non-finite"):
        fit_em(np.array([0.0, np.nan, 1.0]), np.zeros(3), MoESpec(2))


# ------------------------------------------------------------------------------- fitting

MONOTONE_CASES = [
    ("softmax", "gaussian", None, 0),
    ("modified_softmax", "gaussian", None, 1),
    ("normalized_sigmoid", "gaussian", None, 1),
    ("normalized_sigmoid", "gaussian", 2, 0),
    ("softmax", "multinomial", None, 0),
    ("modified_softmax", "multinomial", None, 0),
    ("normalized_sigmoid", "multinomial", 2, 1),
]


@pytest.mark.parametrize(("gate", "expert", "top_k", "n_shared"), MONOTONE_CASES)
def test_em_never_decreases_the_likelihood(
    gate: str, expert: str, top_k: int | None, n_shared: int
) -> None:
    truth = two_linear_experts(gate) if expert == "gaussian" else three_class_truth(gate)
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, 600)
    y = truth.sample(x, rng)
    spec = MoESpec(
        3, order=2, expert=expert, n_classes=3, gate=gate, top_k=top_k, n_shared=n_shared
    )  # type: ignore[arg-type]
    fit = fit_em(x, y, spec, config=EMConfig(max_iter=40, tol=0.0, seed=2))
    steps = np.diff(fit.loglik_history)
    assert steps.min() >= -1e-10 * (1 + abs(fit.loglik))
    assert fit.loglik_history[-1] > fit.loglik_history[0] + 1e-3  # and it does climb


@pytest.mark.parametrize(("gate", "expert", "top_k", "n_shared"), MONOTONE_CASES[::2])
def test_lbfgs_never_decreases_the_likelihood(
    gate: str, expert: str, top_k: int | None, n_shared: int
) -> None:
    truth = two_linear_experts(gate) if expert == "gaussian" else three_class_truth(gate)
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, 600)
    y = truth.sample(x, rng)
    spec = MoESpec(
        3, order=1, expert=expert, n_classes=3, gate=gate, top_k=top_k, n_shared=n_shared
    )  # type: ignore[arg-type]
    fit = fit_lbfgs(x, y, spec, config=EMConfig(max_iter=60, seed=1))
    assert np.diff(fit.loglik_history).min() >= -1e-10
    assert fit.loglik > fit.loglik_history[0]


@pytest.mark.parametrize(
    "spec",
    [
        MoESpec(3, order=2, gate="softmax", n_shared=2),
        MoESpec(
            3, order=1, expert="multinomial", n_classes=3, gate="normalized_sigmoid", n_shared=1
        ),
        MoESpec(3, order=1, gate="modified_softmax", transform="rational"),
    ],
)
def test_likelihood_gradient_matches_finite_differences(spec: MoESpec) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2))
    y = (
        rng.integers(0, 3, 40).astype(float)
        if spec.expert == "multinomial"
        else rng.normal(size=40)
    )
    params = initial_params(spec, x, y, rng)
    data, pk = _Data(spec, x, y), _Packing(spec, params, EMConfig())
    vec = pk.pack(params) + 0.05 * rng.normal(size=len(pk.pack(params)))
    analytic = _negloglik_grad(spec, pk, vec, data)[1]
    numeric = optimize.approx_fprime(vec, lambda v: _negloglik_grad(spec, pk, v, data)[0], 1e-7)
    np.testing.assert_allclose(
        analytic, numeric, atol=1e-4 * max(1.0, float(np.abs(numeric).max()))
    )


def test_em_and_lbfgs_recover_a_gaussian_mixture_up_to_label_switching() -> None:
    truth = two_linear_experts()
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 4000)
    y = truth.sample(x, rng)
    for fit in (
        fit_em(x, y, truth.spec, config=EMConfig(n_init=2, seed=1)),
        fit_lbfgs(x, y, truth.spec, config=EMConfig(n_init=2, seed=1)),
    ):
        order = match_experts(fit.model, truth)
        p, t = fit.model.params, truth.params
        np.testing.assert_allclose(p.eta[order], t.eta, atol=0.06)
        np.testing.assert_allclose(p.nu[order], t.nu, rtol=0.15)
        slope_diff = (p.beta1[order[0]] - p.beta1[order[1]])[0]
        assert abs(slope_diff - 4.0) < 1.0
        assert voronoi_loss(fit.model, truth) < 0.3


def test_multinomial_experts_are_recovered_from_a_start_near_the_truth() -> None:
    spec = MoESpec(2, order=1, expert="multinomial", n_classes=3, gate="modified_softmax")
    coef = [[[1.0, 1.0], [-1.0, 0.5]], [[-1.0, -1.0], [1.0, -0.5]]]
    truth = MixtureOfExperts(spec, MoEParams([[6.0], [0.0]], [0.0, 0.0], coef))
    rng = np.random.default_rng(6)
    x = rng.uniform(-2, 2, 6000)
    y = truth.sample(x, rng)
    start = near_truth_init(truth.params, spec, rng, scale=0.3)
    fit = fit_lbfgs(x, y, spec, init=start)
    order = match_experts(fit.model, truth)
    np.testing.assert_allclose(fit.model.params.eta[order], truth.params.eta, atol=0.6)
    grid = np.linspace(-2, 2, 41)
    assert np.abs(fit.model.predict(grid) - truth.predict(grid)).max() < 0.05
    assert voronoi_loss(fit.model, truth) < voronoi_loss(MixtureOfExperts(spec, start), truth)


def test_radius_keeps_the_lbfgs_fit_in_a_box_around_the_start() -> None:
    truth = two_linear_experts()
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, 300)
    y = truth.sample(x, rng)
    start = near_truth_init(truth.params, MoESpec(3, order=1), rng, scale=0.0)
    fit = fit_lbfgs(x, y, MoESpec(3, order=1), init=start, config=EMConfig(radius=0.05))
    p = fit.model.params
    assert np.abs(p.eta - start.eta).max() <= 0.05 + 1e-9
    assert np.abs(np.log(p.nu) - np.log(start.nu)).max() <= 0.05 + 1e-9


def test_the_voronoi_loss_shrinks_with_more_data() -> None:
    truth = two_linear_experts("normalized_sigmoid", n_shared=1)
    loss = {}
    for n in (300, 8000):
        vals = []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            x = rng.uniform(-2, 2, n)
            y = truth.sample(x, rng)
            fit = fit_lbfgs(x, y, truth.spec, init=near_truth_init(truth.params, truth.spec, rng))
            vals.append(voronoi_loss(fit.model, truth))
        loss[n] = float(np.mean(vals))
    assert loss[8000] < loss[300] / 3


# -------------------------------------------------------------------------------- metrics


def test_voronoi_loss_ignores_labels_and_softmax_translation_and_counts_errors() -> None:
    truth = two_linear_experts(n_shared=1)
    p = truth.params
    perm = [1, 0]
    relabelled = MixtureOfExperts(
        truth.spec,
        MoEParams(
            p.beta1[perm] + 0.7,
            p.beta0[perm] - 1.1,
            p.eta[perm],
            p.nu[perm],
            p.omega,
            p.kappa,
            p.tau,
        ),
    )
    assert voronoi_loss(relabelled, truth) < 1e-12
    shifted = MoEParams(p.beta1, p.beta0, p.eta + 0.1, p.nu, p.omega, p.kappa, p.tau)
    assert voronoi_loss(MixtureOfExperts(truth.spec, shifted), truth) > 0.1


def test_over_specified_cells_and_their_exponent() -> None:
    truth = two_linear_experts()
    spec3 = MoESpec(3, order=1)
    exact_split = near_truth_init(
        truth.params, spec3, np.random.default_rng(0), split=(1,), scale=0.0
    )
    fitted = MixtureOfExperts(spec3, exact_split)
    cells = voronoi_cells(fitted, truth)
    assert cells.routed == ((0,), (1, 2))
    assert voronoi_loss(fitted, truth) < 1e-12  # splitting an atom keeps the mass: no loss
    eta = exact_split.eta.copy()
    eta[2] += 0.1  # move one atom of the over-specified cell
    moved = MixtureOfExperts(
        spec3, MoEParams(exact_split.beta1, exact_split.beta0, eta, exact_split.nu)
    )
    linear, squared = voronoi_loss(moved, truth, over_exponent=1.0), voronoi_loss(moved, truth)
    assert squared < linear  # small errors in over-specified cells count squared (D_1)


def test_expert_errors_and_kl_risk() -> None:
    truth = two_linear_experts()
    x = np.linspace(-1, 1, 101)
    errs = expert_errors(truth, truth, x)
    np.testing.assert_allclose(errs.routed_worst, 0.0, atol=1e-12)
    p = truth.params
    off = MixtureOfExperts(
        truth.spec,
        MoEParams(p.beta1, p.beta0, p.eta + np.array([[[0.0, 0.0]], [[0.2, 0.0]]]), p.nu),
    )
    np.testing.assert_allclose(expert_errors(off, truth, x).routed_worst, [0.0, 0.2], atol=1e-12)
    grid = np.linspace(-8, 8, 2001)
    assert abs(kl_risk(truth, truth, x, y_grid=grid)) < 1e-9
    # One Gaussian expert against another: KL = (mu1 - mu2)^2 / (2 var) when variances agree.
    one = MixtureOfExperts(MoESpec(1, order=0), MoEParams([[0.0]], [0.0], [[0.0]], [0.25]))
    two = MixtureOfExperts(MoESpec(1, order=0), MoEParams([[0.0]], [0.0], [[0.5]], [0.25]))
    assert abs(kl_risk(one, two, x, y_grid=grid) - 0.5**2 / (2 * 0.25)) < 1e-6
    cls = three_class_truth()
    assert abs(kl_risk(cls, cls, x)) < 1e-12


def test_loglog_slope_recovers_a_power_law() -> None:
    ns = np.array([100, 300, 1000, 3000, 10000])
    rng = np.random.default_rng(0)
    errors = 2.0 * ns[None, :] ** -0.5 * np.exp(0.1 * rng.normal(size=(20, len(ns))))
    fit = loglog_slope(ns, errors)
    assert fit.ci_low < -0.5 < fit.ci_high
    assert abs(fit.slope + 0.5) < 0.05


# ------------------------------------------------------------------------------- suggest


def test_suggest_experts_follows_the_rate_trade_off() -> None:
    ms = [
        suggest_experts(n, s=1, alpha=2.0, k_choices=(1,)).m
        for n in (100, 1_000, 10_000, 100_000, 1_000_000)
    ]
    assert ms == sorted(ms) and ms[-1] > ms[0]
    sug = suggest_experts(10_000, s=2, alpha=1.0, k_choices=(0, 1, 2, 3))
    assert isinstance(sug, Suggestion)
    assert sug.k == 0  # with alpha = 1 a higher order cannot approximate better, only costs
    assert sug.bound == pytest.approx(sug.approx_term + sug.estimation_term)
    assert sug.bound == min(row[2] for row in sug.table)
    assert sug.bound == pytest.approx(risk_bound(10_000, sug.m, sug.k, 2, 1.0))
    assert suggest_experts(10_000, s=1, alpha=4.0, k_choices=(0, 1, 2, 3)).k >= 1
    with pytest.raises(ValueError, match="alpha"):
        suggest_experts(1000, s=1, alpha=0.0)


def test_calibrate_constants_recovers_the_constants() -> None:
    true = RateConstants(approx=0.3, estimation=2.0)
    records = [
        (n, m, k, risk_bound(n, m, k, 1, 1.5, true))
        for n in (500, 5000)
        for m in (1, 3, 8)
        for k in (0, 1)
    ]
    got = calibrate_constants(records, s=1, alpha=1.5)
    assert got.approx == pytest.approx(0.3, rel=1e-6)
    assert got.estimation == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("module", ["estimation", "estimation_metrics", "estimation_rates"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"rewardlab.moe.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
