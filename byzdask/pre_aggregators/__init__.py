"""Pre-aggregators, run before an aggregation rule: ``from byzdask.pre_aggregators import Clipping``."""

from byzdask.pre_aggregators.arc import ARC
from byzdask.pre_aggregators.base import PreAggregator
from byzdask.pre_aggregators.bucketing import Bucketing
from byzdask.pre_aggregators.chain import PreAggregatorChain, RobustAggregator, chain
from byzdask.pre_aggregators.clipping import Clipping
from byzdask.pre_aggregators.nnm import NearestNeighborMixing

__all__ = [
    "ARC",
    "Bucketing",
    "Clipping",
    "NearestNeighborMixing",
    "PreAggregator",
    "PreAggregatorChain",
    "RobustAggregator",
    "chain",
]
