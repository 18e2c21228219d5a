"""E2CL experiment: automatic-feedback refinement vs no refinement vs fixed "human" feedback.

For each task and seed, reward v0 is written by the offline synthesizer and trained once
(``rewardlab train``); the run directory is then copied into three arms:

* ``none``: v0 as it is (its success is the reference after every round);
* ``auto``: ``rewardlab refine run=<copy> feedback=auto e2cl.rounds=<R>``: explore, detect,
  feed back, correct, verify (a refused correction keeps the parent current);
* ``human``: ``rewardlab refine run=<copy> feedback="..."`` once per round with a fixed,
  scripted feedback per task (:data:`HUMAN`), every version kept (no verification), as a
  person using ``rewardlab refine`` would.

``<task>:planted`` (``--tasks metaworld/drawer_close:planted``) starts from a program with
planted errors (:data:`PLANTED`) instead of the offline synthesizer's.

Every training uses the same budget and seed. Reported per arm and round: the success rate of
the arm's current version (5 evaluation episodes), and for ``auto`` the verdict (accepted /
refused and why), the findings that triggered the correction and the candidate's own success.
Memory (``e2cl.memory``) is shared by the tasks of one seed (in the order given) and not
across seeds. Writes ``results.json`` and ``results.md`` to ``--out``.

    nice -n 10 python experiments/e2cl/run.py --seeds 0 1 --out experiments/e2cl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")

HERE = Path(__file__).resolve().parent
BUDGETS = {"mujoco/hopper_forward": 49_152, "mujoco/hopper_jump": 49_152, "metaworld/drawer_close": 40_960,
           "metaworld/drawer_close:planted": 40_960}  # fmt: skip
"""Environment steps per reward version (whole PPO rollouts of 4 x 1024 steps)."""
PLANTED = {"metaworld/drawer_close:planted": HERE / "planted_drawer.py"}
"""``<task>:planted``: v0 is this program (with planted errors) instead of the offline one."""
HUMAN: dict[str, list[tuple[str, list[str]]]] = {
    "mujoco/hopper_forward": [
        ("the hopper falls over after a few hops", ["falls"]),
        ("too slow: it should move forward faster", ["too_slow"]),
    ],
    "mujoco/hopper_jump": [
        ("it does not get high enough; more height", []),
        ("it drifts away from where it started", ["drifts"]),
    ],
    "metaworld/drawer_close": [
        ("the arm moves around but ignores the object", []),
        ("push the drawer further; more move", []),
    ],
}
HUMAN["metaworld/drawer_close:planted"] = HUMAN["metaworld/drawer_close"]
"""The scripted "human": what a person might write after watching each round's video,
fixed in advance (it does not look at the runs)."""


def rewardlab(*args: str, cwd: Path) -> str:
    cmd = ["nice", "-n", "10", sys.executable, "-m", "rewardlab.cli", *args]
    print("$", " ".join(cmd[3:]), flush=True)
    res = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True)
    print("\n".join(res.stdout.splitlines()[-3:]), flush=True)
    if res.returncode != 0:
        raise RuntimeError(
            f"command failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res.stdout


def read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def success(run_dir: Path, version: int) -> float | None:
    summary = read(run_dir / "rewards" / f"v{version}" / "summary.json")
    return None if summary is None else float(summary["success_rate"])


def progress(run_dir: Path, version: int) -> float | None:
    summary = read(run_dir / "rewards" / f"v{version}" / "summary.json")
    return None if summary is None else float(summary["final_eval"]["mean_progress"])


def auto_rounds(run_dir: Path, rounds: int) -> list[dict[str, Any]]:
    """Per round: the current version after it, its success, and the correction's verdict."""
    out = []
    current = 0
    versions = sorted(
        int(p.name[1:]) for p in (run_dir / "rewards").glob("v*") if p.name[1:].isdigit()
    )
    corrections = [v for v in versions if v > 0]
    for r in range(rounds):
        if r < len(corrections):
            v = corrections[r]
            verdict = read(run_dir / "rewards" / f"v{v}" / "verification.json") or {}
            triggers = verdict.get("triggers", [])
            accepted = verdict.get("outcome") == "accepted"
            current = v if accepted else current
            row = {"round": r + 1, "candidate": v, "outcome": verdict.get("outcome", "?"),
                   "reason": verdict.get("reason", ""), "triggers": triggers,
                   "candidate_success": success(run_dir, v), "candidate_progress": progress(run_dir, v)}  # fmt: skip
        else:  # the rounds stopped: nothing to correct, or no untried edit (see summary.json)
            message = (read(run_dir / "summary.json") or {}).get("message", "")
            stopped = "exhausted" if "exhausted" in message else "clean"
            findings = read(run_dir / "rewards" / f"v{current}" / "findings.json") or {
                "findings": []
            }
            row = {"round": r + 1, "candidate": None, "outcome": stopped,
                   "reason": "no untried edit" if stopped == "exhausted" else "nothing to correct",
                   "triggers": [], "findings": [f"{f['severity']}:{f['kind']}" for f in findings["findings"]]}  # fmt: skip
        row.update(
            current=current, success=success(run_dir, current), progress=progress(run_dir, current)
        )
        out.append(row)
    return out


def run_task(task: str, seed: int, rounds: int, runs: Path, steps: int) -> dict[str, Any]:
    budget = [
        f"train.total_timesteps={steps}", "train.n_envs=4", f"train.eval_freq={steps // 4}",
        "train.eval_episodes=5", "train.video_episodes=0", "train.progress_bar=false",
        f"train.seed={seed}", f"runs_dir={runs}",
    ]  # fmt: skip
    folder = task.replace("/", "_").replace(":", "_")
    base = runs / "base" / folder
    timings: dict[str, float] = {}
    if not (base / "rewards" / "v0" / "summary.json").exists():
        t0 = time.monotonic()
        planted = [f"reward_file={PLANTED[task]}"] if task in PLANTED else []
        rewardlab(
            "train",
            f"task={task.split(':')[0]}",
            *planted,
            *budget,
            f"hydra.run.dir={base}",
            cwd=runs,
        )
        timings["v0"] = time.monotonic() - t0
    arms: dict[str, Any] = {"none": [{"round": r, "current": 0, "success": success(base, 0),
                                      "progress": progress(base, 0)} for r in range(rounds + 1)]}  # fmt: skip
    auto = runs / "auto" / folder
    if not auto.exists():
        shutil.copytree(base, auto)
        t0 = time.monotonic()
        rewardlab("refine", f"run={auto}", "feedback=auto", f"e2cl.rounds={rounds}", cwd=runs)
        timings["auto"] = time.monotonic() - t0
    arms["auto"] = [{"round": 0, "current": 0, "success": success(auto, 0), "progress": progress(auto, 0)},
                    *auto_rounds(auto, rounds)]  # fmt: skip
    human = runs / "human" / folder
    if not human.exists():
        shutil.copytree(base, human)
    t0 = time.monotonic()
    for r, (text, tags) in enumerate(HUMAN[task][:rounds], 1):
        if not (human / "rewards" / f"v{r}" / "summary.json").exists():
            rewardlab(
                "refine", f"run={human}", f"feedback={text}", f"tags=[{','.join(tags)}]", cwd=runs
            )
    timings["human"] = time.monotonic() - t0
    arms["human"] = [{"round": r, "current": r, "success": success(human, r), "progress": progress(human, r),
                      "feedback": read(human / "rewards" / f"v{r}" / "feedback.json")["feedback"] if r else []}
                     for r in range(rounds + 1)]  # fmt: skip
    return {"task": task, "seed": seed, "steps": steps, "arms": arms, "wall_s": timings}


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def write_report(results: list[dict[str, Any]], out: Path, rounds: int) -> None:
    lines = ["# E2CL experiment results", "", "Success rate of each arm's current version after each round "
             "(5 evaluation episodes; progress in parentheses).", "",
             "| task | seed | arm | " + " | ".join(f"round {r}" for r in range(rounds + 1)) + " |",
             "|---|---|---|" + "---|" * (rounds + 1)]  # fmt: skip
    for res in results:
        for arm in ("none", "auto", "human"):
            cells = [f"{fmt(row['success'])} ({fmt(row['progress'])})" for row in res["arms"][arm]]
            lines.append(f"| {res['task']} | {res['seed']} | {arm} | " + " | ".join(cells) + " |")
    lines += ["", "## Automatic rounds", "", "| task | seed | round | candidate | verdict | triggers | candidate success | why |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for res in results:
        for row in res["arms"]["auto"][1:]:
            cand = f"v{row['candidate']}" if row.get("candidate") is not None else "-"
            why = row["reason"].replace("|", "/")
            lines.append(f"| {res['task']} | {res['seed']} | {row['round']} | {cand} | {row['outcome']} | "
                         f"{', '.join(row['triggers']) or '-'} | {fmt(row.get('candidate_success'))} | {why} |")  # fmt: skip
    lines += ["", "Wall time per task (s): " + "; ".join(
        f"{r['task']} seed {r['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["wall_s"].items()) for r in results)]  # fmt: skip
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=[t for t in BUDGETS if t not in PLANTED])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0, help="budget per version (0: BUDGETS)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments/e2cl"),
        help="report folder (the committed one: --out experiments/e2cl)",
    )
    parser.add_argument("--runs", type=Path, default=None, help="default: <out>/runs")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    previous = read(out / "results.json") or []  # keep other tasks' and seeds' results
    results = [
        r
        for r in previous
        if (r["task"], r["seed"]) not in {(t, s) for t in args.tasks for s in args.seeds}
    ]
    started = time.monotonic()
    for seed in args.seeds:
        runs = (args.runs or out / "runs").resolve() / f"seed{seed}"
        runs.mkdir(parents=True, exist_ok=True)
        for task in args.tasks:
            results.append(run_task(task, seed, args.rounds, runs, args.steps or BUDGETS[task]))
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
            write_report(results, out, args.rounds)
    print(f"done in {time.monotonic() - started:.0f} s; {out / 'results.md'}")


if __name__ == "__main__":
    main()
