"""A scripted MetaWorld policy as teacher: its value, fitted from rollouts, as the potential.

MetaWorld ships a scripted expert policy per task (:func:`rewardlab.tasks.metaworld.
scripted_policy`) but no value function. :func:`fit_scripted_value` makes one:

1. roll out the scripted policy, and noisy variants of it for coverage of states off the
   expert's path (Gaussian noise of each std in ``noise`` added to every action, clipped), for
   the task's full horizon (:func:`rewardlab.reference_rollouts.demonstrations`);
2. compute discounted Monte-Carlo returns with the *learner's* ``gamma`` under the task's
   **expert reward** (the benchmark's own, MetaWorld's pinned ``v2`` reward). Decision: the
   scripted policy is an expert *for that reward*, and a potential computed from it does not
   depend on the reward program being trained, so one fitted teacher serves every program (and a
   faulty program cannot corrupt it). PBRS keeps the optimal policies of whatever reward it is
   added to, whichever potential is used;
3. regress a small MLP ``V(obs)`` (observation only, so ``Phi`` is a function of the state as
   PBRS requires) on those returns.

MetaWorld episodes are truncated at the horizon ``T``, so the Monte-Carlo return at step ``t``
misses ``gamma^(T - t)`` of the future. The fit therefore runs twice: first on the steps whose
missing part is below ``tail_tol`` (pure Monte-Carlo targets), then on every step with the
missing tail bootstrapped from the first fit, ``G_t + gamma^(T - t) V_1(s_T)``.

Episodes are split into fitting and held-out ones (every ``holdout``-th of each noise level);
``fit.json`` reports the held-out R^2 (on the pure Monte-Carlo targets and on all targets), the
R^2 per noise level, and how the value moves along the held-out noiseless demonstrations up to
their success (the mean per-step increment and the fraction of steps it increases).

:class:`ScriptedValue` is the potential ``Phi`` for :class:`~rewardlab.shaping.teacher.
PotentialShaping`; it is saved as ``teacher/value.pt`` with ``teacher/fit.json`` in the
training directory and loaded from there on resume.

Example:
    >>> net = ValueNet(obs_dim=3, hidden=8)
    >>> net(torch.zeros(2, 3)).shape
    torch.Size([2])
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rewardlab.shaping.learners import discounted_returns

VALUE_FILE = "value.pt"
FIT_FILE = "fit.json"


class ValueNet(nn.Module):
    """``V(obs)``: an MLP on standardised observations whose output is de-standardised to
    return units (both statistics are buffers, saved with the weights)."""

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    ret_mean: torch.Tensor
    ret_std: torch.Tensor

    def __init__(self, obs_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.obs_dim, self.hidden = int(obs_dim), int(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )  # fmt: skip
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("ret_mean", torch.zeros(()))
        self.register_buffer("ret_std", torch.ones(()))

    def set_statistics(self, obs: np.ndarray, returns: np.ndarray) -> None:
        """Standardise with these observations' and returns' mean and std."""
        self.obs_mean.copy_(torch.as_tensor(obs.mean(axis=0), dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(obs.std(axis=0) + 1e-6, dtype=torch.float32))
        self.ret_mean.fill_(float(returns.mean()))
        self.ret_std.fill_(float(returns.std() + 1e-6))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = (obs - self.obs_mean) / self.obs_std
        return self.mlp(x).squeeze(-1) * self.ret_std + self.ret_mean


@dataclass
class ScriptedValue:
    """``Phi(s) = scale * V(s)`` for raw observations (a :data:`~rewardlab.shaping.teacher.
    Potential`)."""

    net: ValueNet
    scale: float = 1.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            values = self.net(torch.as_tensor(np.asarray(obs, dtype=np.float32)))
        return self.scale * values.numpy().astype(np.float64)

    def save(self, path: Path, **meta: Any) -> None:
        """Write the weights, statistics and ``meta`` (task, gamma, ...) to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "obs_dim": self.net.obs_dim,
            "hidden": self.net.hidden,
            "state_dict": self.net.state_dict(),
            "meta": meta,
        }
        torch.save(payload, path)

    @classmethod
    def load(cls, path: Path, scale: float = 1.0) -> ScriptedValue:
        """Load a value saved by :meth:`save` (a directory means its ``teacher/value.pt``)."""
        if path.is_dir():
            path = path / "teacher" / VALUE_FILE
        payload = torch.load(path, map_location="cpu", weights_only=True)
        net = ValueNet(payload["obs_dim"], payload["hidden"])
        net.load_state_dict(payload["state_dict"])
        net.eval()
        return cls(net, scale)


@dataclass
class Rollouts:
    """Steps of the scripted rollouts, flattened: observation, regression target, whether the
    target is a pure Monte-Carlo return (its missing tail below ``tail_tol``), episode index,
    noise level, step index; plus per episode the final observation and the discount of the
    missing tail."""

    obs: np.ndarray
    mc_return: np.ndarray
    pure: np.ndarray
    episode: np.ndarray
    noise: np.ndarray
    step: np.ndarray
    final_obs: np.ndarray
    tail_discount: np.ndarray
    """``gamma^(T - t)`` per step: the weight of ``V(s_T)`` in the bootstrapped target."""
    success_step: dict[int, int]
    """First success step of each successful episode."""


def scripted_rollouts(
    task: Any,
    *,
    gamma: float,
    episodes: int,
    noise: Sequence[float],
    seed: int = 0,
    tail_tol: float = 0.05,
) -> Rollouts:
    """Roll out the scripted policy ``episodes`` times per noise level for the full horizon
    and compute the discounted Monte-Carlo returns of the expert reward."""
    from rewardlab.reference_rollouts import demonstrations

    obs, ret, pure, ep_idx, lvl, steps, finals, tails = [], [], [], [], [], [], [], []
    success: dict[int, int] = {}
    k = 0
    for level_index, sigma in enumerate(noise):
        demos = demonstrations(
            task, episodes, seed=seed + 1000 * level_index, until_success=False, successful_only=False,
            max_attempts=episodes, action_noise=float(sigma),
        )  # fmt: skip
        for demo in demos:
            T = demo.length
            G = discounted_returns(demo.env_rewards.tolist(), gamma)
            tail = gamma ** (T - np.arange(T))
            obs.append(demo.observations[:T])
            ret.append(G)
            pure.append(tail <= tail_tol)
            tails.append(tail)
            ep_idx.append(np.full(T, k))
            lvl.append(np.full(T, float(sigma)))
            steps.append(np.arange(T))
            finals.append(demo.observations[T])
            if demo.success:
                success[k] = int(np.argmax(demo.successes))
            k += 1
    return Rollouts(
        obs=np.concatenate(obs).astype(np.float32), mc_return=np.concatenate(ret),
        pure=np.concatenate(pure), episode=np.concatenate(ep_idx), noise=np.concatenate(lvl),
        step=np.concatenate(steps), final_obs=np.array(finals, dtype=np.float32),
        tail_discount=np.concatenate(tails), success_step=success,
    )  # fmt: skip


def regress(
    net: ValueNet,
    obs: np.ndarray,
    target: np.ndarray,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch: int = 256,
    seed: int = 0,
) -> float:
    """Fit ``net`` to ``target`` by mean-squared error (Adam, minibatches); returns the final
    training loss in standardised units."""
    gen = torch.Generator().manual_seed(seed)
    net.set_statistics(obs, target)
    x = torch.as_tensor(obs, dtype=torch.float32)
    y = (torch.as_tensor(target, dtype=torch.float32) - net.ret_mean) / net.ret_std
    opt = torch.optim.Adam(net.mlp.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            pred = net.mlp((x[idx] - net.obs_mean) / net.obs_std).squeeze(-1)
            loss = ((pred - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return float(loss.detach())


def r_squared(pred: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (``nan`` for fewer than 2 points)."""
    if len(target) < 2:
        return float("nan")
    ss_tot = float(((target - target.mean()) ** 2).sum())
    return 1.0 - float(((target - pred) ** 2).sum()) / max(ss_tot, 1e-12)


def fit_scripted_value(
    task: Any,
    out_dir: Path,
    *,
    gamma: float,
    episodes: int = 6,
    noise: Sequence[float] = (0.0, 0.3, 1.0, 3.0),
    hidden: int = 64,
    epochs: int = 60,
    holdout: int = 3,
    seed: int = 0,
    tail_tol: float = 0.05,
) -> tuple[ScriptedValue, dict[str, Any]]:
    """Fit ``V`` of ``task``'s scripted policy (see the module docs); write ``out_dir /
    value.pt`` and ``out_dir / fit.json``; return the potential and the report.

    Args:
        gamma: the learner's discount (the potential's).
        episodes: rollouts per noise level (each the task's full horizon).
        noise: standard deviations of the Gaussian action noise, one set of rollouts each.
        hidden: width of the MLP's two hidden layers.
        epochs: passes over the fitting steps, per fit.
        holdout: every ``holdout``-th episode of each noise level is held out (``episodes``
            must be at least ``holdout`` for a held-out set).
        tail_tol: a step's target is pure Monte Carlo when ``gamma^(T - t) <= tail_tol``.

    Raises:
        ValueError: no held-out episode, or no pure Monte-Carlo target at all (``gamma`` too
            close to 1 for the horizon).
    """
    if episodes < holdout:
        raise ValueError(
            f"scripted teacher: {episodes} episodes per noise level leave none held out (need >= {holdout})"
        )
    torch.manual_seed(seed)
    started = time.time()
    data = scripted_rollouts(
        task, gamma=gamma, episodes=episodes, noise=noise, seed=seed, tail_tol=tail_tol
    )
    if not data.pure.any():
        raise ValueError(
            f"scripted teacher: gamma={gamma} leaves no step with gamma^(T-t) <= {tail_tol} in a {task.horizon}-step episode"
        )
    held = (data.episode % episodes) % holdout == holdout - 1
    fit = ~held
    # 1) pure Monte-Carlo targets; 2) every step, the truncated tail bootstrapped from fit 1
    net = ValueNet(data.obs.shape[1], hidden)
    regress(
        net, data.obs[fit & data.pure], data.mc_return[fit & data.pure], epochs=epochs, seed=seed
    )
    first = ScriptedValue(net)
    target = data.mc_return + data.tail_discount * first(data.final_obs)[data.episode]
    net = ValueNet(data.obs.shape[1], hidden)
    loss = regress(net, data.obs[fit], target[fit], epochs=epochs, seed=seed + 1)
    value = ScriptedValue(net)
    pred = value(data.obs)
    increments, rising = [], []
    for k, first_success in data.success_step.items():
        if data.noise[data.episode == k][0] != 0.0 or not held[data.episode == k][0]:
            continue
        v = pred[data.episode == k][: first_success + 1]
        increments.append(float(np.diff(v).mean()) if len(v) > 1 else 0.0)
        rising.append(float((np.diff(v) > 0).mean()) if len(v) > 1 else 0.0)
    report: dict[str, Any] = {
        "task": task.name, "gamma": gamma, "reward": "expert (benchmark's own)", "noise": list(map(float, noise)),
        "episodes_per_noise": episodes, "steps": int(len(data.obs)), "fit_steps": int(fit.sum()),
        "heldout_steps": int(held.sum()), "pure_mc_steps": int(data.pure.sum()), "tail_tol": tail_tol,
        "hidden": hidden, "epochs": epochs, "final_train_loss_std_units": round(loss, 5),
        "heldout_r2_pure_mc": r_squared(pred[held & data.pure], data.mc_return[held & data.pure]),
        "heldout_r2": r_squared(pred[held], target[held]),
        "train_r2": r_squared(pred[fit], target[fit]),
        "heldout_r2_by_noise": {
            str(float(s)): r_squared(pred[held & (data.noise == s)], target[held & (data.noise == s)]) for s in noise
        },
        "success_rate_by_noise": {
            str(float(s)): float(np.mean([k in data.success_step for k in np.unique(data.episode[data.noise == s])]))
            for s in noise
        },
        "heldout_demo_value_increment_to_success": float(np.mean(increments)) if increments else float("nan"),
        "heldout_demo_fraction_rising_to_success": float(np.mean(rising)) if rising else float("nan"),
        "value_range": [float(pred.min()), float(pred.max())],
        "return_range": [float(target.min()), float(target.max())],
        "seconds": round(time.time() - started, 1),
    }  # fmt: skip
    report = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in report.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    value.save(out_dir / VALUE_FILE, task=task.name, gamma=gamma, reward="expert")
    (out_dir / FIT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return value, report
