"""How often a successive-halving decision prunes the better program: a simulation over
modelled evaluation outcomes, before and after the noise-aware promotion rule.

A *scenario* is one promotion decision among ``2 + others`` candidates with eta = 2: the better
program's true per-episode success rate ``better``, the worse one's ``worse`` (the ``others``
share it). Each repetition draws every candidate's evaluation episodes (success ~ Bernoulli;
``progress`` equals success per episode, as on MetaWorld; in the ``progress`` family nothing
succeeds and per-episode progress ~ Normal(mean, 0.2) clipped to [0, 1], as on the MuJoCo
tasks at small budgets), summarises them with :func:`rewardlab.search.decision.summarize_decision`,
ranks them (success, then progress; candidate order shuffled per repetition so ties do not
favour anyone) and promotes with :func:`rewardlab.search.halving.promote`, the code the search
runs. Rules compared:

* ``before``: the last training evaluation's 5 episodes, ``rank`` (top 1/eta);
* ``20 rank``: 20 decision episodes, ``rank`` (more episodes only);
* ``5 interval``: 5 episodes, ``interval`` (the rule only);
* ``after``: 20 decision episodes, ``interval`` (the defaults since issue 14).

Outputs (``--out``, default ``results/``): ``results.json``, ``results.md`` and
``pruned.png`` (P(better pruned) and candidates promoted per decision, by scenario).
The outcomes are modelled, not trained: this measures the decision rule on known rates;
``experiments/search_multitask`` re-runs real searches with it.

Usage::

    python experiments/search_promotion/run.py            # ~3 min on a busy machine, 3000 repetitions per cell
    python experiments/search_promotion/run.py --reps 200 --out /tmp/sp
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rewardlab.search.decision import summarize_decision
from rewardlab.search.halving import promote, score
from rewardlab.stats import wilson_interval

HERE = Path(__file__).resolve().parent

RULES = {
    "before": (5, "rank", 0.95),
    "20 rank": (20, "rank", 0.95),
    "5 interval": (5, "interval", 0.95),
    "after": (20, "interval", 0.95),
    "20 interval 83%": (20, "interval", 0.834),
}
"""name -> (episodes, promotion rule, confidence of the intervals). Two 83.4% intervals that do
not overlap are about a 5% two-sample test; two 95% intervals about a 0.5% one."""


@dataclass
class Scenario:
    """One decision: true rates of the better and the worse program, and how many more
    candidates share the worse rate."""

    name: str
    better: float
    worse: float
    others: int = 0
    family: str = "success"
    """``success`` (progress = success per episode) or ``progress`` (no success; the rates
    are mean progress, per-episode sd 0.2)."""


@dataclass
class Outcome:
    """What a rule did over the repetitions of a scenario."""

    better_pruned: float
    """Fraction of repetitions in which the better program did not go on."""
    low: float
    high: float
    """95% Wilson interval of ``better_pruned``."""
    promoted: float
    """Mean number of candidates promoted (training cost of the next rung, in candidates)."""


SCENARIOS = [
    Scenario("issue 14: 0.35 vs 0.15", 0.35, 0.15),
    Scenario("0.2 vs 0.1", 0.2, 0.1),
    Scenario("0.5 vs 0.3", 0.5, 0.3),
    Scenario("0.6 vs 0.2", 0.6, 0.2),
    Scenario("0.9 vs 0.5", 0.9, 0.5),
    Scenario("equal 0.2", 0.2, 0.2),
    Scenario("0.5 vs 3 x 0.3 (K=4)", 0.5, 0.3, others=2),
    Scenario("0.3 vs 3 x 0.1 (K=4)", 0.3, 0.1, others=2),
    Scenario("progress 0.3 vs 0.2", 0.3, 0.2, family="progress"),
    Scenario("progress 0.3 vs 3 x 0.2 (K=4)", 0.3, 0.2, others=2, family="progress"),
]


def draw(
    rng: np.random.Generator, rate: float, episodes: int, family: str
) -> tuple[list[bool], list[float]]:
    """One candidate's evaluation episodes."""
    if family == "success":
        wins = rng.random(episodes) < rate
        return [bool(w) for w in wins], [float(w) for w in wins]
    progress = np.clip(rng.normal(rate, 0.2, episodes), 0.0, 1.0)
    return [False] * episodes, [float(p) for p in progress]


def simulate(
    scenario: Scenario,
    *,
    episodes: int,
    rule: str,
    reps: int,
    seed: int = 0,
    confidence: float = 0.95,
) -> Outcome:
    """Repeat the scenario's decision ``reps`` times under one rule."""
    rng = np.random.default_rng(seed)
    keys = ["better", *(f"worse{i}" for i in range(1 + scenario.others))]
    pruned = 0
    promoted = 0
    for _ in range(reps):
        results = {}
        for key in keys:
            rate = scenario.better if key == "better" else scenario.worse
            success, progress = draw(rng, rate, episodes, scenario.family)
            results[key] = summarize_decision(success, progress, confidence)
        order = {k: i for i, k in enumerate(rng.permutation(keys))}
        ranked = sorted(keys, key=lambda k: (*(-v for v in score(results[k])), order[k]))
        kept = promote(ranked, results, 2, rule)
        pruned += "better" not in kept
        promoted += len(kept)
    low, high = wilson_interval(pruned, reps)
    return Outcome(pruned / reps, low, high, promoted / reps)


def plot(table: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(row["scenario"]) for row in table]
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), sharey=True)
    width = 0.8 / len(RULES)
    for j, rule in enumerate(RULES):
        outs = [row["rules"][rule] for row in table]  # type: ignore[index]
        p = np.array([o["better_pruned"] for o in outs])
        err = np.maximum(
            0.0,
            np.array(
                [
                    [o["better_pruned"] - o["low"] for o in outs],
                    [o["high"] - o["better_pruned"] for o in outs],
                ]
            ),
        )
        axes[0].barh(
            y + j * width,
            p,
            width,
            xerr=err,
            label=f"{rule} ({RULES[rule][0]} ep., {RULES[rule][1]}, {RULES[rule][2]:.0%})",
        )
        axes[1].barh(y + j * width, [o["promoted"] for o in outs], width)
    axes[0].set_yticks(y + 0.4 - width / 2, names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("P(better program pruned) [95% Wilson]")
    axes[1].set_xlabel("candidates promoted per decision (cost of the next rung)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Successive-halving decisions on modelled outcomes (eta = 2)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/search_promotion"),
        help="report folder (the committed one: --out experiments/search_promotion/results)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table: list[dict[str, object]] = []
    for i, scenario in enumerate(SCENARIOS):
        row: dict[str, object] = {"scenario": scenario.name, **asdict(scenario), "rules": {}}
        for rule, (episodes, name, confidence) in RULES.items():
            out = simulate(
                scenario,
                episodes=episodes,
                rule=name,
                reps=args.reps,
                seed=args.seed + i,
                confidence=confidence,
            )
            row["rules"][rule] = asdict(out)  # type: ignore[index]
        table.append(row)
        print(
            scenario.name,
            {k: round(v["better_pruned"], 3) for k, v in row["rules"].items()},
            flush=True,
        )  # type: ignore[attr-defined]
    (args.out / "results.json").write_text(
        json.dumps({"reps": args.reps, "seed": args.seed, "rules": RULES, "table": table}, indent=2)
    )
    head = "| scenario | " + " | ".join(f"{r}: P(better pruned) / promoted" for r in RULES) + " |"
    lines = [f"Repetitions per cell: {args.reps} (seed {args.seed}); eta = 2; intervals 95% Wilson.", "", head,
             "|---|" + "---|" * len(RULES)]  # fmt: skip
    for row in table:
        cells = [
            f"{o['better_pruned']:.3f} [{o['low']:.3f}, {o['high']:.3f}] / {o['promoted']:.2f}"
            for o in row["rules"].values()
        ]  # type: ignore[attr-defined]
        lines.append(f"| {row['scenario']} | " + " | ".join(cells) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    plot(table, args.out / "pruned.png")
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
