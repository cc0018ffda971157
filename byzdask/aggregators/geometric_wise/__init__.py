"""geometric-wise aggregation rules (each helper appends its import and its names to __all__)."""

__all__: list[str] = []

from byzdask.aggregators.geometric_wise.geometric_median import GeometricMedian

__all__ += ["GeometricMedian"]

from byzdask.aggregators.geometric_wise.krum import Krum, MultiKrum
from byzdask.aggregators.geometric_wise.minimum_diameter_average import (
    MinimumDiameterAveraging,
)
from byzdask.aggregators.geometric_wise.monna import MoNNA
from byzdask.aggregators.geometric_wise.smea import SMEA

__all__ += ["SMEA", "Krum", "MinimumDiameterAveraging", "MoNNA", "MultiKrum"]

from byzdask.aggregators.geometric_wise.bulyan import Bulyan
from byzdask.aggregators.geometric_wise.dnc import DnC
from byzdask.aggregators.geometric_wise.rfa import RFA

__all__ += ["RFA", "Bulyan", "DnC"]
