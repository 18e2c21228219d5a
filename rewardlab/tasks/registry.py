"""The task registry: ``"<benchmark>/<task>"`` -> :class:`TaskSpec`, and environment making.

Tasks are declared in ``envs/<benchmark>/tasks.yaml``. A benchmark is a folder of cards plus
that file; adding a benchmark needs no code here beyond its proxy part types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import gymnasium as gym
import yaml

from rewardlab.paths import data_dir
from rewardlab.tasks.cards import Card, load_card, render_card


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

    @property
    def benchmark(self) -> str:
        return self.name.split("/", 1)[0]

    def load_card(self) -> Card:
        return load_card(self.card)

    def resolved_env_id(self) -> str:
        return self.env_id or self.load_card().env_id

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
        me = PROXY_BUILDERS[card_ref.split("/", 1)[0]](env, card)
        robot = getattr(me, card.robot)
        shown: dict[str, float] = {}
        for part in robot.fields():
            value = getattr(robot, part)
            if not isinstance(value, Proxy):
                continue
            names = ("angle",) if part == "top_joint" else ("position_x", "position_y", "position_z")
            for name in (n for n in names if n in value.fields()):
                shown[f"self.{card.robot}.{part}.{name}"] = round(getattr(value, name), 3)
        return float(me.dt), shown
    finally:
        env.close()


@cache
def _registry() -> dict[str, TaskSpec]:
    tasks: dict[str, TaskSpec] = {}
    for spec_file in sorted(data_dir("envs").glob("*/tasks.yaml")):
        benchmark = spec_file.parent.name
        for short, raw in (yaml.safe_load(spec_file.read_text()) or {}).items():
            name = f"{benchmark}/{short}"
            tasks[name] = TaskSpec.from_dict({"name": name, **raw})
    return tasks


def list_tasks() -> list[TaskSpec]:
    """All registered tasks, sorted by name."""
    return [_registry()[k] for k in sorted(_registry())]


def get_task(name: str) -> TaskSpec:
    """Look up a task by name; the error lists close matches.

    Example:
        >>> get_task("mujoco/hopper_backflip").success.metric
        'flip'
    """
    try:
        return _registry()[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _registry(), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown task {name!r}{hint} (see `rewardlab tasks`)") from None
