"""finite_rows against np.isfinite, NaN/Inf anywhere, overflowing row sums."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.kernels.arrays import as_batch, finite_rows

SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38, 1.0])


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 6), d=st.integers(1, 30), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]),
       hits=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 29), SPECIAL), max_size=6))
def test_matches_isfinite(m, d, seed, dtype, hits):
    x = np.random.default_rng(seed).normal(size=(m, d)).astype(dtype)
    for i, j, v in hits:
        x[i % m, j % d] = v
    with np.errstate(over="ignore"):
        expect = np.isfinite(x).all(axis=1)
    assert finite_rows(x).tolist() == expect.tolist()


def test_overflowing_sums_and_opposite_infinities():
    x = np.ones((3, 4), dtype=np.float32)
    x[0] = 3e38  # the sum overflows, the row is finite
    x[1, :2] = [np.inf, -np.inf]  # the sum is NaN
    assert finite_rows(x).tolist() == [True, False, True]


def test_torch_views_and_empty_rows():
    t = torch.ones(3, 5)
    t[2, 4] = float("nan")
    assert finite_rows(as_batch(t).matrix).tolist() == [True, True, False]
    assert finite_rows(np.zeros((2, 0))).tolist() == [True, True]
