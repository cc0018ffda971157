"""Column blocks: how the model dimension d is cut for cache-sized work and for fan-out."""

from __future__ import annotations

__all__ = ["CACHE_BLOCK_BYTES", "DEVICE_BLOCK_BYTES", "FANOUT_MIN_COLUMNS", "column_blocks", "kernel_blocks"]

#: Bytes of one (n, b) block processed at a time inside a kernel (about an L2 cache).
CACHE_BLOCK_BYTES = 1 << 20
#: Bytes of one block on a GPU (cupy): large, so that a call launches a few kernels, not thousands.
DEVICE_BLOCK_BYTES = 1 << 28
#: Fewest columns per subtask when an operator fans out (smaller pieces do not pay for a task).
FANOUT_MIN_COLUMNS = 1 << 18


def column_blocks(d: int, *, n_rows: int = 1, itemsize: int = 4, block_bytes: int = CACHE_BLOCK_BYTES,
                  n_blocks: int | None = None) -> list[slice]:
    """Cut ``range(d)`` into contiguous slices.

    Either ``n_blocks`` equal slices, or slices of about ``block_bytes`` for an (n_rows, b) block.

    Examples
    --------
    >>> column_blocks(10, n_blocks=3)
    [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    if d <= 0:
        return [slice(0, 0)]
    if n_blocks is None:
        width = max(1, block_bytes // max(1, n_rows * itemsize))
        n_blocks = -(-d // width)
    n_blocks = max(1, min(int(n_blocks), d))
    base, extra = divmod(d, n_blocks)
    out, start = [], 0
    for i in range(n_blocks):
        stop = start + base + (1 if i < extra else 0)
        out.append(slice(start, stop))
        start = stop
    return out


def kernel_blocks(d: int, *, n_rows: int, itemsize: int, xp: object) -> list[slice]:
    """Column blocks for a kernel's inner loop: cache-sized on the CPU, large on a GPU.

    Examples
    --------
    >>> import numpy as np
    >>> len(kernel_blocks(1 << 20, n_rows=32, itemsize=4, xp=np))
    128
    >>> len(kernel_blocks(1 << 20, n_rows=32, itemsize=4, xp=object()))  # a device namespace
    1
    """
    import numpy as np

    block_bytes = CACHE_BLOCK_BYTES if xp is np else DEVICE_BLOCK_BYTES
    return column_blocks(d, n_rows=n_rows, itemsize=itemsize, block_bytes=block_bytes)
