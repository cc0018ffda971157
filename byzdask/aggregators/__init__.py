"""Robust aggregation rules: ``from byzdask.aggregators import Krum``."""

from byzdask.aggregators.average import Average
from byzdask.aggregators.base import Aggregator
from byzdask.aggregators.clustering import *
from byzdask.aggregators.clustering import __all__ as _cl
from byzdask.aggregators.coordinate_wise import *
from byzdask.aggregators.coordinate_wise import __all__ as _cw
from byzdask.aggregators.geometric_wise import *
from byzdask.aggregators.geometric_wise import __all__ as _gw
from byzdask.aggregators.norm_wise import *
from byzdask.aggregators.norm_wise import __all__ as _nw

__all__ = ["Aggregator", "Average", *_cw, *_gw, *_nw, *_cl]  # noqa: PLE0604 - the subpackages' own lists
