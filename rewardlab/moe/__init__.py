"""Mixture-of-experts: routed layers for policies (:mod:`rewardlab.moe.layer`,
:mod:`rewardlab.moe.routers`, settings :class:`rewardlab.config.MoEConfig`), and the statistical
estimators of the MoE theory papers (:mod:`rewardlab.moe.estimation`: EM / maximum-likelihood
fitting of Gaussian and multinomial-logistic mixtures of polynomial experts;
:func:`suggest_experts`: ``m`` and ``k`` for a data size from the convergence-rate trade-off).

The names below are imported on first use, so that reading the settings
(:class:`MoEConfig`) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ROUTERS": "rewardlab.config", "MoEConfig": "rewardlab.config",
    "MoELayer": "rewardlab.moe.layer", "Routing": "rewardlab.moe.routers",
    "Suggestion": "rewardlab.moe.estimation_rates", "suggest_experts": "rewardlab.moe.estimation_rates",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewardlab.moe' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
