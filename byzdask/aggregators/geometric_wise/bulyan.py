"""Bulyan: iterated Krum, then a coordinate-wise mean around the median of the chosen vectors."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import Aggregator, Prepared, check_f
from byzdask.kernels.filters import closest_to_median_mean, iterated_krum
from byzdask.kernels.gram import trusted_gram
from byzdask.kernels.selection import host_distances

__all__ = ["Bulyan"]


class Bulyan(Aggregator):
    r"""Bulyan: choose :math:`\theta = n - 2f` vectors by iterated Krum, then per coordinate
    average the :math:`\beta = \theta - 2f` chosen values closest to their median.

    Selection (Algorithm 1 of [1]_, with Krum as the base rule): starting from
    :math:`R = \{1, \dots, n\}` and :math:`S = \emptyset`, repeat :math:`\theta` times

    .. math::

        i^\star = \operatorname{arg\,min}_{i \in R} \sum_{j \in N_R(i)} \|x_i - x_j\|^2, \qquad
        R \leftarrow R \setminus \{i^\star\}, \quad S \leftarrow S \cup \{i^\star\},

    where :math:`N_R(i)` holds the :math:`|R| - f - 1` rows of R nearest to :math:`x_i` (the
    neighbour count of :class:`~byzdask.aggregators.Krum`; the paper's Krum uses
    :math:`|R| - f - 2`); ties go to the lower index. Aggregation (eq. of Section 4 of [1]_):

    .. math::

        y_k = \frac{1}{\beta} \sum_{i \in M_k} x_{ik},

    with :math:`M_k` the :math:`\beta` indices of S whose coordinate k is closest to the median
    of :math:`\{x_{ik} : i \in S\}` (the mean of the two middle values when :math:`\theta` is
    even); ties in distance keep the smaller value, as :class:`~byzdask.aggregators.MeanOfMedians`.

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.

    Notes
    -----
    Preconditions: n >= 4f + 3 (:meth:`max_f` is (n - 3) // 4), the condition of [1]_. Up to f
    vectors holding NaN or Inf are dropped first, and f and n are lowered together (n >= 4f + 3
    still holds).

    Cost: one centred Gram matrix (O(n^2 d), one pass over the input), :math:`\theta` Krum
    selections on the n x n distances (O(n^3) in all, tiny next to the Gram matrix), a copy of
    the :math:`\theta` chosen rows, and a coordinate-wise selection over them in cache-sized column
    blocks (the selection network of MeanOfMedians when :math:`\beta > \theta / 2`, i.e. f = 0 or
    1 at the smallest n; otherwise a per-column sort, O(:math:`\theta \log \theta`) per coordinate).

    References
    ----------
    .. [1] E. M. El Mhamdi, R. Guerraoui, S. Rouault, "The hidden vulnerability of distributed
           learning in Byzantium", ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 1.0], [0.1, 1.1], [0.2, 0.9], [0.3, 1.0], [0.1, 1.0], [0.2, 1.2],
    ...               [9.0, -9.0]])
    >>> Bulyan(f=1).aggregate(x)  # theta = 5 chosen, beta = 3 values kept per coordinate
    array([0.06666667, 0.96666667])
    >>> Bulyan(f=1).max_f(7), Bulyan(f=2).min_n(2)
    (1, 11)
    """

    name = "bulyan"
    kind = "direct"
    uses_distances = True

    def __init__(self, f: int) -> None:
        self.f = check_f(f)
        self._repr_params = {"f": self.f}

    def max_f(self, n: int) -> int:
        """n >= 4f + 3."""
        return max(0, (int(n) - 3) // 4)

    def aggregate_matrix(self, prep: Prepared) -> Any:
        xp, x, f = prep.batch.xp, prep.matrix, int(prep.f)
        m = x.shape[0]
        theta = m - 2 * f
        dist = host_distances(trusted_gram(x, None, xp)[0])[:m, :m]
        chosen = sorted(iterated_krum(dist, f, theta).tolist())
        return closest_to_median_mean(x[chosen], theta - 2 * f, xp)
