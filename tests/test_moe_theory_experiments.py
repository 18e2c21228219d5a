"""Tiny-budget smoke run of experiments/moe_theory/run.py (all three experiments, into a tmp
folder): every plot and record is written, slopes and the experts comparison are present."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "moe_theory" / "run.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("moe_theory_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_experiment_runs_on_a_tiny_budget(tmp_path: Path) -> None:
    run = load_script()
    assert run.main(["all", "--quick", "--workers", "1", "--out", str(tmp_path)]) == 0
    for name in ("gate", "shared", "tradeoff"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["budget"]["ns"] == list(run.QUICK[name]["ns"])
        assert record["rows"] and all(
            np.isfinite(r.get("loss", r.get("kl", 0.0))) for r in record["rows"]
        )
    gate = json.loads((tmp_path / "gate.json").read_text())["summary"]
    assert {"slope", "ci_low", "ci_high"} <= set(gate["vanish/softmax/over/loss"])
    tradeoff = json.loads((tmp_path / "tradeoff.json").read_text())["summary"]
    assert [row["n"] for row in tradeoff["comparison"]] == list(run.QUICK["tradeoff"]["ns"])
    assert all(len(row["default"]) == 2 and row["best_kl"] > 0 for row in tradeoff["comparison"])


def test_defaults_leave_the_committed_results_alone_and_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = load_script()
    assert run.main(["gate", "--workers", "0"]) == 2
    assert "error:" in capsys.readouterr().err
    assert run.main(["gate", "--seeds", "1"]) == 2
    assert 'default=Path("runs/moe_theory")' in SCRIPT.read_text()  # not the committed results
