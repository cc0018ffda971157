import numpy as np
import pytest
import torch

from byzdask.attacks import InfAttack
from byzdask.errors import InputError


def test_inf_like_honest():
    out = InfAttack().apply(honest_grads=[np.zeros((2, 3), dtype=np.float32)] * 3)
    assert out.shape == (2, 3) and out.dtype == np.float32 and np.isposinf(out).all()
    t = InfAttack().apply(honest_grads=[torch.zeros(4, dtype=torch.float64)])
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64 and torch.isposinf(t).all()
    assert np.isposinf(InfAttack().apply(base_grad=np.zeros(2))).all()
    assert InfAttack().uses_honest_grads and repr(InfAttack()) == "InfAttack()"


def test_stacked_honest_and_errors():
    out = InfAttack().apply(honest_grads=np.zeros((5, 3)))
    assert out.shape == (3,)
    with pytest.raises(InputError, match="neither"):
        InfAttack().apply()
    with pytest.raises(InputError, match="empty"):
        InfAttack().apply(honest_grads=[])
