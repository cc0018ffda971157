import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.attacks import EmpireAttack
from byzdask.errors import ConfigurationError, InputError


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 6), d=st.integers(1, 8), scale=st.floats(-5, 5), seed=st.integers(0, 1000))
def test_matches_reference(h, d, scale, seed):
    g = list(np.random.default_rng(seed).normal(size=(h, d)))
    out = EmpireAttack(scale).apply(honest_grads=g)
    ref = scale * np.array([sum(v[j] for v in g) / h for j in range(d)])
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_defaults_flags_and_torch():
    attack = EmpireAttack()
    assert attack.scale == -1.0 and attack.uses_honest_grads and not attack.uses_base_grad
    assert attack.input_keys == ("honest_grads",)
    g = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 6.0]])]
    before = [v.clone() for v in g]
    out = attack.apply(honest_grads=g)
    assert out.dtype == torch.float32 and out.shape == (1, 2)
    torch.testing.assert_close(out, torch.tensor([[-2.0, -4.0]]))
    torch.testing.assert_close(g[0], before[0])
    torch.testing.assert_close(attack.compute({"honest_grads": g}), out)


def test_errors():
    with pytest.raises(InputError, match="got None"):
        EmpireAttack().apply()
    with pytest.raises(InputError, match="empty"):
        EmpireAttack().apply(honest_grads=[])
    for bad in ("1", float("nan"), None):
        with pytest.raises(ConfigurationError, match="scale"):
            EmpireAttack(bad)


@pytest.mark.requires_cupy
def test_cupy_attacks_match_numpy(rng):
    import cupy

    from byzdask.attacks import (
        GaussianAttack,
        InfAttack,
        LittleAttack,
        MimicAttack,
        SignFlipAttack,
    )

    g = rng.normal(size=(5, 3, 4)).astype(np.float32)
    cg = [cupy.asarray(v) for v in g]
    for attack in (EmpireAttack(-2.0), LittleAttack(2), GaussianAttack(seed=1), InfAttack(), MimicAttack(3),
                   SignFlipAttack()):
        out = attack.apply(honest_grads=cg, base_grad=cg[0])
        assert isinstance(out, cupy.ndarray) and out.dtype == cupy.float32 and out.shape == (3, 4)
        np.testing.assert_allclose(out.get(), attack.apply(honest_grads=list(g), base_grad=g[0]), rtol=1e-5,
                                   atol=1e-6)
