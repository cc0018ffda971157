"""norm-wise aggregation rules (each helper appends its import and its names to __all__)."""

__all__: list[str] = []

from byzdask.aggregators.norm_wise.caf import CAF
from byzdask.aggregators.norm_wise.center_clipping import CenteredClipping

__all__ += ["CAF", "CenteredClipping"]

from byzdask.aggregators.norm_wise.comparative_gradient_elimination import (
    ComparativeGradientElimination,
)

__all__ += ["ComparativeGradientElimination"]
