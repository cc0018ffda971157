"""Selection kernels of the coordinate-wise rules: order statistics of every column of an (m, b) block.

The coordinate-wise rules (median, trimmed mean, mean of medians) need, for each of the b
columns of a block, a few order statistics of its m values, and the sum of the values between
them. Three routes compute them, with the same result:

* **The compiled route** (numpy arrays of float32 or float64, when numba imports and
  :data:`USE_NUMBA` is true): the same pruned network (:func:`slot_program`) and the rule's
  arithmetic, fused into one compiled loop over column chunks held in the L1 cache
  (:mod:`byzdask.kernels._numba_coordinate`); the first call of a process loads it from numba's
  on-disk cache (or compiles it, once, in a few seconds). Bit for bit the result of the numpy
  network below. About twice as fast as the numpy network; measured at 3 to 5 streaming passes
  over the input at n = 32, d = 2^20, float32, one thread (the target of DESIGN §4 is 5).
* **A pruned sorting network**, with numpy, otherwise, when it is the cheaper numpy route. Batcher's
  merge-exchange network (Knuth, TAOCP vol. 3, 5.2.2, algorithm M) on the next power of two
  is pruned backwards from the ranks that are asked for, so only the comparators that can
  reach them run (:func:`selection_network`).
  Each comparator is two whole-row ufunc calls (``minimum``, ``maximum``) on rows of the
  block, which stays in cache: no per-coordinate Python, no transpose, O(m log^2 m) row
  operations. A comparator network outputs a permutation of its inputs, so once the ranks asked
  for are exact, the other rows hold exactly the other values (as a multiset): sums over a range
  of ranks are read off them without any further ordering.
* **On a GPU** (cupy blocks of at most 64 rows, float32 or float64): the same network,
  unrolled into a CUDA kernel that keeps each column in registers and reads the block once
  (:mod:`byzdask.kernels._cuda_coordinate`; ``byzdask.kernels.cuda-selection: library`` turns
  it off).
* **A sort along the fast axis** otherwise (when the pruned network would cost more than
  :data:`SORT_ROW_OPERATIONS` row operations per row, as for the median of m >= 64; and with
  cupy beyond 64 rows): the block is transposed to (b, m) and each row sorted (numpy's vectorised
  AVX-512 sort; cupy's device sort), and the ranks are read as columns of it.

The results are identical up to the order in which a sum adds its terms.

Examples
--------
>>> import numpy as np
>>> x = np.array([[3.0, 1.0], [1.0, 5.0], [2.0, 9.0], [8.0, 7.0]])
>>> coordinate_median(x, np)
array([2.5, 6. ])
>>> coordinate_trimmed_mean(x, 1, np)
array([2.5, 6. ])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "FUSED_MAX_OPERATIONS",
    "SORT_ROW_OPERATIONS",
    "USE_NUMBA",
    "NetworkProgram",
    "RankedRows",
    "coordinate_mean_of_medians",
    "coordinate_median",
    "coordinate_trimmed_mean",
    "ends_network",
    "fused_kernels",
    "merge_exchange_network",
    "order_statistics",
    "selection_network",
    "slot_program",
]

#: The transposed sort of an (m, b) block costs about as much as this many whole-row ufunc
#: calls per row (measured on one x86-64 core with AVX-512); cheaper networks are used instead.
SORT_ROW_OPERATIONS = 12

#: Run the networks as one compiled loop per column chunk (numba) when numba imports; set it to
#: False to force the numpy routes (the tests force each route this way).
USE_NUMBA = True

_fused: Any = None  # byzdask.kernels._numba_coordinate once imported, False when numba is missing


def fused_kernels() -> Any:
    """The compiled kernels (:mod:`byzdask.kernels._numba_coordinate`), or None without numba.

    Imported on first use, so that importing byzdask does not pay for importing numba (about a
    second); the compiled code itself comes from numba's on-disk cache after the first run.

    Examples
    --------
    >>> fused_kernels() is None or hasattr(fused_kernels(), "median_columns")
    True
    """
    global _fused
    if _fused is None:
        try:
            from byzdask.kernels import _numba_coordinate
        except ImportError as exc:  # numba missing: the numpy routes do all the work
            logger.info("numba unavailable (%s): coordinate-wise rules use the numpy routes", exc)
            _fused = False
        else:
            _fused = _numba_coordinate
    return _fused or None

#: The compiled route runs a pruned network of at most this many comparators per column; larger
#: networks (the median of many hundred rows) go to the sort route instead.
FUSED_MAX_OPERATIONS = 20000


@cache
def merge_exchange_network(m: int) -> tuple[tuple[int, int], ...]:
    """Comparators of Batcher's merge-exchange sorting network on ``m`` wires, in order.

    A comparator ``(i, j)`` with ``i < j`` puts the smaller value on wire i and the larger on
    wire j. Knuth, *The Art of Computer Programming* vol. 3, section 5.2.2, algorithm M; it sorts
    any m (not only powers of two) with O(m log^2 m) comparators.

    Examples
    --------
    >>> merge_exchange_network(3)
    ((0, 2), (0, 1), (1, 2))
    >>> len(merge_exchange_network(32))
    191
    """
    m = int(m)
    if m < 2:
        return ()
    t = (m - 1).bit_length()
    comparators: list[tuple[int, int]] = []
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while True:
            comparators.extend((i, i + d) for i in range(m - d) if i & p == r)
            if q == p:
                break
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return tuple(comparators)


@cache
def selection_network(m: int, ranks: tuple[int, ...], *, half: bool = False, sets: bool = False) -> NetworkProgram:
    """The part of a sorting network on ``m`` wires that fixes the wires ``ranks``.

    The network is :func:`merge_exchange_network` on the next power of two M >= m (or, when m
    is a power of two and every rank lies near an end, :func:`ends_network` if that is
    cheaper), the M - m
    extra wires holding +inf: a comparator that meets one of them moves nothing, or only
    relabels two wires, so it costs no work. Walking backwards from ``ranks``, a comparator is kept when one
    of its outputs is needed later; its inputs are then needed too. With ``half``, a kept
    comparator computes only the outputs needed (a ``min`` or a ``max`` alone): the other
    wires then hold stale values, so :meth:`RankedRows.sum_rows` is not available.

    Returns
    -------
    NetworkProgram
        ``ops``: tuples ``(op, i, j)`` with op one of "cmp", "min", "max", "swap";
        ``rest``: the wires that hold the values of the ranks not asked for, at the end.

    Examples
    --------
    >>> prog = selection_network(32, (15, 16))
    >>> sum(op == "cmp" for op, _, _ in prog.ops)
    157
    >>> selection_network(32, (0, 31)).row_operations  # the minimum and the maximum
    92
    """
    m = int(m)
    ranks = tuple(sorted(set(ranks)))
    if m < 2:
        return NetworkProgram((), tuple(w for w in range(m) if w not in ranks))
    size = 1 << (m - 1).bit_length()
    best = _prune(merge_exchange_network(size), m, size, ranks, half, sets)
    t = 1 << max(0, max((min(k + 1, m - k) for k in ranks), default=1) - 1).bit_length()
    if size == m and 2 * t <= m:  # every rank asked for lies within t of an end
        tree = _prune(ends_network(m, t), m, size, ranks, half, sets)
        if tree.row_operations < best.row_operations:
            best = tree
    return best


def _prune(network: tuple[tuple[int, int], ...], m: int, size: int, ranks: tuple[int, ...],
           half: bool, sets: bool = False) -> NetworkProgram:
    """Keep the comparators of ``network`` (on ``size`` wires, the last size - m at +inf) that reach ``ranks``."""
    # with ``sets``, each run of consecutive ranks, and the other wires together, need their
    # values only as a set: a comparator between two wires of one such group that no kept
    # comparator reads afterwards only permutes the group, and is dropped
    group = {}
    for w in range(size):
        group[w] = -2 if w >= m else (-1 if w not in ranks else (group[w - 1] if w - 1 in ranks else w))
    inf = [w >= m for w in range(size)]
    kinds = []
    for i, j in network:
        if inf[j]:
            kinds.append(None)  # the larger output is already +inf on wire j: nothing moves
        elif inf[i]:
            kinds.append("swap")  # the real value moves down to wire i, +inf up to wire j
            inf[i], inf[j] = False, True
        else:
            kinds.append("cmp")
    needed = set(ranks)
    exact: set[int] = set()  # wires read by a kept comparator later on
    ops = []
    for (i, j), kind in zip(reversed(network), reversed(kinds)):
        if kind is None or not (i in needed or j in needed or sets):
            continue
        if sets and kind == "cmp" and i not in exact and j not in exact and group[i] == group[j]:
            continue
        if kind == "cmp" and half:
            if i not in needed:
                kind = "max"
            elif j not in needed:
                kind = "min"
        ops.append((kind, i, j))
        needed.update((i, j))
        exact.update((i, j))
    ops.reverse()
    inf = [w >= m for w in range(size)]
    for kind, i, j in ops:
        if kind == "swap":
            inf[i], inf[j] = inf[j], inf[i]
    rest = tuple(w for w in range(size) if not inf[w] and w not in ranks)
    return NetworkProgram(tuple(ops), rest)


@cache
def ends_network(m: int, t: int) -> tuple[tuple[int, int], ...]:
    """A network that leaves the t smallest values sorted on wires 0..t-1 and the t largest on m-t..m-1.

    For m a power of two and t a power of two with 2t <= m: sort groups of t wires, then merge
    groups pairwise in two tournaments, one that keeps the t smallest and one that keeps the t
    largest. A merge of two sorted groups A, B is the bitonic split
    ``(A[i], B[t-1-i]) -> (min, max)``, which leaves the t smallest of A + B on A and the t
    largest on B, each a bitonic sequence, then a bitonic merger on the side that goes on
    (Batcher, "Sorting networks and their applications", 1968). Once pruned it needs far fewer
    comparators than the pruned sorting network when t is small: 90 against 140 for the 2
    smallest and the 2 largest of 32, 186 against 380 for those of 64. A comparator ``(i, j)`` puts the smaller value on wire i, even
    where i > j.

    Examples
    --------
    >>> net = ends_network(8, 2)
    >>> v = [5, 3, 8, 1, 9, 2, 7, 4]
    >>> for i, j in net:
    ...     if v[i] > v[j]:
    ...         v[i], v[j] = v[j], v[i]
    >>> v[:2], v[-2:]
    ([1, 2], [8, 9])
    """
    if m & (m - 1) or t & (t - 1) or 2 * t > m:
        raise ValueError(f"ends_network needs m and t powers of two with 2t <= m; got m={m}, t={t}")
    comps: list[tuple[int, int]] = []
    groups = [list(range(g, g + t)) for g in range(0, m, t)]
    for group in groups:
        comps.extend((group[i], group[j]) for i, j in merge_exchange_network(t))

    def split(a: list[int], b: list[int]) -> None:
        comps.extend((a[i], b[t - 1 - i]) for i in range(t))

    def bitonic_sort(wires: list[int]) -> None:
        # the merger sorts a bitonic sequence into increasing order along ``wires``
        half = len(wires) // 2
        if half == 0:
            return
        comps.extend((wires[i], wires[i + half]) for i in range(half))
        bitonic_sort(wires[:half])
        bitonic_sort(wires[half:])

    lows, highs = [], []
    for a, b in zip(groups[0::2], groups[1::2]):  # first round: both sides go on
        split(a, b)
        bitonic_sort(a)
        bitonic_sort(b)
        lows.append(a)
        highs.append(b)
    while len(lows) > 1:  # the t smallest: the lower side of each split goes on
        nxt = []
        for a, b in zip(lows[0::2], lows[1::2]):
            split(a, b)
            bitonic_sort(a)
            nxt.append(a)
        lows = nxt
    while len(highs) > 1:  # the t largest: the upper side goes on
        nxt = []
        for a, b in zip(highs[0::2], highs[1::2]):
            split(a, b)
            bitonic_sort(b)
            nxt.append(b)
        highs = nxt
    # the survivors sit on the first and the last group of wires, as wanted
    assert lows[0] == groups[0] and highs[0] == groups[-1]
    return tuple(comps)


class NetworkProgram(NamedTuple):
    """Operations of a pruned selection network (see :func:`selection_network`)."""

    ops: tuple[tuple[str, int, int], ...]
    rest: tuple[int, ...]

    @property
    def row_operations(self) -> int:
        """Whole-row ufunc calls the program makes (its cost)."""
        return sum({"cmp": 2, "min": 1, "max": 1}.get(op, 0) for op, _, _ in self.ops)


@cache
def slot_program(m: int, ranks: tuple[int, ...], *, half: bool = False,
                 sets: bool = False) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """:func:`selection_network` with its relabellings resolved, for the compiled route.

    Returns ``(ops, slot, rest)``: ``ops`` an (k, 3) int64 array of ``(code, i, j)`` on rows of
    the block (code 0 a comparator, 1 its minimum alone, 2 its maximum alone), ``slot[w]`` the
    row that holds wire w at the end, and ``rest`` as in :class:`NetworkProgram`.

    Examples
    --------
    >>> ops, slot, rest = slot_program(3, (1,), half=True)
    >>> ops.tolist(), slot[1]
    ([[0, 0, 2], [2, 0, 1], [1, 1, 2]], 1)
    """
    prog = selection_network(m, tuple(sorted(set(ranks))), half=half, sets=sets)
    slot = list(range(max(m, 1 << max(0, (m - 1).bit_length()))))
    codes = {"cmp": 0, "min": 1, "max": 2}
    ops = []
    for kind, i, j in prog.ops:
        if kind == "swap":
            slot[i], slot[j] = slot[j], slot[i]
        else:
            ops.append((codes[kind], slot[i], slot[j]))
    table = np.array(ops, dtype=np.int64).reshape(-1, 3)
    if table.size and table[:, 1:].max() >= m:  # a comparator never meets a padding wire
        raise AssertionError(f"network on {m} wires reads a padding row")
    return table, tuple(slot), prog.rest


class RankedRows:
    """Per-column order statistics of an (m, b) block, as :func:`order_statistics` returns them.

    ``row(k)`` is the (b,) vector of the k-th smallest value of every column, for each k that
    was asked for; ``sum_rows(start, stop)`` is the sum of the values of ranks start..stop-1 of
    each column, available when every rank outside ``range(start, stop)`` was asked for.
    """

    def __init__(self, xp: Any, *, sorted_cols: Any = None, wires: list | None = None,
                 rest: tuple[int, ...] = (), ranks: tuple[int, ...] = (), sets: bool = False) -> None:
        self.xp = xp
        #: the sort route: a (b, m) array, each row (a column of the block) sorted
        self.sorted_cols = sorted_cols
        self._wires = wires  # the network route: wire k holds rank k for k in ranks
        self._rest = rest
        self._ranks = ranks
        self._sets = sets  # the rank wires hold their run of ranks as a set, not in order

    def row(self, k: int) -> Any:
        """The vector of rank ``k`` (0 = the smallest of each column)."""
        if self.sorted_cols is not None:
            return self.sorted_cols[:, k]
        if k not in self._ranks or self._sets:
            raise ValueError(f"rank {k} was not asked for (asked: {self._ranks}, as sets only: {self._sets})")
        return self._wires[k]

    def sum_rows(self, start: int, stop: int) -> Any:
        """Sum of the values of ranks start..stop-1 of each column (a fresh (b,) vector)."""
        if self.sorted_cols is not None:
            return self.sorted_cols[:, start:stop].sum(axis=1)
        outside = set(range(start)) | set(range(stop, len(self._rest) + len(self._ranks)))
        edges = self._sets and (start in self._ranks or stop - 1 in self._ranks)
        if not outside <= set(self._ranks) or self._wires is None or edges:
            raise ValueError(f"sum_rows({start}, {stop}) needs the ranks {sorted(outside)} asked for")
        terms = [self._wires[w] for w in self._rest]
        terms += [self._wires[k] for k in self._ranks if start <= k < stop]
        acc = terms[0].copy()
        for row in terms[1:]:
            self.xp.add(acc, row, out=acc)
        return acc


def _is_numpy(xp: Any) -> bool:
    return xp is np


def order_statistics(block: Any, ranks: Iterable[int], xp: Any, *, half: bool = False,
                     sets: bool = False) -> RankedRows:
    """Order the values of each column of ``block`` (m, b) far enough to read the ``ranks``.

    Parameters
    ----------
    block : array (m, b)
        Finite values, numpy or cupy (``xp``). Not modified.
    ranks : iterable of int
        The ranks needed exactly (0 = smallest, m - 1 = largest).
    xp : module
        numpy or cupy.
    half : bool
        Only the ranks are needed (no :meth:`RankedRows.sum_rows`): lets the network skip the
        outputs nobody reads.
    sets : bool
        Only :meth:`RankedRows.sum_rows` over ranges that start and stop at the edges of runs
        of asked ranks is needed (no :meth:`RankedRows.row`): lets the network skip the
        comparators that only order values within such a run.

    Returns
    -------
    RankedRows

    Notes
    -----
    Cost: with numpy, when the pruned network needs fewer than about
    :data:`SORT_ROW_OPERATIONS` x m whole-row operations (each over b values held in
    cache), the network; otherwise one transpose and one sort of each column.

    Examples
    --------
    >>> import numpy as np
    >>> r = order_statistics(np.array([[4.0], [1.0], [3.0], [2.0]]), [0, 3], np)
    >>> float(r.row(0)[0]), float(r.row(3)[0]), float(r.sum_rows(1, 3)[0])
    (1.0, 4.0, 5.0)
    """
    m = block.shape[0]
    ranks = tuple(sorted({int(k) for k in ranks}))
    if _is_numpy(xp):
        prog = selection_network(m, ranks, half=half, sets=sets)
        if prog.row_operations <= SORT_ROW_OPERATIONS * m:
            wires = _run_network(block, prog, xp)
            return RankedRows(xp, wires=wires, rest=() if half else prog.rest, ranks=ranks, sets=sets)
        # numpy sorts fastest along the contiguous axis: sort the (b, m) transpose per row
        work = np.empty((block.shape[1], m), dtype=block.dtype)
        work[...] = block.T
        work.sort(axis=1)
        return RankedRows(xp, sorted_cols=work)
    return RankedRows(xp, sorted_cols=xp.sort(block, axis=0).T)


def _run_network(block: Any, prog: NetworkProgram, xp: Any) -> list:
    """Run a network program on the rows of a copy of ``block``; return the rows by wire."""
    m, b = block.shape
    work = xp.empty((m + 1, b), dtype=block.dtype)
    work[:m] = block
    wires = list(work)
    spare = wires.pop()
    wires += [None] * ((1 << max(0, (m - 1).bit_length())) - m)
    low, high = xp.minimum, xp.maximum
    for op, i, j in prog.ops:
        a, c = wires[i], wires[j]
        if op == "cmp":
            low(a, c, out=spare)
            high(a, c, out=c)
            wires[i], spare = spare, a
        elif op == "min":
            low(a, c, out=a)
        elif op == "max":
            high(a, c, out=c)
        else:
            wires[i], wires[j] = c, a
    return wires


def _fused_route(block: Any, xp: Any) -> Any:
    """The compiled kernels if they take ``block`` (numba allowed and importable, numpy float32/64), else None."""
    if (USE_NUMBA and _is_numpy(xp) and block.dtype in (np.float32, np.float64)
            and block.ndim == 2 and block.shape[1] > 0):
        return fused_kernels()
    return None


def _raw_route(block: Any, xp: Any) -> Any:
    """The CUDA kernels (:mod:`byzdask.kernels._cuda_coordinate`) if they take ``block``, else None.

    They take cupy blocks of float32 or float64 with 1..``MAX_ROWS`` rows, unless
    ``byzdask.kernels.cuda-selection`` is ``"library"`` (the sort route).
    """
    if _is_numpy(xp) or getattr(xp, "__name__", "") != "cupy" or not hasattr(xp, "RawKernel"):
        return None
    import dask.config

    from byzdask.errors import ConfigurationError
    from byzdask.kernels import _cuda_coordinate

    choice = dask.config.get("byzdask.kernels.cuda-selection", "raw")
    if choice not in ("raw", "library"):
        raise ConfigurationError(f"byzdask.kernels.cuda-selection must be 'raw' or 'library', got {choice!r}")
    if (choice == "raw" and block.ndim == 2 and 1 <= block.shape[0] <= _cuda_coordinate.MAX_ROWS
            and np.dtype(block.dtype) in (np.float32, np.float64)):
        return _cuda_coordinate
    return None


def _compiled_route(block: Any, xp: Any) -> Any:
    """The fused kernels of the block's device (numba on the CPU, CUDA on a GPU), or None."""
    fused = _fused_route(block, xp)
    return fused if fused is not None else _raw_route(block, xp)


def _check_trim(block: Any, f: int) -> int:
    m = block.shape[0]
    if not 0 <= f or not 2 * f < m:
        raise ValueError(f"needs 0 <= 2f < m rows; got f={f} with m={m}")
    return m


def _median_of(ranked: RankedRows, m: int) -> Any:
    lo, hi = (m - 1) // 2, m // 2
    if lo == hi:
        return ranked.row(lo).copy()
    # 0.5 a + 0.5 b cannot overflow where (a + b) / 2 would
    out = ranked.row(lo) * 0.5
    out += ranked.row(hi) * 0.5
    return out


def coordinate_median(block: Any, xp: Any) -> Any:
    """Median of each column of ``block`` (m, b); the mean of the two middle values for even m.

    Examples
    --------
    >>> import numpy as np
    >>> coordinate_median(np.array([[1.0, 4.0], [3.0, 2.0], [2.0, 0.0]]), np)
    array([2., 2.])
    """
    m = block.shape[0]
    lo, hi = (m - 1) // 2, m // 2
    if (fused := _compiled_route(block, xp)) is not None:
        ops, slot, _ = slot_program(m, tuple(sorted({lo, hi})), half=True)
        if len(ops) <= FUSED_MAX_OPERATIONS:
            return fused.median_columns(block, ops, slot[lo], slot[hi])
    return _median_of(order_statistics(block, (lo, hi), xp, half=True), m)


def coordinate_trimmed_mean(block: Any, f: int, xp: Any) -> Any:
    """Mean of each column of ``block`` (m, b) without its f smallest and f largest values.

    Needs m > 2f. The middle values are summed as they are (never as a total minus the extremes,
    which would cancel catastrophically next to huge outliers).

    Examples
    --------
    >>> import numpy as np
    >>> coordinate_trimmed_mean(np.array([[1.0], [100.0], [2.0], [3.0], [-50.0]]), 1, np)
    array([2.])
    """
    m = _check_trim(block, f)
    if f == 0:
        return block.mean(axis=0)
    ends = (*range(f), *range(m - f, m))
    if (fused := _compiled_route(block, xp)) is not None:
        ops, slot, rest = slot_program(m, ends, sets=True)
        if len(ops) <= FUSED_MAX_OPERATIONS:
            return fused.sum_columns(block, ops, [slot[w] for w in rest], m - 2 * f)
    ranked = order_statistics(block, ends, xp, sets=True)
    out = ranked.sum_rows(f, m - f)
    out /= m - 2 * f
    return out


def coordinate_mean_of_medians(block: Any, f: int, xp: Any) -> Any:
    """Per column, the mean of the m - f values closest to the median; needs m > 2f.

    Ties in distance to the median keep the smaller value. The kept values are a window of
    the sorted column: its middle ranks f..m-f-1 always, and, for each i < f, one of the pair
    (rank i, rank m-f+i): the one closer to the median, the lower one on a tie. (The distance of
    rank i falls and that of rank m-f+i grows with i, so the pairs that keep the upper value
    come first: the choices form the window.)

    Examples
    --------
    >>> import numpy as np
    >>> # median 3; the three values closest to it are 2, 3, 4.5
    >>> coordinate_mean_of_medians(np.array([[1.0], [2.0], [3.0], [4.5], [9.0]]), 2, np)
    array([3.16666667])
    """
    m = _check_trim(block, f)
    if f == 0:
        return block.mean(axis=0)
    lo, hi = (m - 1) // 2, m // 2
    ranks = tuple(sorted({*range(f), lo, hi, *range(m - f, m)}))
    if (fused := _compiled_route(block, xp)) is not None:
        ops, slot, rest = slot_program(m, ranks)
        if len(ops) <= FUSED_MAX_OPERATIONS:
            # the order of numpy's RankedRows.sum_rows: the other wires, then the middle ranks
            rows = [slot[w] for w in rest] + [slot[k] for k in ranks if f <= k < m - f]
            return fused.mean_of_medians_columns(block, ops, slot[lo], slot[hi], rows,
                                                  [slot[i] for i in range(f)],
                                                  [slot[m - f + i] for i in range(f)], m - f)
    ranked = order_statistics(block, ranks, xp)
    med = _median_of(ranked, m)
    out = ranked.sum_rows(f, m - f)
    if ranked.sorted_cols is None:
        below, above = xp.empty_like(med), xp.empty_like(med)
        for i in range(f):
            low, high = ranked.row(i), ranked.row(m - f + i)
            xp.subtract(med, low, out=below)
            xp.subtract(high, med, out=above)
            out += xp.where(below > above, high, low)
    else:
        low, high = ranked.sorted_cols[:, :f], ranked.sorted_cols[:, m - f:]
        centre = med[:, None]
        out += xp.where((centre - low) > (high - centre), high, low).sum(axis=1)
    out /= m - f
    return out
