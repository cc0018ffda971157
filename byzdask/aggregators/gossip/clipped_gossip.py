"""ClippedGossip: move towards each neighbour by at most a clipping radius."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from byzdask.aggregators.gossip.base import GossipRule, Neighbourhood, clipped_step
from byzdask.errors import ConfigurationError

__all__ = ["ClippedGossip"]


class ClippedGossip(GossipRule):
    r"""ClippedGossip: the gossip step with every neighbour's pull clipped to a radius.

    .. math::

        x_i \leftarrow x_i + \sum_{j \in N_i} W_{ij}\, \mathrm{clip}(x_j - x_i, \tau_i), \qquad
        \mathrm{clip}(z, \tau) = z \min\Big(1, \frac{\tau}{\|z\|}\Big)

    (eq. (2) of [1]_). With ``tau=None`` the radius is adaptive, as in the authors' released
    code: :math:`\tau_i` is the second largest distance :math:`\|x_j - x_i\|` among the
    neighbours (the largest when there is one), so the farthest neighbour is always clipped. The
    paper's theoretical radius needs the honest neighbours' spread, which a node does not know.

    Parameters
    ----------
    tau : float, optional
        A fixed clipping radius (> 0); None (default): adaptive, as above.

    Notes
    -----
    Takes no f: clipping bounds what any neighbour can do to :math:`W_{ij} \tau_i`. A neighbour
    vector holding NaN or Inf contributes nothing (its move is clipped to zero) and takes no part
    in the adaptive radius.

    Cost: one pass over the k x d neighbour differences for their norms, one weighted sum.

    References
    ----------
    .. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
           ClippedGossip", arXiv:2202.01545, 2022.

    Examples
    --------
    >>> import numpy as np
    >>> own = np.zeros(2)
    >>> neighbours = np.array([[1.0, 0.0], [0.0, 1.0], [100.0, 0.0]])
    >>> ClippedGossip(tau=1.0).step(own, neighbours, [0.25, 0.25, 0.25])
    array([0.5 , 0.25])
    >>> ClippedGossip().mix(own, neighbours, [0.25, 0.25, 0.25])  # adaptive: tau = 1
    array([0.5 , 0.25])
    """

    name = "clippedgossip"

    def __init__(self, tau: float | None = None) -> None:
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float, np.integer, np.floating))
                                or not math.isfinite(tau) or tau <= 0):
            raise ConfigurationError(f"tau must be a positive finite number or None, got {tau!r}")
        self.tau = None if tau is None else float(tau)
        self._repr_params = {"tau": self.tau}

    def radius(self, hood: Neighbourhood) -> float:
        """The clipping radius of this call."""
        if self.tau is not None:
            return self.tau
        dist = np.sort(hood.norms[hood.finite])
        if dist.size == 0:
            return 0.0
        return float(dist[-2] if dist.size >= 2 else dist[-1])

    def step_matrix(self, hood: Neighbourhood) -> Any:
        return clipped_step(hood, self.radius(hood))
