"""Base class of the pre-aggregators: maps from n vectors to m vectors, run before a rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from byzdask.engine.graph.operator import OpContext, Operator
from byzdask.kernels.arrays import Batch, as_batch

__all__ = ["PreAggregator"]


class PreAggregator(Operator):
    """Transform n vectors into m vectors (m = n for most, fewer for bucketing).

    :meth:`pre_aggregate` takes a sequence of same-shaped vectors (numpy, torch, cupy) or one
    stacked array and returns the same form: a list for a sequence, a stacked array for a
    stacked array, in the inputs' family, dtype, device and per-vector shape. Inputs are never
    modified in place.

    Subclasses implement :meth:`transform` on an (n, d) matrix in namespace ``xp``.
    """

    name = "pre_aggregator"
    input_keys = ("vectors",)

    def pre_aggregate(self, vectors: Any) -> Any:
        """Apply the pre-aggregation to ``vectors``."""
        batch = vectors if isinstance(vectors, Batch) else as_batch(vectors, what="vectors")
        return batch.restore_rows(self.transform(batch.matrix, batch.xp))

    def __call__(self, vectors: Any) -> Any:
        return self.pre_aggregate(vectors)

    def transform(self, matrix: Any, xp: Any) -> Any:
        """(n, d) -> (m, d) on finite or non-finite rows; must not write into ``matrix``."""
        raise NotImplementedError

    def compute(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        return self.pre_aggregate(self._require(inputs, self.input_keys[0]))
