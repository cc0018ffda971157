"""CS+-RG: clipped gossip with the radius set by the (b+1)-th largest neighbour distance."""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.aggregators.base import check_f
from byzdask.aggregators.gossip.base import GossipRule, Neighbourhood, clipped_step

__all__ = ["CSPlusRG"]


class CSPlusRG(GossipRule):
    r"""CS+-RG (clipped robust gossip): clip every neighbour's pull at the (b+1)-th largest distance.

    .. math::

        x_i \leftarrow x_i + \sum_{j \in N_i} W_{ij}\, \mathrm{clip}(x_j - x_i, \tau_i), \qquad
        \tau_i = \text{the } (b+1)\text{-th largest of } \{\|x_j - x_i\| : j \in N_i\},

    so the b farthest neighbours (those that may be Byzantine) are clipped to the distance of
    the nearest of the others ([1]_, the CS+ rule inside its robust gossip scheme).

    Parameters
    ----------
    b : int
        The number of Byzantine neighbours a node tolerates, >= 0 (b = 0: the farthest neighbour
        sets the radius, i.e. plain gossip).

    Notes
    -----
    With at most b neighbours the radius is 0 and the node does not move. A neighbour vector
    holding NaN or Inf counts as one of the b: it contributes nothing, and the radius is the
    (b + 1 - that count)-th largest distance among the others. Ties in the distances do not
    matter (only the value of the radius does).

    Cost: one pass over the k x d neighbour differences for their norms, one weighted sum.

    References
    ----------
    .. [1] R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine
           robust gossip", ICML 2025.

    Examples
    --------
    >>> import numpy as np
    >>> own = np.zeros(1)
    >>> neighbours = np.array([[1.0], [2.0], [50.0]])
    >>> CSPlusRG(b=1).step(own, neighbours, [0.25, 0.25, 0.25])  # tau = 2: 0.25 * (1 + 2 + 2)
    array([1.25])
    """

    name = "csplusrg"

    def __init__(self, b: int) -> None:
        self.b = check_f(b, name="b")
        self._repr_params = {"b": self.b}

    def step_matrix(self, hood: Neighbourhood) -> Any:
        b = max(0, self.b - int((~hood.finite).sum()))
        dist = np.sort(hood.norms[hood.finite])[::-1]
        tau = float(dist[b]) if dist.size > b else 0.0
        return clipped_step(hood, tau)
