"""Adaptive robust clipping (ARC): clip the largest vectors to the norm of the next largest."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import check_f
from byzdask.errors import NonFiniteError, ToleranceError
from byzdask.kernels.prepro import arc_clip_count, clip_rows, row_norms
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["ARC"]


class ARC(PreAggregator):
    r"""Adaptive robust clipping: clip the k largest vectors to the norm of the (k+1)-th largest.

    With n vectors, f of them possibly Byzantine,

    .. math::

        k = \left\lfloor \frac{2 f (n - f)}{n} \right\rfloor, \qquad
        c = \lVert x \rVert_{(n-k)}, \qquad
        x_i \mapsto x_i \cdot \min\left(1, \frac{c}{\lVert x_i \rVert_2}\right)

    where :math:`\lVert x \rVert_{(j)}` is the j-th smallest norm. With k = 0 (f = 0) nothing
    is clipped. The output has as many vectors as the input.

    Parameters
    ----------
    f : int, default 0
        The number of Byzantine vectors to expect; 0 <= f <= n at the call.

    Notes
    -----
    The definition of k and c follows ByzFL 0.0.11. byzdask computes k in exact integer
    arithmetic; ByzFL evaluates ``int((2 f / n) * (n - f))`` in floating point, which rounds one
    lower in rare cases (e.g. n = 242, f = 33: ByzFL clips 56 vectors, the formula 57).

    Preconditions: f <= n (:class:`~byzdask.errors.ToleranceError` otherwise).

    Non-finite inputs: vectors holding NaN or Inf are treated as Byzantine: they are passed
    through unchanged (for the rule that follows to drop) and the threshold is computed on the
    n - r finite vectors with n and f reduced together (to n - r and f - r). More than f of them raise
    :class:`~byzdask.errors.NonFiniteError`.

    Cost: one read of the input for the norms, a selection (partition) among n norms, one read
    and one write for the output; the input is never modified.

    References
    ----------
    .. [1] Y. Allouah et al., "Boosting robustness by clipping gradients in distributed
           learning", 2024 (adaptive robust clipping).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 40.0]])
    >>> out = ARC(f=1).pre_aggregate(x)  # k = floor(2*1*3/4) = 1: clip the largest to norm 3
    >>> np.linalg.norm(out, axis=1).tolist()
    [1.0, 2.0, 3.0, 3.0]
    """

    name = "arc"

    def __init__(self, f: int = 0) -> None:
        self.f = check_f(f)
        self._repr_params = {"f": self.f}

    def transform(self, matrix: Any, xp: Any) -> Any:
        """(n, d) -> (n, d): the k largest finite rows clipped to the (k+1)-th largest norm."""
        n = int(matrix.shape[0])
        if self.f > n:
            raise ToleranceError(f"ARC needs f <= n; got f={self.f} with n={n} vectors")
        norms = row_norms(matrix, xp)
        finite = xp.isfinite(norms)
        m = int(finite.sum())
        r = n - m
        if r > self.f:
            raise NonFiniteError(
                f"ARC: {r} of {n} input vectors hold NaN or Inf, more than the f={self.f} it can treat as Byzantine"
            )
        k = arc_clip_count(m, self.f - r)
        if k == 0:
            return clip_rows(matrix, norms, float("inf"), xp)
        kept = norms[finite]
        threshold = float(xp.partition(kept, m - k - 1)[m - k - 1])
        return clip_rows(matrix, norms, threshold, xp)
