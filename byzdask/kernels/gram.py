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

from byzdask.kernels.blocks import column_blocks

__all__ = ["gram_partial", "gram_matrix", "combine", "sq_distances", "ORIGIN"]

#: Number of anchor rows always appended after the inputs (the origin).
ORIGIN = 1


def gram_partial(block: Any, extra: Any | None = None, xp: Any = np) -> Any:
    """Centred Gram partial of one column block, augmented with the origin and ``extra`` rows.

    Parameters
    ----------
    block : (m, b) array
    extra : (k, b) array, optional
    xp : numpy or cupy

    Returns
    -------
    (m + 1 + k, m + 1 + k) float64 array
    """
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

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> g = gram_matrix(x)
    >>> float(sq_distances(g)[0, 1]), float(sq_distances(g)[1, 2])  # |x0 - x1|^2, |x1 - origin|^2
    (25.0, 25.0)
    """
    m, d = matrix.shape
    if blocks is None:
        rows = m + 1 + (0 if extra is None else extra.shape[0])
        blocks = column_blocks(d, n_rows=rows, itemsize=matrix.dtype.itemsize)
    total = None
    for sl in blocks:
        part = gram_partial(matrix[:, sl], None if extra is None else extra[:, sl], xp)
        total = part if total is None else total + part
    return total


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
