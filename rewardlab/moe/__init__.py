"""Mixture-of-experts: routed layers for policies (:mod:`rewardlab.moe.layer`,
:mod:`rewardlab.moe.routers`)."""

from rewardlab.moe.layer import ROUTERS, MoEConfig, MoELayer
from rewardlab.moe.routers import Routing

__all__ = ["ROUTERS", "MoEConfig", "MoELayer", "Routing"]
