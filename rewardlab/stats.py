"""Interval statistics for reward search results: IQM, stratified bootstrap confidence
intervals and the (Eureka) normalized score.

Scores are arranged as ``runs x tasks`` matrices (one row per seed, one column per task), as
in Agarwal et al., "Deep RL at the Edge of the Statistical Precipice" (NeurIPS 2021, the
``rliable`` library): the aggregate of a method is computed over every (seed, task) score,
and its uncertainty by a *stratified* bootstrap that resamples seeds independently within each
task, so a task with more seeds does not dominate and the number of seeds per task is kept.

Example:
    >>> iqm([1, 2, 3, 4, 5, 6, 7, 8])
    4.5
    >>> normalized_score(0.75, sparse=0.25, expert=0.5)
    2.0
    >>> normalized_score(0.0, sparse=0.5, expert=0.5) is None
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Aggregate = Callable[[np.ndarray], float]

NORMALIZED_CLIP = (0.0, 3.0)
"""Eureka clips every task's human-normalized score to this range before averaging."""


def trimmed_mean(values: Sequence[float] | np.ndarray, proportion: float) -> float:
    """Mean after cutting ``int(proportion * n)`` values from each end of the sorted scores
    (the definition of ``scipy.stats.trim_mean``).

    Args:
        values: Scores (any shape; flattened).
        proportion: Fraction cut from *each* end, in ``[0, 0.5)``.

    Returns:
        The trimmed mean; ``nan`` for no values.
    """
    x = np.sort(np.asarray(values, dtype=float).ravel())
    if x.size == 0:
        return math.nan
    if not 0.0 <= proportion < 0.5:
        raise ValueError("proportion must be in [0, 0.5)")
    cut = int(proportion * x.size)
    return float(np.mean(x[cut : x.size - cut]))


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores (25% trimmed mean).

    Robust to outlier seeds like the median, but uses half of the runs instead of one, so it
    needs fewer seeds for a tight interval (rliable's recommended point estimate).

    Example:
        >>> iqm([0.0, 0.0, 1.0, 1.0])
        0.5
        >>> iqm([10.0, 1.0, 2.0, 3.0, 4.0, -50.0, 5.0, 6.0])
        3.5
    """
    return trimmed_mean(values, 0.25)


def mean(values: Sequence[float] | np.ndarray) -> float:
    """Plain mean (``nan`` for no values)."""
    x = np.asarray(values, dtype=float).ravel()
    return float(x.mean()) if x.size else math.nan


def median(values: Sequence[float] | np.ndarray) -> float:
    """Median (``nan`` for no values)."""
    x = np.asarray(values, dtype=float).ravel()
    return float(np.median(x)) if x.size else math.nan


AGGREGATES: dict[str, Aggregate] = {"iqm": iqm, "mean": mean, "median": median}


def t_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """Mean and half-width of Student's t confidence interval over seeds (width 0 for one
    seed or identical values).

    Example:
        >>> t_interval([1.0, 1.0, 1.0])
        (1.0, 0.0)
    """
    x = np.asarray(values, dtype=float)
    mean_ = float(np.mean(x))
    if len(x) < 2 or float(np.std(x)) == 0.0:
        return mean_, 0.0
    half = _t(confidence, len(x) - 1) * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    return mean_, half if math.isfinite(half) else 0.0


@functools.cache
def _t(confidence: float, dof: int) -> float:
    """The two-sided Student-t quantile of ``confidence`` with ``dof`` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


@functools.cache
def _z(confidence: float) -> float:
    """The two-sided standard-normal quantile of ``confidence``."""
    from scipy import stats

    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate ``successes / n`` (Wilson 1927).

    Unlike the normal approximation it stays inside ``[0, 1]`` and is not degenerate at 0 or
    n successes, which is where search decisions usually are (``(0.0, 1.0)`` for ``n == 0``).

    Example:
        >>> low, high = wilson_interval(0, 20)
        >>> (low, round(high, 3))
        (0.0, 0.161)
        >>> [round(v, 3) for v in wilson_interval(4, 20)]
        [0.081, 0.416]
        >>> [round(x, 3) for x in wilson_interval(5, 5)]
        [0.566, 1.0]
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def welch_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value (nan when both samples are constant)."""
    from scipy import stats

    if float(np.std(x)) + float(np.std(y)) == 0.0:
        return float("nan")
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def _columns(
    scores: np.ndarray
    | Sequence[Sequence[float]]
    | Sequence[np.ndarray]
    | Mapping[str, Sequence[float]],
) -> list[np.ndarray]:
    """Per-task score vectors from a ``runs x tasks`` matrix, a list of per-task lists, or a
    ``{task: scores}`` mapping (tasks may have different numbers of runs)."""
    if isinstance(scores, Mapping):
        return [np.asarray(v, dtype=float).ravel() for v in scores.values()]
    if isinstance(scores, np.ndarray):
        matrix = scores.reshape(-1, 1) if scores.ndim == 1 else scores
        return [np.asarray(matrix[:, j], dtype=float) for j in range(matrix.shape[1])]
    return [np.asarray(v, dtype=float).ravel() for v in scores]


def stratified_bootstrap_ci(
    scores: np.ndarray
    | Sequence[Sequence[float]]
    | Sequence[np.ndarray]
    | Mapping[str, Sequence[float]],
    aggregate: Aggregate = iqm,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile confidence interval of ``aggregate`` over all scores.

    Each bootstrap replicate draws, for every task independently, as many runs as that task
    has, with replacement (stratified bootstrap), pools the draws and applies ``aggregate``.

    Args:
        scores: ``runs x tasks`` array (a 1-D array is one task), a list of per-task score
            lists, or a ``{task: scores}`` mapping.
        aggregate: Function of the pooled scores (``iqm``, ``mean``, ``median`` ...).
        reps: Bootstrap replicates.
        confidence: Coverage of the interval (0.95 -> 2.5th and 97.5th percentiles).
        seed: Seed of the numpy generator (results are reproducible).

    Returns:
        ``(estimate, low, high)``; all ``nan`` without scores.

    Example:
        >>> stratified_bootstrap_ci([[0.5, 0.5, 0.5]], reps=100)
        (0.5, 0.5, 0.5)
    """
    columns = [c[~np.isnan(c)] for c in _columns(scores)]
    columns = [c for c in columns if c.size]
    if not columns:
        return math.nan, math.nan, math.nan
    point = aggregate(np.concatenate(columns))
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, c.size, size=(reps, c.size)) for c in columns]
    stats = np.empty(reps)
    for r in range(reps):
        stats[r] = aggregate(np.concatenate([c[d[r]] for c, d in zip(columns, draws, strict=True)]))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(point), float(low), float(high)


def normalized_score(
    method: float, sparse: float, expert: float, *, clip: bool = False
) -> float | None:
    """Eureka's human-normalized score ``(method - sparse) / |expert - sparse|``.

    1 means as good as the expert (human-written) reward, 0 as good as the sparse reward
    (the success indicator alone); ``None`` when the two baselines are equal. ``clip``
    clips to ``[0, 3]`` as Eureka does before averaging tasks.
    """
    scale = abs(expert - sparse)
    if not math.isfinite(scale) or scale < 1e-12 or not math.isfinite(method):
        return None
    value = (method - sparse) / scale
    if clip:
        value = min(max(value, NORMALIZED_CLIP[0]), NORMALIZED_CLIP[1])
    return float(value)


@dataclass
class Interval:
    """An aggregate with its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    n: int
    """Number of scores pooled."""

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }

    def __str__(self) -> str:
        if math.isnan(self.estimate):
            return "-"
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def interval(
    scores: np.ndarray | Sequence[Sequence[float]] | Mapping[str, Sequence[float]],
    aggregate: str = "iqm",
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """:func:`stratified_bootstrap_ci` as an :class:`Interval` (aggregate chosen by name)."""
    columns = _columns(scores)
    n = int(sum(int(np.sum(~np.isnan(c))) for c in columns))
    est, low, high = stratified_bootstrap_ci(
        columns, AGGREGATES[aggregate], reps=reps, confidence=confidence, seed=seed
    )
    return Interval(est, low, high, n)


def score_table(
    results: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    clip: bool = False,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Aggregate the scores (success rates) of several methods over tasks and seeds.

    Args:
        results: ``{task: {method: [score per seed]}}``; the methods ``sparse`` and ``expert``,
            when a task has both, are its baselines for the normalized score.
        clip: Clip per-run normalized scores to ``[0, 3]``.
        method_names: Methods to report (default: every method seen, baselines included).

    Returns:
        ``{"methods": {method: {"score": Interval dict, "normalized": Interval dict or None,
        "tasks": {task: {"scores": [...], "normalized": [...] or None}}}}, "confidence": ...}``.
        Per run, the normalized score uses the means of the task's baselines over seeds.
    """
    names = list(method_names or dict.fromkeys(m for per in results.values() for m in per))
    table: dict[str, Any] = {"confidence": confidence, "reps": reps, "clip": clip, "methods": {}}
    for name in names:
        success: dict[str, list[float]] = {}
        normalized: dict[str, list[float]] = {}
        tasks: dict[str, Any] = {}
        for task, per in results.items():
            if name not in per:
                continue
            runs = [float(s) for s in per[name]]
            success[task] = runs
            entry: dict[str, Any] = {"scores": runs, "normalized": None}
            if "sparse" in per and "expert" in per and per["sparse"] and per["expert"]:
                s, e = mean(per["sparse"]), mean(per["expert"])
                norm = [normalized_score(r, s, e, clip=clip) for r in runs]
                if all(v is not None for v in norm):
                    normalized[task] = [float(v) for v in norm if v is not None]
                    entry["normalized"] = normalized[task]
                entry["baselines"] = {"sparse": s, "expert": e}
            tasks[task] = entry
        table["methods"][name] = {
            "score": interval(success, reps=reps, confidence=confidence, seed=seed).to_dict(),
            "normalized": interval(
                normalized, reps=reps, confidence=confidence, seed=seed
            ).to_dict()
            if normalized
            else None,
            "tasks": tasks,
        }
    return table


def format_table(table: Mapping[str, Any]) -> str:
    """A markdown table of :func:`score_table`'s output (IQM with its CI per method)."""
    pct = round(100 * float(table.get("confidence", 0.95)))
    lines = [
        f"| method | runs | score IQM [{pct}% CI] | normalized IQM [{pct}% CI] |",
        "|---|---|---|---|",
    ]

    def fmt(d: Mapping[str, Any] | None) -> str:
        if not d or d.get("estimate") is None:
            return "-"
        return f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"

    for name, entry in table["methods"].items():
        lines.append(
            f"| {name} | {entry['score']['n']} | {fmt(entry['score'])} | {fmt(entry['normalized'])} |"
        )
    return "\n".join(lines)
