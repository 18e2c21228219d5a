"""Adaptive shaping: re-weight a reward's named components from the learner's behaviour.

The continuous analogue of ExpAdaRD's learner-aware re-design (:mod:`rewardlab.shaping.
expadard`): instead of re-solving an LP over ``R = Phi w`` from the learner's policy, the
weights ``w`` of the reward's components are updated periodically from the learner's recent
*episodes*. The informativeness signal is how well a component's per-episode sum tracks the
task's own outcome (final ``task/progress`` plus ``success``) across those episodes:

    rho_i = corr_episodes(sum_t c_i,  progress + success)
    w_i  <- clip(w_i * exp(step_size * (rho_i - threshold)), min_weight, max_weight)

so components that currently separate better from worse episodes gain weight, and constant
("saturated": no variation, rho = 0) or anti-correlated ones decay. No update is made while
the outcome does not vary across the window (no signal).

Recombination. ``ProgramReward`` already returns the *summed* reward ``r``; the component
values ``c_i`` are additive parts of it. The re-weighted reward is

    r' = r + sum_i (w_i - 1) c_i

which equals ``sum_i w_i c_i`` when ``r = sum_i c_i`` and keeps any remainder of ``r`` with
weight 1; a program without components passes through unchanged. With the benchmark's own
(expert) reward, gymnasium MuJoCo's ``info["reward_<name>"]`` terms are the components.

Off-policy learners (SAC) keep old rewards in their replay buffer: :class:`AdaptiveCallback`
records each stored transition's components and relabels the buffer's rewards whenever the
weights change, so every sampled reward uses the current weights.

Example:
    >>> eps = [EpisodeStats({"fwd": x, "alive": 1.0}, progress=x / 10, success=False) for x in range(5)]
    >>> w, rho = update_weights({"fwd": 1.0, "alive": 1.0}, eps, step_size=0.5, threshold=0.1,
    ...                         min_weight=0.1, max_weight=3.0)
    >>> w["fwd"] > 1.0 > w["alive"], rho
    (True, {'alive': 0.0, 'fwd': 1.0})
"""

from __future__ import annotations

import csv
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

RESERVED = frozenset({"env", "error", "shaping", "intrinsic", "novelty"})
"""``reward/<name>`` keys that are not components of the reward program."""


def reward_components(info: dict[str, Any], from_program: bool) -> dict[str, float]:
    """The reward's named components in ``info``: the program's ``reward/<name>`` (minus
    :data:`RESERVED`), or, for the env's own reward, gymnasium's ``reward_<name>`` terms."""
    if from_program:
        return {
            k[7:]: float(v)
            for k, v in info.items()
            if k.startswith("reward/") and k[7:] not in RESERVED
        }
    return {k[7:]: float(v) for k, v in info.items() if k.startswith("reward_")}


@dataclass
class EpisodeStats:
    """One finished episode: per-component sums (unweighted) and the task outcome."""

    sums: dict[str, float]
    progress: float
    success: bool


@dataclass
class AdaptiveState:
    """Shared by all env copies (in-process) and the callback."""

    weights: dict[str, float] = field(default_factory=dict)
    episodes: deque[EpisodeStats] = field(default_factory=lambda: deque(maxlen=32))


class ReweightedReward(gym.Wrapper):
    """``r' = r + sum_i (w_i - 1) c_i`` with the shared weights; collects episode stats.

    Also puts ``info["shaping/components"]`` (the ``c_i``) and ``info["shaping/residual"]``
    (``r' - sum_i w_i c_i``, the part that does not depend on the weights) for relabelling.
    """

    def __init__(self, env: gym.Env, state: AdaptiveState, *, from_program: bool) -> None:
        super().__init__(env)
        self.state, self.from_program = state, from_program
        self._sums: dict[str, float] = {}

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._sums = {}
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        components = reward_components(info, self.from_program)
        weights = self.state.weights
        shaped = float(reward)
        for name, value in components.items():
            shaped += (weights.setdefault(name, 1.0) - 1.0) * value
            self._sums[name] = self._sums.get(name, 0.0) + value
        info["shaping/components"] = components
        info["shaping/residual"] = shaped - sum(weights[n] * v for n, v in components.items())
        if terminated or truncated:
            self.state.episodes.append(EpisodeStats(
                dict(self._sums), float(info.get("task/progress", 0.0)), bool(info.get("success", False)),
            ))  # fmt: skip
            self._sums = {}
        return obs, shaped, terminated, truncated, info


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of ``x`` and ``y``; 0 when either is (numerically) constant."""
    sx, sy = float(np.std(x)), float(np.std(y))
    if sx < 1e-8 * (1.0 + float(np.abs(x).max(initial=0.0))) or sy < 1e-12:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def update_weights(
    weights: dict[str, float],
    episodes: list[EpisodeStats] | deque[EpisodeStats],
    *,
    step_size: float,
    threshold: float,
    min_weight: float,
    max_weight: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """One multiplicative update (module docstring); returns ``(weights, correlations)``.
    Unchanged weights and empty correlations when the outcome does not vary."""
    outcome = np.array([e.progress + float(e.success) for e in episodes])
    if len(episodes) < 2 or float(np.std(outcome)) < 1e-12:
        return dict(weights), {}
    names = sorted(set(weights) | {n for e in episodes for n in e.sums})
    corr = {n: pearson(np.array([e.sums.get(n, 0.0) for e in episodes]), outcome) for n in names}
    new = {
        n: min(max_weight, max(min_weight, weights.get(n, 1.0) * math.exp(step_size * (corr[n] - threshold))))
        for n in names
    }  # fmt: skip
    return new, corr


class AdaptiveCallback(BaseCallback):
    """Every ``update_every`` env steps (at a rollout's end, so a PPO rollout has one set of
    weights): update the weights, log ``shaping/weight/<name>`` and ``shaping/corr/<name>``,
    append them to ``shaping.csv``, and relabel an off-policy replay buffer."""

    def __init__(self, state: AdaptiveState, cfg: Any, run_dir: Path) -> None:
        super().__init__()
        self.state, self.cfg, self.csv = state, cfg, run_dir / "shaping.csv"
        self.last_update = 0
        self._names: list[str] = []
        self._comps: np.ndarray | None = None  # (buffer_size, n_envs, len(names))
        self._resid: np.ndarray | None = None
        if self.csv.exists():  # resume: continue from the last logged weights
            with self.csv.open() as f:
                rows = list(csv.DictReader(f))
            if rows:
                self.last_update = int(rows[-1]["timesteps"])
                prefix = "weight/"
                state.weights.update(
                    {
                        k[len(prefix) :]: float(v)
                        for k, v in rows[-1].items()
                        if k.startswith(prefix) and v
                    }
                )

    def _on_step(self) -> bool:
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is None:
            return True
        infos = self.locals["infos"]
        if not self._names:
            self._names = sorted({n for info in infos for n in info.get("shaping/components", {})})
            if not self._names:
                return True
            shape = (buffer.buffer_size, buffer.n_envs)
            self._comps = np.zeros((*shape, len(self._names)), dtype=np.float32)
            self._resid = np.zeros(shape, dtype=np.float32)
        assert self._comps is not None and self._resid is not None
        pos = buffer.pos  # SB3 stores this step's transition there right after the callback
        for i, info in enumerate(infos):
            comps = info.get("shaping/components", {})
            self._comps[pos, i] = [comps.get(n, 0.0) for n in self._names]
            self._resid[pos, i] = info.get("shaping/residual", 0.0)
        return True

    def relabel(self) -> None:
        """Rewrite the stored rewards with the current weights."""
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is None or self._comps is None or self._resid is None:
            return
        n = buffer.buffer_size if buffer.full else buffer.pos
        w = np.array([self.state.weights.get(name, 1.0) for name in self._names], dtype=np.float32)
        buffer.rewards[:n] = self._resid[:n] + self._comps[:n] @ w

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self.last_update < self.cfg.update_every:
            return
        self.last_update = self.num_timesteps
        if len(self.state.episodes) < self.cfg.min_episodes:
            return
        weights, corr = update_weights(
            self.state.weights, self.state.episodes, step_size=self.cfg.step_size,
            threshold=self.cfg.threshold, min_weight=self.cfg.min_weight, max_weight=self.cfg.max_weight,
        )  # fmt: skip
        self.state.weights.update(weights)
        self.relabel()
        row: dict[str, Any] = {
            "timesteps": self.num_timesteps,
            "episodes": len(self.state.episodes),
        }
        for name in sorted(weights):
            self.logger.record(f"shaping/weight/{name}", weights[name])
            row[f"weight/{name}"] = round(weights[name], 5)
        for name, value in sorted(corr.items()):
            self.logger.record(f"shaping/corr/{name}", value)
            row[f"corr/{name}"] = round(value, 4)
        append_row(self.csv, row)


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append to a CSV whose columns may grow (rewrites the file when they do)."""
    rows: list[dict[str, Any]] = []
    if path.exists():
        with path.open() as f:
            rows = list(csv.DictReader(f))
    rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
