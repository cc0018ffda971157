import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.errors import ConfigurationError
from byzdask.pre_aggregators import Bucketing


def reference_bucketing(x, s, seed):
    perm = np.random.default_rng(seed).permutation(len(x))
    shuffled = np.asarray(x, dtype=np.float64)[perm]
    return np.array([shuffled[i:i + s].mean(axis=0) for i in range(0, len(x), s)])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 11), d=st.integers(1, 6), s=st.integers(1, 12), seed=st.integers(0, 2**32),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_matches_reference(n, d, s, seed, dtype):
    x = np.random.default_rng(seed % 1000).normal(size=(n, d)).astype(dtype)
    out = Bucketing(s, seed=seed).pre_aggregate(x)
    assert out.shape == (-(-n // s), d) and out.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, reference_bucketing(x, s, seed), rtol=tol, atol=tol)


@pytest.mark.parametrize("s", [2, 3, 4])
def test_wide_inputs_take_the_row_path(rng, s):
    x = rng.normal(size=(7, 140_000)).astype(np.float32)  # several chunks of 2**16 columns
    np.testing.assert_allclose(Bucketing(s, seed=1).pre_aggregate(x), reference_bucketing(x, s, 1), atol=1e-6)


def test_reproducible_from_seed(rng):
    x = rng.normal(size=(10, 3))
    a, b = Bucketing(1, seed=3).pre_aggregate(x), Bucketing(1, seed=3).pre_aggregate(x)
    np.testing.assert_array_equal(a, b)
    rule = Bucketing(2, seed=5)
    np.testing.assert_array_equal(rule(x), rule(x))  # an int seed: same output on every call
    assert not np.array_equal(Bucketing(1, seed=4).pre_aggregate(x), a)
    fresh = Bucketing(1)
    assert not np.array_equal(fresh(x), fresh(x))  # seed=None: a new permutation per call (p = 1/10!)
    np.testing.assert_allclose(np.sort(fresh(x), axis=0), np.sort(x, axis=0))  # s = 1 only shuffles


def test_hand_computed_and_mean_kept():
    x = np.arange(10.0).reshape(5, 2)
    perm = np.random.default_rng(0).permutation(5)
    out = Bucketing(2, seed=0).pre_aggregate(x)
    np.testing.assert_allclose(out[0], x[perm[:2]].mean(axis=0))
    np.testing.assert_allclose(out[2], x[perm[4]])  # the last bucket holds the one left over
    np.testing.assert_allclose(Bucketing(5, seed=9).pre_aggregate(x), [x.mean(axis=0)])
    np.testing.assert_allclose(Bucketing(50, seed=9).pre_aggregate(x), [x.mean(axis=0)])


def test_torch_list_and_input_untouched():
    x = [torch.randn(3, 2, dtype=torch.float64) for _ in range(6)]
    before = [v.clone() for v in x]
    out = Bucketing(4, seed=0)(x)
    assert isinstance(out, list) and len(out) == 2 and out[0].shape == (3, 2) and out[0].dtype == torch.float64
    for v, b in zip(x, before):
        torch.testing.assert_close(v, b)
    ref = reference_bucketing(torch.stack(before).reshape(6, -1).numpy(), 4, 0)
    np.testing.assert_allclose(torch.stack(out).reshape(2, -1).numpy(), ref)


def test_nonfinite_poisons_only_its_bucket(rng):
    x = rng.normal(size=(6, 3))
    x[2, 1] = np.nan
    out = Bucketing(2, seed=0).pre_aggregate(x)
    assert int((~np.isfinite(out).all(axis=1)).sum()) == 1


@pytest.mark.parametrize("kwargs, msg", [({"bucket_size": 0}, "bucket_size"), ({"bucket_size": 1.5}, "bucket_size"),
                                         ({"bucket_size": True}, "bucket_size"),
                                         ({"bucket_size": 2, "seed": -1}, "seed"),
                                         ({"bucket_size": 2, "seed": "1"}, "seed")])
def test_bad_parameters(kwargs, msg):
    with pytest.raises(ConfigurationError, match=msg):
        Bucketing(**kwargs)
