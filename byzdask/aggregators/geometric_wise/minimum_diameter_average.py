"""Minimum-diameter averaging (MDA): the mean of the tightest subset."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import Aggregator, check_f
from byzdask.kernels.selection import (
    host_distances,
    mean_weights,
    min_diameter_subset,
    tie_tolerance,
)

__all__ = ["MinimumDiameterAveraging"]


class MinimumDiameterAveraging(Aggregator):
    r"""Mean of the (n - f)-subset of smallest diameter.

    .. math::

        S^\star = \operatorname{arg\,min}_{|S| = n - f} \max_{i, j \in S} \|x_i - x_j\|,
        \qquad \mathrm{MDA}_f(x_1, \dots, x_n) = \frac{1}{n - f} \sum_{i \in S^\star} x_i

    Ties go to the subset that comes first in lexicographic order of sorted indices (the order of
    :func:`itertools.combinations`).

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.

    Notes
    -----
    Preconditions: n > 2f (:meth:`max_f` is (n - 1) // 2). Vectors holding NaN or Inf (at most f)
    are dropped first, n and f lowered together.

    Exact, in Gram space: one centred Gram matrix gives all pairwise distances, then an exact
    branch-and-bound search over the n x n distance matrix
    (:func:`byzdask.kernels.selection.min_diameter_subset`) replaces the enumeration of the
    C(n, f) subsets. Cost: O(n^2 d) for the Gram matrix (one pass over the input), one weighted
    sum for the output, and a search that is exponential in the worst case (the problem contains
    k-clique) but bounded by about 2**f small steps, measured at 1-15 ms for n = 32 and any
    f <= 15, and 5-35 ms for n = 64 and any f <= 31, on isotropic Gaussian inputs (all distances
    nearly equal: the hard case).

    References
    ----------
    .. [1] E. M. El Mhamdi, R. Guerraoui, S. Rouault, "Distributed momentum for
           Byzantine-resilient stochastic gradient descent", ICLR 2021 (MDA for Byzantine
           learning).

    .. [2] P. J. Rousseeuw, "Multivariate estimation with high breakdown point", 1985 (the
           minimum-diameter idea).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [1.5], [10.0]])
    >>> MinimumDiameterAveraging(f=1).aggregate(x).round(4)
    array([0.8333])
    """

    name = "mda"
    kind = "gram"

    def __init__(self, f: int, *, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"f": self.f}

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        dist = host_distances(gram)[:m, :m]
        subset, _ = min_diameter_subset(dist, m - f, tol=tie_tolerance(dist))
        return mean_weights(gram.shape[0], subset)
