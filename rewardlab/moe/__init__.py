"""Mixture-of-experts: routed layers for policies (:mod:`rewardlab.moe.layer`,
:mod:`rewardlab.moe.routers`), and the statistical estimators of the MoE theory papers
(:mod:`rewardlab.moe.estimation`: EM / maximum-likelihood fitting of Gaussian and
multinomial-logistic mixtures of polynomial experts; :func:`suggest_experts`: ``m`` and ``k``
for a data size from the convergence-rate trade-off)."""

from rewardlab.moe.estimation_rates import Suggestion, suggest_experts
from rewardlab.moe.layer import ROUTERS, MoEConfig, MoELayer
from rewardlab.moe.routers import Routing

__all__ = ["ROUTERS", "MoEConfig", "MoELayer", "Routing", "Suggestion", "suggest_experts"]
