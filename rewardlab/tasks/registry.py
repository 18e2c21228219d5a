"""The task registry: ``"<benchmark>/<task>"`` -> :class:`TaskSpec`.

Tasks come from the **task path**: the package's own ``envs/`` folder, then every folder named
by ``$REWARDLAB_TASK_PATH`` (``os.pathsep``-separated), :func:`add_task_path` or the CLI's
``task_path=...``. A task folder holds ``<benchmark>/tasks.yaml`` (task specs) and
``<benchmark>/<card>.yaml`` (environment cards); the benchmark folder's name picks how proxies
are built (``mujoco``, ``metaworld``, ``maniskill``). :func:`register_task` adds one from Python.

Like Gymnasium's registry, nothing is imported early: a task's ``entry_point``
(``"module:Class"``) is registered with gymnasium and a success metric given as
``"module:Class"`` is imported only when the task's environment is made; a task folder is put
on ``sys.path`` so its modules import.

Example:
    >>> get_task("mujoco/hopper_backflip").success.metric
    'flip'
    >>> task = register_task("demo/pendulum", card="mujoco/hopper", instruction="Hop.", horizon=50)
    >>> get_task("demo/pendulum").horizon, task.benchmark
    (50, 'demo')
    >>> unregister_task("demo/pendulum")
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from rewardlab.paths import data_dir
from rewardlab.tasks.cards import Card, card_benchmark, clear_card_cache, load_card, render_card

TASK_PATH_ENV = "REWARDLAB_TASK_PATH"
"""Environment variable with extra task folders (inherited by child processes, so sandboxed
checks and workers find the same tasks)."""


class BenchmarkUnavailable(RuntimeError):
    """A task's benchmark cannot run on this machine (a package, driver or asset is missing);
    the message says what and how to install it. The CLI prints it without a traceback."""


def check_pinned_version(package: str, pinned: str | None) -> None:
    """Raise :class:`BenchmarkUnavailable` unless the installed ``package`` is the release the
    task is pinned to (``env_kwargs.benchmark_version``; ``None`` = any)."""
    from importlib import metadata

    installed = metadata.version(package)
    if pinned is not None and installed != pinned:
        raise BenchmarkUnavailable(
            f"{package} {installed} is installed but the task is pinned to {pinned} (success "
            f"rates differ between releases): pip install {package}=={pinned}, or override "
            f"task.env_kwargs.benchmark_version={installed} to accept the difference knowingly"
        )


@dataclass
class SuccessSpec:
    """Which success metric decides a task, and its parameters."""

    metric: str = "displacement"
    """Name in ``rewardlab.tasks.success.METRICS``."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the metric (attribute paths and thresholds)."""


@dataclass
class TaskSpec:
    """A task: environment + card + instruction + success metric + horizon.

    Also the Hydra ``task`` config group node, so ``task.horizon=500`` overrides work.
    """

    name: str = "mujoco/hopper_forward"
    """Registry name ``<benchmark>/<task>``."""
    card: str = "mujoco/hopper"
    """Environment card reference (``envs/<card>.yaml``)."""
    instruction: str = ""
    """The plain-language goal."""
    horizon: int = 1000
    """Episode length in environment steps (time limit)."""
    env_id: str = ""
    """gymnasium id; empty means the card's ``env_id``."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``gymnasium.make``."""
    success: Any = field(default_factory=SuccessSpec)
    """The success metric computed from simulator state: a :class:`SuccessSpec` (typed ``Any``
    so that ``task.success=<name or expression>`` is accepted on the command line;
    :meth:`from_dict` resolves it, see :func:`rewardlab.tasks.success.resolve_success`)."""
    entry_point: str = ""
    """``"module:Class"`` of an environment gymnasium does not know yet: registered under the
    task's env id when the environment is first made (empty: the id is already registered)."""
    members: list[str] = field(default_factory=list)
    """A multi-task set (``task=multi/<set>``, :mod:`rewardlab.multitask`): the registered
    tasks one policy learns together; empty for a single task."""

    @property
    def benchmark(self) -> str:
        return self.name.split("/", 1)[0]

    def load_card(self) -> Card:
        return load_card(self.card)

    def resolved_env_id(self) -> str:
        """The gymnasium id to make (registering ``entry_point`` under it on first use)."""
        env_id = self.env_id or self.load_card().env_id
        if self.entry_point and env_id not in gym.registry:
            gym.register(id=env_id, entry_point=self.entry_point)
        return env_id

    def card_text(self) -> str:
        """The card as the LLM sees it (with the initial pose, as in Text2Reward)."""
        return render_card(self.load_card(), self.dt(), self.initial_state())

    def dt(self) -> float:
        """Seconds between two actions."""
        return _probe(self.resolved_env_id(), _freeze(self.env_kwargs), self.card)[0]

    def initial_state(self) -> dict[str, float]:
        """Root position and pitch of the initial pose (noise-free), by attribute path."""
        return dict(_probe(self.resolved_env_id(), _freeze(self.env_kwargs), self.card)[1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TaskSpec:
        """Build from a plain mapping (e.g. a Hydra ``DictConfig`` converted to a dict)."""
        data = dict(data)
        success = data.pop("success", {}) or {}
        task = cls(**data)
        if isinstance(success, str):  # task.success=<registered name or expression>
            from rewardlab.tasks.success import resolve_success

            task.success = resolve_success(task, success)
        else:
            task.success = SuccessSpec(**dict(success))
        return task


def _freeze(kwargs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in dict(kwargs).items()))


@cache
def _probe(
    env_id: str, env_kwargs: tuple[tuple[str, Any], ...], card_ref: str
) -> tuple[float, dict[str, float]]:
    """``(dt, initial root pose by attribute path)`` read once from a fresh env."""
    from rewardlab.tasks.proxies import PROXY_BUILDERS, Proxy

    env = gym.make(env_id, **dict(env_kwargs))
    try:
        env.reset(seed=0)
        base: Any = env.unwrapped
        if hasattr(base, "init_qpos") and hasattr(base, "set_state"):  # MuJoCo: noise-free pose
            base.set_state(base.init_qpos, base.init_qvel)
        card = load_card(card_ref)
        me = PROXY_BUILDERS[card_benchmark(card_ref)](env, card)
        robot = getattr(me, card.robot)
        shown: dict[str, float] = {}
        for part in robot.fields():
            value = getattr(robot, part)
            if not isinstance(value, Proxy):
                continue
            names = (
                ("angle",) if part == "top_joint" else ("position_x", "position_y", "position_z")
            )
            for name in (n for n in names if n in value.fields()):
                shown[f"self.{card.robot}.{part}.{name}"] = round(getattr(value, name), 3)
        return float(me.dt), shown
    finally:
        env.close()


def task_path() -> list[Path]:
    """The folders tasks and cards are loaded from, in order: the package's ``envs/``, then
    ``$REWARDLAB_TASK_PATH``."""
    extra = [Path(p) for p in os.environ.get(TASK_PATH_ENV, "").split(os.pathsep) if p]
    return [data_dir("envs"), *extra]


def add_task_path(*folders: str | Path) -> None:
    """Add task folders (each holding ``<benchmark>/tasks.yaml`` and cards) to the task path,
    for this process and the processes it starts; their tasks are then listed, selectable on
    the command line and made like the package's own.

    Raises:
        FileNotFoundError: a folder does not exist.
    """
    known = [str(p) for p in task_path()[1:]]
    for folder in folders:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"task folder {folder} does not exist")
        if str(path) not in known:
            known.append(str(path))
    os.environ[TASK_PATH_ENV] = os.pathsep.join(known)
    _refresh()


def _refresh() -> None:
    """Forget everything loaded from the task path (it changed)."""
    _refresh_sys_path()
    _registry.cache_clear()
    clear_card_cache()


_REGISTERED: dict[str, TaskSpec] = {}
"""Tasks added with :func:`register_task` (they take precedence over task files)."""


def register_task(
    name: str,
    *,
    card: str,
    instruction: str,
    horizon: int = 1000,
    env_id: str = "",
    env_kwargs: dict[str, Any] | None = None,
    success: SuccessSpec | dict[str, Any] | None = None,
    entry_point: str = "",
) -> TaskSpec:
    """Register a task from Python (``name`` = ``"<benchmark>/<task>"``) and return it.

    ``card`` is a card on the task path (``"mujoco/hopper"``) or the path of a card file;
    ``success`` a :class:`SuccessSpec` (or its mapping) whose metric is a name in
    :data:`rewardlab.tasks.success.METRICS` or a ``"module:Class"`` entry point;
    ``entry_point`` registers an environment gymnasium does not know under ``env_id`` (or the
    card's env id) when it is first made.

    Raises:
        ValueError: a malformed name, or a name an existing task already has.
        KeyError: the card does not exist.
    """
    if name.count("/") != 1 or not all(name.split("/")):
        raise ValueError(f"task names are '<benchmark>/<task>', not {name!r}")
    if name in _registry():
        raise ValueError(f"task {name!r} already exists (unregister_task({name!r}) first)")
    load_card(card)  # fails now, naming the card, rather than at training time
    spec = success if isinstance(success, SuccessSpec) else SuccessSpec(**dict(success or {}))
    task = TaskSpec(
        name=name, card=card, instruction=instruction, horizon=horizon, env_id=env_id,
        env_kwargs=dict(env_kwargs or {}), success=spec, entry_point=entry_point,
    )  # fmt: skip
    _REGISTERED[name] = task
    _registry.cache_clear()
    return copy.deepcopy(task)


def unregister_task(name: str) -> None:
    """Remove a task added with :func:`register_task`."""
    _REGISTERED.pop(name, None)
    _registry.cache_clear()


def _task_files(folders: Iterable[Path]) -> list[Path]:
    return [f for folder in folders for f in sorted(folder.glob("*/tasks.yaml"))]


@cache
def _registry() -> dict[str, TaskSpec]:
    _refresh_sys_path()
    tasks: dict[str, TaskSpec] = {}
    origin: dict[str, Path] = {}
    for spec_file in _task_files(task_path()):
        benchmark = spec_file.parent.name
        for short, raw in (yaml.safe_load(spec_file.read_text()) or {}).items():
            name = f"{benchmark}/{short}"
            if name in tasks:
                raise ValueError(f"task {name} is defined twice: in {origin[name]} and {spec_file}")
            tasks[name] = TaskSpec.from_dict({"name": name, **raw})
            origin[name] = spec_file
    return {**tasks, **_REGISTERED}


def _refresh_sys_path() -> None:
    """Task folders go on ``sys.path``: their modules are the entry points' targets."""
    for folder in task_path()[1:]:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))


def list_tasks() -> list[TaskSpec]:
    """All registered tasks, sorted by name."""
    return [_registry()[k] for k in sorted(_registry())]


def get_task(name: str) -> TaskSpec:
    """Look up a task by name (a copy: changing it changes nothing registered); the error
    lists close matches.

    Example:
        >>> get_task("mujoco/hopper_backflip").success.metric
        'flip'
    """
    try:
        return copy.deepcopy(_registry()[name])
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _registry(), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown task {name!r}{hint} (see `rewardlab tasks`)") from None


def load_entry_point(ref: str) -> Any:
    """The object ``"module:attribute"`` names (imported now: the lazy half of an entry point).

    Example:
        >>> load_entry_point("math:pi")
        3.141592653589793
    """
    module, _, attribute = ref.partition(":")
    if not module or not attribute:
        raise ValueError(f"an entry point is 'module:attribute', not {ref!r}")
    _refresh_sys_path()
    target: Any = import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target
