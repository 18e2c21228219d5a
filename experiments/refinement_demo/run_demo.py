"""Recorded demonstration of the refinement loop (default ``mujoco/hopper_forward``).

Trains reward v0 with the offline synthesizer on a small budget, then applies two rounds of
feedback through ``rewardlab refine`` (per task below; e.g. "falls", then "too slow"), each
trained on the same budget, and prints (and writes to ``<out>/results.md`` / ``results.json``) success rate,
progress and steps per round with the reward diff of each round. Everything goes through the
ordinary CLI, so the run directory can be opened with ``rewardlab review runs_dir=<out>/runs``.

    python experiments/refinement_demo/run_demo.py [--task mujoco/hopper_backflip] [--out DIR] [--steps 50000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROUNDS = {
    "mujoco/hopper_forward": [
        ("the hopper falls over after a few hops", ["falls"]),
        ("too slow: it should move forward faster", ["too_slow"]),
    ],
    "mujoco/hopper_backflip": [
        ("it rolls backwards over the ground instead of jumping into the air; more lift", []),
        ("after the turn it keeps spinning; more landing", []),
    ],
}
"""Feedback per task: (what a person watching the video wrote, structured tags)."""


def rewardlab(*args: str, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "rewardlab.cli", *args]
    print("$", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True)
    tail = "\n".join(res.stdout.splitlines()[-4:])
    print(tail, flush=True)
    if res.returncode != 0:
        sys.exit(f"command failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def version_row(run_dir: Path, version: int, wall_s: float) -> dict[str, Any]:
    vdir = run_dir / "rewards" / f"v{version}"
    summary = json.loads((vdir / "summary.json").read_text())
    feedback = (
        json.loads((vdir / "feedback.json").read_text())["feedback"]
        if (vdir / "feedback.json").exists()
        else []
    )
    return {
        "version": version, "feedback": feedback, "timesteps": summary["timesteps"],
        "success_rate": summary["success_rate"], "progress": summary["final_eval"]["mean_progress"],
        "mean_length": summary["final_eval"]["mean_length"], "episodes": summary["final_eval"]["episodes"],
        "best_eval_success": summary["best_success_rate"], "train_wall_s": summary["train_wall_s"],
        "round_wall_s": round(wall_s, 1),
        "diff": (vdir / "diff.patch").read_text() if (vdir / "diff.patch").exists() else "",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="mujoco/hopper_forward", choices=sorted(ROUNDS))
    parser.add_argument("--out", type=Path, default=Path("runs/experiments/refinement_demo"))
    parser.add_argument(
        "--steps", type=int, default=50_000, help="training budget per reward version"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = [f"train.total_timesteps={args.steps}", "train.n_envs=4", f"train.eval_freq={max(args.steps // 5, 1000)}",
              "train.eval_episodes=5", "train.video_episodes=1", "train.video_size=240", "train.progress_bar=false",
              f"train.seed={args.seed}"]  # fmt: skip

    start = time.monotonic()
    rewardlab("train", f"task={args.task}", *budget, f"runs_dir={out / 'runs'}", cwd=out)
    configs = [p for p in (out / "runs").rglob("config.yaml") if p.parent.name != ".hydra"]
    run_dir = max(configs, key=lambda p: p.stat().st_mtime).parent  # the run just made
    rows = [version_row(run_dir, 0, time.monotonic() - start)]
    for n, (text, tags) in enumerate(ROUNDS[args.task], 1):
        t0 = time.monotonic()
        rewardlab(
            "refine",
            f"run={run_dir}",
            f"feedback={text}",
            f"tags=[{','.join(tags)}]",
            *budget,
            cwd=out,
        )
        rows.append(version_row(run_dir, n, time.monotonic() - t0))

    lines = [f"Task `{args.task}`. Run: `{run_dir}`  (budget {args.steps:,} steps per version, seed {args.seed}, "
             f"total {time.monotonic() - start:.0f} s)", "",
             "| round | version | feedback | steps | success rate | best eval success | progress | episode length | round time |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for i, r in enumerate(rows):
        lines.append(f"| {i} | v{r['version']} | {'; '.join(r['feedback']) or '(task instruction)'} | {r['timesteps']:,} "
                     f"| {r['success_rate']:.2f} | {r['best_eval_success']:.2f} | {r['progress']:.3f} | {r['mean_length']:.0f} | {r['round_wall_s']:.0f} s |")  # fmt: skip
    for r in rows[1:]:
        lines += ["", f"v{r['version']} diff:", "", "```diff", r["diff"].rstrip(), "```"]
    report = "\n".join(lines) + "\n"
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(
        json.dumps(
            {"run_dir": str(run_dir), "steps": args.steps, "seed": args.seed, "rounds": rows},
            indent=2,
        )
        + "\n"
    )
    print("\n" + report)
    print(f"review it: rewardlab review runs_dir={out / 'runs'}")


if __name__ == "__main__":
    main()
