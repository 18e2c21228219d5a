"""rewardlab: design dense rewards for reinforcement-learning agents from plain language.

The ``rewardlab`` command (:mod:`rewardlab.cli`) runs the whole job; in Python::

    import rewardlab as rl
    task = rl.get_task("mujoco/hopper_forward")      # or rl.register_task(...), rl.add_task_path(...)
    program = rl.compile(source, task)               # vetted against the task's card
    env = rl.make_env(task, program)                 # gymnasium env: program reward + task success
    result = rl.train(task, program, out="runs/mine", total_timesteps=100_000)
    run = rl.RunDir("runs/mujoco/hopper_forward/<time>")   # a run folder: status, versions

Runnable examples: :mod:`rewardlab.api`. Everything is imported on first use, so
``import rewardlab`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from rewardlab.api import compile as compile
    from rewardlab.api import make_env as make_env
    from rewardlab.api import train as train
    from rewardlab.rundir import RunDir as RunDir
    from rewardlab.tasks.registry import TaskSpec as TaskSpec
    from rewardlab.tasks.registry import add_task_path as add_task_path
    from rewardlab.tasks.registry import get_task as get_task
    from rewardlab.tasks.registry import list_tasks as list_tasks
    from rewardlab.tasks.registry import register_task as register_task

_EXPORTS = {
    "compile": "rewardlab.api", "make_env": "rewardlab.api", "train": "rewardlab.api",
    "RunDir": "rewardlab.rundir", "TaskSpec": "rewardlab.tasks.registry",
    "add_task_path": "rewardlab.tasks.registry", "get_task": "rewardlab.tasks.registry",
    "list_tasks": "rewardlab.tasks.registry", "register_task": "rewardlab.tasks.registry",
}  # fmt: skip
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rewardlab' has no attribute {name!r}")
