"""Smoke tests of the core's benchmark and experiment scripts at tiny budgets (they run and
write their reports; their numbers are not checked: speed is measured in benchmarks/, never
asserted)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

from rewardlab.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_reward_cost_interleaves_and_reports_ratios(tmp_path: Path) -> None:
    bench = load("reward_cost")
    result = bench.measure(get_task("mujoco/hopper_forward"), slices=3, slice_steps=20)
    for key in ("overhead", "call_share"):
        median, low, high = result[key]
        assert math.isfinite(median) and low <= median <= high
    assert result["slices"] == 3 and result["bare_us"] > 0


def test_core_learning_experiment_smoke(tmp_path: Path) -> None:
    """experiments/core_learning at a tiny budget: one PPO update of 64 core worlds, the
    rollout per update is the preset's 4,096 steps, and the report files are written."""
    spec = importlib.util.spec_from_file_location(
        "core_learning_run", ROOT / "experiments" / "core_learning" / "run.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.main([
        "--arms", "core64", "--seeds", "1", "--steps", "4096", "--eval-freq", "4096", "--eval-episodes", "1",
        "--out", str(tmp_path), "--runs", str(tmp_path / "runs"),
    ])  # fmt: skip
    assert "| core, 64 envs (n_steps 64) | 4,096 |" in text
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "results.json").is_file()
