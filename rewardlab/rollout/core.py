"""The batched rollout core: N worlds of a task stepped together, with auto-reset, the
task's success metric and a reward program, all over arrays with a leading batch dimension.

One :meth:`RolloutCore.step` does, for every world at once and in gymnasium's order:
physics (``frame_skip`` steps, by the configured back-end) -> observation -> the env's own
reward and healthy termination -> time-limit truncation at the task's horizon -> success
metric update -> reward program on the post-step state -> for finished worlds, a copy of the
final observation and a reset (new noisy initial state, metric restarted) so the returned
``obs`` already starts the next episode (SB3's ``VecEnv`` convention).

Example:
    >>> import numpy as np
    >>> from rewardlab.tasks import get_task
    >>> core = RolloutCore(get_task("mujoco/halfcheetah_forward"), CoreConfig(num_worlds=8, seed=0))
    >>> obs = core.reset()
    >>> out = core.step(np.zeros((8, 6), dtype=np.float32))
    >>> obs.shape, out.reward.shape, bool(out.terminated.any()), core.proxy_state()["self.cheetah.top.position_x"].shape
    ((8, 17), (8,), False, (8,))
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from gymnasium.utils import seeding

from rewardlab.config import RolloutConfig
from rewardlab.reward.program import RewardProgram
from rewardlab.rollout.proxies import build_batch_proxy, build_world_proxies, snapshot_paths
from rewardlab.rollout.reward import BatchedReward, BatchReport
from rewardlab.rollout.spec import (
    LocomotionSpec,
    env_reward,
    forward_position,
    healthy,
    observe,
    sample_initial,
    spec_for,
)
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import SuccessInputs, make_metric
from rewardlab.wrappers import RewardFailure, compile_for_task

BACKENDS = ("native", "mjx")


@dataclass
class CoreConfig(RolloutConfig):
    """How the core runs: the ``rollout`` config node (:class:`rewardlab.config.RolloutConfig`:
    engine, threads, MJX precision, reward evaluation) plus what training sets from
    ``train.*``."""

    num_worlds: int = 64
    backend: str = "native"
    """``native`` (MuJoCo C engine, default on CPU) or ``mjx`` (JAX; the GPU path)."""
    seed: int | None = 0
    """World ``i`` draws its initial states from a generator seeded ``seed + i``."""
    max_error_rate: float = 0.05
    """Stop (:class:`RewardFailure`) when more than this fraction of recent reward calls fail."""


@dataclass
class StepResult:
    """Everything one batched step produced; arrays have a leading batch dimension."""

    obs: np.ndarray
    """``(N, D)`` observations; for finished worlds already the first of the next episode."""
    reward: np.ndarray
    """``(N,)`` the program's reward (the env's own if the core has no program)."""
    terminated: np.ndarray
    truncated: np.ndarray
    env_reward: np.ndarray
    components: dict[str, np.ndarray]
    reward_error: np.ndarray
    success: np.ndarray
    """``(N,)`` the task metric's verdict so far in the episode (before any reset)."""
    progress: np.ndarray
    final_obs: np.ndarray
    """``(N, D)`` the observation before auto-reset (equal to ``obs`` where not done)."""

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


@dataclass
class Timings:
    """Cumulative seconds per phase of :meth:`RolloutCore.step` (for profiles)."""

    physics: float = 0.0
    observe: float = 0.0
    reward: float = 0.0
    success: float = 0.0
    reset: float = 0.0
    total: float = 0.0
    steps: int = 0

    def table(self) -> dict[str, float]:
        """Share of step time per phase (``other`` = bookkeeping)."""
        phases = {"physics": self.physics, "observe": self.observe, "reward": self.reward,
                  "success": self.success, "reset": self.reset}  # fmt: skip
        phases["other"] = max(self.total - sum(phases.values()), 0.0)
        return {k: v / self.total if self.total else 0.0 for k, v in phases.items()}


def make_backend(spec: LocomotionSpec, config: CoreConfig) -> Any:
    """Instantiate the configured back-end."""
    if config.backend == "native":
        from rewardlab.rollout.native import NativeBackend

        return NativeBackend(spec, config.num_worlds, engine=config.engine, nthread=config.nthread)
    if config.backend == "mjx":
        from rewardlab.rollout.mjx import MjxBackend

        return MjxBackend(spec, config.num_worlds, x64=config.mjx_precision == "float64")
    raise ValueError(f"unknown back-end {config.backend!r}; known: {BACKENDS}")


class RolloutCore:
    """N worlds of ``task`` with auto-reset, success metric and (optionally) a reward program.

    Args:
        task: the task (env id, env_kwargs, horizon, card, success metric).
        program: reward program source or compiled program; ``None`` keeps the env's reward.
        config: :class:`CoreConfig`.
    """

    def __init__(
        self,
        task: TaskSpec,
        config: CoreConfig | None = None,
        program: str | RewardProgram | None = None,
    ) -> None:
        self.task = task
        self.config = config = config or CoreConfig()
        self.spec = spec = spec_for(task.resolved_env_id(), **dict(task.env_kwargs))
        self.num_worlds = n = int(config.num_worlds)
        self.horizon = int(task.horizon)
        self.backend = make_backend(spec, config)
        self.card = task.load_card()
        self.src = SimpleNamespace(qpos=self.backend.qpos, qvel=self.backend.qvel)
        self.me = build_batch_proxy(self.card, spec.model, self.src, spec.dt)
        self.worlds = build_world_proxies(self.card, spec.model, self.src, spec.dt)
        self.metric = make_metric(task.success.metric, dict(task.success.params), n)
        self.success_inputs = SuccessInputs(
            self.me, n, model=spec.model, qpos=self.backend.qpos, worlds=self.worlds, task=task
        )
        self.program: RewardProgram | None = None
        self.evaluator: BatchedReward | None = None
        if program is not None:
            self.attach_program(
                compile_for_task(program, task) if isinstance(program, str) else program
            )
        self.rngs = [
            seeding.np_random(None if config.seed is None else config.seed + i)[0] for i in range(n)
        ]
        self.obs = np.zeros((n, spec.obs_dim))
        self.steps = np.zeros(n, dtype=np.int64)
        self.timings = Timings()
        self._recent: deque[tuple[int, int]] = deque()
        self._recent_fail = 0
        self._recent_total = 0
        self._needs_reset = True

    def attach_program(self, program: RewardProgram) -> None:
        """Evaluate ``program`` from now on (a confined worker builds the core first, puts up
        the OS wall, then compiles the program and attaches it here)."""
        task, config = self.task, self.config
        self.program = program
        self.evaluator = BatchedReward(
            program, mode=config.reward_mode, verify_every=config.verify_every,
            compile_lifted=lambda src: compile_for_task(src, task, ticks=program.budget.limit, seconds=program.budget.seconds, max_abs=program.max_abs),
        )  # fmt: skip

    # ------------------------------------------------------------------ properties

    @property
    def observation_space(self) -> Any:
        return self.spec.observation_space

    @property
    def action_space(self) -> Any:
        return self.spec.action_space

    @property
    def reward_report(self) -> BatchReport | None:
        """How the reward program is evaluated (``None`` without a program)."""
        return None if self.evaluator is None else self.evaluator.report

    @property
    def error_counts(self) -> dict[str, int]:
        return dict(self.evaluator.error_counts) if self.evaluator is not None else {}

    def rollout_report(self) -> dict[str, Any]:
        """What ran, JSON-ready (``rewards/v<N>/rollout.json``): back-end and engine, worlds and
        steps, the share of step time per phase, and how the reward program was evaluated
        (:meth:`BatchReport.to_dict`: mode, why other modes were refused, fallbacks,
        re-evaluated rows, re-checks) with the most frequent reward failures."""
        cfg, tm, report = self.config, self.timings, self.reward_report
        out: dict[str, Any] = {
            "backend": cfg.backend, "engine": getattr(self.backend, "engine", cfg.backend),
            "num_worlds": self.num_worlds, "steps": tm.steps, "world_steps": tm.steps * self.num_worlds,
            "seconds": round(tm.total, 3), "time_shares": {k: round(v, 4) for k, v in tm.table().items()},
            "verify_every": cfg.verify_every, "infos": cfg.infos,
        }  # fmt: skip
        if cfg.backend == "native":
            out["nthread"] = cfg.nthread
        if cfg.backend == "mjx":
            out["mjx_precision"] = cfg.mjx_precision
        if report is None:
            out["reward"] = {"mode": "env", "summary": "the benchmark's own reward (no program)"}
        else:
            out["reward"] = {**report.to_dict(), "summary": report.summary()}
            out["reward_errors"] = dict(Counter(self.error_counts).most_common(10))
        return out

    def proxy_state(self) -> dict[str, np.ndarray]:
        """The compact representation of every world: ``{"self.hopper.top.position_x": (N,)}``."""
        return snapshot_paths(self.me)

    # ------------------------------------------------------------------ reset

    def seed(self, seed: int | Sequence[int | None] | None) -> None:
        """Re-seed world generators: ``int`` -> world ``i`` gets ``seed + i``."""
        seeds = (
            [None if seed is None else seed + i for i in range(self.num_worlds)]
            if not isinstance(seed, Sequence)
            else list(seed)
        )
        for i, s in enumerate(seeds):
            if s is not None:
                self.rngs[i] = seeding.np_random(s)[0]

    def reset(self, seed: int | Sequence[int | None] | None = None) -> np.ndarray:
        """Reset every world (optionally re-seeding, as ``env.reset(seed=...)``); return obs."""
        if seed is not None:
            self.seed(seed)
        self._reset_worlds(np.ones(self.num_worlds, dtype=bool))
        self._needs_reset = False
        return self.obs.copy()

    def _reset_worlds(self, mask: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        qpos, qvel = sample_initial(self.spec, [self.rngs[i] for i in idx.tolist()])
        self.backend.set_worlds(idx, qpos, qvel)
        self.steps[idx] = 0
        obs = observe(self.spec, self.backend.qpos, self.backend.qvel, self.backend.cfrc_ext)
        self.obs[idx] = obs[idx]
        self.metric.reset(self.success_inputs, mask)

    # ------------------------------------------------------------------ step

    def step(self, action: np.ndarray) -> StepResult:
        """Step every world with ``action (N, nu)``; finished worlds are reset (see module doc)."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        clock = time.perf_counter
        t0 = clock()
        action = np.asarray(action)
        if action.shape != (self.num_worlds, self.spec.nu):
            raise ValueError(
                f"action must have shape {(self.num_worlds, self.spec.nu)}, got {action.shape}"
            )
        spec, sim, tm = self.spec, self.backend, self.timings
        x_before = forward_position(spec, sim.qpos, sim.main_xpos)
        sim.step(np.asarray(action, dtype=np.float64))
        t1 = clock()
        obs = observe(spec, sim.qpos, sim.qvel, sim.cfrc_ext, out=self.obs)
        ok = healthy(spec, sim.qpos, sim.qvel)
        x_after = forward_position(spec, sim.qpos, sim.main_xpos)
        own = env_reward(spec, x_before, x_after, action, ok, sim.cfrc_ext)
        terminated = ~ok if spec.terminate_when_unhealthy else np.zeros(self.num_worlds, dtype=bool)
        self.steps += 1
        truncated = self.steps >= self.horizon
        t2 = clock()
        self.metric.update(self.success_inputs)
        success, progress = (
            np.asarray(self.metric.success, dtype=bool).copy(),
            np.asarray(self.metric.progress, dtype=np.float64),
        )
        t3 = clock()
        if self.evaluator is not None:
            out = self.evaluator(
                self.me,
                self.worlds,
                action,
                obs if self.program is not None and self.program.takes_obs else None,
            )
            reward, components, error = out.reward, out.components, out.error
            self._track_errors(int(error.sum()))
        else:
            reward, components, error = own, {}, np.zeros(self.num_worlds, dtype=bool)
        t4 = clock()
        final_obs = obs.copy()
        done = terminated | truncated
        if done.any():
            self._reset_worlds(done)
        t5 = clock()
        tm.physics += t1 - t0
        tm.observe += t2 - t1
        tm.success += t3 - t2
        tm.reward += t4 - t3
        tm.reset += t5 - t4
        tm.total += t5 - t0
        tm.steps += 1
        return StepResult(
            obs=self.obs.copy(), reward=reward, terminated=terminated, truncated=truncated,
            env_reward=own, components=components, reward_error=error, success=success,
            progress=progress, final_obs=final_obs,
        )  # fmt: skip

    def _track_errors(self, failures: int) -> None:
        n = self.num_worlds
        self._recent.append((failures, n))
        self._recent_fail += failures
        self._recent_total += n
        while self._recent_total - self._recent[0][1] >= self.config.error_window:
            f, t = self._recent.popleft()
            self._recent_fail -= f
            self._recent_total -= t
        if failures and self._recent_fail > self.config.max_error_rate * max(
            self._recent_total, 100
        ):
            assert self.evaluator is not None
            top = self.evaluator.error_counts.most_common(5)
            raise RewardFailure(
                f"reward program failed on {self._recent_fail} of the last {self._recent_total} "
                "world-steps:\n" + "\n".join(f"  {k} (x{c})" for k, c in top)
            )

    def close(self) -> None:
        self.backend.close()
