"""Centered clipping, iterated in coefficient space."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from byzdask.aggregators.base import Aggregator
from byzdask.errors import ConfigurationError, InputError
from byzdask.kernels.iterative import (
    anchor_weights,
    centered_clipping,
    coordinate_median,
    mean_weights,
)

__all__ = ["CenteredClipping"]

_INITS = ("mean", "median", "zero", "previous")


def _real(value: Any, name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ConfigurationError(f"{name} must be {kind} finite number, got {value!r}")
    return float(value)


def _in_namespace(vector: Any, xp: Any, dtype: Any) -> Any:
    """``vector`` (numpy or cupy) as an array of namespace ``xp`` and dtype ``dtype``."""
    if xp is np and not isinstance(vector, np.ndarray) and hasattr(vector, "get"):
        vector = vector.get()
    return xp.asarray(vector).astype(dtype, copy=False)


class CenteredClipping(Aggregator):
    r"""Centered clipping: M steps of a clipped mean around the current estimate.

    With :math:`\mathrm{clip}(u, c) = u \min(1, c / \max(\|u\|, \epsilon))` and :math:`v_0` the
    starting point (see ``init``),

    .. math::

        v_{l+1} = v_l + \frac{1}{n} \sum_{i=1}^{n} \mathrm{clip}(x_i - v_l, c_\tau),
        \qquad l = 0, \dots, M - 1,

    and the output is :math:`v_M`. Each step keeps the iterate in the affine hull of the inputs
    and :math:`v_0`, so the rule runs on weights over the rows of one centred Gram matrix
    (DESIGN §4).

    ``init="previous"`` is the stateful rule of Karimireddy et al. and ByzFL: :math:`v_0` is the
    output of this instance's previous call (the origin on the first call, as in ByzFL). This
    is the one documented exception to the statelessness of byzdask operators: the previous
    aggregate lives on the instance (it travels with it when pickled), :meth:`reset` forgets
    it, and concurrent calls on one instance race on it. With ``init="previous", M=1`` and
    ``eps`` small this is ByzFL's ``CenteredClipping(tau=c_tau, L=1)`` over successive calls.

    Parameters
    ----------
    c_tau : float, default 1.0
        Clipping radius, positive. The paper and ByzPy give no default; 1.0 suits gradients of
        unit-order norm (scale it with the honest spread).
    M : int, default 10
        Number of clipping steps (0 returns the starting point).
    eps : float, default 1e-12
        Floor on the norms in the clipping factor (avoids a division by zero), positive.
    init : {"mean", "median", "zero", "previous"}, default "mean"
        Starting point: the mean, the coordinate-wise median, the origin, or the previous output.

    Notes
    -----
    Preconditions: the rule takes no f; with a radius suited to the honest spread it tolerates
    a minority of Byzantine inputs, ``f = (n - 1) // 2`` (n > 2f), which is also how many
    non-finite inputs it drops before running.

    Cost: one Gram matrix of the centred inputs (O(n^2 d) flops, one pass over the n x d
    input), O(n^2) per step, one pass for the output; ``init="median"`` adds a coordinate-wise
    median.

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Learning from history for Byzantine robust
           optimization", ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [100.0]])
    >>> round(float(CenteredClipping(c_tau=1.0, M=50).aggregate(x)[0]), 4)  # mean 25.75, pulled back
    1.6211
    >>> cc = CenteredClipping(c_tau=1.0, M=1, init="previous")
    >>> cc.aggregate(x).tolist(), cc.aggregate(x).tolist()  # starts at 0, then from the last output
    ([0.75], [1.125])
    """

    name = "centered_clipping"
    kind = "gram"

    def __init__(self, *, c_tau: float = 1.0, M: int = 10, eps: float = 1e-12, init: str = "mean", chunk_size: int | None = None) -> None:
        self.c_tau = _real(c_tau, "c_tau", positive=True)
        if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 0:
            raise ConfigurationError(f"M must be a non-negative integer, got {M!r}")
        self.M = int(M)
        self.eps = _real(eps, "eps", positive=True)
        if init not in _INITS:
            raise ConfigurationError(f"init must be one of {list(_INITS)}, got {init!r}")
        self.init = init
        self.f = None
        self._previous: Any | None = None
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"c_tau": self.c_tau, "M": self.M, "eps": self.eps, "init": init}

    @property
    def previous(self) -> Any | None:
        """The previous aggregate (a flat (d,) array) used by ``init="previous"``, or None."""
        return self._previous

    def reset(self) -> None:
        """Forget the previous aggregate: the next call with ``init="previous"`` starts at the origin."""
        self._previous = None

    def extra_rows(self, matrix: Any, f: int | None, xp: Any) -> Any | None:
        if self.init == "median":
            return coordinate_median(matrix, xp)[None, :]
        if self.init == "previous" and self._previous is not None:
            d = matrix.shape[1]
            if self._previous.shape[0] != d:
                raise InputError(
                    f"CenteredClipping(init='previous') holds a previous aggregate of {self._previous.shape[0]} "
                    f"coordinates, got vectors of {d}; call reset() before aggregating vectors of a new size"
                )
            return _in_namespace(self._previous, xp, matrix.dtype)[None, :]
        return None

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        size = gram.shape[0]
        if self.init == "mean":
            start = mean_weights(size, m)
        else:  # the origin is row m; an anchor (median, previous output), when given, row m + 1
            start = anchor_weights(size, m + 1 if size > m + 1 else m)
        weights = centered_clipping(gram, m, start, c_tau=self.c_tau, iterations=self.M, eps=self.eps)
        return xp.asarray(weights)

    def finish(self, out: Any) -> Any:
        if self.init == "previous":
            self._previous = out.copy()
        return out
