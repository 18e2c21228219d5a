"""Exploration: roll out a reward version and record everything the error detectors read.

Two kinds, as in E2CL:

* **teacher-free** (:func:`explore_free`): the current learner under the current reward, once
  as it is and then with perturbations (Gaussian noise on its actions, or on the observations
  it sees), so that behaviour just off the learner's own path is seen too;
* **teacher-guided** (:func:`teacher_demos`, :func:`explore_branches`): the expert's
  trajectories (MetaWorld's scripted policies through
  :func:`rewardlab.reference_rollouts.demonstrations`, or a trained teacher policy) with the
  reward evaluated along them (does it rise as the expert makes progress?), and *branches*:
  the simulator is brought to the expert's state at step ``t`` (by replaying the expert's
  actions from the same reset seed; simulation is deterministic, so this restores the state
  exactly) and the learner takes over for a few steps (does it finish, does it make progress,
  what does the reward say?).

Every :class:`Trajectory` holds per-step rewards, reward components, reward-program errors,
success, task progress, actions and physical probes: the body's height / tilt / up axis named
by the task's fall limits (:func:`body_limits`), and for manipulation the object's height and
distance to the goal. Frames and clips are rendered afterwards, only for the steps a finding
points at (:func:`render_frames`, :func:`render_clip`), by replaying the recorded actions.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rewardlab.config import E2CLConfig
from rewardlab.reward.program import RewardProgram
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import read_path, wrap_angle
from rewardlab.workers.confined import program_env
from rewardlab.wrappers import RewardWrapper, env_proxy, make_env

Actor = Callable[[np.ndarray], np.ndarray]
"""Maps a raw observation to an action."""

PERTURBATIONS = ("none", "action", "observation")


# --------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class Limit:
    """One limit of a healthy body, from the task's success spec: ``min`` (the value must stay
    at least ``threshold``: height, up axis) or ``tilt`` (the wrapped angle must stay within
    ``threshold`` of upright)."""

    name: str
    path: str
    kind: str
    threshold: float

    def margin(self, value: float) -> float:
        """How far inside the limit ``value`` is (negative: beyond it)."""
        if self.kind == "tilt":
            return self.threshold - abs(wrap_angle(value))
        return value - self.threshold


FALL_LIMITS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "displacement": (("height", "height", "min_height", "min"), ("tilt", "upright", "max_tilt", "tilt"),
                     ("up", "up", "min_up", "min")),
    "jump": (("tilt", "upright", "max_tilt", "tilt"),),
    "hold_height": (("up", "up", "min_up", "min"),),
    "oscillate": (("up", "up", "min_up", "min"),),
}  # fmt: skip
"""Per success metric: ``(probe name, path parameter, threshold parameter, kind)`` of the
parameters that mean "fallen" (flips and manipulation have none: tipping is their goal or
there is no body). A target height (stand up, lie down) is not a fall limit."""


def body_limits(task: TaskSpec) -> list[Limit]:
    """The task's fall limits (empty if its success metric has none)."""
    params = dict(task.success.params)
    limits = []
    for name, path_key, threshold_key, kind in FALL_LIMITS.get(task.success.metric, ()):
        if params.get(path_key) and threshold_key in params:
            threshold = float(params[threshold_key])
            if math.isfinite(threshold) and not (kind == "tilt" and threshold >= math.pi):
                limits.append(Limit(name, str(params[path_key]), kind, threshold))
    return limits


@dataclass(frozen=True)
class SceneProbe:
    """Where a manipulation card keeps the hand, the object and the goal (``self.`` paths)."""

    hand: str
    obj: str
    goal: str
    goal_kind: str = "position"
    """As the offline writer reads the card (:func:`rewardlab.generators.offline.describe_scene`):
    ``position`` (``goal`` is where the object goes), ``height`` (``goal`` is a height: the
    object's centre should be at ``goal + half_size``) or ``on`` (``goal`` is another object's
    position: stack on top of it)."""
    half_size: str | None = None


def scene_probe(task: TaskSpec) -> SceneProbe | None:
    """The manipulation view of ``task``'s card (``None`` for locomotion cards)."""
    from rewardlab.generators.offline import describe_scene

    scene = describe_scene(task.load_card())
    if scene is None:
        return None
    return SceneProbe(
        f"{scene.robot}.{scene.ee}", f"{scene.objects[0]}.{scene.position}", scene.goal,
        goal_kind=scene.goal_kind, half_size=scene.half_size,
    )  # fmt: skip


def _vector(me: Any, path: str) -> np.ndarray:
    value = me
    for part in path.split("."):
        value = getattr(value, part)
    return np.asarray(value, dtype=np.float64)


class Probes:
    """Reads the physical quantities of one env each step (see the module docs)."""

    def __init__(self, env: gym.Env, task: TaskSpec) -> None:
        self.me = env_proxy(env, task)
        self.limits = body_limits(task)
        self.scene = scene_probe(task)
        self._start: np.ndarray | None = None
        self._d0 = 1.0

    def _goal(self, obj: np.ndarray) -> np.ndarray:
        """Where the object should be (the same reading of the card as the offline writer's)."""
        assert self.scene is not None
        goal = _vector(self.me, self.scene.goal)
        if self.scene.goal_kind == "position" or self.scene.half_size is None:
            return goal
        half = float(_vector(self.me, self.scene.half_size))
        if self.scene.goal_kind == "height":
            return np.array([obj[0], obj[1], float(goal) + half])
        return goal + np.array([0.0, 0.0, 2.0 * half])  # "on"

    def reset(self) -> None:
        if self.scene is not None:
            obj = _vector(self.me, self.scene.obj)
            self._start = obj
            self._d0 = max(float(np.linalg.norm(self._goal(obj) - obj)), 1e-6)

    def read(self) -> dict[str, float]:
        out = {limit.name: read_path(self.me, limit.path) for limit in self.limits}
        if self.scene is not None:
            obj = _vector(self.me, self.scene.obj)
            goal = self._goal(obj)
            hand = _vector(self.me, self.scene.hand)
            d = float(np.linalg.norm(goal - obj))
            start = self._start if self._start is not None else obj
            out.update({
                "object_z": float(obj[2]), "object_start_z": float(start[2]),
                "object_goal_distance": d, "object_moved": float(np.linalg.norm(obj - start)),
                "goal_progress": float(np.clip(1.0 - d / self._d0, 0.0, 1.0)),
                "hand_object_distance": float(np.linalg.norm(hand - obj)), "hand_z": float(hand[2]),
            })  # fmt: skip
        return out


# --------------------------------------------------------------------------- trajectories


@dataclass
class Trajectory:
    """One recorded rollout. Step ``i`` is the state after action ``i``."""

    id: str
    """``free/<k>``, ``demo/<k>`` or ``branch/<k>@<t>``."""
    source: str
    """``free``, ``demo`` or ``branch``."""
    seed: int
    """The ``reset(seed=...)`` it started from."""
    perturbation: str = "none"
    prefix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """Actions replayed after the reset before this trajectory's own (a branch's demo prefix)."""
    actions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    rewards: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """The reward program's reward (0 where it failed)."""
    env_rewards: np.ndarray = field(default_factory=lambda: np.zeros(0))
    components: dict[str, np.ndarray] = field(default_factory=dict)
    """Per component; NaN on steps where the program failed."""
    errors: list[str | None] = field(default_factory=list)
    """The reward program's failure on each step (``None``: it worked)."""
    success: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    progress: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """The task metric's progress (0..1)."""
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    terminated: bool = False

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def succeeded(self) -> bool:
        return bool(self.success.any())

    @property
    def start(self) -> int:
        """Index of this trajectory's first action among all actions since the reset."""
        return len(self.prefix)

    def task_progress(self) -> np.ndarray:
        """Progress toward the goal per step: the object's for manipulation (the benchmark's
        success flag has no graded progress), else the task metric's."""
        return self.probes.get("goal_progress", self.progress)

    def summary(self) -> dict[str, Any]:
        """Scalars for ``exploration.json``."""
        return {
            "id": self.id, "source": self.source, "seed": self.seed, "perturbation": self.perturbation,
            "start": self.start, "length": self.length, "success": self.succeeded,
            "terminated": self.terminated, "reward_return": float(self.rewards.sum()),
            "final_progress": float(self.task_progress()[-1]) if self.length else 0.0,
            "reward_errors": sum(e is not None for e in self.errors),
        }  # fmt: skip


class _Recorder:
    """Steps one env and records a :class:`Trajectory`'s per-step lists."""

    def __init__(self, env: gym.Env, task: TaskSpec) -> None:
        self.env = env
        self.probes = Probes(env, task)
        self.program_env = env if isinstance(env, RewardWrapper) else None

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        self.probes.reset()
        return np.asarray(obs)

    def step(self, action: np.ndarray, out: dict[str, Any] | None) -> tuple[np.ndarray, bool, bool]:
        """One step; appends to ``out`` (``None``: replay without recording). Returns
        ``(obs, terminated, truncated)``."""
        before = (
            Counter(self.program_env.error_counts)
            if self.program_env is not None and out is not None
            else None
        )
        obs, reward, terminated, truncated, info = self.env.step(action)
        if out is not None:
            error = None
            if before is not None and self.program_env is not None and info.get("reward/error"):
                changed = [
                    k for k, n in self.program_env.error_counts.items() if n > before.get(k, 0)
                ]
                error = changed[0] if changed else "reward program failed"
            out["errors"].append(error)
            out["actions"].append(np.asarray(action, dtype=np.float64).reshape(-1))
            out["rewards"].append(float(reward))
            out["env_rewards"].append(float(info.get("reward/env", reward)))
            out["success"].append(bool(info.get("success", False)))
            out["progress"].append(float(info.get("task/progress", 0.0)))
            n = len(out["rewards"]) - 1
            for key, value in info.items():
                if key.startswith("reward/") and key not in ("reward/env", "reward/error"):
                    out["components"].setdefault(key[7:], [math.nan] * n).append(float(value))
            for series in out["components"].values():
                if len(series) == n:
                    series.append(math.nan)  # the program failed on this step
            for key, value in self.probes.read().items():
                out["probes"].setdefault(key, []).append(value)
        return np.asarray(obs), bool(terminated), bool(truncated)


def _new_record() -> dict[str, Any]:
    return {"errors": [], "actions": [], "rewards": [], "env_rewards": [], "success": [],
            "progress": [], "components": {}, "probes": {}}  # fmt: skip


def _trajectory(
    record: dict[str, Any], terminated: bool, prefix: np.ndarray, **kwargs: Any
) -> Trajectory:
    width = prefix.shape[1] if prefix.ndim == 2 and prefix.size else 0
    actions = np.array(record["actions"]) if record["actions"] else np.zeros((0, width))
    return Trajectory(
        prefix=prefix, actions=actions, rewards=np.array(record["rewards"]),
        env_rewards=np.array(record["env_rewards"]),
        components={k: np.array(v) for k, v in record["components"].items()},
        errors=list(record["errors"]), success=np.array(record["success"], dtype=bool),
        progress=np.array(record["progress"]),
        probes={k: np.array(v) for k, v in record["probes"].items()}, terminated=terminated, **kwargs,
    )  # fmt: skip


def _clip(action: np.ndarray, space: gym.Space) -> np.ndarray:
    if isinstance(space, gym.spaces.Box):
        return np.clip(action, space.low, space.high)
    return action


def rollout(
    env: gym.Env,
    task: TaskSpec,
    actor: Actor,
    *,
    seed: int,
    id: str,
    source: str,
    prefix: np.ndarray | None = None,
    max_steps: int | None = None,
    perturbation: str = "none",
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    stop_after_success: int | None = None,
) -> Trajectory:
    """Reset ``env`` with ``seed``, replay ``prefix`` (not recorded), then let ``actor`` act.

    Args:
        env: An env from :func:`rewardlab.wrappers.make_env` (with the program to evaluate).
        perturbation: ``none``, ``action`` (Gaussian noise of ``noise`` times the half range
            added to each action, then clipped) or ``observation`` (the actor sees
            ``obs + N(0, noise * (|obs| + 0.1))``).
        stop_after_success: stop this many steps after the first success (``None``: run on).
    """
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; use one of {PERTURBATIONS}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    recorder = _Recorder(env, task)
    obs = recorder.reset(seed)
    prefix = (
        np.zeros((0, int(np.prod(env.action_space.shape or (0,)))))
        if prefix is None
        else np.asarray(prefix)
    )
    for action in prefix:
        obs, terminated, truncated = recorder.step(action, None)
        if terminated or truncated:
            raise ValueError(f"{id}: the episode ended during the {len(prefix)}-step prefix")
    space = env.action_space
    half_range = (space.high - space.low) / 2 if isinstance(space, gym.spaces.Box) else 1.0
    record = _new_record()
    terminated = truncated = False
    left = None
    steps = 0
    while not (terminated or truncated) and (max_steps is None or steps < max_steps) and left != 0:
        seen = (
            obs + rng.normal(0.0, 1.0, obs.shape) * noise * (np.abs(obs) + 0.1)
            if perturbation == "observation"
            else obs
        )
        action = np.asarray(actor(seen), dtype=np.float64).reshape(-1)
        if perturbation == "action":
            action = action + rng.normal(0.0, 1.0, action.shape) * noise * half_range
        action = _clip(action, space)
        obs, terminated, truncated = recorder.step(action.astype(np.float32), record)
        steps += 1
        if left is not None:
            left -= 1
        elif stop_after_success is not None and record["success"][-1]:
            left = stop_after_success
    return _trajectory(
        record, terminated, prefix, id=id, source=source, seed=seed, perturbation=perturbation
    )


# --------------------------------------------------------------------------- actors


def sb3_actor(model: Any, normalizer: Any = None, deterministic: bool = True) -> Actor:
    """An SB3 policy as an :data:`Actor` (``normalizer``: its ``VecNormalize``, only read)."""

    def act(obs: np.ndarray) -> np.ndarray:
        x = normalizer.normalize_obs(obs) if normalizer is not None else obs
        action, _ = model.predict(x, deterministic=deterministic)
        return np.asarray(action)

    return act


def random_actor(space: gym.Space, seed: int) -> Actor:
    """Uniform random actions in a ``Box`` action space (seeded)."""
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"random_actor needs a Box action space, got {space}")
    rng = np.random.default_rng(seed)
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    return lambda obs: rng.uniform(low, high)


def scripted_actor(task: TaskSpec) -> Actor | None:
    """MetaWorld's scripted expert for ``task`` as an :data:`Actor` (``None`` if it has none)."""
    if task.benchmark != "metaworld":
        return None
    from rewardlab.tasks.metaworld import scripted_policy

    policy = scripted_policy(task)
    if policy is None:
        return None

    def act(obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "Constant(s) may be too high": the policies' own note
            warnings.simplefilter("ignore")
            return np.asarray(policy.get_action(obs), dtype=np.float64)

    return act


def teacher_actor(path: str | Path, algo: str = "auto") -> Actor:
    """A trained SB3 teacher (run directory, version directory or model zip) as an actor."""
    from rewardlab.shaping.teacher import TeacherPotential

    teacher = TeacherPotential.load(path, algo=algo)
    return sb3_actor(teacher.model, teacher.normalizer)


# --------------------------------------------------------------------------- exploration


@dataclass
class Exploration:
    """Everything explored for one reward version."""

    free: list[Trajectory] = field(default_factory=list)
    demos: list[Trajectory] = field(default_factory=list)
    branches: list[Trajectory] = field(default_factory=list)
    random: list[Trajectory] = field(default_factory=list)
    """Random-action rollouts: states that do not depend on the learner, where a property of
    the reward (not of the policy's habits) shows."""
    notes: list[str] = field(default_factory=list)
    """What could not be explored, and why."""
    can_terminate: bool = False
    """Episodes of this task can end early (a fall ends them): a constant bonus pays for
    staying alive there."""

    def all(self) -> list[Trajectory]:
        return [*self.free, *self.demos, *self.branches, *self.random]

    def get(self, trajectory_id: str) -> Trajectory:
        for t in self.all():
            if t.id == trajectory_id:
                return t
        raise KeyError(f"no trajectory {trajectory_id!r}")

    def summary(self) -> dict[str, Any]:
        """What ``exploration.json`` holds."""
        return {"trajectories": [t.summary() for t in self.all()], "notes": list(self.notes),
                "can_terminate": self.can_terminate}  # fmt: skip


def explore_free(
    task: TaskSpec,
    program: RewardProgram | None,
    actor: Actor,
    *,
    episodes: int,
    seed: int,
    perturbations: Sequence[str] = PERTURBATIONS,
    action_noise: float = 0.1,
    obs_noise: float = 0.05,
    max_steps: int | None = None,
    name: str = "free",
) -> list[Trajectory]:
    """Teacher-free exploration: ``episodes`` rollouts of ``actor`` under ``program``, episode
    ``k`` perturbed by ``perturbations[k % len(perturbations)]`` (ids ``<name>/<k>``)."""
    env = program_env(task, program, max_error_rate=1.0)
    try:
        out = []
        for k in range(episodes):
            kind = perturbations[k % len(perturbations)] if perturbations else "none"
            noise = (
                action_noise if kind == "action" else obs_noise if kind == "observation" else 0.0
            )
            out.append(rollout(env, task, actor, seed=seed + k, id=f"{name}/{k}", source=name,
                               perturbation=kind, noise=noise, rng=np.random.default_rng(seed + 7919 * k),
                               max_steps=max_steps))  # fmt: skip
        return out
    finally:
        env.close()


def _replayer(actions: np.ndarray) -> Actor:
    """An actor that plays ``actions`` in order, whatever it sees."""
    it = iter(actions)
    return lambda obs: np.asarray(next(it))


def teacher_demos(
    task: TaskSpec,
    program: RewardProgram | None,
    *,
    episodes: int,
    seed: int,
    teacher: Actor | None = None,
    extra_steps: int = 10,
) -> list[Trajectory]:
    """The expert's trajectories with ``program`` evaluated along them: ``teacher``'s rollouts
    (until ``extra_steps`` after its first success), or without one MetaWorld's scripted
    demonstrations (:func:`rewardlab.reference_rollouts.demonstrations`, replayed here to record
    the probes). ``[]`` when the task has neither."""
    env = program_env(task, program, max_error_rate=1.0)
    try:
        if teacher is not None:
            return [rollout(env, task, teacher, seed=seed + k, id=f"demo/{k}", source="demo",
                            stop_after_success=extra_steps) for k in range(episodes)]  # fmt: skip
        if scripted_actor(task) is None:
            return []
        from rewardlab.reference_rollouts import demonstrations

        demos = demonstrations(task, episodes, seed=seed, extra_steps=extra_steps)
        out = []
        for k, demo in enumerate(demos):
            out.append(rollout(env, task, _replayer(demo.actions), seed=demo.seed, id=f"demo/{k}",
                               source="demo", max_steps=demo.length))  # fmt: skip
        return out
    finally:
        env.close()


def explore_branches(
    task: TaskSpec,
    program: RewardProgram | None,
    actor: Actor,
    demos: Sequence[Trajectory],
    *,
    fractions: Sequence[float] = (0.25, 0.5, 0.75),
    steps: int = 50,
) -> list[Trajectory]:
    """Teacher-guided exploration: from the state of each demonstration at
    ``round(f * length)`` (for each ``f`` in ``fractions``), ``actor`` acts for ``steps``."""
    env = program_env(task, program, max_error_rate=1.0)
    try:
        out = []
        for k, demo in enumerate(demos):
            for f in fractions:
                t = min(max(int(round(f * demo.length)), 0), demo.length - 1)
                prefix = np.concatenate(
                    [demo.prefix.reshape(-1, demo.actions.shape[1]), demo.actions[:t]]
                )
                out.append(rollout(env, task, actor, seed=demo.seed, id=f"branch/{k}@{t}", source="branch",
                                   prefix=prefix, max_steps=steps))  # fmt: skip
        return out
    finally:
        env.close()


def terminates_early(task: TaskSpec) -> bool:
    """Whether ``task``'s env ends episodes when the body is unhealthy (gymnasium's
    ``terminate_when_unhealthy``)."""
    env = make_env(task)
    try:
        return bool(getattr(env.unwrapped, "_terminate_when_unhealthy", False))
    finally:
        env.close()


def explore(
    task: TaskSpec, program: RewardProgram | None, actor: Actor, config: E2CLConfig, *,
    teacher: Actor | None = None,
) -> Exploration:  # fmt: skip
    """Teacher-free episodes, random-action episodes, demonstrations (``teacher``'s or the
    scripted expert's) and branches from them, with the settings of ``config`` (``e2cl.*``)."""
    ex = Exploration()
    ex.free = explore_free(task, program, actor, episodes=config.episodes, seed=config.seed,
                           action_noise=config.action_noise, obs_noise=config.obs_noise)  # fmt: skip
    if config.random_episodes > 0:
        env = make_env(task)
        space = env.action_space
        env.close()
        ex.random = explore_free(task, program, random_actor(space, config.seed), episodes=config.random_episodes,
                                 seed=config.seed + 1000, perturbations=["none"], max_steps=config.random_steps,
                                 name="random")  # fmt: skip
    if config.demos > 0:
        try:
            ex.demos = teacher_demos(
                task, program, episodes=config.demos, seed=config.seed, teacher=teacher
            )
        except (KeyError, RuntimeError) as exc:
            ex.notes.append(f"no demonstrations: {exc}")
        if not ex.demos and not ex.notes:
            ex.notes.append("teacher-guided exploration skipped: the task has no scripted expert and "
                            "no e2cl.teacher was given")  # fmt: skip
    if ex.demos and config.branch_steps > 0:
        ex.branches = explore_branches(task, program, actor, ex.demos, fractions=config.branch_fractions,
                                       steps=config.branch_steps)  # fmt: skip
    ex.can_terminate = any(t.terminated for t in ex.all()) or terminates_early(task)
    return ex


# --------------------------------------------------------------------------- frames


def _render_env(task: TaskSpec, size: int) -> gym.Env:
    from rewardlab.evaluation import _prepare_renderer

    env = make_env(task, None, render_mode="rgb_array", width=size, height=size)
    _prepare_renderer(env)
    return env


def _replay_frames(
    task: TaskSpec, trajectory: Trajectory, steps: set[int], size: int
) -> dict[int, np.ndarray]:
    """Frames of ``trajectory`` after its steps ``steps`` (by replaying its actions)."""
    env = _render_env(task, size)
    frames: dict[int, np.ndarray] = {}
    try:
        env.reset(seed=trajectory.seed)
        actions = [*trajectory.prefix, *trajectory.actions]
        last = max(steps, default=-1) + trajectory.start
        for i, action in enumerate(actions[: last + 1]):
            env.step(np.asarray(action, dtype=np.float32))
            if i - trajectory.start in steps:
                frames[i - trajectory.start] = np.asarray(env.render())
    finally:
        env.close()
    return frames


def render_frames(task: TaskSpec, trajectory: Trajectory, steps: Sequence[int], out_dir: Path, *,
                  prefix: str, size: int = 240) -> list[Path]:  # fmt: skip
    """PNG frames of ``trajectory`` at ``steps`` (``<out_dir>/<prefix>_step<N>.png``)."""
    import imageio.v2 as imageio

    wanted = {int(s) for s in steps if 0 <= int(s) < trajectory.length}
    frames = _replay_frames(task, trajectory, wanted, size)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for step in sorted(frames):
        path = out_dir / f"{prefix}_step{step}.png"
        imageio.imwrite(path, frames[step])
        paths.append(path)
    return paths


def render_clip(task: TaskSpec, trajectory: Trajectory, around: int, path: Path, *, before: int = 30,
                after: int = 15, size: int = 240, fps: float = 20.0) -> Path | None:  # fmt: skip
    """An mp4 of ``trajectory`` from ``before`` steps before step ``around`` to ``after`` steps
    after it (``None`` if the trajectory is empty)."""
    from rewardlab.evaluation import write_video

    if trajectory.length == 0:
        return None
    first, last = max(0, around - before), min(trajectory.length - 1, around + after)
    frames = _replay_frames(task, trajectory, set(range(first, last + 1)), size)
    if not frames:
        return None
    write_video(path, [frames[s] for s in sorted(frames)], fps=fps)
    return path
