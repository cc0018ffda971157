"""Gaussian attack: send random noise."""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.attacks._common import check_real, template_batch
from byzdask.attacks.base import Attack
from byzdask.errors import ConfigurationError

__all__ = ["GaussianAttack"]


class GaussianAttack(Attack):
    r"""Send a vector of independent normal samples.

    .. math:: b_j \sim \mathcal{N}(\mu, \sigma^2), \quad j = 1, \dots, d

    Parameters
    ----------
    mu : float, default 0.0
        The mean (finite).
    sigma : float, default 1.0
        The standard deviation (finite, >= 0).
    seed : int or None, keyword-only
        Seed of ``numpy.random.default_rng``. With an int every call returns the same vector
        (for inputs of one shape and dtype): the attack stays stateless and reproducible. With
        None (the default) every call draws fresh noise from OS entropy.

    Notes
    -----
    Definition as in ByzPy 0.1.4 (``GaussianAttack``, a fresh generator per call). The samples
    are drawn in float64 on the host with numpy and cast to the honest vectors' dtype and
    device, so one seed gives the same noise for numpy, torch and cupy inputs.

    Preconditions: at least one honest vector (``honest_grads``, which gives the output's shape,
    dtype and family), or ``base_grad`` when called directly.

    Cost: d normal samples (O(d)).

    References
    ----------
    .. [1] C. Xie, O. Koyejo, I. Gupta, "Generalized Byzantine-tolerant SGD", arXiv:1802.10116,
           2018 (the Gaussian attack).

    Examples
    --------
    >>> import numpy as np
    >>> attack = GaussianAttack(mu=0.0, sigma=1.0, seed=7)
    >>> a = attack.apply(honest_grads=[np.zeros((2, 3))])
    >>> a.shape, bool(np.array_equal(a, attack.apply(honest_grads=[np.zeros((2, 3))])))
    ((2, 3), True)
    """

    name = "gaussian"
    uses_honest_grads = True

    def __init__(self, mu: float = 0.0, sigma: float = 1.0, *, seed: int | None = None) -> None:
        self.mu = check_real(mu, "mu", "GaussianAttack")
        self.sigma = check_real(sigma, "sigma", "GaussianAttack", minimum=0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigurationError(f"GaussianAttack: seed must be None or an integer >= 0, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._repr_params = {"mu": self.mu, "sigma": self.sigma, "seed": self.seed}

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return d samples of N(mu, sigma^2), shaped like the first honest vector."""
        batch = template_batch("GaussianAttack", honest_grads, base_grad)
        d = batch.d
        sample = np.random.default_rng(self.seed).normal(self.mu, self.sigma, size=d)
        sample = sample.astype(batch.matrix.dtype)
        return batch.restore(batch.xp.asarray(sample))
