"""geometric-wise aggregation rules (each helper appends its import and its names to __all__)."""

__all__: list[str] = []

from byzdask.aggregators.geometric_wise.geometric_median import GeometricMedian

__all__ += ["GeometricMedian"]
