"""Short names of the rules, pre-aggregators and attacks (the names ``byzdask list`` prints)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from byzdask.errors import ConfigurationError

__all__ = ["AGGREGATORS", "ATTACKS", "PRE_AGGREGATORS", "build", "resolve"]

AGGREGATORS = {
    "average": "byzdask.aggregators.average:Average",
    "cwmed": "byzdask.aggregators.coordinate_wise.median:CoordinateWiseMedian",
    "cwtm": "byzdask.aggregators.coordinate_wise.trimmed_mean:CoordinateWiseTrimmedMean",
    "meamed": "byzdask.aggregators.coordinate_wise.mean_of_medians:MeanOfMedians",
    "krum": "byzdask.aggregators.geometric_wise.krum:Krum",
    "multikrum": "byzdask.aggregators.geometric_wise.krum:MultiKrum",
    "gm": "byzdask.aggregators.geometric_wise.geometric_median:GeometricMedian",
    "mda": "byzdask.aggregators.geometric_wise.minimum_diameter_average:MinimumDiameterAveraging",
    "monna": "byzdask.aggregators.geometric_wise.monna:MoNNA",
    "smea": "byzdask.aggregators.geometric_wise.smea:SMEA",
    "cc": "byzdask.aggregators.norm_wise.center_clipping:CenteredClipping",
    "cge": "byzdask.aggregators.norm_wise.comparative_gradient_elimination:ComparativeGradientElimination",
    "caf": "byzdask.aggregators.norm_wise.caf:CAF",
    "bulyan": "byzdask.aggregators.geometric_wise.bulyan:Bulyan",
    "dnc": "byzdask.aggregators.geometric_wise.dnc:DnC",
    "rfa": "byzdask.aggregators.geometric_wise.rfa:RFA",
    "signguard": "byzdask.aggregators.clustering.signguard:SignGuard",
    "clippedclustering": "byzdask.aggregators.clustering.clipped_clustering:ClippedClustering",
}
PRE_AGGREGATORS = {
    "clipping": "byzdask.pre_aggregators.clipping:Clipping",
    "arc": "byzdask.pre_aggregators.arc:ARC",
    "nnm": "byzdask.pre_aggregators.nnm:NearestNeighborMixing",
    "bucketing": "byzdask.pre_aggregators.bucketing:Bucketing",
}
ATTACKS = {
    "empire": "byzdask.attacks.empire:EmpireAttack",
    "signflip": "byzdask.attacks.sign_flip:SignFlipAttack",
    "labelflip": "byzdask.attacks.label_flip:LabelFlipAttack",
    "little": "byzdask.attacks.little:LittleAttack",
    "gaussian": "byzdask.attacks.gaussian:GaussianAttack",
    "inf": "byzdask.attacks.inf:InfAttack",
    "mimic": "byzdask.attacks.mimic:MimicAttack",
    "empire-opt": "byzdask.attacks.optimal:OptimalEmpireAttack",
    "little-opt": "byzdask.attacks.optimal:OptimalLittleAttack",
    "minmax": "byzdask.attacks.min_max:MinMaxAttack",
    "minsum": "byzdask.attacks.min_max:MinSumAttack",
    "fang": "byzdask.attacks.fang:FangAttack",
}
_KINDS = {"aggregator": AGGREGATORS, "pre-aggregator": PRE_AGGREGATORS, "attack": ATTACKS}


def resolve(kind: str, name: str) -> type:
    """The class registered under ``name`` for ``kind`` ("aggregator", "pre-aggregator", "attack").

    Examples
    --------
    >>> resolve("aggregator", "average").__name__
    'Average'
    """
    if kind not in _KINDS:
        raise ConfigurationError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    table = _KINDS[kind]
    if name not in table:
        raise ConfigurationError(f"unknown {kind} {name!r}; choose one of: {', '.join(table)}")
    module, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def build(kind: str, name: str, defaults: dict[str, Any] | None = None, /, **kwargs: Any) -> Any:
    """Instantiate the class registered under ``name`` with ``kwargs``.

    ``defaults`` are the values a run offers every class (``f``, ``seed``, ``N``...): each is passed
    only to a class whose constructor takes it. ``kwargs`` are passed as given, and a class that
    refuses one raises :class:`~byzdask.errors.ConfigurationError` naming the class and the values.

    Examples
    --------
    >>> build("aggregator", "cwtm", {"f": 2, "seed": 0}).f
    2
    >>> type(build("aggregator", "gm", {"f": 2})).__name__
    'GeometricMedian'
    """
    cls = resolve(kind, name)
    params = inspect.signature(cls.__init__).parameters
    merged = {k: v for k, v in (defaults or {}).items() if k in params}
    merged.update(kwargs)
    try:
        return cls(**merged)
    except TypeError as exc:
        raise ConfigurationError(f"cannot build {kind} {name!r} with {merged}: {exc}") from exc
