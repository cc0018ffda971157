"""Column blocks of the vectors that stay on a cluster: the input matrix, and the task functions of one block.

:mod:`byzdask.engine.blockwise` drives the passes (the *blocks* route of the graph planner);
this module holds what they run on: the (n, d) Dask array cut along d (:func:`_inputs`), and
the plain functions of arrays that each block's task runs (row checks, column kernels, Gram
partials, weighted sums).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from byzdask.aggregators.base import Aggregator, _column_task
from byzdask.errors import ConfigurationError, InputError
from byzdask.kernels.arrays import Batch, as_batch, finite_rows, get_cupy
from byzdask.kernels.gram import combine, gram_matrix

#: Bytes of one (n, b) column block cut from a list of per-node vectors (a Dask array keeps its chunks).
DEFAULT_BLOCK_BYTES = 128 * 2**20


# -- inputs -----------------------------------------------------------------------------------------


@dataclass
class _Matrix:
    """The inputs as one (n, d) Dask array with one chunk along n, and how to restore a result."""

    x: Any  # dask array (n, d)
    batch: Batch  # matrix=None; family, dtype, device, shape of one input vector
    resident: bool = False  # every vector is a future: the data already sits in the workers' memory

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])

    @property
    def columns(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.x.chunks[1])


def _float_dtype(dtype: Any, what: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float32)
    raise InputError(f"{what}: expected floating-point vectors (float32 or float64), got dtype {dtype}")


def _from_dask_array(data: Any, block_columns: int | None) -> _Matrix:
    if data.ndim < 2:
        raise InputError(f"data: a Dask array must be stacked with shape (n, ...), got shape {data.shape}; "
                         "pass a list of per-node vectors or an (n, d) array")
    if any(math.isnan(s) for s in data.shape):
        raise InputError(f"data: the Dask array's shape must be known, got {data.shape}; call compute_chunk_sizes()")
    n, shape = int(data.shape[0]), tuple(int(s) for s in data.shape[1:])
    if n == 0:
        raise InputError(f"data: expected at least one vector, got an array of shape {data.shape}")
    d = int(np.prod(shape))
    dtype = _float_dtype(data.dtype, "data")
    x = data if data.dtype == dtype else data.astype(dtype)
    if x.ndim > 2:
        x = x.reshape(n, d)
    x = x.rechunk({0: -1} if block_columns is None else {0: -1, 1: int(block_columns)})
    family = "cupy" if type(getattr(data, "_meta", None)).__module__.startswith("cupy") else "numpy"
    batch = Batch(matrix=None, xp=np, family=family, dtype=data.dtype, device=None, shape=shape, stacked=True)
    return _Matrix(x=x, batch=batch)


def _describe(vector: Any) -> tuple:
    """Task: family, shape, dtype and device of one per-node vector (read on its worker)."""
    batch = as_batch(vector.reshape(1, -1), what="gradients")
    return batch.family, tuple(int(s) for s in vector.shape), batch.dtype, batch.device, str(batch.matrix.dtype)


def _flat(vector: Any) -> Any:
    """Task: one per-node vector as a flat float32/float64 numpy (or cupy) array, without a copy where possible."""
    return as_batch(vector.reshape(1, -1), what="gradients").matrix[0]


def _from_list(data: Sequence[Any], block_columns: int | None) -> Generator:
    import dask.array as da
    from distributed import Future

    if len(data) == 0:
        raise InputError("data: expected at least one vector, got an empty sequence")
    kinds = set()
    for item in data:
        if isinstance(item, Future):
            kinds.add("future")
        elif isinstance(item, da.Array):
            kinds.add("dask")
        else:
            raise InputError(f"data: a list must hold distributed.Future objects or Dask arrays, got a "
                             f"{type(item).__name__}; for arrays held here, call rule.aggregate(...)")
    futures = [item for item in data if isinstance(item, Future)]
    described = []
    if futures:
        described_futures = yield "compute", [dask.delayed(_describe, pure=False)(f) for f in futures]
        described = yield "gather", described_futures
    meta = iter(described)
    rows, info = [], []
    for item in data:
        if isinstance(item, Future):
            family, shape, dtype, device, work_dtype = next(meta)
            info.append((family, shape, str(dtype), str(device)))
            d = int(np.prod(shape))
            rows.append(da.from_delayed(dask.delayed(_flat, pure=False)(item), shape=(d,), dtype=np.dtype(work_dtype)))
        else:
            family, shape, dtype, device = "numpy", tuple(int(s) for s in item.shape), item.dtype, None
            if any(math.isnan(s) for s in item.shape):
                raise InputError(f"data: each Dask array's shape must be known, got {item.shape}")
            info.append((family, shape, str(dtype), "None"))
            rows.append(item.reshape(-1).astype(_float_dtype(dtype, "data")))
    for label, pos in (("array family", 0), ("shape", 1), ("dtype", 2), ("device", 3)):
        values = {entry[pos] for entry in info}
        if len(values) != 1:
            raise InputError(f"data: all vectors must have one {label}, got {sorted(map(str, values))}")
    first = next(iter(described), None)
    if first is not None:
        family, shape, dtype, device, _ = first
    else:
        family, shape, dtype, device = "numpy", info[0][1], data[0].dtype, None
    x = da.stack([r.astype(rows[0].dtype) for r in rows])
    n, d = int(x.shape[0]), int(x.shape[1])
    if block_columns is None:
        block_columns = max(1, DEFAULT_BLOCK_BYTES // max(1, n * x.dtype.itemsize))
    x = x.rechunk({0: -1, 1: min(d, int(block_columns)) or 1})
    batch = Batch(matrix=None, xp=np, family=family, dtype=dtype, device=device, shape=tuple(shape), stacked=False)
    return _Matrix(x=x, batch=batch, resident=kinds == {"future"})


def _inputs(data: Any, block_columns: int | None) -> Generator:
    import dask.array as da

    if block_columns is not None and (isinstance(block_columns, bool) or not isinstance(block_columns, int)
                                      or block_columns < 1):
        raise InputError(f"block_columns must be a positive integer or None, got {block_columns!r}")
    if isinstance(data, da.Array):
        return _from_dask_array(data, block_columns)
    if isinstance(data, (list, tuple)):
        return (yield from _from_list(data, block_columns))
    raise InputError(f"data: expected a Dask array of shape (n, ...) or a list of per-node futures / Dask "
                     f"arrays, got {type(data).__name__}; for arrays held here, call rule.aggregate(...)")


# -- block tasks (plain functions of arrays) -------------------------------------------------------


def _namespace(block: Any) -> Any:
    return get_cupy() if type(block).__module__.startswith("cupy") else np


def _host(array: Any) -> np.ndarray:
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)


def _select_rows(block: Any, ok: np.ndarray | None, drop: bool, f: int | None, allowed: int):
    """The block's rows to use: ``ok`` when given, else its own finite rows. Returns (mask, rows, f)."""
    xp = _namespace(block)
    n = block.shape[0]
    if ok is not None:
        mask = ok
    elif drop:
        mask = _host(finite_rows(block, xp)).astype(bool)
    else:
        mask = np.ones(n, dtype=bool)
    dropped = int(n - mask.sum())
    if dropped > allowed:
        return mask, None, None
    rows = block if dropped == 0 else block[xp.asarray(np.flatnonzero(mask))]
    return mask, rows, (None if f is None else f - dropped)


def _columnwise_task(rule: Aggregator, block: Any, ok: Any, f: int | None, allowed: int, out: Any = None) -> tuple:
    mask, rows, f_rows = _select_rows(block, ok, rule.drops_nonfinite, f, allowed)
    return mask, (None if rows is None else _column_task(rule, rows, f_rows, out))


def _anchor(rule: Aggregator | None, anchor: tuple, block: Any, rows: Any, f_rows: int | None, held: Any) -> Any:
    xp = _namespace(block)
    how = anchor[0]
    if how == "row":
        ref = anchor[1]
        return xp.ascontiguousarray(block[ref:ref + 1])
    if how == "held":
        return xp.asarray(held).astype(block.dtype, copy=False).reshape(1, -1)
    return rule.extra_rows(rows, f_rows, xp)


def _gram_task(rule: Aggregator | None, block: Any, ok: Any, drop: bool, f: int | None, allowed: int,
               anchor: tuple, held: Any) -> tuple:
    xp = _namespace(block)
    if ok is None and drop:
        # optimistic, as Aggregator.aggregate: a row holding NaN or Inf makes the Gram matrix (or an
        # anchor row) non-finite, so a finite result needs no separate pass over the block to look for them
        extra = _anchor(rule, anchor, block, block, f, held)
        gram = _host(gram_matrix(block, extra, xp))
        if bool(np.isfinite(gram).all()):
            return np.ones(block.shape[0], dtype=bool), gram, extra
    mask, rows, f_rows = _select_rows(block, ok, drop, f, allowed)
    if rows is None:
        return mask, None, None
    extra = _anchor(rule, anchor, block, rows, f_rows, held)
    return mask, _host(gram_matrix(rows, extra, xp)), extra


def _sum_partials(*parts: Any) -> Any:
    """Task: the sum of Gram partials; None when one is missing or blocks dropped different rows."""
    if any(p is None for p in parts) or len({p.shape for p in parts}) > 1:
        return None
    total = np.array(parts[0], dtype=np.float64, copy=True)
    for p in parts[1:]:
        total += p
    return total


def _combine_task(block: Any, extra: Any, ok: Any, weights: np.ndarray) -> Any:
    xp = _namespace(block)
    rows = block if ok is None else block[xp.asarray(np.flatnonzero(ok))]
    return combine(rows, xp.asarray(weights), extra, xp)


def _anchor_kind(rule: Aggregator, n: int, d: int) -> tuple[tuple, Any]:
    """How a gram rule's anchor rows are found per block: ("rule",), ("row", index) or ("held",), and the held vector."""
    from byzdask.aggregators.geometric_wise.monna import MoNNA

    if isinstance(rule, MoNNA):
        if rule.reference_index >= n:
            raise InputError(f"MoNNA reference_index={rule.reference_index} but only n={n} vectors were given; "
                             f"expected 0 <= reference_index < {n}")
        return ("row", rule.reference_index), None
    held = getattr(rule, "previous", None)
    if getattr(rule, "init", None) == "previous" and held is not None:
        size = int(held.shape[0])
        if size != d:
            raise InputError(
                f"{type(rule).__name__}(init='previous') holds a previous aggregate of {size} coordinates, got "
                f"vectors of {d}; call reset() before aggregating vectors of a new size"
            )
        return ("held",), held
    if type(rule).prepare is not Aggregator.prepare:
        raise ConfigurationError(f"{type(rule).__name__} overrides prepare(); aggregate_blocks does not know how to "
                                 "find its anchor rows block by block")
    return ("rule",), None


def _held_blocks(held: Any, columns: tuple[int, ...]) -> list[Any]:
    import dask.array as da

    if isinstance(held, da.Array):
        arr = held.reshape(-1).rechunk((columns,))
    else:
        arr = da.from_array(np.asarray(_host(held)).reshape(-1), chunks=(columns,))
    return list(arr.to_delayed().ravel())


