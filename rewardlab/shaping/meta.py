"""Agent-driven shaping: an intrinsic reward learned online by a meta-gradient, plus novelty.

The continuous analogue of ExploRS (:mod:`rewardlab.shaping.explors`). The learner is trained on

    r_hat(s, a, s') = r(s, a, s') + r_phi(s, a) + B(s')

- ``B(s') = novelty_weight * exploration_bonus(N(h(s')))`` = ``w / sqrt(1 + N)``, with ``N``
  the visit count of the SimHash code ``h(s') = sign(A z(s'))`` (Tang et al. 2017; ``A`` a
  fixed Gaussian ``bits x obs_dim`` matrix, ``z`` the running-normalised observation): the
  tabular count bonus on hashed states.
- ``r_phi(s, a) = scale * tanh(MLP_phi([z(s), a]))`` is the intrinsic reward network.

**The meta-gradient (what is computed exactly).** Take the learner's update as one
policy-gradient step on its reward, of which the intrinsic part is credited to its own step:
``theta' = theta + alpha * mean_t grad_theta log pi(a_t|s_t) * r_phi(s_t, a_t)``. The meta
objective is the extrinsic (task) return ``J(theta')``, with gradient estimated on the same
batch as ``g = mean_u grad_theta log pi(a_u|s_u) * A_u`` (``A`` the extrinsic advantage from a
learned critic on the task return, as in ExploRS). Then, to first order in ``alpha``,

    grad_phi J(theta') = alpha * mean_t k_t grad_phi r_phi(s_t, a_t),
    k_t = grad_theta log pi(a_t|s_t) . g

— the kernel ``k_t`` (how much raising the reward of sample ``t`` moves the policy towards
higher task return) is computed *exactly* for the learner's actual SB3 policy with one double
backward pass (:func:`policy_kernel`). The approximations are: (1) the learner's PPO/SAC
update is replaced by this one-step, myopic (intrinsic reward not propagated through the
return) policy-gradient proxy, (2) first order in ``alpha``. The meta loss adds an L2 term that
keeps ``r_phi`` small where it carries no signal:

    L(phi) = -mean_t k_t r_phi(s_t, a_t) / rms(k) + intrinsic_l2 / 2 * mean_t (r_phi / scale)^2

For a tabular softmax policy ``k_t = (1/N) sum_{u: s_u = s_t} (e_{a_t} - pi)(e_{a_u} - pi) A_u``
(its own term has the sign of ``A_t``): like ExploRS's tabular rule ``phi(s, .) += eta pi(a|s)
(G - V(s)) (onehot(a) - pi(.|s))`` it raises the intrinsic reward of actions with positive
extrinsic advantage, but it is not the same update: here each sample's credit is this explicit
kernel of the learner's own policy gradient.

The extrinsic return is the task's own: increases of ``task/progress`` plus ``success`` per
step (``extrinsic=progress``) or the benchmark's reward (``extrinsic=env``); its critic
``V_psi(z(s))`` regresses the discounted return-to-go (bootstrapped at truncation and at the
end of the batch, 0 after termination).

Example:
    >>> import torch
    >>> net = IntrinsicReward(obs_dim=2, act_dim=1, hidden=8, scale=0.5)
    >>> x, k = torch.randn(64, 3), torch.randn(64)
    >>> before = meta_loss(net, x, k, l2=1.0).item()
    >>> opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    >>> for _ in range(20):
    ...     opt.zero_grad(); meta_loss(net, x, k, l2=1.0).backward(); opt.step()
    >>> meta_loss(net, x, k, l2=1.0).item() < before
    True
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from rewardlab.shaping.adaptive import append_row
from rewardlab.shaping.explors import exploration_bonus


def mlp(inputs: int, hidden: int, outputs: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.Tanh(),
        nn.Linear(hidden, hidden),
        nn.Tanh(),
        nn.Linear(hidden, outputs),
    )


class IntrinsicReward(nn.Module):
    """``r_phi(s, a) = scale * tanh(MLP([z(s), a]))``; input is the concatenation ``x``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, scale: float) -> None:
        super().__init__()
        self.net, self.scale = mlp(obs_dim + act_dim, hidden), float(scale)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)  # start at r_phi = 0: no shaping until learnt
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.net(x).squeeze(-1))


def meta_loss(net: IntrinsicReward, x: torch.Tensor, k: torch.Tensor, l2: float) -> torch.Tensor:
    """``-mean(k r_phi(x)) / rms(k) + l2/2 * mean((r_phi / scale)^2)`` (module docstring)."""
    r = net(x)
    k = k / k.pow(2).mean().sqrt().clamp_min(1e-8)
    return -(k * r).mean() + 0.5 * l2 * (r / net.scale).pow(2).mean()


def policy_log_prob(model: BaseAlgorithm, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``log pi(a|s)`` of the learner's SB3 policy (PPO: its distribution; SAC: the squashed
    Gaussian of its actor, actions in the policy's [-1, 1] space), differentiable."""
    if isinstance(model, SAC):
        actor = model.actor
        mean, log_std, kwargs = actor.get_action_dist_params(obs)
        return actor.action_dist.proba_distribution(mean, log_std, **kwargs).log_prob(actions)
    return model.policy.get_distribution(obs).log_prob(actions)  # type: ignore[operator]


def policy_parameters(model: BaseAlgorithm) -> list[nn.Parameter]:
    module = model.actor if isinstance(model, SAC) else model.policy
    return [p for p in module.parameters() if p.requires_grad]


def policy_kernel(
    log_prob: torch.Tensor, advantages: torch.Tensor, params: list[nn.Parameter]
) -> torch.Tensor:
    """``k_t = grad log pi(a_t|s_t) . g`` with ``g = grad mean_u log pi(a_u|s_u) A_u``.

    ``log_prob`` must be a differentiable function of ``params``; per-sample dot products come
    from one double backward: ``k = d/dv [grad_theta (sum_t v_t log pi_t) . g]`` at ``v = 1``.
    """
    g = torch.autograd.grad(
        (log_prob * advantages).mean(), params, retain_graph=True, allow_unused=True
    )
    v = torch.ones_like(log_prob, requires_grad=True)
    grads = torch.autograd.grad((log_prob * v).sum(), params, create_graph=True, allow_unused=True)
    dot = sum(
        ((a * b).sum() for a, b in zip(grads, g, strict=True) if a is not None and b is not None),
        torch.zeros(()),
    )
    if not dot.requires_grad:  # the policy does not depend on these parameters
        return torch.zeros_like(log_prob)
    (k,) = torch.autograd.grad(dot, v)
    return k.detach()


def discounted_targets(
    extrinsic: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    episode_end: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """Return-to-go targets for one env's consecutive steps: ``G_t = e_t + gamma * G_{t+1}``
    inside an episode; at an episode's end ``G_t = e_t + gamma * (1 - terminated) *
    V(s_{t+1})`` (0 after termination, bootstrap at truncation); the batch's last step
    bootstraps with ``V(s_{t+1})`` too. ``next_values[t] = V(s_{t+1})``.

    Example:
        >>> discounted_targets(np.array([1.0, 1.0, 1.0]), np.array([9.0, 9.0, 5.0]),
        ...                    np.array([False, True, False]), np.array([False, True, False]), 0.5)
        array([1.5, 1. , 3.5])
    """
    n = len(extrinsic)
    targets = np.zeros(n)
    running = 0.0
    for t in reversed(range(n)):
        if episode_end[t] or t == n - 1:
            running = 0.0 if terminated[t] else gamma * float(next_values[t])
        else:
            running = gamma * running
        running += float(extrinsic[t])
        targets[t] = running
    return targets


class MetaState:
    """Shared by the env copies (in-process) and the callback: networks, statistics, counts."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: Any, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.intrinsic = IntrinsicReward(obs_dim, act_dim, cfg.hidden, cfg.intrinsic_scale)
        self.critic = mlp(obs_dim, cfg.hidden)
        self.opt_phi = torch.optim.Adam(self.intrinsic.parameters(), lr=cfg.intrinsic_lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.obs_rms = RunningMeanStd(shape=(obs_dim,))
        self.projection = np.random.default_rng(seed).standard_normal((cfg.hash_bits, obs_dim))
        self.counts: dict[int, int] = defaultdict(int)
        self._powers = 1 << np.arange(cfg.hash_bits, dtype=np.int64)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return np.clip(
            (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8), -10, 10
        ).astype(np.float32)

    def novelty(self, z: np.ndarray) -> float:
        """Count the SimHash code of ``z`` and return ``w / sqrt(1 + N)`` (after counting)."""
        if self.cfg.novelty_weight <= 0:
            return 0.0
        code = int(((self.projection @ z) > 0) @ self._powers)
        self.counts[code] += 1
        return self.cfg.novelty_weight * exploration_bonus(self.counts[code])

    def reward(self, x: np.ndarray) -> float:
        with torch.no_grad():
            return float(self.intrinsic(torch.as_tensor(x[None])).item())

    def state_dict(self) -> dict[str, Any]:
        return {"intrinsic": self.intrinsic.state_dict(), "critic": self.critic.state_dict(),
                "obs_mean": self.obs_rms.mean, "obs_var": self.obs_rms.var, "obs_count": self.obs_rms.count,
                "counts": dict(self.counts)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.intrinsic.load_state_dict(state["intrinsic"])
        self.critic.load_state_dict(state["critic"])
        self.obs_rms.mean, self.obs_rms.var, self.obs_rms.count = (
            state["obs_mean"],
            state["obs_var"],
            state["obs_count"],
        )
        self.counts.update(state["counts"])


class IntrinsicShaping(gym.Wrapper):
    """``r_hat = r + r_phi(s, a) + B(s')``; logs ``reward/intrinsic`` and ``reward/novelty``
    and passes the meta update's inputs in ``info["shaping/*"]``."""

    def __init__(self, env: gym.Env, state: MetaState, *, extrinsic: str = "progress") -> None:
        super().__init__(env)
        self.state, self.extrinsic = state, extrinsic
        space = env.action_space
        assert isinstance(space, gym.spaces.Box)
        self._low, self._high = space.low.astype(np.float32), space.high.astype(np.float32)
        self._z = np.zeros(state.obs_dim, dtype=np.float32)
        self._progress, self._success = 0.0, False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._observe(obs)
        self._progress, self._success = 0.0, False
        return obs, info

    def _observe(self, obs: Any) -> np.ndarray:
        raw = np.asarray(obs, dtype=np.float64)
        self.state.obs_rms.update(raw[None])
        self._z = self.state.normalize(raw)
        return self._z

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float32), self._low, self._high)
        scaled = 2.0 * (a - self._low) / (self._high - self._low) - 1.0
        x = np.concatenate([self._z, scaled]).astype(np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        intrinsic = self.state.reward(x)
        z_next = self._observe(obs)
        novelty = self.state.novelty(z_next)
        if self.extrinsic == "progress":
            progress, success = (
                float(info.get("task/progress", 0.0)),
                bool(info.get("success", False)),
            )
            extrinsic = (progress - self._progress) + float(success and not self._success)
            self._progress, self._success = progress, success
        else:
            extrinsic = float(info.get("reward/env", reward))
        info.update({"reward/intrinsic": intrinsic, "reward/novelty": novelty,
                     "shaping/input": x, "shaping/extrinsic": extrinsic})  # fmt: skip
        if truncated and not terminated:
            info["shaping/next_state"] = z_next
        return obs, float(reward) + intrinsic + novelty, terminated, truncated, info


class MetaCallback(BaseCallback):
    """Buffers the learner's steps; every ``update_every`` env steps (at a rollout's end) runs
    :meth:`update`, logs ``shaping/*`` (TensorBoard and ``shaping.csv``) and saves the
    networks to ``shaping_meta.pt`` (reloaded on resume)."""

    def __init__(self, state: MetaState, cfg: Any, gamma: float, run_dir: Path) -> None:
        super().__init__()
        self.state, self.cfg, self.gamma, self.path = state, cfg, gamma, run_dir / "shaping_meta.pt"
        self.last_update = 0
        self.steps: list[dict[str, Any]] = []
        if self.path.exists():
            saved = torch.load(
                self.path, weights_only=True
            )  # tensors and numbers only: no pickle code
            state.load_state_dict(saved["state"])
            self.last_update = int(saved["timesteps"])

    def _on_step(self) -> bool:
        actions = self.locals.get("buffer_actions", self.locals.get("actions"))
        obs = self.model._last_obs  # the policy's (normalised) input before this step
        infos, dones = self.locals["infos"], self.locals["dones"]
        assert isinstance(obs, np.ndarray) and actions is not None
        self.steps.append({
            "policy_obs": np.array(obs, dtype=np.float32, copy=True),
            "actions": np.array(actions, dtype=np.float32, copy=True),
            "x": np.stack([info["shaping/input"] for info in infos]),
            "extrinsic": np.array([info["shaping/extrinsic"] for info in infos]),
            "done": np.array(dones, dtype=bool),
            "terminated": np.array([bool(d) and not info.get("TimeLimit.truncated", False) for d, info in zip(dones, infos, strict=True)]),
            "next_state": [info.get("shaping/next_state") for info in infos],
        })  # fmt: skip
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self.last_update < self.cfg.update_every or len(self.steps) < 2:
            return
        self.last_update = self.num_timesteps
        stats = self.update()
        for key, value in stats.items():
            self.logger.record(f"shaping/{key}", value)
        append_row(
            self.path.with_name("shaping.csv"),
            {"timesteps": self.num_timesteps, **{k: round(v, 5) for k, v in stats.items()}},
        )
        torch.save({"state": self.state.state_dict(), "timesteps": self.num_timesteps}, self.path)

    def update(self) -> dict[str, float]:
        """One meta update of ``r_phi`` and the extrinsic critic on the buffered steps (the
        last step of each env is kept: it supplies the bootstrap state of the batch end)."""
        steps, self.steps = self.steps[:-1], self.steps[-1:]
        obs_dim, cfg, n_envs = self.state.obs_dim, self.cfg, steps[0]["x"].shape[0]
        x = np.stack([s["x"] for s in steps], axis=1)  # (n_envs, T, obs+act)
        z_next = np.concatenate(
            [x[:, 1:, :obs_dim], np.stack([self.steps[0]["x"][:, :obs_dim]], axis=1)], axis=1
        )
        for t, s in enumerate(steps):
            for i, z in enumerate(s["next_state"]):
                if z is not None:
                    z_next[i, t] = z
        critic = self.state.critic
        with torch.no_grad():
            values = critic(torch.as_tensor(x[..., :obs_dim])).squeeze(-1).numpy()
            next_values = critic(torch.as_tensor(z_next.astype(np.float32))).squeeze(-1).numpy()
        targets = np.stack([
            discounted_targets(
                np.array([s["extrinsic"][i] for s in steps]), next_values[i],
                np.array([s["terminated"][i] for s in steps]), np.array([s["done"][i] for s in steps]), self.gamma,
            )
            for i in range(n_envs)
        ])  # fmt: skip
        adv = targets - values
        adv_t = torch.as_tensor(
            ((adv - adv.mean()) / (adv.std() + 1e-8)).reshape(-1), dtype=torch.float32
        )
        policy_obs = torch.as_tensor(
            np.stack([s["policy_obs"] for s in steps], axis=1).reshape(n_envs * len(steps), -1)
        )
        actions = torch.as_tensor(
            np.stack([s["actions"] for s in steps], axis=1).reshape(n_envs * len(steps), -1)
        )
        with torch.enable_grad():
            log_prob = policy_log_prob(
                self.model, policy_obs.to(self.model.device), actions.to(self.model.device)
            )
            k = policy_kernel(
                log_prob, adv_t.to(log_prob.device), policy_parameters(self.model)
            ).cpu()
            x_t = torch.as_tensor(x.reshape(n_envs * len(steps), -1))
            for _ in range(cfg.meta_epochs):
                self.state.opt_phi.zero_grad()
                loss = meta_loss(self.state.intrinsic, x_t, k, cfg.intrinsic_l2)
                loss.backward()
                self.state.opt_phi.step()
            z_t = torch.as_tensor(x[..., :obs_dim].reshape(n_envs * len(steps), -1))
            y_t = torch.as_tensor(targets.reshape(-1), dtype=torch.float32)
            for _ in range(cfg.meta_epochs):
                self.state.opt_critic.zero_grad()
                critic_loss = (critic(z_t).squeeze(-1) - y_t).pow(2).mean()
                critic_loss.backward()
                self.state.opt_critic.step()
            r = self.state.intrinsic(x_t)
        return {
            "meta_loss": float(loss.item()), "critic_loss": float(critic_loss.item()),
            "intrinsic_mean": float(r.mean().item()), "intrinsic_std": float(r.std().item()),
            "kernel_corr_adv": float(np.corrcoef(k.numpy(), adv_t.numpy())[0, 1]) if k.std() > 0 else 0.0,
            "hash_cells": float(len(self.state.counts)),
        }  # fmt: skip
