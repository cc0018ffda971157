import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.attacks import LittleAttack
from byzdask.attacks.little import little_z
from byzdask.errors import ConfigurationError, InputError


def reference_little(g, f, N=None):
    g = np.asarray(g, dtype=np.float64)
    h = len(g)
    N = h + f if N is None else N
    s = max(1, math.floor(N / 2 + 1) - f)
    z = NormalDist().inv_cdf((N - s) / N)
    mu = g.mean(axis=0)
    sigma = np.sqrt(((g - mu) ** 2).sum(axis=0) / h)  # population std
    return mu + z * sigma


@settings(max_examples=30, deadline=None)
@given(h=st.integers(2, 8), f=st.integers(1, 5), d=st.integers(1, 6), seed=st.integers(0, 1000))
def test_matches_reference(h, f, d, seed):
    g = np.random.default_rng(seed).normal(size=(h, d))
    np.testing.assert_allclose(LittleAttack(f).apply(honest_grads=list(g)), reference_little(g, f), rtol=1e-10,
                               atol=1e-12)


def test_z_values():
    assert little_z(50, 12) == pytest.approx(NormalDist().inv_cdf(36 / 50))  # s = 25 + 1 - 12 = 14
    assert little_z(3, 1) == pytest.approx(0.4307272992954576)  # s = 1, p = 2/3
    assert little_z(10, 9) == pytest.approx(NormalDist().inv_cdf(0.9))  # s clamped at 1
    assert LittleAttack(2, N=20).z(5) == pytest.approx(little_z(20, 2))
    assert LittleAttack(2).z(5) == pytest.approx(little_z(7, 2))


def test_torch_and_explicit_N():
    g = [torch.randn(3, 2, dtype=torch.float32) for _ in range(6)]
    out = LittleAttack(f=2, N=10).apply(honest_grads=g)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 2)
    ref = reference_little(torch.stack(g).reshape(6, -1).numpy(), 2, 10).reshape(3, 2)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(InputError, match="N=2 with f=0"):
        LittleAttack(0).apply(honest_grads=[np.zeros(2)] * 2)
    with pytest.raises(ConfigurationError, match="N must be None or an integer > f=3"):
        LittleAttack(3, N=3)
    with pytest.raises(InputError, match="N=2 with f=0"):
        LittleAttack(0, N=2)
    with pytest.raises(ConfigurationError, match="non-negative integer"):
        LittleAttack(-1)
    with pytest.raises(InputError, match="got None"):
        LittleAttack(1).apply()
