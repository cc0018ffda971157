"""SMEA: the mean of the subset whose covariance has the smallest top eigenvalue."""

from __future__ import annotations

from typing import Any

import math

from byzdask import config
from byzdask.aggregators.base import Aggregator, check_f
from byzdask.errors import ConfigurationError
from byzdask.kernels.selection import (
    host_distances,
    mean_weights,
    min_top_eigenvalue_subset,
    normalised,
    tie_tolerance,
    to_host,
)

__all__ = ["SMEA"]


class SMEA(Aggregator):
    r"""Smallest maximum eigenvalue averaging: the mean of the most concentrated (n - f)-subset.

    .. math::

        S^\star = \operatorname{arg\,min}_{|S| = n - f}
            \lambda_{\max}\Big(\frac{1}{|S|} \sum_{i \in S} (x_i - \mu_S)(x_i - \mu_S)^T\Big),
        \qquad \mathrm{SMEA}_f(x_1, \dots, x_n) = \mu_{S^\star}

    with :math:`\mu_S` the mean of S. Ties go to the subset first in lexicographic order.

    The covariance is normalised by 1 / |S| (the population covariance, as ByzPy does); every
    candidate subset has |S| = n - f, so the normalisation never changes the chosen subset. Its top
    eigenvalue is that of the centred |S| x |S| Gram matrix :math:`H G_S H / |S|`
    (H = I - 11^T / |S|): the rule runs in Gram space, never in d-space per subset.

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.

    Notes
    -----
    Preconditions: n > 2f (:meth:`max_f` is (n - 1) // 2), and at most
    ``byzdask.kernels.smea-max-subsets`` (dask.config, default 2,000,000) candidate subsets
    C(n, f), else :class:`~byzdask.errors.ConfigurationError` before any work. Vectors holding NaN or Inf (at most f)
    are dropped first, n and f lowered together.

    Exact (not the randomized power step of some implementations): a branch-and-bound search over
    subsets (:func:`byzdask.kernels.selection.min_top_eigenvalue_subset`) that prunes with lower
    bounds valid because adding a vector never shrinks the scatter matrix. Cost: one centred Gram
    matrix (O(n^2 d), one pass over the input), one weighted sum, and a search whose node count is
    exponential in f in the worst case, each node an O(n^3) symmetric eigenproblem at most.
    On isotropic Gaussian inputs (the hard case: every subset has about the same spread) at
    n = 32 the search takes about 8, 44, 1,400 and 8,400 eigendecompositions of 31 x 31 matrices
    for f = 1, 2, 4, 6 (roughly 20 ms, 40 ms, 0.2-0.8 s, 1.5-5 s on one loaded core); a few far
    outliers are cut at once by the pair bound.

    References
    ----------
    .. [1] Y. Allouah, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "On the
           privacy-robustness-utility trilemma in distributed learning", ICML 2023.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [8.0, 8.0]])
    >>> SMEA(f=1).aggregate(x)
    array([0.5, 0.5])
    """

    name = "smea"
    kind = "gram"

    def __init__(self, f: int, *, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"f": self.f}

    def check_n(self, n: int) -> None:
        """n > 2f, and at most ``byzdask.kernels.smea-max-subsets`` candidate subsets C(n, f)."""
        super().check_n(n)
        budget = int(config.get("kernels.smea-max-subsets"))
        count = math.comb(int(n), self.f)
        if count > budget:
            raise ConfigurationError(
                f"SMEA with n={n}, f={self.f} searches among C({n}, {self.f}) = {count:.3g} subsets, more than "
                f"byzdask.kernels.smea-max-subsets = {budget}; lower f, use MDA or NNM + a coordinate-wise rule, "
                "or raise the budget with dask.config.set({'byzdask.kernels.smea-max-subsets': ...})"
            )

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        gram = normalised(gram)  # the same subset, and no entry near float64's limits for LAPACK
        tol = tie_tolerance(host_distances(gram)[:m, :m]) * (m - f)  # scatter eigenvalues scale with |S|
        subset, _ = min_top_eigenvalue_subset(to_host(gram)[:m, :m], m - f, tol=tol)
        return mean_weights(gram.shape[0], subset)
