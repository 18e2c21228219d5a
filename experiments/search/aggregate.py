"""Aggregate the seed sweeps of several ``rewardlab search`` runs into one table.

Usage::

    python experiments/search/aggregate.py runs/mujoco/*/<time> [--clip] [--reps 5000] [--json out.json]

Every run given must have been made with ``search.seeds=[...]`` (and ``search.baselines=true``
for the normalized score). Scores of the same task from several runs are pooled as extra
seeds. The table is the IQM over all (task, seed) scores with a stratified bootstrap
confidence interval (seeds resampled within each task), per method, then per task.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from rewardlab.stats import format_table, score_table


def collect(run_dirs: list[Path]) -> dict[str, dict[str, list[float]]]:
    """``{task: {method: [score per seed]}}`` from the runs' ``search.json``."""
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in run_dirs:
        record = json.loads((run / "search.json").read_text())
        final = record.get("final")
        if not final:
            print(f"skipping {run}: no seed sweep (run the search with search.seeds=[0,1,2])")
            continue
        key = final.get("score", "success")
        for r in final["runs"]:
            if r.get("status") == "ok" and r.get(key) is not None:
                results[record["task"]][r["method"]].append(float(r[key]))
    return {t: dict(m) for t, m in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument(
        "--clip", action="store_true", help="clip normalized scores to [0, 3] (Eureka)"
    )
    parser.add_argument("--reps", type=int, default=5000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = collect(args.runs)
    table = score_table(results, clip=args.clip, reps=args.reps, confidence=args.confidence)
    print(format_table(table))
    print()
    for name, entry in table["methods"].items():
        for task, per in entry["tasks"].items():
            norm = per["normalized"]
            print(
                f"{name:8s} {task:32s} scores {per['scores']}  normalized {norm if norm is not None else '-'}"
            )
    if args.json:
        args.json.write_text(json.dumps({"results": results, "table": table}, indent=2))


if __name__ == "__main__":
    main()
