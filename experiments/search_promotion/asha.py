"""Synchronous successive halving (rewardlab's rungs) against asynchronous successive halving
(ASHA, Li et al. 2020, as Ray Tune's ``ASHAScheduler`` runs it) on the same candidates.

Modelled, not trained: each of K candidates has a true success curve
``p(b) = q / (1 + exp(-(b - m) / s))`` over the training budget ``b`` (``q`` its final quality,
``m`` when it takes off: good programs are not always the early ones), drawn per repetition;
every evaluation draws 20 episodes from it. W workers train. Both schedulers use the same rung
budgets (``max/4, max/2, max``, eta = 2) and the same draws per (candidate, rung):

* **sync** (:func:`rewardlab.search.halving.successive_halving`, the search's code): every
  survivor trains to the rung, then the rule promotes (``rank`` or ``interval``);
* **asha**: a trial trains on as soon as a worker is free; at each rung it stops when its result
  is below the ``1 - 1/eta`` quantile of the results recorded at that rung so far (nothing
  recorded: it goes on), exactly Ray Tune's ``AsyncHyperBandScheduler`` rule with one bracket.

Measured per scheduler: environment steps trained (compute), wall time in units of one
``max`` training on one worker (makespan, list scheduling), and the true final quality of the
program it returns against the best of the K (regret; "found best" = returned the true best).

Usage::

    python experiments/search_promotion/asha.py            # ~3 min on a busy machine
    python experiments/search_promotion/asha.py --reps 50 --out /tmp/sp
"""

from __future__ import annotations

import argparse
import heapq
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.search.decision import summarize_decision
from rewardlab.search.halving import score, successive_halving

HERE = Path(__file__).resolve().parent
MAX = 1.0
RUNGS = [0.25, 0.5, 1.0]
EPISODES = 20


@dataclass
class Candidates:
    """K candidates' true curves and their evaluation draws, per rung."""

    q: np.ndarray
    m: np.ndarray
    s: float
    results: list[dict[float, dict[str, Any]]]

    def truth(self, i: int, b: float) -> float:
        return float(self.q[i] / (1.0 + np.exp(-(b - self.m[i]) / self.s)))


def draw(rng: np.random.Generator, k: int) -> Candidates:
    q = rng.uniform(0.2, 1.0, k)
    m = rng.uniform(0.15, 0.7, k)
    c = Candidates(q, m, 0.08, [])
    for i in range(k):
        per: dict[float, dict[str, Any]] = {}
        for b in RUNGS:
            wins = rng.random(EPISODES) < c.truth(i, b)
            per[b] = {
                "status": "ok",
                "timesteps": b,
                **summarize_decision([bool(w) for w in wins], [float(w) for w in wins]),
            }
        c.results.append(per)
    return c


def makespan(durations: list[float], workers: int) -> float:
    """List scheduling of jobs in order on ``workers`` machines."""
    free = [0.0] * workers
    for d in durations:
        t = heapq.heappop(free)
        heapq.heappush(free, t + d)
    return max(free)


def run_sync(c: Candidates, workers: int, rule: str) -> dict[str, float]:
    k = len(c.q)
    done: dict[str, float] = {}
    wall = 0.0

    def train(keys: list[str], budget: float) -> dict[str, dict[str, Any]]:
        nonlocal wall
        wall += makespan([budget - done.get(key, 0.0) for key in keys], workers)
        for key in keys:
            done[key] = budget
        return {key: c.results[int(key)][budget] for key in keys}

    result = successive_halving([str(i) for i in range(k)], RUNGS, 2, train, promotion=rule)  # type: ignore[arg-type]
    assert result.best is not None
    return {"steps": sum(done.values()), "wall": wall, "best": int(result.best)}


def run_asha(c: Candidates, workers: int) -> dict[str, float]:
    """Ray Tune's ASHA rule with one bracket (see the module docstring)."""
    k = len(c.q)
    recorded: dict[float, list[float]] = {b: [] for b in RUNGS}
    pending = list(range(k))
    events: list[tuple[float, int, int]] = []  # (time a segment ends, candidate, rung index)
    free = workers
    clock = steps = 0.0
    finished: dict[int, tuple[float, float]] = {}

    def start(i: int, r: int, now: float) -> None:
        nonlocal steps
        length = RUNGS[r] - (RUNGS[r - 1] if r else 0.0)
        steps += length
        heapq.heappush(events, (now + length, i, r))

    while pending and free:
        start(pending.pop(0), 0, 0.0)
        free -= 1
    while events:
        clock, i, r = heapq.heappop(events)
        value = c.results[i][RUNGS[r]]
        key = score(value)
        val = key[0] + 1e-3 * key[1]
        rec = recorded[RUNGS[r]]
        cutoff = (
            float(np.nanpercentile(rec, 50.0)) if rec else None
        )  # (1 - 1/eta) quantile, eta = 2
        rec.append(val)
        if r == len(RUNGS) - 1:
            finished[i] = key
        if r < len(RUNGS) - 1 and (cutoff is None or val >= cutoff):
            start(i, r + 1, clock)  # the trial goes on, on the same worker
            continue
        if pending:
            start(pending.pop(0), 0, clock)
        else:
            free += 1
    best = max(finished, key=lambda i: (*finished[i], -i))
    return {"steps": steps, "wall": clock, "best": best}


@dataclass
class Summary:
    steps: float
    """Mean environment steps trained, in units of one full training (``max``)."""
    wall: float
    """Mean makespan, in units of one full training on one worker."""
    found_best: float
    """Fraction of repetitions returning the candidate with the best true final success."""
    regret: float
    """Mean (best true final success - returned program's true final success)."""
    regret_ci: float
    """Half-width of the 95% normal interval of ``regret``."""


def compare(k: int, workers: int, reps: int, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict[str, float]]] = {"sync rank": [], "sync interval": [], "asha": []}
    for _ in range(reps):
        c = draw(rng, k)
        final = [c.truth(i, MAX) for i in range(k)]
        for name, out in (
            ("sync rank", run_sync(c, workers, "rank")),
            ("sync interval", run_sync(c, workers, "interval")),
            ("asha", run_asha(c, workers)),
        ):
            best = int(out["best"])
            rows[name].append({"steps": out["steps"], "wall": out["wall"],
                               "found": float(best == int(np.argmax(final))), "regret": max(final) - final[best]})  # fmt: skip
    out = {}
    for name, rs in rows.items():
        regret = np.array([r["regret"] for r in rs])
        out[name] = asdict(Summary(
            steps=float(np.mean([r["steps"] for r in rs])), wall=float(np.mean([r["wall"] for r in rs])),
            found_best=float(np.mean([r["found"] for r in rs])), regret=float(regret.mean()),
            regret_ci=float(1.96 * regret.std(ddof=1) / np.sqrt(len(regret))) if len(regret) > 1 else 0.0,
        ))  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/search_promotion"),
        help="report folder (the committed one: --out experiments/search_promotion/results)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = [(4, 2), (8, 2), (8, 4), (16, 4), (16, 8)]
    table = []
    for n, (k, workers) in enumerate(settings):
        table.append({"K": k, "workers": workers, **compare(k, workers, args.reps, args.seed + n)})
        print(table[-1], flush=True)
    (args.out / "asha.json").write_text(json.dumps({"reps": args.reps, "seed": args.seed, "rungs": RUNGS,
                                                    "episodes": EPISODES, "table": table}, indent=2))  # fmt: skip
    lines = [
        f"Modelled candidates (see `asha.py`), {args.reps} repetitions per row, seed {args.seed}; rungs "
        f"{RUNGS} of a full training, eta 2, {EPISODES} evaluation episodes per decision. Steps and wall "
        "in units of one full training; regret = best true final success - returned program's (95% CI).",
        "",
        "| K | workers | scheduler | steps | wall | found the best | regret |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table:
        for name in ("sync rank", "sync interval", "asha"):
            r = row[name]
            lines.append(f"| {row['K']} | {row['workers']} | {name} | {r['steps']:.2f} | {r['wall']:.2f} | "
                         f"{r['found_best']:.2f} | {r['regret']:.3f} ± {r['regret_ci']:.3f} |")  # fmt: skip
    (args.out / "asha.md").write_text("\n".join(lines) + "\n")
    print((args.out / "asha.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
