"""The coordinate-wise median."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import Aggregator
from byzdask.kernels.coordinate import coordinate_median

__all__ = ["CoordinateWiseMedian"]


class CoordinateWiseMedian(Aggregator):
    r"""The median of each coordinate: :math:`y_k = \operatorname{median}(x_{1k}, \dots, x_{nk})`.

    For even n, the mean of the two middle values (the true median, as ``numpy.median``; some
    libraries take the lower one instead).

    Preconditions: it has no f parameter; it tolerates up to ``(n - 1) // 2`` Byzantine inputs
    (:meth:`max_f`). Input vectors that hold NaN or Inf count as Byzantine and are dropped, at
    most ``(n - 1) // 2`` of them (more raise :class:`~byzdask.errors.NonFiniteError`).

    Cost: O(n log^2 n) vectorised row operations per cache-sized column block (a pruned
    sorting network, see :mod:`byzdask.kernels.coordinate`), or one transpose and a row-wise sort
    for large n; no Python loop over d.

    References
    ----------
    .. [1] D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-robust distributed learning:
           towards optimal statistical rates", ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> rule = CoordinateWiseMedian()
    >>> rule.aggregate([np.array([1.0, 5.0]), np.array([2.0, -1.0]), np.array([100.0, 3.0])])
    array([2., 3.])
    >>> rule.aggregate(np.array([[1.0], [2.0], [4.0], [100.0]]))  # even n: mean of 2 and 4
    array([3.])
    >>> rule.max_f(10)
    4
    """

    name = "cwmed"
    kind = "columnwise"

    def __init__(self, *, chunk_size: int | None = None) -> None:
        self.f = None
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {}


    def column_kernel(self, block: Any, f: int | None, xp: Any) -> Any:
        return coordinate_median(block, xp)
