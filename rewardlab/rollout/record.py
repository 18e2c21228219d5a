"""The one-line account of a training's ``rollout.json`` (what stepped the envs and how the
reward program was evaluated), for run summaries and reports.

Example:
    >>> summary({"backend": "native", "engine": "loop", "num_worlds": 64, "steps": 1000,
    ...          "reward": {"mode": "lifted", "batched_calls": 999, "fallback_steps": 3,
    ...                     "rows_reevaluated": 5, "verifications": 999, "reasons": {}}})
    'native core, loop engine, 64 worlds, 1,000 steps; reward lifted (one call for all worlds), 3 of 999 batched steps evaluated per world, 5 world-steps re-evaluated, 999 re-checks'
"""

from __future__ import annotations

from typing import Any


def summary(record: dict[str, Any]) -> str:
    """One line from a ``rollout.json`` record (``""`` for an empty one)."""
    if not record:
        return ""
    backend = record.get("backend", "?")
    if backend == "multi":  # a multi-task set: one record per member (rewardlab.multitask)
        return "; ".join(
            f"{name}: {summary(r or {})}" for name, r in (record.get("members") or {}).items()
        )
    reward = record.get("reward") or {}
    mode = reward.get("mode", "?")
    if backend == "dummy":
        return f"gymnasium envs (DummyVecEnv), {record.get('num_worlds', '?')} envs; reward {'per world' if mode == 'per_world' else 'of the benchmark'}"
    head = f"{backend} core, {record.get('engine', backend)} engine, {record.get('num_worlds', '?')} worlds, {record.get('steps', 0):,} steps"
    if mode == "env":
        return f"{head}; the benchmark's own reward"
    text = {"batched": "batched as written (one call for all worlds)", "lifted": "lifted (one call for all worlds)",
            "per_world": "per world", "undecided": "per world (undecided)"}.get(mode, mode)  # fmt: skip
    parts = [f"{head}; reward {text}"]
    if reward.get("batched_calls"):
        parts.append(
            f"{reward.get('fallback_steps', 0):,} of {reward['batched_calls']:,} batched steps evaluated per world"
        )
        parts.append(f"{reward.get('rows_reevaluated', 0):,} world-steps re-evaluated")
        parts.append(f"{reward.get('verifications', 0):,} re-checks")
    reasons = reward.get("reasons") or {}
    if mode in ("per_world", "undecided") and reasons:
        parts.append("why: " + "; ".join(f"{m}: {r}" for m, r in reasons.items()))
    return ", ".join(parts)
