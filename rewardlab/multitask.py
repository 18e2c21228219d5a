"""Multi-task training: one policy over several tasks, each with its own designed reward.

A **multi-task set** is a task whose ``members`` name registered tasks
(``task=multi/mt10``: MetaWorld MT10; ``task=multi/hopper``: the hopper moving forward, moving
backward and jumping in place; the sets are ``conf/task/multi/*.yaml``). Every member keeps its
own environment, horizon, success metric and reward (its reward program, or the benchmark's
own reward with ``reward_file=env``); ``task.horizon`` of a set, when above 0, replaces every
member's horizon.

* :class:`MultiTaskVecEnv` joins one vectorised env per member, built by
  :func:`rewardlab.training.make_vec_env` (so each member's reward program is executed there
  the same way as in single-task training), and appends the member's **one-hot task id** to
  every observation (terminal observations included).
* :class:`MultiTaskNormalize` is ``VecNormalize`` with **per-task reward normalisation**
  (generated rewards differ in scale by orders of magnitude): each member's rewards are divided
  by the running standard deviation of that member's discounted return (``task_scale=return``,
  PPO) or per-step reward (``step``, SAC), before anything stores them (SAC's replay buffer
  keeps the scaled rewards), and observations are normalised except the task id. Its
  statistics are saved and restored with the checkpoints like ``VecNormalize``'s.
* :func:`evaluate_members` runs every member's evaluation episodes with the task id appended
  and reports success per member with Wilson intervals and the mean over members.

Example:
    >>> task = load_set("hopper")
    >>> [t.name for t in member_tasks(task)]
    ['mujoco/hopper_forward', 'mujoco/hopper_backward', 'mujoco/hopper_jump']
    >>> member_index(task, "hopper_jump")
    2
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rewardlab.evaluation import EpisodeResult, run_episodes, summarize
from rewardlab.paths import data_dir
from rewardlab.reward.program import RewardProgram, compile_for_task
from rewardlab.stats import wilson_interval
from rewardlab.tasks.registry import TaskSpec, get_task

Reward = RewardProgram | str | None | Mapping[str, RewardProgram | str | None]
"""What training takes as a reward: a program compiled once (or its source; ``None``: the
benchmark's own reward), or for a multi-task set one of those per member, by member name."""


# --------------------------------------------------------------------------- sets


def is_multitask(task: TaskSpec) -> bool:
    """Whether ``task`` is a multi-task set."""
    return bool(task.members)


def load_set(name: str) -> TaskSpec:
    """The multi-task set ``multi/<name>`` (what ``task=multi/<name>`` selects) from
    ``conf/task/multi/<name>.yaml``.

    Raises:
        KeyError: no such set (the message lists the sets).
    """
    import yaml

    short = name.removeprefix("multi/")
    path = data_dir("conf") / "task" / "multi" / f"{short}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown multi-task set {name!r}; sets: {', '.join(list_sets())}")
    return TaskSpec.from_dict(yaml.safe_load(path.read_text()))


def list_sets() -> list[str]:
    """Names of the multi-task sets (``multi/<name>``)."""
    return sorted(f"multi/{p.stem}" for p in (data_dir("conf") / "task" / "multi").glob("*.yaml"))


def member_tasks(task: TaskSpec) -> list[TaskSpec]:
    """The member tasks of a set (with the set's horizon when it is above 0); ``[task]`` for a
    single task."""
    if not task.members:
        return [task]
    out = []
    for name in task.members:
        member = copy.deepcopy(get_task(str(name)))
        if task.horizon > 0:
            member.horizon = int(task.horizon)
        out.append(member)
    return out


def member_index(task: TaskSpec, name: str) -> int:
    """Index of member ``name`` (full ``metaworld/push`` or short ``push``) in ``task``.

    Raises:
        KeyError: not a member (the message lists them).
    """
    members = [str(m) for m in task.members]
    for i, member in enumerate(members):
        if name in (member, member.split("/", 1)[-1]):
            return i
    raise KeyError(f"{name!r} is not a member of {task.name}; members: {', '.join(members)}")


def check_members(task: TaskSpec) -> None:
    """Raise ``ValueError`` (one line) unless every member is a registered task, listed once."""
    if len(set(task.members)) != len(task.members):
        raise ValueError(f"task.members of {task.name} lists a task twice: {list(task.members)}")
    for name in task.members:
        try:
            get_task(str(name))
        except KeyError as exc:
            raise ValueError(f"task.members of {task.name}: {exc.args[0]}") from None


def member_programs(task: TaskSpec, reward: Reward) -> dict[str, RewardProgram | None]:
    """Every member's reward compiled once (vetted here if given as source), by member name in
    member order, from ``reward`` (a mapping by member name, or ``None`` for the benchmark's
    reward everywhere)."""
    if reward is None:
        return {str(m): None for m in task.members}
    if not isinstance(reward, Mapping):
        raise TypeError(f"{task.name} is a multi-task set: its reward is one program per member")
    unknown = set(reward) - set(map(str, task.members))
    if unknown:
        raise KeyError(f"rewards for {sorted(unknown)}: not members of {task.name}")
    out: dict[str, RewardProgram | None] = {}
    for member in member_tasks(task):
        given = reward.get(member.name)
        out[member.name] = compile_for_task(given, member) if isinstance(given, str) else given
    return out


def envs_per_member(task: TaskSpec, n_envs: int) -> int:
    """Environments per member: ``train.n_envs`` shared out, at least one each (so the
    total is ``n_envs`` rounded up to a multiple of the number of members)."""
    return max(1, -(-int(n_envs) // len(task.members)))


# --------------------------------------------------------------------------- the vec env


def one_hot(index: int, count: int) -> np.ndarray:
    x = np.zeros(count, dtype=np.float32)
    x[index] = 1.0
    return x


class MultiTaskVecEnv(VecEnv):
    """The members' vectorised envs side by side, with the one-hot task id appended to every
    observation. Env ``i`` belongs to member :attr:`task_index` ``[i]``; every member's
    observation space must have the same shape and its action space must be the same.

    ``get_attr("rollout_report")`` gives ``{"backend": "multi", "members": {name: report}}``
    (what :func:`rewardlab.training.record_rollout` records).
    """

    def __init__(self, names: Sequence[str], venvs: Sequence[VecEnv]) -> None:
        if len(names) != len(venvs) or not venvs:
            raise ValueError("give one vectorised env per member")
        first = venvs[0]
        for name, venv in zip(names, venvs, strict=True):
            if venv.observation_space.shape != first.observation_space.shape:
                raise ValueError(
                    f"member {name} observes {venv.observation_space.shape}, {names[0]} "
                    f"{first.observation_space.shape}: members of a set need the same observation shape"
                )
            if venv.action_space != first.action_space:
                raise ValueError(
                    f"member {name} acts in {venv.action_space}, {names[0]} in {first.action_space}"
                )
        self.names = list(names)
        self.venvs = list(venvs)
        self.task_count = len(venvs)
        self.task_index = np.concatenate([np.full(v.num_envs, i) for i, v in enumerate(venvs)])
        starts = np.cumsum([0] + [v.num_envs for v in venvs])
        self.slices = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        self._ids = np.stack([one_hot(i, self.task_count) for i in self.task_index])
        base = first.observation_space
        assert isinstance(base, spaces.Box)
        boxes = [v.observation_space for v in venvs]
        low = np.min(
            [np.broadcast_to(b.low, base.shape) for b in boxes if isinstance(b, spaces.Box)], axis=0
        )
        high = np.max(
            [np.broadcast_to(b.high, base.shape) for b in boxes if isinstance(b, spaces.Box)],
            axis=0,
        )
        space = spaces.Box(
            np.concatenate([low.ravel(), np.zeros(self.task_count)]).astype(np.float32),
            np.concatenate([high.ravel(), np.ones(self.task_count)]).astype(np.float32),
            dtype=np.float32,
        )
        super().__init__(int(starts[-1]), space, first.action_space)

    def _with_id(self, obs: Any, rows: slice | int) -> np.ndarray:
        ids = self._ids[rows]
        flat = np.asarray(obs, dtype=np.float32).reshape(*np.shape(ids)[:-1], -1)
        return np.concatenate([flat, ids], axis=-1)

    def reset(self) -> VecEnvObs:
        return np.concatenate(
            [self._with_id(v.reset(), s) for v, s in zip(self.venvs, self.slices, strict=True)]
        )

    def step_async(self, actions: np.ndarray) -> None:
        for venv, rows in zip(self.venvs, self.slices, strict=True):
            venv.step_async(actions[rows])

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = [], [], [], []
        for venv, rows in zip(self.venvs, self.slices, strict=True):
            o, r, d, i = venv.step_wait()
            obs.append(self._with_id(o, rows))
            rewards.append(r)
            dones.append(d)
            for j, info in enumerate(i):
                if "terminal_observation" in info:
                    info["terminal_observation"] = self._with_id(
                        info["terminal_observation"], rows.start + j
                    )
            infos.extend(i)
        return np.concatenate(obs), np.concatenate(rewards), np.concatenate(dones), infos

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        out: list[int | None] = []
        for venv, rows in zip(self.venvs, self.slices, strict=True):
            out.extend(venv.seed(None if seed is None else seed + rows.start))
        return out

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        for venv, rows in zip(self.venvs, self.slices, strict=True):
            venv.set_options(options[rows] if isinstance(options, list) else options)

    def _split(self, indices: VecEnvIndices) -> list[tuple[int, list[int]]]:
        """``(member, local indices)`` for global ``indices``, in order."""
        out: list[tuple[int, list[int]]] = []
        for i in self._get_indices(indices):
            member = int(self.task_index[i])
            local = i - self.slices[member].start
            if out and out[-1][0] == member:
                out[-1][1].append(local)
            else:
                out.append((member, [local]))
        return out

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "rollout_report":
            report = {"backend": "multi", "members": {
                name: venv.get_attr("rollout_report", indices=[0])[0] if _has_report(venv) else None
                for name, venv in zip(self.names, self.venvs, strict=True)}}  # fmt: skip
            return [report for _ in self._get_indices(indices)]
        return [
            x for m, idx in self._split(indices) for x in self.venvs[m].get_attr(attr_name, idx)
        ]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for m, idx in self._split(indices):
            self.venvs[m].set_attr(attr_name, value, idx)

    def env_method(
        self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return [
            x
            for m, idx in self._split(indices)
            for x in self.venvs[m].env_method(method_name, *args, indices=idx, **kwargs)
        ]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [
            x
            for m, idx in self._split(indices)
            for x in self.venvs[m].env_is_wrapped(wrapper_class, idx)
        ]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [img for venv in self.venvs for img in venv.get_images()]

    def close(self) -> None:
        for venv in self.venvs:
            venv.close()


def _has_report(venv: VecEnv) -> bool:
    try:
        venv.get_attr("rollout_report", indices=[0])
    except AttributeError:
        return False
    return True


def multitask_vec_env(
    task: TaskSpec, reward: Reward, make: Callable[[TaskSpec, RewardProgram | None], VecEnv]
) -> MultiTaskVecEnv:
    """:class:`MultiTaskVecEnv` over ``make(member, member's program)`` for every member of
    ``task``."""
    members = member_tasks(task)
    programs = member_programs(task, reward)
    venvs: list[VecEnv] = []
    try:
        for member in members:
            venvs.append(make(member, programs[member.name]))
        return MultiTaskVecEnv([m.name for m in members], venvs)
    except BaseException:
        for venv in venvs:
            venv.close()
        raise


class MultiTaskNormalize(VecNormalize):
    """``VecNormalize`` for a :class:`MultiTaskVecEnv` (see the module docstring): per-task
    reward scaling instead of one global one, and the task id left as it is. ``task_scale``:
    ``return`` (each member's rewards over the std of its discounted return, as
    ``VecNormalize`` does for one task) or ``step`` (over the std of its per-step reward)."""

    def __init__(
        self, venv: MultiTaskVecEnv, *, norm_obs: bool = True, task_scale: str = "return",
        gamma: float = 0.99, clip_obs: float = 10.0, clip_reward: float = 10.0,
    ) -> None:  # fmt: skip
        if task_scale not in ("return", "step"):
            raise ValueError(f"task_scale must be 'return' or 'step', not {task_scale!r}")
        super().__init__(venv, norm_obs=norm_obs, norm_reward=False, clip_obs=clip_obs,
                         clip_reward=clip_reward, gamma=gamma)  # fmt: skip
        self.task_index = venv.task_index.copy()
        self.task_count = venv.task_count
        self.task_scale = task_scale
        self.task_rms = [RunningMeanStd(shape=()) for _ in range(self.task_count)]
        self.task_returns = np.zeros(self.num_envs)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        del state["task_returns"]
        return state

    def set_venv(self, venv: VecEnv) -> None:
        if not isinstance(venv, MultiTaskVecEnv) or not np.array_equal(
            venv.task_index, self.task_index
        ):
            raise ValueError(
                "these normalisation statistics belong to a multi-task env with other members or envs"
            )
        super().set_venv(venv)
        self.task_returns = np.zeros(self.num_envs)

    def task_scales(self) -> np.ndarray:
        """The divisor of each member's rewards now."""
        return np.sqrt(np.array([rms.var for rms in self.task_rms]) + self.epsilon)

    def scale_task_rewards(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Divide each env's reward by its member's scale (updating the statistics first while
        training)."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if self.training:
            tracked = rewards
            if self.task_scale == "return":
                self.task_returns = self.task_returns * self.gamma + rewards
                tracked = self.task_returns
            for t, rms in enumerate(self.task_rms):
                rms.update(tracked[self.task_index == t])
        scaled = rewards / self.task_scales()[self.task_index]
        self.task_returns[np.asarray(dones, dtype=bool)] = 0.0
        return np.clip(scaled, -self.clip_reward, self.clip_reward).astype(np.float32)

    def step_wait(self) -> VecEnvStepReturn:
        # VecNormalize.step_wait (stable-baselines3 2.x) with the per-task scaling applied to
        # the rewards it receives, so get_original_reward() (what SAC stores) is scaled too.
        obs, rewards, dones, infos = self.venv.step_wait()
        assert isinstance(obs, np.ndarray)
        rewards = self.scale_task_rewards(rewards, dones)
        self.old_obs, self.old_reward = obs, rewards
        if self.training and self.norm_obs:
            self.obs_rms.update(obs)
        obs = self.normalize_obs(obs)
        for idx, done in enumerate(dones):
            if done and "terminal_observation" in infos[idx]:
                infos[idx]["terminal_observation"] = self.normalize_obs(
                    infos[idx]["terminal_observation"]
                )
        return obs, rewards, dones, infos

    def reset(self) -> np.ndarray | dict[str, np.ndarray]:
        self.task_returns = np.zeros(self.num_envs)
        return super().reset()

    def _normalize_obs(self, obs: np.ndarray, obs_rms: RunningMeanStd) -> np.ndarray:
        out = super()._normalize_obs(obs, obs_rms)
        out[..., -self.task_count :] = obs[..., -self.task_count :]
        return out

    def _unnormalize_obs(self, obs: np.ndarray, obs_rms: RunningMeanStd) -> np.ndarray:
        out = super()._unnormalize_obs(obs, obs_rms)
        out[..., -self.task_count :] = obs[..., -self.task_count :]
        return out


# --------------------------------------------------------------------------- evaluation


class TaskConditioned:
    """A trained multi-task policy acting in one member's own (single-task) environment: the
    member's one-hot id is appended to each observation, then the run's normaliser applied."""

    def __init__(self, model: Any, index: int, count: int, normalizer: Any = None) -> None:
        self.model, self.normalizer = model, normalizer
        self.task_id = one_hot(index, count)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> Any:
        x = np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), self.task_id])
        if self.normalizer is not None:
            x = self.normalizer.normalize_obs(x)
        return self.model.predict(x, deterministic=deterministic)


def summarize_members(task: TaskSpec, results: Mapping[str, list[EpisodeResult]]) -> dict[str, Any]:
    """A set's evaluation: per member ``summarize`` plus its Wilson 95% interval, and over the
    set the mean of the members' rates (each member weighs the same), the interval of the
    pooled count (conservative for a mean of members with equal episodes), and the means of
    progress, returns and length over members. ``per_episode`` holds every episode with its
    member (``task``)."""
    per_task: dict[str, dict[str, Any]] = {}
    episodes: list[dict[str, Any]] = []
    for name, runs in results.items():
        summary = summarize(runs)
        wins = sum(r.success for r in runs)
        summary.update(successes=wins, interval=list(wilson_interval(wins, len(runs))))
        for e in summary.pop("per_episode"):
            episodes.append({**e, "task": name})
        per_task[name] = summary
    total = sum(s["episodes"] for s in per_task.values())
    wins = sum(s["successes"] for s in per_task.values())

    def mean(key: str) -> float:
        return float(np.mean([s[key] for s in per_task.values()])) if per_task else 0.0

    return {
        "episodes": total, "success_rate": mean("success_rate"),
        "interval": list(wilson_interval(wins, total)), "mean_progress": mean("mean_progress"),
        "mean_reward_return": mean("mean_reward_return"), "mean_env_return": mean("mean_env_return"),
        "mean_length": mean("mean_length"), "per_task": per_task, "per_episode": episodes,
    }  # fmt: skip


def evaluate_members(
    task: TaskSpec, model: Any, reward: Reward, *, episodes: int, seed: int, normalizer: Any = None,
    video_dir: Path | None = None, video_episodes: int = 0, video_size: int = 320,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate a multi-task policy on every member (``episodes`` each, deterministic, reset
    seeds ``seed, seed + 1, ...``), with its own reward scored along; videos
    ``<member>_<n>.mp4`` in ``video_dir``. Returns :func:`summarize_members`."""
    members = member_tasks(task)
    programs = member_programs(task, reward)
    results: dict[str, list[EpisodeResult]] = {}
    for index, member in enumerate(members):
        policy = TaskConditioned(model, index, len(members), normalizer)
        program = programs[member.name]
        results[member.name] = run_episodes(
            member, policy, episodes=episodes, seed=seed,
            program=program,  # run in a confined worker (rewardlab.workers)
            video_dir=video_dir, video_episodes=video_episodes, video_size=video_size,
            video_prefix=member.name.replace("/", "_"),
        )  # fmt: skip
    return summarize_members(task, results)


def success_columns(summary: Mapping[str, Any]) -> dict[str, float]:
    """``success/<member>`` rates of :func:`summarize_members` (columns of ``metrics.csv``)."""
    return {f"success/{name}": s["success_rate"] for name, s in summary.get("per_task", {}).items()}
