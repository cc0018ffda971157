"""Nearest neighbour mixing (NNM): replace each vector by the mean of its n - f nearest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from byzdask.aggregators.base import check_f
from byzdask.engine.graph.operator import OpContext
from byzdask.engine.graph.subtask import SubTask
from byzdask.errors import NonFiniteError, ToleranceError
from byzdask.kernels.arrays import Batch, as_batch
from byzdask.kernels.blocks import FANOUT_MIN_COLUMNS, column_blocks
from byzdask.kernels.gram import gram_is_sound, gram_matrix, gram_partial, safe_gram, sound_rows, sq_distances
from byzdask.kernels.prepro import mix_rows, nearest_mask
from byzdask.kernels.selection import tie_rtol, tie_tolerance
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["NearestNeighborMixing"]


class NearestNeighborMixing(PreAggregator):
    r"""Replace each vector by the mean of its n - f nearest vectors, itself included.

    .. math::

        y_i = \frac{1}{n - f} \sum_{j \in N_i} x_j, \qquad
        N_i = \text{the } n - f \text{ indices } j \text{ of smallest } \lVert x_i - x_j \rVert_2

    Row i is always in its own neighbourhood N_i; ties at the (n - f)-th distance (within the
    round-off of the input's dtype, :func:`~byzdask.kernels.selection.tie_rtol`) go to the
    lower index. The output has as many vectors as the input.

    Parameters
    ----------
    f : int
        The number of Byzantine vectors to expect; 0 <= f < n at the call. Pass the same f as
        the rule that follows.

    Notes
    -----
    Definition as in ByzFL 0.0.11 (``NNM``).

    Preconditions: f < n (:class:`~byzdask.errors.ToleranceError` otherwise).

    Non-finite inputs: vectors holding NaN or Inf, or whose squared norm does not fit float64
    (:func:`~byzdask.kernels.gram.sound_rows`), are treated as Byzantine. They are never
    chosen as a neighbour of a finite vector (the finite ones mix among the n - r finite
    vectors, with n and f reduced together, which keeps n - f neighbours), and they are passed
    through unchanged, for the rule that follows to drop. More than f of them raise
    :class:`~byzdask.errors.NonFiniteError`.

    Cost: one centred Gram matrix (an n x n x d matrix product, accumulated in float64, see
    :mod:`byzdask.kernels.gram`), a partition per row of the n x n distances, and one (n x n)
    by (n x d) product for the output; the input is never modified. Fan-out: one Gram partial
    per column block (:meth:`create_subtasks`), summed in :meth:`reduce_subtasks`.

    References
    ----------
    .. [1] Y. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by
           Mixing: A Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS 2023.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [100.0]])
    >>> NearestNeighborMixing(f=1).pre_aggregate(x).ravel().round(4).tolist()
    [1.0, 1.0, 1.0, 34.3333]
    """

    name = "nnm"
    supports_subtasks = True

    def __init__(self, f: int) -> None:
        self.f = check_f(f)
        self._repr_params = {"f": self.f}

    # -- helpers -------------------------------------------------------------------------
    def _finite(self, matrix: Any, xp: Any) -> tuple[Any, Any, int]:
        n = int(matrix.shape[0])
        if self.f >= n:
            raise ToleranceError(f"NearestNeighborMixing needs f < n; got f={self.f} with n={n} vectors")
        ok = sound_rows(matrix, xp)
        r = n - int(ok.sum())
        if r > self.f:
            raise NonFiniteError(
                f"NearestNeighborMixing: {r} of {n} input vectors hold NaN or Inf or have a squared norm beyond "
                f"float64, more than the f={self.f} it can treat as Byzantine"
            )
        return ok, (matrix[ok] if r else matrix), r

    def _mix(self, gram: Any, matrix: Any, ok: Any, finite: Any, r: int, xp: Any) -> Any:
        m = int(finite.shape[0])
        rtol = tie_rtol(finite.dtype)
        if not gram_is_sound(gram, finite.dtype, xp):
            gram, rtol = safe_gram(finite, None, xp), tie_rtol(xp.float64)
        dist = sq_distances(gram, xp)[:m, :m]
        tol = tie_tolerance(dist, rtol=rtol) if xp is np else 0.0
        mask = nearest_mask(dist, m - (self.f - r), xp, tol=tol)
        mixed = mix_rows(mask / float(m - (self.f - r)), finite, xp)
        if not r:
            return mixed
        out = matrix.copy()
        out[ok] = mixed
        return out

    # -- direct path ---------------------------------------------------------------------
    def transform(self, matrix: Any, xp: Any) -> Any:
        """(n, d) -> (n, d): each finite row replaced by the mean of its n - f nearest finite rows."""
        ok, finite, r = self._finite(matrix, xp)
        return self._mix(gram_matrix(finite, None, xp), matrix, ok, finite, r, xp)

    # -- fan-out -------------------------------------------------------------------------
    def create_subtasks(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Sequence[SubTask]:
        """One centred Gram partial per column block of the finite rows.

        The number of blocks comes from ``context.metadata["n_blocks"]`` when given, else one
        block per 2**18 columns.
        """
        batch = as_batch(self._require(inputs, self.input_keys[0]), what="vectors")
        xp = batch.xp
        _, finite, _ = self._finite(batch.matrix, xp)
        d = int(finite.shape[1])
        meta = dict(context.metadata) if context is not None else {}
        n_blocks = meta.get("n_blocks") or max(1, d // FANOUT_MIN_COLUMNS)
        return [
            SubTask(gram_partial, args=(xp.ascontiguousarray(finite[:, sl]), None, xp), name=f"{self.name}-gram-{i}")
            for i, sl in enumerate(column_blocks(d, n_blocks=int(n_blocks)))
        ]

    def reduce_subtasks(self, partials: Sequence[Any], inputs: Mapping[str, Any], *,
                        context: OpContext | None = None) -> Any:
        """Sum the Gram partials, choose the neighbours, and mix (the user's form, as :meth:`pre_aggregate`)."""
        vectors = self._require(inputs, self.input_keys[0])
        batch = vectors if isinstance(vectors, Batch) else as_batch(vectors, what="vectors")
        xp = batch.xp
        ok, finite, r = self._finite(batch.matrix, xp)
        gram = partials[0]
        for part in partials[1:]:
            gram = gram + part
        return batch.restore_rows(self._mix(gram, batch.matrix, ok, finite, r, xp))
