"""Reproduce the convergence claims of the MoE theory papers with ``rewardlab.moe.estimation``.

Three experiments (each a log-log plot with fitted slopes, seeds, 95% bands and the papers'
rates drawn on the same axes; numbers in ``<out>/<experiment>.json``):

``gate``
    arXiv 2310.14188: multinomial-logistic experts (3 classes, one covariate), softmax gate vs
    the modified gate ``softmax(beta_1 tanh(x) + beta_0)``; two true experts, the first with
    non-zero slopes ("none vanish") or zero slopes ("vanish"); fitted exactly (2 experts) and
    over-specified (3, the extra one in the first expert's Voronoi cell). Voronoi loss against n.
``shared``
    arXiv 2505.10860 (appendix G.1 set-up, our parameter values): Gaussian linear experts, one
    covariate in [-3, 3]; vanilla softmax MoE (2 true routed experts, 3 fitted) vs DeepSeek-V2
    (+ shared expert, softmax), SMoE with normalized sigmoid gating, and DeepSeek-V3 (shared +
    normalized sigmoid); 1 true shared expert fitted by 2. Expert-estimation errors against n.
``tradeoff``
    Mendes & Jiang (arXiv 1110.2058): Gaussian responses around a function of smoothness
    ``alpha = 1.5`` on [0, 1], fitted by softmax mixtures of ``m`` polynomial experts of order
    ``k``; KL risk against n for every (m, k), the best (m, k) per n, and ``suggest_experts``
    (default and calibrated constants) against the sweep.

Every fit is a maximum-likelihood fit by L-BFGS-B (:func:`rewardlab.moe.estimation.fit_lbfgs`):
``gate`` and ``shared`` start near the truth as the papers' simulations do, within a box of
half-width ``--radius`` around the start (a compact parameter set); ``tradeoff`` starts from two
data-driven starts. Writes to ``--out`` (default ``runs/moe_theory``; the committed results are
in ``experiments/moe_theory/results``, rebuilt with ``--out experiments/moe_theory/results``).

Usage::

    python experiments/moe_theory/run.py all --out experiments/moe_theory/results   # README numbers
    python experiments/moe_theory/run.py gate --quick --out /tmp/moe                  # smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # tiny matrices: threads only contend on a shared machine

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rewardlab.moe.estimation import (  # noqa: E402
    EMConfig,
    MixtureOfExperts,
    MoEParams,
    MoESpec,
    fit_lbfgs,
    near_truth_init,
)
from rewardlab.moe.estimation_metrics import (  # noqa: E402
    expert_errors,
    geometric_band,
    kl_risk,
    loglog_slope,
    parameter_errors,
    voronoi_loss,
)
from rewardlab.moe.estimation_rates import (  # noqa: E402
    calibrate_constants,
    optimal_rate_exponent,
    risk_bound,
    suggest_experts,
)

EXPERIMENTS = ("gate", "shared", "tradeoff")
Job = tuple[Any, ...]

# Budgets per experiment (full run / --quick smoke run): sizes, seeds, L-BFGS iterations per fit
# (``max_iter``) and, for the smoke run, a coarser plot resolution (``dpi``, default 110).
FULL: dict[str, dict[str, Any]] = {
    "gate": {"ns": (1000, 2000, 4000, 8000, 16000), "seeds": 4, "max_iter": 300},
    "shared": {"ns": (500, 1000, 2000, 4000, 8000, 16000), "seeds": 5, "max_iter": 300},
    "tradeoff": {
        "ns": (250, 1000, 4000, 16000),
        "seeds": 3,
        "ms": (1, 2, 3, 4, 6, 8, 12),
        "ks": (0, 1, 3),
        "max_iter": 250,
    },
}
QUICK: dict[str, dict[str, Any]] = {
    "gate": {"ns": (300, 600), "seeds": 2, "max_iter": 40, "dpi": 50},
    "shared": {"ns": (300, 600), "seeds": 2, "max_iter": 40, "dpi": 50},
    "tradeoff": {
        "ns": (200, 400),
        "seeds": 2,
        "ms": (1, 2, 3),
        "ks": (0, 1),
        "max_iter": 40,
        "dpi": 50,
    },  # fmt: skip
}


# ------------------------------------------------------------------------------------ gate

GATE_SETTINGS = ("none_vanish", "vanish")
GATE_KINDS = ("softmax", "modified_softmax")
GATE_FITS = ("exact", "over")


def gate_truth(setting: str, gate: str) -> MixtureOfExperts:
    """Two multinomial-logistic experts (3 classes) gated by ``beta_1 = (3, 0)``; the first
    expert's slopes are ``(1.5, -1)`` or, in the vanishing setting, ``0``."""
    coef = np.zeros((2, 2, 2))
    coef[0, :, 0], coef[1, :, 0], coef[1, :, 1] = [1.0, -1.0], [-1.0, 1.0], [-1.0, 0.5]
    if setting == "none_vanish":
        coef[0, :, 1] = [1.5, -1.0]
    spec = MoESpec(2, order=1, expert="multinomial", n_classes=3, gate=gate)  # type: ignore[arg-type]
    return MixtureOfExperts(spec, MoEParams([[3.0], [0.0]], [0.0, 0.0], coef))


def gate_job(job: Job) -> dict[str, Any]:
    setting, gate, fit_kind, n, seed, radius, max_iter = job
    truth = gate_truth(setting, gate)
    rng = np.random.default_rng([seed, n])
    x = rng.uniform(-2, 2, n)
    y = truth.sample(x, rng)
    spec = MoESpec(
        2 if fit_kind == "exact" else 3, order=1, expert="multinomial", n_classes=3, gate=gate
    )  # type: ignore[arg-type]
    start = near_truth_init(truth.params, spec, rng, split=(0,), scale=0.1)
    config = EMConfig(max_iter=max_iter, tol=1e-12, radius=radius)
    fit = fit_lbfgs(x, y, spec, init=start, config=config)
    perr = parameter_errors(fit.model, truth)[0]
    return {
        "setting": setting, "gate": gate, "fit": fit_kind, "n": n, "seed": seed,
        "loss": voronoi_loss(fit.model, truth), "cell0": float(perr[0]), "cell1": float(perr[1]),
        "iters": fit.n_iter, "loglik_gain": fit.loglik - truth.loglik(x, y),
    }  # fmt: skip


def gate_jobs(b: dict[str, Any], radius: float | None) -> list[Job]:
    return [
        (s, g, f, n, seed, radius, b["max_iter"])
        for s in GATE_SETTINGS for g in GATE_KINDS for f in GATE_FITS for n in b["ns"] for seed in range(b["seeds"])
    ]  # fmt: skip


# ---------------------------------------------------------------------------------- shared

SHARED_ARMS = {
    "softmax": ("softmax", 0),
    "softmax+shared (DeepSeek-V2)": ("softmax", 1),
    "norm. sigmoid": ("normalized_sigmoid", 0),
    "norm. sigmoid+shared (DeepSeek-V3)": ("normalized_sigmoid", 1),
}


def shared_truth(arm: str) -> MixtureOfExperts:
    """Routed linear experts ``2 + 8x`` and ``1 - 6x`` (variance 0.4), gate ``beta_1 = (2, 0)``,
    ``beta_0 = (0.5, 0)``; with a shared expert ``2x`` (variance 0.2) at total weight 1/2."""
    gate, shared = SHARED_ARMS[arm]
    spec = MoESpec(2, order=1, gate=gate, n_shared=shared)  # type: ignore[arg-type]
    routed = dict(
        gate_slope=[[2.0], [0.0]],
        gate_bias=[0.5, 0.0],
        coef=[[2.0, 8.0], [1.0, -6.0]],
        var=[0.4, 0.4],
    )
    extra = dict(shared_weights=[1.0], shared_coef=[[0.0, 2.0]], shared_var=[0.2]) if shared else {}
    return MixtureOfExperts(spec, MoEParams(**routed, **extra))  # type: ignore[arg-type]


def shared_job(job: Job) -> dict[str, Any]:
    arm, n, seed, radius, max_iter = job
    truth = shared_truth(arm)
    rng = np.random.default_rng([seed, n])
    x = rng.uniform(-3, 3, n)
    y = truth.sample(x, rng)
    spec = MoESpec(3, order=1, gate=truth.spec.gate, n_shared=2 * truth.spec.n_shared)
    start = near_truth_init(truth.params, spec, rng, split=(0,), split_shared=(0,), scale=0.1)
    config = EMConfig(max_iter=max_iter, tol=1e-12, radius=radius)
    fit = fit_lbfgs(x, y, spec, init=start, config=config)
    errs = expert_errors(fit.model, truth, np.linspace(-3, 3, 201))
    return {
        "arm": arm, "n": n, "seed": seed, "loss": voronoi_loss(fit.model, truth),
        "routed0_weighted": float(errs.routed_weighted[0]), "routed0_worst": float(errs.routed_worst[0]),
        "routed1": float(errs.routed_worst[1]),
        "shared_weighted": float(errs.shared_weighted[0]) if len(errs.shared_weighted) else None,
        "shared_worst": float(errs.shared_worst[0]) if len(errs.shared_worst) else None,
        "iters": fit.n_iter,
    }  # fmt: skip


def shared_jobs(b: dict[str, Any], radius: float | None) -> list[Job]:
    return [
        (a, n, seed, radius, b["max_iter"])
        for a in SHARED_ARMS
        for n in b["ns"]
        for seed in range(b["seeds"])
    ]


# -------------------------------------------------------------------------------- tradeoff

ALPHA = 1.5
NOISE_SD = 0.3
_PHASES = np.random.default_rng(0).uniform(0, 2 * np.pi, 60)


def target(x: np.ndarray) -> np.ndarray:
    """``h(x) = 0.8 sum_j j^-2 cos(pi j x + phi_j)``: Sobolev smoothness 1.5 (``alpha``)."""
    j = np.arange(1, len(_PHASES) + 1)
    return 0.8 * np.sum(j**-2.0 * np.cos(np.pi * np.outer(x, j) + _PHASES), axis=1)


def _true_log_prob(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    grid, where = np.unique(x[:, 0], return_inverse=True)  # kl_risk repeats each x per y
    resid = y - target(grid)[where]
    return -0.5 * (np.log(2 * np.pi * NOISE_SD**2) + resid**2 / NOISE_SD**2)


def tradeoff_job(job: Job) -> dict[str, Any]:
    m, k, n, seed, max_iter = job
    rng = np.random.default_rng([seed, n])
    x = rng.uniform(0, 1, n)
    y = target(x) + NOISE_SD * rng.standard_normal(n)
    fit = fit_lbfgs(
        x,
        y,
        MoESpec(m, order=k),
        config=EMConfig(max_iter=max_iter, tol=1e-10, n_init=2, seed=seed, bound=1e4),
    )
    xg = (np.arange(200) + 0.5) / 200
    hg = target(xg)
    yg = np.linspace(hg.min() - 7 * NOISE_SD, hg.max() + 7 * NOISE_SD, 500)
    kl = kl_risk(_true_log_prob, fit.model, xg, y_grid=yg)
    return {"m": m, "k": k, "n": n, "seed": seed, "kl": max(kl, 1e-9), "iters": fit.n_iter}


def tradeoff_jobs(b: dict[str, Any]) -> list[Job]:
    return [
        (m, k, n, seed, b["max_iter"])
        for n in b["ns"][::-1]
        for m in b["ms"]
        for k in b["ks"]
        for seed in range(b["seeds"])
    ]


# ---------------------------------------------------------------------------------- running


def run_jobs(
    fn: Callable[[Job], dict[str, Any]], jobs: list[Job], workers: int, desc: str, log: Path
) -> list[dict[str, Any]]:
    """Run the jobs (in a pool when ``workers > 1``), appending every result to ``log`` (JSON
    lines) as it arrives; jobs already in ``log`` are not run again, so an interrupted run
    resumes."""
    done: dict[str, dict[str, Any]] = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            done[json.dumps(entry["job"])] = entry["row"]
    todo = [j for j in jobs if json.dumps(list(j)) not in done]
    rows = [done[json.dumps(list(j))] for j in jobs if json.dumps(list(j)) in done]
    with log.open("a") as fh:

        def keep(job: Job, row: dict[str, Any]) -> None:
            fh.write(json.dumps({"job": list(job), "row": row}, default=float) + "\n")
            fh.flush()
            rows.append(row)

        if workers <= 1:
            for job in tqdm(todo, desc=desc, initial=len(rows), total=len(jobs)):
                keep(job, fn(job))
        else:
            with Pool(workers) as pool:
                for job, row in tqdm(
                    pool.imap_unordered(_tagged, [(fn, j) for j in todo]),
                    desc=desc, initial=len(rows), total=len(jobs),
                ):  # fmt: skip
                    keep(job, row)
    return rows


def _tagged(item: tuple[Callable[[Job], dict[str, Any]], Job]) -> tuple[Job, dict[str, Any]]:
    fn, job = item
    return job, fn(job)


def table(
    rows: Iterable[dict[str, Any]],
    key: Callable[[dict[str, Any]], Any],
    ns: tuple[int, ...],
    seeds: int,
    metric: str,
) -> dict[Any, np.ndarray]:
    """``{group: (seeds, len(ns)) array of metric}``."""
    out: dict[Any, np.ndarray] = {}
    for r in rows:
        arr = out.setdefault(key(r), np.full((seeds, len(ns)), np.nan))
        arr[r["seed"], ns.index(r["n"])] = r[metric]
    return out


def band_plot(
    ax: Any, ns: tuple[int, ...], errors: np.ndarray, label: str, color: str, style: str = "-"
) -> dict[str, float]:
    mean, lo, hi = geometric_band(errors)
    sl = loglog_slope(ns, errors)
    ax.plot(
        ns,
        mean,
        style,
        color=color,
        marker="o",
        ms=3,
        label=f"{label}: slope {sl.slope:+.2f} [{sl.ci_low:+.2f}, {sl.ci_high:+.2f}]",
    )
    ax.fill_between(ns, lo, hi, color=color, alpha=0.15)
    return {
        "slope": sl.slope,
        "ci_low": sl.ci_low,
        "ci_high": sl.ci_high,
        "geo_mean": mean.tolist(),
        "lo": lo.tolist(),
        "hi": hi.tolist(),
    }


def reference(
    ax: Any,
    ns: tuple[int, ...],
    anchor: float,
    exponent: float | None,
    label: str,
    style: Any = ":",
) -> None:
    """A reference rate through ``anchor`` at the first n: ``n^exponent``, or ``1/log n``."""
    n = np.geomspace(ns[0], ns[-1], 50)
    curve = (
        anchor * (n / ns[0]) ** exponent
        if exponent is not None
        else anchor * math.log(ns[0]) / np.log(n)
    )
    ax.plot(n, curve, ls=style, color="0.35", lw=1, label=label)


def report_gate(rows: list[dict[str, Any]], b: dict[str, Any], out: Path) -> dict[str, Any]:
    ns = tuple(b["ns"])
    losses = table(rows, lambda r: (r["setting"], r["gate"], r["fit"]), ns, b["seeds"], "loss")
    cells = table(rows, lambda r: (r["setting"], r["gate"], r["fit"]), ns, b["seeds"], "cell0")
    fig, axes = plt.subplots(2, 2, figsize=(13, 10), sharex=True)
    colors = {("softmax", "exact"): "tab:blue", ("softmax", "over"): "tab:red",
              ("modified_softmax", "exact"): "tab:cyan", ("modified_softmax", "over"): "tab:orange"}  # fmt: skip
    summary: dict[str, Any] = {}
    for col, setting in enumerate(GATE_SETTINGS):
        for row, (metric, data) in enumerate(
            (("Voronoi loss", losses), ("cell-0 parameter error", cells))
        ):
            ax = axes[row, col]
            for (g, f), color in colors.items():
                stats = band_plot(
                    ax, ns, data[(setting, g, f)], f"{g}, {f}", color, "-" if f == "over" else "--"
                )
                summary[f"{setting}/{g}/{f}/{'loss' if row == 0 else 'cell0'}"] = stats
            first = float(np.exp(np.log(data[(setting, "modified_softmax", "exact")][:, 0]).mean()))
            reference(
                ax,
                ns,
                first,
                -0.5 if row == 0 else -0.5,
                "n^-1/2 (exact fit; modified gate's loss)",
            )
            if row == 1:
                over = float(
                    np.exp(np.log(data[(setting, "modified_softmax", "over")][:, 0]).mean())
                )
                reference(ax, ns, over, -0.25, "n^-1/4 (over-specified atoms, modified gate)", "-.")
                if setting == "vanish":
                    soft = float(np.exp(np.log(data[(setting, "softmax", "over")][:, 0]).mean()))
                    reference(
                        ax,
                        ns,
                        soft,
                        None,
                        "1/log n (slower than any polynomial, softmax)",
                        (0, (1, 3)),
                    )
            ax.set(
                xscale="log",
                yscale="log",
                title=f"{setting.replace('_', ' ')}: {metric}",
                xlabel="n",
            )
            ax.legend(fontsize=7)
    fig.suptitle(
        f"arXiv 2310.14188: softmax vs modified gate, multinomial experts (geometric mean of {b['seeds']} seeds, 95% band)"
    )
    fig.tight_layout()
    fig.savefig(out / "gate.png", dpi=b.get("dpi", 110))
    plt.close(fig)
    return summary


def report_shared(rows: list[dict[str, Any]], b: dict[str, Any], out: Path) -> dict[str, Any]:
    ns = tuple(b["ns"])
    colors = dict(zip(SHARED_ARMS, ("tab:red", "tab:orange", "tab:cyan", "tab:blue"), strict=True))
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), sharex=True)
    summary: dict[str, Any] = {}
    panels = (
        ("routed0_weighted", "over-specified routed expert (mass-weighted error)"),
        ("routed0_worst", "over-specified routed expert (worst atom)"),
        ("shared_weighted", "shared expert (mass-weighted) vs exact routed expert"),
    )
    for ax, (metric, title) in zip(axes, panels, strict=True):
        if metric == "shared_weighted":
            for arm in SHARED_ARMS:
                if SHARED_ARMS[arm][1]:
                    data = table(rows, lambda r: r["arm"], ns, b["seeds"], metric)[arm]
                    summary[f"{arm}/shared"] = band_plot(
                        ax, ns, data, f"shared, {arm}", colors[arm]
                    )
            data = table(rows, lambda r: r["arm"], ns, b["seeds"], "routed1")["softmax"]
            summary["softmax/routed1"] = band_plot(
                ax, ns, data, "exactly fitted routed expert, softmax", "0.5", "--"
            )
            anchor = float(np.exp(np.log(data[:, 0]).mean()))
            reference(ax, ns, anchor, -0.25, "n^-1/4 (over-specified shared, Table 1)", "-.")
            reference(ax, ns, anchor, -0.5, "n^-1/2")
        else:
            groups = table(rows, lambda r: r["arm"], ns, b["seeds"], metric)
            for arm in SHARED_ARMS:
                summary[f"{arm}/{metric}"] = band_plot(ax, ns, groups[arm], arm, colors[arm])
            anchor = float(np.exp(np.log(groups["softmax"][:, 0]).mean()))
            reference(ax, ns, anchor, -0.5, "n^-1/2 (norm. sigmoid, dense regime, Thm 4)")
            reference(ax, ns, anchor, -0.25, "n^-1/4 (softmax linear, input-dependent part)", "-.")
            reference(ax, ns, anchor, -0.125, "n^-1/8 (softmax linear experts, Thm 2)", "--")
        ax.set(
            xscale="log",
            yscale="log",
            title=title,
            xlabel="n",
            ylabel="L2 error of the expert function",
        )
        ax.legend(fontsize=7)
    fig.suptitle(
        f"arXiv 2505.10860: shared experts and normalized sigmoid gating (geometric mean of {b['seeds']} seeds, 95% band)"
    )
    fig.tight_layout()
    fig.savefig(out / "shared.png", dpi=b.get("dpi", 110))
    plt.close(fig)
    return summary


def report_tradeoff(rows: list[dict[str, Any]], b: dict[str, Any], out: Path) -> dict[str, Any]:
    ns, ms, ks = tuple(b["ns"]), tuple(b["ms"]), tuple(b["ks"])
    kl = table(rows, lambda r: (r["m"], r["k"]), ns, b["seeds"], "kl")
    geo = {mk: np.exp(np.log(a).mean(axis=0)) for mk, a in kl.items()}
    best = [min(geo, key=lambda mk: geo[mk][i]) for i in range(len(ns))]
    consts = calibrate_constants(
        [(r["n"], r["m"], r["k"], r["kl"]) for r in rows], s=1, alpha=ALPHA
    )
    kmax = max(ks)
    sugg = {
        "default": [suggest_experts(n, s=1, alpha=ALPHA, k_choices=ks, m_max=max(ms)) for n in ns],
        "calibrated": [
            suggest_experts(n, s=1, alpha=ALPHA, k_choices=ks, m_max=max(ms), constants=consts)
            for n in ns
        ],
    }

    def observed(m: int, k: int, i: int) -> float | None:
        return float(geo[(m, k)][i]) if (m, k) in geo else None

    fig, axes = plt.subplots(1, 3, figsize=(19, 5.8))
    ax = axes[0]
    cmap = plt.get_cmap("viridis")
    shown = [
        (m, k)
        for k in ks
        for m in ms
        if (m, k) in geo and (m in (1, 2, 4, 8, 12) or m == max(ms)) and k in (0, 1, kmax)
    ]
    for idx, (m, k) in enumerate(shown):
        mean, lo, hi = geometric_band(kl[(m, k)])
        color = cmap(idx / max(1, len(shown) - 1))
        ax.plot(ns, mean, "-", marker="o", ms=3, color=color, label=f"m={m}, k={k}")
        ax.fill_between(ns, lo, hi, color=color, alpha=0.1)
        ax.plot(ns, [risk_bound(n, m, k, 1, ALPHA, consts) for n in ns], ":", color=color, lw=1)
    envelope = np.stack([kl[mk][:, i] for i, mk in enumerate(best)], axis=1)
    env = band_plot(ax, ns, envelope, "best (m, k) per n", "black")
    expo = optimal_rate_exponent(1, ALPHA, 1)
    n_ref = np.geomspace(ns[0], ns[-1], 50)
    ax.plot(
        n_ref,
        env["geo_mean"][0] * ((n_ref / np.log(n_ref)) / (ns[0] / math.log(ns[0]))) ** -expo,
        "--",
        color="0.3",
        label=f"(n/log n)^-{expo:.2f} (tuned m, k>=1)",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="n",
        ylabel="KL risk",
        title="KL risk vs n (dotted: calibrated bound)",
    )
    ax.legend(fontsize=6, ncol=2)
    ax = axes[1]
    for i, n in enumerate(ns):
        kbest = best[i][1]
        vals = [observed(m, kbest, i) for m in ms]
        ax.plot(ms, vals, "-o", ms=3, label=f"n={n}, k={kbest}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="m (experts)",
        ylabel="KL risk",
        title="trade-off in m (best k per n)",
    )
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.plot(ns, [mk[0] for mk in best], "-o", color="black", label="sweep: best m")
    ax.plot(
        ns, [s.m for s in sugg["default"]], "--s", color="tab:red", label="suggest_experts (C=1)"
    )
    ax.plot(
        ns,
        [s.m for s in sugg["calibrated"]],
        ":^",
        color="tab:blue",
        label="suggest_experts (calibrated)",
    )
    for i, n in enumerate(ns):
        ax.annotate(
            f"k={best[i][1]}",
            (n, best[i][0]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    ax.set(xscale="log", xlabel="n", ylabel="m", title="where the best (m, k) moves")
    ax.legend(fontsize=7)
    fig.suptitle(
        f"Mendes & Jiang: m experts of order k, alpha={ALPHA}, s=1, noise sd {NOISE_SD} ({b['seeds']} seeds)"
    )
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=b.get("dpi", 110))
    plt.close(fig)
    comparison = []
    for i, n in enumerate(ns):
        row = {"n": n, "best": list(best[i]), "best_kl": observed(*best[i], i)}
        for name, ss in sugg.items():
            row[name] = [ss[i].m, ss[i].k]
            row[f"{name}_kl"] = observed(ss[i].m, ss[i].k, i)
        comparison.append(row)
    return {
        "envelope": env,
        "theory_exponent": -expo,
        "constants": {"approx": consts.approx, "estimation": consts.estimation},
        "comparison": comparison,
        "geo_kl": {f"{m},{k}": v.tolist() for (m, k), v in geo.items()},
    }


DEFAULT_OUT = Path("runs/moe_theory")
"""Default output folder: not the committed ``experiments/moe_theory/results`` (pass ``--out``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiment", choices=(*EXPERIMENTS, "all"))
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder (default {DEFAULT_OUT}; an interrupted run resumes from"
        " <out>/<experiment>.rows.jsonl)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--workers", type=int, default=2, help="parallel fits (default 2)")
    parser.add_argument(
        "--radius",
        type=float,
        default=1.0,
        help="box half-width around the start for gate/shared (<= 0: none)",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only redraw the plots and summaries from the fits recorded in <out>/<experiment>.json",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1 or (args.seeds is not None and args.seeds < 2):
        print(
            "error: --workers must be >= 1 and --seeds >= 2 (bands need two seeds)", file=sys.stderr
        )
        return 2
    names = EXPERIMENTS if args.experiment == "all" else (args.experiment,)
    if args.render and not all((args.out / f"{name}.json").is_file() for name in names):
        print(
            f"error: --render needs {', '.join(n + '.json' for n in names)} in {args.out}",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    radius = args.radius if args.radius > 0 else None
    reports = {"gate": report_gate, "shared": report_shared, "tradeoff": report_tradeoff}
    for name in names:
        if args.render:
            record = json.loads((args.out / f"{name}.json").read_text())
            b, rows = record["budget"], record["rows"]
            b = {k: tuple(v) if isinstance(v, list) else v for k, v in b.items()}
            record["summary"] = reports[name](rows, b, args.out)
        else:
            b = dict((QUICK if args.quick else FULL)[name])
            if args.seeds:
                b["seeds"] = args.seeds
            t0 = time.time()
            log = args.out / f"{name}.rows.jsonl"
            if name == "gate":
                rows = run_jobs(gate_job, gate_jobs(b, radius), args.workers, name, log)
            elif name == "shared":
                rows = run_jobs(shared_job, shared_jobs(b, radius), args.workers, name, log)
            else:
                rows = run_jobs(tradeoff_job, tradeoff_jobs(b), args.workers, name, log)
            record = {"experiment": name, "budget": b, "radius": radius if name != "tradeoff" else None,
                      "seconds": round(time.time() - t0, 1), "summary": reports[name](rows, b, args.out),
                      "rows": rows}  # fmt: skip
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=1, default=float))
        (args.out / f"{name}.rows.jsonl").unlink(missing_ok=True)  # the record holds the rows
        print(markdown_summary(name, record["summary"]))
        print(f"{name}: {len(rows)} fits in {record['seconds']} s -> {args.out / (name + '.png')}")
    return 0


def markdown_summary(name: str, summary: dict[str, Any]) -> str:
    """The fitted slopes (and, for ``tradeoff``, the experts comparison) as markdown tables."""
    lines = [
        f"### {name}",
        "",
        "| curve | slope [95% CI] | geometric mean at each n |",
        "|---|---|---|",
    ]
    slopes = summary if name != "tradeoff" else {"best (m, k) per n": summary["envelope"]}
    for key, st in slopes.items():
        means = ", ".join(f"{v:.3g}" for v in st["geo_mean"])
        lines.append(
            f"| {key} | {st['slope']:+.2f} [{st['ci_low']:+.2f}, {st['ci_high']:+.2f}] | {means} |"
        )
    if name == "tradeoff":
        c = summary["constants"]
        lines += ["", f"calibrated constants: C_a = {c['approx']:.3g}, C_e = {c['estimation']:.3g}", "",
                  "| n | sweep best (m, k): KL | suggest_experts C=1: KL | calibrated: KL |", "|---|---|---|---|"]  # fmt: skip
        for row in summary["comparison"]:
            cells = [f"{tuple(row[key])}: {row[key + '_kl'] if key != 'best' else row['best_kl']:.3g}"
                     for key in ("best", "default", "calibrated")]  # fmt: skip
            lines.append(f"| {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
