"""Aggregation of inputs that stay on the cluster, column block by column block (DESIGN §5).

The n x d input is given as a Dask array of shape (n, ...) or as a list of n per-node futures
(or Dask arrays) of one per-vector shape. It is cut along d into column blocks, each holding
all n rows of some columns, and never gathered in one place:

* **columnwise rules** (``kind = "columnwise"``) run the rule's column kernel on each block;
  the output is the concatenation of the blocks' outputs;
* **gram rules** (``kind = "gram"``) build each block's augmented centred Gram partial
  (inputs, origin, anchor rows, see :mod:`byzdask.kernels.gram`) next to the block, sum the
  small (m+1+k)-square partials in a tree on the workers, decide the weights on the client
  (:meth:`~byzdask.aggregators.base.Aggregator.gram_weights`, O(m^2) per iteration for the
  iterative rules), and combine each block with the weights where it lies;
* **direct rules** (``kind = "direct"``, e.g. a pre-aggregator chain, whose steps mix whole
  vectors) cannot run block by block: they raise, unless ``allow_gather=True`` asks to gather
  the inputs on the client (with a warning).

Non-finite rows are handled as in :meth:`Aggregator.prepare`: a row with NaN or Inf in any
block is dropped from every block (at most the rule's f of them). The first pass is
optimistic: each block finds its own non-finite rows and computes its piece without them, and
returns its row mask with the piece; the client combines the masks, and only when a row is
non-finite in some blocks but not in others does it run the pass again with the common mask.
A gram rule's block looks for non-finite rows only when its Gram partial comes out non-finite
(as in :meth:`Aggregator.aggregate`). So a columnwise rule reads each block twice (the row
check, then the kernel) and a gram rule twice (Gram, then combine) when all rows are finite.

Anchor rows of gram rules: a rule's :meth:`~Aggregator.extra_rows` is called on each block
(right for anchors computed column by column, such as a coordinate-wise median), except for
the anchors a rule holds or picks by index: :class:`~byzdask.aggregators.geometric_wise.monna.MoNNA`'s
reference vector (that row of each block) and ``CenteredClipping(init="previous")``'s previous
aggregate (that vector's columns). Data held lazily (a Dask array not persisted) is computed
once per pass: persist it first when it is costly to produce.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from typing import Any

import dask
import numpy as np

from byzdask.aggregators.base import Aggregator
from byzdask.engine.blocks import (
    DEFAULT_BLOCK_BYTES,
    _Matrix,
    _anchor_kind,
    _columnwise_task,
    _combine_task,
    _gram_task,
    _held_blocks,
    _host,
    _inputs,
    _namespace,
    _sum_partials,
)
from byzdask.errors import ConfigurationError, InputError, NonFiniteError
from byzdask.kernels.arrays import restore_like

__all__ = ["DEFAULT_BLOCK_BYTES", "aggregate_blocks", "aggregate_blocks_async"]

logger = logging.getLogger(__name__)

#: Partials summed by one task of the tree reduction.
_SPLIT_EVERY = 8
#: A gram rule on per-node futures of at most this many bytes in all holds the column blocks it cuts
#: from them for its two passes (Gram, then combine) instead of cutting them again for the second.
HOLD_BLOCKS_MAX_BYTES = 4 * 2**30


# -- public calls ---------------------------------------------------------------------------


def aggregate_blocks(rule: Aggregator, data: Any, *, client: Any, compute: bool = True,
                     block_columns: int | None = None, allow_gather: bool = False,
                     timeout: float | None = 600.0) -> Any:
    """Aggregate vectors held on a Dask cluster without gathering them in one place.

    The result equals ``rule.aggregate(gathered inputs)`` to float round-off: the same rule
    hooks (:meth:`~Aggregator.column_kernel`, :meth:`~Aggregator.extra_rows`,
    :meth:`~Aggregator.gram_weights`, :meth:`~Aggregator.finish`) run on column blocks.

    Parameters
    ----------
    rule : Aggregator
        A rule of kind ``"columnwise"`` or ``"gram"`` (``"direct"`` rules need ``allow_gather``).
    data : dask.array.Array or list
        An (n, ...) Dask array (its column chunks are the blocks; it is rechunked to one chunk
        along n), or a list of n ``distributed.Future`` objects or Dask arrays, each one
        vector (numpy, torch or cupy) of one shape.
    client : distributed.Client
        A synchronous client of the cluster that holds the data (for an asynchronous client,
        await :func:`aggregate_blocks_async`).
    compute : bool
        True: return the result on the client (numpy, or the family of the futures' vectors);
        False: return it as a Dask array (d-vector blocks held on the workers, reshaped to the
        per-vector shape).
    block_columns : int, optional
        Columns per block. Default: a Dask array's own chunks; for a list, blocks of about
        :data:`DEFAULT_BLOCK_BYTES`.
    allow_gather : bool
        Let a ``"direct"`` rule run by gathering the inputs on the client (logs a warning).
    timeout : float, optional
        Seconds to wait for each pass (None: no limit).

    Returns
    -------
    array or dask.array.Array
        One vector of the inputs' per-vector shape.

    Raises
    ------
    InputError
        Data that is neither a Dask array nor a list of futures / Dask arrays; ragged shapes;
        mixed dtypes; a non-floating dtype.
    ToleranceError, NonFiniteError
        As :meth:`Aggregator.aggregate`: too few inputs for the rule's f, too many rows with NaN/Inf.
    ConfigurationError
        A ``"direct"`` rule without ``allow_gather``.
    TimeoutError
        A pass took longer than ``timeout``.

    Notes
    -----
    Cost: a columnwise rule reads each block once; a gram rule twice (Gram partial and
    anchors, then the weighted sum), plus one tree reduction of (m+1+k)^2 float64 partials and
    the rule's decision on the client. Memory per task: one block plus O(cache) scratch.
    Round trips: 2 (columnwise) or 3 (gram), each about 10 ms on a local cluster, so small
    inputs are faster on the direct path (:meth:`Aggregator.aggregate`).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from byzdask.aggregators import CoordinateWiseMedian, Krum
    >>> x = np.arange(40.0).reshape(5, 8) ** 1.5
    >>> with LocalCluster(processes=False, n_workers=1, dashboard_address=None) as cluster, \\
    ...         Client(cluster) as client:
    ...     blocks = da.from_array(x, chunks=(5, 3))
    ...     med = aggregate_blocks(CoordinateWiseMedian(), blocks, client=client)
    ...     krum = aggregate_blocks(Krum(f=1), blocks, client=client)
    >>> np.allclose(med, CoordinateWiseMedian().aggregate(x)), np.allclose(krum, Krum(f=1).aggregate(x))
    (True, True)
    """
    if getattr(client, "asynchronous", False):
        raise InputError("aggregate_blocks needs a synchronous client; with an asynchronous one, "
                         "`await aggregate_blocks_async(...)`")
    steps = _steps(rule, data, compute=compute, block_columns=block_columns, allow_gather=allow_gather)
    return _drive_sync(steps, client, timeout)


async def aggregate_blocks_async(rule: Aggregator, data: Any, *, client: Any, compute: bool = True,
                                 block_columns: int | None = None, allow_gather: bool = False,
                                 timeout: float | None = 600.0) -> Any:
    """:func:`aggregate_blocks` with an asynchronous client (``Client(asynchronous=True)``, ``pool.client``).

    Parameters, result and errors as :func:`aggregate_blocks`.

    Examples
    --------
    >>> import asyncio, numpy as np, dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from byzdask.aggregators import GeometricMedian
    >>> async def main(x):
    ...     async with LocalCluster(processes=False, n_workers=1, dashboard_address=None, asynchronous=True) as cluster, \\
    ...             Client(cluster, asynchronous=True) as client:
    ...         return await aggregate_blocks_async(GeometricMedian(), da.from_array(x, chunks=(4, 2)), client=client)
    >>> x = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [2.0, 2.0, 1.0]])
    >>> np.round(asyncio.run(main(x)), 4)
    array([1., 1., 1.])
    """
    if not getattr(client, "asynchronous", False):
        raise InputError("aggregate_blocks_async needs an asynchronous client (Client(..., asynchronous=True)); "
                         "with a synchronous one, call aggregate_blocks(...)")
    steps = _steps(rule, data, compute=compute, block_columns=block_columns, allow_gather=allow_gather)
    return await _drive_async(steps, client, timeout)


# -- drivers: the same steps, run with a synchronous or an asynchronous client --------------------

# A step yields ("compute", [collections]) -> futures, or ("gather", [futures]) -> values.


def _drive_sync(steps: Generator, client: Any, timeout: float | None) -> Any:
    from distributed import wait

    value: Any = None
    while True:
        try:
            request, arg = steps.send(value)
        except StopIteration as stop:
            return stop.value
        if request == "compute":
            value = client.compute(arg)
        else:
            # distributed.wait uses the default client: make it this one, not whichever started last
            with client.as_current():
                wait(arg, timeout=timeout)
            value = client.gather(arg)


async def _drive_async(steps: Generator, client: Any, timeout: float | None) -> Any:
    value: Any = None
    while True:
        try:
            request, arg = steps.send(value)
        except StopIteration as stop:
            return stop.value
        if request == "compute":
            value = client.compute(arg)
        else:
            # never distributed.wait here: it runs on the *default* client, which may be a
            # synchronous one and would block this event loop
            try:
                value = await asyncio.wait_for(client.gather(arg), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"aggregate_blocks: the cluster did not finish {len(arg) if isinstance(arg, list) else 1} "
                    f"block task(s) within {timeout} s"
                ) from None


# -- the steps --------------------------------------------------------------------------------------


def _tree_sum(parts: list[Any]) -> Any:
    parts = list(parts)
    while True:
        parts = [dask.delayed(_sum_partials, pure=False)(*parts[i:i + _SPLIT_EVERY])
                 for i in range(0, len(parts), _SPLIT_EVERY)]
        if len(parts) == 1:
            return parts[0]


def _check_rows(rule: Aggregator, masks: list[np.ndarray], n: int, anchor: tuple | None = None) -> np.ndarray | None:
    """The common finite-row mask (None when every row is finite); raises as Aggregator.prepare does."""
    ok = np.logical_and.reduce([np.asarray(m, dtype=bool) for m in masks])
    dropped = int(n - ok.sum())
    if anchor is not None and anchor[0] == "row" and not ok[anchor[1]]:
        raise InputError(f"MoNNA's reference vector (index {anchor[1]}) holds NaN or Inf; the reference is "
                         "trusted and must be finite")
    if dropped:
        allowed = rule.f if rule.f is not None else rule.max_f(n)
        if dropped > allowed:
            raise NonFiniteError(f"{type(rule).__name__}: {dropped} of {n} input vectors hold NaN or Inf, "
                                 f"more than the {allowed} it can treat as Byzantine")
        logger.debug("%s: dropping %d non-finite rows of %d", type(rule).__name__, dropped, n)
    return None if dropped == 0 else ok


def _allowed(rule: Aggregator, n: int) -> int:
    """How many non-finite rows ``rule`` drops at most among ``n`` (0 when it drops none)."""
    if not rule.drops_nonfinite:
        return 0
    return rule.f if rule.f is not None else rule.max_f(n)


def _settle(rule: Aggregator, masks: list[np.ndarray], n: int,
            anchor: tuple | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """After a pass: the common finite-row mask (as :func:`_check_rows`), and the mask every block
    must use in a second pass, or None when the blocks agreed (no second pass)."""
    common = _check_rows(rule, masks, n, anchor)
    if all(np.array_equal(m, masks[0]) for m in masks):
        return common, None
    # a row is non-finite in some blocks only: every block drops the same rows, again
    return common, (common if common is not None else np.ones(n, dtype=bool))


def _decide(rule: Aggregator, total: np.ndarray, n: int, common: np.ndarray | None,
            dtype: Any = np.float64) -> np.ndarray:
    """A gram rule's float64 weights from the summed Gram partials of the rows kept (``common``);
    ties within the round-off of ``dtype`` (the dtype the partials' products were computed in)."""
    from byzdask.kernels.selection import ties_for

    m = n if common is None else int(common.sum())
    f = None if rule.f is None else rule.f - (n - m)
    with ties_for(dtype):
        return np.asarray(_host(rule.gram_weights(total, m, f, np)), dtype=np.float64)


def _assemble(futures: list[Any], columns: tuple[int, ...], dtype: np.dtype) -> Any:
    import dask.array as da

    return da.concatenate([da.from_delayed(f, shape=(c,), dtype=dtype) for f, c in zip(futures, columns)])


def _joined(rule: Aggregator, mat: _Matrix, values: list[Any]) -> Any:
    """The result from the gathered pieces of every block."""
    flat = _namespace(values[0]).concatenate(values)
    return restore_like(rule.finish(flat), mat.batch)


def _finish(rule: Aggregator, mat: _Matrix, pieces: list[Any], compute: bool) -> Generator:
    if compute:
        values = yield "gather", pieces
        return _joined(rule, mat, values)
    out = rule.finish(_assemble(pieces, mat.columns, mat.x.dtype))
    out = out.reshape(mat.batch.shape)
    if mat.batch.family == "numpy" and np.dtype(mat.batch.dtype) != out.dtype:
        out = out.astype(mat.batch.dtype)
    return out


def _steps(rule: Aggregator, data: Any, *, compute: bool, block_columns: int | None, allow_gather: bool,
           blocks: list[Any] | None = None) -> Generator:
    """The steps of one aggregation; ``blocks``: delayed objects of ``data``'s column chunks, when the caller has them."""
    if not isinstance(rule, Aggregator):
        raise InputError(f"rule must be an Aggregator (e.g. CoordinateWiseMedian()), got {type(rule).__name__}")
    if rule.kind not in ("columnwise", "gram"):
        if not allow_gather:
            raise ConfigurationError(
                f"{type(rule).__name__} is a 'direct' rule (it needs whole vectors) and cannot run block by block; "
                "pass allow_gather=True to gather the inputs on the client, or use a columnwise or gram rule"
            )
        return (yield from _gathered(rule, data))
    mat = yield from _inputs(data, block_columns)
    n, d = mat.n, mat.d
    rule.check_n(n)
    allowed = _allowed(rule, n)
    blocks = list(mat.x.to_delayed().ravel()) if blocks is None else list(blocks)
    if (rule.kind == "gram" and mat.resident and len(blocks) > 1
            and mat.n * mat.d * mat.x.dtype.itemsize <= HOLD_BLOCKS_MAX_BYTES):
        # the vectors are in memory already: cut the blocks once, for both passes (freed on return)
        blocks = yield "compute", blocks
    logger.debug("%s on %d x %d in %d column blocks", type(rule).__name__, n, d, len(blocks))
    if rule.kind == "columnwise":
        return (yield from _columnwise(rule, mat, blocks, allowed, compute))
    return (yield from _gram(rule, mat, blocks, allowed, compute))


def _columnwise(rule: Aggregator, mat: _Matrix, blocks: list[Any], allowed: int, compute: bool) -> Generator:
    ok = None
    nb = len(blocks)
    for attempt in range(2):
        pairs = [dask.delayed(_columnwise_task, pure=False, nout=2)(rule, b, ok, rule.f, allowed) for b in blocks]
        futures = yield "compute", [p[0] for p in pairs] + [p[1] for p in pairs]
        # to return the result here, the pieces (d values in all) come back with the masks: one round trip
        values = yield "gather", futures if compute else futures[:nb]
        _, ok = _settle(rule, values[:nb], mat.n)
        if attempt or ok is None:
            break
    if compute:
        return _joined(rule, mat, values[nb:])
    return (yield from _finish(rule, mat, futures[nb:], compute))


def _gram(rule: Aggregator, mat: _Matrix, blocks: list[Any], allowed: int, compute: bool) -> Generator:
    anchor, held = _anchor_kind(rule, mat.n, mat.d)
    held_blocks = _held_blocks(held, mat.columns) if held is not None else [None] * len(blocks)
    task_rule = rule if anchor[0] == "rule" else None
    nb = len(blocks)
    ok = None
    for attempt in range(2):
        triples = [dask.delayed(_gram_task, pure=False, nout=3)(task_rule, b, ok, rule.drops_nonfinite, rule.f,
                                                                allowed, anchor, h)
                   for b, h in zip(blocks, held_blocks)]
        gram = _tree_sum([t[1] for t in triples])
        futures = yield "compute", [t[0] for t in triples] + [gram] + [t[2] for t in triples]
        values = yield "gather", futures[:nb + 1]
        total = values[nb]
        common, ok = _settle(rule, values[:nb], mat.n, anchor)
        if attempt or ok is None:
            break
    weights = _decide(rule, total, mat.n, common, mat.x.dtype)
    pieces = [dask.delayed(_combine_task, pure=False)(b, extra, common, weights)
              for b, extra in zip(blocks, futures[nb + 1:])]
    futures = yield "compute", pieces
    return (yield from _finish(rule, mat, futures, compute))


def _gathered(rule: Aggregator, data: Any) -> Generator:
    import dask.array as da

    logger.warning("%s is a 'direct' rule: gathering its %s inputs on the client (allow_gather=True)",
                   type(rule).__name__, "n" if isinstance(data, (list, tuple)) else "stacked")
    if isinstance(data, da.Array):
        (future,) = yield "compute", [data]
        (value,) = yield "gather", [future]
        return rule.aggregate(value)
    if not isinstance(data, (list, tuple)):
        raise InputError(f"data: expected a Dask array of shape (n, ...) or a list of per-node futures / Dask "
                         f"arrays, got {type(data).__name__}")
    from distributed import Future

    lazy = [i for i, v in enumerate(data) if not isinstance(v, Future)]
    computed = (yield "compute", [data[i] for i in lazy]) if lazy else []
    values = yield "gather", [v for v in data if isinstance(v, Future)] + list(computed)
    futures_first = [i for i, v in enumerate(data) if isinstance(v, Future)] + lazy
    ordered = [None] * len(data)
    for i, v in zip(futures_first, values):
        ordered[i] = v
    return rule.aggregate(ordered)
