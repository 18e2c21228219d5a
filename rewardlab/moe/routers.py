"""Routers for mixture-of-experts layers, one class per routing paper.

A router sees a batch of ``n`` tokens (here: observations or hidden feature vectors, shape
``(n, d)``) and decides which of ``E`` experts each token uses and with which weight. Every
router returns a :class:`Routing`: a dense ``(n, E)`` combine matrix whose zeros are the
experts a token does not use, the routing distribution (for entropy statistics), the tokens
that reached no expert, and its auxiliary loss (already multiplied by its coefficient).

| name | paper | rule |
|---|---|---|
| ``topk`` | GShard / Switch | softmax, top-k per token, optional capacity, balance loss |
| ``prototype`` | M6-T | experts in k groups, softmax and top-1 inside each group |
| ``expert_choice`` | Expert Choice | each expert takes its top ``n*c/E`` tokens |
| ``sigmoid`` | DeepSeekMoE | normalized sigmoid gate, selection bias for balance |
| ``dense_to_sparse`` | EvoMoE | Gumbel-softmax gate annealed from dense to top-1 |
| ``tsallis`` | DynMoLE | all experts when Tsallis entropy is high, else top-p |

Example:
    >>> import torch
    >>> router = TopKRouter(d=3, experts=4, k=2)
    >>> r = router(torch.randn(5, 3))
    >>> tuple(r.weights.shape), int((r.weights > 0).sum(dim=1).max())
    ((5, 4), 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass
class Routing:
    """What a router decided for one batch of tokens."""

    weights: Tensor
    """``(n, E)`` combine weights; 0 where a token does not use an expert."""
    probs: Tensor
    """``(n, E)`` routing distribution each token's entropy is measured on (rows sum to 1)."""
    aux_loss: Tensor
    """Scalar auxiliary loss, already multiplied by its coefficient (0 when the router has none)."""
    balance: Tensor
    """Scalar load-balance measure (Switch's ``E * sum f_e P_e``: 1 when perfectly balanced)."""
    dropped: Tensor
    """``(n,)`` bool: tokens that reached no expert (capacity overflow)."""


def switch_balance(probs: Tensor, chosen: Tensor) -> Tensor:
    """Switch Transformer's load-balance loss ``E * sum_e f_e * P_e``.

    ``f_e`` is the fraction of assignments that went to expert ``e`` (``chosen`` is a 0/1
    ``(n, E)`` matrix) and ``P_e`` the mean routing probability of ``e``; the loss is 1 when
    both are uniform and grows as load concentrates.

    Example:
        >>> p = torch.full((4, 2), 0.5)
        >>> float(switch_balance(p, torch.tensor([[1., 0], [0, 1], [1, 0], [0, 1]])))
        1.0
    """
    experts = probs.shape[-1]
    f = chosen.float().sum(0) / chosen.float().sum().clamp_min(1.0)
    return experts * (f * probs.mean(0)).sum()


def _topk_mask(scores: Tensor, k: int) -> Tensor:
    index = scores.topk(k, dim=-1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, index, True)


def _capacity_keep(mask: Tensor, priority: Tensor, capacity: int) -> Tensor:
    """Keep at most ``capacity`` tokens per expert, the ones with the highest ``priority``
    (batch-prioritised routing); ``mask`` says which (token, expert) pairs were chosen."""
    n = mask.shape[0]
    score = torch.where(mask, priority, torch.full_like(priority, -math.inf))
    order = score.argsort(dim=0, descending=True)
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(n).unsqueeze(1).expand_as(order))
    return mask & (rank < capacity)


class Router(nn.Module):
    """Base class: a bias-free linear gate ``W_g`` from ``d`` features to ``E`` expert scores."""

    def __init__(self, d: int, experts: int) -> None:
        super().__init__()
        self.experts = experts
        self.gate = nn.Linear(d, experts, bias=False)
        nn.init.normal_(self.gate.weight, std=0.02)

    def forward(self, x: Tensor) -> Routing:  # pragma: no cover - abstract
        raise NotImplementedError

    def _routing(self, weights: Tensor, probs: Tensor, aux: Tensor, balance: Tensor) -> Routing:
        return Routing(weights, probs, aux, balance.detach(), (weights == 0).all(dim=-1))

    @property
    def updating(self) -> bool:
        """True on training forward passes that will be back-propagated (where stateful
        routers update their bias or schedule), False when acting or under ``no_grad``."""
        return self.training and torch.is_grad_enabled()


class TopKRouter(Router):
    """Token choice (GShard, Switch): ``p = softmax(x W_g)``; each token uses its top-``k``
    experts, weighted by ``p`` renormalised over the chosen ones (raw ``p`` when ``k = 1``, as
    in Switch, so the gate still gets a gradient). With ``straight_through`` and ``k = 1`` the
    chosen expert's weight is 1, as the renormalised weights of ``k > 1`` sum to 1, and the gate
    still gets a gradient: ``p / stop_gradient(p)``, whose gradient is Switch's divided by ``p``
    (with raw ``p`` a fresh router scales the layer's output by about ``1 / E``). With
    ``capacity_factor`` each expert takes at most ``ceil(c * n * k / E)`` tokens, highest gate
    first; the rest are dropped for that expert. Loss: ``balance_coef`` times Switch's balance
    loss."""

    def __init__(
        self,
        d: int,
        experts: int,
        k: int = 2,
        *,
        capacity_factor: float | None = None,
        balance_coef: float = 0.01,
        straight_through: bool = False,
    ) -> None:
        super().__init__(d, experts)
        if not 1 <= k <= experts:
            raise ValueError(f"k must be in [1, {experts}], got {k}")
        self.k, self.capacity_factor, self.balance_coef = k, capacity_factor, balance_coef
        self.straight_through = straight_through

    def forward(self, x: Tensor) -> Routing:
        probs = F.softmax(self.gate(x), dim=-1)
        mask = _topk_mask(probs, self.k)
        if self.capacity_factor is not None:
            n = x.shape[0]
            capacity = max(1, math.ceil(self.capacity_factor * n * self.k / self.experts))
            mask = _capacity_keep(mask, probs, capacity)
        chosen = probs * mask
        if self.k > 1:
            chosen = chosen / chosen.sum(-1, keepdim=True).clamp_min(1e-9)
        elif self.straight_through:
            chosen = torch.where(mask, probs / probs.detach(), torch.zeros_like(probs))
        balance = switch_balance(probs, mask)
        return self._routing(chosen, probs, self.balance_coef * balance, balance)


class PrototypeRouter(Router):
    """M6-T expert prototyping: the ``E`` experts form ``k`` groups of ``E / k``; inside each
    group a softmax picks the top-1 expert, and the ``k`` group outputs are summed (each
    weighted by its in-group gate). Same number of active experts as top-``k``. Loss: the mean
    of the groups' Switch balance losses times ``balance_coef``."""

    def __init__(self, d: int, experts: int, k: int = 2, *, balance_coef: float = 0.01) -> None:
        super().__init__(d, experts)
        if k < 1 or experts % k:
            raise ValueError(
                f"prototype routing needs experts divisible by k, got {experts} and {k}"
            )
        self.k, self.balance_coef = k, balance_coef

    def forward(self, x: Tensor) -> Routing:
        n = x.shape[0]
        logits = self.gate(x).view(n, self.k, self.experts // self.k)
        probs = F.softmax(logits, dim=-1)
        mask = _topk_mask(probs, 1)
        balance = torch.stack(
            [switch_balance(probs[:, g], mask[:, g]) for g in range(self.k)]
        ).mean()
        weights = (probs * mask).view(n, self.experts)
        return self._routing(
            weights, probs.view(n, self.experts) / self.k, self.balance_coef * balance, balance
        )


class ExpertChoiceRouter(Router):
    """Expert Choice: ``S = softmax(x W_g)`` over experts; each expert takes its top
    ``ceil(n * c / E)`` tokens of the batch by ``S`` (capacity factor ``c``, 2 in the paper),
    weighted by ``S``. A token may get 0..E experts; no auxiliary loss.

    The rule needs the batch, so it is not defined for one observation: with ``n * c < E``
    (e.g. acting in one environment) each expert would take the single token, turning the
    layer into a dense mixture that training never saw. For such small batches the router
    falls back to token choice with the *expected* number of experts per token, top-``ceil(c)``
    of ``S`` (``small_batch="topk"``, the default); ``small_batch="dense"`` keeps the literal
    rule. Tokens dropped by every expert are reported in :attr:`Routing.dropped`.
    """

    def __init__(
        self,
        d: int,
        experts: int,
        *,
        capacity_factor: float = 2.0,
        small_batch: str = "topk",
    ) -> None:
        super().__init__(d, experts)
        if small_batch not in ("topk", "dense"):
            raise ValueError(f"small_batch must be 'topk' or 'dense', got {small_batch!r}")
        self.capacity_factor, self.small_batch = capacity_factor, small_batch

    def forward(self, x: Tensor) -> Routing:
        probs = F.softmax(self.gate(x), dim=-1)
        n = x.shape[0]
        zero = probs.new_zeros(())
        if n * self.capacity_factor < self.experts and self.small_batch == "topk":
            mask = _topk_mask(probs, min(self.experts, math.ceil(self.capacity_factor)))
        else:
            capacity = min(n, max(1, math.ceil(n * self.capacity_factor / self.experts)))
            index = probs.topk(capacity, dim=0).indices  # (capacity, E): each expert's tokens
            mask = torch.zeros_like(probs, dtype=torch.bool).scatter(0, index, True)
        return self._routing(probs * mask, probs, zero, switch_balance(probs, mask))


class SigmoidRouter(Router):
    """DeepSeekMoE / DeepSeek-V3: ``s = sigmoid(x W_g)``; the top-``k`` experts are selected on
    ``s + b``, where ``b`` is a per-expert bias used *only* for selection; the weights are
    ``g = scale * s_sel / sum(s_sel)``. Balance without an auxiliary loss: after every training
    pass ``b_e`` moves by ``bias_rate`` towards balance (down for experts that took more than
    the mean load, up for the others). Shared experts are added by the layer."""

    bias: Tensor

    def __init__(
        self,
        d: int,
        experts: int,
        k: int = 2,
        *,
        bias_rate: float = 1e-3,
        scale: float = 1.0,
    ) -> None:
        super().__init__(d, experts)
        if not 1 <= k <= experts:
            raise ValueError(f"k must be in [1, {experts}], got {k}")
        self.k, self.bias_rate, self.scale = k, bias_rate, scale
        self.register_buffer("bias", torch.zeros(experts))

    def forward(self, x: Tensor) -> Routing:
        scores = torch.sigmoid(self.gate(x))
        mask = _topk_mask(scores.detach() + self.bias, self.k)
        chosen = scores * mask
        weights = self.scale * chosen / chosen.sum(-1, keepdim=True).clamp_min(1e-9)
        probs = scores / scores.sum(-1, keepdim=True)
        if self.updating:
            self.update_bias(mask)
        return self._routing(weights, probs, scores.new_zeros(()), switch_balance(probs, mask))

    @torch.no_grad()
    def update_bias(self, mask: Tensor) -> None:
        """Loss-free balancing: ``b_e += rate * sign(mean load - load_e)``."""
        load = mask.float().sum(0)
        self.bias += self.bias_rate * torch.sign(load.mean() - load)


class DenseToSparseRouter(Router):
    """EvoMoE's Dense-To-Sparse gate: ``g = softmax((x W_g + Gumbel noise) / tau)`` over all
    experts while training, with ``tau`` annealed exponentially from ``tau_max`` to ``tau_min``
    over ``anneal_steps`` training passes; experts with ``g > threshold`` are used. Once the
    annealing is over the gate is hard top-1 (weight ``g`` of the chosen expert). Acting uses
    no noise. Loss: ``balance_coef * E^2 * mean_e(mean gate_e * mean chosen_e)``.

    Start from one trained expert and call :meth:`MoELayer.diversify` (EvoMoE's
    expert-diversify step) before switching this gate on.
    """

    steps: Tensor

    def __init__(
        self,
        d: int,
        experts: int,
        *,
        tau_max: float = 1.0,
        tau_min: float = 0.5,
        anneal_steps: int = 10_000,
        threshold: float = 1e-3,
        balance_coef: float = 0.01,
    ) -> None:
        super().__init__(d, experts)
        self.tau_max, self.tau_min, self.anneal_steps = tau_max, tau_min, anneal_steps
        self.threshold, self.balance_coef = threshold, balance_coef
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def tau(self) -> float:
        """The current temperature (exponential schedule)."""
        frac = min(int(self.steps) / max(self.anneal_steps, 1), 1.0)
        return self.tau_max * (self.tau_min / self.tau_max) ** frac

    @property
    def sparse(self) -> bool:
        """True once annealing has finished and the gate is hard top-1."""
        return int(self.steps) >= self.anneal_steps

    def forward(self, x: Tensor) -> Routing:
        logits = self.gate(x)
        if self.updating:
            u = torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)
            logits = logits - torch.log(-torch.log(u))
            self.steps += 1
        gates = F.softmax(logits / self.tau, dim=-1)
        mask = _topk_mask(gates, 1) if self.sparse else gates > self.threshold
        chosen = mask.float()
        balance = self.experts**2 * (gates.mean(0) * chosen.mean(0)).mean()
        return self._routing(
            gates * mask, gates, self.balance_coef * balance, switch_balance(gates, mask)
        )


def tsallis_entropy(probs: Tensor, q: float = 1.1) -> Tensor:
    """Normalized Tsallis entropy ``H_q(p) / H_q(uniform)`` per row, in [0, 1].

    Example:
        >>> round(float(tsallis_entropy(torch.full((1, 4), 0.25))[0]), 6)
        1.0
    """
    experts = probs.shape[-1]
    h = (1 - (probs.clamp_min(0) ** q).sum(-1)) / (q - 1)
    h_max = (1 - experts ** (1 - q)) / (q - 1)
    return h / h_max


class TsallisRouter(Router):
    """DynMoLE hybrid routing: ``p = softmax(x W_g)``; when a token's normalized Tsallis
    entropy ``H_q(p)`` exceeds ``threshold`` (the router is unsure) the token uses every
    expert with weights ``p``; otherwise the smallest top-p set whose cumulative probability
    reaches ``top_p`` (at least ``min_experts``), renormalised. Loss:
    ``entropy_coef * mean(H_q) + balance_coef * Switch balance``."""

    def __init__(
        self,
        d: int,
        experts: int,
        *,
        q: float = 1.1,
        threshold: float = 0.9,
        top_p: float = 0.75,
        min_experts: int = 2,
        entropy_coef: float = 0.01,
        balance_coef: float = 0.001,
    ) -> None:
        super().__init__(d, experts)
        self.q, self.threshold, self.top_p = q, threshold, top_p
        self.min_experts = min(min_experts, experts)
        self.entropy_coef, self.balance_coef = entropy_coef, balance_coef

    def forward(self, x: Tensor) -> Routing:
        probs = F.softmax(self.gate(x), dim=-1)
        entropy = tsallis_entropy(probs, self.q)
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the experts ranked above
        rank = torch.arange(self.experts, device=x.device)
        keep_sorted = (before < self.top_p) | (rank < self.min_experts)
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        keep = keep | (entropy > self.threshold).unsqueeze(-1)
        chosen = probs * keep
        weights = chosen / chosen.sum(-1, keepdim=True)
        balance = switch_balance(probs, keep)
        aux = self.entropy_coef * entropy.mean() + self.balance_coef * balance
        return self._routing(weights, probs, aux, balance)
