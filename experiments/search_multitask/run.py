"""``rewardlab search`` on two MuJoCo behaviours and two MetaWorld tasks, with two reward writers.

For each task:

* ``expert``: ``rewardlab train reward_file=env`` (the benchmark's own dense reward) with the
  search's largest rung budget and the same seed: the reference for final success;
* ``offline``: ``rewardlab search`` with the offline synthesizer (deterministic weight variants);
* ``server``: ``rewardlab search`` with ``llm=openai`` against a scripted local
  OpenAI-compatible server (``tests/fake_llm_server.py`` on 127.0.0.1) that answers from
  :mod:`programs` (good, mediocre, reward-hacking, badly scaled, constant, broken, hostile and
  prose replies; it also answers the very first request with HTTP 500 and then 429 to show
  the retries).

Everything runs one training at a time (``search.launcher=inline``), niced, with one torch and
BLAS thread. Writes ``results.json`` and ``results.md`` to ``--out`` (default
``experiments/search_multitask/results``); run directories go to ``--runs`` (default
``<out>/runs``, not meant to be committed). A unit whose ``unit.json`` exists is reused, so an
interrupted sweep resumes.

Usage::

    python experiments/search_multitask/run.py                 # the README's numbers (~20 min CPU)
    python experiments/search_multitask/run.py --quick --out /tmp/sm   # a 3-minute smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(
    0, str(ROOT / "tests")
)  # the scripted server (a test helper; needs the test extras)

TASKS = (
    "mujoco/hopper_forward",
    "mujoco/halfcheetah_forward",
    "metaworld/drawer_close",
    "metaworld/button_press",
)
GENERATORS = ("offline", "server")

BUDGET = {
    "candidates": 4, "iterations": 2, "min_steps": 8192, "eta": 2, "max_steps": 32768,
    "n_envs": 4, "n_steps": 512, "eval_freq": 8192, "eval_episodes": 5, "check_steps": 100,
    "promotion": "interval", "decision_episodes": 20,
}  # fmt: skip
"""The full run's budget (PPO rollouts of 4 x 512 steps; rungs 8,192 / 16,384 / 32,768)."""
QUICK = {**BUDGET, "candidates": 2, "iterations": 1, "min_steps": 2048, "max_steps": 4096, "eval_freq": 2048,
         "eval_episodes": 1, "check_steps": 30, "decision_episodes": 3}  # fmt: skip
RULES = {
    "interval": {"promotion": "interval", "decision_episodes": 20},
    "rank": {"promotion": "rank", "decision_episodes": 0},
}
"""``--rule``: ``interval`` (decisions on 20 fresh episodes with intervals, the default since
issue 14) or ``rank`` (top 1/eta on the last 5-episode training evaluation: how ``results/``
was made)."""


def common(b: dict[str, Any], seed: int) -> list[str]:
    """Hydra overrides shared by the searches and the expert runs."""
    return [
        f"train.n_envs={b['n_envs']}", f"algo.kwargs.n_steps={b['n_steps']}", f"train.eval_freq={b['eval_freq']}",
        f"train.eval_episodes={b['eval_episodes']}", "train.video_episodes=0", "train.progress_bar=false",
        f"train.seed={seed}", f"check.steps={b['check_steps']}",
    ]  # fmt: skip


def rewardlab(args: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``rewardlab <args>`` niced; ``(exit code, wall s, CPU s of the child tree)``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        code = subprocess.call(["nice", "-n", "10", sys.executable, "-m", "rewardlab.cli", *args], stdout=fh,
                               stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "OPENAI_API_KEY": "sk-local-fake"})  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, time.monotonic() - started, cpu


def only_dir(root: Path, name: str) -> Path:
    found = sorted(p.parent for p in root.rglob(name))
    if len(found) != 1:
        raise RuntimeError(f"expected one {name} under {root}, found {len(found)}")
    return found[0]


def run_expert(task: str, b: dict[str, Any], seed: int, runs: Path, unit: Path) -> dict[str, Any]:
    root = runs / "expert" / task.replace("/", "__")
    code, wall, cpu = rewardlab(["train", f"task={task}", "reward_file=env", f"train.total_timesteps={b['max_steps']}",
                                 *common(b, seed), f"runs_dir={root}"], unit / "console.log")  # fmt: skip
    run_dir = only_dir(root, "report.md") if code == 0 else None
    summary = json.loads((run_dir / "summary.json").read_text()) if run_dir else {}
    return {"exit": code, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "success": summary.get("success_rate"),
            "timesteps": summary.get("timesteps"), "run_dir": str(run_dir) if run_dir else None}  # fmt: skip


def run_search(
    task: str, generator: str, b: dict[str, Any], seed: int, runs: Path, unit: Path
) -> dict[str, Any]:
    root = runs / generator / task.replace("/", "__")
    args = ["search", f"task={task}", f"search.candidates={b['candidates']}", f"search.iterations={b['iterations']}",
            f"search.min_steps={b['min_steps']}", f"search.eta={b['eta']}", f"search.max_steps={b['max_steps']}",
            f"search.promotion={b['promotion']}", f"search.decision_episodes={b['decision_episodes']}",
            "search.launcher=inline", *common(b, seed), f"runs_dir={root}"]  # fmt: skip
    served: list[tuple[str, str]] = []
    if generator == "server":
        from fake_llm_server import FakeLLMServer, dynamic, status
        from programs import ScriptedWriter

        writer = ScriptedWriter(task)
        with FakeLLMServer(
            status(500), status(429, retry_after=0), default=dynamic(writer)
        ) as server:
            args += ["llm=openai", "llm.model=scripted-writer", f"llm.base_url={server.base_url}", "llm.max_retries=2",
                     "llm.backoff_s=0.2", "llm.timeout_s=10", "llm.fix_attempts=1"]  # fmt: skip
            code, wall, cpu = rewardlab(args, unit / "console.log")
        served = writer.served
    else:
        code, wall, cpu = rewardlab(args, unit / "console.log")
    sdir = only_dir(root, "search.json")
    record = json.loads((sdir / "search.json").read_text())
    cands = [c for it in record["iterations"] for c in it["candidates"]]
    iterations = len(record["iterations"])
    best = record.get("best") or {}
    return {
        "exit": code, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "run_dir": str(sdir),
        "status": record["status"], "iterations_run": iterations, "programs": record.get("programs"),
        "verdicts": [c["verdict"] for c in cands], "served": served,
        "gate": [{"dir": c["dir"], **{k: (c.get("gate") or {}).get(k) for k in ("ok", "ranking_accuracy", "seconds")},
                  "finding": ((c.get("gate") or {}).get("findings") or [None])[0]} for c in cands if c.get("gate")],
        "steps_trained": record.get("steps_trained"), "steps_gated_full": record.get("steps_without_halving"),
        "steps_all_full": b["candidates"] * iterations * b["max_steps"],
        "best": best.get("dir"), "best_success": best.get("success"), "best_progress": best.get("progress"),
        "final_success": best.get("final_success"), "best_budget": best.get("budget_reached"),
        "hacking_alarms": [c["dir"] for c in cands if (c.get("hacking") or {}).get("flagged")],
        "candidates": [{k: c.get(k) for k in ("iteration", "index", "attempts", "verdict", "status", "pruned_at", "rungs")}
                       for c in cands],
        "decisions": [it.get("decisions", []) for it in record["iterations"]],
    }  # fmt: skip


def final_eval(summary_file: Path) -> dict[str, Any]:
    """``final_eval`` of a trained version's ``summary.json`` (success rate, mean progress ...)."""
    if not summary_file.exists():
        return {}
    return dict(json.loads(summary_file.read_text()).get("final_eval") or {})


def fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _row(u: dict[str, Any], expert: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one search unit that the report shows."""
    p = u.get("programs") or {}
    best = (
        final_eval(Path(u["run_dir"]) / str(u.get("best")) / "summary.json")
        if u.get("best")
        else {}
    )
    ref = (
        final_eval(Path(expert["run_dir"]) / "rewards" / "v0" / "summary.json")
        if expert.get("run_dir")
        else {}
    )
    ref = ref or {
        "success_rate": expert.get("success")
    }  # reused expert units whose run folder is gone
    return {
        "replies": p.get("replies", 0), "no_code": p.get("no_code", 0), "check_rejected": p.get("check_rejected", 0),
        "gate_rejected": p.get("gate_rejected", 0), "passed": p.get("passed", 0),
        "trained": u["steps_trained"], "full_gated": u["steps_gated_full"], "full_all": u["steps_all_full"],
        "success": best.get("success_rate"), "progress": best.get("mean_progress"),
        "expert_success": ref.get("success_rate"), "expert_progress": ref.get("mean_progress"),
        "cpu_s": u["cpu_s"] + float(expert.get("cpu_s") or 0.0) / 2,
    }  # fmt: skip


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def write_report(out: Path, results: dict[str, Any]) -> None:
    """``results.md``: one row per (task, writer, seed), then per (task, writer) over seeds."""
    head = ("| task | writer | seed | replies | no code | check rej. | gate rej. | passed | gate pass rate | steps trained | "
            "full (gated) | full (all K) | saved vs all K | best: final success (progress) | expert: success (progress) |")  # fmt: skip
    lines = [
        "# search_multitask results",
        "",
        f"budget: `{json.dumps(results['budget'])}`",
        "",
        head,
        "|" + "---|" * 15,
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in results["units"]:
        if entry["writer"] == "expert":
            continue
        expert: dict[str, Any] = next((e for e in results["units"] if e["writer"] == "expert" and e["task"] == entry["task"]
                       and e["seed"] == entry["seed"]), {})  # fmt: skip
        r = _row(entry, expert)
        groups.setdefault((entry["task"], entry["writer"]), []).append(r)
        judged = r["passed"] + r["gate_rejected"]
        lines.append(
            f"| {entry['task']} | {entry['writer']} | {entry['seed']} | {r['replies']} | {r['no_code']} | {r['check_rejected']} | "
            f"{r['gate_rejected']} | {r['passed']} | {fmt(r['passed'] / judged if judged else None)} | {r['trained']:,} | "
            f"{r['full_gated']:,} | {r['full_all']:,} | {fmt(1 - r['trained'] / r['full_all'], '.0%')} | "
            f"{fmt(r['success'])} ({fmt(r['progress'])}) | {fmt(r['expert_success'])} ({fmt(r['expert_progress'])}) |"
        )
    lines += ["", "Over seeds (sums of programs and steps; means of success):", "",
              "| task | writer | seeds | replies | gate pass rate | steps trained / full (all K) | saved | "
              "best final success | expert success | best progress | expert progress |", "|" + "---|" * 11]  # fmt: skip
    for (task, writer), rows in groups.items():
        passed, rejected = sum(r["passed"] for r in rows), sum(r["gate_rejected"] for r in rows)
        trained, full = sum(r["trained"] for r in rows), sum(r["full_all"] for r in rows)
        lines.append(
            f"| {task} | {writer} | {len(rows)} | {sum(r['replies'] for r in rows)} | "
            f"{fmt(passed / (passed + rejected) if passed + rejected else None)} | {trained:,} / {full:,} | "
            f"{fmt(1 - trained / full, '.0%')} | {fmt(_mean([r['success'] for r in rows]))} | "
            f"{fmt(_mean([r['expert_success'] for r in rows]))} | {fmt(_mean([r['progress'] for r in rows]))} | "
            f"{fmt(_mean([r['expert_progress'] for r in rows]))} |"
        )
    lines += ["", f"CPU seconds of all units (rewardlab processes and their children): {results['cpu_s']:.0f}; "
              f"wall seconds: {results['wall_s']:.0f} (niced, on a shared 2-core machine)"]  # fmt: skip
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=GENERATORS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument(
        "--quick", action="store_true", help="tiny budgets (a smoke run of the script)"
    )
    parser.add_argument(
        "--rule",
        choices=sorted(RULES),
        default="interval",
        help="promotion rule and decision episodes (rank: how results/ was made)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: runs/experiments/search_multitask/results_interval (--rule interval) or "
        ".../results (--rule rank); the committed reports: --out experiments/search_multitask/results*",
    )
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="an output made with the other rule: write pruning.md (how often the better program was pruned)",
    )
    parser.add_argument(
        "--expert-from",
        type=Path,
        default=None,
        help="reuse the expert units of an earlier output (they do not depend on the rule)",
    )
    args = parser.parse_args()
    budget = {**(QUICK if args.quick else BUDGET), **RULES[args.rule]}
    if args.quick:
        budget["decision_episodes"] = min(budget["decision_episodes"], QUICK["decision_episodes"])
    out: Path = args.out or Path("runs/experiments/search_multitask") / (
        "results" if args.rule == "rank" else "results_interval"
    )
    runs: Path = args.runs or out / "runs"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "budget": budget,
        "seeds": args.seeds,
        "units": [],
        "cpu_s": 0.0,
        "wall_s": 0.0,
    }
    for seed in args.seeds:
        for task in args.tasks:
            for name in ("expert", *args.generators):
                unit = out / "units" / f"seed_{seed}" / task.replace("/", "__") / name
                done = unit / "unit.json"
                reused = (
                    args.expert_from / unit.relative_to(out) / "unit.json"
                    if args.expert_from
                    else None
                )
                if (
                    name == "expert"
                    and reused is not None
                    and reused.exists()
                    and not done.exists()
                ):
                    done.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(reused, done)
                    shutil.copyfile(reused.parent / "console.log", unit / "console.log")
                if done.exists():
                    u = json.loads(done.read_text())
                else:
                    print(
                        f"[{time.strftime('%H:%M:%S')}] seed {seed}: {task} / {name} ...",
                        flush=True,
                    )
                    seed_runs = runs / f"seed_{seed}"
                    if name == "expert":
                        u = run_expert(task, budget, seed, seed_runs, unit)
                    else:
                        u = run_search(task, name, budget, seed, seed_runs, unit)
                    done.parent.mkdir(parents=True, exist_ok=True)
                    done.write_text(json.dumps(u, indent=2))
                print(f"    seed {seed} {task} {name}: exit {u['exit']}, {u['wall_s']:.0f} s wall, {u['cpu_s']:.0f} s CPU; "
                      f"success {fmt(u.get('final_success', u.get('success')))}", flush=True)  # fmt: skip
                results["units"].append({"task": task, "writer": name, "seed": seed, **u})
                results["cpu_s"] += float(u["cpu_s"])
                results["wall_s"] += float(u["wall_s"])
                (out / "results.json").write_text(json.dumps(results, indent=2))
                write_report(out, results)
    if args.compare is not None:
        from pruning import write_pruning

        write_pruning(args.compare, out, out / "pruning.md")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
