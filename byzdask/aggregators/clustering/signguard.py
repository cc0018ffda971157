"""SignGuard: a norm filter and a clustering of sign statistics, then the mean clipped to the median norm."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from byzdask.aggregators.base import Aggregator, Prepared, check_f
from byzdask.aggregators.clustering._common import clip_factors, real
from byzdask.errors import ConfigurationError
from byzdask.kernels.filters import largest_cluster, sign_fractions
from byzdask.kernels.gram import combine
from byzdask.kernels.prepro import row_norms
from byzdask.kernels.selection import to_host

__all__ = ["SignGuard"]

_CLUSTERINGS = ("meanshift", "kmeans")


def _cluster(features: np.ndarray, method: str) -> np.ndarray:
    """Cluster labels of the rows of ``features`` (-1: in no cluster)."""
    m = features.shape[0]
    if m == 1 or np.ptp(features, axis=0).max() == 0.0:
        return np.zeros(m, dtype=np.intp)  # one point, or identical features: one cluster
    if method == "kmeans":
        from sklearn.cluster import KMeans

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "fewer distinct points than clusters" is fine here
            return KMeans(n_clusters=2, n_init=10, random_state=0).fit(features).labels_
    from sklearn.cluster import MeanShift, estimate_bandwidth

    bandwidth = estimate_bandwidth(features, quantile=0.5, n_samples=min(m, 50), random_state=0)
    if not bandwidth > 0:
        return np.zeros(m, dtype=np.intp)
    return MeanShift(bandwidth=bandwidth, bin_seeding=True, cluster_all=False).fit(features).labels_


class SignGuard(Aggregator):
    r"""SignGuard: keep the inputs that pass a norm filter and fall in the main cluster of sign statistics.

    With :math:`M = \operatorname{median}_i \|x_i\|` ([1]_, Algorithm 1):

    .. math::

        S_1 = \{ i : L \le \|x_i\| / M \le R \}, \qquad
        S_2 = \text{the largest cluster of } \big(p_i^+, p_i^0, p_i^-\big)_i, \qquad
        y = \frac{1}{|S|} \sum_{i \in S} x_i \min\Big(1, \frac{M}{\|x_i\|}\Big),
        \quad S = S_1 \cap S_2,

    where :math:`p_i^+, p_i^0, p_i^-` are the fractions of positive, zero and negative entries
    of :math:`x_i` over a random set of ``coord_frac`` x d coordinates (the same set for every
    input), each divided by its largest value over the inputs.

    Parameters
    ----------
    lower, upper : float, default 0.1 and 3.0
        L and R of the norm filter (the paper's values), 0 <= L <= 1 <= R.
    coord_frac : float, default 0.1
        Fraction of the coordinates whose signs are counted, in (0, 1] (at least one coordinate).
    clustering : {"meanshift", "kmeans"}, default "meanshift"
        ``"meanshift"``: scikit-learn's ``MeanShift`` with the bandwidth of
        ``estimate_bandwidth(quantile=0.5)``, bin seeding, and points outside every mode left out
        of all clusters (the authors' code); ``"kmeans"``: ``KMeans`` with two clusters (Blades'
        code).
    seed : int, optional
        Seed of the coordinate sample: ``numpy.random.default_rng(seed)`` is made afresh at each
        call (the same coordinates at every call; the rule keeps no state); None (default) draws
        fresh coordinates at each call. Unused when ``coord_frac`` covers every coordinate.

    Notes
    -----
    Choices the paper leaves open, and those made here: the clustering method (mean shift, as
    the authors' code, by default); the coordinates are a uniform sample without replacement
    (the authors' code takes a contiguous window at a random offset); two clusters of one
    size: the one holding the lowest index; identical sign statistics form one cluster; when
    :math:`S_1 \cap S_2` is empty the rule falls back to :math:`S_1`, and to all inputs when
    :math:`S_1` is empty too (the paper does not say; the authors' code would average nothing).
    A zero vector is never rescaled.

    Preconditions: a majority of honest inputs, :meth:`max_f` is (n - 1) // 2 (the rule takes
    no f). Up to that many vectors holding NaN or Inf are dropped first.

    Cost: one pass over the input for the norms, a gather of the n x b sampled columns
    (b = ``coord_frac`` x d) for the sign counts, a clustering of n points in 3 dimensions, and
    one weighted sum for the output.

    References
    ----------
    .. [1] J. Xu, S.-L. Huang, L. Song, T. Lan, "Byzantine-robust federated learning through
           collaborative malicious gradient filtering", ICDCS 2022 (arXiv:2109.05872).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 1.0, -1.0, 1.0], [1.0, 2.0, -1.0, 1.0], [2.0, 1.0, -1.0, 1.0],
    ...               [1.0, 1.0, -2.0, 1.0], [-1.0, -1.0, -1.0, -1.0]])
    >>> SignGuard(coord_frac=1.0).aggregate(x)  # the last vector's signs differ
    array([ 1.25,  1.25, -1.25,  1.  ])
    """

    name = "signguard"
    kind = "direct"

    def __init__(self, *, lower: float = 0.1, upper: float = 3.0, coord_frac: float = 0.1,
                 clustering: str = "meanshift", seed: int | None = None) -> None:
        self.lower = real(lower, "lower", positive=False)
        self.upper = real(upper, "upper")
        if not self.lower <= 1.0 <= self.upper:
            raise ConfigurationError(f"expected lower <= 1 <= upper (a vector of median norm passes the filter), "
                                     f"got lower={lower!r}, upper={upper!r}")
        self.coord_frac = real(coord_frac, "coord_frac")
        if self.coord_frac > 1.0:
            raise ConfigurationError(f"coord_frac must be in (0, 1], got {coord_frac!r}")
        if clustering not in _CLUSTERINGS:
            raise ConfigurationError(f"clustering must be one of {list(_CLUSTERINGS)}, got {clustering!r}")
        self.clustering = clustering
        self.seed = check_f(seed, name="seed", allow_none=True)
        self.f = None
        self._repr_params = {"lower": self.lower, "upper": self.upper, "coord_frac": self.coord_frac,
                             "clustering": clustering, "seed": self.seed}

    def aggregate_matrix(self, prep: Prepared) -> Any:
        xp, x = prep.batch.xp, prep.matrix
        m, d = x.shape
        norms = to_host(row_norms(x, xp))
        med = float(np.median(norms))
        ratio = np.divide(norms, med, out=np.where(norms > 0, np.inf, 1.0), where=med > 0)
        s1 = (ratio >= self.lower) & (ratio <= self.upper)
        b = max(1, int(self.coord_frac * d))
        if b >= d:
            sample = x
        else:
            cols = np.sort(np.random.default_rng(self.seed).choice(d, size=b, replace=False))
            sample = x[:, cols if xp is np else xp.asarray(cols)]
        s2 = np.zeros(m, dtype=bool)
        s2[largest_cluster(_cluster(sign_fractions(sample, xp), self.clustering))] = True
        keep = np.flatnonzero(s1 & s2)
        if keep.size == 0:
            keep = np.flatnonzero(s1) if s1.any() else np.arange(m)
        weights = np.zeros(m)
        weights[keep] = clip_factors(norms[keep], med) / keep.size
        return combine(x, weights if xp is np else xp.asarray(weights), None, xp)
