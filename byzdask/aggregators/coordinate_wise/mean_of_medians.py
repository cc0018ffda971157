"""The mean around the median (MeaMed)."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import Aggregator, check_f
from byzdask.kernels.coordinate import coordinate_mean_of_medians

__all__ = ["MeanOfMedians"]


class MeanOfMedians(Aggregator):
    r"""Per coordinate, the mean of the n - f values closest to the median.

    .. math:: y_k = \frac{1}{n - f} \sum_{i \in S_k} x_{ik},

    where :math:`S_k` holds the n - f indices i with the smallest :math:`|x_{ik} - m_k|`,
    :math:`m_k` the true median of coordinate k (the mean of the two middle values for even n).
    Ties in distance keep the smaller value (a rule on values, so the result does not depend on
    the order of the inputs).

    Preconditions: ``n > 2f`` (:meth:`max_f` is ``(n - 1) // 2``; fewer inputs raise
    :class:`~byzdask.errors.ToleranceError`). Input vectors that hold NaN or Inf count as
    Byzantine: up to f of them are dropped, and the rule runs with f reduced by their number.

    Cost: one pruned selection network for the median and the f values at each end of every
    coordinate, then 5 f vectorised row operations (the n - f closest form a window of the sorted
    values: see :func:`~byzdask.kernels.coordinate.coordinate_mean_of_medians`); large n use one
    transpose and a row-wise sort instead.

    Parameters
    ----------
    f : int
        The number of values left out of each coordinate's mean (>= 0).

    References
    ----------
    .. [1] C. Xie, O. Koyejo, I. Gupta, "Generalized Byzantine-tolerant SGD", arXiv:1802.10116,
           2018 ("mean around median").

    Examples
    --------
    >>> import numpy as np
    >>> rule = MeanOfMedians(f=1)
    >>> # median 2.5; the 3 closest values to it are 1, 2 and 3 (|1 - 2.5| = |4 - 2.5|: the smaller kept)
    >>> rule.aggregate(np.array([[1.0], [2.0], [3.0], [4.0]]))
    array([2.])
    >>> rule.max_f(5)
    2
    """

    name = "meamed"
    kind = "columnwise"

    def __init__(self, f: int, *, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"f": self.f}


    def column_kernel(self, block: Any, f: int | None, xp: Any) -> Any:
        return coordinate_mean_of_medians(block, int(f), xp)
