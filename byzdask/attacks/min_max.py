"""Min-max and min-sum (Shejwalkar & Houmansadr): the farthest push that stays as close as the honest spread."""

from __future__ import annotations

from typing import Any

from byzdask.aggregators.base import check_f
from byzdask.attacks._common import honest_batch
from byzdask.attacks.base import Attack
from byzdask.errors import ConfigurationError, InputError

__all__ = ["MinMaxAttack", "MinSumAttack", "largest_feasible"]

PERTURBATIONS = ("std", "sign", "unit")
#: Relative width of the bracket at which the bisection stops (the issue asks for 1e-3 or better).
RTOL = 1e-4


def largest_feasible(feasible: Any, *, rtol: float = RTOL, max_steps: int = 200) -> float:
    """The largest gamma >= 0 with ``feasible(gamma)``, for a feasible set [0, gamma*] (``feasible(0)`` holds).

    Doubles from 1 until infeasible (or halves down to a feasible value), then bisects until the
    bracket is narrower than ``rtol`` times its upper end. Returns the feasible end.

    Examples
    --------
    >>> abs(largest_feasible(lambda g: g * g <= 2.0) - 2 ** 0.5) < 1e-3
    True
    """
    lo, hi = 0.0, 1.0
    for _ in range(max_steps):
        if not feasible(hi):
            break
        lo, hi = hi, 2 * hi
    else:
        return lo
    for _ in range(max_steps):
        if hi - lo <= rtol * hi:
            break
        mid = 0.5 * (lo + hi)
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo


class _MinMax(Attack):
    uses_honest_grads = True

    def __init__(self, f: int, perturbation: str = "std") -> None:
        self.f = check_f(f)
        if perturbation not in PERTURBATIONS:
            raise ConfigurationError(f"{type(self).__name__}: perturbation must be one of {PERTURBATIONS}, "
                                     f"got {perturbation!r}")
        self.perturbation = perturbation
        self._repr_params = {"f": self.f, "perturbation": perturbation}

    def _perturbation(self, g: Any, mean: Any, xp: Any) -> Any:
        if self.perturbation == "std":
            if g.shape[0] < 2:
                raise InputError(f"{type(self).__name__}(perturbation='std') needs at least 2 honest vectors, "
                                 f"got {g.shape[0]}")
            return -xp.std(g, axis=0, ddof=1)
        if self.perturbation == "sign":
            return -xp.sign(mean)
        norm = float(xp.linalg.norm(mean))
        return -mean / norm if norm > 0 else xp.zeros_like(mean)

    @staticmethod
    def _sq_dists(g: Any, xp: Any) -> Any:
        sq = (g * g).sum(axis=1)
        return xp.maximum(sq[:, None] + sq[None, :] - 2.0 * (g @ g.T), 0.0)

    def _feasible(self, g: Any, m: Any, pairwise: Any, xp: Any) -> bool:
        raise NotImplementedError

    def gamma(self, honest_grads: Any) -> float:
        """The gamma the bisection picks for ``honest_grads``."""
        batch = honest_batch(honest_grads, type(self).__name__)
        return self._solve(batch.matrix, batch.xp)[0]

    def _solve(self, g: Any, xp: Any) -> tuple[float, Any, Any]:
        mean = g.mean(axis=0)
        p = self._perturbation(g, mean, xp)
        pairwise = self._sq_dists(g.astype("float64"), xp)
        g64, mean64, p64 = g.astype("float64"), mean.astype("float64"), p.astype("float64")
        if not bool(xp.any(p64 != 0)):
            return 0.0, mean, p
        gamma = largest_feasible(lambda t: self._feasible(g64, mean64 + t * p64, pairwise, xp))
        return gamma, mean, p

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return mean + gamma * p, in the family, dtype and shape of ``honest_grads``."""
        batch = honest_batch(honest_grads, type(self).__name__)
        gamma, mean, p = self._solve(batch.matrix, batch.xp)
        return batch.restore(mean + p * p.dtype.type(gamma))


class MinMaxAttack(_MinMax):
    r"""Min-max: the honest mean pushed along p as far as the spread of the honest vectors allows.

    .. math::

        b = \bar g + \gamma^\star p, \qquad
        \gamma^\star = \max\Big\{\gamma \ge 0 : \max_i \|b - g_i\|_2 \le \max_{i,j} \|g_i - g_j\|_2\Big\}

    with p one of ``"std"``: :math:`-\sigma` (coordinate-wise sample standard deviation, ddof=1,
    as the authors' code), ``"sign"``: :math:`-\operatorname{sign}(\bar g)`, ``"unit"``:
    :math:`-\bar g / \|\bar g\|_2`. The feasible set is an interval :math:`[0, \gamma^\star]`
    (a convex function of gamma below a bound it meets at 0), found by doubling then bisection to
    a relative width of 1e-4 (:func:`largest_feasible`). All Byzantine nodes send the same b.

    Parameters
    ----------
    f : int
        The number of Byzantine nodes (>= 0; the attack itself does not depend on it).
    perturbation : {"std", "sign", "unit"}, default "std"

    Notes
    -----
    Preconditions: at least one honest vector (two for ``"std"``). When p = 0 (identical honest
    vectors for "std", a zero mean for "sign" / "unit") the attack sends the mean.

    Cost: the h x h Gram matrix once (O(h^2 d)), then O(h d) per bisection step (about 25).

    References
    ----------
    .. [1] V. Shejwalkar, A. Houmansadr, "Manipulating the Byzantine: optimizing model poisoning
           attacks and defenses for federated learning", NDSS 2021 (the AGR-agnostic min-max attack).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[0.0, 0.0], [2.0, 0.0]])  # mean (1, 0), diameter 2, p = -(sqrt 2, 0)
    >>> x = MinMaxAttack(f=1).gamma(g) * 2 ** 0.5  # b = (1 - x, 0): farthest from (2, 0), 1 + x <= 2
    >>> round(x, 3)
    1.0
    """

    name = "minmax"

    def _feasible(self, g: Any, m: Any, pairwise: Any, xp: Any) -> bool:
        d = g - m
        return bool(float((d * d).sum(axis=1).max()) <= float(pairwise.max()))


class MinSumAttack(_MinMax):
    r"""Min-sum: the honest mean pushed along p while its summed squared distance stays honest-like.

    .. math::

        b = \bar g + \gamma^\star p, \qquad
        \gamma^\star = \max\Big\{\gamma \ge 0 : \sum_i \|b - g_i\|_2^2 \le
        \max_i \sum_j \|g_i - g_j\|_2^2\Big\}

    with p as for :class:`MinMaxAttack` and the same doubling then bisection.

    Parameters
    ----------
    f : int
        The number of Byzantine nodes (>= 0).
    perturbation : {"std", "sign", "unit"}, default "std"

    Notes
    -----
    Preconditions and the p = 0 case as for :class:`MinMaxAttack`.

    Cost: the h x h Gram matrix once (O(h^2 d)), then O(h d) per bisection step.

    References
    ----------
    .. [1] V. Shejwalkar, A. Houmansadr, "Manipulating the Byzantine: optimizing model poisoning
           attacks and defenses for federated learning", NDSS 2021 (the AGR-agnostic min-sum attack).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[0.0, 0.0], [2.0, 1.0], [4.0, 2.0]])
    >>> b = MinSumAttack(f=1).apply(honest_grads=g)
    >>> bound = max(sum(((gi - gj) ** 2).sum() for gj in g) for gi in g)
    >>> bool(abs(((b - g) ** 2).sum() - bound) < 1e-3 * bound)
    True
    """

    name = "minsum"

    def _feasible(self, g: Any, m: Any, pairwise: Any, xp: Any) -> bool:
        d = g - m
        return bool(float((d * d).sum()) <= float(pairwise.sum(axis=1).max()))
