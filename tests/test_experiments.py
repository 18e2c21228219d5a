"""Every experiment script runs end to end on a tiny budget, writing to a temporary folder (as
CleanRL smoke-runs its scripts), and none writes into the committed results by default."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"

# script -> (arguments after --out/--runs, files it must write into --out); budgets are the
# smallest each script accepts: what is checked is that it runs and reports, not what it finds.
SMOKE: dict[str, tuple[list[str], list[str]]] = {
    "shaping_tabular/run.py": (["--seeds", "1", "--ada-seeds", "1", "--scale", "0.01", "--workers", "1", "--only", "exprd"],
                               ["results.json", "results.md"]),
    "shaping_continuous/run.py": (["--tasks", "mujoco/hopper_forward", "--kinds", "none", "adaptive", "--seeds", "1",
                                   "--steps", "512", "--teacher-steps", "512", "--eval-freq", "512", "--eval-episodes", "1",
                                   "--jobs", "1"], ["results.json", "results.md"]),
    "shaping_metaworld/run.py": (["--tasks", "metaworld/drawer_close", "--seeds", "1", "--scale", "0.02", "--eval-freq", "512",
                                  "--eval-episodes", "1"], ["results.json", "results.md"]),
    "manipulation/run.py": (["--tasks", "metaworld/drawer_close", "--arms", "expert", "offline", "--seeds", "1",
                             "--steps", "1024", "--eval-freq", "512", "--eval-episodes", "1"], ["results.json", "results.md"]),
    "refinement_demo/run_demo.py": (["--steps", "1024"], []),
    "e2cl/run.py": (["--tasks", "mujoco/hopper_forward", "--seeds", "0", "--rounds", "1", "--steps", "1024"],
                    ["results.json", "results.md"]),
    "search_multitask/run.py": (["--quick", "--tasks", "mujoco/hopper_forward", "--generators", "offline", "--seeds", "0"], []),
    "moe_multitask/run.py": (["--seeds", "1", "--toy-steps", "256", "--steps", "200", "--members", "reach",
                              "--learning-starts", "100", "--eval-freq", "200", "--eval-episodes", "1", "--horizon", "10"],
                             ["results.json", "results.md", "curves.png"]),
}  # fmt: skip


READERS = ("search/aggregate.py", "search_multitask/pruning.py")
"""Scripts that only read finished runs: smoke-run on the committed results below."""


def scripts() -> list[Path]:
    return sorted(
        p
        for p in EXPERIMENTS.glob("*/*.py")
        if "__main__" in p.read_text() and p.name != "programs.py"
    )


def test_every_experiment_script_has_a_smoke_run() -> None:
    """Here (:data:`SMOKE`) or in its owner's test file, which names the script's folder."""
    others = "\n".join(
        p.read_text()
        for p in Path(__file__).parent.glob("test_*.py")
        if p.name != Path(__file__).name
    )
    missing = [
        name for p in scripts()
        if (name := p.relative_to(EXPERIMENTS).as_posix()) not in SMOKE and name not in READERS
        and f'"{p.parent.name}"' not in others and f"experiments/{p.parent.name}" not in others
    ]  # fmt: skip
    assert not missing, f"no smoke run for {missing}"


@pytest.mark.parametrize("script", scripts(), ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_default_output_is_not_the_committed_results(script: Path) -> None:
    """``--out`` (if the script has one) defaults to a folder outside ``experiments/``."""
    for node in ast.walk(ast.parse(script.read_text())):
        is_out = (
            isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and node.args[0].value == "--out"
        )  # fmt: skip
        if is_out:
            assert isinstance(node, ast.Call)
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            assert default is not None, "--out needs a default outside experiments/"
            text = ast.unparse(default)
            assert "HERE" not in text and not text.startswith(("'experiments", '"experiments')), (
                f"--out defaults to {text}"
            )


SMOKE_IN_DEFAULT_SUITE = {"shaping_tabular/run.py"}
"""Smoke runs in the default suite; the others train (each a minute or more on 2 cores), so they
are marked slow (all of them: ``pytest -m slow tests/test_experiments.py``). What they train
and report is covered by the feature tests in the default suite (test_e2cl, test_refine,
test_shaping*, test_multitask_train, test_search_e2e, test_metaworld)."""


@pytest.mark.parametrize(
    "name",
    [
        n if n in SMOKE_IN_DEFAULT_SUITE else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(SMOKE)
    ],
)
def test_experiment_script_runs_on_a_tiny_budget(name: str, tmp_path: Path) -> None:
    args, outputs = SMOKE[name]
    out = tmp_path / "out"
    runs = (
        ["--runs", str(tmp_path / "runs")] if "--runs" in (EXPERIMENTS / name).read_text() else []
    )
    res = subprocess.run([sys.executable, str(EXPERIMENTS / name), *args, "--out", str(out), *runs], cwd=tmp_path,
                         capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    for rel in outputs:
        assert (out / rel).is_file(), f"{name} did not write {rel}"
    assert out.exists() and any(out.iterdir()), f"{name} wrote nothing into --out"


def test_search_aggregate_reads_committed_search_runs(tmp_path: Path) -> None:
    runs = sorted(p.parent for p in (EXPERIMENTS / "search" / "results").glob("*/search.json"))
    assert runs
    res = subprocess.run([sys.executable, str(EXPERIMENTS / "search" / "aggregate.py"), *map(str, runs), "--reps", "200",
                          "--json", str(tmp_path / "table.json")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "table.json").is_file()


def test_search_multitask_pruning_reads_the_committed_results() -> None:
    res = subprocess.run([sys.executable, str(EXPERIMENTS / "search_multitask" / "pruning.py"), "results", "results"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "better" in res.stdout
