"""CAF, the covariance-bound agnostic filter, in coefficient space."""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.aggregators.base import Aggregator, check_f
from byzdask.errors import ConfigurationError
from byzdask.kernels.iterative import covariance_filter
from byzdask.kernels.selection import normalised

__all__ = ["CAF"]


class CAF(Aggregator):
    r"""Covariance-bound agnostic filter: down-weight inputs along the top direction of spread.

    With weights :math:`c_i = 1`, while :math:`\sum_i c_i > n - 2f`:

    .. math::

        \mu_c = \frac{\sum_i c_i x_i}{\sum_i c_i}, \quad
        \Sigma_c = \frac{\sum_i c_i (x_i - \mu_c)(x_i - \mu_c)^\top}{\sum_i c_i}, \quad
        \tau_i = \left((x_i - \mu_c)^\top v\right)^2, \quad
        c_i \leftarrow c_i \left(1 - \frac{\tau_i}{\max_{j: c_j > 0} \tau_j}\right),

    with :math:`(\lambda, v)` the top eigenpair of :math:`\Sigma_c`; the output is the
    :math:`\mu_c` of the smallest :math:`\lambda` met (the first on ties). Each round zeroes at
    least one weight, so there are at most 2f rounds; with f = 0 the output is the mean.

    The top eigenvector lies in the span of the centred inputs, so the whole filter runs on the
    n x n Gram matrix (DESIGN §4); see :func:`byzdask.kernels.iterative.covariance_filter`.

    Two deliberate differences from ByzFL 0.0.11's code, which follows the same formulas: the
    maximum in the update runs over the inputs still weighted (ByzFL's code takes it over all
    inputs, so a far outlier already removed can stall the loop for many rounds), and the
    eigenpair is deterministic (ByzFL runs one power step from an unseeded random vector).

    Parameters
    ----------
    f : int
        Number of Byzantine inputs to tolerate; needs n > 2f.
    power_iters : int, optional
        None (default): the exact top eigenpair (a symmetric eigensolver on the n x n matrix).
        An integer k >= 1: k power-method steps per round from a Gaussian start in coefficient
        space drawn from ``numpy.random.default_rng(seed)`` (k = 1 mimics ByzFL's single step).
    seed : int, default 0
        Seed of the power method's starting vectors (unused when ``power_iters`` is None).

    Notes
    -----
    The definition follows ByzFL's ``CAF``, with the two differences above.

    Preconditions: n > 2f (``max_f(n) = (n - 1) // 2``). Inputs holding NaN or Inf (at most f)
    are dropped first, and f is reduced by their number.

    Cost: one Gram matrix of the centred inputs (O(n^2 d) flops, one pass over the n x d
    input), at most 2f rounds of O(n^3) (exact) or O(k n^2) (power method), one pass for the
    output.

    References
    ----------
    .. [1] Y. Allouah, R. Guerraoui, J. Stephan, "Towards trustworthy federated learning with
           untrusted participants", ICML 2025 (Algorithm CAF).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [40.0, -40.0]])
    >>> np.round(CAF(1).aggregate(x), 2)  # the outlier gets weight 0
    array([0.5, 0.5])
    """

    name = "caf"
    kind = "gram"

    def __init__(self, f: int, *, power_iters: int | None = None, seed: int = 0, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        if power_iters is not None and (isinstance(power_iters, bool) or not isinstance(power_iters, (int, np.integer))
                                        or power_iters < 1):
            raise ConfigurationError(f"power_iters must be None or a positive integer, got {power_iters!r}")
        self.power_iters = None if power_iters is None else int(power_iters)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigurationError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.chunk_size = self.check_chunk_size(chunk_size)
        self._repr_params = {"f": self.f, "power_iters": self.power_iters, "seed": self.seed}

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        # scaled to entries about 1: the same weights, and no entry near float64's limits for LAPACK
        weights = covariance_filter(normalised(gram), m, int(f), power_iters=self.power_iters, seed=self.seed)
        return xp.asarray(weights)
