"""IQM, stratified bootstrap confidence intervals and the normalized score against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardlab.stats import (
    format_table,
    interval,
    iqm,
    mean,
    normalized_score,
    score_table,
    stratified_bootstrap_ci,
    trimmed_mean,
)


def test_iqm_known_values() -> None:
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # mean of 3, 4, 5, 6
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # order does not matter
    assert iqm([1, 2, 3, 4, 100]) == 3.0  # int(0.25 * 5) = 1 cut per end: mean of 2, 3, 4
    assert iqm([0.0, 0.0, 1.0, 1.0]) == 0.5
    assert iqm([10.0, 1.0, 2.0, 3.0, 4.0, -50.0, 5.0, 6.0]) == 3.5  # outliers at both ends ignored
    assert iqm([[1, 2], [3, 4]]) == 2.5  # runs x tasks matrices are pooled
    assert math.isnan(iqm([]))
    assert trimmed_mean([1, 2, 3], 0.0) == 2.0
    with pytest.raises(ValueError):
        trimmed_mean([1, 2], 0.5)


def test_iqm_matches_scipy_trim_mean() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n in (4, 5, 7, 10, 33):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(float(stats.trim_mean(x, 0.25)), abs=1e-12)


def test_bootstrap_two_point_distribution() -> None:
    # one task, scores {0, 1}: the bootstrap mean is 0, 0.5 or 1 with p = 1/4, 1/2, 1/4
    est, low, high = stratified_bootstrap_ci([[0.0, 1.0]], mean, reps=4000, confidence=0.95, seed=0)
    assert (est, low, high) == (0.5, 0.0, 1.0)
    est, low, high = stratified_bootstrap_ci([[0.0, 1.0]], mean, reps=4000, confidence=0.4, seed=0)
    assert (low, high) == (0.5, 0.5)  # the 30th and 70th percentiles fall on the 50% atom


def test_bootstrap_constant_and_empty() -> None:
    assert stratified_bootstrap_ci([[0.5, 0.5, 0.5]], reps=100) == (0.5, 0.5, 0.5)
    assert all(math.isnan(v) for v in stratified_bootstrap_ci([[]], reps=10))
    assert all(math.isnan(v) for v in stratified_bootstrap_ci({"t": [float("nan")]}, reps=10))


def test_bootstrap_is_stratified_by_task() -> None:
    # task a always 0 (3 seeds), task b always 1 (1 seed): every stratified replicate keeps
    # 3 a-runs and 1 b-run, so the mean is exactly 0.25; pooled resampling would vary
    est, low, high = stratified_bootstrap_ci(
        {"a": [0.0, 0.0, 0.0], "b": [1.0]}, mean, reps=500, seed=1
    )
    assert (est, low, high) == (0.25, 0.25, 0.25)


def test_bootstrap_mean_ci_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.0, size=400)
    est, low, high = stratified_bootstrap_ci(x, mean, reps=3000, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert est == pytest.approx(x.mean())
    assert low == pytest.approx(x.mean() - half, abs=0.2 * half)
    assert high == pytest.approx(x.mean() + half, abs=0.2 * half)


def test_bootstrap_is_reproducible_and_seeded() -> None:
    x = {"a": [0.1, 0.4, 0.35, 0.8, 0.2], "b": [0.9, 0.7, 0.5]}
    assert stratified_bootstrap_ci(x, seed=7, reps=300) == stratified_bootstrap_ci(
        x, seed=7, reps=300
    )
    assert stratified_bootstrap_ci(x, seed=7, reps=300) != stratified_bootstrap_ci(
        x, seed=8, reps=300
    )
    iv = interval(x, "iqm", reps=300, seed=7)
    assert iv.n == 8 and iv.low <= iv.estimate <= iv.high
    assert iv.to_dict()["n"] == 8 and str(iv).count("[") == 1


def test_normalized_score() -> None:
    assert normalized_score(0.75, sparse=0.25, expert=0.5) == 2.0
    assert normalized_score(0.5, sparse=0.0, expert=0.5) == 1.0
    assert normalized_score(0.0, sparse=0.0, expert=0.5) == 0.0
    assert normalized_score(0.2, sparse=0.4, expert=0.0) == pytest.approx(-0.5)  # |expert - sparse|
    assert normalized_score(1.0, sparse=0.0, expert=0.25) == 4.0
    assert normalized_score(1.0, sparse=0.0, expert=0.25, clip=True) == 3.0  # Eureka's [0, 3]
    assert normalized_score(-1.0, sparse=0.0, expert=0.25, clip=True) == 0.0
    assert normalized_score(0.3, sparse=0.5, expert=0.5) is None


def test_score_table_normalizes_each_run_by_the_task_baselines() -> None:
    results = {
        "t1": {"search": [0.5, 1.0], "sparse": [0.0, 0.0], "expert": [1.0, 1.0]},
        "t2": {"search": [0.2, 0.4], "sparse": [0.0, 0.2], "expert": [0.3, 0.5]},  # means 0.1, 0.4
        "t3": {"search": [0.9]},  # no baselines: scored, not normalized
    }
    table = score_table(results, reps=200)
    search = table["methods"]["search"]
    assert search["tasks"]["t1"]["normalized"] == [0.5, 1.0]
    assert search["tasks"]["t2"]["normalized"] == pytest.approx([1 / 3, 1.0])
    assert search["tasks"]["t3"]["normalized"] is None
    assert search["score"]["n"] == 5 and search["normalized"]["n"] == 4
    assert search["normalized"]["estimate"] == pytest.approx(iqm([0.5, 1.0, 1 / 3, 1.0]))
    assert table["methods"]["expert"]["normalized"]["estimate"] == pytest.approx(1.0)
    text = format_table(table)
    assert text.splitlines()[0].startswith("| method | runs | score IQM [95% CI]")
    assert "| search | 5 |" in text
