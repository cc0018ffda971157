"""Attacks whose strength is searched against the defender's own rule (ByzFL's optimal IPM and ALIE)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from byzdask.aggregators.base import Aggregator, check_f
from byzdask.attacks._common import check_real, honest_batch
from byzdask.attacks.base import Attack
from byzdask.errors import ConfigurationError, InputError
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["OptimalEmpireAttack", "OptimalLittleAttack", "line_search"]


def line_search(objective: Callable[[float], float], *, evals: int = 20, start: float = 0.0, delta: float = 10.0,
                ratio: float = 0.8) -> float:
    """The factor with the largest ``objective`` found by ByzFL's expand-then-contract search.

    Evaluate ``start``; expansion: try ``best + delta``, keep it and double ``delta`` while it is
    strictly better, else multiply ``delta`` by ``ratio`` and stop; contraction: try ``best + delta``,
    keep it when strictly better, multiply ``delta`` by ``ratio``; ``evals`` evaluations in all.

    Examples
    --------
    >>> line_search(lambda t: -(t - 3.0) ** 2, evals=40) > 2.9
    True
    """
    best_x, best_y = start, objective(start)
    left = evals - 1
    while left > 0:
        x = best_x + delta
        y = objective(x)
        left -= 1
        if y > best_y:
            best_x, best_y = x, y
            delta *= 2
        else:
            delta *= ratio
            break
    while left > 0:
        x = best_x + delta
        y = objective(x)
        left -= 1
        if y > best_y:
            best_x, best_y = x, y
        delta *= ratio
    return best_x


class _Optimal(Attack):
    uses_honest_grads = True
    uses_defence = True
    _min_honest = 1

    def __init__(self, aggregator: Aggregator, pre_aggregators: Sequence[PreAggregator] = (), f: int = 1,
                 evals: int = 20, start: float = 0.0, delta: float = 10.0, ratio: float = 0.8) -> None:
        who = type(self).__name__
        if not callable(getattr(aggregator, "aggregate", None)):
            raise ConfigurationError(f"{who}: aggregator must be a byzdask Aggregator (the defender's rule), "
                                     f"got {aggregator!r}")
        pre = tuple(pre_aggregators) if isinstance(pre_aggregators, (list, tuple)) else None
        if pre is None or not all(callable(getattr(p, "pre_aggregate", None)) for p in pre):
            raise ConfigurationError(f"{who}: pre_aggregators must be a sequence of byzdask PreAggregators, "
                                     f"got {pre_aggregators!r}")
        if isinstance(evals, bool) or not isinstance(evals, (int, np.integer)) or evals < 1:
            raise ConfigurationError(f"{who}: evals must be an integer >= 1, got {evals!r}")
        self.aggregator, self.pre_aggregators, self.f = aggregator, pre, check_f(f)
        self.evals = int(evals)
        self.start = check_real(start, "start", who)
        self.delta = check_real(delta, "delta", who)
        if self.delta == 0:
            raise ConfigurationError(f"{who}: delta must be a non-zero number, got {delta!r}")
        self.ratio = check_real(ratio, "ratio", who)
        if not 0.5 < self.ratio < 1:
            raise ConfigurationError(f"{who}: ratio must lie strictly between 0.5 and 1, got {ratio!r}")
        self._repr_params = {"aggregator": aggregator, "pre_aggregators": list(pre), "f": self.f,
                             "evals": self.evals, "start": self.start, "delta": self.delta, "ratio": self.ratio}

    def vector_for(self, g: Any, mean: Any, tau: float) -> Any:
        """The Byzantine vector for factor ``tau`` ((h, d) honest matrix ``g``, its mean)."""
        raise NotImplementedError

    def damage(self, g: Any, mean: Any, tau: float) -> float:
        """``||aggregate(pre(H + f copies of the vector for tau)) - mean(H)||``."""
        b = self.vector_for(g, mean, tau)
        stacked = g if self.f == 0 else np.concatenate([g, np.broadcast_to(b, (self.f, b.shape[0]))], axis=0)
        vectors: Any = stacked
        for pre in self.pre_aggregators:
            vectors = pre.pre_aggregate(vectors)
        return float(np.linalg.norm(self.aggregator.aggregate(vectors) - mean))

    def tau(self, honest_grads: Any) -> float:
        """The factor the search picks for ``honest_grads``."""
        return self._search(self._batch(honest_grads).matrix)[0]

    def _search(self, g: Any) -> tuple[float, Any]:
        mean = g.mean(axis=0)
        return line_search(lambda t: self.damage(g, mean, t), evals=self.evals, start=self.start, delta=self.delta,
                           ratio=self.ratio), mean

    def _batch(self, honest_grads: Any) -> Any:
        who = type(self).__name__
        batch = honest_batch(honest_grads, who)
        if batch.n < self._min_honest:
            raise InputError(f"{who} needs at least {self._min_honest} honest vectors, got {batch.n}")
        if batch.xp is not np:
            raise InputError(f"{who} searches on the host: pass numpy arrays or CPU torch tensors, got "
                             f"{batch.family} on {batch.device}")
        return batch

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return the vector for the searched factor, in the family, dtype and shape of ``honest_grads``."""
        batch = self._batch(honest_grads)
        tau, mean = self._search(batch.matrix)
        return batch.restore(self.vector_for(batch.matrix, mean, tau))


class OptimalEmpireAttack(_Optimal):
    r"""The inner product manipulation attack with its factor searched against the defence.

    .. math::

        b(\tau) = -\tau \, \bar g, \qquad
        \tau^\star = \arg\max_\tau \left\| A\big(P(g_1, \dots, g_h, \underbrace{b(\tau), \dots,
        b(\tau)}_{f})\big) - \bar g \right\|_2

    with :math:`\bar g` the mean of the h honest vectors, A the defender's rule and P its
    pre-aggregators applied in order. The arg max is approximated by :func:`line_search`
    (ByzFL's expansion then contraction, ``evals`` evaluations of the objective).

    Parameters
    ----------
    aggregator : Aggregator
        The defender's rule (``byzdask train`` and sweeps pass the run's own).
    pre_aggregators : sequence of PreAggregator, default ()
        The defender's pre-aggregators (ByzFL's default is ``[Clipping()]``; here none).
    f : int, default 1
        The number of Byzantine copies in the objective (>= 0).
    evals : int, default 20
        Evaluations of the objective (>= 1).
    start, delta : float, default 0.0, 10.0
        First factor and first step (delta non-zero).
    ratio : float, default 0.8
        Contraction of the step, in (0.5, 1).

    Notes
    -----
    Reproduces ByzFL 0.0.11's ``Optimal_InnerProductManipulation`` (same inputs, same defender,
    same search parameters); a test compares the two when ``byzfl`` is importable.

    Preconditions: at least one honest vector on the host (numpy or CPU torch); the defender
    must accept h + f inputs.

    Cost: ``evals`` runs of the pre-aggregators and the rule on h + f vectors of length d.

    References
    ----------
    .. [1] C. Xie, O. Koyejo, I. Gupta, "Fall of empires: breaking Byzantine-tolerant SGD by
           inner product manipulation", UAI 2019.

    .. [2] Y. Allouah et al., "Fixing by mixing: a recipe for optimal Byzantine ML under
           heterogeneity", AISTATS 2023 (the searched factor; ByzFL's implementation).

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.aggregators import Krum
    >>> g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [2.0, 2.0, 2.0]])
    >>> attack = OptimalEmpireAttack(Krum(f=1), f=1)
    >>> round(attack.tau(g), 4), np.round(attack.apply(honest_grads=g), 4).tolist()
    (0.4398, [-1.5393, -1.8692, -2.199])
    """

    name = "empire-opt"

    def vector_for(self, g: Any, mean: Any, tau: float) -> Any:
        return mean * (-tau)


class OptimalLittleAttack(_Optimal):
    r"""The 'a little is enough' attack with its factor searched against the defence.

    .. math::

        b(\tau) = \bar g + \tau \, \sigma, \qquad
        \tau^\star = \arg\max_\tau \left\| A\big(P(g_1, \dots, g_h, \underbrace{b(\tau), \dots,
        b(\tau)}_{f})\big) - \bar g \right\|_2

    with :math:`\sigma_j = \sqrt{\tfrac{1}{h-1}\sum_i (g_{ij} - \bar g_j)^2}` the sample standard
    deviation of coordinate j (as ByzFL), A the defender's rule, P its pre-aggregators, and the
    arg max approximated by :func:`line_search`.

    Parameters
    ----------
    aggregator, pre_aggregators, f, evals, start, delta, ratio
        As for :class:`OptimalEmpireAttack`.

    Notes
    -----
    Reproduces ByzFL 0.0.11's ``Optimal_ALittleIsEnough``; a test compares the two when
    ``byzfl`` is importable.

    Preconditions: at least two honest vectors (the sample deviation), on the host.

    Cost: ``evals`` runs of the pre-aggregators and the rule on h + f vectors of length d.

    References
    ----------
    .. [1] G. Baruch, M. Baruch, Y. Goldberg, "A little is enough: circumventing defenses for
           distributed learning", NeurIPS 2019.

    .. [2] Y. Allouah et al., "Fixing by mixing", AISTATS 2023 (ByzFL's searched factor).

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.aggregators import CoordinateWiseTrimmedMean
    >>> g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    >>> attack = OptimalLittleAttack(CoordinateWiseTrimmedMean(f=1), f=1)
    >>> float(np.round(attack.tau(g), 4)), attack.apply(honest_grads=g).shape
    (10.0, (3,))
    """

    name = "little-opt"
    _min_honest = 2

    def vector_for(self, g: Any, mean: Any, tau: float) -> Any:
        return mean + np.sqrt(np.var(g, axis=0, ddof=1)) * tau
