"""Base class of the aggregation rules.

A rule is written once, on an (m, d) matrix of finite rows in a numpy-like namespace ``xp``
(numpy or cupy), by one of three routes:

``kind = "columnwise"``
    implement :meth:`Aggregator.column_kernel` (an (m, b) block -> (b,)); the base class runs it
    over cache-sized column blocks, and fans out over larger blocks.
``kind = "gram"``
    implement :meth:`Aggregator.gram_weights` (an augmented (m+1+k)-square Gram matrix -> weights
    over the same rows, see :mod:`byzdask.kernels.gram`); the base class builds the Gram matrix
    in one pass, and outputs the weighted sum of the inputs. Optional :meth:`extra_rows` adds
    anchor rows (a previous aggregate, a coordinate-wise median).
``kind = "direct"``
    implement :meth:`Aggregator.aggregate_matrix` directly (no fan-out).

The base class stacks the inputs, drops the rows that hold NaN or Inf (at most the rule's f of
them, see :meth:`Aggregator.prepare`; gram rules also drop the rows whose squared norm does not
fit float64, :func:`~byzdask.kernels.gram.sound_rows`, and build their Gram matrix in float64 when
the input's dtype overflows, :func:`~byzdask.kernels.gram.safe_gram`), checks the rule's preconditions, and gives the output
the family, dtype, device and shape of the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from byzdask.engine.graph.operator import OpContext, Operator
from byzdask.engine.graph.subtask import SubTask
from byzdask.errors import ConfigurationError, NonFiniteError, ToleranceError
from byzdask.kernels.arrays import Batch, as_batch, finite_rows
from byzdask.kernels.blocks import FANOUT_MIN_COLUMNS, column_blocks, kernel_blocks
from byzdask.kernels.gram import combine, gram_is_sound, gram_matrix, gram_partial, safe_gram, sound_rows
from byzdask.kernels.selection import ties_for

__all__ = ["Aggregator", "Prepared", "check_f", "chunk_block_count"]


def check_f(f: Any, *, name: str = "f", allow_none: bool = False) -> int | None:
    """Validate a number of Byzantine inputs: a non-negative integer (or None when allowed)."""
    if f is None and allow_none:
        return None
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 0:
        raise ConfigurationError(f"{name} must be a non-negative integer, got {f!r}")
    return int(f)


@dataclass
class Prepared:
    """Inputs ready for a kernel: the finite rows and the f left for them."""

    batch: Batch
    matrix: Any  # (m, d) finite rows
    f: int | None  # f reduced by the number of dropped rows (None for rules without f)
    dropped: int
    extra: Any | None = None  # (k, d) anchor rows of gram rules
    #: False when the rows were not checked for NaN/Inf yet (gram rules inside :meth:`Aggregator.aggregate`)
    checked: bool = True


#: The gram rule whose :meth:`Aggregator.aggregate` is running :meth:`Aggregator.prepare`: its rows are
#: checked for NaN/Inf on the Gram matrix itself (no separate pass), see :meth:`Aggregator.aggregate_matrix`.
_DEFER_FINITE: ContextVar[Any] = ContextVar("byzdask_defer_finite", default=None)


class Aggregator(Operator):
    """Combine n vectors into one, robustly.

    Call :meth:`aggregate` with a sequence of same-shaped vectors (numpy, torch, cupy) or one
    stacked array; the result has the inputs' family, dtype, device and per-vector shape.
    """

    name = "aggregator"
    input_keys = ("gradients",)
    kind = "direct"
    #: Whether rows with NaN/Inf are dropped (as Byzantine) before the rule runs.
    drops_nonfinite = True
    #: Whether the rule forms squared norms or distances (every gram rule does; some direct ones,
    #: e.g. Bulyan, DnC): a row whose squared norm is beyond float64 is then faulty like a NaN row.
    uses_distances = False
    #: f of rules that take one; None for rules without (their tolerance is :meth:`max_f`).
    f: int | None = None
    #: Column-block width of the fan-out (ByzPy's ``chunk_size``); None lets the rule choose.
    chunk_size: int | None = None

    @staticmethod
    def check_chunk_size(chunk_size: Any) -> int | None:
        """Validate ``chunk_size``: None or an integer >= 1 (the widest column block of a subtask)."""
        if chunk_size is None:
            return None
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be None or an integer >= 1, got {chunk_size!r}")
        return int(chunk_size)

    # -- preconditions -------------------------------------------------------------------
    def max_f(self, n: int) -> int:
        """The largest number of Byzantine inputs this rule tolerates among ``n`` (default: n > 2f)."""
        return max(0, (int(n) - 1) // 2)

    def min_n(self, f: int) -> int:
        """The smallest n for which this rule tolerates ``f`` Byzantine inputs.

        A bisection on :meth:`max_f` (non-decreasing in n): O(log f) calls, so any f, even 10**18,
        answers at once.

        Examples
        --------
        >>> from byzdask.aggregators import Krum
        >>> Krum(f=1).min_n(10**18) == 2 * 10**18 + 3
        True
        """
        f = int(f)
        if self.max_f(1) >= f:
            return 1
        lo, hi = 1, 2
        while self.max_f(hi) < f:  # max_f(lo) < f <= max_f(hi) once it stops
            lo, hi = hi, 2 * hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.max_f(mid) < f else (lo, mid)
        return hi

    def check_n(self, n: int) -> None:
        """Raise :class:`ToleranceError` when the rule cannot run on ``n`` inputs with its f."""
        if self.f is not None and self.f > self.max_f(n):
            raise ToleranceError(
                f"{type(self).__name__} needs n >= {self.min_n(self.f)} for f={self.f}; got n={n} "
                f"(with n={n} it tolerates at most f={self.max_f(n)})"
            )

    # -- the public calls ----------------------------------------------------------------
    def aggregate(self, gradients: Any) -> Any:
        """Aggregate ``gradients`` (a sequence of same-shaped vectors, or one stacked array).

        Returns
        -------
        array
            One vector of the inputs' family, dtype, device and shape.
        """
        if self.kind == "gram" and self.drops_nonfinite:
            token = _DEFER_FINITE.set(self)
            try:
                prep = self.prepare(gradients)
            finally:
                _DEFER_FINITE.reset(token)
        else:
            prep = self.prepare(gradients)
        out = self.aggregate_matrix(prep)
        return prep.batch.restore(out)

    def __call__(self, gradients: Any) -> Any:
        return self.aggregate(gradients)

    def compute(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        return self.aggregate(self._require(inputs, self.input_keys[0]))

    # -- shared machinery ----------------------------------------------------------------
    def prepare(self, gradients: Any) -> Prepared:
        """Stack the inputs, check preconditions, drop the non-finite rows (at most f of them).

        Raises
        ------
        NonFiniteError
            When more rows hold NaN or Inf than the rule can treat as Byzantine.
        """
        batch = _batch_of(gradients)
        n = batch.n
        self.check_n(n)
        matrix, f, dropped = batch.matrix, self.f, 0
        if self.drops_nonfinite and _DEFER_FINITE.get() is self:
            # aggregate() of a gram rule: a non-finite row makes the Gram matrix non-finite, which
            # aggregate_matrix checks (and then prepares again, with this check)
            prep = Prepared(batch=batch, matrix=matrix, f=f, dropped=0, checked=False)
            prep.extra = self.extra_rows(matrix, f, batch.xp)
            return prep
        if self.drops_nonfinite:
            gram = self.kind == "gram" or self.uses_distances
            ok = sound_rows(matrix, batch.xp) if gram else finite_rows(matrix, batch.xp)
            dropped = int(n - int(ok.sum()))
            if dropped:
                allowed = self.f if self.f is not None else self.max_f(n)
                if dropped > allowed:
                    what = "hold NaN or Inf or have a squared norm beyond float64" if gram else "hold NaN or Inf"
                    raise NonFiniteError(
                        f"{type(self).__name__}: {dropped} of {n} input vectors {what}, "
                        f"more than the {allowed} it can treat as Byzantine"
                    )
                matrix = matrix[ok]
                f = None if self.f is None else self.f - dropped
        prep = Prepared(batch=batch, matrix=matrix, f=f, dropped=dropped)
        if self.kind == "gram":
            prep.extra = self.extra_rows(matrix, f, batch.xp)
        return prep

    def aggregate_matrix(self, prep: Prepared) -> Any:
        """The rule on finite rows: returns a (d,) vector in ``prep.batch.xp``."""
        xp = prep.batch.xp
        if self.kind == "columnwise":
            x = prep.matrix
            out = xp.empty(x.shape[1], dtype=x.dtype)
            for sl in kernel_blocks(x.shape[1], n_rows=x.shape[0], itemsize=x.dtype.itemsize, xp=xp):
                out[sl] = _column_block(self, x[:, sl], prep.f, xp)
            return out
        if self.kind == "gram":
            gram = gram_matrix(prep.matrix, prep.extra, xp)
            dtype = prep.matrix.dtype
            if not gram_is_sound(gram, dtype, xp):
                # a row holds NaN/Inf, or the products over/underflow the input's dtype: drop the
                # faulty rows as prepare() does, and build the matrix again in float64
                if not prep.checked:
                    prep = self.prepare(prep.batch)
                gram, dtype = safe_gram(prep.matrix, prep.extra, xp), np.dtype(np.float64)
            with ties_for(dtype):
                weights = self.gram_weights(gram, prep.matrix.shape[0], prep.f, xp)
            return self.finish(combine(prep.matrix, weights, prep.extra, xp))
        raise NotImplementedError(f"{type(self).__name__} must implement aggregate_matrix")

    def finish(self, out: Any) -> Any:
        """Hook run on a gram rule's output before it is returned (stateful rules record it)."""
        return out

    # -- hooks of the routes ------------------------------------------------------------
    def column_kernel(self, block: Any, f: int | None, xp: Any) -> Any:
        """columnwise rules: (m, b) finite block -> (b,) aggregate."""
        raise NotImplementedError

    def gram_weights(self, gram: Any, m: int, f: int | None, xp: Any) -> Any:
        """gram rules: augmented Gram (m+1+k square, float64) -> weights over the same rows."""
        raise NotImplementedError

    def extra_rows(self, matrix: Any, f: int | None, xp: Any) -> Any | None:
        """gram rules: optional (k, d) anchor rows appended after the origin."""
        return None

    # -- fan-out -------------------------------------------------------------------------
    @property
    def supports_subtasks(self) -> bool:  # type: ignore[override]
        return self.kind in ("columnwise", "gram")

    def _fanout_blocks(self, d: int, context: OpContext | None) -> list[slice]:
        meta = dict(getattr(context, "metadata", None) or {})
        n_blocks = meta.get("n_blocks")
        if n_blocks is None and self.chunk_size is not None:
            return column_blocks(d, n_blocks=chunk_block_count(d, self.chunk_size, meta.get("pool_size")))
        if n_blocks is None:
            # one block per worker (each block a task and a transfer), none under FANOUT_MIN_COLUMNS columns
            n_blocks = max(1, min(d // FANOUT_MIN_COLUMNS, int(meta.get("pool_size") or 2**31)))
        return column_blocks(d, n_blocks=int(n_blocks))

    def create_subtasks(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Sequence[SubTask]:
        """Column blocks (columnwise rules) or per-block Gram partials (gram rules).

        The number of blocks comes from ``context.metadata["n_blocks"]`` when given; else, with
        ``chunk_size``, from :func:`chunk_block_count` (blocks of at most ``chunk_size`` columns,
        more of them for a larger ``context.metadata["pool_size"]``); else one block per 2**18
        columns, at most one per worker.
        """
        if not self.supports_subtasks:
            raise NotImplementedError(f"{type(self).__name__} does not support subtasks")
        prep = self.prepare(self._require(inputs, self.input_keys[0]))
        x, xp = prep.matrix, prep.batch.xp
        tasks = []
        for i, sl in enumerate(self._fanout_blocks(x.shape[1], context)):
            block = xp.ascontiguousarray(x[:, sl])
            if self.kind == "columnwise":
                tasks.append(SubTask(_column_task, args=(self, block, prep.f), name=f"{self.name}-block-{i}"))
            else:
                extra = None if prep.extra is None else xp.ascontiguousarray(prep.extra[:, sl])
                tasks.append(SubTask(gram_partial, args=(block, extra, xp), name=f"{self.name}-gram-{i}"))
        return tasks

    def reduce_subtasks(self, partials: Sequence[Any], inputs: Mapping[str, Any], *,
                        context: OpContext | None = None) -> Any:
        """Concatenate column blocks, or sum Gram partials, decide, and combine."""
        gradients = self._require(inputs, self.input_keys[0])
        if self.kind == "columnwise":
            # create_subtasks checked the rows; only the input's kind and shape matter here
            batch = _batch_of(gradients)
            return batch.restore(batch.xp.concatenate(list(partials)))
        prep = self.prepare(gradients)
        xp = prep.batch.xp
        gram = partials[0]
        for part in partials[1:]:
            gram = gram + part
        dtype = prep.matrix.dtype
        if not gram_is_sound(gram, dtype, xp):
            gram, dtype = safe_gram(prep.matrix, prep.extra, xp), np.dtype(np.float64)
        with ties_for(dtype):
            weights = self.gram_weights(gram, prep.matrix.shape[0], prep.f, xp)
        return prep.batch.restore(self.finish(combine(prep.matrix, weights, prep.extra, xp)))


def chunk_block_count(d: int, chunk_size: int, pool_size: int | None = None) -> int:
    """How many column blocks a fan-out with ``chunk_size`` makes over ``d`` columns.

    Blocks are at most ``chunk_size`` wide. With a pool of p > 1 workers they narrow, down to
    ``ceil(chunk_size / 8)`` columns, until there are about 4 blocks per worker, so the count
    grows with the pool (ByzPy's behaviour).

    Examples
    --------
    >>> chunk_block_count(1024, 64), chunk_block_count(1024, 64, pool_size=8)
    (16, 32)
    """
    d, chunk = max(1, int(d)), max(1, int(chunk_size))
    width = chunk
    if pool_size is not None and int(pool_size) > 1:
        width = min(chunk, max(-(-chunk // 8), -(-d // (4 * int(pool_size)))))
    return min(d, -(-d // width))


def _batch_of(gradients: Any) -> Batch:
    return gradients if isinstance(gradients, Batch) else as_batch(gradients, what="gradients")


def _column_task(rule: Aggregator, block: Any, f: int | None, out: Any = None) -> Any:
    """The rule's column kernel over ``block``, cache-sized column block by block, into ``out`` (made when None)."""
    xp = np
    if type(block).__module__.startswith("cupy"):
        from byzdask.kernels.arrays import get_cupy

        xp = get_cupy()
    if out is None:
        out = xp.empty(block.shape[1], dtype=block.dtype)
    for sl in kernel_blocks(block.shape[1], n_rows=block.shape[0], itemsize=block.dtype.itemsize, xp=xp):
        out[sl] = _column_block(rule, block[:, sl], f, xp)
    return out


def _column_block(rule: Aggregator, block: Any, f: int | None, xp: Any) -> Any:
    """The rule's column kernel on one finite block, again on the block scaled down when it overflowed.

    Sums (and distances to a median) of finite values near the dtype's maximum overflow; scaled by
    a power of two below 1 / (2m) they cannot, and the scaling is exact (bar values that become
    subnormal, far below the others). Only a block whose result is not finite pays for it.
    """
    out = rule.column_kernel(block, f, xp)
    if bool(xp.isfinite(out).all()):
        return out
    scale = 2.0 ** -(int(block.shape[0]).bit_length() + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        again = rule.column_kernel(block * block.dtype.type(scale), f, xp) / block.dtype.type(scale)
    return xp.where(xp.isfinite(out), out, again)
