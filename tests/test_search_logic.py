"""Candidate search logic without training: successive halving on recorded budgets, the
reward-hacking alarm on synthetic curves, offline variants, reflection statistics and prompt,
the gate, and launcher selection."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from omegaconf import OmegaConf

from rewardlab.config import SearchConfig
from rewardlab.gate import GATE_NAME, gate
from rewardlab.generators.base import GenerationRequest, extract_code
from rewardlab.generators.offline import OfflineGenerator, parse_terms
from rewardlab.search.alarm import alarm_from_metrics, hacking_alarm
from rewardlab.search.halving import rung_budgets, successive_halving, survivors
from rewardlab.search.launch import hydra_command, launcher_problem, resolve_launcher
from rewardlab.search.reflection import (
    component_stats,
    read_progress,
    reflect,
    reflection_messages,
)
from rewardlab.search.variants import OfflineVariants, perturb_source, variant_factors
from rewardlab.tasks import get_task

TASK = get_task("mujoco/hopper_forward")


# ----------------------------------------------------------------------------- halving


def recorded(table: dict[str, dict[int, float]], progress: dict[str, float] | None = None) -> Any:
    """A ``train`` callable answering from recorded success per (candidate, budget)."""
    trained: dict[str, int] = {}

    def train(keys: list[str], budget: int) -> dict[str, dict[str, Any]]:
        out = {}
        for k in keys:
            assert budget > trained.get(k, 0), (
                "a candidate is only ever continued to a larger budget"
            )
            trained[k] = budget
            value = table[k].get(budget)
            out[k] = (
                {"status": "error", "error": "crashed"}
                if value is None
                else {
                    "status": "ok",
                    "timesteps": budget,
                    "success": value,
                    "progress": (progress or {}).get(k, 0.0),
                }
            )
        return out

    train.trained = trained  # type: ignore[attr-defined]
    return train


def test_rung_budgets() -> None:
    assert rung_budgets(1000, 2, 8000) == [1000, 2000, 4000, 8000]
    assert rung_budgets(1000, 2, 7999) == [1000, 2000, 4000]
    assert rung_budgets(1000, 3, 9000) == [1000, 3000, 9000]
    assert rung_budgets(1000, 2, 500) == [1000]
    assert rung_budgets(1000, 2, 4096, quantum=1024) == [1024, 2048, 4096]  # whole PPO rollouts
    assert [survivors(n, 2) for n in (1, 2, 3, 8)] == [1, 1, 1, 4]
    with pytest.raises(ValueError):
        rung_budgets(1000, 1, 8000)


def test_halving_stops_losers_early_on_recorded_budgets() -> None:
    table = {
        "a": {1: 0.0, 2: 0.0},
        "b": {1: 0.2, 2: 0.4, 4: 0.5},
        "c": {1: 0.1, 2: 0.5, 4: 0.7, 8: 0.8},
        "d": {1: 0.0},
        "e": {1: 0.3, 2: 0.1},
        "f": {1: 0.0},
        "g": {1: 0.1, 2: 0.2, 4: 0.4},
        "h": {1: 0.05},
    }
    train = recorded(table)
    result = successive_halving(list(table), [1, 2, 4, 8], 2, train)
    assert result.calls == [
        (["a", "b", "c", "d", "e", "f", "g", "h"], 1),
        (["e", "b", "c", "g"], 2),  # top 4 by success at budget 1 (ties: candidate order)
        (["c", "b"], 4),
        (["c"], 8),
    ]
    assert train.trained == {"a": 1, "b": 4, "c": 8, "d": 1, "e": 2, "f": 1, "g": 2, "h": 1}
    assert result.stopped_at == train.trained
    assert result.pruned == {"a": 1, "d": 1, "f": 1, "h": 1, "e": 2, "g": 2, "b": 4}
    assert result.best == "c" and result.target_reached is None
    assert result.ranking == ["c", "b", "g", "e", "h", "a", "d", "f"]
    # survivors continue from their checkpoints: 4*1 + 2*2 + 4 + 8 = 20 budget units of
    # training instead of 8*8 = 64 when every candidate gets the full budget
    assert sum(train.trained.values()) == 20


def test_halving_ties_break_on_progress_and_stops_at_target() -> None:
    table = {
        "a": {1: 0.0, 2: 0.0},
        "b": {1: 0.0, 2: 1.0, 4: 1.0},
        "c": {1: 0.0, 2: 0.0},
        "d": {1: 0.0},
    }
    progress = {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.0}
    train = recorded(table, progress)
    result = successive_halving(list(table), [1, 2, 4], 2, train, target_success=1.0)
    assert result.calls == [(["a", "b", "c", "d"], 1), (["b", "c"], 2)]  # progress broke the tie
    assert result.target_reached == "b" and result.best == "b"
    assert "b" not in result.pruned and train.trained["b"] == 2  # stopped before rung 4


def test_halving_drops_failed_trainings() -> None:
    table: dict[str, dict[int, float]] = {"a": {1: 0.5, 2: 0.6}, "b": {1: 0.1, 2: 0.2}, "c": {}}
    states: list[tuple[int, list[str]]] = []
    result = successive_halving(list(table), [1, 2], 2, recorded(table),
                                on_rung=lambda r, b, s: states.append((r, list(s.ranking))))  # fmt: skip
    assert result.failed == {"c": "crashed"} and result.pruned["c"] == 1
    assert result.calls[1] == (["a"], 2)
    assert result.ranking[-1] == "c"
    assert [r for r, _ in states] == [0, 1]
    table2 = {"a": {}, "b": {}}
    assert successive_halving(["a", "b"], [1, 2], 2, recorded(table2)).best is None


# ----------------------------------------------------------------------------- alarm


def test_hacking_alarm_on_synthetic_curves() -> None:
    steps = list(range(1, 10))
    rising = [10, 12, 15, 20, 30, 45, 60, 80, 100]
    flat = [0.0] * 9
    alarm = hacking_alarm(steps, rising, flat, flat)
    assert (
        alarm.flagged
        and "rose" in alarm.reason
        and alarm.reward_rise is not None
        and alarm.reward_rise > 4
    )
    learning = [0, 0, 0, 0.2, 0.2, 0.4, 0.6, 0.6, 0.8]
    assert not hacking_alarm(steps, rising, learning).flagged  # success rises with the return
    assert (
        "learning"
        in hacking_alarm(steps, rising, flat, [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]).reason
    )
    assert not hacking_alarm(steps, [50.0] * 9, flat).flagged  # the return did not rise
    assert not hacking_alarm(steps, [100, 90, 70, 60, 50, 40, 30, 20, 10], flat).flagged
    assert not hacking_alarm(steps, rising, [1.0] * 9).flagged  # solved all along
    assert not hacking_alarm([1, 2], [1, 100], [0, 0]).flagged  # too few evaluations
    # from near zero: any clear rise counts; noise within min_rise does not
    assert hacking_alarm(steps, [0.0, 0.1, 0, 0.5, 1, 2, 3, 4, 5], flat).flagged
    assert not hacking_alarm(steps, [100, 104, 98, 101, 103, 99, 102, 105, 104], flat).flagged
    # unordered input is sorted by steps
    assert hacking_alarm(steps[::-1], rising[::-1], flat).flagged


def test_hacking_alarm_spares_early_learning_with_small_progress() -> None:
    # Regression: an honest halfcheetah candidate (progress 0.02 -> 0.08 at a small budget) was
    # flagged because its progress rise stayed under the absolute tolerance.
    steps = list(range(1, 10))
    rising = [10, 12, 15, 20, 30, 45, 60, 80, 100]
    small_progress = [0.02, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.08]
    assert not hacking_alarm(steps, rising, [0.0] * 9, small_progress).flagged
    # ... while progress that only wobbles still leaves the alarm raised
    assert hacking_alarm(
        steps, rising, [0.0] * 9, [0.30, 0.31, 0.30, 0.29, 0.31, 0.30, 0.31, 0.30, 0.31]
    ).flagged


def write_metrics(path: Path, rows: list[tuple[int, float, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["timesteps", "success_rate", "mean_progress", "mean_reward_return", "mean_env_return"]
        )
        for steps, success, progress, ret in rows:
            w.writerow([steps, success, progress, ret, 0.0])


def test_alarm_from_metrics_file(tmp_path: Path) -> None:
    write_metrics(
        tmp_path / "metrics.csv", [(512 * i, 0.0, 0.0, 3.0 + 40 * i) for i in range(1, 7)]
    )
    assert alarm_from_metrics(tmp_path / "metrics.csv").flagged
    assert not alarm_from_metrics(tmp_path / "metrics.csv", min_rise=100.0).flagged


# ----------------------------------------------------------------------------- offline variants


def offline(sample: int, period: int = 0, **kw: Any) -> str:
    gen = OfflineVariants(OfflineGenerator(), period=period)
    reply = gen.propose(
        GenerationRequest(task=TASK, instruction=TASK.instruction, messages=[], sample=sample, **kw)
    )
    source = extract_code(reply.text)
    assert source is not None
    return source


def weights(source: str) -> dict[str, float]:
    return {t.name: t.weight for t in parse_terms(source) or []}


def test_offline_variants_are_distinct_documented_perturbations() -> None:
    base = weights(offline(0))
    assert base == {"progress": 1.0, "alive": 1.0, "upright": 0.5, "action": 0.001}
    samples = [weights(offline(s)) for s in range(8)]
    assert len({tuple(sorted(w.items())) for w in samples}) == 8  # K=8 different programs
    assert samples[1] == {**base, "progress": 2.0} and samples[2] == {**base, "progress": 0.5}
    assert samples[3] == {**base, "alive": 2.0} and samples[6] == {**base, "upright": 0.25}
    assert offline(5) == offline(5)  # deterministic
    assert weights(offline(4, period=4)) == base  # sample i*K + 0 is the unperturbed program
    assert variant_factors(["a"], 0) == {"a": 1.0}
    assert any(
        f != 1.0 for f in variant_factors(["a", "b"], 17).values()
    )  # random phase never all 1
    assert perturb_source('        "a": 1.0 * (x),\n', {"a": 3.0}) == '        "a": 3.0 * (x),\n'


def test_offline_applies_reflection_edits_to_the_previous_best() -> None:
    previous = offline(1)  # progress x2
    edited = weights(
        offline(0, previous_source=previous, feedback=["reduce alive", "more progress"])
    )
    assert edited == {"progress": 4.0, "alive": 0.5, "upright": 0.5, "action": 0.001}
    kept = weights(offline(0, previous_source=previous, feedback=["keep the current weights"]))
    assert kept == weights(previous)


# ----------------------------------------------------------------------------- reflection


def write_progress(path: Path, rows: list[dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def synthetic_candidate(d: Path) -> None:
    """8 rollouts of 256 steps over two trainings (the first kept aside), 4 evaluations."""
    rows = []
    for i in range(1, 9):
        rows.append({"time/total_timesteps": 256 * i, "reward/progress": 0.1 * i, "reward/alive": 1.0,
                     "reward/huge": 0.0 if i < 3 else 50.0 + i, "reward/wobble": 1.0 - 0.1 * i,
                     "reward/env": 9.0, "reward/error": 0.0})  # fmt: skip
    write_progress(d / "tb" / "progress_until_1024.csv", rows[:4])  # as older searches kept it
    write_progress(d / "tb" / "progress.csv", rows[4:])
    write_metrics(
        d / "metrics.csv",
        [
            (512, 0.0, 0.1, 5.0),
            (1024, 0.0, 0.2, 6.0),
            (1536, 0.0, 0.35, 8.0),
            (2048, 0.2, 0.5, 9.0),
        ],
    )


def test_component_statistics(tmp_path: Path) -> None:
    synthetic_candidate(tmp_path)
    assert [int(r["time/total_timesteps"]) for r in read_progress(tmp_path)] == [
        256 * i for i in range(1, 9)
    ]
    stats, curve = component_stats(tmp_path, snapshots=5)
    by = {s.name: s for s in stats}
    assert set(by) == {"progress", "alive", "huge", "wobble"}  # env and error are not components
    p = by["progress"]
    assert (p.min, p.max) == (pytest.approx(0.1), pytest.approx(0.8)) and p.mean == pytest.approx(
        0.45
    )
    assert p.steps == [256, 768, 1280, 1536, 2048] and len(p.snapshots) == 5
    assert p.corr_progress is not None and p.corr_progress > 0.9 and p.corr_success is not None
    assert by["alive"].constant and not p.constant
    assert by["huge"].dominant and not p.dominant
    assert by["wobble"].corr_progress is not None and by["wobble"].corr_progress < -0.9
    assert [c["steps"] for c in curve] == [512, 1024, 1536, 2048]


def test_reflection_heuristics_and_prompt(tmp_path: Path) -> None:
    synthetic_candidate(tmp_path)
    refl = reflect(tmp_path, label="iterations/0/candidates/1",
                   gate_notes=["candidate 2 of iteration 0: [static] line 1: import of 'os' is not allowed"],
                   hacking="generated return rose +80% while success stayed flat", others=["iteration 0 candidate 0: pruned"])  # fmt: skip
    assert refl.success_best == 0.2 and refl.timesteps == 2048
    assert refl.edits == ["reduce alive", "reduce huge", "reduce wobble", "more progress"]
    tips = "\n".join(refl.tips)
    assert (
        "`alive` barely changed" in tips
        and "`huge` is" in tips
        and "`wobble` moves against" in tips
    )
    assert "near zero" not in tips  # success 0.2 is not "near zero"
    previous = "def compute_dense_reward(self, action):\n    return 1.0\n"
    messages = reflection_messages(TASK, TASK.instruction, previous, refl)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert TASK.instruction in messages[1]["content"]
    assert messages[2]["content"] == f"```python\n{previous.rstrip()}\n```"
    text = messages[3]["content"]
    assert "| 2048 | 0.20 | 0.50 | 9 |" in text  # the success curve
    assert "- `progress`: [0.1, 0.2" in text and "min 0.1, mean 0.45, max 0.8" in text
    assert "(nearly constant)" in text and "correlation with success" in text
    assert "import of 'os' is not allowed" in text  # the gate's findings
    assert "reward-hacking alarm" in text and "rose +80%" in text
    assert "iteration 0 candidate 0: pruned" in text
    assert "rewrite the entire reward function" in text  # Eureka's tips, always listed
    assert "```python code block" in text


def test_reflection_says_rewrite_when_success_is_zero(tmp_path: Path) -> None:
    write_metrics(tmp_path / "metrics.csv", [(512, 0.0, 0.0, 1.0), (1024, 0.0, 0.0, 1.0)])
    refl = reflect(tmp_path, label="x")
    assert refl.components == [] and refl.tips[0].startswith(
        "The task success rate stayed near zero"
    )
    text = reflection_messages(TASK, TASK.instruction, "x = 1", refl)[-1]["content"]
    assert "returned no named components" in text


# ----------------------------------------------------------------------------- gate and launcher


def test_gate_wraps_the_check() -> None:
    cfg = SimpleNamespace(check=SimpleNamespace(steps=20, timeout_s=30.0, memory_mb=2048))
    ok = gate(
        TASK,
        "def compute_dense_reward(self, action):\n    return self.hopper.top.velocity_x\n",
        cfg,
    )
    assert ok.ok and ok.gate == GATE_NAME and ok.summary().startswith("passed")
    assert ok.ranking_accuracy is None and any(
        "no scripted expert" in w for w in ok.warnings
    )  # hopper: no demos
    bad = gate(TASK, "import os\ndef compute_dense_reward(self, action):\n    return 1.0\n", cfg)
    assert not bad.ok and "'os'" in bad.findings[0] and bad.summary().startswith("rejected: ")
    assert {"ok", "gate", "findings", "warnings", "stats", "ranking_accuracy"} <= set(bad.to_dict())
    const = gate(TASK, "def compute_dense_reward(self, action):\n    return 1.0\n", cfg)
    assert not const.ok and "constant" in const.findings[0]  # a constant total is rejected


def test_launcher_selection_and_command(tmp_path: Path) -> None:
    s = SimpleNamespace(launcher="joblib", n_jobs=1, launcher_overrides=[])
    assert resolve_launcher(s) == "inline"  # one job at a time is the single-process path
    s.n_jobs = 2
    assert resolve_launcher(s) == "joblib"
    s.launcher = "auto"
    assert resolve_launcher(s) in ("joblib", "inline")
    s.launcher, s.n_jobs = "auto", 1
    assert resolve_launcher(s) == "inline"
    s = OmegaConf.structured(SearchConfig(launcher="submitit_slurm", n_jobs=2, launcher_overrides=["hydra.launcher.partition=gpu"],
                                          gpus_per_job=1, memory_gb_per_job=6.5, job_timeout_s=600))  # fmt: skip
    assert resolve_launcher(s) == "submitit_slurm"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        assert "pip install hydra-submitit-launcher" in str(launcher_problem(s))
    assert launcher_problem(SimpleNamespace(launcher="inline", n_jobs=2)) is None
    cmd = hydra_command(tmp_path / "jobs.json", 3, "submitit_slurm", s)
    assert cmd[1:4] == ["-m", "rewardlab.search.worker", "-m"]
    assert "index=0,1,2" in cmd and "hydra/launcher=submitit_slurm" in cmd
    assert cmd[-1] == "hydra.launcher.partition=gpu"  # the user's overrides come last and win
    # per-job resources and the timeout in SLURM's terms
    assert {"hydra.launcher.gpus_per_node=1", "hydra.launcher.mem_gb=7", "hydra.launcher.timeout_min=10",
            "hydra.launcher.cpus_per_task=1"} <= set(cmd)  # fmt: skip
    assert "hydra.launcher.n_jobs=2" in hydra_command(tmp_path / "jobs.json", 2, "joblib", s)
    ray = hydra_command(tmp_path / "jobs.json", 2, "ray", s, "10.0.0.1:6379")
    assert "hydra/launcher=rewardlab_ray" in ray and "hydra.launcher.address=10.0.0.1:6379" in ray
    assert {
        "hydra.launcher.num_gpus=1",
        "hydra.launcher.memory_gb=6.5",
        "hydra.launcher.max_retries=1",
    } <= set(ray)
