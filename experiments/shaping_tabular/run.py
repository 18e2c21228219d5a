"""Reproduce the thesis's tabular results for EXPRD, ExpAdaRD and ExploRS (several seeds).

Three experiments, each a learning curve of the expected *original* discounted return of the
learner's current policy (computed exactly from the model over the env's horizon):

1. ``exprd``: Q-learning on ROOM and LINEK with the original reward, EXPRD with ``B = 0``
   (goal only) and ``B = 5``, and PBRS with ``V*``.
2. ``expadard``: REINFORCE on ROOM with the adaptive learner-aware design, invariance-only,
   EXPRD (same region features) and the original reward; at the thesis's step size 0.01
   (50k episodes) and, as a sensitivity check, at 0.05 and 0.5 (a few thousand episodes).
3. ``explors``: REINFORCE on CHAIN with its distractor: original, bonus-only, shaping-only,
   ExploRS.

Writes ``results.json``, ``results.md`` (tables of mean and 95% CI at fixed episode counts) and
PNG plots next to this file (or to ``--out``). With ``--only`` a subset, the other experiments'
curves are taken from the existing ``results.json`` in ``--out`` and everything is re-rendered.

Usage::

    python experiments/shaping_tabular/run.py --ada-seeds 10   # ~50 min of CPU (2 workers)
    python experiments/shaping_tabular/run.py --only expadard --workers 1   # ExpAdaRD only
    python experiments/shaping_tabular/run.py --seeds 3 --scale 0.02 --out /tmp/quick
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # tiny matrices: threads only contend on a shared box

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from rewardlab.shaping import (  # noqa: E402
    ExploRSConfig,
    ReinforceConfig,
    TabularMDP,
    adaptive_teacher,
    chain_mdp,
    design_problem,
    expected_return,
    goal_states,
    greedy_exprd,
    informativeness,
    invariance_only,
    linek_mdp,
    optimal_values,
    pbrs_optimal,
    room_mdp,
    room_region_features,
    run_q_learning,
    solve_exprd,
    train_explors,
    train_reinforce_with_teacher,
)
from rewardlab.shaping.mdp import optimal_policy  # noqa: E402

HERE = Path(__file__).resolve().parent
Job = tuple[str, str, int, dict[str, Any]]
Results = dict[str, dict[str, dict[int, dict[str, Any]]]]

#: (experiment, REINFORCE step size, episodes): the thesis's step size first.
EXPADARD_VARIANTS = (
    ("expadard", 0.01, 50_000),
    ("expadard_lr0.05", 0.05, 4000),
    ("expadard_lr0.5", 0.5, 2000),
)
#: Episode counts of the tables (longest matching prefix of the experiment name).
CHECKPOINTS = {
    "exprd": [100, 250, 500, 1000, 3000],
    "expadard": [1000, 5000, 10000, 25000, 50000],
    "expadard_lr0.05": [250, 500, 1000, 2000, 4000],
    "expadard_lr0.5": [100, 250, 500, 1000, 2000],
    "explors": [250, 500, 1000, 2000, 3000],
}


# ----------------------------------------------------------------------------- statistics


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval over seeds (axis 0)."""
    n = values.shape[0]
    m = float(values.mean())
    if n < 2:
        return m, float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return m, half


# ----------------------------------------------------------------------------- jobs (workers)


def _mdp(name: str) -> TabularMDP:
    if name == "ROOM":
        return room_mdp()
    return linek_mdp() if name == "LINEK" else chain_mdp()


def run_job(job: Job) -> tuple[str, str, int, dict[str, Any]]:
    """Run one (experiment, method, seed) and return its curve (executed in a worker)."""
    exp, method, seed, kw = job
    t0 = time.time()
    out: dict[str, Any] = {}
    if exp.startswith("exprd"):
        mdp = _mdp(kw["env"])
        c = run_q_learning(
            mdp,
            np.asarray(kw["reward"]),
            kw["episodes"],
            seed=seed,
            eval_every=kw["eval_every"],
            random_ties=kw.get("random_ties", False),
        )
        out = {"x": c.episodes.tolist(), "y": c.returns.tolist()}
    elif exp.startswith("expadard"):
        mdp = room_mdp()
        cfg: ReinforceConfig = kw["cfg"]
        if method.startswith("adaptive"):
            teacher = adaptive_teacher(mdp, room_region_features(mdp))
            c, solves = train_reinforce_with_teacher(mdp, cfg, seed, teacher=teacher)
            out["lp_solves"] = solves
        else:
            c, _ = train_reinforce_with_teacher(mdp, cfg, seed, reward=np.asarray(kw["reward"]))
        out.update({"x": c.episodes.tolist(), "y": c.returns.tolist()})
    elif exp == "explors":
        mdp = chain_mdp()
        res = train_explors(mdp, kw["cfg"], seed)
        goal, dist = int(mdp.meta["goal"]), int(mdp.meta["distractor"])
        r_goal = np.zeros_like(mdp.R)
        r_goal[goal] = mdp.R[goal]
        r_dist = np.zeros_like(mdp.R)
        r_dist[dist] = mdp.R[dist]
        out = {
            "x": res.curve.episodes.tolist(),
            "y": res.curve.returns.tolist(),
            "goal_part": expected_return(mdp, res.policy, r_goal, mdp.horizon),
            "distractor_part": expected_return(mdp, res.policy, r_dist, mdp.horizon),
        }
    out["seconds"] = time.time() - t0
    return exp, method, seed, out


# ----------------------------------------------------------------------------- designs (main)


def exprd_designs(env: str, budget: int) -> tuple[TabularMDP, dict[str, np.ndarray], dict]:
    """Rewards for experiment 1 on ``env`` plus a description of the EXPRD design."""
    mdp = _mdp(env)
    problem = design_problem(mdp)
    t0 = time.time()
    greedy = greedy_exprd(problem, budget)
    seconds = time.time() - t0
    goal_only = solve_exprd(problem, goal_states(mdp))
    rewards = {
        "original": mdp.R,
        "EXPRD B=0 (goal only)": goal_only.reward,
        f"EXPRD B={budget}": greedy.design.reward,
        "PBRS (V*)": pbrs_optimal(mdp),
    }
    info = {
        "support": greedy.support,
        "informativeness_history": greedy.history,
        "informativeness_original": informativeness(problem, mdp.R),
        "informativeness_b0": goal_only.informativeness,
        "informativeness_b": greedy.design.informativeness,
        "informativeness_pbrs": informativeness(problem, rewards["PBRS (V*)"]),
        "greedy_seconds": seconds,
        "reward_on_support": greedy.design.reward[greedy.support].round(3).tolist(),
        "optimal_return": expected_return(mdp, problem.policy, horizon=mdp.horizon),
    }
    return mdp, rewards, info


def ada_rewards() -> tuple[dict[str, np.ndarray], dict]:
    mdp = room_mdp()
    Phi = room_region_features(mdp)
    teacher = adaptive_teacher(mdp, Phi)
    exprd_f = solve_exprd(design_problem(mdp), features=Phi)
    inv = invariance_only(teacher.problem, Phi)
    info = {
        "optimal_return": expected_return(mdp, teacher.problem.policy, horizon=mdp.horizon),
        "invariance_only_goal_reward": inv.reward[int(mdp.meta["goal"])].round(3).tolist(),
        "exprd_features_informativeness": exprd_f.informativeness,
    }
    return {"original": mdp.R, "invariance-only": inv.reward, "EXPRD": exprd_f.reward}, info


# ----------------------------------------------------------------------------- plotting


def plot_panel(ax: Any, curves: dict[str, dict[int, dict]], title: str, optimum: float) -> None:
    for method, by_seed in curves.items():
        x = np.array(next(iter(by_seed.values()))["x"])
        Y = np.array([r["y"] for r in by_seed.values()])
        m = Y.mean(axis=0)
        n = Y.shape[0]
        half = stats.t.ppf(0.975, n - 1) * Y.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else 0 * m
        ls = "--" if "B=0" in method else "-"  # B=0 coincides with the original reward
        (line,) = ax.plot(x, m, label=method, lw=1.6, ls=ls)
        ax.fill_between(x, m - half, m + half, color=line.get_color(), alpha=0.2, lw=0)
    ax.axhline(optimum, color="k", ls=":", lw=1, label="optimal policy")
    ax.set_title(title)
    ax.set_xlabel("episodes")
    ax.set_ylabel("expected original return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def table(curves: dict[str, dict[int, dict]], at: list[int]) -> tuple[str, dict]:
    head = "| reward | " + " | ".join(f"ep {e}" for e in at) + " |"
    lines = [head, "|" + "---|" * (len(at) + 1)]
    data: dict[str, dict[str, list[float]]] = {}
    for method, by_seed in curves.items():
        x = np.array(next(iter(by_seed.values()))["x"])
        Y = np.array([r["y"] for r in by_seed.values()])
        cells, data[method] = [], {}
        for e in at:
            i = int(np.argmin(np.abs(x - e)))
            m, h = mean_ci(Y[:, i])
            cells.append(f"{m:.2f} ± {h:.2f}")
            data[method][str(int(x[i]))] = [m, h]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines), data


def keep_previous(path: Path, results: Results, only: set[str]) -> dict[str, Any]:
    """Add to ``results`` the experiments of a previous ``results.json`` whose family (``exprd``,
    ``expadard``, ``explors``) was not run now; return their names, optima and design info."""
    kept: dict[str, Any] = {"experiments": [], "optimum": {}, "meta": {}}
    if not path.exists():
        return kept
    old = json.loads(path.read_text())
    for exp, by_method in old.get("curves", {}).items():
        if exp.split("_")[0] in only or exp in results:
            continue
        final = old.get("tables", {}).get(f"{exp}_final", {})
        results[exp] = {}
        for method, curve in by_method.items():
            results[exp][method] = {}
            for seed, y in enumerate(curve["y"]):
                row: dict[str, Any] = {"x": curve["x"], "y": y}
                for part in ("goal_part", "distractor_part"):
                    if method in final:
                        row[part] = final[method][part][seed]
                results[exp][method][seed] = row
        kept["experiments"].append(exp)
        kept["optimum"][exp] = old["optimum"][exp]
    kept["meta"] = {
        k: v for k, v in old.get("meta", {}).items() if k.split("_")[0] not in only and isinstance(v, dict)
    }  # fmt: skip
    return kept


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="seeds per curve (default 10)")
    ap.add_argument("--ada-seeds", type=int, default=10, help="seeds for the LP-heavy ExpAdaRD")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply all episode counts")
    ap.add_argument("--budget", type=int, default=5, help="EXPRD budget B")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="exprd,expadard,explors", help="comma-separated subset")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/shaping_tabular"),
        help="report folder (the committed one: --out experiments/shaping_tabular)",
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))

    def n(e: int) -> int:
        return max(10, int(round(e * args.scale)))

    t_start = time.time()
    jobs: list[Job] = []
    meta: dict[str, Any] = {"seeds": args.seeds, "ada_seeds": args.ada_seeds, "scale": args.scale}
    optimum: dict[str, float] = {}

    if "exprd" in only:
        for env in ("ROOM", "LINEK"):
            print(f"[design] EXPRD greedy B={args.budget} on {env} ...", flush=True)
            mdp, rewards, info = exprd_designs(env, args.budget)
            meta[f"exprd_{env}"] = info
            optimum[f"exprd_{env}"] = optimum[f"exprd_ties_{env}"] = info["optimal_return"]
            print(f"[design]   Z = {info['support']} ({info['greedy_seconds']:.1f} s)", flush=True)
            for name, R in rewards.items():
                kw = {"env": env, "reward": R, "episodes": n(3000), "eval_every": 25}
                jobs += [(f"exprd_{env}", name, s, kw) for s in range(args.seeds)]
                kw_t = dict(kw, random_ties=True)
                jobs += [(f"exprd_ties_{env}", name, s, kw_t) for s in range(args.seeds)]

    if "expadard" in only:
        print("[design] ExpAdaRD baselines on ROOM ...", flush=True)
        rewards, info = ada_rewards()
        meta["expadard"] = info
        for tag, lr, eps in EXPADARD_VARIANTS:
            optimum[tag] = info["optimal_return"]
            cfg = ReinforceConfig(episodes=n(eps), lr=lr, eval_every=max(1, n(eps) // 100))
            jobs += [(tag, "adaptive (ExpAdaRD)", s, {"cfg": cfg}) for s in range(args.ada_seeds)]
            for name, R in rewards.items():
                jobs += [(tag, name, s, {"cfg": cfg, "reward": R}) for s in range(args.ada_seeds)]

    if "explors" in only:
        ch = chain_mdp()
        optimum["explors"] = expected_return(
            ch, optimal_policy(optimal_values(ch)[0]), horizon=ch.horizon
        )
        base = ExploRSConfig(episodes=n(3000), lr=0.5, eval_every=max(1, n(3000) // 100))
        variants = {
            "original": replace(base, use_bonus=False, use_shaping=False),
            "bonus-only": replace(base, use_shaping=False),
            "shaping-only": replace(base, use_bonus=False),
            "ExploRS": base,
        }
        for name, ecfg in variants.items():
            jobs += [("explors", name, s, {"cfg": ecfg}) for s in range(args.seeds)]

    # longest jobs first keeps both workers busy to the end
    jobs.sort(key=lambda j: (j[1] != "adaptive (ExpAdaRD)", not j[0].startswith("expadard")))
    results: Results = {}
    print(f"[run] {len(jobs)} jobs on {args.workers} workers", flush=True)
    done = 0

    def report(r: tuple[str, str, int, dict[str, Any]]) -> None:
        nonlocal done
        exp, method, seed, out = r
        results.setdefault(exp, {}).setdefault(method, {})[seed] = out
        done += 1
        if done % 20 == 0 or out["seconds"] > 5:
            print(
                f"[run] {done}/{len(jobs)} {exp} / {method} / seed {seed}: "
                f"final {out['y'][-1]:.2f} ({out['seconds']:.1f} s)",
                flush=True,
            )

    if args.workers > 1:
        with Pool(args.workers) as pool:
            for r in pool.imap_unordered(run_job, jobs):
                report(r)
    else:
        for job in jobs:
            report(run_job(job))
    seconds = time.time() - t_start
    kept = keep_previous(args.out / "results.json", results, only)
    for exp in kept["experiments"]:
        optimum.setdefault(exp, kept["optimum"][exp])
    meta = {**kept["meta"], **meta}

    # ------------------------------------------------------------------ tables and plots
    ran = ",".join(sorted(only))
    md: list[str] = [f"Generated by `run.py` (this invocation: `--only {ran}`, {seconds:.0f} s)."]
    if kept["experiments"]:
        md.append(
            f"Taken unchanged from the previous `results.json`: {', '.join(kept['experiments'])}."
        )
    md.append("")
    summary: dict[str, Any] = {"meta": meta, "tables": {}, "optimum": optimum, "curves": {}}
    for exp, by_method in results.items():
        summary["curves"][exp] = {
            method: {
                "x": next(iter(by_seed.values()))["x"],
                "y": [[round(v, 4) for v in r["y"]] for r in by_seed.values()],
            }
            for method, by_seed in by_method.items()
        }
    for exp in sorted(results):
        key = next(k for k in sorted(CHECKPOINTS, key=len, reverse=True) if exp.startswith(k))
        scale = 1.0 if exp in kept["experiments"] else args.scale
        at = [max(10, int(round(e * scale))) for e in CHECKPOINTS[key]]
        text, data = table(results[exp], at)
        summary["tables"][exp] = data
        n_seeds = len(next(iter(results[exp].values())))
        md += [f"### {exp} (optimal policy: {optimum[exp]:.2f}; {n_seeds} seeds)\n", text, ""]
    if "explors" in results:
        md += ["### explors: where the final policies go (per seed)\n"]
        md += ["| reward | goal part of return | distractor part | seeds reaching the goal |"]
        md += ["|---|---|---|---|"]
        for method, by_seed in results["explors"].items():
            g = np.array([r["goal_part"] for r in by_seed.values()])
            d = np.array([r["distractor_part"] for r in by_seed.values()])
            ok = int((g >= 0.5 * optimum["explors"]).sum())
            md.append(
                f"| {method} | {g.mean():.2f} ± {mean_ci(g)[1]:.2f} | "
                f"{d.mean():.4f} ± {mean_ci(d)[1]:.4f} | {ok}/{len(g)} |"
            )
            summary["tables"].setdefault("explors_final", {})[method] = {
                "goal_part": g.tolist(),
                "distractor_part": d.tolist(),
            }
        md.append("")
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    (args.out / "results.json").write_text(json.dumps(summary, default=float))

    panels = [
        ("exprd.png", ["exprd_ROOM", "exprd_LINEK"], "Q-learning"),
        (
            "exprd_random_ties.png",
            ["exprd_ties_ROOM", "exprd_ties_LINEK"],
            "Q-learning, random ties",
        ),
        ("expadard.png", ["expadard"], "REINFORCE (lr 0.01) on ROOM"),
        ("expadard_lr.png", ["expadard_lr0.05", "expadard_lr0.5"], "REINFORCE on ROOM"),
        ("explors.png", ["explors"], "REINFORCE on CHAIN (distractor)"),
    ]
    for fname, exps, what in panels:
        exps = [e for e in exps if e in results]
        if not exps:
            continue
        fig, axes = plt.subplots(1, len(exps), figsize=(6.2 * len(exps), 4.3), squeeze=False)
        for ax, exp in zip(axes[0], exps, strict=True):
            plot_panel(ax, results[exp], f"{exp} — {what}", optimum[exp])
        fig.tight_layout()
        fig.savefig(args.out / fname, dpi=110)
        plt.close(fig)
        print(f"[plot] {args.out / fname}", flush=True)
    print(f"[done] {time.time() - t_start:.0f} s; tables in {args.out / 'results.md'}", flush=True)
    print("\n".join(md))


if __name__ == "__main__":
    main()
