"""Inputs handed to local worker processes through shared memory instead of the network.

A pool of worker processes on the caller's own machine (``ActorPoolConfig("process")``) can
read the caller's memory pages if they are shared: :class:`SharedArena` is a file in
``/dev/shm`` (RAM, never disk) that the caller and each worker map. To fan an aggregation out,
the caller copies the (n, d) input into the arena once, column block after column block (each
block contiguous), and the workers read their blocks in place (:func:`shared_block`, a
read-only zero-copy view): one copy in all, where sending the blocks over TCP costs a
serialisation, a copy into the socket, a copy out of it and, on the worker, a copy to realign
the received buffer. Each block's task runs the steps of
:func:`byzdask.engine.blockwise.aggregate_blocks` (the same task functions, non-finite rows
included) and writes its piece of the output to the arena too, after the input; the tasks
return only what is small (row masks, n x n Gram partials, anchor rows), so a columnwise rule
costs one round of tasks and one round trip, a gram rule two, and the input never crosses a
socket (the output neither; a rule's anchor rows, one d-vector each, do).

An input that the caller built in shared memory in the first place
(:meth:`ActorPool.shared_array <byzdask.engine.graph.pool.ActorPool.shared_array>`, a
:class:`SharedArrays` array) is not copied at all: its column blocks are read where it lies.

A columnwise rule's input is not copied either when the workers may read the caller's memory
(Linux, same user, no Yama ``ptrace_scope`` of 1 or more; :meth:`ActorPool.reads_caller_memory
<byzdask.engine.graph.pool.ActorPool.reads_caller_memory>` probes it once):
each worker reads its blocks straight from the caller's pages with ``process_vm_readv``
(:func:`read_remote`, the "cross-memory attach" that MPI libraries use for large messages), a
cache-sized piece (:data:`PIECE_BYTES`) at a time, and runs the column kernel on each piece
while it is in its cache. The input then crosses memory once, in parallel on every worker,
instead of once to copy it and once more to read it. A gram rule reads each block twice
(Gram partials, then weighted sums): two such reads cost more than one copy into the arena
(measured: 40 ms per 256 MiB read against 30 ms of a two-thread copy), so its input is still
copied. ``byzdask.scheduler.cross-memory: false`` turns the reads off.

The arena is kept by the pool and reused (its pages stay warm: a copy into fresh pages costs
twice as much, for the page faults), grown when a larger input comes, and removed when the pool
shuts down. One aggregation uses it at a time; a second one running meanwhile takes the usual
route. ``byzdask.scheduler.shared-memory: false`` turns the route off.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import mmap
import os
import sys
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from byzdask.errors import InputError
from byzdask.kernels.arrays import Batch, array_family

__all__ = ["BLOCK_BYTES", "SHM_DIR", "SharedArena", "SharedArrays", "shareable", "shared_block"]

#: Where arena files live (a RAM file system on Linux).
SHM_DIR = "/dev/shm"
#: Largest column block a fan-out through shared memory cuts (bytes); a multiple of the workers' count of blocks.
BLOCK_BYTES = 256 * 2**20
_MAPS: OrderedDict[str, mmap.mmap] = OrderedDict()  # in each worker: arena file -> its read-only map
_KEEP_MAPS = 4


def _mapped(path: str) -> mmap.mmap:
    """This process's read-write map of the arena file ``path`` (made once; see :func:`shared_block`)."""
    mapped = _MAPS.get(path)
    if mapped is None:
        for old in [p for p in _MAPS if not os.path.exists(p)]:
            del _MAPS[old]  # an arena that was replaced or removed: let its pages go
        fd = os.open(path, os.O_RDWR)
        try:
            mapped = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        _MAPS[path] = mapped
        while len(_MAPS) > _KEEP_MAPS:
            _MAPS.popitem(last=False)
    _MAPS.move_to_end(path)
    return mapped


def _region(path: str, offset: int, rows: int, columns: int, dtype: str, *, writable: bool = False) -> np.ndarray:
    view = np.frombuffer(_mapped(path), dtype=np.dtype(dtype), count=rows * columns, offset=offset)
    view.flags.writeable = writable
    return view.reshape(rows, columns)


def shared_block(path: str, offset: int, rows: int, columns: int, dtype: str) -> np.ndarray:
    """The (rows, columns) block stored at ``offset`` bytes of the arena file ``path``, as a read-only view.

    The file is mapped once per process. The maps of the last few files are kept; those of
    files that no longer exist (an arena replaced by a larger one, or removed) are dropped, and
    unmapped once their last view is gone.
    """
    return _region(path, offset, rows, columns, dtype)


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


def readable_in_place(layout: tuple) -> bool:
    """Whether an input that :func:`shareable` described as ``layout`` can be read as it lies in memory.

    It can when it is one stacked array whose dtype is the working dtype (float32 or float64):
    then an input inside a :class:`SharedArrays` array needs no copy.
    """
    _, _, work, batch = layout
    return batch.stacked and str(batch.dtype).removeprefix("torch.") == work.name


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


def _new_file(directory: str, prefix: str, size: int) -> tuple[str, mmap.mmap]:
    """A new file of ``size`` bytes in ``directory`` (readable by this user only), and its read-write map."""
    path = os.path.join(directory, f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        return path, mmap.mmap(fd, size)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


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
        self.path, self._map = _new_file(self.directory, "byzdask", size)
        self._size = size

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

    def discard(self) -> None:
        """Give up the current file (the next aggregation makes a new one); tasks may still hold maps of it."""
        self._drop()

    def close(self) -> None:
        """Remove the arena file (idempotent)."""
        self._drop()


class SharedArrays:
    """Arrays in ``/dev/shm`` that the workers of a pool read in place (see :meth:`ActorPool.shared_array`).

    An input that lies in one of them (a stacked numpy array, or a CPU torch tensor over it)
    is fanned out with no copy at all: each worker maps the file and reads its column block.
    Each array's file is removed when the array (and every view of it) is garbage collected,
    or when the registry is closed (the pool shuts down), whichever comes first.

    Examples
    --------
    >>> import numpy as np
    >>> arrays = SharedArrays()
    >>> x = arrays.new((3, 4), np.float32)
    >>> x[:] = 1.0
    >>> path, offset = arrays.locate(x[1:])
    >>> offset, path.startswith(SHM_DIR)
    (16, True)
    >>> arrays.locate(np.ones((3, 4), np.float32)) is None
    True
    >>> arrays.close()
    """

    def __init__(self, directory: str = SHM_DIR) -> None:
        self.directory = directory
        self._entries: dict[str, tuple[int, int, weakref.ref]] = {}  # path -> (address, bytes, map)

    def new(self, shape: int | Sequence[int], dtype: Any = np.float32) -> np.ndarray:
        """A zero-filled array of ``shape`` and ``dtype`` in shared memory."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in shape):
            raise InputError(f"shape must be a non-empty tuple of non-negative integers, got {shape!r}")
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        path, mapped = _new_file(self.directory, "byzdask-array", max(count * dtype.itemsize, mmap.PAGESIZE))
        array = np.frombuffer(mapped, dtype=dtype, count=count).reshape(shape)
        self._entries[path] = (array.__array_interface__["data"][0], count * dtype.itemsize, weakref.ref(mapped))
        weakref.finalize(mapped, self._forget, path)  # the last view is gone: remove the file
        return array

    def _forget(self, path: str) -> None:
        self._entries.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def locate(self, value: Any) -> tuple[str, int] | None:
        """``(file, byte offset)`` of a C-contiguous numpy array or CPU tensor lying in one of the arrays, else None."""
        if isinstance(value, np.ndarray):
            contiguous, address, nbytes = value.flags.c_contiguous, value.__array_interface__["data"][0], value.nbytes
        elif array_family(value) == "torch" and value.device.type == "cpu":
            contiguous, address = value.is_contiguous(), value.data_ptr()
            nbytes = value.numel() * value.element_size()
        else:
            return None
        if not contiguous:
            return None
        for path, (start, size, mapped) in list(self._entries.items()):
            if mapped() is not None and start <= address and address + nbytes <= start + size:
                return path, address - start
        return None

    def close(self) -> None:
        """Remove every array's file (the arrays stay readable here; workers can no longer map them)."""
        for path in list(self._entries):
            self._forget(path)


class _Blocks:
    """The input's column blocks as the workers find them in shared memory, and the copies that put them there.

    A place is ``(path, offset, rows, columns, dtype, start, stop)``: columns ``start:stop`` of the
    (rows, columns) matrix stored at ``offset`` bytes of the file ``path``. :meth:`submit_each`
    makes each block's copy (one thread per core) and submits that block's task as soon as its
    copy is done, so the first workers compute while the caller still copies the later blocks.
    """

    def __init__(self, places: list[tuple], copies: list[list[tuple[np.ndarray, np.ndarray]]],
                 keep: Sequence[np.ndarray] = ()) -> None:
        self.places = places
        self._copies = copies
        self._keep = list(keep)  # what the places point at in this process's memory

    @classmethod
    def copied(cls, path: str, buffer: np.ndarray, value: Any, n: int, d: int, dtype: np.dtype,
               spans: Sequence[tuple[int, int]]) -> _Blocks:
        """Blocks to be copied from ``value`` into ``buffer`` (the arena), one contiguous block after the other."""
        rows = _rows(value, n, d)
        places, copies, offset = [], [], 0
        for start, stop in spans:
            width = stop - start
            block = buffer[offset:offset + n * width * dtype.itemsize].view(dtype).reshape(n, width)
            copies.append([(block[i], row[start:stop]) for i, row in enumerate(rows)])
            places.append((path, offset, n, width, dtype.str, 0, width))
            offset += n * width * dtype.itemsize
        return cls(places, copies)

    @classmethod
    def in_place(cls, path: str, offset: int, n: int, d: int, dtype: np.dtype,
                 spans: Sequence[tuple[int, int]]) -> _Blocks:
        """Column blocks of an (n, d) input that already lies in shared memory (:meth:`SharedArrays.new`): no copy."""
        return cls([(path, offset, n, d, dtype.str, start, stop) for start, stop in spans], [[] for _ in spans])

    @classmethod
    def remote(cls, value: Any, n: int, d: int, dtype: np.dtype, spans: Sequence[tuple[int, int]]) -> _Blocks:
        """Column blocks that each worker reads from this process's memory (:func:`read_remote`): no copy here.

        Rows that are not C-contiguous vectors of ``dtype`` are converted first (those copies are
        kept alive with the blocks, as the input must be, until the tasks are done).
        """
        rows = [r if r.dtype == dtype and r.flags.c_contiguous else np.ascontiguousarray(r, dtype=dtype)
                for r in _rows(value, n, d)]
        addresses = np.array([r.__array_interface__["data"][0] for r in rows], dtype=np.uint64)
        step = max(1, PIECE_BYTES // (n * dtype.itemsize))
        return cls([_Remote(os.getpid(), addresses, dtype.str, start, stop, step) for start, stop in spans],
                   [[] for _ in spans], keep=rows)

    async def submit_each(self, client: Any, call_for: Any) -> list[Any]:
        """Fill each block, then submit ``call_for(block index) -> (fn, args)``; returns the futures."""
        loop = asyncio.get_running_loop()
        futures = []
        # numpy copies without the GIL: one thread per core (none for an input read in place)
        threads = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) if any(self._copies) else None
        with threads or contextlib.nullcontext():
            for index, copies in enumerate(self._copies):
                if copies:
                    await loop.run_in_executor(None, _copy_all, threads, copies)
                fn, args = call_for(index)
                futures.append(client.submit(fn, *args, pure=False))
        return futures


def _block(place: tuple) -> np.ndarray:
    """The read-only (rows, stop - start) block at ``place`` (see :class:`_Blocks`)."""
    path, offset, rows, columns, dtype, start, stop = place
    return _region(path, offset, rows, columns, dtype)[:, start:stop]


def _copy_all(threads: ThreadPoolExecutor, copies: list[tuple[np.ndarray, np.ndarray]]) -> None:
    list(threads.map(lambda pair: np.copyto(pair[0], pair[1], casting="same_kind"), copies))


# -- reading the caller's memory directly (Linux cross-memory attach) -----------------------------

#: Bytes of one piece a worker reads from the caller's memory and computes on while it is in its cache.
PIECE_BYTES = 2**20
_IOV_MAX = 1024  # iovecs per process_vm_readv call (Linux UIO_MAXIOV)
_READV: list = []  # [process_vm_readv] once looked up
_PIECE_BUFFER: list[np.ndarray] = []  # in each worker: the reused buffer the pieces are read into


class CrossMemoryError(OSError):
    """A worker could not read the caller's memory (see :func:`read_remote`)."""


class _Remote(NamedTuple):
    """Columns ``start:stop`` of the n vectors at ``addresses`` in the memory of process ``pid``, read ``step`` columns at a time."""

    pid: int
    addresses: np.ndarray
    dtype: str
    start: int
    stop: int
    step: int


def _process_vm_readv() -> Any:
    if not _READV:
        import ctypes

        if not sys.platform.startswith("linux"):
            raise CrossMemoryError(f"reading another process's memory needs Linux, not {sys.platform}")
        try:
            fn = ctypes.CDLL(None, use_errno=True).process_vm_readv
        except AttributeError:
            raise CrossMemoryError("this C library has no process_vm_readv") from None
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
        fn.restype = ctypes.c_ssize_t
        _READV.append(fn)
    return _READV[0]


def read_remote(pid: int, addresses: np.ndarray, offset: int, out: np.ndarray) -> None:
    """Copy row i of ``out`` (a 2-D array whose rows are each contiguous) from ``addresses[i] + offset`` in process ``pid``.

    One ``process_vm_readv`` system call per 1024 rows: the kernel copies straight from the other
    process's pages into ``out``, with no shared file and no socket. It needs the right to trace
    ``pid`` (same user; with Yama's ``kernel.yama.ptrace_scope`` at 1 or more, only a process's
    ancestors have it, and a worker is not one of the caller's).

    Raises
    ------
    CrossMemoryError
        The read failed or fell short; the message names the process and the errno.

    Examples
    --------
    >>> src = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> out = np.zeros((3, 2), dtype=np.float32)
    >>> read_remote(os.getpid(), np.array([r.ctypes.data for r in src], dtype=np.uint64), 4, out)
    >>> out.tolist()
    [[1.0, 2.0], [5.0, 6.0], [9.0, 10.0]]
    """
    import ctypes

    rows, nbytes = len(addresses), out.shape[1] * out.itemsize
    if out.ndim != 2 or out.shape[0] != rows or (rows and out.strides[1] != out.itemsize):
        raise ValueError(f"read_remote: out must hold {rows} contiguous rows, got shape {out.shape} and "
                         f"strides {out.strides}")
    readv = _process_vm_readv()
    remote = np.empty((rows, 2), dtype=np.uint64)
    remote[:, 0] = addresses + np.uint64(offset)
    remote[:, 1] = nbytes
    local = np.empty((rows, 2), dtype=np.uint64)
    local[:, 0] = out.__array_interface__["data"][0] + np.arange(rows, dtype=np.uint64) * np.uint64(out.strides[0])
    local[:, 1] = nbytes
    for first in range(0, rows, _IOV_MAX):
        count = min(_IOV_MAX, rows - first)
        got = readv(pid, local[first:].ctypes.data, count, remote[first:].ctypes.data, count, 0)
        if got != count * nbytes:
            err = ctypes.get_errno() if got < 0 else 0
            why = os.strerror(err) if err else f"read {got} of {count * nbytes} bytes"
            error = CrossMemoryError(f"a worker could not read the memory of process {pid}: {why}; set "
                                     "byzdask.scheduler.cross-memory to false to copy inputs into shared memory "
                                     "instead")
            error.errno = err or None
            raise error


def probe_remote(pid: int, address: int, nbytes: int) -> bytes | str:
    """Run on a worker: the ``nbytes`` at ``address`` in process ``pid``, or why they cannot be read."""
    out = np.empty((1, nbytes), dtype=np.uint8)
    try:
        read_remote(pid, np.array([address], dtype=np.uint64), 0, out)
    except CrossMemoryError as exc:
        return str(exc)
    return out.tobytes()


def _pieces(place: _Remote):
    """``(lo, hi, piece)``: the block at ``place`` read ``place.step`` columns at a time into one reused buffer.

    Each piece is computed on while it is still in the cache; it is valid until the next one is read.
    """
    dtype = np.dtype(place.dtype)
    n, width = len(place.addresses), place.stop - place.start
    step = max(1, min(width, place.step))
    need = n * step * dtype.itemsize
    if not _PIECE_BUFFER or _PIECE_BUFFER[0].nbytes < need:
        _PIECE_BUFFER[:] = [np.empty(need, dtype=np.uint8)]
    for lo in range(0, width, step):
        hi = min(width, lo + step)
        piece = _PIECE_BUFFER[0][:n * (hi - lo) * dtype.itemsize].view(dtype).reshape(n, hi - lo)
        read_remote(place.pid, place.addresses, (place.start + lo) * dtype.itemsize, piece)
        yield lo, hi, piece


def _remote_columnwise(rule: Any, place: _Remote, target: np.ndarray, ok: Any, f: int | None, allowed: int) -> Any:
    """A columnwise rule over a block read piece by piece from the caller's memory; returns the row mask used.

    Without ``ok`` (the first pass) it is optimistic, as a whole block is: each piece checks its
    own rows. When one finds a non-finite row, every piece is scanned for the block's finite
    rows and, unless more rows are bad than ``allowed``, the block is computed again with that
    mask (each piece is read again: the block is not kept).
    """
    from byzdask.engine.blockwise import _columnwise_task
    from byzdask.kernels.arrays import finite_rows

    n = len(place.addresses)
    for lo, hi, piece in _pieces(place):
        mask = np.asarray(_columnwise_task(rule, piece, ok, f, allowed, target[lo:hi])[0], dtype=bool)
        if ok is None and not mask.all():
            break
    else:
        return np.asarray(ok, dtype=bool) if ok is not None else np.ones(n, dtype=bool)
    mask = np.ones(n, dtype=bool)
    for _, _, piece in _pieces(place):
        mask &= np.asarray(finite_rows(piece), dtype=bool)
    if n - int(mask.sum()) <= allowed:
        for lo, hi, piece in _pieces(place):
            _columnwise_task(rule, piece, mask, f, allowed, target[lo:hi])
    return mask


# -- vectors the workers already hold (futures) --------------------------------------------------


def _samples(*vectors: Any) -> list[tuple[tuple[int, ...], Any] | None]:
    """Task on the worker holding ``vectors``: each one's shape and a one-element copy of it (family, dtype,
    device), or None for what is not a numpy array or torch tensor."""
    out: list[tuple[tuple[int, ...], Any] | None] = []
    for v in vectors:
        try:
            array_family(v)
        except InputError:
            out.append(None)
            continue
        first = v.reshape(-1)[:1]
        out.append((tuple(int(s) for s in v.shape), first.clone() if hasattr(first, "clone") else first.copy()))
    return out


def _store_rows(path: str, d: int, dtype: str, indices: list[int], stacked: bool, *vectors: Any) -> None:
    """Task on the worker holding ``vectors``: write them as rows ``indices`` of the (n, d) matrix at the start of ``path``.

    ``stacked``: ``vectors`` is one (n, ...) array, whose rows are rows 0..n-1.
    """
    size = np.dtype(dtype).itemsize
    rows = _rows(vectors[0], len(indices), d) if stacked else _rows(list(vectors), len(vectors), d)
    for i, row in zip(indices, rows):
        np.copyto(_region(path, i * d * size, 1, d, dtype, writable=True)[0], row, casting="same_kind")


async def held_layout(futures: list[Any], client: Any, timeout: float | None,
                      stacked: bool = False) -> tuple[tuple, dict] | None:
    """``(layout, groups)`` of n futures held by the workers, as :func:`shareable` says of arrays, else None.

    ``groups`` maps each holding worker to the indices of the futures it holds. None when one
    is held nowhere, or their vectors are not same-shaped CPU float arrays of one dtype.
    ``stacked``: ``futures`` is one future of an (n, ...) array.
    """
    who = await client.who_has(futures)
    groups: dict[str, list[int]] = {}
    for i, future in enumerate(futures):
        holders = who.get(future.key) or ()
        if not holders:
            return None
        groups.setdefault(holders[0], []).append(i)
    calls = [client.submit(_samples, *[futures[i] for i in idx], workers=[addr], allow_other_workers=True,
                           pure=False) for addr, idx in groups.items()]
    found: list[Any] = [None] * len(futures)
    for idx, part in zip(groups.values(), await _gather(client, calls, "describing the held vectors", timeout)):
        for i, item in zip(idx, part):
            found[i] = item
    if any(item is None for item in found):
        return None
    shapes = {shape for shape, _ in found}
    described = shareable([sample for _, sample in found])
    if len(shapes) != 1 or described is None:
        return None
    (shape,) = shapes
    n, _, dtype, batch = described
    if stacked:
        if len(shape) < 2 or shape[0] == 0:
            return None
        n, shape, batch.stacked = shape[0], shape[1:], True
    batch.shape = shape
    return (n, int(np.prod(shape)) if shape else 1, dtype, batch), groups


# -- tasks: read the block in place, write the output piece in place, return only what is small ------


def _columnwise_in_place(rule: Any, place: tuple, out: tuple, ok: Any, f: int | None, allowed: int) -> np.ndarray:
    """Task: the rule's column kernel on a block of the arena, written to the arena; returns the block's row mask."""
    from byzdask.engine.blockwise import _columnwise_task

    target = _region(*out, writable=True).reshape(-1)
    if isinstance(place, _Remote):
        return _remote_columnwise(rule, place, target, ok, f, allowed)
    mask, _ = _columnwise_task(rule, _block(place), ok, f, allowed, target)
    return mask


def _gram_in_place(rule: Any, place: tuple, ok: Any, drop: bool, f: int | None, allowed: int, anchor: tuple,
                   held: Any) -> tuple:
    """Task: a block's row mask, Gram partial and anchor rows (all small: m^2 and k x width values)."""
    from byzdask.engine.blockwise import _gram_task

    return _gram_task(rule, _block(place), ok, drop, f, allowed, anchor, held)


def _combine_in_place(place: tuple, out: tuple, extra: Any, ok: Any, weights: np.ndarray) -> None:
    """Task: a block's weighted sum of rows, written to the arena."""
    from byzdask.engine.blockwise import _combine_task

    _region(*out, writable=True).reshape(-1)[:] = _combine_task(_block(place), extra, ok, weights)


async def _gather(client: Any, futures: list[Any], what: str, timeout: float | None) -> list[Any]:
    """The (small) results of the block tasks ``futures``."""
    try:
        return await asyncio.wait_for(client.gather(futures), timeout)
    except TimeoutError:
        raise TimeoutError(f"shared-memory fan-out: the cluster did not finish {len(futures)} block task(s) "
                           f"({what}) within {timeout} s") from None


async def _run(client: Any, calls: list[tuple], timeout: float | None, first: Any = None) -> list[Any]:
    """Run ``(fn, args)`` calls, one per block, as tasks (``first``: filling the blocks as they are submitted)."""
    if first is not None:
        futures = await first.submit_each(client, lambda index: calls[index])
    else:
        futures = [client.submit(fn, *args, pure=False) for fn, args in calls]
    return await _gather(client, futures, calls[0][0].__name__, timeout)


async def _columnwise(rule: Any, n: int, blocks: _Blocks, outs: list[tuple], allowed: int, client: Any,
                      timeout: float | None) -> None:
    from byzdask.engine.blockwise import _settle

    ok = None
    for attempt in range(2):
        masks = await _run(client, [(_columnwise_in_place, (rule, place, out, ok, rule.f, allowed))
                                    for place, out in zip(blocks.places, outs)], timeout,
                           first=None if attempt else blocks)
        _, ok = _settle(rule, masks, n)
        if attempt or ok is None:
            return


async def _gram(rule: Any, n: int, d: int, blocks: _Blocks, outs: list[tuple], spans: Sequence[tuple[int, int]],
                allowed: int, client: Any, timeout: float | None) -> None:
    from byzdask.engine.blockwise import (
        _anchor_kind,
        _decide,
        _host,
        _settle,
        _sum_partials,
    )

    anchor, held = _anchor_kind(rule, n, d)
    flat_held = None if held is None else np.asarray(_host(held)).reshape(-1)
    helds = [None if flat_held is None else flat_held[start:stop] for start, stop in spans]
    task_rule = rule if anchor[0] == "rule" else None
    places = blocks.places
    ok = None
    for attempt in range(2):
        triples = await _run(client, [(_gram_in_place, (task_rule, place, ok, rule.drops_nonfinite, rule.f, allowed,
                                                        anchor, h)) for place, h in zip(places, helds)], timeout,
                             first=None if attempt else blocks)
        common, ok = _settle(rule, [t[0] for t in triples], n, anchor)
        if attempt or ok is None:
            break
    weights = _decide(rule, _sum_partials(*[t[1] for t in triples]), n, common)
    await _run(client, [(_combine_in_place, (place, out, t[2], common, weights))
                        for place, out, t in zip(places, outs, triples)], timeout)


async def aggregate_shared(rule: Any, value: Any, layout: tuple, arena: SharedArena, client: Any, *, workers: int,
                           timeout: float | None, placed: tuple[str, int] | None = None,
                           remote: bool = False, held: dict[str, list[int]] | None = None) -> Any:
    """Aggregate a caller-held input through shared memory: blocks read and output written in place.

    ``layout`` is what :func:`shareable` said of ``value``. Unless the input already lies in
    shared memory (``placed``: its file and offset, see :meth:`SharedArrays.locate`) or the rule
    is columnwise and ``remote`` is true (the workers may read this process's memory: see
    :meth:`ActorPool.reads_caller_memory <byzdask.engine.graph.pool.ActorPool.reads_caller_memory>`;
    they then read it piece by piece, :func:`read_remote`), it is first copied into ``arena``,
    one column block after the other; the d-vector output goes to the arena after the input.
    With ``held`` (``value`` is then a list of futures, or one future of a stacked array, and
    ``held`` maps each worker to the indices of those it holds: :func:`held_layout`), the holders
    write their vectors into the arena, one task each, all at once. The input is cut into a
    multiple of ``workers`` column blocks of about :data:`BLOCK_BYTES` at most (the workers take
    the next block as they finish one, which evens out cores that run at different speeds). A
    columnwise rule is one round of tasks, a gram rule two
    (Gram partials, then the weighted sums), and the tasks return only row masks, Gram partials
    and anchor rows: the output is read back from the arena, never sent over a socket.
    """
    from byzdask.engine.blockwise import _allowed
    from byzdask.kernels.arrays import restore_like
    from byzdask.kernels.blocks import column_blocks

    n, d, dtype, batch = layout
    rule.check_n(n)
    allowed = _allowed(rule, n)
    rounds = max(1, math.ceil(n * d * dtype.itemsize / (workers * BLOCK_BYTES)))
    spans = [(s.start, s.stop) for s in column_blocks(d, n_blocks=min(d, workers * rounds))]
    size = dtype.itemsize
    remote = remote and placed is None and held is None and rule.kind == "columnwise"
    in_bytes = 0 if placed is not None or remote else n * d * size
    with arena.holding(in_bytes + d * size) as (path, buffer):
        try:
            if held is not None:
                # the workers that hold the vectors write them into the arena, each its own rows at once
                # (on its holder when it is there; any local worker can write into the arena)
                stores = [client.submit(_store_rows, path, d, dtype.str, list(range(n)) if batch.stacked else idx,
                                        batch.stacked, *[value[i] for i in idx], workers=[addr],
                                        allow_other_workers=True, pure=False)
                          for addr, idx in held.items()]
                await _gather(client, stores, "storing the held vectors", timeout)
                parts = _Blocks.in_place(path, 0, n, d, dtype, spans)
            elif placed is not None:
                parts = _Blocks.in_place(placed[0], placed[1], n, d, dtype, spans)
            elif remote:
                parts = _Blocks.remote(value, n, d, dtype, spans)
            else:
                parts = _Blocks.copied(path, buffer, value, n, d, dtype, spans)
            outs = [(path, in_bytes + start * size, 1, stop - start, dtype.str) for start, stop in spans]
            if rule.kind == "columnwise":
                await _columnwise(rule, n, parts, outs, allowed, client, timeout)
            else:
                await _gram(rule, n, d, parts, outs, spans, allowed, client, timeout)
            flat = buffer[in_bytes:in_bytes + d * size].view(dtype).copy()
        except BaseException:
            # a task still running after a failure or a time-out writes into this file: the next input gets a new one
            arena.discard()
            raise
    return restore_like(rule.finish(flat), batch)
