"""One mixture-of-experts layer with pluggable routers (:mod:`rewardlab.moe.routers`).

``y = sum_e w_e(x) * expert_e(x) + sum_s shared_s(x)`` where the router gives the weights
``w``. Experts are small MLPs, or LoRA adapters over one shared base linear layer
(``expert_e(x) = B_e A_e x`` added to ``base(x)``). Every expert is evaluated for every token
(one batched ``einsum``: on a CPU and at policy-network sizes this is faster than gathering
tokens per expert); sparsity is in the weights, and "active experts per token" is reported
so compute can be compared at equal *active* size.

The router reads the whole input, or with ``route`` only the features ``route[0]:route[1]``
of it (``moe.route_on=task``: the one-hot task id inside a multi-task observation, so the
experts are chosen per task).

The router's auxiliary loss is attached to the layer's output (the way Megatron-LM's
``MoEAuxLossAutoScaler`` does it): any loss back-propagated through the output also
back-propagates the auxiliary loss with weight 1 (its coefficient is the router's), so the
layer works inside any algorithm's loss without changing the algorithm.

Example:
    >>> import torch
    >>> layer = MoELayer(3, 2, MoEConfig(router="sigmoid", experts=4, k=2, shared=1))
    >>> y = layer(torch.randn(8, 3))
    >>> tuple(y.shape), sorted(layer.statistics())[:3]
    ((8, 2), ['active', 'aux_loss', 'balance'])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rewardlab.config import MoEConfig
from rewardlab.moe.routers import (
    DenseToSparseRouter,
    ExpertChoiceRouter,
    PrototypeRouter,
    Router,
    Routing,
    SigmoidRouter,
    TopKRouter,
    TsallisRouter,
)


def make_router(cfg: MoEConfig, d: int) -> Router:
    """The router ``cfg.router`` for ``d`` input features."""
    if cfg.router == "topk":
        return TopKRouter(
            d,
            cfg.experts,
            cfg.k,
            capacity_factor=cfg.capacity_factor,
            balance_coef=cfg.balance_coef,
            straight_through=cfg.straight_through,
        )
    if cfg.router == "prototype":
        return PrototypeRouter(d, cfg.experts, cfg.k, balance_coef=cfg.balance_coef)
    if cfg.router == "expert_choice":
        return ExpertChoiceRouter(d, cfg.experts, capacity_factor=cfg.capacity_factor or 2.0)
    if cfg.router == "sigmoid":
        return SigmoidRouter(d, cfg.experts, cfg.k, bias_rate=cfg.bias_rate)
    if cfg.router == "dense_to_sparse":
        return DenseToSparseRouter(
            d,
            cfg.experts,
            tau_max=cfg.tau_max,
            tau_min=cfg.tau_min,
            anneal_steps=cfg.anneal_steps,
            balance_coef=cfg.balance_coef,
        )
    return TsallisRouter(
        d,
        cfg.experts,
        q=cfg.tsallis_q,
        threshold=cfg.tsallis_threshold,
        top_p=cfg.top_p,
        entropy_coef=cfg.entropy_coef,
        balance_coef=cfg.balance_coef / 10,
    )


class ExpertMLPs(nn.Module):
    """``E`` two-layer MLPs (``in -> hidden -> out``, tanh) with stacked weights, evaluated
    for all tokens at once: ``(n, in) -> (n, E, out)``."""

    def __init__(self, experts: int, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(experts, d_in, hidden))
        self.b1 = nn.Parameter(torch.zeros(experts, hidden))
        self.w2 = nn.Parameter(torch.empty(experts, hidden, d_out))
        self.b2 = nn.Parameter(torch.zeros(experts, d_out))
        for w in (self.w1, self.w2):  # same init as nn.Linear, per expert
            bound = 1 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(torch.einsum("nd,edh->neh", x, self.w1) + self.b1)
        return torch.einsum("neh,eho->neo", h, self.w2) + self.b2


class LoRAExperts(nn.Module):
    """``E`` rank-``r`` adapters ``B_e A_e x`` (``B`` starts at zero, as in LoRA, so a fresh
    mixture computes exactly the base layer): ``(n, in) -> (n, E, out)``."""

    def __init__(self, experts: int, d_in: int, rank: int, d_out: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(experts, rank, d_in) / math.sqrt(d_in))
        self.b = nn.Parameter(torch.zeros(experts, d_out, rank))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("ner,eor->neo", torch.einsum("nd,erd->ner", x, self.a), self.b)


class _AttachAuxLoss(torch.autograd.Function):
    """Identity on ``output``; in the backward pass, gives ``aux_loss`` a gradient of 1."""

    @staticmethod
    def forward(ctx: Any, output: Tensor, aux_loss: Tensor) -> Tensor:
        ctx.save_for_backward(aux_loss)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor]:
        (aux_loss,) = ctx.saved_tensors
        return grad_output, torch.ones_like(aux_loss)


class MoELayer(nn.Module):
    """A mixture-of-experts layer ``d_in -> d_out`` (see the module docstring); ``route``:
    the ``(start, stop)`` input features the router reads (``None``: all of them).

    :meth:`statistics` gives the router's numbers averaged over the forward passes since the
    last call: ``load/<e>`` (share of assignments per expert), ``entropy`` (mean routing
    entropy, nats), ``active`` (experts per token), ``dropped`` (share of tokens no expert
    took), ``balance`` (Switch balance measure, 1 = balanced) and ``aux_loss``.
    """

    def __init__(
        self, d_in: int, d_out: int, cfg: MoEConfig, route: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        if route is not None and not 0 <= route[0] < route[1] <= d_in:
            raise ValueError(f"route {route} is not a range of the layer's {d_in} input features")
        self.cfg = cfg
        self.route = route
        self.router = make_router(cfg, d_in if route is None else route[1] - route[0])
        self.base: nn.Linear | None = None
        self.experts: nn.Module
        if cfg.expert == "lora":
            self.base = nn.Linear(d_in, d_out)
            self.experts = LoRAExperts(cfg.experts, d_in, cfg.lora_rank, d_out)
        else:
            self.experts = ExpertMLPs(cfg.experts, d_in, cfg.hidden, d_out)
        self.shared = ExpertMLPs(cfg.shared, d_in, cfg.hidden, d_out) if cfg.shared else None
        self.last: Routing | None = None
        self._sums: dict[str, Tensor] = {}
        self._passes = 0

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        routing = self.router(
            flat if self.route is None else flat[:, self.route[0] : self.route[1]]
        )
        y = (routing.weights.unsqueeze(-1) * self.experts(flat)).sum(1)
        if self.base is not None:
            y = y + self.base(flat)
        if self.shared is not None:
            y = y + self.shared(flat).sum(1)
        if routing.aux_loss.requires_grad and torch.is_grad_enabled():
            y = _AttachAuxLoss.apply(y, routing.aux_loss)
        self._record(routing)
        return y.reshape(*lead, y.shape[-1])

    @torch.no_grad()
    def _record(self, routing: Routing) -> None:
        self.last = routing
        used = (routing.weights > 0).float()
        p = routing.probs.clamp_min(1e-12)
        values = {
            "load": used.sum(0) / used.sum().clamp_min(1.0),
            "entropy": -(p * p.log()).sum(-1).mean(),
            "active": used.sum(-1).mean(),
            "dropped": routing.dropped.float().mean(),
            "balance": routing.balance.detach(),
            "aux_loss": routing.aux_loss.detach(),
        }
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, torch.zeros_like(value)) + value
        self._passes += 1

    def statistics(self) -> dict[str, float]:
        """Router statistics averaged since the last call (then reset); empty if no pass ran."""
        if not self._passes:
            return {}
        out: dict[str, float] = {}
        for key, total in self._sums.items():
            mean = total / self._passes
            if key == "load":
                out.update({f"load/{e}": float(v) for e, v in enumerate(mean)})
            else:
                out[key] = float(mean)
        self._sums, self._passes = {}, 0
        return out

    @torch.no_grad()
    def diversify(self, source: int = 0, drop: float = 0.2, seed: int = 0) -> None:
        """EvoMoE's expert-diversify step: every expert becomes a copy of expert ``source``
        (the one trained so far) with a random ``drop`` share of its weights masked to zero,
        rescaled by ``1 / (1 - drop)``, so the experts start from what was learned but differ."""
        gen = torch.Generator().manual_seed(seed)
        for param in self.experts.parameters():
            template = param[source].clone()
            for e in range(param.shape[0]):
                keep = (torch.rand(template.shape, generator=gen) >= drop).to(template.dtype)
                param[e] = template * keep / (1 - drop) if e != source else template
