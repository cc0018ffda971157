"""Huge and tiny finite vectors (issue 18, item 1): no rule overflows, none turns against the honest.

Property tests over magnitudes from 1e-30 to the dtype's maximum, for every registered rule and
pre-aggregator, in float32 and float64; small n and d, few examples, so the file takes seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.aggregators import CoordinateWiseTrimmedMean
from byzdask.errors import NonFiniteError
from byzdask.kernels.gram import sound_rows
from byzdask.registry import AGGREGATORS, PRE_AGGREGATORS, build

N_HONEST, F, D = 7, 2, 5


def _rules():
    """(name, rule, whether its output must stay near the honest vectors)."""
    out = []
    for name in AGGREGATORS:
        if name == "average":
            out.append((name, build("aggregator", name), False))
        elif name in ("cwmed", "gm"):
            out.append((name, build("aggregator", name), True))
        elif name == "rfa":  # T=3 smoothed Weiszfeld steps from the mean: finite, not yet near
            out.append((name, build("aggregator", name), False))
        elif name == "bulyan":  # needs n >= 4f + 3 = 11 for the f=2 outliers here: see test_bulyan_huge_outliers
            continue
        elif name == "cc":
            # its radius is absolute (not relative to the honest spread): finite only
            out.append(("cc-mean", build("aggregator", name, c_tau=1.0), False))
            out.append(("cc-median", build("aggregator", name, c_tau=1.0, init="median"), False))
        else:
            out.append((name, build("aggregator", name, {"f": F}), True))
    return out


def _chains():
    """(name, pre-aggregator, whether CWTM after it must stay near the honest vectors)."""
    return [
        ("nnm", build("pre-aggregator", "nnm", f=F), True),
        ("arc", build("pre-aggregator", "arc", f=F), True),
        ("bucketing", build("pre-aggregator", "bucketing", bucket_size=2, seed=0), True),
        ("clipping", build("pre-aggregator", "clipping", threshold=2.0), False),
    ]


def _log_max(dtype) -> float:
    return math.log10(float(np.finfo(dtype).max))


def _honest(seed: int, scale: float, dtype) -> np.ndarray:
    z = np.clip(np.random.default_rng(seed).normal(size=(N_HONEST, D)), -4.0, 4.0)
    return (z * scale).astype(dtype)


def _byzantine(seed: int, magnitude: float, dtype) -> np.ndarray:
    signs = np.random.default_rng(seed + 1).choice([-1.0, 1.0], size=(F, D))
    return (signs * magnitude).astype(dtype)


def _near(out: np.ndarray, honest: np.ndarray, slack: float = 3.0) -> bool:
    h = honest.astype(np.float64)
    mean = h.mean(axis=0)
    radius = float(np.linalg.norm(h - mean, axis=1).max())
    return float(np.linalg.norm(out.astype(np.float64) - mean)) <= slack * radius + 1e-300


def _exponents(dtype, honest_top: float):
    return st.tuples(st.integers(0, 2**16), st.floats(-30.0, honest_top), st.floats(-30.0, _log_max(dtype)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outliers_of_any_magnitude(dtype):
    """f vectors of any magnitude: every rule's output is finite, the robust ones near the honest."""
    # honest squared norms must fit float64 for the distance rules (else they are all faulty)
    honest_top = min(_log_max(dtype) - 1.5, 150.0)

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(_exponents(dtype, honest_top))
    def check(args):
        seed, u, v = args
        honest = _honest(seed, 10.0**u, dtype)
        x = np.concatenate([honest, _byzantine(seed, min(10.0**v, float(np.finfo(dtype).max)), dtype)])
        for name, rule, near in _rules():
            out = rule.aggregate(x)
            assert np.isfinite(out).all(), f"{name}: non-finite output, honest 1e{u:.1f}, byzantine 1e{v:.1f}"
            if near and not (name == "gm" and u < -8):  # GM's distance floor eps=1e-12 is absolute
                assert _near(out, honest), f"{name}: far from the honest vectors, honest 1e{u:.1f}, byzantine 1e{v:.1f}"
        tail = CoordinateWiseTrimmedMean(f=F)
        for name, pre, near in _chains():
            rows = pre.pre_aggregate(x)
            assert np.isfinite(rows).all(), f"{name}: non-finite rows"
            if near:
                assert _near(tail.aggregate(rows), honest), f"{name}+cwtm: far from the honest vectors"

    check()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_honest_near_the_maximum(dtype):
    """Honest inputs up to the dtype's maximum: finite results, or (distance rules, float64 only) the
    library's NonFiniteError when the squared norms do not fit float64."""

    @settings(max_examples=20, deadline=None, derandomize=True)
    @given(st.integers(0, 2**16), st.floats(-30.0, _log_max(dtype) - 0.61))  # 4 x scale stays finite
    def check(seed, u):
        x = _honest(seed, 10.0**u, dtype)
        fits = bool(sound_rows(x).all())
        for name, rule, _ in _rules():
            try:
                out = rule.aggregate(x)
            except NonFiniteError:
                assert (rule.kind == "gram" or rule.uses_distances) and not fits, f"{name} refused representable inputs at 1e{u:.1f}"
                continue
            assert np.isfinite(out).all(), f"{name}: non-finite output at 1e{u:.1f}"
        for name, pre, _ in _chains():
            if name == "nnm" and not fits:
                with pytest.raises(NonFiniteError):
                    pre.pre_aggregate(x)
                continue
            assert np.isfinite(pre.pre_aggregate(x)).all(), f"{name}: non-finite rows at 1e{u:.1f}"

    check()


def test_oversized_rows_count_against_f():
    """float64 rows whose squared norm does not fit are faulty: dropped up to f, an error beyond."""
    honest = _honest(0, 1.0, np.float64)
    big = np.full((1, D), 1e200)
    krum = build("aggregator", "krum", f=1)
    assert _near(krum.aggregate(np.concatenate([honest, big])), honest)
    with pytest.raises(NonFiniteError, match="squared norm"):
        krum.aggregate(np.concatenate([honest, big, big]))
    with pytest.raises(NonFiniteError, match="squared norm"):
        build("pre-aggregator", "nnm", f=1).pre_aggregate(np.concatenate([honest, big, big]))


def test_issue_example_float32():
    """The issue's probe: 7 N(0,1) rows and 2 rows of 1e20 in float32, f=2."""
    honest = _honest(3, 1.0, np.float32)
    x = np.concatenate([honest, np.full((2, D), 1e20, np.float32)])
    for name, rule, near in _rules():
        out = rule.aggregate(x)
        assert np.isfinite(out).all(), name
        assert not near or _near(out, honest), name
    mixed = build("pre-aggregator", "nnm", f=F).pre_aggregate(x)
    assert np.abs(mixed[:N_HONEST]).max() > 0.0  # the honest rows are not zeroed
    assert _near(CoordinateWiseTrimmedMean(f=F).aggregate(mixed), honest)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bulyan_huge_outliers(dtype):
    """Bulyan (n >= 4f + 3): f rows from 1e17 to the dtype's maximum, output finite and near the honest."""
    honest = np.clip(np.random.default_rng(5).normal(size=(9, D)), -4.0, 4.0).astype(dtype)
    rule = build("aggregator", "bulyan", {"f": F})
    for magnitude in (1e17, 1e30, float(np.finfo(dtype).max)):
        x = np.concatenate([honest, _byzantine(5, magnitude, dtype)])
        out = rule.aggregate(x)
        assert np.isfinite(out).all() and _near(out, honest), magnitude
