"""MetaWorld v3 (the 50 MT50 single tasks) as rewardlab tasks: environments, proxies, demos.

**Environments.** Importing this module (``rewardlab.tasks.proxies`` does) registers one
gymnasium id per task, ``MetaWorld/<env name>`` (``MetaWorld/drawer-open-v3``). It builds what
``gym.make("Meta-World/MT1", env_name=..., seed=...)`` builds - MetaWorld's own wrapper stack
over the Sawyer env, with the task's 50 object/goal variants drawn from ``seed`` and one of them
picked at random every episode - plus :class:`MetaWorldTask` on top, which

- re-seeds the variant choice on ``reset(seed=s)`` (MetaWorld ignores reset seeds, so parallel
  envs would otherwise replay the same variants and evaluations would not be reproducible);
- sets a variant at construction, so ``env.unwrapped`` is usable (and passes ``check_env``);
- exposes the fully observable observation space (MT1's env keeps the bounds of the partially
  observable one, whose goal is pinned to zero);
- records the benchmark's own success flag (``info["success"]``) for the task metric
  ``benchmark_success`` (:mod:`rewardlab.tasks.success`).

The variants are generated once per process (MetaWorld regenerates them on every make: ~0.4 s).
Rendering uses the ``corner`` camera by default; MetaWorld's corner cameras are mounted upside
down (their image "up" points at the floor), so they are rolled by 180 degrees about their
viewing axis when the env is made: frames come out upright and unmirrored, for every consumer.

**Versions.** Success rates differ widely between MetaWorld releases and reward versions, so
both are pinned per task (``env_kwargs`` in ``envs/metaworld/tasks.yaml``, saved with every run
in its ``config.yaml``): ``reward_function_version`` (MetaWorld's ``v2`` rewards, the expert
baseline of ``reward_file=env``) and ``benchmark_version`` (the metaworld package release the
numbers belong to; making an env with another installed release is an error).

**Proxies.** :func:`metaworld_env_proxy` builds the ``self`` of reward programs from the card:
Text2Reward's names (``self.robot.ee_position``, ``self.robot.gripper_openness``,
``self.obj1.position`` ...) read live from the simulator and equal, value for value, what
MetaWorld puts in the observation (``obs[0:3]``, ``obs[3]``, ``obs[4:7]``, ``obs[7:11]``,
``obs[11:14]``, ``obs[14:18]``; ``goal_position`` is the env's goal, ``obs[36:39]``).

**Scripted experts.** :func:`scripted_policy` is a task's expert policy (``metaworld.policies``);
:func:`rewardlab.reference_rollouts.demonstrations` rolls it out.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable
from functools import cache
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.utils import seeding

from rewardlab.tasks.cards import TYPE_DOCS
from rewardlab.tasks.proxies import PROXY_BUILDERS, BenchmarkEnvProxy, Proxy, find_wrapper
from rewardlab.tasks.registry import check_pinned_version

BENCHMARK_VERSION = "3.1.1"
"""The metaworld release the tasks are pinned to (``pip install metaworld==3.1.1``)."""

REWARD_FUNCTION_VERSION = "v2"
"""MetaWorld's reward version used as the expert reward (``v1`` is the original 2019 one)."""

MT50: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3", "door-open-v3",
    "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3", "faucet-open-v3",
    "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3",
    "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3",
    "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3",
    "plate-slide-back-v3", "plate-slide-back-side-v3", "peg-insert-side-v3",
    "peg-unplug-side-v3", "soccer-v3", "stick-push-v3", "stick-pull-v3", "push-v3",
    "push-wall-v3", "push-back-v3", "reach-v3", "reach-wall-v3", "shelf-place-v3",
    "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3",
)  # fmt: skip
"""MetaWorld's v3 single tasks (``metaworld.MT1.ENV_NAMES``, checked by the tests)."""

ENV_NAMESPACE = "MetaWorld"
MAX_PATH_LENGTH = 500
"""MetaWorld's episode length; its envs refuse to step past it."""


def gym_id(env_name: str) -> str:
    """The gymnasium id rewardlab registers for a MetaWorld env name (``drawer-open-v3``)."""
    return f"{ENV_NAMESPACE}/{env_name}"


# --------------------------------------------------------------------------- environments


@cache
def _variants(env_name: str, seed: int) -> tuple[Any, ...]:
    """MT1's 50 task variants (object and goal placements) of ``env_name`` for ``seed``."""
    import metaworld

    return tuple(metaworld.MT1(env_name, seed=seed).train_tasks)


@cache
def _seedable(cls: Any) -> Any:
    """``cls`` whose ``reset(seed=s)`` re-seeds its generator as gymnasium's API asks
    (MetaWorld's envs ignore the seed); same name, so MetaWorld's task checks still pass."""

    def reset(self: Any, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None:
            gym.Env.reset(self, seed=seed)
        return cls.reset(self, seed=seed, options=options)

    return type(
        cls.__name__, (cls,), {"reset": reset, "__module__": cls.__module__, "__doc__": cls.__doc__}
    )


def _check_version(pinned: str | None) -> None:
    check_pinned_version("metaworld", pinned)


def _roll_upside_down_cameras(model: mujoco.MjModel) -> list[str]:
    """Roll every fixed world camera whose image "up" points downward by 180 degrees about its
    viewing axis (MetaWorld's ``corner`` cameras); return their names."""
    rolled = []
    up = np.empty(3)
    for cam in range(model.ncam):
        if model.cam_bodyid[cam] != 0 or model.cam_mode[cam] != mujoco.mjtCamLight.mjCAMLIGHT_FIXED:
            continue
        mujoco.mju_rotVecQuat(up, np.array([0.0, 1.0, 0.0]), model.cam_quat[cam])
        if up[2] < 0:
            rotated = np.empty(4)
            mujoco.mju_mulQuat(rotated, model.cam_quat[cam], np.array([0.0, 0.0, 0.0, 1.0]))
            model.cam_quat[cam] = rotated
            rolled.append(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, cam))
    return rolled


_OPEN: weakref.WeakSet[gym.Env] = weakref.WeakSet()
"""MetaWorld envs not closed yet. Those that rendered are closed at interpreter exit, before
MuJoCo terminates EGL: freed afterwards, their contexts print an EGLError traceback."""
_closer: list[bool] = []


def _close_open_envs() -> None:
    for env in list(_OPEN):
        env.close()


def _close_at_exit() -> None:
    """Register :func:`_close_open_envs` after MuJoCo's EGL shutdown (registered when the first
    rendering context is made), so that it runs first (exit handlers run last-in, first-out)."""
    if not _closer:
        atexit.register(_close_open_envs)
        _closer.append(True)


class MetaWorldTask(gym.Wrapper):
    """rewardlab's layer over MetaWorld's MT1 env stack (see the module docs)."""

    def __init__(self, env: gym.Env, *, seed: int, reward_function_version: str) -> None:
        super().__init__(env)
        _OPEN.add(self)
        self.reward_function_version = reward_function_version
        self.success = False
        """The benchmark's success flag after the last step (``False`` after a reset)."""
        self.rolled_cameras = _roll_upside_down_cameras(self.unwrapped.model)  # type: ignore[attr-defined]
        self.reset(seed=seed)  # sets a variant: the bare env is usable from here on
        base: Any = self.unwrapped
        base.observation_space = base.sawyer_observation_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        # MetaWorld draws the episode's variant from the bare env's generator *before* resetting
        # it: seed it here and pass no seed down (re-seeding again would repeat the draw).
        if seed is not None:
            self.unwrapped.np_random = seeding.np_random(seed)[0]
        self.success = False
        return self.env.reset(options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.success = bool(info.get("success", 0.0))
        return obs, reward, terminated, truncated, info

    def render(self) -> Any:
        frame = self.env.render()
        _close_at_exit()
        return frame

    def close(self) -> None:
        _OPEN.discard(self)
        super().close()


def make_metaworld_env(
    env_name: str,
    *,
    seed: int = 0,
    reward_function_version: str = REWARD_FUNCTION_VERSION,
    benchmark_version: str | None = BENCHMARK_VERSION,
    render_mode: str | None = None,
    camera_name: str | None = "corner",
    width: int = 480,
    height: int = 480,
) -> gym.Env:
    """The entry point of the ``MetaWorld/<env name>`` gymnasium ids.

    Args:
        env_name: a MetaWorld v3 env name (``drawer-open-v3``).
        seed: draws the task's 50 object/goal variants (MetaWorld's MT1 seed).
        reward_function_version: MetaWorld's reward (``v2``, or the original ``v1``).
        benchmark_version: the metaworld release the task is pinned to (``None``: any).
        camera_name: camera of ``render()`` (``None``: MuJoCo's free camera).
    """
    import metaworld

    _check_version(benchmark_version)
    if env_name not in metaworld.MT1.ENV_NAMES:
        raise ValueError(f"{env_name!r} is not a MetaWorld v3 task; known: {', '.join(MT50)}")
    base_cls: Any = metaworld.env_dict.ALL_V3_ENVIRONMENTS[env_name]
    cls = _seedable(base_cls)
    # metaworld's own constructor of the MT1 env (what gym.make("Meta-World/MT1") calls), fed
    # with the variants generated once per process.
    options: dict[str, Any] = {
        "reward_function_version": reward_function_version, "render_mode": render_mode,
        "camera_name": camera_name, "width": width, "height": height,
    }  # fmt: skip
    env = metaworld._init_each_env(
        env_cls=cls, tasks=list(_variants(env_name, seed)), seed=seed, **options
    )
    return MetaWorldTask(env, seed=seed, reward_function_version=reward_function_version)


def register_envs() -> None:
    """Register ``MetaWorld/<env name>`` for the MT50 tasks (cheap: metaworld is imported
    only when an env is made)."""
    for name in MT50:
        if gym_id(name) not in gym.registry:
            gym.register(
                id=gym_id(name), entry_point=f"{__name__}:make_metaworld_env",
                kwargs={"env_name": name}, max_episode_steps=MAX_PATH_LENGTH,
            )  # fmt: skip


# --------------------------------------------------------------------------- proxies


class SawyerRobot(Proxy):
    """``self.robot``: the hand position (``obs[0:3]``) and the finger opening (``obs[3]``)."""

    __slots__ = ("_xpos", "_hand", "_right", "_left", "_low", "_high")
    _fields = ("ee_position", "gripper_openness")

    def __init__(self, path: str, base: Any) -> None:
        super().__init__(path)
        data = base.data
        object.__setattr__(self, "_xpos", data.xpos)
        for slot, body in (("_hand", "hand"), ("_right", "rightclaw"), ("_left", "leftclaw")):
            object.__setattr__(self, slot, data.body(body).id)
        object.__setattr__(self, "_low", base._HAND_SPACE.low)
        object.__setattr__(self, "_high", base._HAND_SPACE.high)

    @property
    def ee_position(self) -> np.ndarray:
        # MetaWorld clips the observation to its hand space; so do we, to read the same value.
        return np.clip(self._xpos[self._hand], self._low, self._high)

    @property
    def gripper_openness(self) -> float:
        apart = np.linalg.norm(self._xpos[self._right] - self._xpos[self._left])
        return float(np.clip(apart / 0.1, 0.0, 1.0))


class RigidObject(Proxy):
    """``self.obj1`` / ``self.obj2``: the ``index``-th tracked object of the task (position
    and quaternion exactly as in MetaWorld's observation; zeros when the task has none)."""

    __slots__ = ("_base", "_index")
    _fields = ("position", "quaternion")

    def __init__(self, path: str, base: Any, index: int) -> None:
        super().__init__(path)
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_index", int(index))

    def _slice(self, values: np.ndarray, width: int) -> np.ndarray:
        start = self._index * width
        if len(values) < start + width:
            return np.zeros(width)
        return np.array(values[start : start + width], dtype=np.float64)

    @property
    def position(self) -> np.ndarray:
        return self._slice(self._base._get_pos_objects(), 3)

    @property
    def quaternion(self) -> np.ndarray:
        return self._slice(self._base._get_quat_objects(), 4)


PROXY_TYPES: dict[str, Callable[..., Proxy]] = {
    "SawyerRobot": SawyerRobot,
    "RigidObject": RigidObject,
}
"""Proxy class of each documented card type (:data:`rewardlab.tasks.cards.TYPE_DOCS`)."""

VALUE_SOURCES: dict[str, Callable[[Any], Callable[[], Any]]] = {
    "goal": lambda base: lambda: np.array(base._target_pos, dtype=np.float64),
}
"""Readers of plain-value card attributes, by their ``source`` in the card."""


def find_task_wrapper(env: gym.Env) -> MetaWorldTask:
    """The :class:`MetaWorldTask` layer inside ``env``'s wrapper stack."""
    return find_wrapper(env, MetaWorldTask, f"make it through rewardlab's MetaWorld ids ({gym_id('<env name>')}); "
                        "MetaWorld cards need them (they record the benchmark's success flag)")  # fmt: skip


def metaworld_env_proxy(env: gym.Env, card: Any) -> BenchmarkEnvProxy:
    """Proxy builder of the MetaWorld benchmark: the card's robot fields and attributes, read
    live from the env (values equal to the observation's, see the module docs)."""
    recorder = find_task_wrapper(env)
    base: Any = env.unwrapped
    members: dict[str, Any] = {card.robot: _proxy(card.robot_class, f"self.{card.robot}", base, {})}
    values: dict[str, Callable[[], Any]] = {}
    for name, spec in card.attributes.items():
        if spec["type"] in TYPE_DOCS:
            members[name] = _proxy(spec["type"], f"self.{name}", base, spec)
        else:
            values[name] = VALUE_SOURCES[spec["source"]](base)
    members["dt"] = float(base.dt)
    return BenchmarkEnvProxy(members, values, recorder)


def _proxy(type_name: str, path: str, base: Any, spec: dict[str, Any]) -> Proxy:
    kwargs = {k: v for k, v in spec.items() if k not in ("type", "doc")}
    proxy = PROXY_TYPES[type_name](path, base, **kwargs)
    if set(proxy.fields()) != set(TYPE_DOCS[type_name]):  # the card text and proxies agree
        raise AssertionError(f"{type_name} proxy fields {proxy.fields()} differ from its card docs")
    return proxy


# --------------------------------------------------------------------------- demonstrations


def env_name_of(task: Any) -> str:
    """The MetaWorld env name (``drawer-open-v3``) of a task."""
    spec = gym.spec(task.resolved_env_id())
    return str({**spec.kwargs, **dict(task.env_kwargs)}["env_name"])


def scripted_policy(task: Any) -> Any | None:
    """MetaWorld's scripted expert policy of ``task`` (``None`` if it has none)."""
    from metaworld.policies import ENV_POLICY_MAP

    cls: Any = ENV_POLICY_MAP.get(env_name_of(task))
    return cls() if cls is not None else None


register_envs()
PROXY_BUILDERS["metaworld"] = metaworld_env_proxy
