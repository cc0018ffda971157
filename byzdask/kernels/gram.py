"""Gram-space kernels shared by the distance and iterative rules (DESIGN §4).

The rules decide on an (m, m) Gram matrix of the centred inputs and then output a weighted
sum of the inputs. The matrix is built block by block along d (one pass over the data, cache
sized), each block centred on its own column mean, and accumulated in float64, so the direct
path, the fan-out path and a cluster holding the blocks on different workers all sum the same
partials.

Row layout of every Gram matrix here ("augmented rows"): the m input rows, then the origin
(the zero vector), then any ``extra`` anchor rows (e.g. a previous aggregate). Weights returned
by a rule follow the same layout; :func:`combine` applies them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.kernels.blocks import column_blocks, kernel_blocks

__all__ = [
    "ORIGIN",
    "combine",
    "gram_is_sound",
    "trusted_gram",
    "gram_limit",
    "gram_matrix",
    "gram_partial",
    "safe_gram",
    "sound_rows",
    "sq_distances",
]

#: Number of anchor rows always appended after the inputs (the origin).
ORIGIN = 1


_HOST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Gram entries of float32 inputs below this (in float32: tiny / eps) have lost their precision to
#: underflow; :func:`gram_is_sound` then asks for the float64 route.
_FLOAT32_UNDERFLOW = float(np.finfo(np.float32).tiny / np.finfo(np.float32).eps)


def gram_limit(rows: int) -> float:
    """The largest squared norm a row may have for every Gram entry of ``rows`` rows to fit float64.

    ``float64 max / (8 rows)``: a centred row's squared norm is at most 4 times the largest
    squared norm, and the rules add up to ``rows`` distances (Krum's scores), so nothing computed
    from such a Gram matrix overflows. Rows beyond it count as faulty (:func:`sound_rows`).

    Examples
    --------
    >>> gram_limit(10) > 1e300
    True
    """
    return float(np.finfo(np.float64).max) / (8.0 * max(int(rows), 1))


def sound_rows(matrix: Any, xp: Any = np, *, rows: int | None = None) -> Any:
    """Boolean mask of the rows that are finite and whose squared norm is within :func:`gram_limit`.

    A row that fails is treated as faulty by the distance rules, like a row holding NaN or Inf.
    Finite float32 rows always pass (their squared norms fit float64 with room to spare), so for
    them this is :func:`~byzdask.kernels.arrays.finite_rows`; float64 rows cost one pass (the
    squared norms, which NaN and Inf propagate through).

    Parameters
    ----------
    matrix : (n, d) array
    rows : int, optional
        Rows of the Gram matrix to come (default n + 2: the inputs, the origin and one anchor).

    Examples
    --------
    >>> sound_rows(np.array([[1.0, 2.0], [1e200, 0.0], [np.nan, 0.0]])).tolist()
    [True, False, False]
    """
    from byzdask.kernels.arrays import finite_rows

    n = int(matrix.shape[0])
    if matrix.dtype.itemsize < 8:
        return finite_rows(matrix, xp)
    limit = gram_limit(n + 2 if rows is None else rows)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = xp.einsum("ij,ij->i", matrix, matrix)
    return xp.isfinite(sq) & (sq <= limit)


def gram_is_sound(gram: Any, dtype: Any, xp: Any = np) -> bool:
    """Whether a Gram matrix from :func:`gram_matrix` can be trusted (else use :func:`safe_gram`).

    False when an entry is NaN or Inf (a non-finite row, or products that overflowed the input
    dtype), when an entry is beyond :func:`gram_limit` (later sums could overflow), for float32
    inputs when every entry is so small that the products underflowed, and when the round-off of
    the largest squared norm exceeds a hundredth of the median pairwise squared distance (far rows
    pull the column mean, on which the matrix is centred, away from the others, whose distances
    are then lost in round-off).

    Examples
    --------
    >>> x = np.array([[1e20, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> gram_is_sound(gram_matrix(x), x.dtype), gram_is_sound(safe_gram(x), x.dtype)
    (False, True)
    """
    if not gram.size:
        return True
    if not isinstance(gram, np.ndarray) and hasattr(gram, "get"):
        gram = gram.get()  # one copy of the small matrix: a single host round trip
    gram = np.asarray(gram)
    diag = np.diagonal(gram)
    top = float(np.max(np.abs(gram)))
    if not np.isfinite(top) or top > gram_limit(gram.shape[0]):
        return False
    if np.dtype(dtype).itemsize < 8 and top < _FLOAT32_UNDERFLOW:
        return False
    # round-off of the largest entry against the distances that decide: the median pairwise one
    sq = diag[:, None] + diag[None, :] - 2.0 * gram
    pairs = sq[np.triu_indices(gram.shape[0], 1)]
    scale = float(np.median(pairs)) if pairs.size else float(np.median(diag))
    return float(diag.max()) * float(np.finfo(dtype).eps) <= 1e-2 * scale


def safe_gram(matrix: Any, extra: Any | None = None, xp: Any = np) -> Any:
    """The augmented Gram matrix (as :func:`gram_matrix`) from float64 copies of the column blocks,
    centred on their coordinate-wise median.

    The route for inputs whose products overflow (or underflow) their own dtype, or lose the
    near rows' distances to round-off: with rows within :func:`gram_limit` (see
    :func:`sound_rows`) no entry overflows, and the median, unlike the mean, stays among the
    majority of the rows whatever a minority holds, so their distances keep float64 precision.
    Any centre gives the same distances (the origin row is minus the centre). It costs one more
    pass over the input, in float64, and a median per column; it is taken only when
    :func:`gram_is_sound` says so.

    Examples
    --------
    >>> x = np.array([[2.0**70, 0.0], [0.0, 0.0]], dtype=np.float32)  # its square overflows float32
    >>> float(sq_distances(safe_gram(x))[0, 1]) == 2.0**140
    True
    """
    m, d = matrix.shape
    k = 0 if extra is None else extra.shape[0]
    rows = m + ORIGIN + k
    total = xp.zeros((rows, rows), dtype=xp.float64)
    if m == 0:
        return total
    for sl in kernel_blocks(d, n_rows=rows, itemsize=8, xp=xp):
        block = matrix[:, sl].astype(xp.float64)
        centre = xp.median(block, axis=0)
        z = xp.empty((rows, block.shape[1]), dtype=xp.float64)
        xp.subtract(block, centre, out=z[:m])
        xp.negative(centre, out=z[m])
        if k:
            xp.subtract(extra[:, sl].astype(xp.float64), centre, out=z[m + ORIGIN:])
        total += z @ z.T
    return total


def _host_gram(matrix: np.ndarray, extra: np.ndarray | None, blocks: list[slice] | None) -> np.ndarray:
    """numpy route of :func:`gram_matrix`: one reused buffer, a BLAS mean and product per block.

    Per column block: the column mean as one matrix-vector product with ``1/m`` (the block is
    read once from memory and stays in cache), the centred rows, the negated mean (the origin)
    and the centred ``extra`` rows written into one contiguous buffer z, then ``z @ z.T`` in the
    block's dtype (numpy calls BLAS ``syrk`` for it: half the flops of a general product, and
    the GIL released), added in float64. scipy's ``?syrk`` wrappers are not used: they hold
    the GIL, and called from several threads at once (thread workers) they were seen to hang.
    """
    m, d = matrix.shape
    k = 0 if extra is None else extra.shape[0]
    rows = m + ORIGIN + k
    dtype = matrix.dtype
    if blocks is None:
        blocks = column_blocks(d, n_rows=rows, itemsize=dtype.itemsize)
    width = max((sl.stop - sl.start for sl in blocks), default=0)
    total = np.zeros((rows, rows), dtype=np.float64)
    if width <= 0 or m == 0:
        return total
    buf = np.empty(rows * width, dtype=dtype)
    ones = np.full(m, 1.0 / m, dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows: the caller checks the result
        for sl in blocks:
            _add_block(total, matrix[:, sl], None if extra is None else extra[:, sl], buf, ones)
    return total


def _add_block(total: np.ndarray, block: np.ndarray, extra: np.ndarray | None, buf: np.ndarray,
               ones: np.ndarray) -> None:
    m, b = block.shape
    if b == 0:
        return
    rows = total.shape[0]
    z = buf[: rows * b].reshape(rows, b)  # contiguous whatever b
    mean = z[m]
    np.matmul(ones, block, out=mean)
    np.subtract(block, mean, out=z[:m])
    if extra is not None and extra.shape[0]:
        np.subtract(extra.astype(block.dtype, copy=False), mean, out=z[m + ORIGIN:])
    np.negative(mean, out=mean)
    total += z @ z.T  # exactly symmetric (numpy mirrors syrk's triangle)


def gram_partial(block: Any, extra: Any | None = None, xp: Any = np) -> Any:
    """Centred Gram partial of one column block, augmented with the origin and ``extra`` rows.

    Each column is centred on its own mean over the ``m`` input rows, so the partials of
    disjoint column blocks add up to the Gram matrix of the whole matrix.

    Parameters
    ----------
    block : (m, b) array
    extra : (k, b) array, optional
    xp : numpy or cupy

    Returns
    -------
    (m + 1 + k, m + 1 + k) float64 array
        Exactly symmetric.

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> g = gram_partial(x[:, :1]) + gram_partial(x[:, 1:])
    >>> np.allclose(g, gram_matrix(x))
    True
    """
    if xp is np and block.dtype in _HOST_DTYPES:
        return _host_gram(block, extra, None)
    m, b = block.shape
    k = 0 if extra is None else extra.shape[0]
    z = xp.empty((m + 1 + k, b), dtype=block.dtype)
    mean = block.mean(axis=0)
    xp.subtract(block, mean, out=z[:m])
    xp.negative(mean, out=z[m])
    if k:
        xp.subtract(extra.astype(block.dtype, copy=False), mean, out=z[m + 1:])
    g = z @ z.T
    return g.astype(xp.float64)


def gram_matrix(matrix: Any, extra: Any | None = None, xp: Any = np, *, blocks: list[slice] | None = None) -> Any:
    """Augmented centred Gram matrix of ``matrix`` (m, d), summed over cache-sized column blocks.

    A row holding NaN or Inf makes its column means non-finite, hence every entry of the result:
    callers detect non-finite inputs by checking this small matrix.

    Cost: one read of ``matrix`` from memory; per block a matrix-vector product (the mean), a
    centred copy into a reused buffer and a symmetric rank-b update (about m^2 b flops).

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> g = gram_matrix(x)
    >>> float(sq_distances(g)[0, 1]), float(sq_distances(g)[1, 2])  # |x0 - x1|^2, |x1 - origin|^2
    (25.0, 25.0)
    """
    m, d = matrix.shape
    if xp is np and matrix.dtype in _HOST_DTYPES:
        return _host_gram(matrix, extra, blocks)
    if blocks is None:
        rows = m + 1 + (0 if extra is None else extra.shape[0])
        blocks = kernel_blocks(d, n_rows=rows, itemsize=matrix.dtype.itemsize, xp=xp)
    total = None
    for sl in blocks:
        part = gram_partial(matrix[:, sl], None if extra is None else extra[:, sl], xp)
        total = part if total is None else total + part
    return total


def trusted_gram(matrix: Any, extra: Any | None = None, xp: Any = np) -> tuple[Any, np.dtype]:
    """:func:`gram_matrix` of finite rows, or :func:`safe_gram` when :func:`gram_is_sound` says no.

    Returns the matrix and the dtype whose round-off its entries carry (for tie tolerances).

    Examples
    --------
    >>> x = np.array([[1e20, 0.0], [0.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    >>> g, dtype = trusted_gram(x)
    >>> dtype, float(sq_distances(g)[1, 2])
    (dtype('float64'), 1.0)
    """
    gram = gram_matrix(matrix, extra, xp)
    if gram_is_sound(gram, matrix.dtype, xp):
        return gram, np.dtype(matrix.dtype)
    return safe_gram(matrix, extra, xp), np.dtype(np.float64)


def sq_distances(gram: Any, xp: Any = np) -> Any:
    """Squared Euclidean distances between all rows of a Gram matrix, clamped at zero."""
    diag = xp.diagonal(gram)
    dist = diag[:, None] + diag[None, :] - 2.0 * gram
    xp.maximum(dist, 0.0, out=dist)
    xp.fill_diagonal(dist, 0.0)
    return dist


def combine(matrix: Any, weights: Any, extra: Any | None = None, xp: Any = np) -> Any:
    """Output ``sum_i w_i row_i`` for augmented weights (inputs, origin, extra rows).

    Examples
    --------
    >>> combine(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, 0.5, 0.0]))
    array([2., 3.])
    """
    m = matrix.shape[0]
    w = xp.asarray(weights)
    out = w[:m].astype(matrix.dtype) @ matrix
    if extra is not None and extra.shape[0]:
        out = out + w[m + ORIGIN:].astype(matrix.dtype) @ extra.astype(matrix.dtype, copy=False)
    return out
