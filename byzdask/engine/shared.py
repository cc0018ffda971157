"""Inputs handed to local worker processes through shared memory instead of the network.

A pool of worker processes on the caller's own machine (``ActorPoolConfig("process")``) can
read the caller's memory pages if they are shared: :class:`SharedArena` is a file in
``/dev/shm`` (RAM, never disk) that the caller maps read-write and each worker maps read-only.
To fan an aggregation out, the caller copies the (n, d) input into the arena once, column block
after column block (each block contiguous), and the workers read their blocks in place
(:func:`shared_block`, a zero-copy view): one copy in all, where sending the blocks over TCP
costs a serialisation, a copy into the socket, a copy out of it and, on the worker, a copy to
realign the received buffer. The blocks then go through the steps of
:func:`byzdask.engine.blockwise.aggregate_blocks_async` as any other column blocks.

The arena is kept by the pool and reused (its pages stay warm: a copy into fresh pages costs
twice as much, for the page faults), grown when a larger input comes, and removed when the pool
shuts down. One aggregation uses it at a time; a second one running meanwhile takes the usual
route. ``byzdask.scheduler.shared-memory: false`` turns the route off.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from byzdask.kernels.arrays import Batch, array_family

__all__ = ["SHM_DIR", "SharedArena", "shareable", "shared_block"]

#: Where arena files live (a RAM file system on Linux).
SHM_DIR = "/dev/shm"
_MAPS: OrderedDict[str, mmap.mmap] = OrderedDict()  # in each worker: arena file -> its read-only map
_KEEP_MAPS = 4


def shared_block(path: str, offset: int, rows: int, columns: int, dtype: str) -> np.ndarray:
    """Task: the (rows, columns) block stored at ``offset`` bytes of the arena file ``path``, as a read-only view.

    The file is mapped once per process. The maps of the last few files are kept; those of
    files that no longer exist (an arena replaced by a larger one, or removed) are dropped, and
    unmapped once their last view is gone.
    """
    mapped = _MAPS.get(path)
    if mapped is None:
        for old in [p for p in _MAPS if not os.path.exists(p)]:
            del _MAPS[old]  # an arena that was replaced or removed: let its pages go
        fd = os.open(path, os.O_RDONLY)
        try:
            mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        _MAPS[path] = mapped
        while len(_MAPS) > _KEEP_MAPS:
            _MAPS.popitem(last=False)
    _MAPS.move_to_end(path)
    return np.frombuffer(mapped, dtype=np.dtype(dtype), count=rows * columns, offset=offset).reshape(rows, columns)


def shareable(value: Any) -> tuple[int, int, np.dtype, Batch] | None:
    """``(n, d, dtype, batch)`` when ``value`` can go through an arena, else None.

    It can when it is a stacked numpy array / CPU torch tensor of shape (n, ...) or a list of
    same-shaped ones, of a floating dtype (computed in float32 unless float64). ``batch``
    describes the inputs (family, dtype, per-vector shape) for restoring the result.
    """
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        items, stacked = list(value), False
    else:
        items, stacked = [value], True
    try:
        families = {array_family(v) for v in items}
    except Exception:  # noqa: BLE001 - not an array: the usual route reports it
        return None
    if len(families) != 1 or (family := families.pop()) not in ("numpy", "torch"):
        return None
    if family == "torch" and any(v.device.type != "cpu" for v in items):
        return None
    shapes, dtypes = {tuple(v.shape) for v in items}, {str(v.dtype) for v in items}
    if len(shapes) != 1 or len(dtypes) != 1:
        return None
    shape = shapes.pop()
    if stacked:
        if len(shape) < 2 or shape[0] == 0:
            return None
        n, per = shape[0], shape[1:]
    else:
        n, per = len(items), shape
    dtype = items[0].dtype
    if family == "torch":
        if not dtype.is_floating_point:
            return None
        work = np.dtype(np.float64) if str(dtype) == "torch.float64" else np.dtype(np.float32)
    else:
        if np.dtype(dtype).kind != "f":
            return None
        work = np.dtype(dtype) if np.dtype(dtype) in (np.float32, np.float64) else np.dtype(np.float32)
    d = int(np.prod(per)) if per else 1
    if d == 0:
        return None
    batch = Batch(matrix=None, xp=np, family=family, dtype=dtype, device=getattr(items[0], "device", None),
                  shape=tuple(int(s) for s in per), stacked=stacked)
    return n, d, work, batch


def _rows(value: Any, n: int, d: int) -> list[np.ndarray]:
    """The n input vectors as flat numpy views (torch CPU tensors share their memory)."""
    items = list(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        if array_family(value) != "torch":
            return list(value.reshape(n, d))
        return list(_host_tensor(value).reshape(n, d).numpy())
    if array_family(items[0]) == "torch":
        return [_host_tensor(v).reshape(-1).numpy() for v in items]
    return [np.asarray(v).reshape(-1) for v in items]


def _host_tensor(t: Any) -> Any:
    """A CPU tensor numpy can view: float16 and bfloat16 (which numpy cannot hold) as float32."""
    import torch

    t = t.detach()
    return t.to(torch.float32) if t.dtype in (torch.float16, torch.bfloat16) else t


class SharedArena:
    """A file in ``/dev/shm`` that the caller writes and the local workers read (see the module text).

    Examples
    --------
    >>> import numpy as np
    >>> arena = SharedArena()
    >>> with arena.holding(3 * 4 * 4) as (path, buf):
    ...     buf[:12].view(np.float32)[:] = np.arange(3.0)
    ...     float(shared_block(path, 0, 1, 3, "float32")[0, 2])
    2.0
    >>> arena.close()
    """

    def __init__(self, directory: str = SHM_DIR) -> None:
        self.directory = directory
        self.path: str | None = None
        self._map: mmap.mmap | None = None
        self._size = 0
        self._busy = False

    @staticmethod
    def available(directory: str = SHM_DIR) -> bool:
        """Whether arenas can be made here (a writable RAM directory)."""
        return os.path.isdir(directory) and os.access(directory, os.W_OK)

    @property
    def busy(self) -> bool:
        """Whether an aggregation is using the arena now."""
        return self._busy

    def _grow(self, nbytes: int) -> None:
        self._drop()
        size = max(nbytes, mmap.PAGESIZE)
        path = os.path.join(self.directory, f"byzdask-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        self.path, self._size = path, size

    @contextlib.contextmanager
    def holding(self, nbytes: int):
        """Reserve ``nbytes``: yields ``(path, buffer)`` (a writable uint8 array over the arena)."""
        if self._busy:
            raise RuntimeError("the shared-memory arena is in use by another aggregation")
        self._busy = True
        try:
            if self._map is None or self._size < nbytes:
                self._grow(nbytes)
            yield self.path, np.frombuffer(self._map, dtype=np.uint8, count=nbytes)
        finally:
            self._busy = False

    def _drop(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # workers' maps stay valid until they drop them
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view still alive: the map goes with it
                self._map.close()
        self.path, self._map, self._size = None, None, 0

    def close(self) -> None:
        """Remove the arena file (idempotent)."""
        self._drop()


def blocks_of(path: str, buffer: np.ndarray, value: Any, n: int, d: int, dtype: np.dtype,
              spans: Sequence[tuple[int, int]]) -> tuple[Any, list[Any]]:
    """Copy ``value`` into ``buffer`` block by block.

    Returns the (n, d) Dask array of the blocks and the list of their :func:`shared_block` tasks
    (``dask.delayed``), one per span.
    """
    import dask
    import dask.array as da

    rows = _rows(value, n, d)
    parts, tasks, copies, offset = [], [], [], 0
    for start, stop in spans:
        width = stop - start
        block = buffer[offset:offset + n * width * dtype.itemsize].view(dtype).reshape(n, width)
        copies += [(block[i], row[start:stop]) for i, row in enumerate(rows)]
        task = dask.delayed(shared_block, pure=False)(path, offset, n, width, dtype.str)
        tasks.append(task)
        parts.append(da.from_delayed(task, shape=(n, width), dtype=dtype))
        offset += n * width * dtype.itemsize
    # numpy copies without the GIL: one thread per core (the workers wait for the data meanwhile)
    with ThreadPoolExecutor(max_workers=max(1, min(len(copies), os.cpu_count() or 1))) as threads:
        list(threads.map(lambda pair: np.copyto(pair[0], pair[1], casting="same_kind"), copies))
    return da.concatenate(parts, axis=1), tasks


async def aggregate_shared(rule: Any, value: Any, layout: tuple, arena: SharedArena, client: Any, *, blocks: int,
                           timeout: float | None) -> Any:
    """Aggregate a caller-held input through ``arena``: one copy in, blocks read in place by the workers.

    ``layout`` is what :func:`shareable` said of ``value``.
    """
    from byzdask.engine.blockwise import _drive_async, _steps
    from byzdask.kernels.arrays import restore_like
    from byzdask.kernels.blocks import column_blocks

    n, d, dtype, batch = layout
    spans = [(s.start, s.stop) for s in column_blocks(d, n_blocks=blocks)]
    with arena.holding(n * d * dtype.itemsize) as (path, buffer):
        x, tasks = await asyncio.to_thread(blocks_of, path, buffer, value, n, d, dtype, spans)
        # the block tasks themselves, not the concatenated array's chunks (no concatenate/slice tasks)
        steps = _steps(rule, x, compute=True, block_columns=None, allow_gather=False, blocks=tasks)
        flat = await _drive_async(steps, client, timeout)
    return restore_like(np.asarray(flat).reshape(-1), batch)
