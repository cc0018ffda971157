import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.errors import ConfigurationError
from byzdask.pre_aggregators import Clipping


def reference_clip(x, c):
    out = []
    for row in np.asarray(x, dtype=np.float64):
        norm = np.sqrt(sum(float(v) * float(v) for v in row))
        out.append(row * (c / norm) if norm > c else row)
    return np.array(out)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 7), d=st.integers(1, 9), c=st.floats(0.0, 5.0), seed=st.integers(0, 1000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_matches_reference(n, d, c, seed, dtype):
    x = (np.random.default_rng(seed).normal(size=(n, d)) * 3).astype(dtype)
    out = Clipping(c).pre_aggregate(x)
    assert out.dtype == dtype and out.shape == (n, d)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, reference_clip(x, c), rtol=tol, atol=tol)


def test_hand_computed():
    out = Clipping(threshold=1.0).pre_aggregate(np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    np.testing.assert_array_equal(Clipping(0.0).pre_aggregate(np.array([[3.0, 4.0]])), [[0.0, 0.0]])
    assert Clipping().threshold == 2.0  # ByzFL's default c


def test_keeps_input_and_form(rng):
    x = [rng.normal(size=(2, 3)) * 5 for _ in range(4)]
    before = [v.copy() for v in x]
    out = Clipping(1.0).pre_aggregate(x)
    assert isinstance(out, list) and len(out) == 4 and out[0].shape == (2, 3)
    for v, b in zip(x, before):
        np.testing.assert_array_equal(v, b)
    stacked = np.stack(before)
    res = Clipping(1e9).pre_aggregate(stacked)  # nothing clipped: still a new array
    res[0, 0, 0] = 123.0
    np.testing.assert_array_equal(stacked, np.stack(before))
    np.testing.assert_allclose([np.linalg.norm(v) for v in out], 1.0)


def test_torch_dtype_and_device():
    x = [torch.randn(5, dtype=torch.float32) * 10 for _ in range(3)]
    out = Clipping(1.0)(x)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in out)
    torch.testing.assert_close(torch.stack(out), torch.tensor(reference_clip(torch.stack(x).numpy(), 1.0),
                                                              dtype=torch.float32))
    h = torch.randn(3, 4, dtype=torch.float16) * 10
    assert Clipping(1.0)(h).dtype == torch.float16


def test_nonfinite_rows_pass_through_and_huge_rows_clip(rng):
    x = rng.normal(size=(4, 3))
    x[1, 0], x[2, 2] = np.nan, np.inf
    x[3] = 1e200  # squares overflow float64, the row is finite
    out = Clipping(1.0).pre_aggregate(x)
    assert np.isnan(out[1, 0]) and np.isinf(out[2, 2])
    np.testing.assert_array_equal(out[1:3][np.isfinite(out[1:3])], x[1:3][np.isfinite(x[1:3])])
    np.testing.assert_allclose(out[3], np.full(3, 1 / np.sqrt(3)))
    np.testing.assert_allclose(np.linalg.norm(out[0]), min(1.0, np.linalg.norm(x[0])))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "2", True, None])
def test_bad_threshold(bad):
    with pytest.raises(ConfigurationError, match="threshold"):
        Clipping(bad)
