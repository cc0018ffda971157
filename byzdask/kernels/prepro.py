"""Kernels of the pre-aggregators: row norms, row clipping, nearest-neighbour weights, bucket means.

All functions work on an (n, d) matrix in a numpy-like namespace ``xp`` (numpy or cupy), never
write into their input, and return new arrays. Row norms are accumulated in float64 over
cache-sized column blocks, so float32 inputs get accurate norms in one read of the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.kernels.blocks import column_blocks

__all__ = ["BUCKET_CHUNK", "arc_clip_count", "bucket_means", "clip_rows", "mix_rows", "nearest_mask", "row_norms", "scale_rows"]


def _blocks(xp: Any, d: int, n: int, itemsize: int) -> list[slice]:
    if xp is np:
        return column_blocks(d, n_rows=n, itemsize=itemsize)
    return [slice(0, d)]  # a GPU reads the whole matrix in one kernel


def row_norms(matrix: Any, xp: Any = np) -> Any:
    """Euclidean norm of every row, in float64.

    A row that holds NaN or Inf gets a non-finite norm; a finite row whose squares overflow
    (float64 entries above about 1e154) is rescaled by its largest entry first, so its norm is
    finite whenever the row is.

    Cost: one read of the (n, d) matrix.

    Examples
    --------
    >>> row_norms(np.array([[3.0, 4.0], [0.0, np.inf]])).tolist()
    [5.0, inf]
    """
    n, d = matrix.shape
    sq = xp.zeros(n, dtype=xp.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for sl in _blocks(xp, d, n, matrix.dtype.itemsize):
            block = matrix[:, sl]
            sq += xp.einsum("ij,ij->i", block, block).astype(xp.float64)
        norms = xp.sqrt(sq)
        bad = ~xp.isfinite(norms)
        if bool(bad.any()):
            for i in xp.flatnonzero(bad).tolist():
                row = matrix[i]
                if bool(xp.isfinite(row).all()):
                    top = float(xp.abs(row).max())
                    norms[i] = top * float(xp.sqrt(xp.sum((row / top).astype(xp.float64) ** 2)))
    return norms


def scale_rows(matrix: Any, factors: Any, xp: Any = np) -> Any:
    """A new matrix whose row i is ``factors[i] * matrix[i]`` (one read and one write pass)."""
    out = xp.empty_like(matrix)
    xp.multiply(matrix, factors.astype(matrix.dtype)[:, None], out=out)
    return out


def clip_rows(matrix: Any, norms: Any, threshold: Any, xp: Any = np) -> Any:
    """Scale every finite row whose norm exceeds ``threshold`` down to norm ``threshold``.

    Rows with a non-finite norm (NaN or Inf inside) are copied unchanged.

    Parameters
    ----------
    matrix : (n, d) array
    norms : (n,) float64 array
        The rows' norms, from :func:`row_norms`.
    threshold : float
        The largest norm a row keeps.

    Examples
    --------
    >>> x = np.array([[3.0, 4.0], [0.3, 0.4]])
    >>> clip_rows(x, row_norms(x), 1.0).tolist()
    [[0.6000000000000001, 0.8], [0.3, 0.4]]
    """
    factors = xp.ones(norms.shape[0], dtype=xp.float64)
    over = xp.isfinite(norms) & (norms > threshold)
    if bool(over.any()):
        factors[over] = threshold / norms[over]
    return scale_rows(matrix, factors, xp)


def arc_clip_count(n: int, f: int) -> int:
    """How many vectors ARC clips among n with f Byzantine: floor(2 f (n - f) / n), exactly.

    Examples
    --------
    >>> arc_clip_count(10, 3), arc_clip_count(10, 0), arc_clip_count(242, 33)
    (4, 0, 57)
    """
    if n <= 0:
        return 0
    return (2 * f * (n - f)) // n


def nearest_mask(sq_dist: Any, k: int, xp: Any = np, *, tol: float = 0.0) -> Any:
    """Boolean (m, m) mask: row i marks the k rows nearest to row i, row i itself always included.

    Selection is by partition, not sort. Ties at the k-th distance go to the lower index, so the
    result does not depend on the partition's internal order.

    Parameters
    ----------
    sq_dist : (m, m) float64 array of squared distances.
    k : int, 1 <= k <= m.
    tol : float, keyword-only
        Distances within ``tol`` of the k-th count as tied with it (round-off).

    Examples
    --------
    >>> d = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 4.0], [1.0, 4.0, 0.0]])
    >>> nearest_mask(d, 2).astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [1, 0, 1]]
    """
    m = sq_dist.shape[0]
    dist = sq_dist.copy()
    idx = xp.arange(m)
    dist[idx, idx] = -1.0  # itself first, whatever the round-off
    if k >= m:
        return xp.ones((m, m), dtype=bool)
    kth = xp.partition(dist, k - 1, axis=1)[:, k - 1:k]
    below = dist < kth - tol
    ties = (dist <= kth + tol) & ~below
    need = k - below.sum(axis=1, keepdims=True)
    take_tie = ties & (xp.cumsum(ties, axis=1) <= need)
    return below | take_tie


#: Columns per chunk of the row-wise bucket sums (256 KiB of float32: an L2-sized accumulator).
BUCKET_CHUNK = 1 << 16


def bucket_means(matrix: Any, perm: Any, bucket_size: int, xp: Any = np) -> Any:
    """Means of consecutive buckets of ``bucket_size`` rows of ``matrix[perm]``.

    The last bucket holds the n mod bucket_size remaining rows when n is not a multiple, so the
    output has ceil(n / bucket_size) rows. The permuted matrix is never built: for wide numpy
    inputs each bucket's rows are added straight into an L2-sized chunk of its output row and
    scaled there (one read of the input, one write of the output; about (n + m) * d / 2**16
    array calls, each on at least 256 KiB); narrow inputs and GPU arrays are gathered and
    summed in a few whole-array calls.

    Examples
    --------
    >>> x = np.arange(10.0).reshape(5, 2)
    >>> bucket_means(x, np.arange(5), 2).tolist()
    [[1.0, 2.0], [5.0, 6.0], [8.0, 9.0]]
    """
    n, d = matrix.shape
    s = int(bucket_size)
    if s == 1:
        return matrix[perm]
    full, rest = divmod(n, s)
    m = full + (1 if rest else 0)
    if xp is not np or d < BUCKET_CHUNK // 2:
        shuffled = xp.take(matrix, perm, axis=0)
        out = xp.empty((m, d), dtype=matrix.dtype)
        if full:
            xp.multiply(shuffled[: full * s].reshape(full, s, d).sum(axis=1), matrix.dtype.type(1.0 / s),
                        out=out[:full])
        if rest:
            out[full] = shuffled[full * s:].mean(axis=0)
        return out
    out = np.empty((m, d), dtype=matrix.dtype)
    order = [int(i) for i in perm]
    for j in range(m):
        rows = order[j * s:(j + 1) * s]
        inv = matrix.dtype.type(1.0 / len(rows))
        for c in range(0, d, BUCKET_CHUNK):
            o = out[j, c:c + BUCKET_CHUNK]
            if len(rows) == 1:
                o[...] = matrix[rows[0], c:c + BUCKET_CHUNK]
                continue
            np.add(matrix[rows[0], c:c + BUCKET_CHUNK], matrix[rows[1], c:c + BUCKET_CHUNK], out=o)
            for i in rows[2:]:
                np.add(o, matrix[i, c:c + BUCKET_CHUNK], out=o)
            np.multiply(o, inv, out=o)
    return out


def mix_rows(weights: Any, matrix: Any, xp: Any = np) -> Any:
    """``weights @ matrix`` for an (m, n) weight matrix, as one GEMM per cache-sized column block.

    Blocking keeps each (n, b) input block and (m, b) output block in cache: about twice as fast
    as one large GEMM with a small inner dimension n (measured here at n = 32, d = 2**20).

    Examples
    --------
    >>> mix_rows(np.array([[0.5, 0.5]]), np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[2.0, 3.0]]
    """
    w = weights.astype(matrix.dtype, copy=False)
    m, d = int(w.shape[0]), int(matrix.shape[1])
    if xp is not np:
        return w @ matrix
    out = np.empty((m, d), dtype=matrix.dtype)
    for sl in column_blocks(d, n_rows=m + int(matrix.shape[0]), itemsize=matrix.dtype.itemsize):
        np.matmul(w, matrix[:, sl], out=out[:, sl])
    return out
