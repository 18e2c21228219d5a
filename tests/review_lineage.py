"""Crafted reward lineages for the review page's tests, built from a real tiny run's files.

A real ``rewardlab train`` run trains in seconds but never succeeds, so tests that need
versions with *designed* success rates (which one is best, 12 versions on one page) copy the
real run's version folder (its reward program, training logs, model and video) into new
versions whose ``summary.json``, ``metrics.csv``, ``feedback.json`` and ``diff.patch`` carry
the designed numbers. Everything else on the page (videos, SB3 logs, sources) is the real
run's. Tests that say "crafted" use this; the refinement tests use real runs.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Spec:
    """A crafted version: its parent, final evaluation and when it first succeeded."""

    parent: int
    successes: int
    episodes: int
    progress: float
    env_return: float
    first_success_at: int | None = None
    feedback: str = "more speed"
    weight: float = 1.0
    """The progress term's weight in the crafted ``reward.py`` (so the diff is real)."""


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write_rows(path: Path, fields: list[str], rows: list[dict[str, object]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue())


def craft_version(run_dir: Path, number: int, spec: Spec, *, source_version: int = 0) -> Path:
    """Add version ``number`` to ``run_dir`` as a copy of ``source_version`` with ``spec``'s numbers."""
    src = run_dir / "rewards" / f"v{source_version}"
    dst = run_dir / "rewards" / f"v{number}"
    shutil.copytree(
        src,
        dst,
        ignore=shutil.ignore_patterns("checkpoints", "reviews.jsonl", "eval", "llm", "*.lock"),
    )
    parent_source = (run_dir / "rewards" / f"v{spec.parent}" / "reward.py").read_text()
    source = (
        (src / "reward.py")
        .read_text()
        .replace('"progress": 1.0 *', f'"progress": {spec.weight:g} *')
    )
    (dst / "reward.py").write_text(source)
    diff = difflib.unified_diff(parent_source.splitlines(keepends=True), source.splitlines(keepends=True),
                                fromfile=f"v{spec.parent}/reward.py", tofile=f"v{number}/reward.py")  # fmt: skip
    (dst / "diff.patch").write_text("".join(diff))
    (dst / "feedback.json").write_text(
        json.dumps(
            {"parent": spec.parent, "feedback": [spec.feedback], "time": "2026-01-01 12:00:00"}
        )
    )
    summary = json.loads((src / "summary.json").read_text())
    rate = spec.successes / spec.episodes
    final = summary["final_eval"]
    template = final["per_episode"][0]
    episodes = [{**template, "success": i < spec.successes, "progress": spec.progress, "env_return": spec.env_return,
                 "video": template["video"].replace(f"/v{source_version}/", f"/v{number}/") if i == 0 else None}
                for i in range(spec.episodes)]  # fmt: skip
    final.update(episodes=spec.episodes, success_rate=rate, mean_progress=spec.progress,
                 mean_env_return=spec.env_return, per_episode=episodes)  # fmt: skip
    summary.update(
        version=number, success_rate=rate, videos=[e["video"] for e in episodes if e["video"]]
    )
    (dst / "summary.json").write_text(json.dumps(summary, indent=1))
    fields, rows = _rows(src / "metrics.csv")
    steps = [int(float(r["timesteps"])) for r in rows]
    new_rows: list[dict[str, object]] = []
    for i, r in enumerate(rows):
        reached = spec.first_success_at is not None and steps[i] >= spec.first_success_at
        new_rows.append({**r, "success_rate": rate if reached else 0.0,
                         "mean_progress": spec.progress * (i + 1) / len(rows), "mean_env_return": spec.env_return * (i + 1) / len(rows)})  # fmt: skip
    _write_rows(dst / "metrics.csv", fields, new_rows)
    fields, rows = _rows(src / "tb" / "progress.csv")
    scaled = [
        {
            k: (float(v) * (1 + 0.15 * number) if k.startswith("reward/") and v else v)
            for k, v in r.items()
        }
        for r in rows
    ]
    _write_rows(dst / "tb" / "progress.csv", fields, scaled)  # type: ignore[arg-type]
    return dst


def craft_lineage(run_dir: Path, specs: list[Spec]) -> None:
    """Versions 1..len(specs) from ``specs`` (v0 is the real run's), and the run's summary."""
    for i, spec in enumerate(specs, 1):
        craft_version(run_dir, i, spec)
    summary = json.loads((run_dir / "summary.json").read_text())
    versions = []
    for n in range(len(specs) + 1):
        vs = json.loads((run_dir / "rewards" / f"v{n}" / "summary.json").read_text())
        versions.append(
            {
                "version": n,
                "has_reward": True,
                "status": "done",
                "success_rate": vs["success_rate"],
                "timesteps": vs["timesteps"],
            }
        )
    summary.update(
        versions=versions,
        latest_version=len(specs),
        current_version=len(specs),
        success_rate=versions[-1]["success_rate"],
    )
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))


def copy_run(run_dir: Path, runs_dir: Path, name: str) -> Path:
    """A copy of the real run ``run_dir`` at ``runs_dir/mujoco/hopper_forward/<name>`` (no checkpoints)."""
    dst = runs_dir / "mujoco" / "hopper_forward" / name
    shutil.copytree(
        run_dir,
        dst,
        symlinks=True,
        ignore=shutil.ignore_patterns("checkpoints", "refine.*", "reviews.jsonl"),
    )
    return dst


BEST_LINEAGE = [
    Spec(parent=0, successes=3, episodes=5, progress=0.60, env_return=120.0, first_success_at=1024, feedback="more speed", weight=2),
    Spec(parent=1, successes=4, episodes=5, progress=0.70, env_return=150.0, first_success_at=512, feedback="falls", weight=3),
    Spec(parent=2, successes=1, episodes=1, progress=0.90, env_return=400.0, first_success_at=512, feedback="jerky", weight=4),
    Spec(parent=2, successes=4, episodes=5, progress=0.70, env_return=210.0, first_success_at=1024, feedback="more speed", weight=5),
]  # fmt: skip
"""v1..v4. v3 has the highest point estimate (1/1 = 100%) but the widest interval (Wilson lower
bound 0.21); v2 and v4 tie on the lower bound (4/5: 0.38) and on progress; v4's benchmark
return is higher, so by the stated rule **v4** is best."""
