"""The Gram kernels against a float64 d-space reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.kernels.blocks import column_blocks
from byzdask.kernels.gram import (
    ORIGIN,
    combine,
    gram_matrix,
    gram_partial,
    sq_distances,
)


def ref_gram(x, extra=None):
    """Rows centred on the column means of x, then the origin and the extra rows; float64."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    rows = [x - mean, -mean[None, :]]
    if extra is not None:
        rows.append(np.asarray(extra, dtype=np.float64) - mean)
    z = np.vstack(rows)
    return z @ z.T


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 7), d=st.integers(0, 40), k=st.integers(0, 2), n_blocks=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_matches_reference(m, d, k, n_blocks, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d)) * 3 + 1
    extra = rng.normal(size=(k, d)) if k else None
    expect = ref_gram(x, extra)
    g = gram_matrix(x, extra)
    assert g.shape == (m + ORIGIN + k,) * 2 and g.dtype == np.float64
    np.testing.assert_allclose(g, expect, rtol=1e-10, atol=1e-10)
    blocks = column_blocks(d, n_blocks=n_blocks)
    np.testing.assert_allclose(gram_matrix(x, extra, blocks=blocks), expect, rtol=1e-10, atol=1e-10)
    parts = sum(gram_partial(x[:, sl], None if extra is None else extra[:, sl]) for sl in blocks)
    np.testing.assert_allclose(parts, expect, rtol=1e-10, atol=1e-10)


def test_exactly_symmetric_and_many_cache_blocks(rng):
    x = rng.normal(size=(9, 300_000)).astype(np.float32)
    assert len(column_blocks(x.shape[1], n_rows=10, itemsize=4)) > 2
    g = gram_matrix(x, x[:1] * 2)
    assert (g == g.T).all()
    expect = ref_gram(x, x[:1] * 2)
    np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-6 * np.abs(expect).max())


def test_float32_uncentred_inputs_keep_precision(rng):
    x = rng.normal(size=(6, 20_000)).astype(np.float32)
    shifted = x + np.float32(1e4)
    dist = sq_distances(gram_matrix(shifted))[:6, :6]
    expect = sq_distances(ref_gram(shifted.astype(np.float64)))[:6, :6]
    np.testing.assert_allclose(dist, expect, rtol=1e-4)


def test_non_contiguous_and_torch_views(rng):
    x = rng.normal(size=(5, 64))
    np.testing.assert_allclose(gram_matrix(np.asfortranarray(x)), ref_gram(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gram_matrix(x[:, ::2]), ref_gram(x[:, ::2]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_row_makes_every_entry_nonfinite(bad, rng):
    x = rng.normal(size=(5, 50_000)).astype(np.float32)
    x[3, 40_000] = bad
    with np.errstate(all="raise"):  # no warning escapes either
        g = gram_matrix(x)
    assert not np.isfinite(g).any()


def test_empty_dimension():
    assert (gram_matrix(np.ones((3, 0))) == 0).all()
    assert gram_partial(np.ones((3, 0), dtype=np.float32)).shape == (4, 4)


def test_combine_weights_rows_and_extra():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    extra = np.array([[10.0, 20.0]])
    np.testing.assert_allclose(combine(x, np.array([0.25, 0.25, 0.0, 0.5]), extra), [6.0, 11.5])
