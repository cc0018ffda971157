"""Inf attack: send a vector of +inf."""

from __future__ import annotations

from typing import Any

from byzdask.attacks._common import template_batch
from byzdask.attacks.base import Attack

__all__ = ["InfAttack"]


class InfAttack(Attack):
    r"""Send a vector whose every coordinate is :math:`+\infty`.

    .. math:: b = (+\infty, \dots, +\infty)

    It breaks any mean; a byzdask robust rule treats it as Byzantine and drops it (up to f such
    vectors), which is what this attack tests.

    Notes
    -----
    The non-finite attack of ByzPy 0.1.4 (``InfAttack``), used to test that robust rules reject
    NaN/Inf inputs.

    Preconditions: at least one honest vector (``honest_grads``, which gives the output's shape,
    dtype and family), or ``base_grad`` when called directly.

    Cost: one write of d values.

    References
    ----------
    .. [1] The non-finite attack of ByzPy 0.1.4 (``byzpy.attacks.InfAttack``).

    Examples
    --------
    >>> import numpy as np
    >>> InfAttack().apply(honest_grads=[np.zeros(3, dtype=np.float32)])
    array([inf, inf, inf], dtype=float32)
    """

    name = "inf"
    columnwise = True
    uses_honest_grads = True

    def __init__(self, *, chunk_size: int | None = None) -> None:
        self._set_chunk_size(chunk_size)
        self._repr_params = {}

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return a +inf vector shaped like the first honest vector."""
        batch = template_batch("InfAttack", honest_grads, base_grad)
        row = batch.matrix[0]
        return batch.restore(batch.xp.full(row.shape, float("inf"), dtype=row.dtype))
