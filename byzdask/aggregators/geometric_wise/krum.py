"""Krum and Multi-Krum: keep the vectors whose nearest neighbours are closest."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import Aggregator, check_f
from byzdask.errors import ConfigurationError, ToleranceError
from byzdask.kernels.selection import (
    host_distances,
    k_nearest_sums,
    mean_weights,
    smallest_indices,
    tie_tolerance,
)

__all__ = ["Krum", "MultiKrum", "krum_scores"]


def krum_scores(gram: Any, m: int, f: int) -> Any:
    """Krum scores of the first ``m`` rows of an augmented Gram matrix (numpy float64).

    ``score_i = sum of the m - f - 1 smallest ||x_i - x_j||^2 over j != i``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> krum_scores(x @ x.T, 3, 0).tolist()
    [10.0, 5.0, 13.0]
    """
    dist = host_distances(gram)[:m, :m]
    return k_nearest_sums(dist, m - f - 1)


class MultiKrum(Aggregator):
    r"""Multi-Krum: the mean of the q vectors of lowest Krum score.

    .. math::

        s_i = \sum_{j \in N_i} \|x_i - x_j\|^2, \qquad
        \mathrm{MultiKrum}_{f,q}(x_1, \dots, x_n) = \frac{1}{q} \sum_{i \in Q} x_i

    where :math:`N_i` holds the n - f - 1 vectors nearest to :math:`x_i` (other than itself)
    and Q the q indices of lowest score, ties going to the lower index.

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.
    q : int, optional
        Number of vectors averaged, 1 <= q <= n - f; defaults to n - f (checked at the call).

    Notes
    -----
    Preconditions: n >= 2f + 3, i.e. :meth:`max_f` is (n - 3) // 2 (Blanchard et al.'s
    condition for Krum's guarantee). Up to f vectors holding NaN or Inf are dropped first, and f
    and n are lowered together (the number of neighbours n - f - 1 does not change).

    Cost: one centred Gram matrix (O(n^2 d), one pass over the input), O(n^2) selection, and one
    weighted sum for the output.

    References
    ----------
    .. [1] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
           adversaries: Byzantine tolerant gradient descent", NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [0.1], [0.2], [0.3], [9.0]])
    >>> MultiKrum(f=1, q=2).aggregate(x).round(3)
    array([0.15])
    """

    name = "multikrum"
    kind = "gram"

    def __init__(self, f: int, q: int | None = None, *, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        if q is not None and (isinstance(q, bool) or not isinstance(q, int) or q < 1):
            raise ConfigurationError(f"q must be a positive integer or None, got {q!r}")
        self.q = q
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"f": self.f, "q": q}

    def max_f(self, n: int) -> int:
        """n >= 2f + 3."""
        return max(0, (int(n) - 3) // 2)

    def min_n(self, f: int) -> int:
        """2f + 3."""
        return 2 * int(f) + 3

    def check_n(self, n: int) -> None:
        if n < self.min_n(self.f):  # also for f = 0: Krum scores need n - f - 1 >= 2 neighbours
            raise ToleranceError(
                f"{type(self).__name__} needs n >= {self.min_n(self.f)} for f={self.f}; got n={n} "
                + (f"(with n={n} it tolerates at most f={self.max_f(n)})" if n >= 3 else "(n >= 2f + 3 even for f=0)")
            )
        if self.q is not None and self.q > n - self.f:
            raise ToleranceError(
                f"{type(self).__name__} averages q={self.q} vectors but only n - f = {n - self.f} may be "
                f"kept (n={n}, f={self.f}); expected 1 <= q <= {n - self.f}"
            )

    def _count(self, m: int, f: int) -> int:
        return m - f if self.q is None else self.q

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        dist = host_distances(gram)[:m, :m]
        scores = k_nearest_sums(dist, m - f - 1)
        tol = tie_tolerance(dist) * (m - f - 1)
        return mean_weights(gram.shape[0], smallest_indices(scores, self._count(m, f), tol=tol))


class Krum(MultiKrum):
    r"""Krum: the input vector of lowest Krum score.

    .. math::

        \mathrm{Krum}_f(x_1, \dots, x_n) = x_{i^\star}, \qquad
        i^\star = \min \operatorname{arg\,min}_i \sum_{j \in N_i} \|x_i - x_j\|^2

    with :math:`N_i` the n - f - 1 vectors nearest to :math:`x_i` (other than itself); ties go
    to the lower index. It is :class:`MultiKrum` with q = 1.

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.

    Notes
    -----
    Preconditions: n >= 2f + 3 (:meth:`max_f` is (n - 3) // 2). Non-finite vectors (at most f)
    are dropped first. Cost: one centred Gram matrix, O(n^2) selection, one row copied out.

    References
    ----------
    .. [1] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
           adversaries: Byzantine tolerant gradient descent", NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.2, 0.2], [50.0, 50.0]])
    >>> Krum(f=1).aggregate(x)
    array([0.2, 0.2])
    """

    name = "krum"

    def __init__(self, f: int, *, chunk_size: int | None = None) -> None:
        super().__init__(f, q=1, chunk_size=chunk_size)
        self._repr_params = {"f": self.f}
