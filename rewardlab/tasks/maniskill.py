"""ManiSkill3 (mani-skill 3.0.1, SAPIEN 3) tabletop tasks as rewardlab tasks: envs and proxies.

**Environments.** Importing this module (``rewardlab.tasks.proxies`` does) registers one
gymnasium id per task, ``ManiSkill3/<ManiSkill id>`` (``ManiSkill3/PickCube-v1``); mani_skill
itself is imported only when such an env is made. :func:`make_maniskill_env` builds
``gym.make("<ManiSkill id>", obs_mode="state", control_mode=..., sim_backend=..., num_envs=1)``
and puts :class:`ManiSkillTask` on top, which turns ManiSkill's batched torch interface (batch of
one) into a plain gymnasium env (numpy observations, float rewards, bool flags, ``(H, W, 3)``
frames) and records the benchmark's success flag (``info["success"]``) for the task metric
``benchmark_success``. Episodes run to the task's horizon (``ignore_terminations``: ManiSkill
ends an episode at success, Text2Reward's training did not). ``reward_mode`` ``dense`` keeps
ManiSkill's dense reward: the expert baseline of ``reward_file=env``.

The adapter is deliberately small and keyed by the ManiSkill id, so that a ManiSkill2 adapter
(``ManiSkill2/<id>``, gym 0.x) could sit beside it with the same proxies' names.

**Vulkan.** SAPIEN needs a Vulkan device even for state-only simulation; before the first env
:func:`ensure_vulkan` selects the driver that ``python tools/setup_vulkan.py`` cached (when
``VK_ICD_FILENAMES`` is unset) and checks that a device can be made, raising
:class:`VulkanUnavailable` (what is missing and how to install it) otherwise.

**Assets.** ManiSkill asks on standard input before downloading assets (a y/n prompt that hangs
or dies with ``EOFError`` without a terminal). :func:`make_maniskill_env` checks the assets of
the env and its robot first and raises :class:`AssetMissing`, naming them and the download
command, before ManiSkill could ask.

**GPU.** ``sim_backend="physx_cuda"`` (``task.env_kwargs.sim_backend=physx_cuda``) runs the same
single env on the GPU simulator through the same wrappers; the batched GPU path (``num_envs`` in
the hundreds, ManiSkill's own vector env, the benchmark's reward) is :func:`make_vector_env`.

**Proxies.** :func:`maniskill_env_proxy` builds the ``self`` of reward programs from the card,
with Text2Reward's Panda names (``self.robot.ee_pose.p``, ``self.robot.check_grasp(self.cubeA,
max_angle=30)``, ``self.cubeA.pose``, ``self.cubeA.check_static()``, ``self.goal_position`` ...),
read live from the simulator at every access.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from functools import cache
from importlib import metadata
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rewardlab.tasks.proxies import PROXY_BUILDERS, BenchmarkEnvProxy, Proxy, find_wrapper
from rewardlab.tasks.registry import BenchmarkUnavailable, check_pinned_version
from rewardlab.vulkan import SETUP_COMMAND, activate

BENCHMARK_VERSION = "3.0.1"
"""The mani-skill release the tasks are pinned to (``pip install 'rewardlab[maniskill]'``)."""

ENV_NAMESPACE = "ManiSkill3"
LIFT_CUBE_ID = "RewardLab-LiftCube-v1"
"""The ManiSkill id under which :func:`_lift_cube_env` registers rewardlab's LiftCube."""

TASK_IDS: dict[str, str] = {
    "PickCube-v1": "PickCube-v1",
    "StackCube-v1": "StackCube-v1",
    "PushCube-v1": "PushCube-v1",
    "PegInsertionSide-v1": "PegInsertionSide-v1",
    "LiftCube-v1": LIFT_CUBE_ID,
}
"""rewardlab's gymnasium ids (``ManiSkill3/<key>``) and the ManiSkill ids they make."""

UNBOUNDED_STEPS = 10**9
"""ManiSkill's own time limit is lifted: the task's horizon (``gymnasium.make``'s
``max_episode_steps``) ends episodes."""


def gym_id(name: str) -> str:
    """The gymnasium id rewardlab registers for a task env (``PickCube-v1``)."""
    return f"{ENV_NAMESPACE}/{name}"


class VulkanUnavailable(BenchmarkUnavailable):
    """No Vulkan device: SAPIEN cannot simulate (the message says how to install a driver)."""


class AssetMissing(BenchmarkUnavailable):
    """A ManiSkill env needs downloaded assets that are not on this machine."""


# --------------------------------------------------------------------------- vulkan


_VULKAN: list[Exception | None] = []
"""The outcome of the process's Vulkan check: ``[None]`` works, ``[error]`` does not."""


def vulkan_problem() -> str | None:
    """Why SAPIEN cannot make a Vulkan device in this process (``None`` when it can).

    Selects the driver cached by ``python tools/setup_vulkan.py`` first (see
    :func:`rewardlab.vulkan.activate`). Checked once per process.
    """
    error = _vulkan_check()
    return None if error is None else str(error)


def ensure_vulkan() -> None:
    """Raise :class:`VulkanUnavailable` (or :class:`BenchmarkUnavailable` when mani-skill is
    not installed) unless SAPIEN can simulate."""
    error = _vulkan_check()
    if error is not None:
        raise error


def _vulkan_check() -> Exception | None:
    if not _VULKAN:
        activate()
        try:
            sapien = _import_sapien()
            sapien.render.RenderSystem()
        except ImportError as exc:
            _VULKAN.append(
                BenchmarkUnavailable(
                    f"mani-skill is not installed ({exc}): pip install 'rewardlab[maniskill]'"
                )
            )
        except RuntimeError as exc:
            icd = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
            driver = f"the driver {icd}" if icd else "the system's Vulkan drivers"
            _VULKAN.append(VulkanUnavailable(
                f"ManiSkill3 (SAPIEN) needs a Vulkan device even for state-only simulation, and "
                f"{driver} gave none ({exc}). Install Mesa's software driver (lavapipe) for this "
                f"user with `{SETUP_COMMAND}` (no root needed)"
            ))  # fmt: skip
        else:
            _VULKAN.append(None)
    return _VULKAN[0]


def _import_sapien() -> Any:
    with warnings.catch_warnings():  # "Failed to find system libvulkan": SAPIEN ships one
        warnings.simplefilter("ignore")
        import sapien

    return sapien


def _import_mani_skill() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mani_skill.envs  # noqa: F401  (registers ManiSkill's envs)


def _check_version(pinned: str | None) -> None:
    check_pinned_version("mani-skill", pinned)


def missing_assets(ms_id: str, robot_uids: Any = None) -> list[str]:
    """The asset ids ``ms_id`` (and its robot) need that are not downloaded."""
    from mani_skill.agents.registration import REGISTERED_AGENTS
    from mani_skill.utils import assets
    from mani_skill.utils.registration import REGISTERED_ENVS

    wanted = list(REGISTERED_ENVS[ms_id].asset_download_ids or [])
    for uid in [robot_uids] if isinstance(robot_uids, str) else list(robot_uids or []):
        if uid in REGISTERED_AGENTS:
            wanted += REGISTERED_AGENTS[uid].asset_download_ids or []
    missing: list[str] = []
    for asset in wanted:
        if asset in assets.DATA_GROUPS:
            sources = assets.expand_data_group_into_individual_data_source_ids(asset)
            if not all(assets.is_data_source_downloaded(s) for s in sources):
                missing.append(asset)
        elif not assets.is_data_source_downloaded(asset):
            missing.append(asset)
    return missing


def _check_assets(ms_id: str, robot_uids: Any) -> None:
    missing = missing_assets(ms_id, robot_uids)
    if missing:
        from mani_skill.utils import assets

        raise AssetMissing(
            f"ManiSkill env {ms_id} needs the asset(s) {', '.join(missing)}, which are not "
            f"downloaded (looked under {assets.data.ASSET_DIR}); download them with "
            + " and ".join(f"`python -m mani_skill.utils.download_asset {a}`" for a in missing)
            + " (needs network access to the asset hosts), then make the env again"
        )


# --------------------------------------------------------------------------- environments


def _numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device) or array as a float64 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _first(value: Any) -> Any:
    """Element 0 of a batched tensor/array as numpy (a 0-d result as a Python scalar)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        value = value[0]
    return (
        value.item()
        if isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0
        else value
    )


class ManiSkillTask(gym.Wrapper):
    """rewardlab's layer over one ManiSkill env (batch of one): plain gymnasium types, the
    benchmark's success flag recorded, terminations optionally ignored (see the module docs)."""

    def __init__(self, env: gym.Env, *, ignore_terminations: bool = True) -> None:
        super().__init__(env)
        base: Any = env.unwrapped
        if base.num_envs != 1:
            raise ValueError("ManiSkillTask wraps one env; the batched path is make_vector_env")
        self.observation_space = base.single_observation_space
        self.action_space = base.single_action_space
        self.ignore_terminations = ignore_terminations
        self.success = False
        """The benchmark's success flag after the last step (``False`` after a reset)."""

    @property
    def dt(self) -> float:
        """Seconds between two actions (ManiSkill's control time step)."""
        return float(self.env.unwrapped.control_timestep)  # type: ignore[attr-defined]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.success = False
        return self._obs(obs), self._info(info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        with warnings.catch_warnings():  # ManiSkill runs np.isnan on a tensor (numpy 2 deprecation)
            warnings.simplefilter("ignore", DeprecationWarning)
            obs, reward, terminated, truncated, info = self.env.step(
                np.asarray(action, dtype=np.float32)[None]
            )
        info = self._info(info)
        self.success = bool(info.get("success", False))
        terminated = False if self.ignore_terminations else bool(_first(terminated))
        return self._obs(obs), float(_first(reward)), terminated, bool(_first(truncated)), info

    def render(self) -> Any:
        frame = self.env.render()
        if frame is None:
            return None
        return np.ascontiguousarray(_first(frame), dtype=np.uint8)

    def _obs(self, obs: Any) -> np.ndarray:
        return np.asarray(_first(obs), dtype=self.observation_space.dtype)

    @staticmethod
    def _info(info: dict[str, Any]) -> dict[str, Any]:
        return {k: _first(v) for k, v in info.items() if not isinstance(v, dict)}


def make_maniskill_env(
    env_id: str,
    *,
    obs_mode: str = "state",
    control_mode: str = "pd_ee_delta_pose",
    reward_mode: str = "dense",
    sim_backend: str = "physx_cpu",
    render_backend: str = "sapien_cpu",
    render_mode: str | None = None,
    width: int = 512,
    height: int = 512,
    num_envs: int = 1,
    ignore_terminations: bool = True,
    benchmark_version: str | None = BENCHMARK_VERSION,
    **ms_kwargs: Any,
) -> gym.Env:
    """The entry point of the ``ManiSkill3/<id>`` gymnasium ids.

    Args:
        env_id: a ManiSkill id (``PickCube-v1``, or :data:`LIFT_CUBE_ID`).
        obs_mode, control_mode, reward_mode, sim_backend, render_backend: ManiSkill's options
            (``render_backend="sapien_cuda"`` and ``sim_backend="physx_cuda"`` with a GPU).
        render_mode: ``"rgb_array"`` renders the human camera at ``width`` x ``height``.
        num_envs: must be 1 (one env per process; :func:`make_vector_env` is the batched path).
        ignore_terminations: keep stepping after ManiSkill's success termination.
        benchmark_version: the mani-skill release the task is pinned to (``None``: any).
        ms_kwargs: further keyword arguments of ManiSkill's ``gym.make`` (``robot_uids`` ...).

    Raises:
        VulkanUnavailable: no Vulkan device (run ``python tools/setup_vulkan.py``).
        AssetMissing: the env needs assets that are not downloaded.
    """
    if num_envs != 1:
        raise ValueError(
            f"num_envs={num_envs}: rewardlab's ManiSkill envs are single envs (reward programs "
            "read one simulator state); for ManiSkill's batched GPU envs with the benchmark's "
            "reward use rewardlab.tasks.maniskill.make_vector_env"
        )
    ensure_vulkan()
    _check_version(benchmark_version)
    env = gym.make(env_id, **_ms_kwargs(env_id, obs_mode, control_mode, reward_mode, sim_backend,
                                        render_backend, render_mode, width, height, 1, ms_kwargs))  # fmt: skip
    return ManiSkillTask(env, ignore_terminations=ignore_terminations)


def _ms_kwargs(
    env_id: str, obs_mode: str, control_mode: str, reward_mode: str, sim_backend: str,
    render_backend: str, render_mode: str | None, width: int, height: int, num_envs: int,
    extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """ManiSkill's ``gym.make`` arguments; registers/imports what ``env_id`` needs and checks
    its assets (failing instead of ManiSkill's download prompt)."""
    _import_mani_skill()
    if env_id == LIFT_CUBE_ID:
        _lift_cube_env()
    from mani_skill.utils.registration import REGISTERED_ENVS

    if env_id not in REGISTERED_ENVS:
        raise KeyError(
            f"{env_id!r} is not a ManiSkill env id (mani-skill {metadata.version('mani-skill')})"
        )
    _check_assets(env_id, extra.get("robot_uids"))
    kwargs = {
        "obs_mode": obs_mode, "control_mode": control_mode, "reward_mode": reward_mode,
        "sim_backend": sim_backend, "render_backend": render_backend, "render_mode": render_mode,
        "num_envs": num_envs, "max_episode_steps": UNBOUNDED_STEPS, **extra,
    }  # fmt: skip
    if render_mode is not None:
        cameras = dict(extra.get("human_render_camera_configs") or {})
        kwargs["human_render_camera_configs"] = {"width": width, "height": height, **cameras}
    return kwargs


def make_vector_env(task: Any, num_envs: int, **overrides: Any) -> Any:
    """ManiSkill's batched env for ``task`` (``ManiSkillVectorEnv``: torch tensors on the
    simulation device, ``num_envs`` worlds, the benchmark's reward and ``info["success"]``).

    This is the GPU path (``sim_backend="physx_cuda"``, hundreds to thousands of envs); on CPU
    ManiSkill allows ``num_envs=1`` only. rewardlab's reward programs and proxies read one
    state, so training on it uses the benchmark's (expert) reward.
    """
    from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

    ensure_vulkan()
    spec = gym.spec(task.resolved_env_id())
    options = {**spec.kwargs, **dict(task.env_kwargs), **overrides}
    env_id = options.pop("env_id")
    _check_version(options.pop("benchmark_version", BENCHMARK_VERSION))
    ignore = bool(options.pop("ignore_terminations", True))
    named = {k: options.pop(k) for k in ("obs_mode", "control_mode", "reward_mode", "sim_backend", "render_backend")
             if k in options}  # fmt: skip
    defaults = {"obs_mode": "state", "control_mode": "pd_ee_delta_pose", "reward_mode": "dense",
                "sim_backend": "physx_cuda", "render_backend": "sapien_cuda", **named}  # fmt: skip
    kwargs = _ms_kwargs(
        env_id, defaults["obs_mode"], defaults["control_mode"], defaults["reward_mode"],
        defaults["sim_backend"], defaults["render_backend"], options.pop("render_mode", None),
        options.pop("width", 512), options.pop("height", 512), num_envs, options,
    )  # fmt: skip
    kwargs["max_episode_steps"] = task.horizon
    env = gym.make(env_id, **kwargs)
    return ManiSkillVectorEnv(env, num_envs, ignore_terminations=ignore, auto_reset=True)


@cache
def _lift_cube_env() -> type:
    """rewardlab's LiftCube: PickCube-v1's scene; success = cube A lifted by ``goal_height``
    (its centre at ``goal_height + cube_half_size``) with the arm static (ManiSkill2's
    LiftCube-v0, Text2Reward's task); the goal marker (in the observation) is placed there.
    Its dense reward is ManiSkill2's LiftCube dense reward (Text2Reward's expert reward)."""
    import torch
    from mani_skill.envs.tasks.tabletop.pick_cube import PickCubeEnv
    from mani_skill.utils.registration import register_env
    from mani_skill.utils.structs.pose import Pose

    class LiftCubeEnv(PickCubeEnv):
        goal_height = 0.2

        def _initialize_episode(self, env_idx: Any, options: dict[str, Any]) -> None:
            super()._initialize_episode(env_idx, options)
            goal = self.cube.pose.p[env_idx].clone()
            goal[:, 2] = self.cube_half_size + self.goal_height
            self.goal_site.set_pose(Pose.create_from_pq(goal))

        def evaluate(self) -> dict[str, Any]:
            lifted = self.cube.pose.p[:, 2] >= self.goal_height + self.cube_half_size
            static = self.agent.is_static(0.2)
            return {
                "success": lifted & static, "is_obj_placed": lifted, "is_robot_static": static,
                "is_grasped": self.agent.is_grasping(self.cube),
            }  # fmt: skip

        def compute_dense_reward(self, obs: Any, action: Any, info: dict[str, Any]) -> Any:
            reaching = 1 - torch.tanh(
                5 * torch.linalg.norm(self.cube.pose.p - self.agent.tcp_pose.p, axis=1)
            )
            grasped = self.agent.is_grasping(self.cube, max_angle=30).float()
            lift = torch.clamp(
                (self.cube.pose.p[:, 2] - self.cube_half_size) / self.goal_height, max=1.0
            )
            reward = reaching + grasped * (0.25 + lift)
            return torch.where(info["success"], torch.full_like(reward, 2.25), reward)

        def compute_normalized_dense_reward(
            self, obs: Any, action: Any, info: dict[str, Any]
        ) -> Any:
            return self.compute_dense_reward(obs, action, info) / 2.25

    return register_env(LIFT_CUBE_ID, max_episode_steps=50)(LiftCubeEnv)


def register_envs() -> None:
    """Register ``ManiSkill3/<id>`` for the tasks (cheap: mani_skill is imported only when an
    env is made)."""
    for name, ms_id in TASK_IDS.items():
        if gym_id(name) not in gym.registry:
            gym.register(
                id=gym_id(name), entry_point=f"{__name__}:make_maniskill_env",
                kwargs={"env_id": ms_id}, disable_env_checker=True,
            )  # fmt: skip


# --------------------------------------------------------------------------- proxies


class ObjectPose:
    """A pose value (Text2Reward's ``ObjectPose``): ``p`` (3,), ``q`` (4,) as (w, x, y, z),
    ``inv()``, ``to_transformation_matrix()`` and composition with ``*``."""

    __slots__ = ("p", "q")
    p: np.ndarray
    q: np.ndarray

    def __init__(self, p: Any, q: Any) -> None:
        object.__setattr__(self, "p", np.asarray(p, dtype=np.float64).reshape(3))
        object.__setattr__(self, "q", np.asarray(q, dtype=np.float64).reshape(4))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ObjectPose is read-only (tried to set {name!r})")

    def _sapien(self) -> Any:
        return _import_sapien().Pose(self.p.astype(np.float32), self.q.astype(np.float32))

    @classmethod
    def _of(cls, pose: Any) -> ObjectPose:
        return cls(pose.p, pose.q)

    def inv(self) -> ObjectPose:
        return ObjectPose._of(self._sapien().inv())

    def __mul__(self, other: ObjectPose) -> ObjectPose:
        if not isinstance(other, ObjectPose):
            return NotImplemented
        return ObjectPose._of(self._sapien() * other._sapien())

    def to_transformation_matrix(self) -> np.ndarray:
        return np.asarray(self._sapien().to_transformation_matrix(), dtype=np.float64)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ObjectPose)
            and np.array_equal(self.p, other.p)
            and np.array_equal(self.q, other.q)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ObjectPose(p={np.round(self.p, 4).tolist()}, q={np.round(self.q, 4).tolist()})"


def pose_of(batched: Any) -> ObjectPose:
    """The first pose of a ManiSkill (batched) ``Pose`` as an :class:`ObjectPose`."""
    return ObjectPose(_numpy(batched.p)[0], _numpy(batched.q)[0])


class _Body(Proxy):
    """A ManiSkill actor or link: pose and velocities, read at every access."""

    __slots__ = ("_entity",)
    _fields: tuple[str, ...] = ("pose", "velocity", "angular_velocity")

    def __init__(self, path: str, entity: Any) -> None:
        super().__init__(path)
        object.__setattr__(self, "_entity", entity)

    @property
    def pose(self) -> ObjectPose:
        return pose_of(self._entity.pose)

    @property
    def velocity(self) -> np.ndarray:
        return _numpy(self._entity.linear_velocity)[0]

    @property
    def angular_velocity(self) -> np.ndarray:
        return _numpy(self._entity.angular_velocity)[0]


class LinkObject(_Body):
    """A robot link (``self.robot.lfinger``)."""


class RigidObject(_Body):
    """A free object (``self.cubeA``), with ``check_static()``."""

    __slots__ = ()
    _fields = (*_Body._fields, "check_static")

    def check_static(self) -> bool:
        return bool(_first(self._entity.is_static()))


class Peg(RigidObject):
    """PegInsertionSide's peg: also ``head_pose`` and ``half_size``."""

    __slots__ = ("_env",)
    _fields = (*RigidObject._fields, "head_pose", "half_size")

    def __init__(self, path: str, entity: Any, env: Any) -> None:
        super().__init__(path, entity)
        object.__setattr__(self, "_env", env)

    @property
    def head_pose(self) -> ObjectPose:
        return pose_of(self._env.peg_head_pose)

    @property
    def half_size(self) -> np.ndarray:
        return _numpy(self._env.peg_half_sizes)[0]


class BoxWithHole(_Body):
    """PegInsertionSide's box: ``pose``, ``hole_pose``, ``hole_radius``."""

    __slots__ = ("_env",)
    _fields = ("pose", "hole_pose", "hole_radius")

    def __init__(self, path: str, entity: Any, env: Any) -> None:
        super().__init__(path, entity)
        object.__setattr__(self, "_env", env)

    @property
    def hole_pose(self) -> ObjectPose:
        return pose_of(self._env.box_hole_pose)

    @property
    def hole_radius(self) -> float:
        return float(_numpy(self._env.box_hole_radii)[0])


class PandaRobot(Proxy):
    """``self.robot``: Text2Reward's ``PandaRobot`` over ManiSkill's Panda agent."""

    __slots__ = ("_agent", "__dict__")
    _fields = ("ee_pose", "qpos", "qvel", "gripper_openness", "check_grasp")

    def __init__(self, path: str, agent: Any, parts: dict[str, Proxy]) -> None:
        super().__init__(path)
        object.__setattr__(self, "_agent", agent)
        object.__setattr__(self, "_fields", (*self._fields, *parts))
        for name, part in parts.items():
            object.__setattr__(self, name, part)

    @property
    def ee_pose(self) -> ObjectPose:
        return pose_of(self._agent.tcp.pose)

    @property
    def qpos(self) -> np.ndarray:
        return _numpy(self._agent.robot.get_qpos())[0, :7]

    @property
    def qvel(self) -> np.ndarray:
        return _numpy(self._agent.robot.get_qvel())[0, :7]

    @property
    def gripper_openness(self) -> float:
        qpos = _numpy(self._agent.robot.get_qpos())[0]
        upper = _numpy(self._agent.robot.get_qlimits())[0, -1, 1]
        return float(qpos[-1] / upper)

    def check_grasp(self, obj: Any, max_angle: float = 85) -> bool:
        entity = _entity_of(obj)
        return bool(_first(self._agent.is_grasping(entity, max_angle=float(max_angle))))


def _entity_of(obj: Any) -> Any:
    if not isinstance(obj, _Body):
        raise TypeError(
            f"check_grasp needs an object of the card (such as self.cubeA), not {type(obj).__name__}"
        )
    return obj._entity


PROXY_TYPES: dict[str, Callable[..., Proxy]] = {
    "RigidObject": RigidObject, "LinkObject": LinkObject, "Peg": Peg, "BoxWithHole": BoxWithHole,
}  # fmt: skip
"""Proxy class of each documented card type of the ManiSkill cards."""

VALUE_SOURCES: dict[str, Callable[[Any], Any]] = {
    "goal_site": lambda base: _numpy(base.goal_site.pose.p)[0],
    "goal_region": lambda base: _numpy(base.goal_region.pose.p)[0],
    "goal_radius": lambda base: float(base.goal_radius),
    "goal_height": lambda base: float(base.goal_height),
    "goal_pose": lambda base: pose_of(base.goal_pose),
    "cube_half_size": lambda base: float(_numpy(base.cube_half_size).reshape(-1)[0]),
}
"""Readers of plain-value card attributes (by their ``source`` in the card), read at access."""


def find_task_wrapper(env: gym.Env) -> ManiSkillTask:
    """The :class:`ManiSkillTask` layer inside ``env``'s wrapper stack."""
    return find_wrapper(env, ManiSkillTask, f"make it through rewardlab's ManiSkill ids ({gym_id('<id>')}); "
                        "ManiSkill cards need them (they record the benchmark's success flag)")  # fmt: skip


def maniskill_env_proxy(env: gym.Env, card: Any) -> BenchmarkEnvProxy:
    """Proxy builder of the ManiSkill benchmark: the card's robot, parts and attributes, read
    live from the simulator."""
    recorder = find_task_wrapper(env)
    base: Any = env.unwrapped
    parts = {name: _typed(card, spec["type"], f"self.{card.robot}.{name}", getattr(base.agent, spec["link"]), base)
             for name, spec in card.parts.items()}  # fmt: skip
    robot = PandaRobot(f"self.{card.robot}", base.agent, parts)
    _check_fields(card, card.robot_class, robot, exclude=set(parts))
    members: dict[str, Any] = {card.robot: robot}
    values: dict[str, Callable[[], Any]] = {}
    for name, spec in card.attributes.items():
        if "source" in spec:
            values[name] = (lambda read: lambda: read(base))(VALUE_SOURCES[spec["source"]])
        else:
            members[name] = _typed(
                card, spec["type"], f"self.{name}", getattr(base, spec["actor"]), base
            )
    members["dt"] = recorder.dt
    return BenchmarkEnvProxy(members, values, recorder)


def _typed(card: Any, type_name: str, path: str, entity: Any, base: Any) -> Proxy:
    cls = PROXY_TYPES[type_name]
    proxy = cls(path, entity, base) if cls in (Peg, BoxWithHole) else cls(path, entity)
    _check_fields(card, type_name, proxy)
    return proxy


def _check_fields(card: Any, type_name: str, proxy: Proxy, exclude: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    documented = set(card.type_docs(type_name) or {})
    if set(proxy.fields()) - exclude != documented:  # the card text and the proxies agree
        raise AssertionError(
            f"{type_name} proxy fields {proxy.fields()} differ from the card's {sorted(documented)}"
        )


register_envs()
PROXY_BUILDERS["maniskill"] = maniskill_env_proxy
