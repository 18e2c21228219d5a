"""The evaluation a search decision rests on: enough episodes, with their intervals.

After every rung, :func:`decision_eval` runs the candidate's policy (deterministic, as the
training evaluations do) for ``search.decision_episodes`` (default 20) fresh episodes and
reports the task's success rate with its Wilson interval and the mean progress with its
Student-t interval; :mod:`rewardlab.search.halving` promotes on these intervals. On MuJoCo
locomotion tasks the episodes run together on the batched rollout core (one world per
episode, one policy call per step for all of them), elsewhere one after the other through
the gymnasium env; the result says which (``engine``).

Episode seeds are ``30_000 + seed + i`` (training evaluations use ``10_000 + seed``, the
search's final evaluation ``20_000 + seed``), so a decision is never taken on the episodes
the curve was plotted from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.stats import t_interval, wilson_interval
from rewardlab.tasks.registry import TaskSpec

SEED_OFFSET = 30_000


def core_episodes(
    task: TaskSpec, policy: Any, normalizer: Any, episodes: int, seed: int
) -> tuple[list[bool], list[float]] | None:
    """Success and progress of ``episodes`` episodes run together on the rollout core (one
    world each, stepped until every world has finished its first episode); ``None`` when the
    core does not run ``task``."""
    if task.benchmark != "mujoco":
        return None
    from rewardlab.rollout.core import CoreConfig, RolloutCore

    try:
        core = RolloutCore(task, CoreConfig(num_worlds=episodes, seed=seed))
    except (NotImplementedError, KeyError, ValueError):
        return None
    success = np.zeros(episodes, dtype=bool)
    progress = np.zeros(episodes)
    finished = np.zeros(episodes, dtype=bool)
    try:
        obs = core.reset(seed=seed)
        while not finished.all():
            x = normalizer.normalize_obs(obs) if normalizer is not None else obs
            action, _ = policy.predict(x, deterministic=True)
            out = core.step(np.asarray(action))
            new = out.done & ~finished
            success[new], progress[new] = out.success[new], out.progress[new]
            finished |= out.done
            obs = out.obs
    finally:
        core.close()
    return [bool(v) for v in success], [float(v) for v in progress]


def summarize_decision(
    success: list[bool], progress: list[float], confidence: float = 0.95
) -> dict[str, Any]:
    """``success`` (rate) and ``progress`` (mean) with ``*_low`` / ``*_high`` bounds: Wilson
    for the rate, Student's t (clipped to [0, 1]) for the mean progress."""
    n = len(success)
    wins = int(sum(success))
    s_low, s_high = wilson_interval(wins, n, confidence)
    p_mean, p_half = t_interval(progress, confidence) if progress else (0.0, 0.0)
    return {
        "episodes": n, "successes": wins, "success": wins / n if n else 0.0,
        "success_low": round(s_low, 4), "success_high": round(s_high, 4),
        "progress": round(p_mean, 4), "progress_low": round(max(0.0, p_mean - p_half), 4),
        "progress_high": round(min(1.0, p_mean + p_half), 4), "confidence": confidence,
    }  # fmt: skip


def decision_eval(
    task: TaskSpec,
    directory: Path,
    algo_name: str,
    *,
    episodes: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Evaluate the policy trained in ``directory`` for ``episodes`` episodes (see the module
    docstring); :func:`summarize_decision`'s fields plus ``engine`` (``core`` or ``gymnasium``)."""
    from rewardlab.checkpoints import load_policy
    from rewardlab.evaluation import run_episodes

    model, normalizer = load_policy(directory, algo_name)
    first = SEED_OFFSET + seed
    on_core = core_episodes(task, model, normalizer, episodes, first)
    if on_core is not None:
        success, progress = on_core
        engine = "core"
    else:
        results = run_episodes(task, model, episodes=episodes, seed=first, normalizer=normalizer)
        success, progress = [r.success for r in results], [r.progress for r in results]
        engine = "gymnasium"
    return {**summarize_decision(success, progress, confidence), "engine": engine}
