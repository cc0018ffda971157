import numpy as np
import pytest
import torch

from byzdask.aggregators import CoordinateWiseMedian, CoordinateWiseTrimmedMean, Krum
from byzdask.attacks import FangAttack, MinMaxAttack, MinSumAttack, OptimalEmpireAttack
from byzdask.attacks import OptimalLittleAttack
from byzdask.errors import ConfigurationError, InputError


def reference_interval(column, b):
    mean, lo, hi = sum(column) / len(column), min(column), max(column)
    if mean > 0:
        return (lo / b, lo) if lo > 0 else (lo * b, lo)
    return (hi, hi * b) if hi > 0 else (hi, hi / b)


def test_trimmed_mean_samples_in_fang_intervals():
    rng = np.random.default_rng(0)
    for trial in range(20):
        g = rng.normal(rng.normal(), 1.0, size=(int(rng.integers(2, 8)), 5))
        out = FangAttack(f=2, seed=trial).apply(honest_grads=list(g))
        for j in range(g.shape[1]):
            a, c = reference_interval(list(g[:, j]), 2.0)
            assert a - 1e-12 <= out[j] <= c + 1e-12
        np.testing.assert_array_equal(out, FangAttack(f=2, seed=trial).apply(honest_grads=list(g)))


def reference_krum_pick(vectors, f):
    n = len(vectors)
    scores = []
    for i in range(n):
        d = sorted(float(((vectors[i] - vectors[j]) ** 2).sum()) for j in range(n) if j != i)
        scores.append(sum(d[: n - f - 1]))  # byzdask's Krum: n - f - 1 neighbours
    return scores


def test_krum_target_is_the_largest_halving_krum_selects():
    rng = np.random.default_rng(3)
    picked = 0
    for _ in range(10):
        h, f, d = int(rng.integers(6, 10)), int(rng.integers(1, 3)), int(rng.integers(2, 8))
        g = rng.normal(0.5, 1.0, size=(h, d))
        attack = FangAttack(f=f, target="krum")
        out = attack.apply(honest_grads=list(g))
        s = np.sign(g.mean(axis=0))
        lam = float(-(out @ s) / (s @ s))
        lam0 = attack.lambda_bound(g)
        k = round(np.log2(lam0 / lam))
        assert lam == pytest.approx(lam0 / 2 ** k)
        found = lam >= 1e-5 * lam0  # else no halving was picked: the last one is sent
        picked += found
        scores = reference_krum_pick(list(g) + [out] * f, f)
        assert (min(scores[h:]) < min(scores[:h])) == found
        if found:
            np.testing.assert_allclose(Krum(f=f).aggregate(list(g) + [out] * f), out, atol=1e-9)
        if k > 0:  # twice lambda was not picked
            scores = reference_krum_pick(list(g) + [-2 * lam * s] * f, f)
            assert min(scores[h:]) >= min(scores[:h])
    assert picked >= 3


def test_torch_and_errors():
    g = [torch.randn(3) for _ in range(6)]
    out = FangAttack(f=1, target="krum").apply(honest_grads=g)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    with pytest.raises(ConfigurationError, match="target must be one of .* got 'mean'"):
        FangAttack(f=1, target="mean")
    with pytest.raises(ConfigurationError, match="b must be > 1, got 1.0"):
        FangAttack(f=1, b=1.0)
    with pytest.raises(ConfigurationError, match="needs f >= 1"):
        FangAttack(f=0, target="krum")
    with pytest.raises(InputError, match="h >= f \\+ 3"):
        FangAttack(f=2, target="krum").apply(honest_grads=[np.ones(2)] * 4)


@pytest.mark.parametrize("make", [
    lambda agg: OptimalEmpireAttack(agg, f=3), lambda agg: OptimalLittleAttack(agg, f=3),
    lambda agg: MinMaxAttack(f=3), lambda agg: MinSumAttack(f=3), lambda agg: FangAttack(f=3, seed=0),
])
@pytest.mark.parametrize("agg", [CoordinateWiseTrimmedMean(f=3), CoordinateWiseMedian()])
def test_each_attack_moves_the_defended_aggregate(make, agg):
    """Bite on the vectors: 3 copies move CWTM / median farther from the honest mean than 3 honest-like vectors."""
    rng = np.random.default_rng(7)
    g = rng.normal(1.0, 1.0, size=(10, 50))
    mean = g.mean(axis=0)
    clean = np.linalg.norm(agg.aggregate(np.vstack([g, rng.normal(1.0, 1.0, size=(3, 50))])) - mean)
    b = make(agg).apply(honest_grads=g)
    attacked = np.linalg.norm(agg.aggregate(np.vstack([g] + [b] * 3)) - mean)
    assert attacked > 1.5 * clean, (attacked, clean)
