"""Static clipping: scale each vector down to a norm of at most a fixed threshold."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from byzdask.errors import ConfigurationError
from byzdask.kernels.prepro import clip_rows, row_norms
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["Clipping"]


class Clipping(PreAggregator):
    r"""Clip every vector to a Euclidean norm of at most ``threshold``.

    .. math:: \operatorname{clip}_c(x_i) = x_i \cdot \min\left(1, \frac{c}{\lVert x_i \rVert_2}\right)

    A vector whose norm is at most c is returned unchanged; a longer one keeps its direction and
    gets norm c. The output has as many vectors as the input.

    Parameters
    ----------
    threshold : float, default 2.0
        The clipping radius c, finite and >= 0 (ByzFL calls it ``c``; c = 0 maps every vector
        to zero).

    Notes
    -----
    Static clipping as used in the ByzFL library.

    Preconditions: none on n (any n >= 1).

    Non-finite inputs: a vector holding NaN or Inf has no meaningful norm; it is passed through
    unchanged, so that the robust rule that follows treats it as Byzantine (and drops it).

    Cost: one read of the n x d input for the norms (accumulated in float64), then one read and
    one write for the output; the input is never modified.

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Learning from history for Byzantine robust
           optimization", ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> out = Clipping(threshold=1.0).pre_aggregate([np.array([3.0, 4.0]), np.array([0.3, 0.4])])
    >>> [round(float(np.linalg.norm(v)), 6) for v in out]
    [1.0, 0.5]
    """

    name = "clipping"

    def __init__(self, threshold: float = 2.0) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
            raise ConfigurationError(f"Clipping threshold must be a finite number >= 0, got {threshold!r}")
        if not math.isfinite(float(threshold)) or threshold < 0:
            raise ConfigurationError(f"Clipping threshold must be a finite number >= 0, got {threshold!r}")
        self.threshold = float(threshold)
        self._repr_params = {"threshold": self.threshold}

    def transform(self, matrix: Any, xp: Any) -> Any:
        """(n, d) -> (n, d): each finite row clipped to norm ``threshold``; non-finite rows copied."""
        return clip_rows(matrix, row_norms(matrix, xp), self.threshold, xp)
