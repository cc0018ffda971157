import importlib.util
import itertools
import sys

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


HAS_NUMBA = importlib.util.find_spec("numba") is not None
ROUTES = ["network", "sort"] + (["numba"] if HAS_NUMBA else [])
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")


def _force_route(mp, route):
    """numba: the compiled route; network / sort: the numpy network / the numpy sort."""
    mp.setattr(K, "USE_NUMBA", route == "numba")
    mp.setattr(K, "SORT_ROW_OPERATIONS", -1 if route == "sort" else 10**9)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 15), b=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       route=st.sampled_from(ROUTES), ties=st.booleans(), data=st.data())
def test_kernels_match_references(m, b, seed, route, ties, data):
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, size=(m, b)).astype(np.float64) if ties else rng.normal(size=(m, b))
    f = data.draw(st.integers(0, (m - 1) // 2))
    with pytest.MonkeyPatch.context() as mp:
        _force_route(mp, route)
        np.testing.assert_allclose(K.coordinate_median(x, np), np.median(x, axis=0), rtol=1e-12)
        np.testing.assert_allclose(K.coordinate_trimmed_mean(x, f, np),
                                   np.sort(x, axis=0)[f:m - f].mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(K.coordinate_mean_of_medians(x, f, np), _ref_mom(x, f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("route", ROUTES)
def test_mean_of_medians_tie_keeps_the_smaller_value(route, monkeypatch):
    _force_route(monkeypatch, route)
    # median 0; -1 and +1 are equally far: the smaller one (-1) is kept
    x = np.array([[-1.0], [0.0], [0.0], [1.0], [0.0]])
    np.testing.assert_allclose(K.coordinate_mean_of_medians(x, 1, np), [-0.25])


@pytest.mark.parametrize("route", ROUTES)
def test_median_does_not_overflow(route, monkeypatch):
    _force_route(monkeypatch, route)
    big = np.finfo(np.float32).max
    x = np.array([[big], [big], [-1.0], [big]], dtype=np.float32)
    assert np.isfinite(K.coordinate_median(x, np)).all()


# -- the compiled route (numba) ----------------------------------------------------------
def _layout(x, kind):
    """The same values in another memory layout: what the rules pass in (column slices) and others."""
    if kind == "slice":  # rows contiguous, the matrix not: a column block of a wider array
        wide = np.zeros((x.shape[0], x.shape[1] + 7), dtype=x.dtype)
        wide[:, 3:3 + x.shape[1]] = x
        return wide[:, 3:3 + x.shape[1]]
    if kind == "fortran":
        return np.asfortranarray(x)
    if kind == "strided":
        wide = np.zeros((x.shape[0], 2 * x.shape[1]), dtype=x.dtype)
        wide[:, ::2] = x
        return wide[:, ::2]
    return x


def _bits(a):
    return a.view(np.uint64 if a.dtype == np.float64 else np.uint32)


@needs_numba
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 40), b=st.integers(1, 700), dtype=st.sampled_from([np.float32, np.float64]),
       ties=st.booleans(), layout=st.sampled_from(["c", "slice", "fortran", "strided"]),
       seed=st.integers(0, 2**32 - 1), data=st.data())
def test_compiled_route_is_bit_identical_to_numpy_network(m, b, dtype, ties, layout, seed, data):
    # b up to 700 spans several chunks of the compiled loop, with a partial last one
    rng = np.random.default_rng(seed)
    x = (rng.integers(-3, 4, size=(m, b)) if ties else rng.normal(size=(m, b)) * 10.0 ** rng.integers(-3, 4)
         ).astype(dtype)
    f = data.draw(st.integers(1, (m - 1) // 2)) if m > 2 else 0
    block = _layout(x, layout)
    kernels = [lambda v: K.coordinate_median(v, np), lambda v: K.coordinate_trimmed_mean(v, f, np),
               lambda v: K.coordinate_mean_of_medians(v, f, np)]
    with pytest.MonkeyPatch.context() as mp:
        _force_route(mp, "numba")
        fused = [kernel(block) for kernel in kernels]
        _force_route(mp, "network")
        plain = [kernel(x) for kernel in kernels]
    np.testing.assert_array_equal(block, x)  # input untouched
    for a, ref in zip(fused, plain):
        assert a.dtype == ref.dtype and a.shape == (b,)
        np.testing.assert_array_equal(_bits(a), _bits(ref))


@needs_numba
def test_compiled_route_at_benchmark_sizes(rng, monkeypatch):
    # the networks of the benchmark (n = 32, 64; f = n // 4) against the numpy network, bit for bit
    for m in (31, 32, 64):
        x = rng.normal(size=(m, 1000)).astype(np.float32)[:, 100:900]
        for f in (1, m // 4, (m - 1) // 2):
            out = {}
            for route in ("numba", "network"):
                _force_route(monkeypatch, route)
                out[route] = [K.coordinate_median(x, np), K.coordinate_trimmed_mean(x, f, np),
                              K.coordinate_mean_of_medians(x, f, np)]
            for a, ref in zip(out["numba"], out["network"]):
                np.testing.assert_array_equal(_bits(a), _bits(ref))


@needs_numba
def test_flat_rows_views_without_copy():
    from byzdask.kernels._numba_coordinate import flat_rows

    x = np.arange(60.0).reshape(6, 10)
    block = x[:, 2:7]
    flat, stride = flat_rows(block)
    assert stride == 10 and np.shares_memory(flat, x) and not flat.flags.writeable
    assert all((flat[r * stride: r * stride + 5] == block[r]).all() for r in range(6))
    flat, stride = flat_rows(x[:, ::2])  # no contiguous rows: a contiguous copy
    assert stride == 5 and not np.shares_memory(flat, x)
    np.testing.assert_array_equal(flat.reshape(6, 5), x[:, ::2])
    flat, stride = flat_rows(x)
    assert stride == 10 and np.shares_memory(flat, x) and x.flags.writeable


@needs_numba
def test_compiled_route_falls_back_beyond_its_size_limit(rng, monkeypatch):
    x = rng.normal(size=(9, 20))
    calls = []
    for name in ("median_columns", "sum_columns", "mean_of_medians_columns"):
        monkeypatch.setattr(K.fused_kernels(), name, lambda *a, _n=name: calls.append(_n))
    monkeypatch.setattr(K, "USE_NUMBA", True)
    monkeypatch.setattr(K, "FUSED_MAX_OPERATIONS", 0)
    np.testing.assert_allclose(K.coordinate_median(x, np), np.median(x, axis=0))
    np.testing.assert_allclose(K.coordinate_trimmed_mean(x, 2, np), np.sort(x, axis=0)[2:7].mean(axis=0))
    np.testing.assert_allclose(K.coordinate_mean_of_medians(x, 2, np), _ref_mom(x, 2))
    assert calls == []
    monkeypatch.setattr(K, "FUSED_MAX_OPERATIONS", 10**9)
    K.coordinate_median(x, np), K.coordinate_trimmed_mean(x, 2, np), K.coordinate_mean_of_medians(x, 2, np)
    assert calls == ["median_columns", "sum_columns", "mean_of_medians_columns"]
    calls.clear()
    K.coordinate_median(x.astype(np.float16), np)  # other dtypes and empty blocks: numpy
    K.coordinate_median(x[:, :0], np)
    assert calls == []


def test_slot_program_resolves_relabelling():
    for m in (3, 5, 17, 31, 32, 33):
        f = (m - 1) // 4
        for ranks, kw in ((((m - 1) // 2, m // 2), {"half": True}),
                          ((*range(f), *range(m - f, m)), {"sets": True}),
                          ((*range(f), (m - 1) // 2, m // 2, *range(m - f, m)), {})):
            ops, slot, rest = K.slot_program(m, tuple(sorted(set(ranks))), **kw)
            prog = K.selection_network(m, tuple(sorted(set(ranks))), **kw)
            assert len(ops) == sum(op != "swap" for op, _, _ in prog.ops) and rest == prog.rest
            assert ops.dtype == np.int64 and (ops[:, 1:] < m).all() and (ops[:, 0] <= 2).all()
            # the wires that carry values end up on distinct rows of the block
            live = [slot[w] for w in (*sorted(set(ranks)), *rest)]
            assert len(set(live)) == len(live) and max(live) < m


def test_numpy_routes_without_numba(monkeypatch):
    # a fresh copy of the module where numba cannot be imported: the numpy routes take over
    import byzdask.kernels

    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "byzdask.kernels._numba_coordinate", raising=False)
    monkeypatch.delattr(byzdask.kernels, "_numba_coordinate", raising=False)
    spec = importlib.util.spec_from_file_location("coordinate_without_numba", K.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.USE_NUMBA is True  # allowed, but not available
    x = np.array([[3.0, 1.0], [1.0, 5.0], [2.0, 9.0], [8.0, 7.0]])
    np.testing.assert_array_equal(mod.coordinate_median(x, np), [2.5, 6.0])
    np.testing.assert_array_equal(mod.coordinate_trimmed_mean(x, 1, np), [2.5, 6.0])
    np.testing.assert_allclose(mod.coordinate_mean_of_medians(x, 1, np), [2.0, 7.0])
    assert mod.fused_kernels() is None and mod._fused is False
