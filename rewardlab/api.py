"""The small Python API, re-exported by the package: ``import rewardlab as rl``.

Example:
    >>> import tempfile
    >>> import rewardlab as rl
    >>> task = rl.get_task("mujoco/hopper_forward")
    >>> program = rl.compile(
    ...     "def compute_dense_reward(self, action):\\n"
    ...     "    forward = self.hopper.top.velocity_x\\n"
    ...     "    return forward, {'forward': forward}\\n", task)
    >>> env = rl.make_env(task, program)
    >>> _ = env.reset(seed=0)
    >>> info = env.step(env.action_space.sample())[-1]
    >>> sorted(k for k in info if k.startswith(("reward/forward", "task/")))
    ['reward/forward', 'task/progress']
    >>> result = rl.train(task, program, out=tempfile.mkdtemp(), total_timesteps=256, n_envs=1,
    ...                   eval_freq=256, eval_episodes=1, algo_kwargs={"n_steps": 128})
    >>> result.timesteps
    256
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from rewardlab.reward.program import RewardProgram
from rewardlab.tasks.registry import TaskSpec, get_task
from rewardlab.training import TrainResult


def compile(source: str, task: TaskSpec | str) -> RewardProgram:  # noqa: A001 - rl.compile
    """Vet, instrument and compile a reward program against ``task``'s card (every
    ``self.`` attribute it reads must exist); raises
    :class:`~rewardlab.reward.program.RewardProgramError` with the findings if rejected."""
    from rewardlab.wrappers import compile_for_task

    return compile_for_task(source, _task(task))


def make_env(
    task: TaskSpec | str, program: RewardProgram | None = None, **kwargs: Any
) -> gym.Env[Any, Any]:
    """``task``'s gymnasium environment with its success metric (``info["success"]``,
    ``info["task/progress"]``) and, if given, ``program`` as its reward (components in
    ``info["reward/<name>"]``), computed in a confined worker (generated code never runs in
    this process); ``kwargs`` go to :func:`rewardlab.workers.confined.program_env`."""
    from rewardlab.workers.confined import program_env

    return program_env(_task(task), program, **kwargs)


def train(
    task: TaskSpec | str,
    reward: RewardProgram | str | None,
    *,
    out: str | Path,
    algo: str = "ppo",
    algo_kwargs: dict[str, Any] | None = None,
    **settings: Any,
) -> TrainResult:
    """Train ``algo`` (a preset of ``conf/algo``, constructor arguments overridden by
    ``algo_kwargs``) on ``task`` with ``reward`` (a program, its source, or ``None`` for the
    benchmark's own reward), writing metrics, checkpoints and the model into ``out``; calling
    it again on the same folder resumes. ``settings`` are :class:`~rewardlab.config.TrainConfig`
    fields (``total_timesteps``, ``n_envs``, ``seed`` ...); the progress bar is off unless asked."""
    from rewardlab.config import TrainConfig, algo_preset
    from rewardlab.training import train as train_sb3

    config = TrainConfig(**{"progress_bar": False, "video_episodes": 0, **settings})
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return train_sb3(_task(task), reward, algo_preset(algo, **(algo_kwargs or {})), config, folder)


def _task(task: TaskSpec | str) -> TaskSpec:
    return get_task(task) if isinstance(task, str) else task
