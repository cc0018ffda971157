"""Sign flip attack: send a scaled (by default negated) gradient."""

from __future__ import annotations

from typing import Any

from byzdask.attacks._common import check_real, honest_batch
from byzdask.attacks.base import Attack
from byzdask.errors import InputError
from byzdask.kernels.arrays import as_batch

__all__ = ["SignFlipAttack"]


class SignFlipAttack(Attack):
    r"""Send the node's own gradient times a factor (by default, its opposite).

    .. math:: b = s \cdot g_{\text{base}}
              \qquad\text{or, without a base gradient,}\qquad
              b = s \cdot \frac{1}{h} \sum_{i=1}^{h} g_i

    Parameters
    ----------
    scale : float, default -1.0
        The factor s (finite).

    Notes
    -----
    byzdask follows ByzPy 0.1.4: the attack reads ``base_grad``, the gradient the Byzantine node
    computed honestly on its own data (``uses_base_grad``). Called directly without
    ``base_grad`` it flips the mean of ``honest_grads`` instead, which is ByzFL 0.0.11's
    ``SignFlipping`` (ByzPy raises there).

    Preconditions: ``base_grad``, or at least one honest vector.

    Cost: one pass over ``base_grad`` (or over the h x d honest vectors).

    References
    ----------
    .. [1] Z. Allen-Zhu, F. Ebrahimian, J. Li, D. Alistarh, "Byzantine-resilient non-convex
           stochastic gradient descent", ICLR 2021 (sign flipping).

    Examples
    --------
    >>> import numpy as np
    >>> SignFlipAttack().apply(base_grad=np.array([1.0, -2.0]))
    array([-1.,  2.])
    >>> SignFlipAttack(scale=-0.5).apply(honest_grads=[np.array([2.0]), np.array([4.0])])
    array([-1.5])
    """

    name = "sign_flip"
    columnwise = True
    uses_base_grad = True

    def __init__(self, scale: float = -1.0, *, chunk_size: int | None = None) -> None:
        self.scale = check_real(scale, "scale", "SignFlipAttack")
        self._set_chunk_size(chunk_size)
        self._repr_params = {"scale": self.scale}

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return ``scale * base_grad`` (or ``scale`` times the honest mean without ``base_grad``)."""
        if base_grad is not None:
            batch = as_batch([base_grad], what="SignFlipAttack base_grad")
            vec = batch.matrix[0]
        elif honest_grads is not None:
            batch = honest_batch(honest_grads, "SignFlipAttack")
            vec = batch.matrix.mean(axis=0)
        else:
            raise InputError("SignFlipAttack needs base_grad (or honest_grads to flip their mean), got neither")
        return batch.restore(vec * vec.dtype.type(self.scale))
