"""Bulyan, DnC, RFA, SignGuard and ClippedClustering against slow d-space references."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import AgglomerativeClustering, KMeans, MeanShift, estimate_bandwidth

from byzdask import registry
from byzdask.aggregators import RFA, Bulyan, ClippedClustering, DnC, GeometricMedian, SignGuard
from byzdask.errors import ConfigurationError, NonFiniteError, ToleranceError
from byzdask.kernels.filters import COSINE_ATOL, closest_to_median_mean
from byzdask.testing import (
    assert_finite_under_nonfinite,
    assert_permutation_invariant,
    assert_robust_to_outliers,
    assert_subtasks_match,
    assert_translation_equivariant,
)


# -- slow, obvious references -------------------------------------------------------------------
def sq_dist(x):
    return np.array([[float(np.sum((a - b) ** 2)) for b in x] for a in x])


def ref_bulyan(x, f):
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    dist = sq_dist(x)
    remaining, chosen = list(range(n)), []
    for _ in range(n - 2 * f):
        k = len(remaining) - f - 1

        def score(i):
            return sum(sorted(dist[i, j] for j in remaining if j != i)[:k]) if k >= 1 else 0.0

        best = min(remaining, key=lambda i: (score(i), i))
        remaining.remove(best)
        chosen.append(best)
    sel = x[sorted(chosen)]
    beta = len(sel) - 2 * f
    out = []
    for col in sel.T:
        med = float(np.median(col))
        kept = sorted(col, key=lambda v: (abs(v - med), v))[:beta]
        out.append(np.mean(kept))
    return np.array(out)


def dnc_columns(d, subsample, iters, seed):
    rng = np.random.default_rng(seed)
    if d <= subsample:
        return [np.arange(d)]
    return [np.sort(rng.choice(d, size=subsample, replace=False)) for _ in range(iters)]


def ref_dnc(x, f, *, subsample=10000, iters=1, filter_frac=1.0, seed=None):
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    keep = n - math.floor(filter_frac * f)
    votes = np.zeros(n, dtype=int)
    for cols in dnc_columns(d, subsample, iters, seed):
        sub = x[:, cols]
        centred = sub - sub.mean(axis=0)
        v = np.linalg.svd(centred, full_matrices=False)[2][0]
        scores = (centred @ v) ** 2
        for i in sorted(range(n), key=lambda i: (scores[i], i))[:keep]:
            votes[i] += 1
    return x[votes == votes.max()].mean(axis=0)


def ref_rfa(x, nu=1e-6, T=3):
    x = np.asarray(x, dtype=np.float64)
    z = x.mean(axis=0)
    for _ in range(T):
        beta = np.array([1.0 / max(nu, float(np.linalg.norm(z - xi))) for xi in x])
        z = (beta[:, None] * x).sum(axis=0) / beta.sum()
    return z


def clipped(x, norms, tau):
    return np.array([xi * min(1.0, tau / nrm) if nrm > 0 else xi for xi, nrm in zip(x, norms)])


def larger(labels):
    labels = list(labels)
    clusters = sorted({lab for lab in labels if lab >= 0}, key=lambda lab: (-labels.count(lab), labels.index(lab)))
    return [i for i, lab in enumerate(labels) if lab == clusters[0]] if clusters else []


def ref_clippedclustering(x, tau=None, linkage="average"):
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    norms = np.array([math.sqrt(float(np.dot(v, v))) for v in x])
    tau = float(np.median(norms)) if tau is None else tau
    if n == 1:
        return clipped(x, norms, tau)[0]
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                cos = float(np.dot(x[i], x[j])) / (norms[i] * norms[j]) if norms[i] * norms[j] > 0 else 0.0
                dist[i, j] = min(max(1.0 - cos, 0.0), 2.0)
    dist[dist < COSINE_ATOL] = 0.0
    labels = AgglomerativeClustering(n_clusters=2, metric="precomputed", linkage=linkage).fit(dist).labels_
    return clipped(x, norms, tau)[larger(labels)].mean(axis=0)


def ref_signguard(x, *, lower=0.1, upper=3.0, coord_frac=0.1, clustering="meanshift", seed=None):
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    norms = np.linalg.norm(x, axis=1)
    med = float(np.median(norms))
    s1 = {i for i in range(n) if lower * med <= norms[i] <= upper * med}
    b = max(1, int(coord_frac * d))
    cols = np.arange(d) if b >= d else np.sort(np.random.default_rng(seed).choice(d, size=b, replace=False))
    sub = x[:, cols]
    feats = np.array([[np.mean(r > 0), np.mean(r == 0), np.mean(r < 0)] for r in sub])
    top = feats.max(axis=0)
    feats = np.where(top > 0, feats / np.where(top > 0, top, 1.0), 0.0)
    if np.ptp(feats, axis=0).max() == 0:
        labels = [0] * n
    elif clustering == "kmeans":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = KMeans(n_clusters=2, n_init=10, random_state=0).fit(feats).labels_
    else:
        bw = estimate_bandwidth(feats, quantile=0.5, n_samples=min(n, 50), random_state=0)
        labels = MeanShift(bandwidth=bw, bin_seeding=True, cluster_all=False).fit(feats).labels_ if bw > 0 else [0] * n
    keep = sorted(s1 & set(larger(labels))) or sorted(s1) or list(range(n))
    return clipped(x, norms, med)[keep].mean(axis=0)


@st.composite
def cases(draw, min_n=3, max_n=11, max_d=6):
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1.0, 1e-3, 1e3]))
    shift = draw(st.sampled_from([0.0, 5.0]))
    return np.random.default_rng(seed).normal(size=(n, d)) * scale + shift


def close(out, expected, x, rtol=1e-9):
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * max(np.abs(x).max(), 1e-300))


# -- against the references ------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(x=cases(), data=st.data())
def test_bulyan_matches_reference(x, data):
    f = data.draw(st.integers(0, (len(x) - 3) // 4)) if len(x) >= 3 else 0
    close(Bulyan(f).aggregate(x), ref_bulyan(x, f), x)


def test_bulyan_sort_route_matches_reference(rng):
    # f >= 2 at n = 4f + 3 keeps beta = 3 of theta = 2f + 3 values: the per-column sort route
    for n, f in [(11, 2), (15, 3), (16, 3)]:
        x = rng.normal(size=(n, 7))
        close(Bulyan(f).aggregate(x), ref_bulyan(x, f), x)


@settings(max_examples=30, deadline=None)
@given(x=cases(max_d=4), data=st.data())
def test_closest_to_median_mean_both_routes(x, data):
    keep = data.draw(st.integers(1, len(x)))
    out = closest_to_median_mean(x, keep, np)
    for k, col in enumerate(x.T):
        med = float(np.median(col))
        assert out[k] == pytest.approx(np.mean(sorted(col, key=lambda v: (abs(v - med), v))[:keep]), rel=1e-12,
                                       abs=1e-12 * np.abs(x).max())


@settings(max_examples=40, deadline=None)
@given(x=cases(), data=st.data())
def test_dnc_matches_reference(x, data):
    f = data.draw(st.integers(0, (len(x) - 1) // 2))
    frac = data.draw(st.sampled_from([1.0, 0.5, 1.5]))
    close(DnC(f, filter_frac=frac).aggregate(x), ref_dnc(x, f, filter_frac=frac), x, rtol=1e-8)


@pytest.mark.parametrize("iters", [1, 3, 8])
def test_dnc_sampled_columns_match_reference(iters, rng):
    x = rng.normal(size=(9, 60))
    x[7:] += 3.0 * rng.normal(size=(2, 60))
    out = DnC(3, subsample=10, iters=iters, seed=5).aggregate(x)
    close(out, ref_dnc(x, 3, subsample=10, iters=iters, seed=5), x, rtol=1e-8)
    np.testing.assert_array_equal(out, DnC(3, subsample=10, iters=iters, seed=5).aggregate(x))  # seeded


@settings(max_examples=40, deadline=None)
@given(x=cases())
def test_rfa_matches_reference(x):
    close(RFA().aggregate(x), ref_rfa(x), x, rtol=1e-7)
    close(RFA(nu=0.1, T=5).aggregate(x), ref_rfa(x, 0.1, 5), x, rtol=1e-7)


def test_rfa_is_the_geometric_median_preset(rng):
    x = rng.normal(size=(7, 5))
    np.testing.assert_array_equal(RFA(nu=1e-3, T=4).aggregate(x),
                                  GeometricMedian(init="mean", max_iter=4, tol=0, eps=1e-3).aggregate(x))
    assert repr(RFA()) == "RFA(nu=1e-06, T=3)"


@settings(max_examples=40, deadline=None)
@given(x=cases(min_n=2), data=st.data())
def test_clippedclustering_matches_reference(x, data):
    linkage = data.draw(st.sampled_from(["average", "complete", "single"]))
    tau = data.draw(st.sampled_from([None, 0.5]))
    close(ClippedClustering(tau=tau, linkage=linkage).aggregate(x), ref_clippedclustering(x, tau, linkage), x,
          rtol=1e-7)


@settings(max_examples=40, deadline=None)
@given(x=cases(max_d=40), data=st.data())
def test_signguard_matches_reference(x, data):
    if data.draw(st.booleans()):
        x = np.where(np.random.default_rng(0).random(x.shape) < 0.2, 0.0, x)  # zero entries count too
    kwargs = {"clustering": data.draw(st.sampled_from(["meanshift", "kmeans"])),
              "coord_frac": data.draw(st.sampled_from([1.0, 0.3])), "seed": 3}
    close(SignGuard(**kwargs).aggregate(x), ref_signguard(x, **kwargs), x, rtol=1e-9)


# -- behaviour -----------------------------------------------------------------------------------------
def test_signguard_drops_the_flipped_and_the_huge(rng):
    honest = rng.normal(size=(9, 200)) * 0.3 + 1.0
    bad = np.concatenate([-honest[:2], 100.0 * honest[2:3]])
    x = np.concatenate([honest, bad])
    for clustering in ("meanshift", "kmeans"):
        out = SignGuard(clustering=clustering, seed=0).aggregate(x)
        assert np.linalg.norm(out - honest.mean(axis=0)) < 0.2 * np.linalg.norm(honest.mean(axis=0))


def test_clippedclustering_keeps_the_larger_cluster():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [1.1, -0.1], [-1.0, 0.0], [-0.9, 0.0]])
    np.testing.assert_allclose(ClippedClustering(tau=10.0).aggregate(x), x[:3].mean(axis=0))
    # two clusters of one size: the one holding the lowest index
    np.testing.assert_allclose(ClippedClustering(tau=10.0).aggregate(x[[3, 0, 1, 4]]), x[[3, 4]].mean(axis=0))


def test_dnc_hand_computed():
    x = np.array([[0.0], [1.0], [2.0], [9.0]])  # scores around the mean 3: 9, 4, 1, 36
    np.testing.assert_allclose(DnC(1).aggregate(x), [1.0])
    np.testing.assert_allclose(DnC(1, filter_frac=2.0).aggregate(x), [1.5])  # drops 9 and 0


RULES = {
    "bulyan": (lambda f: Bulyan(f), lambda n: (n - 3) // 4, True),
    "dnc": (lambda f: DnC(f), lambda n: (n - 1) // 2, True),
    "rfa": (lambda f: RFA(T=50), lambda n: (n - 1) // 2, True),  # T=3 is not robust to 1e6 outliers
    "clippedclustering": (lambda f: ClippedClustering(), lambda n: (n - 1) // 2, False),
    "signguard": (lambda f: SignGuard(coord_frac=1.0), lambda n: (n - 1) // 2, False),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_properties(name, rng):
    make, max_f, equivariant = RULES[name]
    n = 11
    f = max_f(n)
    x = rng.normal(size=(n, 30)) + 1.0
    assert make(f).max_f(n) == f and make(f).max_f(n - 1) <= f
    assert_permutation_invariant(make(f), x, rtol=1e-9, atol=1e-9)
    if equivariant:
        assert_translation_equivariant(make(f), x)
    assert_finite_under_nonfinite(make(f), x[: n - f], f)
    honest = rng.normal(size=(n - f, 30)) * 0.1 + 1.0
    assert_robust_to_outliers(make(f), honest, f)


def test_clippedclustering_subtasks_match(rng):
    x = rng.normal(size=(9, 40))
    assert_subtasks_match(ClippedClustering(), x, n_blocks=4)
    assert_subtasks_match(ClippedClustering(), x.astype(np.float32), n_blocks=3, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(RULES))
def test_torch_and_float32_keep_family_dtype_shape(name, rng):
    make, max_f, _ = RULES[name]
    x = (rng.normal(size=(11, 3, 2)) + 1.0).astype(np.float32)
    f = max_f(11)
    out = make(f).aggregate([torch.from_numpy(v) for v in x])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 2)
    expected = make(f).aggregate(x.astype(np.float64))
    assert expected.dtype == np.float64 and expected.shape == (3, 2)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert make(f).aggregate(list(x)).dtype == np.float32


REFS = {"bulyan": lambda x, f: ref_bulyan(x, f), "dnc": lambda x, f: ref_dnc(x, f), "rfa": lambda x, f: ref_rfa(x, T=50),
        "clippedclustering": lambda x, f: ref_clippedclustering(x),
        "signguard": lambda x, f: ref_signguard(x, coord_frac=1.0)}


@pytest.mark.parametrize("name", sorted(RULES))
def test_nonfinite_rows_are_dropped(name, rng):
    make, max_f, _ = RULES[name]
    x = rng.normal(size=(11, 5)) + 0.5
    f = max_f(11)
    bad = x.copy()
    bad[[2, 6][:f], 1] = [np.nan, np.inf][:f]
    kept = np.delete(x, [2, 6][:f], axis=0)
    close(make(f).aggregate(bad), REFS[name](kept, f - len([2, 6][:f])), x, rtol=1e-7)
    bad = x.copy()
    bad[: f + 1, 0] = -np.inf
    with pytest.raises(NonFiniteError, match=f"{f + 1} of 11"):
        make(f).aggregate(bad)


def test_bulyan_tolerance(rng):
    rule = Bulyan(2)
    assert rule.min_n(2) == 11 and rule.max_f(10) == 1
    rule.aggregate(rng.normal(size=(11, 3)))
    with pytest.raises(ToleranceError, match="needs n >= 11 for f=2; got n=10"):
        rule.aggregate(rng.normal(size=(10, 3)))


def test_dnc_tolerance(rng):
    with pytest.raises(ToleranceError, match="needs n >= 5 for f=2; got n=4"):
        DnC(2).aggregate(rng.normal(size=(4, 3)))
    with pytest.raises(ToleranceError, match="floor\\(filter_frac \\* f\\) = 6 of n=5 .* lower filter_frac"):
        DnC(2, filter_frac=3.0).aggregate(rng.normal(size=(5, 3)))


# -- constructor errors ------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: Bulyan(-1), "f must be a non-negative integer, got -1"),
    (lambda: Bulyan(1.5), "f must be a non-negative integer, got 1.5"),
    (lambda: DnC(None), "f must be a non-negative integer, got None"),
    (lambda: DnC(1, subsample=0), "subsample must be a positive integer, got 0"),
    (lambda: DnC(1, iters=2.0), "iters must be a positive integer, got 2.0"),
    (lambda: DnC(1, filter_frac=0), "filter_frac must be a positive finite number, got 0"),
    (lambda: DnC(1, filter_frac=math.inf), "filter_frac must be a positive finite number, got inf"),
    (lambda: DnC(1, seed=-3), "seed must be a non-negative integer, got -3"),
    (lambda: RFA(nu=0), "nu must be a positive finite number, got 0"),
    (lambda: RFA(T=-1), "T must be a non-negative integer, got -1"),
    (lambda: ClippedClustering(tau=-1.0), "tau must be a positive finite number or None, got -1.0"),
    (lambda: ClippedClustering(linkage="ward"), "linkage must be one of .*, got 'ward'"),
    (lambda: SignGuard(lower=2.0), "expected lower <= 1 <= upper .* got lower=2.0, upper=3.0"),
    (lambda: SignGuard(upper=math.nan), "upper must be a positive finite number, got nan"),
    (lambda: SignGuard(coord_frac=1.5), "coord_frac must be in \\(0, 1\\], got 1.5"),
    (lambda: SignGuard(clustering="dbscan"), "clustering must be one of .*, got 'dbscan'"),
    (lambda: SignGuard(seed="1"), "seed must be a non-negative integer, got '1'"),
])
def test_bad_parameters(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()


def test_registered():
    for name, cls in [("bulyan", Bulyan), ("dnc", DnC), ("rfa", RFA), ("signguard", SignGuard),
                      ("clippedclustering", ClippedClustering)]:
        assert registry.resolve("aggregator", name) is cls
