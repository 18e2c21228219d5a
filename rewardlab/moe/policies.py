"""Mixture-of-experts actors and critics for stable-baselines3's PPO and SAC.

The MLP that SB3 builds from ``net_arch`` (``in -> h1 -> ... -> h_last``) is replaced by one
:class:`~rewardlab.moe.layer.MoELayer` whose experts are MLPs ``in -> moe.hidden -> h_last``
(or LoRA adapters over one ``in -> h_last`` layer), followed by the same activation; heads
(action mean, log-std, value, Q) stay as in SB3. The router reads the whole input, so in
multi-task training it sees the task id in the observation. Auxiliary router losses ride on
the layer's output (see :mod:`rewardlab.moe.layer`), so PPO's and SAC's own losses train the
routers without changes to the algorithms; save, load and resume are SB3's.

Example:
    >>> import gymnasium as gym
    >>> from stable_baselines3 import PPO
    >>> env = gym.make("Pendulum-v1")
    >>> model = PPO(MoEActorCriticPolicy, env, n_steps=64, batch_size=32, n_epochs=1,
    ...             policy_kwargs={"moe": {"router": "topk", "experts": 4, "k": 2}})
    >>> _ = model.learn(64)
    >>> sorted(moe_statistics(model.policy))[0]
    'moe/pi/active'
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from rewardlab.moe.layer import MoEConfig, MoELayer

WHERE = ("actor", "critic", "both")


def moe_config(value: MoEConfig | dict[str, Any] | None) -> MoEConfig:
    """A :class:`MoEConfig` from a config object or its fields as a dict (how SB3 stores it
    in ``policy_kwargs`` so saved models load without this module's types)."""
    if isinstance(value, MoEConfig):
        return value
    return MoEConfig(**(value or {}))


def _block(d_in: int, d_out: int, cfg: MoEConfig, activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(MoELayer(d_in, d_out, cfg), activation())


def _mlp(d_in: int, arch: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in arch:
        layers += [nn.Linear(d_in, width), activation()]
        d_in = width
    return nn.Sequential(*layers)


class MoEMlpExtractor(nn.Module):
    """SB3's ``MlpExtractor`` interface (``forward_actor``/``forward_critic``) with an MoE
    block in the actor, the critic or both (``where``) and plain MLPs elsewhere."""

    def __init__(
        self,
        feature_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        cfg: MoEConfig,
        where: str,
    ) -> None:
        super().__init__()
        if not net_arch:
            raise ValueError(
                "MoE policies need a non-empty net_arch (its last width is the latent)"
            )
        last = net_arch[-1]
        self.latent_dim_pi = self.latent_dim_vf = last
        self.policy_net = (
            _block(feature_dim, last, cfg, activation_fn)
            if where in ("actor", "both")
            else _mlp(feature_dim, net_arch, activation_fn)
        )
        self.value_net = (
            _block(feature_dim, last, cfg, activation_fn)
            if where in ("critic", "both")
            else _mlp(feature_dim, net_arch, activation_fn)
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features)


class MoEActorCriticPolicy(ActorCriticPolicy):
    """PPO/A2C policy with MoE actor and/or critic. Extra keyword arguments: ``moe`` (the
    :class:`MoEConfig` fields) and ``moe_where`` (``actor``, ``critic`` or ``both``)."""

    def __init__(
        self,
        *args: Any,
        moe: MoEConfig | dict[str, Any] | None = None,
        moe_where: str = "both",
        **kwargs: Any,
    ) -> None:
        if moe_where not in WHERE:
            raise ValueError(f"moe_where must be one of {WHERE}, got {moe_where!r}")
        self.moe = moe_config(moe)
        self.moe_where = moe_where
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        arch = self.net_arch if isinstance(self.net_arch, list) else self.net_arch["pi"]
        # SB3 types the attribute as its MlpExtractor; ours has the same interface.
        self.mlp_extractor = MoEMlpExtractor(  # type: ignore[assignment]
            self.features_dim, list(arch), self.activation_fn, self.moe, self.moe_where
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(moe=asdict(self.moe), moe_where=self.moe_where)
        return data


class MoEActor(Actor):
    """SAC's squashed-Gaussian actor with its latent MLP replaced by an MoE block."""

    def __init__(self, *, moe: MoEConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.net_arch:
            raise ValueError("MoE actors need a non-empty net_arch (its last width is the latent)")
        self.latent_pi = _block(self.features_dim, self.net_arch[-1], moe, self.activation_fn)


class MoECritic(ContinuousCritic):
    """SAC's twin Q-networks, each an MoE block followed by a linear Q head."""

    def __init__(self, *, moe: MoEConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not kwargs["net_arch"]:
            raise ValueError("MoE critics need a non-empty net_arch (its last width is the latent)")
        d_in = kwargs["features_dim"] + get_action_dim(self.action_space)
        last = kwargs["net_arch"][-1]
        activation = kwargs.get("activation_fn", nn.ReLU)
        self.q_networks = []
        for idx in range(self.n_critics):
            q_net = nn.Sequential(_block(d_in, last, moe, activation), nn.Linear(last, 1))
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)


class MoESACPolicy(SACPolicy):
    """SAC policy with MoE actor and/or critics (same extra keyword arguments as
    :class:`MoEActorCriticPolicy`). The target critic is built the same way."""

    def __init__(
        self,
        *args: Any,
        moe: MoEConfig | dict[str, Any] | None = None,
        moe_where: str = "both",
        **kwargs: Any,
    ) -> None:
        if moe_where not in WHERE:
            raise ValueError(f"moe_where must be one of {WHERE}, got {moe_where!r}")
        self.moe = moe_config(moe)
        self.moe_where = moe_where
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: Any = None) -> Actor:
        if self.moe_where == "critic":
            return super().make_actor(features_extractor)
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return MoEActor(**kwargs, moe=self.moe).to(self.device)

    def make_critic(self, features_extractor: Any = None) -> ContinuousCritic:
        if self.moe_where == "actor":
            return super().make_critic(features_extractor)
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return MoECritic(**kwargs, moe=self.moe).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(moe=asdict(self.moe), moe_where=self.moe_where)
        return data


def moe_layers(policy: nn.Module) -> dict[str, MoELayer]:
    """Every MoE layer of ``policy`` by a short name (``pi``, ``vf``, ``actor``, ``qf0`` ...),
    target networks excluded."""
    found: dict[str, MoELayer] = {}
    for name, module in policy.named_modules():
        if isinstance(module, MoELayer) and "target" not in name:
            parts = [p for p in name.split(".") if not p.isdigit()]
            short = (
                {"policy_net": "pi", "value_net": "vf"}.get(parts[-1], parts[-1]) if parts else name
            )
            if short in ("latent_pi",):
                short = "actor"
            found[short] = module
    return found


def moe_statistics(policy: nn.Module) -> dict[str, float]:
    """``moe/<layer>/<statistic>`` for every MoE layer since the last call (then reset)."""
    out: dict[str, float] = {}
    for name, layer in moe_layers(policy).items():
        for key, value in layer.statistics().items():
            out[f"moe/{name}/{key}"] = value
    return out


def parameter_counts(policy: nn.Module) -> dict[str, int]:
    """Trainable parameters of the actor and critic parts of an SB3 policy (targets excluded),
    so MoE and dense policies can be compared at equal size."""
    counts = {"actor": 0, "critic": 0, "total": 0}
    for name, param in policy.named_parameters():
        if "target" in name or not param.requires_grad:
            continue
        part = "critic" if any(k in name for k in ("value", "critic", "qf")) else "actor"
        counts[part] += param.numel()
        counts["total"] += param.numel()
    return counts


class MoEStatistics(BaseCallback):
    """Log :func:`moe_statistics` (load per expert, entropy, active experts, dropped tokens,
    balance, auxiliary loss) to SB3's logger at the end of every rollout."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        for key, value in moe_statistics(self.model.policy).items():
            self.logger.record(key, value)
