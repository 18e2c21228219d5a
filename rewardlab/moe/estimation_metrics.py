"""How far a fitted mixture of experts is from the truth: Voronoi cells and losses, expert
estimation errors, KL risk, and log-log convergence slopes.

Voronoi cells (Manole & Ho; used by every paper of the MoE theory series): each fitted atom goes
to the cell of the nearest true atom, so a true expert fitted by several atoms (over-specified)
has a cell with more than one element. The Voronoi loss then sums, per true expert ``j``,

    | sum_{i in V_j} mass_i - mass*_j |  +  sum_{i in V_j} mass_i * sum_groups ||Delta_ij||^e_j

with ``e_j = 1`` for a cell with one atom and ``e_j = over_exponent`` (2 in the loss ``D_1`` of
arXiv 2505.10860, eq. 4 and its predecessors) for a cell with several, over the parameter groups
(gate slope ``beta_1``, expert coefficients, Gaussian variance); shared experts add the same terms
with their weights ``omega`` as masses. Two choices are ours and documented here:

- cells are formed from the *expert* parameters (coefficients and variance) only: softmax gates
  are identified only up to a common translation of ``(beta_1, beta_0)``, so gate slopes are
  compared after fixing it (the truth's last expert has ``beta = 0``; the fitted atoms of that
  expert's cell are translated so their total mass is 1 and their mass-weighted mean slope is 0);
- masses are ``exp(beta_0)`` for softmax gates and ``sigmoid(beta_0)`` for the normalized sigmoid
  gate, and per-atom terms are mass-weighted for every gate (the papers' ``D_3``/``D_4`` for the
  sigmoid gate leave them unweighted), so an atom the fit switched off counts for little, as it
  does for softmax gates.

Example::

    >>> import numpy as np
    >>> from rewardlab.moe.estimation import MixtureOfExperts, MoEParams, MoESpec
    >>> from rewardlab.moe.estimation_metrics import voronoi_loss
    >>> truth = MixtureOfExperts(MoESpec(2), MoEParams([[1.0], [0.0]], [0.0, 0.0],
    ...                                                [[0.0, 1.0], [1.0, -1.0]], [0.1, 0.1]))
    >>> voronoi_loss(truth, truth)
    0.0
    >>> swapped = MixtureOfExperts(MoESpec(2), MoEParams([[0.0], [1.0]], [0.0, 0.0],
    ...                                                  [[1.0, -1.0], [0.0, 1.0]], [0.1, 0.1]))
    >>> voronoi_loss(swapped, truth)   # label switching costs nothing
    0.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from rewardlab.moe.estimation import Array, MixtureOfExperts
from rewardlab.stats import t_interval


@dataclass(frozen=True)
class VoronoiCells:
    """Fitted atoms per true expert."""

    routed: tuple[tuple[int, ...], ...]
    """For each true routed expert, the indices of the fitted routed experts in its cell."""
    shared: tuple[tuple[int, ...], ...]
    """For each true shared expert, the indices of the fitted shared experts in its cell."""


def _expert_vectors(model: MixtureOfExperts, shared: bool) -> Array:
    p = model.params
    coef, var = (p.kappa, p.tau) if shared else (p.eta, p.nu)
    flat = coef.reshape(len(coef), coef.shape[1] * coef.shape[2])
    if model.spec.expert == "gaussian":
        return np.concatenate([flat, var[:, None]], axis=1)
    return flat


def _cells(fit_vecs: Array, true_vecs: Array) -> tuple[tuple[int, ...], ...]:
    if len(true_vecs) == 0:
        return ()
    dist = np.linalg.norm(fit_vecs[:, None, :] - true_vecs[None, :, :], axis=2)
    nearest = np.argmin(dist, axis=1) if len(fit_vecs) else np.zeros(0, dtype=int)
    return tuple(tuple(int(i) for i in np.flatnonzero(nearest == j)) for j in range(len(true_vecs)))


def _check_pair(fitted: MixtureOfExperts, truth: MixtureOfExperts) -> None:
    fs, ts = fitted.spec, truth.spec
    if (fs.expert, fs.order, fs.n_outputs) != (
        ts.expert,
        ts.order,
        ts.n_outputs,
    ) or fitted.d != truth.d:
        raise ValueError(
            f"fitted ({fs.expert}, order {fs.order}, {fitted.d} inputs) and true ({ts.expert}, "
            f"order {ts.order}, {truth.d} inputs) experts are not comparable"
        )


def voronoi_cells(fitted: MixtureOfExperts, truth: MixtureOfExperts) -> VoronoiCells:
    """Voronoi cells of the fitted atoms around the true ones (by expert parameters)."""
    _check_pair(fitted, truth)
    return VoronoiCells(
        routed=_cells(_expert_vectors(fitted, False), _expert_vectors(truth, False)),
        shared=_cells(_expert_vectors(fitted, True), _expert_vectors(truth, True)),
    )


def _gate_masses(model: MixtureOfExperts, beta0: Array) -> Array:
    return (
        np.asarray(special.expit(beta0))
        if model.spec.gate == "normalized_sigmoid"
        else np.exp(beta0)
    )


def _normalized_gate(
    fitted: MixtureOfExperts, truth: MixtureOfExperts, cells: VoronoiCells
) -> tuple[Array, Array, Array, Array]:
    """Gate slopes and intercepts of fitted and true atoms, translation fixed for softmax kinds."""
    fb1, fb0 = fitted.params.beta1.copy(), fitted.params.beta0.copy()
    tb1, tb0 = truth.params.beta1.copy(), truth.params.beta0.copy()
    if fitted.spec.gate == "normalized_sigmoid":
        return fb1, fb0, tb1, tb0
    tb1, tb0 = tb1 - tb1[-1], tb0 - tb0[-1]
    ref = list(cells.routed[-1])
    if ref:
        w = np.exp(fb0[ref] - special.logsumexp(fb0[ref]))
        shift1, shift0 = w @ fb1[ref], float(special.logsumexp(fb0[ref]))
    else:  # no fitted atom near the reference expert: match total mass and mean slope instead
        w_all = np.exp(fb0 - special.logsumexp(fb0))
        t_all = np.exp(tb0 - special.logsumexp(tb0))
        shift1 = w_all @ fb1 - t_all @ tb1
        shift0 = float(special.logsumexp(fb0) - special.logsumexp(tb0))
    return fb1 - shift1, fb0 - shift0, tb1, tb0


def voronoi_loss(
    fitted: MixtureOfExperts, truth: MixtureOfExperts, *, over_exponent: float = 2.0
) -> float:
    """Voronoi loss between a fitted and the true mixture (see the module docstring); label
    switching does not change it, and it is 0 exactly when the parameters agree."""
    cells = voronoi_cells(fitted, truth)
    gaussian = truth.spec.expert == "gaussian"
    fb1, fb0, tb1, tb0 = _normalized_gate(fitted, truth, cells)
    fmass, tmass = _gate_masses(fitted, fb0), _gate_masses(truth, tb0)
    fp, tp = fitted.params, truth.params
    total = 0.0
    for j, cell in enumerate(cells.routed):
        idx = list(cell)
        total += abs(float(fmass[idx].sum()) - float(tmass[j]))
        e = 1.0 if len(idx) == 1 else over_exponent
        for i in idx:
            groups = [np.linalg.norm(fb1[i] - tb1[j]), np.linalg.norm(fp.eta[i] - tp.eta[j])]
            if gaussian:
                groups.append(abs(fp.nu[i] - tp.nu[j]))
            total += float(fmass[i]) * float(sum(g**e for g in groups))
    for j, cell in enumerate(cells.shared):
        idx = list(cell)
        total += abs(float(fp.omega[idx].sum()) - float(tp.omega[j]))
        e = 1.0 if len(idx) == 1 else over_exponent
        for i in idx:
            groups = [np.linalg.norm(fp.kappa[i] - tp.kappa[j])]
            if gaussian:
                groups.append(abs(fp.tau[i] - tp.tau[j]))
            total += float(fp.omega[i]) * float(sum(g**e for g in groups))
    return total


def parameter_errors(fitted: MixtureOfExperts, truth: MixtureOfExperts) -> tuple[Array, Array]:
    """Worst parameter distance within each Voronoi cell: for every true routed expert, the
    largest ``||theta_i - theta*_j||`` over its cell's fitted atoms (``theta`` = gate slope,
    translation fixed as for :func:`voronoi_loss`, expert coefficients and Gaussian variance),
    and the same for shared experts (coefficients, variance); ``inf`` for an empty cell."""
    cells = voronoi_cells(fitted, truth)
    fb1, _, tb1, _ = _normalized_gate(fitted, truth, cells)
    fv, tv = _expert_vectors(fitted, False), _expert_vectors(truth, False)
    fsv, tsv = _expert_vectors(fitted, True), _expert_vectors(truth, True)
    routed = np.array(
        [
            max(
                (float(np.linalg.norm(np.r_[fb1[i] - tb1[j], fv[i] - tv[j]])) for i in cell),
                default=np.inf,
            )
            for j, cell in enumerate(cells.routed)
        ]
    )
    shared = np.array(
        [
            max((float(np.linalg.norm(fsv[i] - tsv[j])) for i in cell), default=np.inf)
            for j, cell in enumerate(cells.shared)
        ]
    )
    return routed, shared


def match_experts(fitted: MixtureOfExperts, truth: MixtureOfExperts) -> NDArray[np.int_]:
    """For an exactly-specified fit (as many routed experts as the truth), the fitted index of
    each true routed expert, by minimum-cost matching of expert parameters (label switching)."""
    _check_pair(fitted, truth)
    if fitted.spec.n_experts != truth.spec.n_experts:
        raise ValueError(
            f"match_experts needs as many fitted as true experts ({fitted.spec.n_experts} vs "
            f"{truth.spec.n_experts}); use voronoi_cells for over-specified fits"
        )
    fv, tv = _expert_vectors(fitted, False), _expert_vectors(truth, False)
    cost = np.linalg.norm(fv[:, None, :] - tv[None, :, :], axis=2)
    rows, cols = optimize.linear_sum_assignment(cost)
    out = np.empty(len(tv), dtype=int)
    out[cols] = rows
    return out


@dataclass(frozen=True)
class ExpertErrors:
    """Expert-function estimation errors per true expert: ``||h_i - h*_j||`` in ``L2(P_X)``
    (``h`` the Gaussian mean, or the class-probability vector), over the fitted atoms ``i`` of
    the true expert's Voronoi cell; ``inf`` for an empty cell."""

    routed_worst: Array
    """Largest error over the cell's atoms, per true routed expert."""
    routed_weighted: Array
    """Error averaged over the cell's atoms with weights ``E_X[g_i(X)]`` (average gate mass)."""
    shared_worst: Array
    """Largest error over the cell's atoms, per true shared expert."""
    shared_weighted: Array
    """Error averaged over the cell's atoms with weights ``omega_i``."""


def expert_errors(fitted: MixtureOfExperts, truth: MixtureOfExperts, x: ArrayLike) -> ExpertErrors:
    """Expert estimation errors of ``fitted`` against ``truth`` on evaluation inputs ``x``."""
    cells = voronoi_cells(fitted, truth)
    s_f, s_t = fitted.spec.n_shared, truth.spec.n_shared
    hf, ht = fitted.expert_functions(x), truth.expert_functions(x)  # (n, S+m, Q)
    gate_mass = fitted.weights(x)[:, s_f:].mean(axis=0) / (
        1.0 - (fitted.spec.shared_weight if s_f else 0.0)
    )

    def errors(
        cell_list: tuple[tuple[int, ...], ...], off_f: int, off_t: int, mass: Array
    ) -> tuple[Array, Array]:
        worst, weighted = np.full(len(cell_list), np.inf), np.full(len(cell_list), np.inf)
        for j, cell in enumerate(cell_list):
            if not cell:
                continue
            idx = list(cell)
            err = np.sqrt(
                np.mean(
                    np.sum((hf[:, [off_f + i for i in idx]] - ht[:, [off_t + j]]) ** 2, axis=2),
                    axis=0,
                )
            )
            worst[j] = float(err.max())
            w = mass[idx]
            weighted[j] = float(w @ err / w.sum()) if w.sum() > 0 else float(err.mean())
        return worst, weighted

    rw, rwt = errors(cells.routed, s_f, s_t, gate_mass)
    sw, swt = errors(cells.shared, 0, 0, fitted.params.omega)
    return ExpertErrors(rw, rwt, sw, swt)


def kl_risk(
    truth: MixtureOfExperts | Callable[[Array, Array], Array],
    fitted: MixtureOfExperts,
    x: ArrayLike,
    *,
    y_grid: ArrayLike | None = None,
) -> float:
    """``E_X KL(p*(. | X) || p_hat(. | X))`` averaged over the rows of ``x``.

    ``truth`` is a mixture or a function ``(x_rows, y) -> log p*(y | x)`` (vectorized over rows).
    Multinomial experts: exact sum over classes. Gaussian experts: trapezoid rule over
    ``y_grid`` (required; it must cover where ``p*`` has mass for every ``x``).
    """
    xs = np.asarray(x, dtype=float)
    xs = xs[:, None] if xs.ndim == 1 else xs
    n = len(xs)

    def log_true(xr: Array, yr: Array) -> Array:
        return (
            truth.log_prob(xr, yr)
            if isinstance(truth, MixtureOfExperts)
            else np.asarray(truth(xr, yr))
        )

    if fitted.spec.expert == "multinomial":
        c = fitted.spec.n_classes
        xr, yr = np.repeat(xs, c, axis=0), np.tile(np.arange(c), n).astype(float)
        lt, lf = log_true(xr, yr).reshape(n, c), fitted.log_prob(xr, yr).reshape(n, c)
        return float(np.mean(np.sum(np.exp(lt) * (lt - lf), axis=1)))
    if y_grid is None:
        raise ValueError("kl_risk for Gaussian experts needs a y_grid")
    ys = np.asarray(y_grid, dtype=float).reshape(-1)
    xr, yr = np.repeat(xs, len(ys), axis=0), np.tile(ys, n)
    lt = log_true(xr, yr).reshape(n, len(ys))
    lf = fitted.log_prob(xr, yr).reshape(n, len(ys))
    integrand = np.exp(lt) * (lt - lf)
    return float(np.mean(np.trapezoid(integrand, ys, axis=1)))


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares line through ``(log n, log geometric-mean error)``."""

    slope: float
    """Fitted exponent: error ~ n^slope."""
    intercept: float
    """Intercept of the line (natural logs)."""
    ci_low: float
    """2.5% bootstrap percentile of the slope (seeds resampled)."""
    ci_high: float
    """97.5% bootstrap percentile of the slope."""


def geometric_band(errors: ArrayLike, confidence: float = 0.95) -> tuple[Array, Array, Array]:
    """Per column of ``errors`` (seeds x sizes): geometric mean and a t-interval on the log
    scale (lower, upper)."""
    logs = np.log(np.asarray(errors, dtype=float))
    stats = [t_interval(col, confidence) for col in logs.T]
    mean = np.array([s[0] for s in stats])
    half = np.array([s[1] for s in stats])
    return np.exp(mean), np.exp(mean - half), np.exp(mean + half)


def loglog_slope(
    ns: ArrayLike, errors: ArrayLike, *, n_boot: int = 2000, seed: int = 0
) -> SlopeFit:
    """Slope of ``log(geometric mean over seeds)`` against ``log n``; ``errors`` is
    ``(seeds, len(ns))``. The interval resamples seeds with replacement."""
    ln = np.log(np.asarray(ns, dtype=float))
    logs = np.log(np.asarray(errors, dtype=float))
    if logs.ndim != 2 or logs.shape[1] != len(ln):
        raise ValueError(f"errors must be (seeds, {len(ln)}), got {logs.shape}")
    if not np.all(np.isfinite(logs)):
        raise ValueError("errors must be positive and finite")
    slope, intercept = np.polyfit(ln, logs.mean(axis=0), 1)
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.integers(len(logs), size=len(logs)) for _ in range(n_boot)])
    means = logs[picks].mean(axis=1)  # (n_boot, sizes): each resample's mean log error
    centred = ln - ln.mean()
    boots = (means - means.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return SlopeFit(float(slope), float(intercept), float(lo), float(hi))
