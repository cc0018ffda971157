"""RFA: robust federated aggregation, a named preset of the smoothed Weiszfeld geometric median."""

from __future__ import annotations

from byzdask.aggregators.geometric_wise.geometric_median import GeometricMedian, _count, _real

__all__ = ["RFA"]


class RFA(GeometricMedian):
    r"""RFA (robust federated aggregation): T smoothed Weiszfeld steps from the mean.

    With uniform weights, :math:`z_0 = \frac{1}{n}\sum_i x_i` and, T times,

    .. math::

        \beta_i = \frac{1}{\max(\nu, \|z_t - x_i\|)}, \qquad
        z_{t+1} = \frac{\sum_i \beta_i x_i}{\sum_i \beta_i}

    (the smoothed Weiszfeld algorithm of [1]_, Algorithm 2 with its eq. (8) for the weights). It is
    :class:`~byzdask.aggregators.GeometricMedian` with ``init="mean", max_iter=T, tol=0,
    eps=nu``, under the name users of the paper look for; the authors report that a few
    iterations (T = 3) suffice in practice.

    Few steps are not the geometric median: each step divides the pull of far vectors by about
    the ratio of their distance to that of the others, so with T = 3 vectors far enough away
    still move the output (measured: 6 vectors of spread 0.1 and 5 of norm about 5e6 give an
    output 1.3e5 from the 6 vectors' mean with T = 3, 0.26 with T = 30). Raise T, or use
    :class:`~byzdask.aggregators.GeometricMedian` with its tolerance, against such inputs.

    Parameters
    ----------
    nu : float, default 1e-6
        Smoothing: the floor on the distances (absolute), > 0.
    T : int, default 3
        Number of Weiszfeld steps, >= 0 (0 returns the mean).

    Notes
    -----
    Preconditions, non-finite inputs and cost are those of
    :class:`~byzdask.aggregators.GeometricMedian`: breakdown point 1/2 (:meth:`max_f` is
    (n - 1) // 2, no f taken), up to that many vectors with NaN or Inf dropped first; one
    centred Gram matrix, O(T n^2) for the steps, one pass for the output.

    References
    ----------
    .. [1] K. Pillutla, S. M. Kakade, Z. Harchaoui, "Robust aggregation for federated learning",
           IEEE Trans. Signal Process. 70, 2022.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [100.0, 100.0]])
    >>> np.round(RFA().aggregate(x), 4)
    array([1.7362, 1.7362])
    >>> np.round(RFA(T=0).aggregate(x), 4)  # the mean
    array([20.8, 20.8])
    """

    name = "rfa"

    def __init__(self, nu: float = 1e-6, T: int = 3) -> None:
        super().__init__(tol=0.0, max_iter=_count(T, "T"), eps=_real(nu, "nu", positive=True), init="mean")
        self.nu, self.T = self.eps, self.max_iter
        self._repr_params = {"nu": self.nu, "T": self.T}
