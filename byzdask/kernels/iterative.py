"""Iterative rules in coefficient space: Weiszfeld, centered clipping and the covariance filter.

Each rule here keeps its iterate in the affine hull of the rows of an augmented centred Gram
matrix ``G`` (see :mod:`byzdask.kernels.gram`): ``z = sum_j w_j r_j`` with ``sum_j w_j = 1``.
The distance of row ``i`` to the iterate is then

.. math::

    \\|r_i - z\\|^2 = G_{ii} - 2 (G w)_i + w^\\top G w,

so an iteration costs O(N^2) for N = m + 1 + k rows, never O(N d); the caller builds ``G`` once
(one pass over the data) and outputs ``sum_j w_j row_j`` once (one more pass).

All functions take and return numpy float64 arrays on the host: the n x n work is far too small
for an accelerator (kernel launches would cost more than the arithmetic), so a Gram matrix on a
GPU is copied to the host first (:func:`to_host`), and the weights copied back by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.kernels.blocks import kernel_blocks
from byzdask.kernels.coordinate import coordinate_median as block_median

__all__ = [
    "anchor_weights",
    "centered_clipping",
    "coordinate_median",
    "covariance_filter",
    "iterate_distances",
    "mean_weights",
    "to_host",
    "weiszfeld",
]



def to_host(gram: Any) -> np.ndarray:
    """A float64 numpy copy (or view) of a numpy or cupy matrix."""
    if not isinstance(gram, np.ndarray) and hasattr(gram, "get"):
        gram = gram.get()
    return np.asarray(gram, dtype=np.float64)


def anchor_weights(size: int, index: int) -> np.ndarray:
    """Weights selecting one row: the iterate starts at row ``index`` (the origin, an anchor).

    Examples
    --------
    >>> anchor_weights(4, 2).tolist()
    [0.0, 0.0, 1.0, 0.0]
    """
    w = np.zeros(size)
    w[index] = 1.0
    return w


def mean_weights(size: int, m: int) -> np.ndarray:
    """Weights of the mean of the first ``m`` rows (the inputs).

    Examples
    --------
    >>> mean_weights(3, 2).tolist()
    [0.5, 0.5, 0.0]
    """
    w = np.zeros(size)
    w[:m] = 1.0 / m
    return w


def iterate_distances(gram: np.ndarray, weights: np.ndarray, rows: int) -> np.ndarray:
    """Euclidean distances of the first ``rows`` rows to the iterate ``z = sum_j w_j r_j``.

    Computed as ``sqrt(max(0, G_ii - 2 (G w)_i + w^T G w))``: one matrix-vector product.

    Examples
    --------
    >>> from byzdask.kernels.gram import gram_matrix
    >>> g = gram_matrix(np.array([[0.0, 0.0], [3.0, 4.0]]))
    >>> iterate_distances(g, np.array([0.5, 0.5, 0.0]), 2).tolist()
    [2.5, 2.5]
    """
    gw = gram @ weights
    sq = np.diagonal(gram)[:rows] - 2.0 * gw[:rows] + float(weights @ gw)
    return np.sqrt(np.maximum(sq, 0.0))


def _norm(gram: np.ndarray, coeffs: np.ndarray) -> float:
    """``||sum_j c_j r_j||`` for coefficients that sum to zero (a difference of two iterates)."""
    return float(np.sqrt(max(float(coeffs @ gram @ coeffs), 0.0)))


def weiszfeld(gram: Any, m: int, start: np.ndarray, *, tol: float, max_iter: int,
              eps: float) -> tuple[np.ndarray, int]:
    """Smoothed Weiszfeld iterations for the geometric median of the first ``m`` rows.

    One iteration maps the iterate ``z`` to

    .. math::

        z' = \\frac{\\sum_{i<m} x_i / \\max(\\|x_i - z\\|, \\epsilon)}{\\sum_{i<m} 1 / \\max(\\|x_i - z\\|, \\epsilon)}.

    Parameters
    ----------
    gram : (N, N) array
        Augmented centred Gram matrix; rows ``0..m-1`` are the inputs.
    m : int
        Number of input rows.
    start : (N,) array
        Weights of the starting point (summing to one).
    tol : float
        Stop after the first iteration whose step ``||z' - z||`` is at most ``tol`` times the
        median distance ``median_i ||x_i - z||`` of the inputs to ``z`` (the median, so that far
        outliers do not loosen the test); ``tol = 0`` runs exactly ``max_iter`` iterations.
    max_iter : int
        Largest number of iterations (0 returns ``start``).
    eps : float
        Floor on the distances (absolute), which smooths the objective near an input.

    Returns
    -------
    weights : (N,) array
        Weights of the final iterate (on the input rows, unless ``max_iter`` is 0).
    iterations : int
        Iterations run.

    Examples
    --------
    >>> from byzdask.kernels.gram import gram_matrix
    >>> x = np.array([[1.0, 1.0], [3.0, 1.0], [1.0, 3.0], [3.0, 3.0]])
    >>> g = to_host(gram_matrix(x))  # rows: x, then the origin (index 4)
    >>> w, _ = weiszfeld(g, 4, anchor_weights(5, 4), tol=1e-9, max_iter=100, eps=1e-12)
    >>> np.round(w[:4] @ x, 6).tolist()
    [2.0, 2.0]
    """
    gram = to_host(gram)
    w = np.array(start, dtype=np.float64)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        dist = iterate_distances(gram, w, m)
        inv = 1.0 / np.maximum(dist, eps)
        new = np.zeros_like(w)
        new[:m] = inv / inv.sum()
        if tol > 0 and _norm(gram, new - w) <= tol * float(np.median(dist)):
            return new, iterations
        w = new
    return w, iterations


def centered_clipping(gram: Any, m: int, start: np.ndarray, *, c_tau: float, iterations: int,
                      eps: float) -> np.ndarray:
    """Centered clipping iterations on the first ``m`` rows.

    .. math::

        v' = v + \\frac{1}{m}\\sum_{i<m} (x_i - v)\\,\\min\\left(1, \\frac{c_\\tau}{\\max(\\|x_i - v\\|, \\epsilon)}\\right)

    In weights: ``w' = (1 - mean(s)) w + s / m`` on the input rows, with ``s`` the clipping
    factors, so the weights keep summing to one.

    Examples
    --------
    >>> from byzdask.kernels.gram import gram_matrix
    >>> x = np.array([[0.0], [1.0], [100.0]])
    >>> w = centered_clipping(to_host(gram_matrix(x)), 3, mean_weights(4, 3), c_tau=1.0, iterations=1, eps=1e-12)
    >>> round(float(w[:3] @ x[:, 0]), 6)  # from 101/3: two moves of 1 down, one of 1 up
    33.333333
    """
    gram = to_host(gram)
    w = np.array(start, dtype=np.float64)
    for _ in range(iterations):
        dist = iterate_distances(gram, w, m)
        scale = np.minimum(1.0, c_tau / np.maximum(dist, eps))
        w = w * (1.0 - float(scale.mean()))
        w[:m] += scale / m
    return w


def _top_eigenpair(b: np.ndarray, power_iters: int | None, rng: np.random.Generator | None,
                   total: float) -> tuple[float, np.ndarray]:
    """Top eigenpair of the symmetric PSD ``b`` (the covariance in coefficient space).

    Exact (LAPACK ``eigh``) when ``power_iters`` is None. Otherwise ``power_iters`` power steps
    from a seeded Gaussian start, normalised so that the d-space vector ``v`` it stands for has unit
    norm (``||v||^2 = total * u^T b u``); the eigenvalue is then ``||Sigma v||`` of the last step,
    as in the power method of ByzFL. Returns ``(lambda, u)`` with ``total * u^T b u = 1`` when
    ``lambda > 0``.
    """
    if power_iters is None:
        values, vectors = np.linalg.eigh(b)
        lam = float(values[-1])
        u = vectors[:, -1]
        return lam, (u / np.sqrt(total * lam) if lam > 0 else u)
    u = rng.standard_normal(b.shape[0])
    quad = float(u @ b @ u)
    if quad <= 0:
        return 0.0, u
    u = u / np.sqrt(total * quad)
    lam = 0.0
    for _ in range(power_iters):
        t = b @ u
        lam = float(np.sqrt(max(total * float(t @ b @ t), 0.0)))
        if lam <= 0:
            return 0.0, u
        u = t / lam
    return lam, u


def covariance_filter(gram: Any, m: int, f: int, *, power_iters: int | None = None,
                      seed: int = 0) -> np.ndarray:
    """CAF, the covariance-bound agnostic filter, on the first ``m`` rows; returns weights.

    Weights ``c = 1``; while ``sum c > m - 2f``: take the weighted mean ``mu_c``, the top
    eigenpair ``(lambda, v)`` of ``Sigma_c = sum_i c_i (x_i - mu_c)(x_i - mu_c)^T / sum c``,
    ``tau_i = ((x_i - mu_c) . v)^2`` and ``c_i <- c_i (1 - tau_i / max_{j: c_j > 0} tau_j)``.
    Output the ``mu_c`` of the smallest ``lambda`` met (the first on ties).

    In coefficient space, with ``a = c / sum c``, ``P = I - 1 a^T`` and ``K = P G P^T`` (the Gram of
    the ``x_i - mu_c``), the non-zero spectrum of ``Sigma_c`` is that of
    ``B = C^{1/2} K C^{1/2} / sum c`` (``C = diag(c)``); an eigenvector ``u`` of ``B`` stands for
    ``v = Y^T C^{1/2} u`` and the projections are ``Y v = K C^{1/2} u``. The loop ends after at most
    2f rounds (each one zeroes the weight of at least one input), or when the covariance vanishes.

    Parameters
    ----------
    gram : (N, N) array
    m : int
    f : int
        Number of rows to filter out; needs ``m > 2f``.
    power_iters : int, optional
        None (default): exact top eigenpair of ``B``. An integer k: k power steps from a start
        drawn by ``numpy.random.default_rng(seed)`` (one draw per round).
    seed : int

    Returns
    -------
    (N,) array
        Weights of the chosen mean (zero outside the input rows).

    Examples
    --------
    >>> from byzdask.kernels.gram import gram_matrix
    >>> x = np.array([[0.0], [1.0], [2.0], [50.0]])
    >>> covariance_filter(to_host(gram_matrix(x)), 4, 1).round(2).tolist()  # the outlier gets 0
    [0.33, 0.33, 0.34, 0.0, 0.0]
    """
    gram = to_host(gram)
    g = gram[:m, :m]
    rng = None if power_iters is None else np.random.default_rng(seed)
    c = np.ones(m)
    total = float(m)
    best_lam, best = np.inf, c / total
    while total > m - 2 * f:
        a = c / total
        ga = g @ a
        k = g - ga[:, None] - ga[None, :] + float(a @ ga)
        root = np.sqrt(c)
        b = root[:, None] * k * root[None, :] / total
        lam, u = _top_eigenpair(b, power_iters, rng, total)
        if lam < best_lam:
            best_lam, best = lam, a
        if lam <= 0:
            break
        tau = (k @ (root * u)) ** 2
        tau_max = float(tau[c > 0].max())
        if tau_max <= 0:
            break
        c = np.maximum(c * (1.0 - tau / tau_max), 0.0)
        total = float(c.sum())
    out = np.zeros(gram.shape[0])
    out[:m] = best
    return out


def coordinate_median(matrix: Any, xp: Any = np) -> Any:
    """The coordinate-wise median of an (m, d) matrix (mean of the two middle values for even m).

    Used as the starting anchor of the iterative rules with ``init="median"``; it is not in the
    span of the inputs, so the rules append it as an extra Gram row. Computed over cache-sized
    column blocks by the selection kernel of the coordinate-wise rules
    (:func:`byzdask.kernels.coordinate.coordinate_median`).

    Examples
    --------
    >>> coordinate_median(np.array([[1.0, 5.0], [2.0, 7.0], [4.0, 6.0], [9.0, 8.0]])).tolist()
    [3.0, 6.5]
    """
    m, d = matrix.shape
    out = xp.empty(d, dtype=matrix.dtype)
    for sl in kernel_blocks(d, n_rows=m, itemsize=matrix.dtype.itemsize, xp=xp):
        out[sl] = block_median(matrix[:, sl], xp)
    return out
