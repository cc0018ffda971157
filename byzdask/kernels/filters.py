"""Kernels of the filtering defences: Bulyan, DnC, SignGuard and ClippedClustering.

Each defence keeps a subset of its inputs (and may rescale them) from small statistics: Krum
scores on an n x n distance matrix (Bulyan), outlier scores along the top principal direction of
a column sample (DnC), sign fractions of a column sample (SignGuard), cosine distances
(ClippedClustering). The statistics are computed in the inputs' namespace ``xp`` (numpy or
cupy) where they read the (n, d) data, and decided on the host in float64, like the selection
helpers of :mod:`byzdask.kernels.selection` that they reuse.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.kernels.blocks import kernel_blocks
from byzdask.kernels.coordinate import coordinate_mean_of_medians
from byzdask.kernels.selection import k_nearest_sums, smallest_indices, tie_tolerance, to_host

__all__ = [
    "COSINE_ATOL",
    "closest_to_median_mean",
    "cosine_distances",
    "iterated_krum",
    "largest_cluster",
    "principal_outlier_scores",
    "sign_fractions",
]


def iterated_krum(dist: np.ndarray, f: int, count: int) -> np.ndarray:
    """Rows chosen one by one by Krum on the rows not chosen yet (Bulyan's selection).

    At each step the row of lowest Krum score among the remaining rows R is moved out of R, the
    score of a row being the sum of its ``|R| - f - 1`` smallest squared distances to the other
    rows of R (the convention of :class:`~byzdask.aggregators.Krum`; 0 when ``|R| - f - 1 < 1``).
    Ties go to the lower index.

    Parameters
    ----------
    dist : (n, n) array
        Squared distances (from :func:`~byzdask.kernels.selection.host_distances`).
    f : int
        Krum's f.
    count : int
        Number of rows chosen, 1 <= count <= n.

    Returns
    -------
    (count,) int array
        The chosen rows, in the order they were chosen.

    Examples
    --------
    >>> x = np.array([0.0, 1.0, 2.0, 3.0, 50.0])
    >>> iterated_krum((x[:, None] - x[None, :]) ** 2, 1, 3).tolist()
    [1, 2, 0]
    """
    dist = np.asarray(dist, dtype=np.float64)
    n = dist.shape[0]
    if not 1 <= count <= n:
        raise ValueError(f"count must satisfy 1 <= count <= n = {n}, got {count}")
    remaining = list(range(n))
    chosen = []
    for _ in range(count):
        sub = dist[np.ix_(remaining, remaining)]
        k = len(remaining) - f - 1
        if k >= 1:
            scores = k_nearest_sums(sub, k)
            best = int(smallest_indices(scores, 1, tol=tie_tolerance(sub) * k)[0])
        else:
            best = 0
        chosen.append(remaining.pop(best))
    return np.asarray(chosen, dtype=np.intp)


def _stable_argsort(a: Any, xp: Any) -> Any:
    if xp is np:
        return np.argsort(a, axis=0, kind="stable")
    return xp.argsort(a, axis=0)  # cupy's sort is stable


def closest_to_median_mean(block: Any, keep: int, xp: Any) -> Any:
    """Per column of ``block`` (m, b), the mean of the ``keep`` values closest to the column's median.

    The median is the true median (mean of the two middle values for even m); ties in distance
    keep the smaller value, as :func:`~byzdask.kernels.coordinate.coordinate_mean_of_medians`
    does, which computes the same thing when ``keep > m / 2`` and is used then. Otherwise each
    column is sorted and its distances to the median ranked (stable), over cache-sized blocks.

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [1.5], [2.0], [9.0]])
    >>> closest_to_median_mean(x, 2, np)  # median 1.5: 1.5, then 1.0 and 2.0 tie; 1.0 is kept
    array([1.25])
    """
    m = block.shape[0]
    if not 1 <= keep <= m:
        raise ValueError(f"keep must satisfy 1 <= keep <= m = {m}, got {keep}")
    if 2 * (m - keep) < m:
        return coordinate_mean_of_medians(block, m - keep, xp)
    out = xp.empty(block.shape[1], dtype=block.dtype)
    lo, hi = (m - 1) // 2, m // 2
    for sl in kernel_blocks(block.shape[1], n_rows=m, itemsize=block.dtype.itemsize, xp=xp):
        ranked = xp.sort(block[:, sl], axis=0)
        med = ranked[lo] * 0.5 + ranked[hi] * 0.5 if lo != hi else ranked[lo]
        order = _stable_argsort(xp.abs(ranked - med[None, :]), xp)[:keep]
        out[sl] = xp.take_along_axis(ranked, order, axis=0).mean(axis=0)
    return out


def principal_outlier_scores(gram: Any, m: int) -> np.ndarray:
    """DnC's outlier scores: squared projections of the centred rows on their top principal direction.

    With C the (m, b) centred rows and v the top right singular vector of C, the score of row i
    is :math:`((x_i - \\mu) \\cdot v)^2 = \\lambda u_i^2`, where :math:`(\\lambda, u)` is the top
    eigenpair of :math:`C C^\\top`: the first m x m block of a Gram matrix of the rows
    (:func:`~byzdask.kernels.gram.gram_matrix`), centred on their mean here whatever common
    centre it was computed with (:math:`H G H`, :math:`H = I - 11^\\top / m`). No d-space vector
    is formed.

    Examples
    --------
    >>> from byzdask.kernels.gram import gram_matrix
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [9.0, 0.0]])
    >>> principal_outlier_scores(gram_matrix(x), 4).round(4).tolist()
    [9.0, 4.0, 1.0, 36.0]
    """
    g = np.asarray(to_host(gram), dtype=np.float64)[:m, :m]
    scale = float(np.max(np.abs(g))) if g.size else 0.0
    if not np.isfinite(scale) or scale == 0.0:
        scale = 1.0
    g = (0.5 * g + 0.5 * g.T) / scale  # entries near the float64 maximum neither overflow here nor in eigh
    row = g.mean(axis=1)
    g = g - row[:, None] - row[None, :] + row.mean()
    values, vectors = np.linalg.eigh(g)
    lam = max(float(values[-1]), 0.0)
    return lam * vectors[:, -1] ** 2 * scale


def sign_fractions(block: Any, xp: Any) -> np.ndarray:
    """SignGuard's features: per row, the fractions of positive, zero and negative entries.

    Each column of the (m, 3) result is divided by its largest value over the rows (a column
    that is zero everywhere stays zero), so that the three features have one scale.

    Examples
    --------
    >>> sign_fractions(np.array([[1.0, -1.0, 0.0, 2.0], [-1.0, -2.0, -3.0, 0.0]]), np).round(3).tolist()
    [[1.0, 1.0, 0.333], [0.0, 1.0, 1.0]]
    """
    b = block.shape[1]
    pos = (block > 0).sum(axis=1)
    neg = (block < 0).sum(axis=1)
    counts = to_host(xp.stack([pos, b - pos - neg, neg], axis=1))
    feats = counts / max(b, 1)
    top = feats.max(axis=0)
    return np.divide(feats, top, out=np.zeros_like(feats), where=top > 0)


#: Cosine distances below this count as 0 (far above the round-off of float64 Gram entries).
COSINE_ATOL = 1e-12


def cosine_distances(gram: Any, m: int) -> np.ndarray:
    """Cosine distances ``1 - <x_i, x_j> / (||x_i|| ||x_j||)`` between the first ``m`` rows.

    ``gram`` is an augmented centred Gram matrix (the m rows, then the origin, see
    :mod:`byzdask.kernels.gram`); the raw inner products are read off it as
    :math:`\\langle x_i, x_j\\rangle = \\langle c_i - c_o, c_j - c_o\\rangle`, with :math:`c_o` the
    centred origin. A zero row is at distance 1 from every other row (cosine 0). The result is
    symmetric, clipped to [0, 2], with a zero diagonal; distances below :data:`COSINE_ATOL` are set
    to 0, so that round-off never splits vectors of one direction (in one dimension, all
    vectors of one sign).

    Examples
    --------
    >>> from byzdask.kernels.gram import gram_matrix
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    >>> cosine_distances(gram_matrix(x), 3).round(6).tolist()
    [[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]]
    """
    g = to_host(gram)
    g = 0.5 * (g + g.T)
    o = m  # the origin's row
    inner = g[:m, :m] - g[:m, o][:, None] - g[o, :m][None, :] + g[o, o]
    norms = np.sqrt(np.maximum(np.diagonal(inner), 0.0))
    scale = norms[:, None] * norms[None, :]
    cos = np.divide(inner, scale, out=np.zeros_like(inner), where=scale > 0)
    dist = np.clip(1.0 - cos, 0.0, 2.0)
    dist[dist < COSINE_ATOL] = 0.0
    np.fill_diagonal(dist, 0.0)
    return dist


def largest_cluster(labels: Any) -> np.ndarray:
    """Rows of the largest cluster (labels >= 0); on a tie, the cluster holding the lowest row.

    Examples
    --------
    >>> largest_cluster(np.array([1, 0, 0, 1, -1])).tolist()
    [0, 3]
    """
    labels = np.asarray(labels)
    best, best_size = None, 0
    for label in labels[labels >= 0]:  # in row order: the first cluster met wins ties
        size = int((labels == label).sum())
        if size > best_size:
            best, best_size = label, size
    if best is None:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(labels == best)
