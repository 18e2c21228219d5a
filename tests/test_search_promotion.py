"""Search decisions with their uncertainty: Wilson intervals, the noise-aware promotion rule of
successive halving, the decision evaluation on the rollout core, and the simulation that
measures how often each rule prunes the better of two programs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from rewardlab.search.decision import core_episodes, summarize_decision
from rewardlab.search.halving import clearly_worse, promote, successive_halving
from rewardlab.stats import wilson_interval
from rewardlab.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def test_wilson_interval_covers_the_rate_about_as_often_as_it_says() -> None:
    # exact coverage over the binomial distribution (no sampling): Wilson stays near 95% even
    # at small n and rates near 0, where the normal approximation collapses to a point
    for n, p in [(20, 0.05), (20, 0.2), (5, 0.2), (50, 0.5), (20, 0.9)]:
        ks = np.arange(n + 1)
        covered = sum(
            stats.binom.pmf(k, n, p)
            for k in ks
            if wilson_interval(int(k), n)[0] <= p <= wilson_interval(int(k), n)[1]
        )
        assert 0.85 <= covered <= 1.0, (n, p, covered)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2  # 0/20 does not mean "never"
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(40, 200), wilson_interval(4, 20)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with pytest.raises(ValueError):
        wilson_interval(21, 20)


def decided(wins: int, n: int, progress: list[float] | None = None) -> dict[str, Any]:
    return {
        "status": "ok",
        **summarize_decision(
            [i < wins for i in range(n)], progress or [float(i < wins) for i in range(n)]
        ),
    }


def test_the_interval_rule_keeps_what_the_evaluation_cannot_separate() -> None:
    # issue 14: the good program pruned at 0.00 vs 0.20 (0/5 vs 1/5 episodes)
    good, mediocre = decided(0, 20), decided(4, 20)
    assert not clearly_worse(good, mediocre)
    results = {"mediocre": mediocre, "good": good}
    assert promote(["mediocre", "good"], results, 2, "rank") == ["mediocre"]
    assert promote(["mediocre", "good"], results, 2, "interval") == ["mediocre", "good"]
    # ... but a clear gap still prunes
    results = {"strong": decided(14, 20), "weak": decided(1, 20)}
    assert clearly_worse(results["weak"], results["strong"])
    assert promote(["strong", "weak"], results, 2, "interval") == ["strong"]
    # tied success (none succeeds yet): progress intervals decide
    flat = {"a": decided(0, 20, [0.30 + 0.01 * i for i in range(20)]), "b": decided(0, 20, [0.31 + 0.01 * i for i in range(20)]),
            "c": decided(0, 20, [0.02 + 0.001 * i for i in range(20)])}  # fmt: skip
    assert promote(["b", "a", "c"], flat, 3, "interval") == ["b", "a"]
    assert promote(["b", "a", "c"], flat, 3, "rank") == ["b"]
    with pytest.raises(ValueError):
        promote(["a"], flat, 2, "median")


def test_halving_records_what_each_rule_would_have_promoted() -> None:
    outcomes = {1: {"a": decided(4, 20), "b": decided(0, 20), "c": decided(0, 20, [0.0] * 20), "d": decided(15, 20)},
                2: {"d": decided(16, 20), "a": decided(10, 20), "b": decided(2, 20)},
                4: {"d": decided(18, 20), "a": decided(19, 20)}}  # fmt: skip

    def train(keys: list[str], budget: int) -> dict[str, dict[str, Any]]:
        return {k: {**outcomes[budget][k], "timesteps": budget} for k in keys}

    result = successive_halving(["a", "b", "c", "d"], [1, 2, 4], 2, train, promotion="interval")
    first = result.decisions[0]
    assert first["ranked"][0] == "d" and first["by_rank"] == ["d", "a"]
    assert first["promoted"] == ["d", "a"]  # b (0/20) and c are clearly below d (15/20)
    assert result.calls[1] == (["d", "a"], 2) and result.pruned["b"] == 1
    # at rung 2, d (16/20) and a (10/20) overlap: both go on, and a ends best (19/20 vs 18/20)
    assert result.decisions[1]["promoted"] == ["d", "a"] and result.calls[2] == (["d", "a"], 4)
    assert result.best == "a"
    rank = successive_halving(["a", "b", "c", "d"], [1, 2, 4], 2, train, promotion="rank")
    assert rank.calls[:2] == result.calls[:2]  # the clear decision at rung 1 is the same
    assert rank.calls[2] == (["d"], 4) and rank.best == "d" and rank.pruned["a"] == 2


def test_decisions_on_the_rollout_core_match_gymnasium_episodes() -> None:
    from rewardlab.evaluation import run_episodes

    task = get_task("mujoco/hopper_forward")

    class Zero:  # a policy that always sends zero torque
        def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
            return np.zeros((*np.shape(obs)[:-1], 3)), None

    on_core = core_episodes(task, Zero(), None, 4, seed=123)
    assert on_core is not None
    success, progress = on_core
    episodes = run_episodes(task, Zero(), episodes=4, seed=123)
    assert success == [e.success for e in episodes]
    assert np.allclose(progress, [e.progress for e in episodes], atol=1e-6)
    assert (
        core_episodes(get_task("metaworld/drawer_close"), Zero(), None, 2, seed=0) is None
    )  # not on the core


def experiment(name: str) -> Any:
    """A script of ``experiments/search_promotion`` as a module."""
    spec = importlib.util.spec_from_file_location(
        f"search_promotion_{name}", ROOT / "experiments" / "search_promotion" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_promotion_simulation_measures_both_rules() -> None:
    module = experiment("run")
    Scenario, simulate = module.Scenario, module.simulate

    scenario = Scenario("close", better=0.35, worse=0.15, others=0)
    before = simulate(scenario, episodes=5, rule="rank", reps=300, seed=0)
    after = simulate(scenario, episodes=20, rule="interval", reps=300, seed=0)
    assert 0.0 <= after.better_pruned < before.better_pruned
    assert after.promoted >= before.promoted == 1.0  # the price: more candidates go on
    same = simulate(
        Scenario("equal", better=0.2, worse=0.2, others=0),
        episodes=20,
        rule="rank",
        reps=300,
        seed=1,
    )
    assert 0.3 < same.better_pruned < 0.7  # a coin flip when the two are equal


def test_asha_and_synchronous_rungs_run_on_the_same_candidates() -> None:
    out = experiment("asha").compare(4, 2, reps=30, seed=0)
    assert out["sync rank"]["steps"] == 2.0  # 4 x 1/4 + 2 x 1/4 + 1 x 1/2 of a full training
    assert out["sync interval"]["steps"] >= out["sync rank"]["steps"]
    assert out["asha"]["steps"] > 1.0  # every candidate trains to the first rung at least
    for r in out.values():
        assert 0.0 <= r["found_best"] <= 1.0 and r["regret"] >= 0.0 and r["wall"] > 0.0


def test_pruning_is_read_from_recorded_search_consoles() -> None:
    """The issue's case, read back from the committed run: drawer_close, seed 0, the good
    program pruned at 8,192 steps (0.00 against 0.20) while the mediocre one went on."""
    spec = importlib.util.spec_from_file_location(
        "search_multitask_pruning", ROOT / "experiments" / "search_multitask" / "pruning.py"
    )
    assert spec is not None and spec.loader is not None
    pruning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pruning)
    assert pruning.programs_from_served([["first", "good"], ["first", "hostile"], ["fix", "broken"], ["first", "x"]], 2) == {
        (0, 0): "good", (0, 1): "broken", (1, 0): "x"}  # fmt: skip
    unit = (
        ROOT
        / "experiments"
        / "search_multitask"
        / "results"
        / "units"
        / "seed_0"
        / "metaworld__drawer_close"
        / "server"
    )
    (pair,) = pruning.unit_pairs(unit)
    assert (pair["better"], pair["worse"], pair["budget"]) == ("good", "mediocre", 8192)
    assert pair["better_score"][0] < pair["worse_score"][0] and pair["inversion"]
