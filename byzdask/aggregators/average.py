"""The plain mean: the non-robust baseline."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import Aggregator

__all__ = ["Average"]


class Average(Aggregator):
    r"""The coordinate-wise mean, :math:`\frac{1}{n}\sum_i x_i`.

    Not robust: one Byzantine vector moves it arbitrarily far (breakdown point 0), so it
    tolerates f = 0. NaN and Inf propagate, as in any mean.

    Cost: one pass over the n x d input.

    References
    ----------
    .. [1] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
           adversaries: Byzantine tolerant gradient descent", NeurIPS 2017 (Lemma 1: no linear
           combination of the inputs tolerates one Byzantine input).

    Examples
    --------
    >>> import numpy as np
    >>> Average().aggregate([np.array([1.0, 2.0]), np.array([3.0, 6.0])])
    array([2., 4.])
    """

    name = "average"
    kind = "columnwise"
    drops_nonfinite = False

    def __init__(self, *, chunk_size: int | None = None) -> None:
        self.f = None
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {}

    def max_f(self, n: int) -> int:
        return 0

    def column_kernel(self, block: Any, f: int | None, xp: Any) -> Any:
        return block.mean(axis=0)
