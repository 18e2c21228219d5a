"""The gate as it was before this calibration, on the same programs: its verdicts, for the
"before" table of the report.

Run it against the rewardlab of commit ``e66c883`` (ranking accuracy >= 0.6 on returns of
rollouts cut at the slowest expert's success + 20 steps, scripted actions unclipped), from a
folder that holds that package and no other (the gate's child process imports ``rewardlab``
from its working directory first)::

    mkdir -p /tmp/gate_old && git archive e66c883 rewardlab conf envs | tar -x -C /tmp/gate_old
    cp -r experiments/gate_calibration/{baseline.py,programs.py,offline_programs} /tmp/gate_old/
    cd /tmp/gate_old && PYTHONPATH=. python baseline.py --out <repo>/runs/gate_calibration/results

It writes ``baseline_verdicts.json`` (program name -> ``ok``, the check that rejected it,
``ranking_accuracy``). That gate had no way to check the benchmark's own reward, so the
``expert`` programs are left out of the "before" table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def rejecting_check(report: object) -> str:
    """Which check produced the old gate's first finding."""
    findings: list[str] = getattr(report, "findings", [])
    stats: dict[str, object] = getattr(report, "stats", {})
    if not findings:
        return ""
    first = findings[0]
    if first.startswith("ranking accuracy"):
        return "preference"
    if first.startswith(("badly scaled", "the reward is ~0")):
        return "scale"
    if first.startswith("the reward is constant"):
        return "constant"
    if "reward" not in stats:
        return "finite" if "not finite" in first or "rollout" in first else "check"
    return "finite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gate_calibration/results"))
    parser.add_argument("--cache", type=Path, default=Path("runs/gate_calibration/old_gate_cache"))
    args = parser.parse_args()
    from omegaconf import OmegaConf
    from programs import calibration_set

    import rewardlab
    from rewardlab.config import RewardLabConfig
    from rewardlab.gate import gate

    print(f"gate of {rewardlab.__file__}", flush=True)
    cfg = OmegaConf.structured(RewardLabConfig)
    cfg.runs_dir = str(args.cache)
    cfg.gate.cache_dir = str(args.cache)
    path = args.out / "baseline_verdicts.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    for program in calibration_set():
        if (
            program.source is None
            or program.name in done
            or not program.task.startswith(("metaworld/", "mujoco/"))
        ):
            continue
        from rewardlab.tasks import get_task

        report = gate(get_task(program.task), program.source, cfg)
        done[program.name] = {"digest": program.digest, "ok": report.ok, "rejected_by": rejecting_check(report),
                              "ranking_accuracy": report.ranking_accuracy, "finding": report.findings[:1]}  # fmt: skip
        print(
            program.name,
            done[program.name]["ok"],
            done[program.name]["rejected_by"],
            report.ranking_accuracy,
            flush=True,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
