"""Run directory layout and small, append-safe writers.

A run directory holds everything needed to inspect or reproduce a run::

    config.yaml            resolved config          summary.json   final success etc.
    rewards/v0/reward.py   reward source            report.md      human-readable report
    rewards/v0/check.json  its check report         metrics.csv    evaluations over training
    rewards/v0/llm/        every prompt and reply   checkpoints/   model + normalisation
    videos/                evaluation mp4s          tb/            TensorBoard logs
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a crash never leaves a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append a row, writing the header on first use; new keys extend the header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    fields = list(row)
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = list(reader.fieldnames or []) + [k for k in row if k not in (reader.fieldnames or [])]
    rows.append(row)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def reward_dir(run_dir: Path, version: int) -> Path:
    """Folder of reward version ``version`` (``rewards/v<version>``)."""
    return run_dir / "rewards" / f"v{version}"


def latest_reward_version(run_dir: Path) -> int | None:
    versions = [int(p.name[1:]) for p in (run_dir / "rewards").glob("v*") if p.name[1:].isdigit()]
    return max(versions) if versions else None
