import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.engine.graph.operator import OpContext
from byzdask.errors import ConfigurationError, NonFiniteError, ToleranceError
from byzdask.pre_aggregators import NearestNeighborMixing
from byzdask.testing import assert_subtasks_match


def reference_nnm(x, f):
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    out = []
    for i in range(n):
        dist = [float(np.sum((x[i] - x[j]) ** 2)) for j in range(n)]
        nearest = sorted(range(n), key=lambda j: (j != i, dist[j], j))[: n - f]
        out.append(x[nearest].mean(axis=0))
    return np.array(out)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), d=st.integers(1, 6), data=st.data(), seed=st.integers(0, 1000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_matches_reference(n, d, data, seed, dtype):
    f = data.draw(st.integers(0, n - 1))
    x = (np.random.default_rng(seed).normal(size=(n, d)) + 10.0).astype(dtype)
    out = NearestNeighborMixing(f).pre_aggregate(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert out.dtype == dtype and out.shape == (n, d)
    np.testing.assert_allclose(out, reference_nnm(x, f), rtol=tol, atol=tol)


def test_hand_computed_and_ties():
    x = np.array([[0.0], [1.0], [2.0], [100.0]])
    np.testing.assert_allclose(NearestNeighborMixing(1).pre_aggregate(x).ravel(), [1, 1, 1, 103 / 3])
    np.testing.assert_allclose(NearestNeighborMixing(0).pre_aggregate(x).ravel(), [25.75] * 4)
    # vector 0 has three neighbours at distance 1: the two of lower index are taken
    t = np.array([[0.0], [1.0], [-1.0], [1.0], [9.0]])
    out = NearestNeighborMixing(2).pre_aggregate(t).ravel()
    assert out[0] == pytest.approx(0.0)  # {0, 1, 2}
    np.testing.assert_allclose(out, reference_nnm(t, 2).ravel())


def test_subtasks_match_direct(rng):
    x = rng.normal(size=(9, 1000)).astype(np.float32)
    assert_subtasks_match(NearestNeighborMixing(3), x, n_blocks=4)
    assert_subtasks_match(NearestNeighborMixing(0), x, n_blocks=1)
    bad = x.copy()
    bad[4, 7] = np.nan
    rule, inputs = NearestNeighborMixing(2), {"vectors": bad}
    context = OpContext(metadata={"n_blocks": 3})
    tasks = rule.create_subtasks(inputs, context=context)
    assert len(tasks) == 3
    fanned = rule.reduce_subtasks([t.run() for t in tasks], inputs, context=context)
    np.testing.assert_allclose(fanned, rule.compute(inputs), rtol=1e-5, atol=1e-6, equal_nan=True)


def test_nonfinite_never_a_neighbour(rng):
    x = rng.normal(size=(7, 4))
    bad = x.copy()
    bad[1, 0], bad[6, 3] = np.inf, np.nan
    out = NearestNeighborMixing(3).pre_aggregate(bad)
    keep = [0, 2, 3, 4, 5]
    np.testing.assert_allclose(out[keep], reference_nnm(x[keep], 1))  # n - f = 4 neighbours either way
    assert np.isinf(out[1, 0]) and np.isnan(out[6, 3])
    with pytest.raises(NonFiniteError, match="2 of 7"):
        NearestNeighborMixing(1).pre_aggregate(bad)


def test_form_and_input_untouched():
    x = [torch.randn(2, 3, dtype=torch.float32) for _ in range(5)]
    before = [v.clone() for v in x]
    out = NearestNeighborMixing(f=1)(x)
    assert isinstance(out, list) and len(out) == 5
    assert all(v.dtype == torch.float32 and v.shape == (2, 3) for v in out)
    for v, b in zip(x, before):
        torch.testing.assert_close(v, b)
    ref = reference_nnm(torch.stack(before).reshape(5, -1).numpy(), 1)
    np.testing.assert_allclose(torch.stack(out).reshape(5, -1).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(ToleranceError, match="f=3 with n=3"):
        NearestNeighborMixing(3).pre_aggregate(np.zeros((3, 2)))
    for bad in (-1, 0.5, None, False):
        with pytest.raises(ConfigurationError, match="non-negative integer"):
            NearestNeighborMixing(bad)
    with pytest.raises(KeyError, match="vectors"):
        NearestNeighborMixing(1).compute({"gradients": np.zeros((3, 2))})
