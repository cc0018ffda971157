import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.kernels import coordinate as K


def _apply(network, values):
    v = list(values)
    for i, j in network:
        if v[i] > v[j]:
            v[i], v[j] = v[j], v[i]
    return v


@pytest.mark.parametrize("m", range(18))
def test_merge_exchange_sorts_every_01_input(m):
    # 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input
    net = K.merge_exchange_network(m)
    assert all(i < j < m for i, j in net)
    for bits in itertools.product((0, 1), repeat=min(m, 12)):
        v = list(bits) + [1] * (m - len(bits))
        assert _apply(net, v) == sorted(v)


def _ranked_numpy(x, ranks, *, half=False, route):
    if route == "sort":
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(K, "SORT_ROW_OPERATIONS", -1)
            return K.order_statistics(x, ranks, np, half=half)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "SORT_ROW_OPERATIONS", 10**9)
        return K.order_statistics(x, ranks, np, half=half)


@pytest.mark.parametrize("route", ["network", "sort"])
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20), b=st.integers(1, 7), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_order_statistics_match_sort(route, m, b, seed, data):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(m, b)).astype(np.float64)  # many ties
    x0 = x.copy()
    f = data.draw(st.integers(0, (m - 1) // 2))
    ranks = (*range(f), (m - 1) // 2, m // 2, *range(m - f, m))
    ref = np.sort(x, axis=0)
    r = _ranked_numpy(x, ranks, route=route)
    np.testing.assert_array_equal(x, x0)  # input untouched
    for k in ranks:
        np.testing.assert_array_equal(r.row(k), ref[k])
    np.testing.assert_allclose(r.sum_rows(f, m - f), ref[f:m - f].sum(axis=0))
    half = _ranked_numpy(x, ((m - 1) // 2, m // 2), half=True, route=route)
    np.testing.assert_array_equal(half.row((m - 1) // 2), ref[(m - 1) // 2])
    np.testing.assert_array_equal(half.row(m // 2), ref[m // 2])


@pytest.mark.parametrize("m", [2, 3, 5, 8, 13, 16])
def test_selection_network_on_every_01_input(m):
    # every 0/1 column at once; by the 0-1 principle this covers every input order
    x = ((np.arange(2**m)[None, :] >> np.arange(m)[:, None]) & 1).astype(np.float64)
    s = np.sort(x, axis=0)
    for f in range((m - 1) // 2 + 1):
        ranks = (*range(f), *range(m - f, m))
        prog = K.selection_network(m, ranks)
        assert len(prog.rest) == m - len(ranks)
        r = K.order_statistics(x, ranks, np)
        for k in ranks:
            np.testing.assert_array_equal(r.row(k), s[k])
        np.testing.assert_array_equal(r.sum_rows(f, m - f), s[f:m - f].sum(axis=0))
        r = K.order_statistics(x, ranks, np, sets=True)
        np.testing.assert_array_equal(r.sum_rows(f, m - f), s[f:m - f].sum(axis=0))
    med = K.order_statistics(x, ((m - 1) // 2, m // 2), np, half=True)
    np.testing.assert_array_equal(med.row((m - 1) // 2), s[(m - 1) // 2])
    np.testing.assert_array_equal(med.row(m // 2), s[m // 2])


def test_pruning_saves_work():
    assert K.selection_network(32, (15, 16), half=True).row_operations < 2 * 157
    assert K.selection_network(32, (0, 31)).row_operations == 92
    assert len(K.merge_exchange_network(32)) == 191


def test_sum_rows_and_row_refuse_what_was_not_asked():
    r = K.order_statistics(np.arange(10.0).reshape(5, 2), (0, 4), np)
    with pytest.raises(ValueError, match="not asked"):
        r.row(2)
    with pytest.raises(ValueError, match="asked for"):
        r.sum_rows(0, 3)


def _ref_mom(x, f):
    m = x.shape[0]
    out = []
    for col in x.T:
        med = np.median(col)
        kept = sorted(col, key=lambda v: (abs(v - med), v))[: m - f]
        out.append(np.mean(kept))
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 15), b=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       route=st.sampled_from(["network", "sort"]), ties=st.booleans(), data=st.data())
def test_kernels_match_references(m, b, seed, route, ties, data):
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, size=(m, b)).astype(np.float64) if ties else rng.normal(size=(m, b))
    f = data.draw(st.integers(0, (m - 1) // 2))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "SORT_ROW_OPERATIONS", -1 if route == "sort" else 10**9)
        np.testing.assert_allclose(K.coordinate_median(x, np), np.median(x, axis=0), rtol=1e-12)
        np.testing.assert_allclose(K.coordinate_trimmed_mean(x, f, np),
                                   np.sort(x, axis=0)[f:m - f].mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(K.coordinate_mean_of_medians(x, f, np), _ref_mom(x, f), rtol=1e-12, atol=1e-12)


def test_mean_of_medians_tie_keeps_the_smaller_value():
    # median 0; -1 and +1 are equally far: the smaller one (-1) is kept
    x = np.array([[-1.0], [0.0], [0.0], [1.0], [0.0]])
    np.testing.assert_allclose(K.coordinate_mean_of_medians(x, 1, np), [-0.25])


def test_median_does_not_overflow():
    big = np.finfo(np.float32).max
    x = np.array([[big], [big], [-1.0], [big]], dtype=np.float32)
    assert np.isfinite(K.coordinate_median(x, np)).all()


@pytest.mark.requires_cupy
def test_kernels_on_cupy(rng):
    import cupy

    x = rng.normal(size=(9, 50))
    xc = cupy.asarray(x)
    np.testing.assert_allclose(cupy.asnumpy(K.coordinate_median(xc, cupy)), np.median(x, axis=0))
    np.testing.assert_allclose(cupy.asnumpy(K.coordinate_trimmed_mean(xc, 2, cupy)),
                               np.sort(x, axis=0)[2:7].mean(axis=0))
    np.testing.assert_allclose(cupy.asnumpy(K.coordinate_mean_of_medians(xc, 2, cupy)), _ref_mom(x, 2))


def test_trim_kernels_check_f():
    x = np.zeros((4, 2))
    for kernel in (K.coordinate_trimmed_mean, K.coordinate_mean_of_medians):
        with pytest.raises(ValueError, match="f=2 with m=4"):
            kernel(x, 2, np)


@pytest.mark.parametrize("m, t", [(2, 1), (8, 2), (16, 1), (16, 2), (16, 4), (16, 8)])
def test_ends_network_on_every_01_input(m, t):
    x = ((np.arange(2**m)[None, :] >> np.arange(m)[:, None]) & 1).astype(np.int8)
    s = np.sort(x, axis=0)
    rows = list(x.copy())
    for i, j in K.ends_network(m, t):
        rows[i], rows[j] = np.minimum(rows[i], rows[j]), np.maximum(rows[i], rows[j])
    out = np.array(rows)
    np.testing.assert_array_equal(out[:t], s[:t])
    np.testing.assert_array_equal(out[m - t:], s[m - t:])


@pytest.mark.parametrize("m", [32, 64])
def test_ends_programs_on_ties_at_benchmark_sizes(m, rng):
    x = rng.integers(-3, 4, size=(m, 500)).astype(np.float32)
    s = np.sort(x, axis=0)
    for f in (1, 2, 3, 4, 8):
        ranks = (*range(f), *range(m - f, m))
        r = K.order_statistics(x, ranks, np)
        for k in ranks:
            np.testing.assert_array_equal(r.row(k), s[k])
        np.testing.assert_array_equal(r.sum_rows(f, m - f), s[f:m - f].sum(axis=0))
        r = K.order_statistics(x, ranks, np, sets=True)
        np.testing.assert_array_equal(r.sum_rows(f, m - f), s[f:m - f].sum(axis=0))


def test_sets_programs_skip_ordering_within_groups():
    ends = (*range(8), *range(24, 32))
    assert K.selection_network(32, ends, sets=True).row_operations < K.selection_network(32, ends).row_operations
    r = K.order_statistics(np.arange(10.0).reshape(5, 2), (0, 1, 4), np, sets=True)
    np.testing.assert_array_equal(r.sum_rows(2, 4), [10.0, 12.0])
    with pytest.raises(ValueError, match="as sets only"):
        r.row(0)
    with pytest.raises(ValueError, match="asked for"):
        r.sum_rows(1, 4)


def test_ends_network_checks_sizes():
    with pytest.raises(ValueError, match="m=12, t=2"):
        K.ends_network(12, 2)
    assert K.selection_network(32, (0, 1, 30, 31)).row_operations == 180
