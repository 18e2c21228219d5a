"""Recorded trajectories, and a reward program evaluated on them in the limited child.

Rollouts of a task's real environment are run by trusted code (this process); what is recorded
per step is MuJoCo's integration state (``mj_getState`` with ``mjSTATE_INTEGRATION``: time,
qpos, qvel, actuator activations, mocap poses, ...), the observation, the action *as executed*
(clipped to the action space's bounds, as the environments clip it: MetaWorld's scripted
experts ask for actions up to ~15, which a reward program must not be shown) and the
environment's own reward. An
untrusted reward program is then evaluated on those states **only** in the memory-, CPU- and
time-limited child process of :mod:`rewardlab.reward.smoke` (the same one the spine's smoke
check uses): the child makes the task's environment, resets it with each rollout's reset seed
(which restores what a reset sets outside ``MjData``: MetaWorld's object and goal placement,
its goal position), and for every step restores the recorded state (``mj_setState`` then
``mj_forward``) and calls the program with the recorded action and observation. On MuJoCo and
MetaWorld tasks this reproduces the program's value during the rollout exactly (tested).

Example:
    >>> import numpy as np
    >>> from rewardlab.tasks import get_task
    >>> from rewardlab.wrappers import make_env
    >>> task = get_task("mujoco/hopper_forward")
    >>> env = make_env(task)
    >>> rollout = record_rollout(env, lambda obs, t: np.zeros(3), seed=0, steps=5, kind="zero")
    >>> env.close()
    >>> ev = evaluate_on_rollouts(task, '''
    ... def compute_dense_reward(self, action):
    ...     return self.hopper.top.position_z, {"height": self.hopper.top.position_z}
    ... ''', [rollout])
    >>> ev.ok, ev.rewards[0].shape, sorted(ev.components)
    (True, (5,), ['height'])
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from rewardlab.atomic import atomic_open
from rewardlab.reward.check import WALL_FACTOR, run_child, static_check
from rewardlab.reward.sandbox import Finding
from rewardlab.tasks.registry import TaskSpec

STATE_SPEC = int(mujoco.mjtState.mjSTATE_INTEGRATION)
"""What is recorded per step: everything ``mj_step`` integrates (restoring it reproduces the
simulator's state)."""
FORMAT = 2
"""Version of the ``.npz`` layout written by :func:`save_rollouts`."""

Policy = Callable[[np.ndarray, int], Any]
"""``policy(observation, step) -> action``."""


@dataclass
class Rollout:
    """One recorded episode (or episode prefix) of a task's environment.

    Step ``t`` is the transition taken with ``actions[t]``; ``states[t]``, ``observations[t]``
    and ``successes[t]`` describe the simulator after it (what a reward program sees then).
    """

    kind: str
    """What produced it (``demo``, ``random``, ``zero``, ``perturbed``, ``noisy_demo`` ...)."""
    seed: int
    """The ``env.reset(seed=...)`` the episode started from (it must, for replay)."""
    states: np.ndarray
    """``(T, S)`` MuJoCo integration states (:data:`STATE_SPEC`), float64."""
    observations: np.ndarray
    """``(T, O)`` observations after each step."""
    actions: np.ndarray
    """``(T, A)``."""
    successes: np.ndarray
    """``(T,)`` the task's success metric after each step (latched within the episode)."""
    rewards: np.ndarray
    """``(T,)`` the environment's own reward of each step (the benchmark's expert reward when
    the env was made without a program)."""

    @property
    def length(self) -> int:
        """Number of steps."""
        return len(self.actions)

    @property
    def success(self) -> bool:
        """The episode met the task's success metric."""
        return bool(len(self.successes) and self.successes[-1])

    @property
    def first_success(self) -> int | None:
        """Index of the first successful step (``None`` if none)."""
        hits = np.flatnonzero(self.successes)
        return int(hits[0]) if len(hits) else None


def _mujoco_base(env: gym.Env) -> Any:
    base = env.unwrapped
    if not isinstance(getattr(base, "model", None), mujoco.MjModel) or not isinstance(
        getattr(base, "data", None), mujoco.MjData
    ):
        raise TypeError(
            f"{type(base).__name__} is not a MuJoCo environment: its states cannot be recorded"
        )
    return base


def capture_state(env: gym.Env) -> np.ndarray:
    """The MuJoCo integration state of ``env`` now (float64 vector)."""
    base = _mujoco_base(env)
    state = np.empty(mujoco.mj_stateSize(base.model, STATE_SPEC))
    mujoco.mj_getState(base.model, base.data, state, STATE_SPEC)
    return state


def restore_state(env: gym.Env, state: np.ndarray) -> None:
    """Put ``env``'s simulator into a state recorded by :func:`capture_state` (and recompute
    everything derived from it: body poses, sites ...)."""
    base = _mujoco_base(env)
    mujoco.mj_setState(base.model, base.data, np.asarray(state, dtype=np.float64), STATE_SPEC)
    mujoco.mj_forward(base.model, base.data)


def record_rollout(
    env: gym.Env,
    policy: Policy,
    *,
    seed: int,
    steps: int,
    kind: str,
    stop_after_success: int | None = None,
) -> Rollout:
    """Run ``policy`` on ``env`` from ``env.reset(seed=seed)`` and record every step.

    Args:
        env: The task's environment from :func:`rewardlab.wrappers.make_env` (its
            ``info["success"]`` is recorded; without it, success is ``False``).
        policy: ``policy(observation, step) -> action`` (clipped to a ``Box`` action space's
            bounds before it is executed and recorded).
        seed: Reset seed (recorded: the evaluation child resets with it).
        steps: At most this many steps; the episode also ends when the env terminates or
            truncates it.
        kind: Label stored with the rollout.
        stop_after_success: Stop this many steps after the first success (``None``: never).
    """
    obs, _ = env.reset(seed=seed)
    space = env.action_space
    bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
    states, observations, actions, successes, rewards = [], [], [], [], []
    left: int | None = None
    for t in range(steps):
        action = np.asarray(policy(obs, t), dtype=np.float32)
        if bounds is not None:  # what the env executes (and what a trained policy can send)
            action = np.clip(action, bounds[0], bounds[1]).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        states.append(capture_state(env))
        observations.append(np.asarray(obs, dtype=np.float64).ravel())
        actions.append(action.ravel())
        rewards.append(float(reward))
        success = bool(info.get("success", False))
        successes.append(success)
        if left is not None:
            left -= 1
        elif stop_after_success is not None and success:
            left = stop_after_success
        if terminated or truncated or left == 0:
            break
    return Rollout(
        kind=kind, seed=int(seed), states=np.array(states, dtype=np.float64),
        observations=np.array(observations, dtype=np.float64),
        actions=np.array(actions, dtype=np.float32), successes=np.array(successes, dtype=bool),
        rewards=np.array(rewards, dtype=np.float64),
    )  # fmt: skip


def save_rollouts(path: Path, rollouts: Sequence[Rollout]) -> Path:
    """Write ``rollouts`` to ``path`` (``.npz``, written to a temporary name then renamed, so
    concurrent writers and readers never see half a file)."""
    if not rollouts:
        raise ValueError("no rollouts to save")
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [r.length for r in rollouts])
    with atomic_open(path, "wb") as fh:
        np.savez(
            fh, format=np.array(FORMAT), spec=np.array(STATE_SPEC), offsets=offsets,
            kinds=np.array([r.kind for r in rollouts]), seeds=np.array([r.seed for r in rollouts]),
            states=np.concatenate([r.states for r in rollouts]),
            observations=np.concatenate([r.observations for r in rollouts]),
            actions=np.concatenate([r.actions for r in rollouts]),
            successes=np.concatenate([r.successes for r in rollouts]),
            rewards=np.concatenate([r.rewards for r in rollouts]),
        )  # fmt: skip
    return path


def load_rollouts(path: Path | str) -> list[Rollout]:
    """Read rollouts written by :func:`save_rollouts`."""
    with np.load(path, allow_pickle=False) as data:
        if int(data["format"]) != FORMAT or int(data["spec"]) != STATE_SPEC:
            raise ValueError(
                f"{path}: rollouts of another format ({int(data['format'])}) or state spec"
            )
        off = data["offsets"]
        arrays = {k: data[k] for k in ("states", "observations", "actions", "successes", "rewards")}
        return [
            Rollout(
                kind=str(kind),
                seed=int(seed),
                **{k: v[off[i] : off[i + 1]] for k, v in arrays.items()},
            )
            for i, (kind, seed) in enumerate(zip(data["kinds"], data["seeds"], strict=True))
        ]


@dataclass
class TrajectoryEvaluation:
    """A reward program's outputs on recorded rollouts (from :func:`evaluate_on_rollouts`).

    Attributes:
        rewards: Per rollout, ``(T,)`` per-step rewards; NaN where the call failed.
        components: Per component name, per rollout ``(T,)`` values; NaN where the call failed
            or the program did not return that component.
        findings: What went wrong: static rejection, the child crashing or running out of time,
            and the first failure of each kind on the states (with how many states it hit and
            where it first happened).
        stats: ``states``, ``calls_ok``, ``calls_failed``, ``mean_call_us``, ``elapsed_s``.
    """

    rewards: list[np.ndarray] = field(default_factory=list)
    components: dict[str, list[np.ndarray]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The program ran on every state and returned a finite number each time."""
        return not self.findings


def _settings(cfg: Any, timeout_s: float | None, memory_mb: int | None) -> tuple[float, int]:
    check = getattr(cfg, "check", None) if cfg is not None else None
    gate = getattr(cfg, "gate", None) if cfg is not None else None
    if timeout_s is None:
        timeout_s = float(
            getattr(gate, "timeout_s", None) or getattr(check, "timeout_s", None) or 60.0
        )
    if memory_mb is None:
        memory_mb = int(getattr(check, "memory_mb", None) or 4096)
    return float(timeout_s), int(memory_mb)


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def evaluate_on_rollouts(
    task: TaskSpec,
    source: str,
    rollouts: Sequence[Rollout] | Path | str,
    cfg: Any = None,
    *,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    max_abs: float | None = None,
) -> TrajectoryEvaluation:
    """Evaluate the untrusted program ``source`` on every step of ``rollouts``, sandboxed.

    The program is vetted here (static check only; its code never runs in this process), then
    compiled and run in the limited child, which restores each recorded state (see the module
    docstring).

    Args:
        task: The task the rollouts were recorded on (the same env arguments, so resets with
            the recorded seeds restore the same episodes).
        source: The reward program.
        rollouts: Rollouts, or the path of a file written by :func:`save_rollouts` (cheaper
            when the same rollouts are evaluated for many programs).
        cfg: The run config: ``cfg.gate.timeout_s`` (else ``cfg.check.timeout_s``) and
            ``cfg.check.memory_mb`` are the child's limits, unless given explicitly.
        timeout_s: CPU-time limit of the child (killed after ``WALL_FACTOR`` times as much
            wall-clock time, a backstop).
        memory_mb: Address-space limit of the child.
        max_abs: Per-step magnitude above which a call counts as failed (``None``: no bound,
            so that magnitudes are measured rather than refused; NaN and infinities always
            fail).

    Returns:
        The :class:`TrajectoryEvaluation`.
    """
    timeout_s, memory_mb = _settings(cfg, timeout_s, memory_mb)
    started = time.monotonic()
    program, findings, _ = static_check(task, source)
    if program is None:
        return TrajectoryEvaluation(findings=findings, stats={"elapsed_s": 0.0})
    with tempfile.TemporaryDirectory(prefix="rewardlab-rollouts-") as tmp:
        if isinstance(rollouts, (str, Path)):
            path = Path(rollouts)
        else:
            path = save_rollouts(Path(tmp) / "rollouts.npz", list(rollouts))
        request = {
            "mode": "states", "task": task.to_dict(), "program": program.to_message(), "rollouts": str(path),
            "memory_mb": memory_mb, "cpu_s": timeout_s, "max_abs": max_abs,
        }  # fmt: skip
        report, failure = run_child(
            request, WALL_FACTOR * timeout_s, what="trajectory evaluation", stage="gate"
        )
    elapsed = round(time.monotonic() - started, 3)
    if report is None:
        return TrajectoryEvaluation(
            findings=[failure] if failure else [], stats={"elapsed_s": elapsed}
        )
    out = TrajectoryEvaluation(
        rewards=[_array(r) for r in report.get("rewards", [])],
        components={name: [_array(r) for r in per] for name, per in report.get("components", {}).items()},
        findings=[Finding(str(f["stage"]), str(f["message"]), f.get("line")) for f in report["findings"]],
        stats={**report.get("stats", {}), "elapsed_s": elapsed},
    )  # fmt: skip
    return out
