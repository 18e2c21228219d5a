"""The gate's reference rollouts of a task: recorded once, cached, reused for every candidate.

Every task gets (trusted code, this process, the task's real environment):

* ``random``: uniform random actions (``gate.episodes`` rollouts);
* ``zero``: zero actions (``gate.zero_episodes``);
* ``perturbed``: zero actions plus Gaussian noise of std ``gate.perturb_std``
  (``gate.perturbed_episodes``).

Tasks with a scripted expert (MetaWorld: ``metaworld.policies``, via
:func:`rewardlab.tasks.metaworld.scripted_policy`) also get

* ``demo``: ``gate.demos`` *successful* expert rollouts (variants on which the expert fails
  are skipped, as :func:`demonstrations` does);
* ``noisy_demo``: the expert with action noise of std ``gate.noise_std`` (kept as failures
  only when they did not succeed);
* ``truncated_demo``: the expert for ``gate.truncate_at`` of its time to success, then zero
  actions (near misses; kept when they did not succeed).

There every rollout runs the task's whole episode (``task.horizon`` steps; the expert goes on
acting after its success, as a trained policy would), so returns compare like with like: equal
lengths, and success held as long as training would hold it. Without a scripted expert (the
MuJoCo locomotion tasks) rollouts run up to ``gate.steps`` steps or until the env ends the
episode, and the gate checks finiteness, scale and variation only.

Actions are recorded as the environment executes them (clipped to the action space), with the
environment's own reward of each step. The evaluation file also holds a **neutral-action copy**
of every rollout (the same states, every action zero): a reward's preference between states is
read there, so that a ``-w * norm(action)`` term does not punish the scripted expert's
full-effort actions that a trained policy need not copy.

The rollouts are kept per process and written to ``gate.cache_dir`` (``.npz``, keyed by the task,
these settings and the simulator versions), which is also the file the evaluation child reads.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.reward.trajectories import Rollout, load_rollouts, record_rollout, save_rollouts
from rewardlab.tasks.registry import TaskSpec
from rewardlab.workers.confined import program_env
from rewardlab.wrappers import make_env

DEMO_KIND = "demo"
"""Kind of the successful expert rollouts (the "successful" side of the ranking)."""
NEUTRAL = "neutral/"
"""Kind prefix of the neutral-action copies of the rollouts in the evaluation file."""
ROLLOUT_FIELDS = (
    "seed", "steps", "episodes", "zero_episodes", "perturbed_episodes", "perturb_std", "demos",
    "noisy_demos", "noise_std", "truncate_at",
)  # fmt: skip
"""The gate settings that shape the rollouts (and their cache key)."""


@dataclass
class ReferenceRollouts:
    """A task's reference rollouts (see the module docstring)."""

    recorded: list[Rollout]
    """Every rollout in the evaluation file: the rollouts, then their neutral-action copies."""
    path: Path
    """The ``.npz`` the evaluation child reads."""
    has_demos: bool
    """The task has a scripted expert and ``demo`` rollouts."""
    length: int | None
    """The common rollout length on demonstration tasks."""
    notes: list[str] = field(default_factory=list)
    """What the rollouts are (for the gate's report)."""
    record_s: float = 0.0
    """Time it took to record them (0 when loaded from the disk cache)."""

    @property
    def rollouts(self) -> list[Rollout]:
        """The rollouts as recorded (actions as executed)."""
        return [r for r in self.recorded if not r.kind.startswith(NEUTRAL)]

    @property
    def neutral(self) -> list[Rollout]:
        """The same rollouts with every action replaced by the neutral one (in the same order)."""
        return [r for r in self.recorded if r.kind.startswith(NEUTRAL)]

    def split(self, per_rollout: list[Any]) -> tuple[list[Any], list[Any]]:
        """Values given per rollout of the evaluation file (in its order) -> ``(for the rollouts
        as recorded, for their neutral-action copies)``."""
        if len(per_rollout) != len(self.recorded):
            raise ValueError(f"{len(per_rollout)} values for {len(self.recorded)} rollouts")
        plain = [
            v
            for v, r in zip(per_rollout, self.recorded, strict=True)
            if not r.kind.startswith(NEUTRAL)
        ]
        neutral = [
            v for v, r in zip(per_rollout, self.recorded, strict=True) if r.kind.startswith(NEUTRAL)
        ]
        return plain, neutral

    def kinds(self) -> dict[str, int]:
        """Number of rollouts of each kind (as recorded)."""
        out: dict[str, int] = {}
        for r in self.rollouts:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out


REPLAYABLE = ("mujoco", "metaworld")
"""Benchmarks whose states the gate's child process can restore (MuJoCo ``MjData``); on others
(ManiSkill's SAPIEN scenes) the gate runs the static and smoke checks only, and says so."""

_MEMO: dict[str, ReferenceRollouts] = {}
_TMP: list[Path] = []


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("mujoco", "gymnasium", "metaworld"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "-"
    return out


def cache_key(task: TaskSpec, settings: Any) -> str:
    """Content hash of what determines the rollouts: task, rollout settings, versions."""
    payload = {
        "task": task.to_dict(), "settings": {k: getattr(settings, k) for k in ROLLOUT_FIELDS},
        "versions": _versions(), "format": 2,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :20
    ]


def _scratch_dir() -> Path:
    if not _TMP:
        path = Path(tempfile.mkdtemp(prefix="rewardlab-gate-"))
        _TMP.append(path)
        atexit.register(shutil.rmtree, path, True)
    return _TMP[0]


def _expert(task: TaskSpec) -> Any | None:
    if not task.card.startswith("metaworld/"):
        return None
    from rewardlab.tasks.metaworld import scripted_policy

    return scripted_policy(task)


def _expert_action(policy: Any, obs: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # "Constant(s) may be too high": the policies' own note
        warnings.simplefilter("ignore")
        return np.asarray(policy.get_action(obs), dtype=np.float32)


def record_reference(
    task: TaskSpec, settings: Any
) -> tuple[list[Rollout], bool, int | None, list[str]]:
    """Record the reference rollouts of ``task`` (uncached; see the module docstring).

    Returns:
        ``(rollouts, has_demos, common length or None, notes)``; ``rollouts`` ends with the
        neutral-action copy of every rollout (:func:`with_neutral_actions`).
    """

    s = settings
    env = make_env(task)
    try:
        space: Any = env.action_space
        low, high = (
            np.asarray(space.low, dtype=np.float32),
            np.asarray(space.high, dtype=np.float32),
        )
        zero = neutral_action(space)
        rollouts: list[Rollout] = []
        notes: list[str] = []
        expert = _expert(task)
        length: int | None = None
        horizon = int(task.horizon)
        if expert is not None and s.demos > 0:
            demos: list[Rollout] = []
            for i in range(3 * int(s.demos)):
                if len(demos) == int(s.demos):
                    break
                demo = record_rollout(env, lambda o, t: _expert_action(expert, o), seed=int(s.seed) + i,
                                      steps=horizon, kind=DEMO_KIND)  # fmt: skip
                if demo.success:
                    demos.append(demo)
            if demos:
                length = min(d.length for d in demos)
                firsts = [int(d.first_success or 0) for d in demos]
                for demo, first in zip(demos, firsts, strict=True):
                    rollouts.append(demo)
                    cut = int(float(s.truncate_at) * first)

                    def stop_early(o: np.ndarray, t: int, cut: int = cut) -> np.ndarray:
                        return _expert_action(expert, o) if t < cut else zero

                    truncated = record_rollout(
                        env, stop_early, seed=demo.seed, steps=length, kind="truncated_demo"
                    )
                    if not truncated.success:
                        rollouts.append(truncated)
                rng = np.random.default_rng(int(s.seed))
                for j in range(int(s.noisy_demos)):
                    seed = demos[j % len(demos)].seed

                    def noisy(o: np.ndarray, t: int) -> np.ndarray:
                        a = _expert_action(expert, o) + rng.normal(
                            0.0, float(s.noise_std), size=zero.shape
                        )
                        return np.clip(a, low, high).astype(np.float32)

                    rollout = record_rollout(env, noisy, seed=seed, steps=length, kind="noisy_demo")
                    if not rollout.success:
                        rollouts.append(rollout)
                notes.append(
                    f"{len(demos)} successful scripted-expert demonstrations (first success at steps "
                    f"{min(firsts)}-{max(firsts)}, then the expert goes on acting); every rollout {length} steps "
                    "(the task's episode), actions clipped to the action space as the environment executes them"
                )
            else:
                notes.append(
                    f"the scripted expert succeeded in none of {3 * int(s.demos)} tries: no demonstrations"
                )
        elif expert is None:
            notes.append("no scripted expert for this task: no demonstrations, so no preference check; "
                         "states from random, zero-action and perturbed zero-action rollouts")  # fmt: skip
        steps = length if length is not None else min(horizon, int(s.steps))
        base = int(s.seed) + 1000
        space.seed(base)
        for j in range(int(s.episodes)):
            rollouts.append(
                record_rollout(
                    env, lambda o, t: space.sample(), seed=base + j, steps=steps, kind="random"
                )
            )
        for j in range(int(s.zero_episodes)):
            rollouts.append(
                record_rollout(
                    env, lambda o, t: zero, seed=base + 100 + j, steps=steps, kind="zero"
                )
            )
        noise = np.random.default_rng(base)
        for j in range(int(s.perturbed_episodes)):
            rollouts.append(record_rollout(
                env, lambda o, t: np.clip(zero + noise.normal(0.0, float(s.perturb_std), size=zero.shape), low, high),
                seed=base + 200 + j, steps=steps, kind="perturbed",
            ))  # fmt: skip
    finally:
        env.close()
    rollouts = [r for r in rollouts if r.length > 0]
    return (
        rollouts + with_neutral_actions(rollouts, zero),
        any(r.kind == DEMO_KIND for r in rollouts),
        length,
        notes,
    )


def neutral_action(space: Any) -> np.ndarray:
    """The action that asks for nothing: zero, clipped into a ``Box``'s bounds."""
    low, high = np.asarray(space.low, dtype=np.float32), np.asarray(space.high, dtype=np.float32)
    return np.clip(np.zeros(space.shape, dtype=np.float32), low, high)


def with_neutral_actions(rollouts: list[Rollout], action: np.ndarray) -> list[Rollout]:
    """Copies of ``rollouts`` whose every action is ``action`` (kind prefixed with
    :data:`NEUTRAL`): the same states, so that a reward's preference between states is measured
    without the actions that happened to lead there (a scripted expert's full-effort actions, a
    random policy's)."""
    return [
        replace(
            r,
            kind=NEUTRAL + r.kind,
            actions=np.broadcast_to(action, r.actions.shape).astype(np.float32),
        )
        for r in rollouts
    ]


def reference_rollouts(
    task: TaskSpec, settings: Any, cache_dir: str | Path | None = None
) -> ReferenceRollouts:
    """The reference rollouts of ``task`` under the gate ``settings``: from this process's
    memory, else from ``cache_dir``, else recorded (and written there).

    Args:
        task: The task.
        settings: A :class:`rewardlab.config.GateConfig` (or anything with its fields).
        cache_dir: Where the ``.npz`` files live (``None``: a temporary folder of this process).
    """
    key = cache_key(task, settings)
    folder = Path(cache_dir).expanduser() if cache_dir else _scratch_dir()
    path = folder / f"{task.name.replace('/', '__')}-{key}.npz"
    memo = _MEMO.get(str(path))  # per file: a run asking for its own cache_dir gets the file there
    if memo is not None and memo.path.exists():
        return memo
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            loaded = load_rollouts(path)
            ref = ReferenceRollouts(
                loaded, path, bool(meta["has_demos"]), meta["length"], list(meta["notes"])
            )
            _MEMO[str(path)] = ref
            return ref
        except (OSError, ValueError, KeyError):
            pass  # unreadable: record again
    started = time.monotonic()
    rollouts, has_demos, length, notes = record_reference(task, settings)
    if not rollouts:
        raise RuntimeError(f"{task.name}: no reference rollout could be recorded")
    save_rollouts(path, rollouts)
    meta_path.write_text(
        json.dumps({"task": task.name, "has_demos": has_demos, "length": length, "notes": notes})
    )
    ref = ReferenceRollouts(
        rollouts, path, has_demos, length, notes, round(time.monotonic() - started, 3)
    )
    _MEMO[str(path)] = ref
    return ref


# --------------------------------------------------------------------------- demonstrations


@dataclass
class Demonstration:
    """One rollout of a scripted expert policy."""

    task: str
    seed: int
    """``reset(seed=...)`` of the episode (it selects the object/goal variant)."""
    observations: np.ndarray
    """``(T + 1, 39)``: the reset observation, then one per step."""
    actions: np.ndarray
    """``(T, 4)``."""
    rewards: np.ndarray
    """``(T,)``: the reward program's reward (the benchmark's own without a program)."""
    env_rewards: np.ndarray
    """``(T,)``: the benchmark's own (expert) reward."""
    successes: np.ndarray
    """``(T,)``: the task's success metric after each step (latched within the episode)."""
    components: dict[str, np.ndarray] = field(default_factory=dict)
    """``(T,)`` per named component of the reward program."""

    @property
    def success(self) -> bool:
        return bool(len(self.successes) and self.successes[-1])

    @property
    def length(self) -> int:
        return len(self.actions)


def demonstrations(
    task: Any,
    episodes: int = 1,
    *,
    seed: int = 0,
    program: Any = None,
    until_success: bool = True,
    extra_steps: int = 0,
    successful_only: bool = True,
    max_attempts: int | None = None,
    action_noise: float = 0.0,
) -> list[Demonstration]:
    """Roll out ``task``'s scripted expert policy; return ``episodes`` demonstrations.

    Args:
        seed: episode ``i`` of the attempts resets with ``seed + i``.
        program: a :class:`~rewardlab.reward.program.RewardProgram` to evaluate along the way
            (``rewards`` and ``components``; run in a confined worker,
            :func:`rewardlab.workers.confined.program_env`); ``None`` keeps the benchmark's
            reward.
        until_success: stop ``extra_steps`` steps after the first success (else run the horizon).
        successful_only: skip failed rollouts (the scripted policies fail on a few variants).
        max_attempts: rollouts to try at most (default ``3 * episodes``).
        action_noise: standard deviation of Gaussian noise added to every scripted action
            (then clipped to ``[-1, 1]``; drawn from the episode's seed); the recorded actions
            are the executed ones. Noisy variants cover states off the expert's path.

    Raises:
        KeyError: the task has no scripted policy.
        RuntimeError: fewer than ``episodes`` successful rollouts within ``max_attempts``.
    """
    from rewardlab.tasks.metaworld import env_name_of, scripted_policy

    policy = scripted_policy(task)
    if policy is None:
        raise KeyError(f"{task.name}: MetaWorld has no scripted policy for {env_name_of(task)}")
    env = program_env(task, program)
    out: list[Demonstration] = []
    attempts = max_attempts if max_attempts is not None else 3 * episodes
    try:
        for attempt in range(attempts):
            if len(out) == episodes:
                break
            demo = _rollout(
                env, task, policy, seed + attempt, until_success, extra_steps, action_noise
            )
            if demo.success or not successful_only:
                out.append(demo)
    finally:
        env.close()
    if len(out) < episodes:
        raise RuntimeError(
            f"{task.name}: only {len(out)} of {attempts} scripted rollouts succeeded "
            f"(wanted {episodes})"
        )
    return out


def _rollout(
    env: Any,
    task: Any,
    policy: Any,
    seed: int,
    until_success: bool,
    extra_steps: int,
    action_noise: float = 0.0,
) -> Demonstration:
    obs, _ = env.reset(seed=seed)
    noise = np.random.default_rng(seed)
    observations, actions, rewards, env_rewards, successes = [obs], [], [], [], []
    components: dict[str, list[float]] = {}
    left: int | None = None
    done = False
    while not done and left != 0:
        with warnings.catch_warnings():  # "Constant(s) may be too high": the policies' own note
            warnings.simplefilter("ignore")
            action = np.asarray(policy.get_action(obs), dtype=np.float32)
        if action_noise > 0:
            action = np.clip(
                action + action_noise * noise.standard_normal(action.shape), -1, 1
            ).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        env_rewards.append(float(info.get("reward/env", reward)))
        successes.append(bool(info["success"]))
        for key, value in info.items():
            if key.startswith("reward/") and key not in ("reward/env", "reward/error"):
                components.setdefault(key[7:], []).append(float(value))
        if left is not None:
            left -= 1
        elif until_success and info["success"]:
            left = extra_steps
    return Demonstration(
        task=task.name, seed=seed, observations=np.array(observations),
        actions=np.array(actions, dtype=np.float32).reshape(-1, 4),
        rewards=np.array(rewards), env_rewards=np.array(env_rewards),
        successes=np.array(successes, dtype=bool),
        components={k: np.array(v) for k, v in components.items()},
    )  # fmt: skip
