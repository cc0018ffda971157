import importlib.util

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.aggregators import (
    CoordinateWiseMedian,
    CoordinateWiseTrimmedMean,
    MeanOfMedians,
)
from byzdask.errors import ConfigurationError, NonFiniteError, ToleranceError
from byzdask.kernels import coordinate
from byzdask.testing import (
    assert_finite_under_nonfinite,
    assert_permutation_invariant,
    assert_robust_to_outliers,
    assert_subtasks_match,
    assert_translation_equivariant,
)


# -- slow, obvious references ------------------------------------------------------------
def ref_median(x):
    s = np.sort(x.astype(np.float64), axis=0)
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) / 2


def ref_trimmed_mean(x, f):
    s = np.sort(x.astype(np.float64), axis=0)
    return s[f:len(s) - f].mean(axis=0)


def ref_mean_of_medians(x, f):
    flat = x.astype(np.float64).reshape(len(x), -1)
    med = ref_median(flat)
    out = []
    for k in range(flat.shape[1]):
        # the n - f closest to the median; a tie in distance keeps the smaller value
        kept = sorted(flat[:, k], key=lambda v: (abs(v - med[k]), v))[: len(flat) - f]
        out.append(np.mean(kept))
    return np.array(out).reshape(x.shape[1:])


#: numba: the compiled kernels; numpy: the numpy networks and sorts (the fallback without numba)
NEEDS_NUMBA = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
ROUTES = [pytest.param("numba", marks=NEEDS_NUMBA), "numpy"]


@pytest.fixture(params=ROUTES)
def route(request, monkeypatch):
    monkeypatch.setattr(coordinate, "USE_NUMBA", request.param == "numba")
    return request.param


RULES = [
    ("cwmed", lambda f: CoordinateWiseMedian(), lambda x, f: ref_median(x)),
    ("cwtm", CoordinateWiseTrimmedMean, ref_trimmed_mean),
    ("meamed", MeanOfMedians, ref_mean_of_medians),
]
IDS = [r[0] for r in RULES]


@pytest.mark.parametrize("name, make, ref", RULES, ids=IDS)
@pytest.mark.parametrize("use_numba", [pytest.param(True, marks=NEEDS_NUMBA, id="numba"),
                                       pytest.param(False, id="numpy")])
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), shape=st.sampled_from([(1,), (5,), (3, 2), (2, 1, 3)]),
       dtype=st.sampled_from([np.float32, np.float64]), ties=st.booleans(),
       seed=st.integers(0, 2**32 - 1), data=st.data())
def test_matches_reference(name, make, ref, use_numba, n, shape, dtype, ties, seed, data):
    rng = np.random.default_rng(seed)
    x = (rng.integers(-3, 4, size=(n, *shape)) if ties else rng.normal(size=(n, *shape))).astype(dtype)
    f = data.draw(st.integers(0, (n - 1) // 2))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(coordinate, "USE_NUMBA", use_numba)
        out = make(f).aggregate(list(x))
    assert out.shape == shape and out.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref(x, f), rtol=tol, atol=tol)


@pytest.mark.parametrize("name, make, ref", RULES, ids=IDS)
@pytest.mark.parametrize("n", [31, 32, 64, 70])
def test_matches_reference_at_benchmark_sizes(name, make, ref, n, rng, route):
    # large n goes through both kernel routes (network and transposed sort)
    x = rng.normal(size=(n, 300)).astype(np.float32)
    for f in sorted({0, 1, n // 4, (n - 1) // 2}):
        np.testing.assert_allclose(make(f).aggregate(x), ref(x, f), rtol=1e-5, atol=1e-5)


def test_hand_computed():
    x = np.array([[1.0, 10.0], [2.0, -4.0], [7.0, 0.0], [100.0, 1.0]])
    np.testing.assert_allclose(CoordinateWiseMedian().aggregate(x), [4.5, 0.5])
    np.testing.assert_allclose(CoordinateWiseTrimmedMean(1).aggregate(x), [4.5, 0.5])
    np.testing.assert_allclose(CoordinateWiseTrimmedMean(0).aggregate(x), x.mean(axis=0))
    # column 0: median 4.5, distances 3.5, 2.5, 2.5, 95.5 -> keep 1, 2, 7
    # column 1: median 0.5, distances 9.5, 4.5, 0.5, 0.5 -> keep -4, 0, 1
    np.testing.assert_allclose(MeanOfMedians(1).aggregate(x), [10 / 3, -1.0])
    # odd n: the middle value itself
    np.testing.assert_allclose(CoordinateWiseMedian().aggregate(x[:3]), [2.0, 0.0])


def test_mean_of_medians_ties_keep_the_smaller_value():
    # median 2; 1 and 3 are equally far: 1 is kept
    x = np.array([[2.0], [1.0], [3.0], [2.0], [2.0]])
    np.testing.assert_allclose(MeanOfMedians(1).aggregate(x), [7 / 4])
    np.testing.assert_allclose(MeanOfMedians(1).aggregate(x[::-1]), [7 / 4])


@pytest.mark.parametrize("name, make, ref", RULES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_input_kept(name, make, ref, dtype, route):
    x = [torch.randn(4, 3, dtype=dtype) for _ in range(7)]
    out = make(2).aggregate(x)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == (4, 3)
    np.testing.assert_allclose(out.numpy(), ref(torch.stack(x).numpy(), 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, make, ref", RULES, ids=IDS)
def test_properties(name, make, ref, rng, route):
    honest = rng.normal(size=(9, 5, 4))
    rule = make(3)
    assert_permutation_invariant(rule, honest)
    assert_translation_equivariant(rule, honest)
    assert_robust_to_outliers(rule, honest, 3)
    assert_finite_under_nonfinite(rule, honest, 3)
    for n_blocks in (1, 3, 7):
        assert_subtasks_match(rule, honest, n_blocks=n_blocks)


@pytest.mark.parametrize("name, make, ref", RULES, ids=IDS)
def test_subtasks_with_dropped_rows_and_torch(name, make, ref, rng, route):
    x = rng.normal(size=(11, 50)).astype(np.float32)
    x[4, 7] = np.nan
    assert_subtasks_match(make(3), x, n_blocks=4)
    assert_subtasks_match(make(3), torch.from_numpy(x), n_blocks=5)


@pytest.mark.parametrize("name, make, ref", RULES[1:], ids=IDS[1:])
def test_nonfinite_rows_dropped_with_f_reduced(name, make, ref, rng):
    honest = rng.normal(size=(8, 6))
    bad = np.full((2, 6), np.nan)
    bad[1] = np.inf
    x = np.concatenate([honest[:3], bad, honest[3:]])
    np.testing.assert_allclose(make(3).aggregate(x), ref(honest, 1))
    with pytest.raises(NonFiniteError, match="2 of 10"):
        make(1).aggregate(x)


def test_median_nonfinite_up_to_half(rng):
    honest = rng.normal(size=(6, 3))
    bad = np.array([[np.nan, 0.0, 0.0], [0.0, -np.inf, 0.0]])
    np.testing.assert_allclose(CoordinateWiseMedian().aggregate(np.concatenate([bad, honest])),
                               ref_median(honest))
    many = np.concatenate([np.full((4, 3), np.nan), honest[:3]])  # 4 > (7 - 1) // 2
    with pytest.raises(NonFiniteError, match="4 of 7"):
        CoordinateWiseMedian().aggregate(many)


@pytest.mark.parametrize("cls", [CoordinateWiseTrimmedMean, MeanOfMedians])
def test_tolerance_bounds(cls):
    rule = cls(2)
    assert rule.max_f(5) == 2 and rule.max_f(4) == 1 and rule.min_n(2) == 5
    rule.aggregate(np.zeros((5, 3)))
    with pytest.raises(ToleranceError, match="n=4"):
        rule.aggregate(np.zeros((4, 3)))
    assert CoordinateWiseMedian().max_f(7) == 3 and CoordinateWiseMedian().f is None


@pytest.mark.parametrize("cls", [CoordinateWiseTrimmedMean, MeanOfMedians])
@pytest.mark.parametrize("bad", [-1, 1.5, "2", None, True])
def test_bad_f_fails_in_constructor(cls, bad):
    with pytest.raises(ConfigurationError, match="f must be"):
        cls(bad)


def test_repr_and_names():
    assert repr(CoordinateWiseTrimmedMean(2)) == "CoordinateWiseTrimmedMean(f=2)"
    assert repr(MeanOfMedians(1)) == "MeanOfMedians(f=1)"
    assert repr(CoordinateWiseMedian()) == "CoordinateWiseMedian()"


@pytest.mark.requires_cupy
@pytest.mark.parametrize("name, make, ref", RULES, ids=IDS)
def test_cupy_input_kept(name, make, ref, rng):
    import cupy

    x = rng.normal(size=(9, 40)).astype(np.float32)
    out = make(2).aggregate(cupy.asarray(x))
    assert isinstance(out, cupy.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(cupy.asnumpy(out), ref(x, 2), rtol=1e-5, atol=1e-6)
