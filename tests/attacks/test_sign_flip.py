import numpy as np
import pytest
import torch

from byzdask.attacks import SignFlipAttack
from byzdask.errors import ConfigurationError, InputError


def test_flips_base_grad(rng):
    g = rng.normal(size=(3, 4)).astype(np.float32)
    out = SignFlipAttack().apply(base_grad=g)
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, -g)
    np.testing.assert_allclose(SignFlipAttack(scale=2.5).apply(base_grad=g), 2.5 * g)
    # base_grad wins over honest_grads
    np.testing.assert_array_equal(SignFlipAttack().apply(base_grad=g, honest_grads=[g * 0 + 7]), -g)


def test_without_base_grad_flips_honest_mean():
    g = [np.array([1.0, 3.0]), np.array([3.0, 5.0])]
    np.testing.assert_allclose(SignFlipAttack().apply(honest_grads=g), [-2.0, -4.0])


def test_flags_torch_and_input_untouched():
    attack = SignFlipAttack()
    assert attack.uses_base_grad and not attack.uses_honest_grads and attack.input_keys == ("base_grad",)
    t = torch.randn(5, dtype=torch.float64)
    before = t.clone()
    out = attack.compute({"base_grad": t})
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    torch.testing.assert_close(out, -before)
    torch.testing.assert_close(t, before)


def test_errors():
    with pytest.raises(InputError, match="neither"):
        SignFlipAttack().apply()
    with pytest.raises(ConfigurationError, match="scale"):
        SignFlipAttack(scale=float("inf"))
