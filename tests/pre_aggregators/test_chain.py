import importlib.util

import numpy as np
import pytest
import torch

from byzdask.aggregators import Average
from byzdask.aggregators.base import Aggregator
from byzdask.errors import ConfigurationError, NonFiniteError, ToleranceError
from byzdask.pre_aggregators import (
    ARC,
    Bucketing,
    Clipping,
    NearestNeighborMixing,
    PreAggregator,
    PreAggregatorChain,
    RobustAggregator,
    chain,
)
from byzdask.testing import assert_finite_under_nonfinite, assert_robust_to_outliers


class _Median(Aggregator):
    """A small robust rule for these tests: the coordinate-wise median (n > 2f)."""

    kind = "columnwise"

    def __init__(self, f):
        self.f = f

    def column_kernel(self, block, f, xp):
        return xp.median(block, axis=0)


def test_chain_is_composition(rng):
    x = rng.normal(size=(7, 5)) * np.arange(1, 8)[:, None]
    steps = PreAggregatorChain(Clipping(3.0), NearestNeighborMixing(2))
    assert isinstance(steps, PreAggregator)
    expected = NearestNeighborMixing(2).pre_aggregate(Clipping(3.0).pre_aggregate(x))
    np.testing.assert_allclose(steps.pre_aggregate(x), expected)
    assert repr(steps) == "PreAggregatorChain(Clipping(threshold=3.0), NearestNeighborMixing(f=2))"
    buck = PreAggregatorChain(ARC(1), Bucketing(2, seed=0))
    assert buck.pre_aggregate(x).shape == (4, 5)


def test_robust_aggregator_runs_steps_then_rule(rng):
    x = rng.normal(size=(6, 2, 3))
    rule = RobustAggregator(Average(), pre_aggregators=[NearestNeighborMixing(1)])
    expected = NearestNeighborMixing(1).pre_aggregate(x).mean(axis=0)
    np.testing.assert_allclose(rule.aggregate(x), expected)
    assert rule.aggregate(x).shape == (2, 3)
    single = RobustAggregator(_Median(1), Clipping(1.0))  # one step need not be wrapped
    np.testing.assert_allclose(single(x), np.median(Clipping(1.0).pre_aggregate(x), axis=0))
    plain = RobustAggregator(_Median(1))
    np.testing.assert_allclose(plain(x), np.median(x, axis=0))
    assert rule.kind == "direct" and rule.f is None and single.f == 1 and single.max_f(9) == 4


def test_chain_sugar():
    agg = chain(NearestNeighborMixing(1), Clipping(1.0), _Median(1))
    assert isinstance(agg, RobustAggregator) and len(agg.pre_aggregators) == 2
    assert isinstance(chain(Clipping(), ARC(1)), PreAggregatorChain)
    assert repr(chain(Clipping(1.0), Average())) == (
        "RobustAggregator(aggregator=Average(), pre_aggregators=(Clipping(threshold=1.0),))")


def test_with_outliers_and_nonfinite_stays_finite(rng):
    honest = rng.normal(size=(9, 16)) + 1.0
    for rule in (chain(NearestNeighborMixing(2), _Median(2)), chain(Clipping(5.0), _Median(2)),
                 chain(ARC(2), NearestNeighborMixing(2), _Median(2)), chain(Bucketing(1, seed=0), _Median(2))):
        assert_robust_to_outliers(rule, honest, 2)
        assert_finite_under_nonfinite(rule, honest, 2)
    with pytest.raises(NonFiniteError):  # more non-finite than the steps' f
        chain(NearestNeighborMixing(1), _Median(2)).aggregate(
            np.concatenate([honest, np.full((2, 16), np.nan)]))


def test_torch_in_torch_out():
    x = [torch.randn(4, dtype=torch.float32) for _ in range(5)]
    out = chain(ARC(1), NearestNeighborMixing(1), Average()).aggregate(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (4,)


def test_rule_checks_n_after_bucketing(rng):
    x = rng.normal(size=(6, 3))
    with pytest.raises(ToleranceError, match="got n=3"):  # 6 vectors in buckets of 2: 3 reach the rule
        chain(Bucketing(2, seed=0), _Median(2)).aggregate(x)


@pytest.mark.skipif(importlib.util.find_spec("byzdask.aggregators.coordinate_wise.trimmed_mean") is None,
                    reason="CoordinateWiseTrimmedMean not written yet")
def test_nnm_then_trimmed_mean(rng):
    from byzdask.aggregators.coordinate_wise.trimmed_mean import (
        CoordinateWiseTrimmedMean,
    )

    honest = rng.normal(size=(10, 32))
    rule = chain(NearestNeighborMixing(3), CoordinateWiseTrimmedMean(3))
    assert_robust_to_outliers(rule, honest, 3)
    assert_finite_under_nonfinite(rule, honest, 3)
    x = rng.normal(size=(9, 4))
    mixed = np.sort(NearestNeighborMixing(2).pre_aggregate(x), axis=0)
    out = chain(NearestNeighborMixing(2), CoordinateWiseTrimmedMean(2)).aggregate(x)
    np.testing.assert_allclose(out, mixed[2:-2].mean(axis=0))


@pytest.mark.parametrize("build, msg", [
    (lambda: PreAggregatorChain(), "at least one"),
    (lambda: PreAggregatorChain(Clipping(), Average()), "step 1 must be a PreAggregator"),
    (lambda: RobustAggregator(Clipping()), "aggregator must be an Aggregator"),
    (lambda: RobustAggregator(Average(), pre_aggregators=3), "sequence"),
    (lambda: RobustAggregator(Average(), pre_aggregators=[Average()]), "step 0"),
    (lambda: chain(), "at least one"),
    (lambda: chain(Average(), Clipping()), "step 0 must be a PreAggregator"),
])
def test_bad_compositions(build, msg):
    with pytest.raises(ConfigurationError, match=msg):
        build()


@pytest.mark.requires_cupy
def test_cupy_matches_numpy(rng):
    import cupy

    x = (rng.normal(size=(9, 70_000)) * np.arange(1, 10)[:, None]).astype(np.float32)
    x[3, 5] = np.nan
    for step in (Clipping(3.0), ARC(2), NearestNeighborMixing(2), Bucketing(2, seed=0), Bucketing(1, seed=0),
                 PreAggregatorChain(ARC(2), NearestNeighborMixing(2))):
        out = step.pre_aggregate(cupy.asarray(x))
        assert isinstance(out, cupy.ndarray) and out.dtype == cupy.float32
        np.testing.assert_allclose(out.get(), step.pre_aggregate(x), rtol=1e-4, atol=1e-4, equal_nan=True)
    out = chain(NearestNeighborMixing(2), _Median(2)).aggregate(cupy.asarray(x))
    assert isinstance(out, cupy.ndarray) and bool(cupy.isfinite(out).all())


@pytest.mark.requires_gpu
def test_torch_cuda_stays_on_device(rng):
    x = torch.tensor(rng.normal(size=(7, 1000)), dtype=torch.float32, device="cuda")
    out = chain(Clipping(1.0), NearestNeighborMixing(2), Bucketing(1, seed=0)).pre_aggregate(x)
    assert out.device.type == "cuda" and out.dtype == torch.float32 and out.shape == (7, 1000)
