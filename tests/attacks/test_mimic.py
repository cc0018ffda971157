import numpy as np
import pytest
import torch

from byzdask.attacks import MimicAttack
from byzdask.errors import ConfigurationError, InputError


def test_copies_the_chosen_vector(rng):
    g = [rng.normal(size=(2, 2)) for _ in range(4)]
    out = MimicAttack(epsilon=2).apply(honest_grads=g)
    np.testing.assert_array_equal(out, g[2])
    out[0, 0] = 99.0  # a copy, not the honest vector itself
    assert g[2][0, 0] != 99.0
    np.testing.assert_array_equal(MimicAttack().apply(honest_grads=g), g[0])
    t = [torch.randn(3, requires_grad=True) for _ in range(2)]
    tout = MimicAttack(1).apply(honest_grads=t)
    assert not tout.requires_grad and tout.data_ptr() != t[1].data_ptr()
    torch.testing.assert_close(tout, t[1].detach())


def test_errors():
    with pytest.raises(InputError, match="epsilon must be < the number of honest vectors 2, got epsilon=2"):
        MimicAttack(2).apply(honest_grads=[np.zeros(1)] * 2)
    with pytest.raises(InputError, match="got None"):
        MimicAttack().apply()
    for bad in (-1, 1.0, True):
        with pytest.raises(ConfigurationError, match="epsilon"):
            MimicAttack(bad)
