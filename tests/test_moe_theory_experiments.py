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


@pytest.mark.slow  # an experiment smoke run (like tests/test_experiments.py); resume and arguments: below
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
    assert not list(tmp_path.glob("*.rows.jsonl"))  # the resume logs go once the records exist
    # --render redraws a plot from the record alone, with the same slopes
    (tmp_path / "gate.png").unlink()
    assert run.main(["gate", "--render", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "gate.png").stat().st_size > 10_000
    again = json.loads((tmp_path / "gate.json").read_text())["summary"]
    assert again["vanish/softmax/over/loss"]["slope"] == gate["vanish/softmax/over/loss"]["slope"]


def test_an_interrupted_run_resumes_from_its_log(tmp_path: Path) -> None:
    run = load_script()
    jobs = run.gate_jobs(run.QUICK["gate"], 1.0)
    marker = {"loss": 123.0}  # a recorded result is reused, not recomputed
    log = tmp_path / "gate.rows.jsonl"
    log.write_text(json.dumps({"job": list(jobs[0]), "row": marker}) + "\n")
    rows = run.run_jobs(run.gate_job, jobs[:2], 1, "gate", log)
    assert [r["loss"] for r in rows][0] == 123.0 and len(rows) == 2
    assert len(log.read_text().splitlines()) == 2


def test_defaults_leave_the_committed_results_alone_and_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = load_script()
    out = run.build_parser().parse_args(["all"]).out
    committed = SCRIPT.parent / "results"
    assert out.resolve() != committed.resolve() and committed.resolve() not in out.resolve().parents
    for bad in (["gate", "--workers", "0"], ["gate", "--seeds", "1"],
                ["gate", "--render", "--out", str(tmp_path / "empty")]):  # fmt: skip
        assert run.main(bad) == 2
        assert capsys.readouterr().err.startswith("error:")
    assert not (tmp_path / "empty").exists()  # refused before anything is written
