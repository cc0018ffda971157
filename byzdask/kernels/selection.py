"""Selection helpers on small n x n matrices, shared by the distance-based rules.

The distance rules (Krum, MultiKrum, MoNNA, CGE, MDA, SMEA) decide on an n x n matrix derived
from the augmented Gram matrix of :mod:`byzdask.kernels.gram`; the decision is tiny next to the
Gram matrix itself, so it runs in numpy (float64) on the host whatever the array family.

Two exact subset searches live here:

* :func:`min_diameter_subset` -- the k-subset of smallest diameter (MDA);
* :func:`min_top_eigenvalue_subset` -- the k-subset whose scatter matrix has the smallest top
  eigenvalue (SMEA).

Both return the subset first in the lexicographic order of :func:`itertools.combinations` among
those whose value is within a tolerance of the best: their depth-first searches meet leaves in
that order and record a leaf only when it is better by more than the tolerance. Both prune with a
"conflict" graph (pairs of rows that cannot both stay in a subset better than the best so far):
the rows that must stay force their conflicting rows out, and among the other undecided rows
each edge of a greedy maximal matching costs one more drop; a node whose forced drops exceed
f = n - k is cut. The worst case stays exponential (choosing a minimum-diameter k-subset is as
hard as finding a k-clique); see each function for its other bounds and its cost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

__all__ = [
    "host_distances",
    "k_nearest_sums",
    "mean_weights",
    "min_diameter_subset",
    "normalised",
    "min_top_eigenvalue_subset",
    "smallest_indices",
    "tie_rtol",
    "tie_tolerance",
    "ties_for",
    "to_host",
]

logger = logging.getLogger(__name__)

#: Relative size (against the largest distance) under which values count as tied, for a Gram
#: matrix computed in float64; see :func:`tie_rtol` for other dtypes.
TIE_RTOL = 1e-12

#: The relative tie tolerance of the Gram matrix being decided on (set by :func:`ties_for`).
_RTOL: ContextVar[float] = ContextVar("byzdask_tie_rtol", default=TIE_RTOL)


def tie_rtol(dtype: Any) -> float:
    """Relative tie tolerance for a Gram matrix whose products were computed in ``dtype``.

    :data:`TIE_RTOL` for float64; for a narrower dtype (float32, which float16 and bfloat16
    inputs compute in) ``2**8`` times its machine epsilon (about 3.1e-5 for float32): a distance
    derived from a Gram matrix is a difference of squared norms, and its round-off is up to a few
    hundred epsilons of the largest distance, so real gaps that small are not told apart.

    Examples
    --------
    >>> tie_rtol(np.float64), tie_rtol(np.float32)
    (1e-12, 3.0517578125e-05)
    """
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return max(TIE_RTOL, eps * 2.0**8) if np.dtype(dtype).itemsize < 8 else TIE_RTOL


@contextmanager
def ties_for(dtype: Any) -> Iterator[None]:
    """Within the block, :func:`tie_tolerance` uses :func:`tie_rtol` of ``dtype`` by default.

    The base class of the rules wraps each decision in it with the dtype the Gram matrix was
    computed in, so that rules need not pass it on.

    Examples
    --------
    >>> with ties_for(np.float32):
    ...     tie_tolerance(np.array([[0.0, 1.0], [1.0, 0.0]]))
    3.0517578125e-05
    """
    token = _RTOL.set(tie_rtol(dtype))
    try:
        yield
    finally:
        _RTOL.reset(token)


def to_host(a: Any) -> np.ndarray:
    """A float64 numpy copy (or view) of a small numpy or cupy matrix.

    Examples
    --------
    >>> to_host(np.eye(2, dtype=np.float32)).dtype
    dtype('float64')
    """
    if not isinstance(a, np.ndarray) and hasattr(a, "get"):
        a = a.get()
    return np.asarray(a, dtype=np.float64)


def host_distances(gram: Any) -> np.ndarray:
    """Squared Euclidean distances between the rows of a Gram matrix, on the host, in float64.

    The Gram matrix is symmetrised first, so the distances are exactly symmetric; they are
    clamped at zero and the diagonal is zero.

    Examples
    --------
    >>> g = np.array([[1.0, 0.0], [0.0, 4.0]])
    >>> host_distances(g).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    g = to_host(gram)
    g = 0.5 * (g + g.T)
    diag = np.diagonal(g)
    dist = (diag[:, None] + diag[None, :]) - 2.0 * g
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def k_nearest_sums(dist: np.ndarray, k: int) -> np.ndarray:
    """For each row i, the sum of its k smallest entries ``dist[i, j]`` over ``j != i``.

    Selection by partition; the k selected values are then summed in sorted order, so two rows
    holding the same multiset of distances get bit-identical sums (ties stay ties).

    Parameters
    ----------
    dist : (n, n) array
    k : int
        1 <= k <= n - 1.

    Examples
    --------
    >>> d = np.array([[0.0, 1.0, 4.0], [1.0, 0.0, 9.0], [4.0, 9.0, 0.0]])
    >>> k_nearest_sums(d, 1).tolist()
    [1.0, 1.0, 4.0]
    """
    n = dist.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must satisfy 1 <= k <= n - 1 = {n - 1}, got {k}")
    others = np.array(dist, dtype=np.float64, copy=True)
    np.fill_diagonal(others, np.inf)
    others = np.partition(others, k - 1, axis=1)  # the diagonal (inf) lands past column k - 1
    nearest = np.sort(others[:, :k], axis=1)
    return nearest.sum(axis=1)


def smallest_indices(values: np.ndarray, k: int, *, tol: float = 0.0) -> np.ndarray:
    """Indices of the k smallest values, ties going to the lower index.

    Values closer than ``tol`` count as tied: after a stable sort, runs of consecutive values
    whose gaps are all <= ``tol`` are ordered by index. This makes ties that round-off has
    split (the Gram matrix is not exact) still go to the lower index, whatever the blocking.

    Examples
    --------
    >>> smallest_indices(np.array([3.0, 1.0, 2.0, 1.0]), 3).tolist()
    [1, 3, 2]
    >>> smallest_indices(np.array([1.0 + 1e-15, 1.0]), 1, tol=1e-12).tolist()
    [0]
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    if tol > 0 and len(order) > 1:
        ranked = values[order]
        group = np.concatenate([[0], np.cumsum(np.diff(ranked) > tol)])
        order = order[np.lexsort((order, group))]
    return order[:k]


def tie_tolerance(dist: np.ndarray, rows: Any = None, *, rtol: float | None = None) -> float:
    """Tolerance under which two distance-derived values count as tied.

    ``rtol`` times the largest distance among ``rows`` (all rows by default): round-off of the
    Gram matrix stays far below it, real differences far above it. ``rtol`` defaults to
    :data:`TIE_RTOL`, or to :func:`tie_rtol` of the dtype set by :func:`ties_for`.

    Examples
    --------
    >>> tie_tolerance(np.array([[0.0, 4.0], [4.0, 0.0]]))
    4e-12
    """
    rtol = _RTOL.get() if rtol is None else rtol
    sub = dist if rows is None else dist[np.ix_(rows, rows)]
    return float(rtol * sub.max()) if sub.size else 0.0


def normalised(gram: Any) -> np.ndarray:
    """A float64 host copy of a Gram matrix scaled by a power of two so that its largest entry is about 1.

    The decisions of the scale-free rules (SMEA's and CAF's eigenproblems) do not change, and
    LAPACK never meets entries near the limits of float64.

    Examples
    --------
    >>> normalised(np.array([[4e300, 0.0], [0.0, 1e300]])).tolist()
    [[0.7466108948025751, 0.0], [0.0, 0.18665272370064379]]
    """
    g = to_host(gram)
    top = float(np.max(np.abs(g))) if g.size else 0.0
    if top == 0.0 or not np.isfinite(top):
        return g
    return np.ldexp(g, -np.frexp(top)[1])


def mean_weights(size: int, rows: Any) -> np.ndarray:
    """Weights of length ``size`` that average ``rows`` (1 / len(rows) on each of them).

    Examples
    --------
    >>> mean_weights(4, [0, 2]).tolist()
    [0.5, 0.0, 0.5, 0.0]
    """
    rows = np.asarray(rows, dtype=np.intp)
    w = np.zeros(size, dtype=np.float64)
    w[rows] = 1.0 / len(rows)
    return w


@contextmanager
def _deep_enough(n: int) -> Iterator[None]:
    """Room for the depth-first searches below: one Python frame per row (n >= 1000 included).

    Python 3.11+ calls between Python functions use no C stack, so a higher limit is safe.
    """
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 4 * int(n) + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


# -- bitset helpers ------------------------------------------------------------------------
def _masks(conflict: np.ndarray) -> list[int]:
    """Rows of a boolean (n, n) matrix as Python int bitsets (bit j set when conflict[i, j])."""
    packed = np.packbits(np.asarray(conflict, dtype=bool), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _matching_size(free: int, masks: list[int]) -> int:
    """Size of a greedy maximal matching of the conflict graph restricted to the bitset ``free``."""
    size = 0
    while free:
        low = free & -free
        i = low.bit_length() - 1
        free ^= low
        partners = masks[i] & free
        if partners:
            free ^= partners & -partners
            size += 1
    return size


def _bitset(rows: Any) -> int:
    out = 0
    for r in rows:
        out |= 1 << r
    return out


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _greedy_start(dist: np.ndarray, size: int, value: Callable[[tuple], float]) -> tuple[float, tuple]:
    """Upper bound: the best of the sets {i and its size - 1 nearest rows}, i among the first 64 rows.

    (Any subset bounds the search; 64 starts keep this O(64 n^2) at n in the thousands.)
    """
    best_val, best_set = np.inf, tuple(range(size))
    for i in range(min(dist.shape[0], 64)):
        subset = tuple(sorted(np.argsort(dist[i], kind="stable")[:size].tolist()))
        if i not in subset:  # a duplicate row at distance 0 came first; keep i itself
            subset = tuple(sorted((*subset[:-1], i)))
        val = value(subset)
        if val < best_val or (val == best_val and subset < best_set):
            best_val, best_set = val, subset
    return best_val, best_set


# -- minimum diameter ----------------------------------------------------------------------
def min_diameter_subset(dist: np.ndarray, size: int, *, tol: float = 0.0) -> tuple[tuple[int, ...], float]:
    """The ``size``-subset of rows with the smallest diameter, first in lexicographic order on ties.

    Parameters
    ----------
    dist : (n, n) array
        Symmetric (squared) distances, zero diagonal. Any increasing function of the distance
        gives the same subset.
    size : int
        1 <= size <= n.
    tol : float
        Diameters within ``tol`` of the smallest count as tied.

    Returns
    -------
    subset : tuple of int
        Sorted row indices.
    diameter : float
        ``max(dist[i, j] for i, j in subset)``.

    Notes
    -----
    Two exact phases, f = n - size:

    1. the smallest diameter t*: dropping f rows so that no pair at distance >= the best value
       so far remains is a vertex cover of size f, found by branching on the farthest remaining
       pair (drop one end, or keep it and drop the other): at most 2**f leaves, far fewer with
       the matching bound (see the module notes);
    2. the lexicographically first subset of diameter <= t* + tol: depth-first over the rows in
       index order, keep before drop, stopping at the first leaf, with the same bound.

    Cost: O(2**f n) bit operations in the worst case for phase 1 (f <= 15: a few ms to a few
    hundred ms), phase 2 usually a few hundred nodes.

    Examples
    --------
    >>> x = np.array([0.0, 1.0, 1.5, 10.0])
    >>> d = (x[:, None] - x[None, :]) ** 2
    >>> min_diameter_subset(d, 3)
    ((0, 1, 2), 2.25)
    """
    dist = np.asarray(dist, dtype=np.float64)
    n = dist.shape[0]
    if not 1 <= size <= n:
        raise ValueError(f"size must satisfy 1 <= size <= n = {n}, got {size}")
    if size == n:
        return tuple(range(n)), float(dist.max()) if n else 0.0
    if size == 1:
        return (0,), 0.0
    drops = n - size

    def diameter(subset: tuple) -> float:
        idx = np.asarray(subset)
        return float(dist[np.ix_(idx, idx)].max())

    upper, _ = _greedy_start(dist, size, diameter)
    with _deep_enough(n):
        best = _smallest_diameter(dist, drops, upper)
        subset = _first_within(dist, size, best + tol)
    return subset, diameter(subset)


def _smallest_diameter(dist: np.ndarray, drops: int, upper: float) -> float:
    """Phase 1 of :func:`min_diameter_subset`: the smallest diameter after ``drops`` drops."""
    n = dist.shape[0]
    iu, ju = np.triu_indices(n, 1)
    far = dist[iu, ju]
    order = np.argsort(-far, kind="stable")
    ei, ej, ed = iu[order].tolist(), ju[order].tolist(), far[order].tolist()
    n_edges = len(ed)
    everyone = (1 << n) - 1
    state = {"best": upper, "masks": _masks(dist >= upper), "nodes": 0}

    def branch(ptr: int, dropped: int, kept: int, budget: int) -> None:
        state["nodes"] += 1
        while ptr < n_edges and (dropped >> ei[ptr] & 1 or dropped >> ej[ptr] & 1):
            ptr += 1
        value = ed[ptr] if ptr < n_edges else 0.0
        if value < state["best"]:
            state["best"] = value
            state["masks"] = _masks(dist >= value)
        if budget == 0 or ptr == n_edges:
            return
        masks = state["masks"]  # pairs at distance >= best: a better subset breaks them all
        forced = 0
        for u in _bits(kept):
            forced |= masks[u]
        if forced & kept:
            return
        free = everyone & ~dropped & ~kept & ~forced
        spare = budget - (forced & ~dropped).bit_count()
        if spare < 0 or spare < _matching_size(free, masks):
            return
        i, j = ei[ptr], ej[ptr]
        if not kept >> i & 1:
            branch(ptr + 1, dropped | 1 << i, kept, budget - 1)
        if not kept >> j & 1:
            branch(ptr + 1, dropped | 1 << j, kept | 1 << i, budget - 1)

    branch(0, 0, 0, drops)
    logger.debug("min diameter phase 1 (n=%d, f=%d): %d nodes", n, drops, state["nodes"])
    return float(state["best"])


def _first_within(dist: np.ndarray, size: int, limit: float) -> tuple[int, ...]:
    """Phase 2 of :func:`min_diameter_subset`: the first ``size``-subset of diameter <= limit."""
    n = dist.shape[0]
    drops = n - size
    masks = _masks(dist > limit)
    everyone = (1 << n) - 1
    nodes = 0

    def visit(v: int, kept: tuple, forbid: int, dropped: int) -> tuple | None:
        nonlocal nodes
        nodes += 1
        if len(kept) == size:
            return kept
        undecided = everyone & ~((1 << v) - 1)
        forced = forbid & undecided
        spare = drops - dropped - forced.bit_count()
        if spare < 0 or spare < _matching_size(undecided & ~forced, masks):
            return None
        if forced >> v & 1:
            return visit(v + 1, kept, forbid, dropped + 1)
        found = visit(v + 1, (*kept, v), forbid | masks[v], dropped)
        if found is None and dropped < drops:
            found = visit(v + 1, kept, forbid, dropped + 1)
        return found

    found = visit(0, (), 0, 0)
    logger.debug("min diameter phase 2 (n=%d, size=%d): %d nodes", n, size, nodes)
    if found is None:  # cannot happen: phase 1 found a subset within the limit
        raise RuntimeError(f"no {size}-subset of diameter <= {limit!r}; phase 1 and 2 disagree")
    return found


# -- smallest top eigenvalue ---------------------------------------------------------------
def _scatter_top(gram: np.ndarray, subset: list[int]) -> tuple[float, np.ndarray]:
    """Top eigenvalue and unit eigenvector of the centred Gram matrix of ``subset``."""
    g = gram[np.ix_(subset, subset)]
    row = g.mean(axis=1)
    centred = g - row[:, None] - row[None, :] + row.mean()
    vals, vecs = np.linalg.eigh(centred)
    return max(float(vals[-1]), 0.0), vecs[:, -1]


def _keep_search(gram: np.ndarray, size: int, *, tol: float = 0.0,
                 rtol: float = 1e-9) -> tuple[tuple[int, ...], float]:
    """SMEA's search over kept rows (suits small subsets); arguments and result as in
    :func:`min_top_eigenvalue_subset`."""
    n = gram.shape[0]
    drops = n - size
    diag = np.diagonal(gram)
    dist = host_distances(gram)
    slack = 1.0 + rtol

    best_val, best_set = _greedy_start(dist, size, lambda s: _scatter_top(gram, list(s))[0])
    state = {"val": best_val, "set": best_set, "strict": False, "version": 0, "nodes": 0}

    def too_big(bound: Any, exact: bool = False) -> Any:
        # a lower bound that rules out every subset still worth recording
        limit = state["val"] * (1.0 if exact else slack)
        return bound >= limit - tol if state["strict"] else bound > limit + tol

    def refresh() -> list[int]:
        bad = too_big(0.5 * dist)
        np.fill_diagonal(bad, False)
        return _masks(bad)

    masks = refresh()
    everyone = (1 << n) - 1

    def visit(v: int, kept: list[int], dropped: int) -> None:
        nonlocal masks
        state["nodes"] += 1
        if kept:
            top, vec = _scatter_top(gram, kept)
            if too_big(top, exact=True):
                return
        else:
            top, vec = 0.0, None
        if len(kept) == size:
            state["val"], state["set"], state["strict"] = top, tuple(kept), True
            state["version"] += 1
            masks = refresh()
            return
        undecided = everyone & ~((1 << v) - 1)
        forced = 0
        for u in kept:
            forced |= masks[u]
        forced &= undecided
        if len(kept) >= 2:
            cand = np.arange(v, n)
            k = len(kept)
            gk = gram[np.ix_(cand, kept)]
            rows_k = gram[np.ix_(kept, kept)]
            col = rows_k.mean(axis=0)
            grand = col.mean()
            proj = gk - gk.mean(axis=1, keepdims=True) - col[None, :] + grand  # <x - mu, x_u - mu>
            a2 = np.maximum(diag[cand] - 2.0 * gk.mean(axis=1) + grand, 0.0)  # |x - mu|^2
            c = k / (k + 1.0)
            along_top = top + c * (proj @ vec) ** 2 / top if top > 0 else np.zeros(len(cand))
            with np.errstate(divide="ignore", invalid="ignore"):
                along_a = np.where(a2 > 0, c * a2 + (proj**2).sum(axis=1) / a2, 0.0)
            out = too_big(np.maximum(along_top, along_a))
            for j in np.flatnonzero(out).tolist():
                forced |= 1 << int(cand[j])
        budget = drops - dropped - forced.bit_count()
        if budget < 0:
            return
        if budget < _matching_size(undecided & ~forced, masks):
            return
        if forced >> v & 1:
            visit(v + 1, kept, dropped + 1)
            return
        visit(v + 1, [*kept, v], dropped)
        if dropped < drops:
            visit(v + 1, kept, dropped + 1)

    visit(0, [], 0)
    logger.debug("min_top_eigenvalue_subset n=%d size=%d: %d nodes", n, size, state["nodes"])
    return state["set"], float(state["val"])


def _centred_eigh(gram: np.ndarray, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, >= 0) and unit eigenvectors of the centred Gram matrix of ``rows``."""
    g = gram[np.ix_(rows, rows)]
    mean = g.mean(axis=1)
    vals, vecs = np.linalg.eigh(g - mean[:, None] - mean[None, :] + mean.mean())
    return np.maximum(vals[::-1], 0.0), vecs[:, ::-1]


def _downdate_eigenvalue_bound(vals: np.ndarray, vecs: np.ndarray, rows: list[int], k: int,
                               iters: int = 24) -> np.ndarray:
    """Lower bounds on the k-th eigenvalue (1-based) of each child's centred Gram matrix.

    The child drops one row c of ``rows``: its scatter matrix is :math:`M_T - \\rho\\, y_c y_c^T`
    (:math:`\\rho = |T| / (|T| - 1)`, :math:`y_c` row c centred on T), a rank-one downdate of
    :math:`M_T = \\mathrm{diag}(\\lambda)` in its eigenbasis, where :math:`y_c` has coordinates
    :math:`z_j^2 = \\lambda_j \\phi_j[c]^2`. Its k-th eigenvalue is the root in
    :math:`[\\lambda_{k+1}, \\lambda_k]` of :math:`\\rho \\sum_j z_j^2 / (\\lambda_j - \\mu) = 1`,
    an increasing function there; bisection keeps the low end, a valid bound, for every child at once.
    """
    m = len(rows)
    rho = m / (m - 1.0)
    z2 = rho * vals[None, :] * vecs**2  # (children, eigen index)
    lo = np.full(m, vals[k] if k < m else 0.0)
    hi = np.full(m, vals[k - 1])
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (z2 / (vals[None, :] - mid[:, None])).sum(axis=1)
        below = g < 1.0
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return lo


def _drop_search(gram: np.ndarray, size: int, *, tol: float = 0.0,
                 rtol: float = 1e-9) -> tuple[tuple[int, ...], float]:
    """SMEA's search over dropped rows (suits few drops); see :func:`min_top_eigenvalue_subset`."""
    n = gram.shape[0]
    drops = n - size
    slack = 1.0 + rtol

    # incumbent: drop greedily the row whose removal lowers the top eigenvalue most
    rest = list(range(n))
    for _ in range(drops):
        vals, vecs = _centred_eigh(gram, rest)
        bound = _downdate_eigenvalue_bound(vals, vecs, rest, 1, iters=20)
        tries = [rest[i] for i in np.argsort(bound, kind="stable")[:4]]
        scores = [_centred_eigh(gram, [r for r in rest if r != c])[0][0] for c in tries]
        rest.remove(tries[int(np.argmin(scores))])
    state = {"val": _centred_eigh(gram, rest)[0][0], "set": tuple(rest), "strict": False, "nodes": 0}
    half_dist = 0.5 * host_distances(gram)  # two rows' scatter
    everyone_bits = (1 << n) - 1

    def too_big(bound: Any, exact: bool = False) -> Any:
        limit = state["val"] * (1.0 if exact else slack)
        return bound >= limit - tol if state["strict"] else bound > limit + tol

    def conflicts() -> list[int]:
        key = (state["val"], state["strict"])
        if state.get("masks_key") != key:
            bad = too_big(half_dist)
            np.fill_diagonal(bad, False)
            state["masks"], state["masks_key"] = _masks(bad), key
        return state["masks"]

    def visit(dropped: list[int], budget: int, rows: list[int], vals: np.ndarray, vecs: np.ndarray) -> None:
        # rows below the last drop stay in every subset under this node
        state["nodes"] += 1
        low = dropped[-1] if dropped else -1
        kept = [i for i in range(low) if i not in dropped]
        masks = conflicts()  # pairs too far apart to stay together in a better subset
        forced = 0
        for u in kept:
            forced |= masks[u]
        cand = everyone_bits & ~((1 << (low + 1)) - 1)
        if forced & ~cand & ~_bitset(dropped):
            return
        forced &= cand
        spare = budget - forced.bit_count()
        if spare < 0 or spare < _matching_size(cand & ~forced, masks):
            return
        if len(kept) >= 2 and too_big(_centred_eigh(gram, kept)[0][0]):
            return
        # Weyl: a child drops budget - 1 more rows, a rank-(budget - 1) downdate of its own matrix
        child_bound = _downdate_eigenvalue_bound(vals, vecs, rows, budget)
        pos = {r: k for k, r in enumerate(rows)}
        for c in range(n - budget, low, -1):  # descending: leaves come in lexicographic order
            if too_big(child_bound[pos[c]]):
                continue
            child = [r for r in rows if r != c]
            cvals, cvecs = _centred_eigh(gram, child)
            if budget == 1:
                state["nodes"] += 1
                if not too_big(float(cvals[0]), exact=True):
                    state["val"], state["set"], state["strict"] = float(cvals[0]), tuple(child), True
            elif not too_big(cvals[budget - 1]):
                visit([*dropped, c], budget - 1, child, cvals, cvecs)

    everyone = list(range(n))
    vals, vecs = _centred_eigh(gram, everyone)
    if not too_big(vals[drops]):
        visit([], drops, everyone, vals, vecs)
    logger.debug("SMEA drop search n=%d size=%d: %d nodes", n, size, state["nodes"])
    return state["set"], float(state["val"])


def min_top_eigenvalue_subset(gram: np.ndarray, size: int, *, tol: float = 0.0,
                              rtol: float = 1e-9) -> tuple[tuple[int, ...], float]:
    """The ``size``-subset whose scatter matrix has the smallest top eigenvalue (lexicographic ties).

    The scatter matrix of a subset S is :math:`M_S = \\sum_{i \\in S} (x_i - \\mu_S)(x_i - \\mu_S)^T`;
    its non-zero eigenvalues are those of the centred |S| x |S| Gram matrix :math:`H G_S H`
    (H = I - 11^T/|S|), so nothing in d-space is needed.

    Parameters
    ----------
    gram : (n, n) array
        Gram matrix of the rows (any common centring).
    size : int
        1 <= size <= n.
    tol : float
        Top eigenvalues (of the scatter matrix) within ``tol`` count as tied.
    rtol : float
        Relative slack on derived lower bounds, so that round-off in a bound never prunes a
        subset that is better by less than round-off.

    Returns
    -------
    subset : tuple of int
    top : float
        The top eigenvalue of :math:`M_S` (divide by ``size`` for the population covariance).

    Notes
    -----
    Exact branch and bound, two search orders sharing one rule (leaves in the lexicographic order
    of the kept subsets; a leaf is recorded only when better by more than ``tol``):

    * few drops (f = n - size <= size): depth-first over the dropped rows. Removing r rows from T
      changes :math:`M_T` by a positive semi-definite matrix of rank <= r, so every subset below
      has top eigenvalue >= :math:`\\lambda_{r+1}(M_T)` (Weyl); the rows before the last drop
      stay, and their own top eigenvalue bounds too (adding a row never shrinks the scatter
      matrix); at the last level, Rayleigh quotients at the parent's eigenvectors skip most
      children without an eigendecomposition.
    * many drops: depth-first over the kept rows with the bounds of the kept rows' scatter matrix
      (see the module notes).

    Cost: one symmetric eigendecomposition of at most n x n per node; the node count is
    exponential in f in the worst case (isotropic Gaussian inputs, where every subset has about
    the same spread; measured numbers are in :class:`byzdask.aggregators.SMEA`).

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [1.5], [10.0]])
    >>> min_top_eigenvalue_subset(x @ x.T, 3)[0]
    (0, 1, 2)
    """
    gram = np.asarray(gram, dtype=np.float64)
    gram = 0.5 * (gram + gram.T)
    n = gram.shape[0]
    if not 1 <= size <= n:
        raise ValueError(f"size must satisfy 1 <= size <= n = {n}, got {size}")
    if size == 1:
        return (0,), 0.0
    if size == n:
        return tuple(range(n)), float(_centred_eigh(gram, list(range(n)))[0][0])
    search = _drop_search if n - size <= size else _keep_search
    with _deep_enough(n):
        return search(gram, size, tol=tol, rtol=rtol)
