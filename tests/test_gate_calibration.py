"""The gate-calibration experiment end to end at a tiny budget (train, gate, report), writing
to a temporary folder only."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "gate_calibration" / "run.py"


@pytest.mark.slow  # two trainings and a rerun (minutes on 2 cores); the gate itself: test_gate.py
def test_calibration_smoke_run(tmp_path: Path) -> None:
    out, runs = tmp_path / "out", tmp_path / "runs"
    cmd = [
        sys.executable, str(SCRIPT), "all", "--tasks", "metaworld/coffee_button", "--kinds", "expert", "constant",
        "--seeds", "1", "--mw-steps", "1024", "--eval-freq", "1024", "--eval-episodes", "1",
        "--out", str(out), "--runs", str(runs),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    with (out / "outcomes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["kind"] for r in rows) == ["constant", "expert"]
    assert all(int(r["timesteps"]) >= 1024 and int(r["evals"]) >= 1 for r in rows), rows
    verdicts = {v["kind"]: v for v in json.loads((out / "verdicts.json").read_text())}
    assert verdicts["expert"]["verdict"]["ok"]
    assert verdicts["constant"]["verdict"]["checks"]["constant"] == "reject"
    text = (out / "results.md").read_text()
    assert (
        "| check | rejected |" in text
        and "whole gate" in text
        and "metaworld/coffee_button | constant" in text
    )
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert (
        again.returncode == 0
        and "0 runs to train in shard" in again.stdout
        and "(2 in " in again.stdout
    )  # resumed, nothing retrained
