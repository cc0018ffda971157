"""coordinate-wise aggregation rules (each helper appends its import and its names to __all__)."""

from byzdask.aggregators.coordinate_wise.mean_of_medians import MeanOfMedians
from byzdask.aggregators.coordinate_wise.median import CoordinateWiseMedian
from byzdask.aggregators.coordinate_wise.trimmed_mean import CoordinateWiseTrimmedMean

__all__: list[str] = ["CoordinateWiseMedian", "CoordinateWiseTrimmedMean", "MeanOfMedians"]
