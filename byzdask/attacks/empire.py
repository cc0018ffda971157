"""Empire attack: send a scaled copy of the honest mean."""

from __future__ import annotations

from typing import Any

from byzdask.attacks._common import check_real, honest_batch
from byzdask.attacks.base import Attack

__all__ = ["EmpireAttack"]


class EmpireAttack(Attack):
    r"""Send the mean of the honest vectors times a factor (by default its opposite).

    .. math:: b = s \cdot \frac{1}{h} \sum_{i=1}^{h} g_i

    Parameters
    ----------
    scale : float, default -1.0
        The factor s (finite).

    Notes
    -----
    Definition as in ByzPy 0.1.4 (``EmpireAttack``); ByzFL's ``InnerProductManipulation(tau)``
    is s = -tau.

    Preconditions: at least one honest vector (``honest_grads``), all of one shape and family.

    Cost: one pass over the h x d honest vectors.

    References
    ----------
    .. [1] C. Xie, O. Koyejo, I. Gupta, "Fall of empires: breaking Byzantine-tolerant SGD by
           inner product manipulation", UAI 2019 (the inner product manipulation attack).

    Examples
    --------
    >>> import numpy as np
    >>> EmpireAttack(scale=-2.0).apply(honest_grads=[np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    array([-4., -6.])
    """

    name = "empire"
    columnwise = True
    uses_honest_grads = True

    def __init__(self, scale: float = -1.0, *, chunk_size: int | None = None) -> None:
        self.scale = check_real(scale, "scale", "EmpireAttack")
        self._set_chunk_size(chunk_size)
        self._repr_params = {"scale": self.scale}

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return ``scale`` times the mean of ``honest_grads``, in their family, dtype and shape."""
        batch = honest_batch(honest_grads, "EmpireAttack")
        mean = batch.matrix.mean(axis=0)
        return batch.restore(mean * mean.dtype.type(self.scale))
