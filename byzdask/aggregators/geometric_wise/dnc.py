"""DnC (divide and conquer): drop the vectors that stand out along the top principal direction of random coordinates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from byzdask.aggregators.base import Aggregator, Prepared, check_f
from byzdask.errors import ConfigurationError, ToleranceError
from byzdask.kernels.filters import principal_outlier_scores
from byzdask.kernels.gram import combine, trusted_gram
from byzdask.kernels.selection import TIE_RTOL, mean_weights, smallest_indices

__all__ = ["DnC"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class DnC(Aggregator):
    r"""Divide and conquer: the mean of the vectors that no iteration flags as outliers.

    Each of ``iters`` iterations draws a random set r of ``subsample`` coordinates (all of
    them when d <= ``subsample``) and scores every input (Algorithm 2 of [1]_):

    .. math::

        \mu = \frac{1}{n} \sum_i x_i[r], \qquad
        v = \text{top right singular vector of } \big(x_i[r] - \mu\big)_{i}, \qquad
        s_i = \big((x_i[r] - \mu) \cdot v\big)^2,

    and keeps the :math:`n - \lfloor c f \rfloor` inputs of lowest score (c = ``filter_frac``;
    ties go to the lower index). The output is the mean of the inputs kept by every iteration:

    .. math:: \mathrm{DnC}(x_1, \dots, x_n) = \frac{1}{|G|} \sum_{i \in G} x_i, \qquad
              G = \bigcap_t I_t.

    The scores come from the centred Gram matrix of the sampled columns (the top eigenpair
    :math:`(\lambda, u)` of :math:`C C^\top` gives :math:`s_i = \lambda u_i^2`, see
    :func:`~byzdask.kernels.filters.principal_outlier_scores`), so no SVD of the n x b sample is
    formed.

    Parameters
    ----------
    f : int
        Number of Byzantine vectors tolerated, >= 0.
    subsample : int, default 10000
        Number of coordinates sampled per iteration (without replacement).
    iters : int, default 1
        Number of iterations.
    filter_frac : float, default 1.0
        c: each iteration drops the :math:`\lfloor c f \rfloor` highest scores; > 0.
    seed : int, optional
        Seed of the coordinate samples: ``numpy.random.default_rng(seed)`` is made afresh at each
        call, so a given seed samples the same coordinates at every call (the rule keeps no
        state between calls); None (default) draws fresh coordinates at each call. Unused when
        d <= ``subsample``.

    Notes
    -----
    Choices the paper leaves open: the sample is drawn without replacement, :math:`\lfloor c f
    \rfloor` rounds down (as the authors' and Blades' code), the iterations are independent
    draws, and when no input is kept by every iteration (possible when ``iters`` x
    :math:`\lfloor c f \rfloor` >= n) the output is the mean of the inputs kept by the most
    iterations.

    Preconditions: n > 2f (:meth:`max_f` is (n - 1) // 2) and at least one input kept,
    :math:`n - \lfloor c f \rfloor \ge 1`. Up to f vectors holding NaN or Inf are dropped
    first, and f is lowered by their number.

    Cost: per iteration a gather of the n x b sample (b = min(``subsample``, d)), its centred
    Gram matrix (O(n^2 b)) and an n x n symmetric eigendecomposition; then one weighted sum of
    the inputs (one pass over the n x d input).

    References
    ----------
    .. [1] V. Shejwalkar, A. Houmansadr, "Manipulating the Byzantine: optimizing model poisoning
           attacks and defenses for federated learning", NDSS 2021.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 1.0], [0.2, 0.8], [0.1, 1.1], [-0.1, 0.9], [8.0, -8.0]])
    >>> DnC(f=1).aggregate(x)
    array([0.05, 0.95])
    """

    name = "dnc"
    kind = "direct"
    uses_distances = True

    def __init__(self, f: int, *, subsample: int = 10000, iters: int = 1, filter_frac: float = 1.0,
                 seed: int | None = None) -> None:
        self.f = check_f(f)
        self.subsample = _positive_int(subsample, "subsample")
        self.iters = _positive_int(iters, "iters")
        if isinstance(filter_frac, bool) or not isinstance(filter_frac, (int, float, np.integer, np.floating)) \
                or not math.isfinite(filter_frac) or filter_frac <= 0:
            raise ConfigurationError(f"filter_frac must be a positive finite number, got {filter_frac!r}")
        self.filter_frac = float(filter_frac)
        self.seed = check_f(seed, name="seed", allow_none=True)
        self._repr_params = {"f": self.f, "subsample": self.subsample, "iters": self.iters,
                             "filter_frac": self.filter_frac, "seed": self.seed}

    def _dropped(self, f: int) -> int:
        return int(math.floor(self.filter_frac * f))

    def check_n(self, n: int) -> None:
        super().check_n(n)
        if self._dropped(self.f) >= n:
            raise ToleranceError(
                f"DnC drops floor(filter_frac * f) = {self._dropped(self.f)} of n={n} inputs per iteration "
                f"(filter_frac={self.filter_frac}, f={self.f}); expected fewer than n: lower filter_frac"
            )

    def aggregate_matrix(self, prep: Prepared) -> Any:
        xp, x = prep.batch.xp, prep.matrix
        m, d = x.shape
        keep = m - self._dropped(int(prep.f))
        rng = np.random.default_rng(self.seed)
        votes = np.zeros(m, dtype=np.intp)
        for _ in range(self.iters):
            if d <= self.subsample:
                sample = x
            else:
                cols = np.sort(rng.choice(d, size=self.subsample, replace=False))
                sample = x[:, cols if xp is np else xp.asarray(cols)]
            scores = principal_outlier_scores(trusted_gram(sample, None, xp)[0], m)
            kept = np.zeros(m, dtype=bool)
            kept[smallest_indices(scores, keep, tol=TIE_RTOL * float(scores.max()))] = True
            votes += kept
            if d <= self.subsample:
                break  # every iteration would see the same columns
        # the inputs kept by every iteration (by the most iterations if none is kept by all)
        weights = mean_weights(m, np.flatnonzero(votes == votes.max()))
        return combine(x, weights if xp is np else xp.asarray(weights), None, xp)
