"""Mixture-of-experts actors and critics for stable-baselines3's PPO and SAC, and adapters for
warm-starting a policy on a refined reward.

**MoE blocks.** The MLP that SB3 builds from ``net_arch`` (``in -> h1 -> ... -> h_last``) is
replaced by one :class:`~rewardlab.moe.layer.MoELayer` whose experts are MLPs
``in -> moe.hidden -> h_last`` (or LoRA adapters over one ``in -> h_last`` layer), followed by
the same activation, in the actor, the critic or both (``moe.where``); heads (action mean,
log-std, value, Q) stay as in SB3. The router reads the whole input (``moe.route_on=obs``; in
multi-task training that includes the task id), or only the one-hot task id at the end of the
observation (``moe.route_on=task``, given the policy's ``task_count``): then every observation of
a task gets the same experts, as in MOORE's task-chosen mixture. Auxiliary router losses ride on the layer's output
(see :mod:`rewardlab.moe.layer`), so PPO's and SAC's own losses train the routers without
changes to the algorithms; save, load and resume are SB3's. Without ``moe`` the policies are
SB3's dense MLP policies. ``moe.straight_through`` weighs a top-1 router's chosen expert 1
(straight-through gradient) and ``moe.spread_tasks`` starts task-routed routers with task ``t``
on expert ``t mod E`` (:func:`spread_task_routing`); like every ``moe.*`` field they are kept in
``policy_kwargs``, so a loaded or resumed model routes as the saved one did.

**Adapters** (``adapt``, DynMoLE's setting: a policy trained on reward version N adapts to
version N+1): every ``nn.Linear`` of actor and critic becomes a frozen copy of itself plus
either one rank-``r`` LoRA adapter (``lora``) or a routed mixture of LoRA adapters
(``lora_moe``: an :class:`MoELayer` with LoRA experts over the frozen layer, routed by
``moe.router``); LoRA's ``B`` starts at zero, so the adapted policy starts as the parent.
Only the adapters, their routers and PPO's log-std train. :func:`load_parent` copies the
parent's weights in. Parameters of a parent's own MoE layers stay frozen (they have no
``nn.Linear`` to adapt).

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

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from rewardlab.config import AdaptMode, ExpertKind, MoEConfig, RouteOn, RouterName
from rewardlab.moe.layer import ExpertMLPs, MoELayer
from rewardlab.rundir import append_csv


def moe_config(value: MoEConfig | dict[str, Any] | None) -> MoEConfig | None:
    """A :class:`MoEConfig` from a config object or its fields as a dict (how SB3 stores it
    in ``policy_kwargs`` so saved models load without this module's types); ``None`` stays
    ``None`` (a dense policy)."""
    if value is None or isinstance(value, MoEConfig):
        return value
    return MoEConfig(**value)


def _block(
    d_in: int,
    d_out: int,
    cfg: MoEConfig,
    activation: type[nn.Module],
    route: tuple[int, int] | None = None,
) -> nn.Sequential:
    return nn.Sequential(MoELayer(d_in, d_out, cfg, route), activation())


def task_route(cfg: MoEConfig, obs_features: int, task_count: int) -> tuple[int, int] | None:
    """The input features a policy's router reads: ``None`` (all) for ``moe.route_on=obs``;
    for ``task``, the last ``task_count`` of the ``obs_features`` observation features (where
    ``task=multi/<set>`` puts the one-hot task id; a SAC critic's action comes after them).

    Raises:
        ValueError: ``route_on=task`` without a task id (``task_count`` 0: not a multi-task set).
    """
    if cfg.route_on != RouteOn.task:
        return None
    if not 0 < task_count <= obs_features:
        raise ValueError(
            "moe.route_on=task routes by the one-hot task id of a multi-task set "
            "(task=multi/<set>); this observation has none: use moe.route_on=obs"
        )
    return (obs_features - task_count, obs_features)


def _mlp(d_in: int, arch: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in arch:
        layers += [nn.Linear(d_in, width), activation()]
        d_in = width
    return nn.Sequential(*layers)


def _reset_gates(module: nn.Module, expert_gain: float | None = None) -> None:
    """Give every router its own small initial gate again (SB3's orthogonal initialisation of
    the MLP extractor also reaches the routers' linear gates and would make routing peaked
    from the first step). With ``expert_gain``, also initialise every MLP expert's weight
    matrices orthogonally with that gain and zero biases, as SB3's ``ortho_init`` does for the
    ``nn.Linear`` layers of the dense MLP the experts replace (it does not reach them: they are
    stacked parameters), so MoE and dense policies start alike."""
    for layer in module.modules():
        if isinstance(layer, MoELayer):
            nn.init.normal_(layer.router.gate.weight, std=0.02)
        if isinstance(layer, ExpertMLPs) and expert_gain is not None:
            with torch.no_grad():
                for e in range(layer.w1.shape[0]):
                    nn.init.orthogonal_(layer.w1[e], gain=expert_gain)
                    nn.init.orthogonal_(layer.w2[e], gain=expert_gain)
                layer.b1.zero_()
                layer.b2.zero_()


def spread_task_routing(policy: nn.Module, margin: float = 1.0) -> None:
    """Make every task-routed router of ``policy`` start balanced: task ``t`` prefers expert
    ``t mod E`` by a gate logit ``margin`` (instead of a random near-uniform gate, under which
    two tasks often start on one expert and stay there). Routers that read the whole
    observation are left as they are. Policies built with ``moe.spread_tasks`` call it on
    themselves when built (:class:`MoEActorCriticPolicy`, :class:`MoESACPolicy`); a loaded
    model's gates then come from its saved weights."""
    for layer in policy.modules():
        if isinstance(layer, MoELayer) and layer.route is not None:
            with torch.no_grad():
                weight = layer.router.gate.weight  # (experts, tasks)
                weight.zero_()
                for task in range(weight.shape[1]):
                    weight[task % weight.shape[0], task] = margin


# --------------------------------------------------------------------------- adapters


def adapter(linear: nn.Linear, mode: AdaptMode | str, moe: MoEConfig) -> MoELayer:
    """``linear`` frozen under a LoRA adapter (``lora``: one rank-``moe.lora_rank`` adapter,
    i.e. a one-expert mixture, weight 1) or a mixture of them (``lora_moe``: ``moe``'s router
    and experts); it computes ``linear`` exactly until the adapters train."""
    if AdaptMode(mode) == AdaptMode.lora:
        cfg = MoEConfig(router=RouterName.topk, experts=1, k=1, expert=ExpertKind.lora,
                        lora_rank=moe.lora_rank, balance_coef=0.0)  # fmt: skip
    else:
        cfg = replace(
            moe, expert=ExpertKind.lora, shared=0, route_on=RouteOn.obs, spread_tasks=False
        )
    layer = MoELayer(linear.in_features, linear.out_features, cfg)
    assert layer.base is not None
    layer.base.load_state_dict(linear.state_dict())
    layer.base.requires_grad_(False)
    return layer


def add_adapters(module: nn.Module, mode: AdaptMode | str, moe: MoEConfig) -> None:
    """Replace every ``nn.Linear`` below ``module`` by :func:`adapter` of it and freeze every
    other parameter of ``module`` (in place)."""
    module.requires_grad_(False)
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, adapter(child, mode, moe))
        elif not isinstance(child, MoELayer):
            add_adapters(child, mode, moe)


def _trainable(module: nn.Module, exclude: str | None = None) -> list[nn.Parameter]:
    return [
        p
        for n, p in module.named_parameters()
        if p.requires_grad and (exclude is None or exclude not in n)
    ]


def load_parent(policy: BasePolicy, parent: dict[str, torch.Tensor]) -> int:
    """Copy a parent policy's ``state_dict`` into ``policy`` (the same architecture, possibly
    with adapters: a parent weight ``a.0.weight`` lands in ``a.0.base.weight``); the number of
    tensors copied.

    Raises:
        ValueError: a parent tensor has no place of the same shape (another architecture).
    """
    own = policy.state_dict()
    placed: dict[str, torch.Tensor] = {}
    for key, value in parent.items():
        head, _, leaf = key.rpartition(".")
        target = key if key in own else f"{head}.base.{leaf}"
        if target not in own or own[target].shape != value.shape:
            raise ValueError(
                f"the parent policy does not fit this one: its {key} {tuple(value.shape)} has no "
                "counterpart (train the new version with the parent's algo.kwargs.policy_kwargs and moe.*)"
            )
        placed[target] = value
    policy.load_state_dict({**own, **placed})
    return len(placed)


# --------------------------------------------------------------------------- PPO


class MoEMlpExtractor(nn.Module):
    """SB3's ``MlpExtractor`` interface (``forward_actor``/``forward_critic``) with an MoE
    block in the actor, the critic or both (``cfg.where``) and plain MLPs elsewhere; the
    blocks' routers read the input features ``route`` (:func:`task_route`)."""

    def __init__(
        self,
        feature_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        cfg: MoEConfig,
        route: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if not net_arch:
            raise ValueError(
                "MoE policies need a non-empty net_arch (its last width is the latent)"
            )
        last = net_arch[-1]
        self.latent_dim_pi = self.latent_dim_vf = last
        self.policy_net = (
            _block(feature_dim, last, cfg, activation_fn, route)
            if cfg.where in ("actor", "both")
            else _mlp(feature_dim, net_arch, activation_fn)
        )
        self.value_net = (
            _block(feature_dim, last, cfg, activation_fn, route)
            if cfg.where in ("critic", "both")
            else _mlp(feature_dim, net_arch, activation_fn)
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features)


class MoEActorCriticPolicy(ActorCriticPolicy):
    """PPO/A2C policy with an MoE actor and/or critic. Extra keyword arguments: ``moe`` (the
    :class:`MoEConfig` fields; ``None``: SB3's dense MLPs), ``task_count`` (the length of the
    one-hot task id at the end of the observation, 0 for none; ``moe.route_on=task`` routes
    on it) and ``adapt`` (``None``, or ``{"mode": "lora" | "lora_moe", "moe": {...}}``:
    adapters over every linear layer, see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        moe: MoEConfig | dict[str, Any] | None = None,
        adapt: dict[str, Any] | None = None,
        task_count: int = 0,
        **kwargs: Any,
    ) -> None:
        self.moe = moe_config(moe)
        self.adapt = _adapt_settings(adapt)
        self.task_count = task_count
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        if self.moe is None:
            super()._build_mlp_extractor()
            return
        arch = self.net_arch if isinstance(self.net_arch, list) else self.net_arch["pi"]
        # SB3 types the attribute as its MlpExtractor; ours has the same interface.
        route = task_route(self.moe, self.features_dim, self.task_count)
        self.mlp_extractor = MoEMlpExtractor(  # type: ignore[assignment]
            self.features_dim, list(arch), self.activation_fn, self.moe, route
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        _reset_gates(self, expert_gain=math.sqrt(2) if self.ortho_init else None)
        if self.moe is not None and self.moe.spread_tasks:
            spread_task_routing(self)
        if self.adapt is not None:
            mode, moe = self.adapt
            for part in (self.mlp_extractor, self.action_net, self.value_net):
                add_adapters(part, mode, moe)
            for name in ("action_net", "value_net"):  # a bare Linear head is its own root
                if isinstance(getattr(self, name), nn.Linear):
                    setattr(self, name, adapter(getattr(self, name), mode, moe))
            self.features_extractor.requires_grad_(False)
            self.optimizer = self.optimizer_class(
                _trainable(self),
                lr=lr_schedule(1),
                **self.optimizer_kwargs,  # type: ignore[call-arg]
            )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(moe=self.moe.to_dict() if self.moe else None, adapt=_adapt_dict(self.adapt),
                    task_count=self.task_count)  # fmt: skip
        return data


# --------------------------------------------------------------------------- SAC


class MoEActor(Actor):
    """SAC's squashed-Gaussian actor with its latent MLP replaced by an MoE block (its router
    reading the features ``route``, :func:`task_route`)."""

    def __init__(
        self, *, moe: MoEConfig, route: tuple[int, int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not self.net_arch:
            raise ValueError("MoE actors need a non-empty net_arch (its last width is the latent)")
        self.latent_pi = _block(
            self.features_dim, self.net_arch[-1], moe, self.activation_fn, route
        )


class MoECritic(ContinuousCritic):
    """SAC's twin Q-networks, each an MoE block followed by a linear Q head (routers reading
    the observation features ``route`` of ``[observation, action]``, :func:`task_route`)."""

    def __init__(
        self, *, moe: MoEConfig, route: tuple[int, int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not kwargs["net_arch"]:
            raise ValueError("MoE critics need a non-empty net_arch (its last width is the latent)")
        d_in = kwargs["features_dim"] + get_action_dim(self.action_space)
        last = kwargs["net_arch"][-1]
        activation = kwargs.get("activation_fn", nn.ReLU)
        self.q_networks = []
        for idx in range(self.n_critics):
            q_net = nn.Sequential(_block(d_in, last, moe, activation, route), nn.Linear(last, 1))
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)


class MoESACPolicy(SACPolicy):
    """SAC policy with MoE actor and/or critics and optional adapters (same extra keyword
    arguments as :class:`MoEActorCriticPolicy`). The target critic is built the same way."""

    def __init__(
        self,
        *args: Any,
        moe: MoEConfig | dict[str, Any] | None = None,
        adapt: dict[str, Any] | None = None,
        task_count: int = 0,
        **kwargs: Any,
    ) -> None:
        self.moe = moe_config(moe)
        self.adapt = _adapt_settings(adapt)
        self.task_count = task_count
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: Any = None) -> Actor:
        if self.moe is None or self.moe.where == "critic":
            actor = super().make_actor(features_extractor)
        else:
            kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
            route = task_route(self.moe, kwargs["features_dim"], self.task_count)
            actor = MoEActor(**kwargs, moe=self.moe, route=route).to(self.device)
        return self._adapted(actor)

    def make_critic(self, features_extractor: Any = None) -> ContinuousCritic:
        if self.moe is None or self.moe.where == "actor":
            critic = super().make_critic(features_extractor)
        else:
            kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
            route = task_route(self.moe, kwargs["features_dim"], self.task_count)
            critic = MoECritic(**kwargs, moe=self.moe, route=route).to(self.device)
        return self._adapted(critic)

    def _adapted(self, net: Any) -> Any:
        _reset_gates(net)
        if self.moe is not None and self.moe.spread_tasks:
            spread_task_routing(net)
        if self.adapt is not None:
            add_adapters(net, *self.adapt)
        return net.to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        if self.adapt is not None:
            self.actor.optimizer = self.optimizer_class(
                _trainable(self.actor),
                lr=lr_schedule(1),
                **self.optimizer_kwargs,  # type: ignore[call-arg]
            )
            self.critic.optimizer = self.optimizer_class(
                _trainable(self.critic, exclude="features_extractor"),
                lr=lr_schedule(1),
                **self.optimizer_kwargs,  # type: ignore[call-arg]
            )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(moe=self.moe.to_dict() if self.moe else None, adapt=_adapt_dict(self.adapt),
                    task_count=self.task_count)  # fmt: skip
        return data


def _adapt_settings(adapt: dict[str, Any] | None) -> tuple[AdaptMode, MoEConfig] | None:
    if not adapt or AdaptMode(adapt.get("mode", "full")) == AdaptMode.full:
        return None
    moe = moe_config(adapt.get("moe")) or MoEConfig()
    return AdaptMode(adapt["mode"]), moe


def _adapt_dict(adapt: tuple[AdaptMode, MoEConfig] | None) -> dict[str, Any] | None:
    return None if adapt is None else {"mode": adapt[0].value, "moe": adapt[1].to_dict()}


POLICIES: dict[str, type[BasePolicy]] = {"ppo": MoEActorCriticPolicy, "sac": MoESACPolicy}
"""The policy class of ``algo.policy=moe`` per algorithm."""


def policy_class(algo_name: str) -> type[BasePolicy]:
    """The MoE-capable policy class for ``algo_name`` (``ppo`` or ``sac``)."""
    try:
        return POLICIES[str(getattr(algo_name, "value", algo_name))]
    except KeyError:
        raise ValueError(
            f"algo.policy=moe works with {', '.join(POLICIES)}, not {algo_name}"
        ) from None


def warm_start_kwargs(
    parent: BaseAlgorithm, adapt: AdaptMode | str, moe: MoEConfig
) -> tuple[type[BasePolicy], dict[str, Any]]:
    """The policy class and ``policy_kwargs`` of a model that continues ``parent`` (a trained
    SB3 PPO or SAC model): the parent's architecture (``net_arch``, its MoE blocks if any)
    with adapters for ``adapt`` (``moe``: rank and, for ``lora_moe``, router and experts).

    Raises:
        ValueError: the parent was itself trained under adapters (adapt its own parent, or
            use ``full`` from a version trained without them).
    """
    kwargs = dict(parent.policy_kwargs)
    if kwargs.get("adapt"):
        raise ValueError(
            "the parent version was itself trained under adapters (train.adapt="
            f"{kwargs['adapt'].get('mode')}); warm-start from a version trained without them"
        )
    mode = AdaptMode(adapt)
    kwargs["adapt"] = None if mode == AdaptMode.full else {"mode": mode.value, "moe": moe.to_dict()}
    name = "sac" if isinstance(parent.policy, SACPolicy) else "ppo"
    return policy_class(name), kwargs


def inherit(model: BaseAlgorithm, parent: BaseAlgorithm) -> None:
    """Continue ``parent`` in ``model`` (same architecture, possibly with adapters): its policy
    weights (:func:`load_parent`), SAC's entropy coefficient, and for SAC a warm-up of one
    batch instead of ``learning_starts`` random steps (the parent's policy acts from the
    first step)."""
    load_parent(model.policy, parent.policy.state_dict())
    own, theirs = getattr(model, "log_ent_coef", None), getattr(parent, "log_ent_coef", None)
    if isinstance(own, torch.Tensor) and isinstance(theirs, torch.Tensor):
        with torch.no_grad():
            own.copy_(theirs)
    if hasattr(model, "learning_starts") and hasattr(model, "batch_size"):
        model.learning_starts = min(int(model.learning_starts), int(model.batch_size))


# --------------------------------------------------------------------------- statistics


PREFIXES = (("mlp_extractor.policy_net", "pi"), ("mlp_extractor.value_net", "vf"),
            ("actor.latent_pi", "actor"), ("critic.", ""))  # fmt: skip


def moe_layers(policy: nn.Module) -> dict[str, MoELayer]:
    """Every MoE layer of ``policy`` by a short name, target networks excluded: ``pi``, ``vf``
    (PPO's actor and critic blocks), ``actor``, ``qf0``, ``qf1`` (SAC's); adapters add the
    layer's place (``pi.2``, ``action_net``, ``actor.mu``, ``qf0.2``)."""
    found: dict[str, MoELayer] = {}
    for name, module in policy.named_modules():
        if isinstance(module, MoELayer) and "target" not in name:
            short = name
            for prefix, alias in PREFIXES:
                if short.startswith(prefix):
                    short = alias + short[len(prefix) :]
                    break
            while short.endswith(".0"):
                short = short.removesuffix(".0")
            found[short or name] = module
    return found


def moe_statistics(policy: nn.Module) -> dict[str, float]:
    """``moe/<layer>/<statistic>`` for every routed MoE layer since the last call (then reset);
    one-expert adapters (plain LoRA) have nothing to route and are left out."""
    out: dict[str, float] = {}
    for name, layer in moe_layers(policy).items():
        stats = layer.statistics()
        if layer.cfg.experts > 1:
            out.update({f"moe/{name}/{key}": value for key, value in stats.items()})
    return out


def parameter_counts(policy: nn.Module) -> dict[str, int]:
    """Trainable parameters of the actor and critic parts of an SB3 policy (targets
    excluded), and ``frozen`` ones (a warm start's parent under adapters), so MoE and dense
    policies can be compared at equal size."""
    counts = {"actor": 0, "critic": 0, "total": 0, "frozen": 0}
    for name, param in policy.named_parameters():
        if "target" in name:
            continue
        if not param.requires_grad:
            counts["frozen"] += param.numel()
            continue
        part = "critic" if any(k in name for k in ("value", "critic", "qf")) else "actor"
        counts[part] += param.numel()
        counts["total"] += param.numel()
    return counts


def describe_parameters(policy: nn.Module) -> str:
    """One line: trainable parameters of actor and critic (and frozen ones if any), and the
    MoE layers with their routers and experts."""
    c = parameter_counts(policy)
    line = (
        f"parameters: actor {c['actor']:,}, critic {c['critic']:,}, total {c['total']:,} trainable"
    )
    if c["frozen"]:
        line += f" (+{c['frozen']:,} frozen)"
    layers = moe_layers(policy)
    if layers:
        kinds = sorted(
            {
                f"{lay.cfg.router.value} x{lay.cfg.experts} {lay.cfg.expert.value}"
                + (" straight-through" if lay.cfg.straight_through else "")
                for lay in layers.values()
            }
        )
        line += f"; MoE layers {', '.join(sorted(layers))} ({'; '.join(kinds)})"
    return line


class MoEStatistics(BaseCallback):
    """Log :func:`moe_statistics` (load per expert, entropy, active experts, dropped tokens,
    balance, auxiliary loss), averaged over the forward passes since the last record, to SB3's
    logger as ``moe/<layer>/<statistic>`` at the end of a rollout once ``every`` environment
    steps have passed (PPO: every rollout; SAC, whose rollouts are single steps: every
    ``every`` steps); each record is also a row of ``csv_path`` (``timesteps`` + the
    statistics: the router load curves) when given. :attr:`latest` holds the newest record."""

    def __init__(self, every: int = 1000, csv_path: Path | None = None) -> None:
        super().__init__()
        self.every, self.csv_path = every, csv_path
        self.last = -every
        self.latest: dict[str, float] = {}

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self.last >= self.every:
            self.flush()

    def flush(self) -> dict[str, float]:
        """Record the statistics gathered since the last record (if any forward pass ran)."""
        self.last = self.num_timesteps
        stats = moe_statistics(self.model.policy)
        if not stats:
            return {}
        for key, value in stats.items():
            self.logger.record(key, value)
        self.latest = stats
        if self.csv_path is not None:
            append_csv(
                self.csv_path,
                {"timesteps": self.num_timesteps, **{k: round(v, 6) for k, v in stats.items()}},
            )
        return stats
