"""ClippedGossip, IOS, CS+-RG and the Metropolis weights against slow d-space references."""

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.aggregators.gossip import IOS, ClippedGossip, CSPlusRG, metropolis_weights
from byzdask.errors import ConfigurationError, InputError


# -- slow references ------------------------------------------------------------------------------
def clip(z, tau):
    nrm = float(np.linalg.norm(z))
    return z * min(1.0, tau / nrm) if nrm > 0 else z


def ref_clipped(own, nbrs, w, tau=None):
    dists = sorted(float(np.linalg.norm(v - own)) for v in nbrs)
    if tau is None:
        tau = (dists[-2] if len(dists) >= 2 else dists[-1]) if dists else 0.0
    return sum((wj * clip(v - own, tau) for v, wj in zip(nbrs, w)), np.zeros_like(own))


def ref_csplus(own, nbrs, w, b):
    dists = sorted((float(np.linalg.norm(v - own)) for v in nbrs), reverse=True)
    tau = dists[b] if len(dists) > b else 0.0
    return sum((wj * clip(v - own, tau) for v, wj in zip(nbrs, w)), np.zeros_like(own))


def ref_ios(own, nbrs, w, f, self_weight=None):
    sw = 1.0 - sum(w) if self_weight is None else self_weight
    keep = list(range(len(nbrs)))

    def mean():
        total = sw + sum(w[j] for j in keep)
        return (sw * own + sum((w[j] * nbrs[j] for j in keep), np.zeros_like(own))) / total

    for _ in range(min(f, len(nbrs))):
        z = mean()
        far = max(keep, key=lambda j: (float(np.linalg.norm(nbrs[j] - z)), -j))
        keep.remove(far)
    return mean() - own


@st.composite
def hoods(draw):
    k = draw(st.integers(0, 8))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 1e-3, 1e3]))
    own = rng.normal(size=d) * scale + draw(st.sampled_from([0.0, 5.0]))
    nbrs = own + rng.normal(size=(k, d)) * scale * rng.exponential(size=(k, 1))
    w = rng.dirichlet(np.ones(k + 1))[:k] if k else np.zeros(0)
    return own, nbrs, w


def close(out, expected, own, rtol=1e-9):
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * max(np.abs(own).max(), 1.0))


@settings(max_examples=50, deadline=None)
@given(case=hoods(), tau=st.sampled_from([None, 0.5, 3.0]))
def test_clipped_gossip_matches_reference(case, tau):
    own, nbrs, w = case
    close(ClippedGossip(tau).step(own, nbrs, w), ref_clipped(own, nbrs, w, tau), own)
    close(ClippedGossip(tau).mix(own, nbrs, w), own + ref_clipped(own, nbrs, w, tau), own)


@settings(max_examples=50, deadline=None)
@given(case=hoods(), data=st.data())
def test_csplus_matches_reference(case, data):
    own, nbrs, w = case
    b = data.draw(st.integers(0, len(nbrs) + 1))
    close(CSPlusRG(b).step(own, nbrs, w), ref_csplus(own, nbrs, w, b), own)


@settings(max_examples=50, deadline=None)
@given(case=hoods(), data=st.data())
def test_ios_matches_reference(case, data):
    own, nbrs, w = case
    f = data.draw(st.integers(0, len(nbrs) + 1))
    close(IOS(f).step(own, nbrs, w), ref_ios(own, nbrs, w, f), own, rtol=1e-8)
    close(IOS(f).step(own, nbrs, w, self_weight=0.5), ref_ios(own, nbrs, w, f, 0.5), own, rtol=1e-8)


RULES = [ClippedGossip(), ClippedGossip(tau=1.0), CSPlusRG(1), IOS(1)]


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_torch_float32_keeps_family_dtype_shape(rule, rng):
    own = rng.normal(size=(3, 2)).astype(np.float32)
    nbrs = (own + rng.normal(size=(4, 3, 2))).astype(np.float32)
    w = [0.2] * 4
    out = rule.step(torch.from_numpy(own), [torch.from_numpy(v) for v in nbrs], w)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 2)
    expected = rule.step(own.astype(np.float64), nbrs.astype(np.float64), w)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rule, ref", [
    (ClippedGossip(), lambda o, n, w, sw: ref_clipped(o, n, w)),
    (CSPlusRG(2), lambda o, n, w, sw: ref_csplus(o, n, w, 1)),
    (IOS(2), lambda o, n, w, sw: ref_ios(o, n, w, 1, sw)),
], ids=lambda v: repr(v) if not callable(v) or hasattr(v, "step") else "ref")
def test_nonfinite_neighbour_contributes_nothing(rule, ref, rng):
    own = rng.normal(size=5)
    nbrs = own + rng.normal(size=(5, 5))
    w = np.full(5, 0.15)
    bad = nbrs.copy()
    bad[3, 2] = np.nan
    out = rule.step(own, bad, w)
    assert np.isfinite(out).all()
    close(out, ref(own, np.delete(nbrs, 3, axis=0), np.delete(w, 3), 1.0 - w.sum()), own)


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_a_far_byzantine_neighbour_moves_a_node_little(rule, rng):
    own = rng.normal(size=20) * 0.1
    honest = own + rng.normal(size=(4, 20)) * 0.1
    nbrs = np.concatenate([honest, 1e6 * np.ones((1, 20))])
    w = metropolis_weights(nx.complete_graph(6))[0, 1:]
    assert np.linalg.norm(rule.step(own, nbrs, w)) < 1.0


def test_gossip_reaches_consensus_on_a_ring():
    g = nx.cycle_graph(8)
    w = metropolis_weights(g)
    x = np.arange(8.0)[:, None] * np.ones((1, 3))
    rule = ClippedGossip(tau=1e9)  # no clipping: plain gossip
    for _ in range(300):
        x = np.stack([rule.mix(x[i], x[list(g[i])], w[i, list(g[i])]) for i in range(8)])
    np.testing.assert_allclose(x, np.full((8, 3), 3.5), atol=1e-6)


def test_metropolis_weights(rng):
    g = nx.erdos_renyi_graph(9, 0.4, seed=3)
    w = metropolis_weights(g)
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w >= 0).all()
    for i in range(9):
        for j in range(9):
            if i != j:
                expected = 1.0 / (1 + max(g.degree[i], g.degree[j])) if g.has_edge(i, j) else 0.0
                assert w[i, j] == pytest.approx(expected)
    np.testing.assert_allclose(metropolis_weights(nx.DiGraph(g)), w)


@pytest.mark.parametrize("make, match", [
    (lambda: ClippedGossip(tau=0), "tau must be a positive finite number or None, got 0"),
    (lambda: ClippedGossip(tau="1"), "tau must be a positive finite number or None, got '1'"),
    (lambda: CSPlusRG(-1), "b must be a non-negative integer, got -1"),
    (lambda: IOS(1.5), "f must be a non-negative integer, got 1.5"),
])
def test_bad_parameters(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()


def test_bad_inputs():
    own, nbrs = np.zeros(2), np.ones((2, 2))
    with pytest.raises(InputError, match="one weight per neighbour \\(2\\), got 3"):
        IOS(1).step(own, nbrs, [0.1, 0.1, 0.1])
    with pytest.raises(InputError, match="finite and >= 0, got \\[-0.1, 0.1\\]"):
        IOS(1).step(own, nbrs, [-0.1, 0.1])
    with pytest.raises(InputError, match="own weight .* got -0.2"):
        ClippedGossip().step(own, nbrs, [0.6, 0.6])
    with pytest.raises(InputError, match="own vector holds NaN"):
        CSPlusRG(0).step(np.array([np.nan, 0.0]), nbrs, [0.1, 0.1])
    with pytest.raises(InputError, match="one shape"):
        CSPlusRG(0).step(np.zeros(3), nbrs, [0.1, 0.1])
