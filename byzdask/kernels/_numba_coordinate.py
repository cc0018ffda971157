"""Fused, compiled runs of the selection networks of :mod:`byzdask.kernels.coordinate` (numba).

Each kernel walks the columns of an (m, b) block in chunks of ``width`` columns: it copies the
chunk into a small (m, width) work array that stays in the L1 cache, runs every comparator of a
pruned network on it (each comparator a loop over the chunk's columns, which the compiler turns
into SIMD ``min``/``max``), then reads the ranks or sums it needs off the work rows and writes
the chunk's results. One pass over the block, no intermediate array in memory, no per-call
overhead per comparator.

The arithmetic is the one of the numpy route, step by step and in the block's dtype (the median
as ``0.5 a + 0.5 b``; sums adding the rows in the order given; one division at the end), so both
routes give the same bits.

A network program here is an (k, 3) integer array of ``(code, i, j)``: code 0 puts the minimum
of rows i and j on row i and the maximum on row j; code 1 computes the minimum alone (on row i);
code 2 the maximum alone (on row j). Relabelling operations are resolved beforehand into row
numbers (see :func:`byzdask.kernels.coordinate.slot_program`).

This module imports numba; :mod:`byzdask.kernels.coordinate` falls back to numpy without it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["chunk_width", "mean_of_medians_columns", "median_columns", "sum_columns"]

#: Bytes of the (m, width) work array (about the L1 data cache; measured best of 8, 16 and 32 KiB).
WORK_BYTES = 32768


def chunk_width(m: int, itemsize: int) -> int:
    """Columns per chunk: the work array of ``m`` rows fills about :data:`WORK_BYTES`, 16 at least.

    Examples
    --------
    >>> chunk_width(32, 4)
    256
    """
    return max(16, (WORK_BYTES // max(1, m * itemsize)) // 16 * 16)


def flat_rows(block: np.ndarray) -> tuple[np.ndarray, int]:
    """``(flat, stride)``: a 1-D contiguous view in which row r of ``block`` starts at ``r * stride``.

    A column slice of a C-ordered matrix has contiguous rows but is not contiguous itself; the
    compiled loops read it through this view so that they stay vectorised. Other layouts are
    copied.

    Examples
    --------
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> flat, stride = flat_rows(x[:, 1:3])
    >>> float(flat[2 * stride + 1]), stride
    (10.0, 4)
    """
    m, b = block.shape
    size = block.itemsize
    if block.flags.c_contiguous:
        flat, stride = block.reshape(-1), b
    elif m > 0 and block.strides[1] == size and block.strides[0] % size == 0 and block.strides[0] >= b * size:
        stride = block.strides[0] // size
        flat = np.lib.stride_tricks.as_strided(block, shape=((m - 1) * stride + b,), strides=(size,),
                                               writeable=False)
    else:
        flat, stride = np.ascontiguousarray(block).reshape(-1), b
    flat.flags.writeable = False  # one compiled signature per dtype: every view read-only
    return flat, stride


@njit(cache=True, nogil=True)
def _load(flat, stride, work, start, width):  # pragma: no cover - compiled
    for r in range(work.shape[0]):
        dst = work[r]
        base = r * stride + start
        for c in range(width):
            dst[c] = flat[base + c]


@njit(cache=True, nogil=True)
def _network(work, ops, width):  # pragma: no cover - compiled
    for k in range(ops.shape[0]):
        code, i, j = ops[k, 0], ops[k, 1], ops[k, 2]
        a = work[i]
        b = work[j]
        if code == 0:
            for c in range(width):
                u = a[c]
                v = b[c]
                a[c] = v if v < u else u  # noqa: FURB136 (a plain select, no NaN handling)
                b[c] = u if v < u else v  # noqa: FURB136
        elif code == 1:
            for c in range(width):
                u = a[c]
                v = b[c]
                a[c] = v if v < u else u  # noqa: FURB136 (a plain select, no NaN handling)
        else:
            for c in range(width):
                u = a[c]
                v = b[c]
                b[c] = u if v < u else v  # noqa: FURB136


@njit(cache=True, nogil=True)
def _median(flat, stride, m, d, ops, lo, hi, half, width, out):  # pragma: no cover - compiled
    work = np.empty((m, width), dtype=flat.dtype)
    for start in range(0, d, width):
        w = min(width, d - start)
        _load(flat, stride, work, start, w)
        _network(work, ops, w)
        a = work[lo]
        b = work[hi]
        if lo == hi:
            for c in range(w):
                out[start + c] = a[c]
        else:
            for c in range(w):
                out[start + c] = a[c] * half + b[c] * half


@njit(cache=True, nogil=True)
def _sum(flat, stride, m, d, ops, rows, divisor, width, out):  # pragma: no cover - compiled
    work = np.empty((m, width), dtype=flat.dtype)
    acc = np.empty(width, dtype=flat.dtype)
    for start in range(0, d, width):
        w = min(width, d - start)
        _load(flat, stride, work, start, w)
        _network(work, ops, w)
        first = work[rows[0]]
        for c in range(w):
            acc[c] = first[c]
        for t in range(1, rows.shape[0]):
            row = work[rows[t]]
            for c in range(w):
                acc[c] += row[c]
        for c in range(w):
            out[start + c] = acc[c] / divisor


@njit(cache=True, nogil=True)
def _mean_of_medians(flat, stride, m, d, ops, lo, hi, half, rows, lows, highs, divisor, width,
                            out):  # pragma: no cover - compiled
    work = np.empty((m, width), dtype=flat.dtype)
    acc = np.empty(width, dtype=flat.dtype)
    med = np.empty(width, dtype=flat.dtype)
    for start in range(0, d, width):
        w = min(width, d - start)
        _load(flat, stride, work, start, w)
        _network(work, ops, w)
        a = work[lo]
        b = work[hi]
        if lo == hi:
            for c in range(w):
                med[c] = a[c]
        else:
            for c in range(w):
                med[c] = a[c] * half + b[c] * half
        first = work[rows[0]]
        for c in range(w):
            acc[c] = first[c]
        for t in range(1, rows.shape[0]):
            row = work[rows[t]]
            for c in range(w):
                acc[c] += row[c]
        for t in range(lows.shape[0]):
            low = work[lows[t]]
            high = work[highs[t]]
            for c in range(w):
                below = med[c] - low[c]
                above = high[c] - med[c]
                acc[c] += high[c] if below > above else low[c]
        for c in range(w):
            out[start + c] = acc[c] / divisor


def median_columns(block: np.ndarray, ops: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per column of ``block`` (m, b): ``0.5 a + 0.5 b`` of rows lo and hi after the network ``ops``.

    Row ``lo`` alone when ``lo == hi``. The output has the block's dtype.
    """
    m, d = block.shape
    flat, stride = flat_rows(block)
    out = np.empty(d, dtype=block.dtype)
    _median(flat, stride, m, d, ops, lo, hi, block.dtype.type(0.5), chunk_width(m, block.itemsize), out)
    return out


def sum_columns(block: np.ndarray, ops: np.ndarray, rows: list[int], divisor: int) -> np.ndarray:
    """Per column of ``block`` (m, b): the sum of ``rows`` (added in that order) after ``ops``, over ``divisor``."""
    m, d = block.shape
    flat, stride = flat_rows(block)
    out = np.empty(d, dtype=block.dtype)
    _sum(flat, stride, m, d, ops, np.asarray(rows, dtype=np.int64), block.dtype.type(divisor),
         chunk_width(m, block.itemsize), out)
    return out


def mean_of_medians_columns(block: np.ndarray, ops: np.ndarray, lo: int, hi: int, rows: list[int],
                            lows: list[int], highs: list[int], divisor: int) -> np.ndarray:
    """Per column: the sum of ``rows``, plus of each pair (lows[i], highs[i]) the one nearer the median.

    The median is taken as in :func:`median_columns`; a tie in distance takes the value of
    ``lows``. The total is divided by ``divisor``.
    """
    m, d = block.shape
    flat, stride = flat_rows(block)
    out = np.empty(d, dtype=block.dtype)
    _mean_of_medians(flat, stride, m, d, ops, lo, hi, block.dtype.type(0.5), np.asarray(rows, dtype=np.int64),
                     np.asarray(lows, dtype=np.int64), np.asarray(highs, dtype=np.int64),
                     block.dtype.type(divisor), chunk_width(m, block.itemsize), out)
    return out
