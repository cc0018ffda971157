"""Selection helpers on n x n matrices against brute force."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.kernels.selection import (
    host_distances,
    k_nearest_sums,
    mean_weights,
    min_diameter_subset,
    min_top_eigenvalue_subset,
    smallest_indices,
    tie_tolerance,
    to_host,
)


def brute_diameter(dist, size):
    return min(itertools.combinations(range(len(dist)), size),
               key=lambda s: max(dist[i, j] for i in s for j in s))  # min keeps the first on ties


def brute_top(x, size):
    def top(s):
        y = x[list(s)] - x[list(s)].mean(axis=0)
        return np.linalg.eigvalsh(y.T @ y if y.shape[1] <= y.shape[0] else y @ y.T)[-1]

    return min(itertools.combinations(range(len(x)), size), key=top), top


@st.composite
def points(draw, max_n=10, integer=False):
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.integers(-2, 3, size=(n, d)).astype(float) if integer else rng.normal(size=(n, d))
    return x, draw(st.integers(1, n))


def sq(x):
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1)


@settings(max_examples=150, deadline=None)
@given(case=points())
def test_min_diameter_matches_brute_force(case):
    x, size = case
    subset, diam = min_diameter_subset(sq(x), size)
    assert subset == brute_diameter(sq(x), size)
    assert diam == pytest.approx(max(sq(x)[i, j] for i in subset for j in subset))


@settings(max_examples=150, deadline=None)
@given(case=points(integer=True))
def test_min_diameter_ties_first_lexicographic(case):
    x, size = case  # small integer grids: many exact ties
    assert min_diameter_subset(sq(x), size)[0] == brute_diameter(sq(x), size)


@settings(max_examples=100, deadline=None)
@given(case=points(max_n=9))
def test_min_top_eigenvalue_matches_brute_force(case):
    x, size = case
    subset, top = min_top_eigenvalue_subset(x @ x.T, size)
    best, value = brute_top(x, size)
    assert subset == best
    assert top == pytest.approx(value(best), rel=1e-9, abs=1e-12)


def test_min_top_eigenvalue_ties_with_tolerance():
    x = np.arange(6.0)[:, None] + 1e3  # every window of 3 has the same spread
    assert min_top_eigenvalue_subset(x @ x.T, 3, tol=1e-6)[0] == (0, 1, 2)
    x = np.arange(6.0)[::-1, None]
    assert min_diameter_subset(sq(x), 4, tol=1e-9)[0] == (0, 1, 2, 3)


def test_min_diameter_with_outliers_is_fast_and_right(rng):
    x = np.concatenate([rng.normal(size=(30, 8)), 100 + rng.normal(size=(10, 8))])
    subset, _ = min_diameter_subset(sq(x), 30)
    assert subset == tuple(range(30))
    subset, _ = min_top_eigenvalue_subset(x @ x.T, 30)
    assert subset == tuple(range(30))


def test_subset_search_on_concentrated_points(rng):
    # high-dimensional Gaussian points: all distances nearly equal, the hard case for pruning
    x = rng.normal(size=(14, 500))
    assert min_diameter_subset(sq(x), 10)[0] == brute_diameter(sq(x), 10)
    assert min_top_eigenvalue_subset(x @ x.T, 11)[0] == brute_top(x, 11)[0]


@pytest.mark.parametrize("fn", [min_diameter_subset, min_top_eigenvalue_subset])
@pytest.mark.parametrize("size", [0, 4])
def test_subset_size_out_of_range(fn, size):
    with pytest.raises(ValueError, match=f"1 <= size <= n = 3, got {size}"):
        fn(np.eye(3), size)


def test_trivial_sizes():
    d = sq(np.array([[0.0], [1.0], [3.0]]))
    assert min_diameter_subset(d, 3) == ((0, 1, 2), 9.0)
    assert min_diameter_subset(d, 1) == ((0,), 0.0)
    assert min_top_eigenvalue_subset(np.eye(3), 1) == ((0,), 0.0)
    assert min_top_eigenvalue_subset(np.zeros((3, 3)), 3)[0] == (0, 1, 2)


@settings(max_examples=100, deadline=None)
@given(case=points(max_n=9), data=st.data())
def test_k_nearest_sums_matches_sorting(case, data):
    x, _ = case
    n = len(x)
    if n < 2:
        return
    k = data.draw(st.integers(1, n - 1))
    d = sq(x)
    expected = [sum(sorted(d[i, j] for j in range(n) if j != i)[:k]) for i in range(n)]
    np.testing.assert_allclose(k_nearest_sums(d, k), expected, rtol=1e-12)


@pytest.mark.parametrize("k", [0, 3])
def test_k_nearest_sums_bad_k(k):
    with pytest.raises(ValueError, match=f"1 <= k <= n - 1 = 2, got {k}"):
        k_nearest_sums(np.zeros((3, 3)), k)


def test_k_nearest_sums_keep_ties_exact():
    d = sq(np.array([[0.0], [1.0], [3.0], [4.0]]))
    s = k_nearest_sums(d, 2)
    assert s[0] == s[3] and s[1] == s[2]


def test_smallest_indices_ties():
    v = np.array([2.0, 1.0, 1.0, 0.5, 2.0])
    assert smallest_indices(v, 5).tolist() == [3, 1, 2, 0, 4]
    w = np.array([1.0 + 3e-13, 1.0, 0.0, 1.0 + 1e-13])
    assert smallest_indices(w, 2).tolist() == [2, 1]
    assert smallest_indices(w, 2, tol=1e-12).tolist() == [2, 0]  # 0, 1, 3 tie within the tolerance
    assert smallest_indices(w, 4, tol=1e-12).tolist() == [2, 0, 1, 3]


def test_host_helpers():
    g = np.array([[4.0, 1.0], [1.0 + 1e-17, 9.0]], dtype=np.float32)
    d = host_distances(g)
    assert d.dtype == np.float64 and d[0, 1] == d[1, 0] == 11.0 and d[0, 0] == 0.0
    assert to_host(g).dtype == np.float64
    assert mean_weights(3, [2]).tolist() == [0.0, 0.0, 1.0]
    assert tie_tolerance(d, [0]) == 0.0 and tie_tolerance(np.zeros((0, 0))) == 0.0


def test_distances_from_gram_never_negative():
    x = np.full((3, 4), 1e8) + np.array([[0.0], [1e-9], [0.0]])
    assert (host_distances(x @ x.T) >= 0).all()
