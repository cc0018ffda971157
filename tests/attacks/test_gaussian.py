import numpy as np
import pytest
import torch

from byzdask.attacks import GaussianAttack
from byzdask.errors import ConfigurationError, InputError


def test_reproducible_from_seed():
    g = [np.zeros((3, 4))] * 2
    a = GaussianAttack(1.0, 2.0, seed=3).apply(honest_grads=g)
    np.testing.assert_array_equal(a, GaussianAttack(1.0, 2.0, seed=3).apply(honest_grads=g))
    np.testing.assert_array_equal(a.ravel(), np.random.default_rng(3).normal(1.0, 2.0, size=12))
    assert not np.array_equal(a, GaussianAttack(1.0, 2.0, seed=4).apply(honest_grads=g))
    fresh = GaussianAttack()
    assert not np.array_equal(fresh.apply(honest_grads=g), fresh.apply(honest_grads=g))


def test_family_dtype_and_statistics():
    t = GaussianAttack(mu=-3.0, sigma=0.5, seed=0).apply(honest_grads=[torch.zeros(20000, dtype=torch.float32)])
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (20000,)
    assert abs(float(t.mean()) + 3.0) < 0.02 and abs(float(t.std()) - 0.5) < 0.02
    n32 = GaussianAttack(seed=1).apply(honest_grads=[np.zeros(5, np.float32)])
    n64 = GaussianAttack(seed=1).apply(honest_grads=[np.zeros(5)])
    assert n32.dtype == np.float32
    np.testing.assert_allclose(n32, n64, rtol=1e-6)  # one seed, one draw, whatever the dtype
    np.testing.assert_array_equal(GaussianAttack(2.0, 0.0).apply(base_grad=np.zeros(3)), [2.0, 2.0, 2.0])


@pytest.mark.parametrize("kwargs, msg", [({"sigma": -1.0}, "sigma"), ({"mu": float("nan")}, "mu"),
                                         ({"seed": -2}, "seed"), ({"seed": 1.5}, "seed")])
def test_errors(kwargs, msg):
    with pytest.raises(ConfigurationError, match=msg):
        GaussianAttack(**kwargs)
    with pytest.raises(InputError, match="neither"):
        GaussianAttack().apply()
