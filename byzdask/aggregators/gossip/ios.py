"""IOS (iterative outlier scissor): drop, one at a time, the neighbour farthest from the weighted mean."""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.aggregators.base import check_f
from byzdask.aggregators.gossip.base import GossipRule, Neighbourhood
from byzdask.kernels.selection import to_host

__all__ = ["IOS"]


class IOS(GossipRule):
    r"""IOS: the weighted mean of the node and its neighbours after f removals of the farthest.

    With :math:`S = N_i` at first, f times (Algorithm IOS of [1]_):

    .. math::

        z_S = \frac{W_{ii} x_i + \sum_{j \in S} W_{ij} x_j}{W_{ii} + \sum_{j \in S} W_{ij}}, \qquad
        S \leftarrow S \setminus \{\operatorname{arg\,max}_{j \in S} \|x_j - z_S\|\},

    then :math:`x_i \leftarrow z_S`: the step is :math:`z_S - x_i`. The node itself is never
    removed; ties go to the lower neighbour index.

    Parameters
    ----------
    f : int
        The number of neighbours removed (the Byzantine neighbours tolerated), >= 0.

    Notes
    -----
    Neighbour vectors holding NaN or Inf are removed first and count among the f removals; with
    fewer neighbours than removals every neighbour goes and the node does not move.

    Cost: one k x k Gram matrix of the neighbour differences (O(k^2 d)), f rounds of O(k^2) on
    it (the mean stays a weighted sum of the differences), one weighted sum.

    References
    ----------
    .. [1] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization
           with robust aggregation rules", IEEE Trans. Signal Process. 71, 2023.

    Examples
    --------
    >>> import numpy as np
    >>> own = np.zeros(1)
    >>> neighbours = np.array([[1.0], [2.0], [50.0]])
    >>> IOS(f=1).step(own, neighbours, [0.25, 0.25, 0.25])  # 50 goes; mean of 0, 1, 2 (weights 1/4 each)
    array([1.])
    """

    name = "ios"

    def __init__(self, f: int) -> None:
        self.f = check_f(f)
        self._repr_params = {"f": self.f}

    def step_matrix(self, hood: Neighbourhood) -> Any:
        xp, diffs = hood.batch.xp, hood.diffs
        keep = hood.finite.copy()
        removals = max(0, self.f - int((~keep).sum()))
        g = to_host(diffs @ diffs.T) if diffs.shape[0] else np.zeros((0, 0))
        g = 0.5 * (g + g.T)
        w = hood.weights

        def coefficients() -> np.ndarray:  # z_S - x_i = sum_j c_j (x_j - x_i)
            total = hood.self_weight + float(w[keep].sum())
            return np.where(keep, w, 0.0) / total if total > 0 else np.zeros_like(w)

        for _ in range(min(removals, int(keep.sum()))):
            c = coefficients()
            gc = g @ c
            dist = np.diagonal(g) - 2.0 * gc + float(c @ gc)
            dist = np.where(keep, dist, -np.inf)
            keep[int(np.argmax(dist))] = False  # argmax: the first of equal values
        c = coefficients().astype(hood.batch.matrix.dtype)
        if c.size == 0:
            return xp.zeros(hood.batch.d, dtype=hood.batch.matrix.dtype)
        return (c if xp is np else xp.asarray(c)) @ diffs
