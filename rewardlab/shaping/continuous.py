"""Reward shaping for continuous control, hooked into :func:`rewardlab.training.train`.

``shaping.kind`` (:class:`rewardlab.config.ShapingConfig`) picks one of the thesis's three
designers, generalised from the tabular ones in this package:

==========  ==========================================  ==================================
kind        what the learner is trained on              module
==========  ==========================================  ==================================
teacher     ``r + gamma Phi(s') - Phi(s)``,              :mod:`~rewardlab.shaping.teacher`,
            ``Phi = V_teacher`` (PBRS, policy-invariant);  :mod:`~rewardlab.shaping.scripted`
            an SB3 model's critic, or the fitted value
            of a scripted MetaWorld policy
adaptive    ``r + sum_i (w_i - 1) c_i``, weights of the  :mod:`~rewardlab.shaping.adaptive`
            reward's components re-fitted to the
            learner's recent episodes
meta        ``r + r_phi(s, a) + B(s')``, ``r_phi``       :mod:`~rewardlab.shaping.meta`
            learnt by a meta-gradient of the task
            return, ``B`` a hashed-count bonus
==========  ==========================================  ==================================

Each works with PPO and SAC and with a generated program or the env's own reward. A
:class:`Shaper` has two hooks: :meth:`Shaper.wrap` is applied to every env copy in
:func:`rewardlab.training.make_vec_env` (under ``Monitor``, so the raw observation is seen and
``info["reward/<name>"]`` is visible), and :meth:`Shaper.callbacks` are added to the learner's
callbacks. The env copies and the callbacks share the shaper's state in-process (the vec env
is a ``DummyVecEnv``). Evaluation never sees the shaping: it scores the task's own metric.

CLI::

    rewardlab train task=mujoco/hopper_forward shaping.kind=teacher shaping.teacher=<run>/rewards/v0
    rewardlab train task=metaworld/drawer_close reward_file=env shaping=teacher shaping.teacher=scripted
    rewardlab train task=mujoco/hopper_forward shaping.kind=adaptive shaping.update_every=8192
    rewardlab train task=mujoco/hopper_forward algo=sac shaping.kind=meta shaping.novelty_weight=0.05

Example:
    >>> from rewardlab.config import AlgoConfig, ShapingConfig, TrainConfig
    >>> make_shaper(ShapingConfig(), AlgoConfig(), TrainConfig(), Path(".")) is None
    True
    >>> shaper = make_shaper(ShapingConfig(kind="adaptive"), AlgoConfig(), TrainConfig(), Path("."))
    >>> type(shaper).__name__
    'AdaptiveShaper'
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rewardlab.config import AlgoConfig, ShapingConfig, TrainConfig
from rewardlab.shaping.adaptive import AdaptiveCallback, AdaptiveState, ReweightedReward
from rewardlab.shaping.meta import IntrinsicShaping, MetaCallback, MetaState
from rewardlab.shaping.scripted import FIT_FILE, VALUE_FILE, ScriptedValue, fit_scripted_value
from rewardlab.shaping.teacher import Potential, PotentialShaping, TeacherPotential
from rewardlab.tasks.registry import TaskSpec

KINDS = ("none", "teacher", "adaptive", "meta")


class Shaper:
    """The two hooks :func:`rewardlab.training.train` calls."""

    def __init__(self, cfg: ShapingConfig, gamma: float, run_dir: Path) -> None:
        self.cfg, self.gamma, self.run_dir = cfg, gamma, run_dir

    def wrap(self, env: gym.Env, *, from_program: bool) -> gym.Env:
        """Wrap one env copy (``from_program``: its reward is a reward program's)."""
        raise NotImplementedError

    def callbacks(self) -> list[BaseCallback]:
        """Callbacks for ``model.learn`` (call after the envs are wrapped)."""
        return []


class TeacherShaper(Shaper):
    """Potential-based shaping with ``Phi = potential_scale * V_teacher`` (loaded once).

    The teacher is an SB3 model (its critic), or with ``shaping.teacher=scripted`` the task's
    scripted MetaWorld policy, whose value is fitted into ``<run_dir>/teacher/`` before
    training (and loaded from there when the training resumes), or a fitted ``value.pt``.
    """

    def __init__(
        self, cfg: ShapingConfig, gamma: float, run_dir: Path, task: TaskSpec | None = None
    ) -> None:
        super().__init__(cfg, gamma, run_dir)
        if not cfg.teacher:
            raise ValueError(
                "shaping.kind=teacher needs shaping.teacher=<run dir, version dir, model zip, scripted or value.pt>"
            )
        self.potential: Potential
        if cfg.teacher == "scripted":
            self.potential, self.obs_dim = self._scripted(task)
        elif cfg.teacher.endswith(".pt"):
            value = ScriptedValue.load(Path(cfg.teacher), cfg.potential_scale)
            self.potential, self.obs_dim = value, value.net.obs_dim
        else:
            model = TeacherPotential.load(
                cfg.teacher, cfg.teacher_algo, cfg.potential_scale, reward_units=cfg.teacher_reward_units
            )  # fmt: skip
            shape = model.model.observation_space.shape
            self.potential, self.obs_dim = model, int(np.prod(shape)) if shape else 0

    def _scripted(self, task: TaskSpec | None) -> tuple[ScriptedValue, int]:
        folder = self.run_dir / "teacher"
        if (folder / VALUE_FILE).exists() and (folder / FIT_FILE).exists():  # a resumed training
            value = ScriptedValue.load(folder / VALUE_FILE, self.cfg.potential_scale)
            return value, value.net.obs_dim
        if task is None or task.benchmark != "metaworld":
            name = task.name if task is not None else "this task"
            raise ValueError(
                f"shaping.teacher=scripted needs a MetaWorld task with a scripted policy, not {name}"
            )
        value, _ = fit_scripted_value(
            task, folder, gamma=self.gamma, episodes=self.cfg.scripted_episodes,
            noise=tuple(self.cfg.scripted_noise), epochs=self.cfg.value_epochs,
        )  # fmt: skip
        value.scale = self.cfg.potential_scale
        return value, value.net.obs_dim

    def wrap(self, env: gym.Env, *, from_program: bool) -> gym.Env:
        shape = env.observation_space.shape
        ours = int(np.prod(shape)) if shape else 0
        if self.obs_dim != ours:
            raise ValueError(
                f"teacher {self.cfg.teacher} observes {self.obs_dim} values, this task's env {ours}"
            )
        return PotentialShaping(env, self.potential, self.gamma)


class AdaptiveShaper(Shaper):
    """Component re-weighting; the weights are shared by all env copies."""

    def __init__(self, cfg: ShapingConfig, gamma: float, run_dir: Path) -> None:
        super().__init__(cfg, gamma, run_dir)
        self.state = AdaptiveState(episodes=deque(maxlen=cfg.window))

    def wrap(self, env: gym.Env, *, from_program: bool) -> gym.Env:
        return ReweightedReward(env, self.state, from_program=from_program)

    def callbacks(self) -> list[BaseCallback]:
        return [AdaptiveCallback(self.state, self.cfg, self.run_dir)]


class MetaShaper(Shaper):
    """Learned intrinsic reward + novelty; the networks are built at the first :meth:`wrap`."""

    def __init__(self, cfg: ShapingConfig, gamma: float, run_dir: Path, seed: int = 0) -> None:
        super().__init__(cfg, gamma, run_dir)
        if cfg.extrinsic not in ("progress", "env"):
            raise ValueError(
                f"shaping.extrinsic must be 'progress' or 'env', not {cfg.extrinsic!r}"
            )
        self.seed = seed
        self.state: MetaState | None = None

    def wrap(self, env: gym.Env, *, from_program: bool) -> gym.Env:
        obs_space, act_space = env.observation_space, env.action_space
        if not (isinstance(obs_space, gym.spaces.Box) and isinstance(act_space, gym.spaces.Box)):
            raise ValueError("shaping.kind=meta needs Box observation and action spaces")
        if self.state is None:
            self.state = MetaState(obs_space.shape[0], act_space.shape[0], self.cfg, seed=self.seed)
        return IntrinsicShaping(env, self.state, extrinsic=self.cfg.extrinsic)

    def callbacks(self) -> list[BaseCallback]:
        if self.state is None:
            raise RuntimeError("MetaShaper.callbacks() called before any env was wrapped")
        return [MetaCallback(self.state, self.cfg, self.gamma, self.run_dir)]


def learner_gamma(algo: AlgoConfig) -> float:
    return float(dict(algo.kwargs).get("gamma", 0.99))


def make_shaper(
    cfg: ShapingConfig | Any,
    algo: AlgoConfig,
    train: TrainConfig,
    run_dir: Path,
    task: TaskSpec | None = None,
) -> Shaper | None:
    """The shaper for ``cfg.kind`` (``None`` for ``none``); ``task`` is needed by the scripted
    teacher."""
    if cfg.kind not in KINDS:
        raise ValueError(f"unknown shaping.kind {cfg.kind!r}; one of {', '.join(KINDS)}")
    gamma = float(cfg.gamma) if cfg.gamma is not None else learner_gamma(algo)
    if cfg.kind == "teacher":
        return TeacherShaper(cfg, gamma, run_dir, task)
    if cfg.kind == "adaptive":
        return AdaptiveShaper(cfg, gamma, run_dir)
    if cfg.kind == "meta":
        return MetaShaper(cfg, gamma, run_dir, seed=train.seed)
    return None
