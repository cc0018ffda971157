"""Mimic attack: send a copy of one honest node's vector."""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.attacks._common import require_honest
from byzdask.attacks.base import Attack
from byzdask.errors import ConfigurationError, InputError
from byzdask.kernels.arrays import array_family

__all__ = ["MimicAttack"]


class MimicAttack(Attack):
    r"""Send a copy of the vector of honest node :math:`\varepsilon`.

    .. math:: b = g_{\varepsilon}

    Under heterogeneous data, all Byzantine nodes echoing one honest node over-weights that
    node's data and biases training towards it.

    Parameters
    ----------
    epsilon : int, default 0
        The index of the honest node copied (0 <= epsilon < h at the call).

    Notes
    -----
    Definition as in ByzPy 0.1.4 and ByzFL 0.0.11 (a fixed epsilon); byzdask returns a copy,
    never the honest vector itself.

    Preconditions: epsilon < h, the number of honest vectors
    (:class:`~byzdask.errors.InputError` otherwise).

    Cost: one copy of d values.

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Byzantine-robust learning on heterogeneous
           datasets via bucketing", ICLR 2022 (the mimic attack).

    Examples
    --------
    >>> import numpy as np
    >>> MimicAttack(epsilon=1).apply(honest_grads=[np.array([1.0]), np.array([7.0])])
    array([7.])
    """

    name = "mimic"
    columnwise = True
    uses_honest_grads = True

    def __init__(self, epsilon: int = 0, *, chunk_size: int | None = None) -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, np.integer)) or epsilon < 0:
            raise ConfigurationError(f"MimicAttack: epsilon must be a non-negative integer, got {epsilon!r}")
        self.epsilon = int(epsilon)
        self._set_chunk_size(chunk_size)
        self._repr_params = {"epsilon": self.epsilon}

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return a copy of ``honest_grads[epsilon]``."""
        require_honest(honest_grads, "MimicAttack")
        h = len(honest_grads)
        if self.epsilon >= h:
            raise InputError(f"MimicAttack: epsilon must be < the number of honest vectors {h}, got epsilon={self.epsilon}")
        vec = honest_grads[self.epsilon]
        if array_family(vec) == "torch":
            return vec.detach().clone()
        return vec.copy()
