"""Clustering-based aggregation rules: split the inputs into groups, keep the largest."""

__all__: list[str] = []

from byzdask.aggregators.clustering.clipped_clustering import ClippedClustering
from byzdask.aggregators.clustering.signguard import SignGuard

__all__ += ["ClippedClustering", "SignGuard"]
