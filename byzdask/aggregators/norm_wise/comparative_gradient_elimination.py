"""Comparative gradient elimination (CGE): average the vectors of smallest norm."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import Aggregator, check_f
from byzdask.kernels.selection import (
    host_distances,
    mean_weights,
    smallest_indices,
    tie_tolerance,
)

__all__ = ["ComparativeGradientElimination"]


class ComparativeGradientElimination(Aggregator):
    r"""Mean of the n - f vectors of smallest Euclidean norm.

    .. math::

        \mathrm{CGE}_f(x_1, \dots, x_n) = \frac{1}{n - f} \sum_{j = 1}^{n - f} x_{\sigma(j)},
        \qquad \|x_{\sigma(1)}\| \le \dots \le \|x_{\sigma(n)}\|

    with ties going to the lower index. Norms are the raw (uncentred) norms; they are read from
    the augmented Gram matrix as each row's distance to the origin row, which keeps the
    precision of the centred product.

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.

    Notes
    -----
    Preconditions: n > 2f (:meth:`max_f` is (n - 1) // 2). The rule itself is defined for any
    f < n; the convergence guarantee of Gupta et al. holds for f / n below a bound set by the
    cost functions' smoothness and strong convexity, always below 1/2, so byzdask refuses
    n <= 2f. Vectors holding NaN or Inf (at most f) are dropped first, n and f lowered together.

    Cost: one centred Gram matrix (O(n^2 d), one pass over the input), O(n log n) selection,
    and one weighted sum for the output.

    References
    ----------
    .. [1] N. Gupta, S. Liu, N. H. Vaidya, "Byzantine fault-tolerant distributed machine
           learning with norm-based comparative gradient elimination", DSN Workshops 2021
           (arXiv:2008.04699).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [30.0, 40.0]])
    >>> ComparativeGradientElimination(f=1).aggregate(x)
    array([0.5, 1. ])
    """

    name = "cge"
    kind = "gram"

    def __init__(self, f: int, *, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"f": self.f}

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        dist = host_distances(gram)
        norms = dist[m, :m]  # squared distance of each row to the origin row
        tol = tie_tolerance(dist, list(range(m + 1)))
        return mean_weights(gram.shape[0], smallest_indices(norms, m - f, tol=tol))
