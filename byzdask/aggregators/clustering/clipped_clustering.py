"""ClippedClustering: clip to the median norm, split in two by cosine distance, average the larger group."""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.aggregators.base import Aggregator
from byzdask.aggregators.clustering._common import clip_factors, real
from byzdask.errors import ConfigurationError
from byzdask.kernels.filters import cosine_distances, largest_cluster
from byzdask.kernels.selection import to_host

__all__ = ["ClippedClustering"]

_LINKAGES = ("average", "complete", "single")


class ClippedClustering(Aggregator):
    r"""Clipped clustering: the mean of the larger of two cosine clusters, after clipping to the median norm.

    .. math::

        \tau = \operatorname{median}_i \|x_i\|, \qquad
        \tilde x_i = x_i \min\Big(1, \frac{\tau}{\|x_i\|}\Big), \qquad
        y = \frac{1}{|C|} \sum_{i \in C} \tilde x_i,

    where C is the larger of the two clusters that agglomerative clustering forms on the
    cosine distances :math:`1 - \langle x_i, x_j\rangle / (\|x_i\| \|x_j\|)` (clipping does not
    change them), as in [1]_.

    Parameters
    ----------
    tau : float, optional
        A fixed clipping threshold (> 0); None (default) clips to the median norm of the inputs
        of each call.
    linkage : {"average", "complete", "single"}, default "average"
        Linkage of scikit-learn's ``AgglomerativeClustering`` (two clusters, precomputed
        distances).

    Notes
    -----
    Choices left open, and those made here: the linkage is average by default (the authors'
    Blades code; "single" is its other option). The threshold is the median norm of the current
    inputs: Blades clips to the median of all norms seen since the first round, a state this
    stateless rule does not keep (pass ``tau`` to fix it). Two clusters of one size: the one
    holding the lowest index. A zero vector has cosine 0 with every vector (distance 1).

    Preconditions: a majority of honest inputs, :meth:`max_f` is (n - 1) // 2 (the rule takes
    no f). Up to that many vectors holding NaN or Inf are dropped first.

    Cost: one centred Gram matrix (O(n^2 d), one pass over the input), from which the norms and
    the cosine distances are read; O(n^2 log n) clustering on the n x n matrix; one weighted sum
    for the output.

    References
    ----------
    .. [1] S. Li, E. C.-H. Ngai, T. Voigt, "An experimental study of Byzantine-robust aggregation
           schemes in federated learning", IEEE Trans. Big Data, 2023.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.1], [1.0, -0.1], [2.0, 0.0], [1.0, 0.0], [-5.0, 5.0]])
    >>> ClippedClustering().aggregate(x)  # the median norm is 1.005: [2, 0] is clipped to it
    array([1.00124689, 0.        ])
    """

    name = "clippedclustering"
    kind = "gram"

    def __init__(self, *, tau: float | None = None, linkage: str = "average") -> None:
        self.tau = real(tau, "tau", allow_none=True)
        if linkage not in _LINKAGES:
            raise ConfigurationError(f"linkage must be one of {list(_LINKAGES)}, got {linkage!r}")
        self.linkage = linkage
        self.f = None
        self._repr_params = {"tau": self.tau, "linkage": linkage}

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        g = to_host(gram)
        o = m  # the origin's row
        norms = np.sqrt(np.maximum(np.diagonal(g)[:m] - 2.0 * g[:m, o] + g[o, o], 0.0))
        tau = float(np.median(norms)) if self.tau is None else self.tau
        if m == 1:
            chosen = np.zeros(1, dtype=np.intp)
        else:
            from sklearn.cluster import AgglomerativeClustering

            labels = AgglomerativeClustering(n_clusters=2, metric="precomputed",
                                             linkage=self.linkage).fit(cosine_distances(g, m)).labels_
            chosen = largest_cluster(labels)
        weights = np.zeros(g.shape[0])
        weights[chosen] = clip_factors(norms[chosen], tau) / len(chosen)
        return xp.asarray(weights)
