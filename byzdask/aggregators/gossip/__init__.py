"""Robust gossip steps for peer-to-peer training: ``x_i <- x_i + step(x_i, neighbours, weights)``."""

from byzdask.aggregators.gossip.base import GossipRule, metropolis_weights
from byzdask.aggregators.gossip.clipped_gossip import ClippedGossip
from byzdask.aggregators.gossip.cs_plus_rg import CSPlusRG
from byzdask.aggregators.gossip.ios import IOS

__all__ = ["IOS", "CSPlusRG", "ClippedGossip", "GossipRule", "metropolis_weights"]
