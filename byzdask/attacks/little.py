"""A little is enough (ALIE): shift the honest mean by z standard deviations per coordinate."""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from byzdask.aggregators.base import check_f
from byzdask.attacks._common import honest_batch
from byzdask.attacks.base import Attack
from byzdask.errors import ConfigurationError, InputError

__all__ = ["LittleAttack", "little_z"]


def little_z(N: int, f: int) -> float:
    r"""The z of Baruch et al.: :math:`s = \lfloor N/2 \rfloor + 1 - f` (at least 1),
    :math:`z = \Phi^{-1}((N - s) / N)`.

    Raises
    ------
    InputError
        When (N - s) / N is 0 (N = 1, or N = 2 with f = 0): z would be minus infinity.

    Examples
    --------
    >>> round(little_z(50, 12), 4)  # s = 14, z = Phi^-1(36/50)
    0.5828
    """
    s = max(1, N // 2 + 1 - f)
    if N - s <= 0:
        raise InputError(f"LittleAttack: N={N} with f={f} leaves no non-supporting workers (s={s}); needs N - s >= 1")
    return NormalDist().inv_cdf((N - s) / N)


class LittleAttack(Attack):
    r"""'A little is enough': the honest mean plus z times the honest standard deviation.

    .. math::

        s = \max\left(1, \left\lfloor \tfrac{N}{2} \right\rfloor + 1 - f\right), \qquad
        z = \Phi^{-1}\!\left(\frac{N - s}{N}\right), \qquad
        b_j = \mu_j + z \, \sigma_j

    with :math:`\mu_j` the mean and :math:`\sigma_j` the population standard deviation
    (divided by h, not h - 1) of coordinate j over the h honest vectors, and :math:`\Phi` the
    standard normal CDF.

    Parameters
    ----------
    f : int
        The number of Byzantine nodes (>= 0).
    N : int or None, default None
        The total number of nodes. None means h + f at the call, h the number of honest vectors.
        When given, N > f.

    Notes
    -----
    Definition as in ByzPy 0.1.4 (``LittleAttack``); ByzFL 0.0.11's ``ALittleIsEnough(tau)``
    takes z = tau directly and the sample (h - 1) standard deviation.

    Preconditions: at least one honest vector; (N - s) / N > 0, i.e. N >= 2, and N >= 3 when
    f = 0 (:class:`~byzdask.errors.InputError` otherwise).

    Cost: two passes over the h x d honest vectors (mean, then deviations).

    References
    ----------
    .. [1] G. Baruch, M. Baruch, Y. Goldberg, "A little is enough: circumventing defenses for
           distributed learning", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> g = [np.array([0.0, 1.0]), np.array([2.0, 1.0])]  # mean (1, 1), std (1, 0)
    >>> out = LittleAttack(f=1).apply(honest_grads=g)  # N = 3, s = 1, z = Phi^-1(2/3)
    >>> np.round(out, 4).tolist()
    [1.4307, 1.0]
    """

    name = "little"
    columnwise = True
    uses_honest_grads = True

    def __init__(self, f: int, N: int | None = None, *, chunk_size: int | None = None) -> None:
        self.f = check_f(f)
        if N is not None:
            if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N <= self.f:
                raise ConfigurationError(f"LittleAttack: N must be None or an integer > f={self.f}, got {N!r}")
            little_z(N, self.f)  # fail early on an N without a finite z
        self.N = None if N is None else int(N)
        self._set_chunk_size(chunk_size)
        self._repr_params = {"f": self.f, "N": self.N}

    def z(self, h: int) -> float:
        """The z used with h honest vectors."""
        return little_z(h + self.f if self.N is None else self.N, self.f)

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return mean + z * std of ``honest_grads``, in their family, dtype and shape."""
        batch = honest_batch(honest_grads, "LittleAttack")
        z = self.z(batch.n)
        xp, g = batch.xp, batch.matrix
        mu = g.mean(axis=0)
        dev = g - mu
        sigma = xp.sqrt((dev * dev).mean(axis=0))
        return batch.restore(mu + sigma * sigma.dtype.type(z))
