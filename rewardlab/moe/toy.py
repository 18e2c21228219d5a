"""Conflicting toy tasks for multi-task policies (one-step episodes, so a run takes seconds),
and the comparison of an MoE policy with dense MLPs on them, matched on total parameters
(``dense``) or on the parameters each input passes through (``dense_active``).

The observation is ``[x, one-hot task id]`` with ``x ~ U(-1, 1)``; task 0 wants the action
``a = 0.8 sin(freq x)``, task 1 the opposite ``-0.8 sin(freq x)`` (with 4 tasks, tasks 2 and 3
want ``+-0.8 cos(freq x)``): the same ``x`` demands opposite actions, through a nonlinear
function, so a shared network must spend hidden units on telling the tasks apart. The reward
is ``-scale_t * |a - target|``; with unequal ``scales`` (one task's reward orders of magnitude
larger, as generated rewards are, and no per-task normalisation) the tasks also compete for
the optimiser: a shared network's updates follow the large task.

:func:`task_success` scores a policy per task on a fixed grid of ``x`` (deterministic
actions): the share of points whose action is within ``tol`` of the target.
:func:`train_toy` trains one arm with PPO: ``moe`` (one top-1 MoE layer of ``experts`` MLP
experts ``in -> hidden -> latent`` per actor and critic, routed by the task id,
``moe.route_on=task``), ``moe_st`` (``moe`` with the task routers started balanced and hard:
task ``t`` on expert ``t mod E``, the chosen expert weighted 1 with a straight-through
gradient: ``moe.spread_tasks`` and ``moe.straight_through``, as ``rewardlab train`` builds
them), ``moe_obs`` (the same layer routed by the whole observation),
``dense`` (SB3's ``[w, w]`` MLP, ``w`` the smallest width with at least the MoE arm's
trainable parameters) or ``dense_active`` (``[hidden, latent]``: one expert's widths, the
MoE's compute per input; :func:`active_parameters` counts both). Every arm gets the same
observation, optimiser, steps and seeds.

What was measured (``experiments/moe_multitask/README.md``): the plain ``moe`` arm (Switch
top-1: the chosen expert weighted by its probability, about ``1 / E`` for a fresh router, and
a random near-uniform initial gate) never beat a dense MLP. ``moe_st`` did, in learning speed:
on two opposite tasks at ``freq=6`` after 12,000 steps (12 seeds) mean success 0.81 against
the parameter-matched dense MLP's 0.57 (and ``moe``'s 0.29), ahead in every seed; the dense MLP
catches up by 24,000 steps.

Example:
    >>> env = OppositeTasks()
    >>> obs, _ = env.reset(seed=0)
    >>> obs.shape, float(obs[1] + obs[2])
    ((3,), 1.0)
    >>> _, reward, done, _, _ = env.step(np.array([env.target()], np.float32))
    >>> round(float(reward), 4), done
    (-0.0, True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ARMS = ("dense", "dense_active", "moe", "moe_st", "moe_obs")
"""The arms :func:`train_toy` trains."""


class OppositeTasks(gym.Env[np.ndarray, np.ndarray]):
    """The tasks (``len(scales)`` of them, 2 or 4: see :func:`target`); each reset draws the
    task (uniformly) and ``x``."""

    def __init__(self, scales: Sequence[float] = (1.0, 1.0), freq: float = 3.0) -> None:
        self.scales = tuple(float(s) for s in scales)
        if len(self.scales) not in (2, 4):
            raise ValueError(f"the toy has 2 or 4 tasks, not {len(self.scales)}")
        self.freq = float(freq)
        self.observation_space = spaces.Box(-1, 1, (1 + len(self.scales),), np.float32)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)
        self.task, self.x = 0, 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.task = int(self.np_random.integers(len(self.scales)))
        self.x = float(self.np_random.uniform(-1, 1))
        return observation(self.x, self.task, len(self.scales)), {}

    def target(self) -> float:
        return float(target(self.x, self.task, self.freq))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        error = abs(float(np.clip(action[0], -1, 1)) - self.target())
        return (
            observation(self.x, self.task, len(self.scales)),
            -self.scales[self.task] * error,
            True,
            False,
            {"task": self.task},
        )


def observation(x: float, task: int, tasks: int = 2) -> np.ndarray:
    """``[x, one-hot task id of length tasks]``."""
    return np.array([x, *(task == t for t in range(tasks))], np.float32)


def target(x: float | np.ndarray, task: int, freq: float = 3.0) -> Any:
    """Task 0 ``0.8 sin(freq x)``, 1 ``-0.8 sin(freq x)``, 2 ``0.8 cos(freq x)``, 3
    ``-0.8 cos(freq x)``."""
    wave = np.sin if task < 2 else np.cos
    return (1 - 2 * (task % 2)) * 0.8 * wave(freq * np.asarray(x))


def task_success(
    model: Any, tol: float = 0.2, points: int = 41, freq: float = 3.0, tasks: int = 2
) -> list[float]:
    """Per task, the share of ``points`` grid values of ``x`` in [-1, 1] where ``model``'s
    deterministic action is within ``tol`` of the target."""
    xs = np.linspace(-1, 1, points)
    out = []
    for task in range(tasks):
        obs = np.stack([observation(x, task, tasks) for x in xs])
        actions = np.clip(model.predict(obs, deterministic=True)[0][:, 0], -1, 1)
        out.append(float(np.mean(np.abs(actions - target(xs, task, freq)) <= tol)))
    return out


@dataclass
class ToySettings:
    """One toy comparison's budget and sizes (the same for every arm)."""

    steps: int = 12_000
    """Env steps (= episodes) of PPO."""
    scales: tuple[float, ...] = (1.0, 1.0)
    """Reward scale of each task (no per-task normalisation); its length is the number of
    tasks, 2 or 4."""
    freq: float = 3.0
    """Targets ``+-0.8 sin(freq x)`` (and ``+-0.8 cos(freq x)``)."""
    experts: int = 2
    """MoE arms: experts per layer (top-1)."""
    hidden: int = 8
    """MoE arms: hidden width of each expert."""
    latent: int = 8
    """MoE arms: the layer's output width (SB3's ``net_arch=[latent]``)."""
    balance_coef: float = 0.01
    """MoE arms: weight of the router's Switch balance loss."""
    n_envs: int = 8
    n_steps: int = 32
    batch_size: int = 64
    n_epochs: int = 4
    learning_rate: float = 3e-3
    evaluations: int = 4
    """Success is measured this many times, evenly spaced over ``steps``."""


@dataclass
class ToyResult:
    """What :func:`train_toy` measured."""

    arm: str
    seed: int
    parameters: int
    """Trainable parameters of the policy (actor and critic)."""
    active: int
    """Of those, the ones one input passes through (:func:`active_parameters`)."""
    width: list[int]
    """``net_arch`` of the arm."""
    curve: list[dict[str, Any]] = field(default_factory=list)
    """``{"steps", "success": [per task]}`` per evaluation."""
    final: list[float] = field(default_factory=list)
    """Success per task at the end."""
    routing: list[list[float]] = field(default_factory=list)
    """MoE arms: the actor's mean gate weight per (task, expert) on the evaluation grid."""
    wall_s: float = 0.0
    model: Any = field(default=None, repr=False, compare=False)
    """The trained SB3 model (not serialised)."""

    def to_dict(self) -> dict[str, Any]:
        """The measurements as plain values (without :attr:`model`)."""
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def toy_model(policy: Any, kwargs: dict[str, Any], seed: int, s: ToySettings) -> Any:
    """An untrained PPO model of ``policy`` on the toy (``settings``' tasks and PPO
    hyperparameters)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(OppositeTasks, n_envs=s.n_envs, seed=seed,
                       env_kwargs={"scales": s.scales, "freq": s.freq})  # fmt: skip
    return PPO(policy, env, n_steps=s.n_steps, batch_size=s.batch_size, n_epochs=s.n_epochs,
               learning_rate=s.learning_rate, seed=seed, policy_kwargs=kwargs)  # fmt: skip


def arm_kwargs(arm: str, s: ToySettings) -> tuple[Any, dict[str, Any]]:
    """The policy and ``policy_kwargs`` of ``arm``: ``dense`` matched to the MoE's trainable
    parameters (the smallest ``[w, w]`` with at least as many), ``dense_active`` to its
    active ones (``[hidden, latent]``: one expert's widths, so each input passes through a
    network of the same size as in the top-1 MoE, which holds ``experts`` times the expert
    parameters)."""
    from rewardlab.moe.policies import MoEActorCriticPolicy, parameter_counts

    if arm not in ARMS:
        raise ValueError(f"arm must be one of {', '.join(ARMS)}, not {arm!r}")
    moe = {"router": "topk", "experts": s.experts, "k": 1, "hidden": s.hidden,
           "balance_coef": s.balance_coef, "route_on": "obs" if arm == "moe_obs" else "task",
           "straight_through": arm == "moe_st", "spread_tasks": arm == "moe_st"}  # fmt: skip
    moe_kwargs = {"net_arch": [s.latent], "moe": moe, "task_count": len(s.scales)}
    if arm == "dense_active":  # one expert's widths: the MoE's compute per input
        return "MlpPolicy", {"net_arch": [s.hidden, s.latent]}
    if arm != "dense":
        return MoEActorCriticPolicy, moe_kwargs
    target = parameter_counts(toy_model(MoEActorCriticPolicy, moe_kwargs, 0, s).policy)["total"]
    width = next(
        w for w in range(1, 1024)
        if parameter_counts(toy_model("MlpPolicy", {"net_arch": [w, w]}, 0, s).policy)["total"] >= target
    )  # fmt: skip
    return "MlpPolicy", {"net_arch": [width, width]}


def active_parameters(policy: Any) -> int:
    """Trainable parameters one input passes through: all of a dense policy's, and of an MoE
    policy's experts only the ``k`` of ``experts`` it routes to (routers, heads and dense
    layers count in full)."""
    from rewardlab.moe.policies import moe_layers, parameter_counts

    idle = 0
    for layer in moe_layers(policy).values():
        experts = sum(p.numel() for p in layer.experts.parameters() if p.requires_grad)
        idle += experts * (layer.cfg.experts - layer.cfg.k) // layer.cfg.experts
    return parameter_counts(policy)["total"] - idle


def routing_by_task(
    model: Any, freq: float = 3.0, points: int = 41, tasks: int = 2
) -> list[list[float]]:
    """The actor's mean gate weight per (task, expert) over the grid of ``x`` (empty for a
    dense policy)."""
    import torch

    from rewardlab.moe.policies import moe_layers

    layer = moe_layers(model.policy).get("pi")
    if layer is None:
        return []
    xs = np.linspace(-1, 1, points)
    out = []
    with torch.no_grad():
        for task in range(tasks):
            obs = torch.as_tensor(np.stack([observation(x, task, tasks) for x in xs]))
            layer(obs)
            assert layer.last is not None
            out.append([float(v) for v in layer.last.weights.mean(0)])
    layer.statistics()  # this probe is not training: drop its record
    return out


def train_toy(arm: str, seed: int, settings: ToySettings | None = None) -> ToyResult:
    """Train ``arm`` (:data:`ARMS`) on the two tasks with PPO for ``settings.steps`` env steps
    from ``seed``; success per task along the way and at the end."""
    import torch

    from rewardlab.moe.policies import parameter_counts

    s = settings or ToySettings()
    torch.set_num_threads(1)
    policy, kwargs = arm_kwargs(arm, s)
    model = toy_model(policy, kwargs, seed, s)
    total = parameter_counts(model.policy)["total"]
    result = ToyResult(arm, seed, total, active_parameters(model.policy), list(kwargs["net_arch"]))
    start = time.perf_counter()
    for step in np.linspace(0, s.steps, s.evaluations + 1)[1:].astype(int):
        model.learn(int(step) - model.num_timesteps, reset_num_timesteps=False)
        success = task_success(model, freq=s.freq, tasks=len(s.scales))
        result.curve.append({"steps": int(model.num_timesteps), "success": success})
    result.final = result.curve[-1]["success"]
    result.routing = routing_by_task(model, s.freq, tasks=len(s.scales))
    result.wall_s = round(time.perf_counter() - start, 1)
    result.model = model
    return result
