import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.kernels import iterative
from byzdask.kernels.gram import gram_matrix
from byzdask.kernels.iterative import (
    anchor_weights,
    centered_clipping,
    coordinate_median,
    covariance_filter,
    iterate_distances,
    mean_weights,
    to_host,
    weiszfeld,
)


def rows_of(x, extra=None):
    """The augmented rows (inputs, origin, extras) in the original frame."""
    parts = [x, np.zeros((1, x.shape[1]))]
    if extra is not None:
        parts.append(extra)
    return np.vstack(parts)


def sample(seed, n, d, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * scale + rng.normal(size=d) * 3 * scale


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 7), d=st.integers(1, 6), k=st.integers(0, 2))
def test_iterate_distances_match_direct(seed, n, d, k):
    x = sample(seed, n, d)
    extra = np.random.default_rng(seed + 1).normal(size=(k, d)) if k else None
    g = to_host(gram_matrix(x, extra))
    w = np.random.default_rng(seed + 2).dirichlet(np.ones(g.shape[0]))
    rows = rows_of(x, extra)
    z = w @ rows
    expect = np.linalg.norm(rows - z, axis=1)
    np.testing.assert_allclose(iterate_distances(g, w, g.shape[0]), expect, rtol=1e-7, atol=1e-6)


def test_start_weights():
    assert anchor_weights(3, 1).tolist() == [0.0, 1.0, 0.0]
    assert mean_weights(4, 2).tolist() == [0.5, 0.5, 0.0, 0.0]


def test_to_host_gives_float64_numpy():
    out = to_host(np.ones((2, 2), dtype=np.float32))
    assert isinstance(out, np.ndarray) and out.dtype == np.float64


def test_weiszfeld_plain_loop(rng):
    x = rng.normal(size=(6, 4))
    g = to_host(gram_matrix(x))
    w, iters = weiszfeld(g, 6, mean_weights(7, 6), tol=0.0, max_iter=7, eps=1e-12)
    z = x.mean(axis=0)
    for _ in range(7):
        inv = 1.0 / np.maximum(np.linalg.norm(x - z, axis=1), 1e-12)
        z = inv @ x / inv.sum()
    assert iters == 7
    np.testing.assert_allclose(w[:6] @ x, z, rtol=1e-9, atol=1e-9)
    assert w[6] == 0.0 and np.isclose(w.sum(), 1.0)


def test_weiszfeld_zero_iterations_returns_start(rng):
    g = to_host(gram_matrix(rng.normal(size=(3, 2))))
    w, iters = weiszfeld(g, 3, anchor_weights(4, 3), tol=1e-6, max_iter=0, eps=1e-12)
    assert iters == 0 and w.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_weiszfeld_stops_at_tolerance(rng):
    x = rng.normal(size=(9, 5))
    g = to_host(gram_matrix(x))
    _, loose = weiszfeld(g, 9, mean_weights(10, 9), tol=1e-2, max_iter=500, eps=1e-12)
    _, tight = weiszfeld(g, 9, mean_weights(10, 9), tol=1e-10, max_iter=500, eps=1e-12)
    assert 1 <= loose < tight < 500


def test_centered_clipping_plain_loop(rng):
    x = rng.normal(size=(5, 3)) * 3
    g = to_host(gram_matrix(x))
    w = centered_clipping(g, 5, anchor_weights(6, 5), c_tau=0.7, iterations=4, eps=1e-12)
    v = np.zeros(3)
    for _ in range(4):
        u = x - v
        v = v + (u * np.minimum(1.0, 0.7 / np.linalg.norm(u, axis=1))[:, None]).mean(axis=0)
    np.testing.assert_allclose(w[:5] @ x, v, rtol=1e-9, atol=1e-9)
    assert np.isclose(w.sum(), 1.0)


def test_covariance_filter_without_f_is_the_mean(rng):
    g = to_host(gram_matrix(rng.normal(size=(4, 3))))
    np.testing.assert_allclose(covariance_filter(g, 4, 0), [0.25] * 4 + [0.0])


def test_covariance_filter_identical_points_stop():
    g = to_host(gram_matrix(np.ones((5, 3))))
    np.testing.assert_allclose(covariance_filter(g, 5, 2), [0.2] * 5 + [0.0])
    np.testing.assert_allclose(covariance_filter(g, 5, 2, power_iters=2), [0.2] * 5 + [0.0])


@pytest.mark.parametrize("power_iters", [None, 1, 3])
def test_covariance_filter_runs_at_most_2f_rounds(rng, monkeypatch, power_iters):
    calls = []
    real = iterative._top_eigenpair

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(iterative, "_top_eigenpair", counting)
    x = rng.normal(size=(11, 6))
    x[:3] *= 50
    w = covariance_filter(to_host(gram_matrix(x)), 11, 3, power_iters=power_iters, seed=4)
    assert 1 <= len(calls) <= 6
    assert np.isclose(w.sum(), 1.0) and (w >= 0).all()


def test_covariance_filter_is_deterministic(rng):
    g = to_host(gram_matrix(rng.normal(size=(8, 5))))
    a = covariance_filter(g, 8, 2, power_iters=1, seed=3)
    b = covariance_filter(g, 8, 2, power_iters=1, seed=3)
    assert np.array_equal(a, b)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 9), d=st.integers(1, 40))
def test_coordinate_median_matches_numpy(seed, n, d):
    x = sample(seed, n, d).astype(np.float32)
    np.testing.assert_array_equal(coordinate_median(x), np.median(x, axis=0))
