import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.attacks import MinMaxAttack, MinSumAttack
from byzdask.errors import ConfigurationError, InputError


def perturbation(g, kind):
    mean = g.mean(axis=0)
    if kind == "std":
        return -g.std(axis=0, ddof=1)
    if kind == "sign":
        return -np.sign(mean)
    return -mean / np.linalg.norm(mean)


def reference_gamma(g, kind, rule):
    """Closed forms: each distance is a quadratic in gamma, the bound is met at its largest root."""
    h = len(g)
    mean, p = g.mean(axis=0), perturbation(g, kind)
    a = float(p @ p)
    b = [float(p @ (mean - gi)) for gi in g]
    c = [float((mean - gi) @ (mean - gi)) for gi in g]
    pair = [[float((gi - gj) @ (gi - gj)) for gj in g] for gi in g]
    if rule == "minmax":
        bound = max(max(row) for row in pair)
        return min((-bi + math.sqrt(bi * bi - a * (ci - bound))) / a for bi, ci in zip(b, c))
    bound = max(sum(row) for row in pair)
    return math.sqrt((bound - sum(c)) / (h * a))  # the linear terms sum to zero


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 8), d=st.integers(1, 6), seed=st.integers(0, 10_000),
       kind=st.sampled_from(["std", "sign", "unit"]), rule=st.sampled_from(["minmax", "minsum"]))
def test_matches_closed_form(h, d, seed, kind, rule):
    g = np.random.default_rng(seed).normal(0.3, 1.0, size=(h, d))
    cls = MinMaxAttack if rule == "minmax" else MinSumAttack
    attack = cls(f=2, perturbation=kind)
    ref = reference_gamma(g, kind, rule)
    assert attack.gamma(list(g)) == pytest.approx(ref, rel=1e-3)
    assert attack.gamma(list(g)) <= ref * (1 + 1e-12)  # the feasible end of the bracket
    out = attack.apply(honest_grads=list(g))
    np.testing.assert_allclose(out, g.mean(axis=0) + attack.gamma(g) * perturbation(g, kind), rtol=1e-12)


def test_torch_float32_and_degenerate():
    g = [torch.randn(2, 3) for _ in range(5)]
    out = MinMaxAttack(f=1).apply(honest_grads=g)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 3)
    same = [np.ones(3)] * 4  # no spread: p = 0, the mean is sent
    np.testing.assert_array_equal(MinSumAttack(f=1).apply(honest_grads=same), np.ones(3))


def test_errors():
    with pytest.raises(ConfigurationError, match="perturbation must be one of .* got 'gauss'"):
        MinMaxAttack(f=1, perturbation="gauss")
    with pytest.raises(ConfigurationError, match="non-negative integer"):
        MinSumAttack(f=-1)
    with pytest.raises(InputError, match="at least 2 honest vectors, got 1"):
        MinMaxAttack(f=1).apply(honest_grads=[np.ones(2)])
