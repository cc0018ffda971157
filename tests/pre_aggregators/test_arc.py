import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.errors import ConfigurationError, NonFiniteError, ToleranceError
from byzdask.kernels.prepro import arc_clip_count
from byzdask.pre_aggregators import ARC


def reference_arc(x, f):
    """ByzFL's procedure, written plainly (with the count in exact arithmetic)."""
    x = np.array(x, dtype=np.float64)
    n = len(x)
    norms = [np.linalg.norm(v) for v in x]
    order = sorted(range(n), key=lambda i: norms[i])
    k = (2 * f * (n - f)) // n
    if k == 0:
        return x
    c = norms[order[n - k - 1]]
    for i in order[n - k:]:
        if norms[i] > c:
            x[i] = x[i] * (c / norms[i])
    return x


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), d=st.integers(1, 6), data=st.data(), seed=st.integers(0, 1000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_matches_reference(n, d, data, seed, dtype):
    f = data.draw(st.integers(0, n))
    x = (np.random.default_rng(seed).normal(size=(n, d)) * np.arange(1, n + 1)[:, None]).astype(dtype)
    out = ARC(f).pre_aggregate(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, reference_arc(x, f), rtol=tol, atol=tol)
    assert out.dtype == dtype


def test_count_formula():
    assert [arc_clip_count(10, f) for f in range(6)] == [0, 1, 3, 4, 4, 5]
    assert arc_clip_count(242, 33) == 57  # ByzFL's float evaluation gives 56 here
    assert arc_clip_count(0, 0) == 0


def test_hand_computed():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 40.0]])
    out = ARC(f=1).pre_aggregate(x)
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 3.0]])
    out = ARC(f=2).pre_aggregate(x)  # k = floor(2*2*2/4) = 2: clip to the norm 2
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(ARC().pre_aggregate(x), x)  # f = 0: nothing clipped


def test_input_untouched_and_torch(rng):
    x = torch.randn(6, 2, 2, dtype=torch.float64) * torch.arange(1, 7, dtype=torch.float64)[:, None, None]
    before = x.clone()
    out = ARC(f=2).pre_aggregate(x)
    assert isinstance(out, torch.Tensor) and out.shape == (6, 2, 2) and out.dtype == torch.float64
    torch.testing.assert_close(x, before)
    np.testing.assert_allclose(out.reshape(6, -1).numpy(), reference_arc(before.reshape(6, -1).numpy(), 2))


def test_nonfinite_as_byzantine(rng):
    x = rng.normal(size=(8, 3)) * np.arange(1, 9)[:, None]
    bad = x.copy()
    bad[2, 1], bad[5, 0] = np.nan, -np.inf
    out = ARC(f=3).pre_aggregate(bad)
    keep = [0, 1, 3, 4, 6, 7]
    np.testing.assert_allclose(out[keep], reference_arc(x[keep], 1))  # n - 2, f - 2
    assert np.isnan(out[2, 1]) and np.isneginf(out[5, 0])
    with pytest.raises(NonFiniteError, match="2 of 8"):
        ARC(f=1).pre_aggregate(bad)


def test_errors():
    with pytest.raises(ToleranceError, match="f=4 with n=3"):
        ARC(f=4).pre_aggregate(np.zeros((3, 2)))
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(ConfigurationError, match="non-negative integer"):
            ARC(bad)
