"""MoNNA: the mean of the vectors nearest to a trusted reference vector."""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.aggregators.base import Aggregator, Prepared, check_f
from byzdask.errors import ConfigurationError, InputError
from byzdask.kernels.arrays import Batch, as_batch, finite_rows
from byzdask.kernels.gram import ORIGIN
from byzdask.kernels.selection import (
    host_distances,
    mean_weights,
    smallest_indices,
    tie_tolerance,
)

__all__ = ["MoNNA"]


class MoNNA(Aggregator):
    r"""Mean of the n - f vectors nearest to a reference vector (itself included).

    .. math::

        \mathrm{MoNNA}_f(x_1, \dots, x_n) = \frac{1}{n - f} \sum_{i \in N} x_i

    where N holds the n - f indices i of smallest :math:`\|x_i - x_r\|^2`, r the reference
    index (ties go to the lower index; the reference itself is at distance 0).

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.
    reference_index : int, keyword-only
        Position of the reference vector (the server's or the node's own, trusted, vector) in
        the inputs as given; must be < n, checked at the call.

    Notes
    -----
    Preconditions: n > 2f (:meth:`max_f` is (n - 1) // 2). Vectors holding NaN or Inf (at most
    f) are dropped first and n, f lowered together; ``reference_index`` keeps naming the same
    vector of the inputs as given. The reference is trusted: if it holds NaN or Inf the call
    raises :class:`~byzdask.errors.InputError` rather than treating it as Byzantine.

    The reference travels as an anchor row of the augmented Gram matrix (see
    :mod:`byzdask.kernels.gram`), so the fan-out path needs nothing else.

    Cost: one centred Gram matrix (O(n^2 d), one pass over the input), O(n log n) selection and
    one weighted sum for the output.

    References
    ----------
    .. [1] S. Farhadkhani, R. Guerraoui, N. Gupta, L.-N. Hoang, R. Pinot, J. Stephan, "Robust
           collaborative learning with linear gradient overhead", ICML 2023.

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [2.0], [100.0]])
    >>> MoNNA(f=1).aggregate(x)
    array([1.])
    >>> MoNNA(f=1, reference_index=3).aggregate(x)
    array([34.33333333])
    """

    name = "monna"
    kind = "gram"

    def __init__(self, f: int, *, reference_index: int = 0, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        if isinstance(reference_index, bool) or not isinstance(reference_index, (int, np.integer)) \
                or reference_index < 0:
            raise ConfigurationError(f"reference_index must be a non-negative integer, got {reference_index!r}")
        self.reference_index = int(reference_index)
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"f": self.f, "reference_index": self.reference_index}

    def prepare(self, gradients: Any) -> Prepared:
        batch = gradients if isinstance(gradients, Batch) else as_batch(gradients, what="gradients")
        ref = self.reference_index
        if ref >= batch.n:
            raise InputError(
                f"MoNNA reference_index={ref} but only n={batch.n} vectors were given; "
                f"expected 0 <= reference_index < {batch.n}"
            )
        row = batch.matrix[ref:ref + 1]
        if not bool(finite_rows(row, batch.xp)[0]):
            raise InputError(
                f"MoNNA's reference vector (index {ref}) holds NaN or Inf; the reference is trusted and must "
                "be finite"
            )
        prep = super().prepare(batch)
        prep.extra = row
        return prep

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        dist = host_distances(gram)
        tol = tie_tolerance(dist, list(range(m)))
        return mean_weights(gram.shape[0], smallest_indices(dist[m + ORIGIN, :m], m - f, tol=tol))
