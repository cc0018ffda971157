"""Pre-aggregators, run before an aggregation rule: ``from byzdask.pre_aggregators import Clipping``."""

from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["PreAggregator"]
