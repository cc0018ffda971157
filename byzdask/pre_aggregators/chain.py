"""Composition: pre-aggregators in sequence, and pre-aggregators followed by a robust rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from byzdask.aggregators.base import Aggregator, Prepared
from byzdask.errors import ConfigurationError
from byzdask.kernels.arrays import Batch, as_batch
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["PreAggregatorChain", "RobustAggregator", "chain"]


def _check_steps(steps: Iterable[Any], owner: str) -> tuple[PreAggregator, ...]:
    steps = tuple(steps)
    for i, step in enumerate(steps):
        if not isinstance(step, PreAggregator):
            raise ConfigurationError(
                f"{owner}: step {i} must be a PreAggregator (e.g. Clipping(), NearestNeighborMixing(f)), "
                f"got {type(step).__name__}"
            )
    return steps


class PreAggregatorChain(PreAggregator):
    r"""Several pre-aggregators applied one after the other: itself a pre-aggregator.

    .. math:: T = T_k \circ \dots \circ T_2 \circ T_1

    Parameters
    ----------
    *pre_aggregators : PreAggregator
        At least one; applied left to right. Each keeps its own parameters (pass NNM's and ARC's
        f explicitly).

    Notes
    -----
    Pipelines of this kind are how ByzFL runs a list of pre-aggregators before a rule, e.g. NNM
    then a robust rule, or ARC then NNM.

    Preconditions: those of each step, on the number of vectors that step receives (Bucketing
    reduces it).

    Non-finite inputs: as each step documents; Clipping, ARC and NNM pass such vectors through
    unchanged, Bucketing makes their bucket non-finite.

    Cost: the sum of the steps' costs; no extra copy between steps, the input is never
    modified.

    References
    ----------
    .. [1] Y. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by
           Mixing: A Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS 2023 (NNM
           before a robust rule).

    .. [2] Y. Allouah et al., "Boosting robustness by clipping gradients in distributed
           learning", 2024 (ARC before NNM).

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.pre_aggregators import Clipping, NearestNeighborMixing
    >>> steps = PreAggregatorChain(Clipping(threshold=1.0), NearestNeighborMixing(f=1))
    >>> out = steps.pre_aggregate(np.array([[0.5, 0.0], [0.0, 0.5], [30.0, 40.0]]))
    >>> out.shape
    (3, 2)
    """

    name = "pre_aggregator_chain"

    def __init__(self, *pre_aggregators: PreAggregator) -> None:
        if not pre_aggregators:
            raise ConfigurationError("PreAggregatorChain needs at least one pre-aggregator, got none")
        self.steps = _check_steps(pre_aggregators, "PreAggregatorChain")
        self._repr_params = {"steps": self.steps}

    def __repr__(self) -> str:
        return f"PreAggregatorChain({', '.join(map(repr, self.steps))})"

    def transform(self, matrix: Any, xp: Any) -> Any:
        """Apply every step's transform in order."""
        for step in self.steps:
            matrix = step.transform(matrix, xp)
        return matrix


class RobustAggregator(Aggregator):
    r"""An aggregation rule preceded by pre-aggregators: pre-aggregate, then aggregate.

    .. math:: \operatorname{out} = F\big(T_k \circ \dots \circ T_1 (x_1, \dots, x_n)\big)

    An :class:`~byzdask.aggregators.base.Aggregator` itself (``kind = "direct"``), so it goes
    wherever a rule goes (a parameter server, a peer-to-peer node, a sweep).

    Parameters
    ----------
    aggregator : Aggregator
        The rule F, e.g. ``CoordinateWiseTrimmedMean(f)``.
    pre_aggregators : PreAggregator or sequence of PreAggregator, default ()
        T_1, ..., T_k, applied in order. Their own f (NNM, ARC) are given explicitly by the user.

    Attributes
    ----------
    f : int or None
        The rule's f.

    Notes
    -----
    This is the pre-aggregation pipeline of ByzFL.

    Preconditions: those of each pre-aggregator on n, and those of the rule on the number of
    vectors the pre-aggregators output; :meth:`max_f` is the rule's.

    Non-finite inputs: the pre-aggregators see every vector (Clipping, ARC and NNM pass
    non-finite vectors through, Bucketing makes their bucket non-finite); the rule then drops
    the non-finite vectors as Byzantine, up to its f, so with at most f such inputs (at most
    the pre-aggregators' f too) the output is finite.

    Cost: the pre-aggregators' costs plus the rule's; no fan-out (the rule runs on the
    pre-aggregated vectors in one piece).

    References
    ----------
    .. [1] Y. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by
           Mixing: A Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS 2023 (NNM
           before a robust rule).

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.aggregators import Average
    >>> from byzdask.pre_aggregators import NearestNeighborMixing
    >>> rule = RobustAggregator(Average(), pre_aggregators=[NearestNeighborMixing(f=1)])
    >>> round(float(rule.aggregate(np.array([[0.0], [1.0], [2.0], [100.0]]))[0]), 4)  # (1+1+1+34.33)/4
    9.3333
    """

    name = "robust_aggregator"
    kind = "direct"
    drops_nonfinite = False  # the rule drops them, after the pre-aggregators

    def __init__(self, aggregator: Aggregator, pre_aggregators: PreAggregator | Iterable[PreAggregator] = ()) -> None:
        if not isinstance(aggregator, Aggregator):
            raise ConfigurationError(
                f"RobustAggregator: aggregator must be an Aggregator (e.g. CoordinateWiseMedian()), "
                f"got {type(aggregator).__name__}"
            )
        if isinstance(pre_aggregators, PreAggregator):
            pre_aggregators = (pre_aggregators,)
        if not isinstance(pre_aggregators, Iterable):
            raise ConfigurationError(
                f"RobustAggregator: pre_aggregators must be a PreAggregator or a sequence of them, "
                f"got {type(pre_aggregators).__name__}"
            )
        self.aggregator = aggregator
        self.pre_aggregators = _check_steps(pre_aggregators, "RobustAggregator")
        self.f = aggregator.f
        self._repr_params = {"aggregator": aggregator, "pre_aggregators": self.pre_aggregators}

    def max_f(self, n: int) -> int:
        """The rule's tolerance (for n vectors reaching it)."""
        return self.aggregator.max_f(n)

    def prepare(self, gradients: Any) -> Prepared:
        """Stack the inputs only: the rule checks n and drops non-finite rows after pre-aggregation."""
        batch = gradients if isinstance(gradients, Batch) else as_batch(gradients, what="gradients")
        return Prepared(batch=batch, matrix=batch.matrix, f=self.f, dropped=0)

    def aggregate_matrix(self, prep: Prepared) -> Any:
        """Run the pre-aggregators, then the rule, on the stacked inputs."""
        xp = prep.batch.xp
        matrix = prep.matrix
        for step in self.pre_aggregators:
            matrix = step.transform(matrix, xp)
        inner = self.aggregator.prepare(dataclasses.replace(prep.batch, matrix=matrix))
        return self.aggregator.aggregate_matrix(inner)


def chain(*steps: Any) -> PreAggregatorChain | RobustAggregator:
    """Compose pre-aggregators, optionally ending with an aggregation rule.

    ``chain(T1, T2)`` is ``PreAggregatorChain(T1, T2)``; ``chain(T1, T2, F)`` with F an
    :class:`~byzdask.aggregators.base.Aggregator` is ``RobustAggregator(F, (T1, T2))``.

    Raises
    ------
    ConfigurationError
        No steps, an aggregator anywhere but last, or a step that is neither.

    Examples
    --------
    >>> from byzdask.aggregators import Average
    >>> from byzdask.pre_aggregators import Clipping
    >>> chain(Clipping(1.0), Average())
    RobustAggregator(aggregator=Average(), pre_aggregators=(Clipping(threshold=1.0),))
    """
    if not steps:
        raise ConfigurationError("chain() needs at least one step, got none")
    if isinstance(steps[-1], Aggregator):
        return RobustAggregator(steps[-1], steps[:-1])
    return PreAggregatorChain(*steps)
