"""Hand-written CUDA kernels of the coordinate-wise rules (CuPy ``RawKernel``), for small m over large d.

The library route of :mod:`byzdask.kernels.coordinate` on a GPU sorts every column
(``cupy.sort(block, axis=0)``): a transpose, a segmented sort and several passes over device
memory. These kernels read the block once instead: one thread per column loads the column's m
values into registers, runs the same pruned selection network as the compiled CPU route
(:func:`byzdask.kernels.coordinate.slot_program`), unrolled into straight-line ``min``/``max``
code, and writes one value. Consecutive threads read consecutive columns of each row, so the
loads coalesce; the cost is one streaming pass over the (m, d) input plus the d outputs.

The arithmetic is the one of the numba kernels step by step (the median as ``0.5 a + 0.5 b``;
sums adding the rows in the order given; one division at the end; no fused multiply-add), so
the three routes give the same bits.

The kernel text is generated per (rule, m, ranks, dtype) and compiled once per process by
NVRTC through CuPy (``RawKernel`` caches the binary). The same text compiles as C++ on the CPU
with a few definitions standing in for CUDA's (:data:`EMULATION_PRELUDE`, :func:`emulation_source`): the tests run every
generated kernel that way, over a grid of blocks and threads, against the numpy route.

Only networks on at most :data:`MAX_ROWS` rows are unrolled (each row is a register).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["EMULATION_PRELUDE", "MAX_ROWS", "THREADS", "emulation_source", "kernel_source", "mean_of_medians_columns",
           "median_columns", "sum_columns"]

#: Largest m unrolled into registers; larger blocks take the library route.
MAX_ROWS = 64
#: Threads per CUDA block.
THREADS = 256

_TYPES = {np.dtype(np.float32): ("float", "f"), np.dtype(np.float64): ("double", "")}
PARAMS = "const T* __restrict__ x, long long stride, long long d, T* __restrict__ out"


def _ctype(dtype: Any) -> tuple[str, str]:
    try:
        return _TYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"the CUDA selection kernels take float32 or float64, got {np.dtype(dtype)}") from None


def _network_lines(ops: np.ndarray) -> list[str]:
    lines = []
    for code, i, j in np.asarray(ops, dtype=np.int64).tolist():
        if code == 0:
            lines.append(f"  {{ T u = v{i}, w = v{j}; v{i} = w < u ? w : u; v{j} = w < u ? u : w; }}")
        elif code == 1:
            lines.append(f"  {{ T u = v{i}, w = v{j}; v{i} = w < u ? w : u; }}")
        else:
            lines.append(f"  {{ T u = v{i}, w = v{j}; v{j} = w < u ? u : w; }}")
    return lines


def _median_expr(lo: int, hi: int, suffix: str) -> str:
    if lo == hi:
        return f"v{lo}"
    return f"v{lo} * (T)0.5{suffix} + v{hi} * (T)0.5{suffix}"


def kernel_source(name: str, m: int, ops: np.ndarray, dtype: Any, *, lo: int | None = None, hi: int | None = None,
                  rows: tuple[int, ...] = (), lows: tuple[int, ...] = (), highs: tuple[int, ...] = (),
                  divisor: int = 1, kind: str) -> str:
    """CUDA C text of one selection kernel ``name(x, stride, d, out)`` on an (m, d) block.

    Row r of the block starts at ``x + r * stride``; thread c (``blockIdx.x * blockDim.x +
    threadIdx.x``) handles column c < d. ``kind`` is ``"median"`` (rows lo and hi after the
    network), ``"sum"`` (the sum of ``rows``, in that order, over ``divisor``) or
    ``"mean_of_medians"`` (the sum of ``rows`` plus, of each pair ``(lows[t], highs[t])``, the
    value nearer the median, over ``divisor``).

    Examples
    --------
    >>> from byzdask.kernels.coordinate import slot_program
    >>> ops, slot, _ = slot_program(3, (1,), half=True)
    >>> src = kernel_source("med3", 3, ops, np.float32, lo=slot[1], hi=slot[1], kind="median")
    >>> 'extern "C" __global__ void med3(' in src, "out[c] = v1;" in src
    (True, True)
    """
    if not 1 <= m <= MAX_ROWS:
        raise ValueError(f"the CUDA selection kernels unroll 1..{MAX_ROWS} rows, got m={m}")
    ctype, suffix = _ctype(dtype)
    body = [f"typedef {ctype} T;",
            f'extern "C" __global__ void {name}({PARAMS}) {{',
            "  const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;",
            "  if (c >= d) return;"]
    body += [f"  T v{r} = x[{r}LL * stride + c];" for r in range(m)]
    body += _network_lines(ops)
    if kind == "median":
        body.append(f"  out[c] = {_median_expr(lo, hi, suffix)};")
    elif kind in ("sum", "mean_of_medians"):
        if not rows:
            raise ValueError("a sum kernel needs at least one row to add")
        body.append(f"  T acc = v{rows[0]};")
        body += [f"  acc += v{r};" for r in rows[1:]]
        if kind == "mean_of_medians":
            body.append(f"  const T med = {_median_expr(lo, hi, suffix)};")
            for low, high in zip(lows, highs):
                body.append(f"  acc += (med - v{low}) > (v{high} - med) ? v{high} : v{low};")
        body.append(f"  out[c] = acc / (T){divisor}.0{suffix};")
    else:
        raise ValueError(f"kind must be 'median', 'sum' or 'mean_of_medians', got {kind!r}")
    body.append("}")
    return "\n".join(body) + "\n"


#: C++ definitions standing in for CUDA's built-ins when a kernel text is compiled for the CPU.
EMULATION_PRELUDE = ("struct byz_dim3 { unsigned int x, y, z; };\n"
                     "static byz_dim3 blockIdx, threadIdx, blockDim, gridDim;\n"
                     "#define __global__\n#define __restrict__ __restrict\n")


def emulation_source(source: str, name: str) -> str:
    """The kernel text as C++ for the CPU (after :data:`EMULATION_PRELUDE`), with a launcher.

    ``byz_launch_<name>(grid, threads, x, stride, d, out)`` runs the kernel body once per
    (block, thread) pair of a one-dimensional grid, as a GPU would (in sequence instead of in
    parallel; the kernels share no memory between threads). Each kernel sits in a namespace of
    its own, so that many of them compile as one translation unit.
    """
    launcher = (f'extern "C" void byz_launch_{name}(unsigned int grid, unsigned int threads, {PARAMS}) {{\n'
                "  gridDim.x = grid; blockDim.x = threads;\n"
                "  for (unsigned int b = 0; b < grid; ++b) for (unsigned int t = 0; t < threads; ++t) {\n"
                f"    blockIdx.x = b; threadIdx.x = t; {name}(x, stride, d, out);\n"
                "  }\n}\n")
    return f"namespace byz_ns_{name} {{\n{source}{launcher}}}\n"


@lru_cache(maxsize=256)
def _compiled(source: str, name: str) -> Any:
    import cupy

    # no fused multiply-add: the same rounding as the CPU routes
    return cupy.RawKernel(source, name, options=("--fmad=false",))


def run_on_device(source: str, name: str, block: Any, stride: int, out: Any) -> None:
    """Compile (once) and launch kernel ``name`` of ``source`` on a cupy block: one thread per column."""
    d = out.shape[0]
    grid = (d + THREADS - 1) // THREADS
    _compiled(source, name)((grid,), (THREADS,), (block, np.int64(stride), np.int64(d), out))


#: How a kernel is run: ``run(source, name, block, stride, out)``. The tests put a CPU emulator here.
run = run_on_device


def _rows_and_stride(block: Any, xp: Any) -> tuple[Any, int]:
    """The block with unit column stride and its row stride in elements (a column slice is not copied)."""
    size = block.itemsize
    if block.shape[1] > 0 and block.strides[1] == size and block.strides[0] % size == 0 \
            and block.strides[0] >= block.shape[1] * size:
        return block, block.strides[0] // size
    block = xp.ascontiguousarray(block)
    return block, block.shape[1]


def _launch(block: Any, tag: str, **spec: Any) -> Any:
    if isinstance(block, np.ndarray):  # the CPU emulation of the tests
        return _launch_in(block, np, tag, spec)
    import cupy

    with block.device:  # allocate and launch on the block's device, whichever is current
        return _launch_in(block, cupy, tag, spec)


def _launch_in(block: Any, xp: Any, tag: str, spec: dict[str, Any]) -> Any:
    m, d = block.shape
    block, stride = _rows_and_stride(block, xp)
    name = f"byz_{tag}_{m}"
    source = kernel_source(name, m, spec.pop("ops"), block.dtype, **spec)
    out = xp.empty(d, dtype=block.dtype)
    if d:
        run(source, name, block, stride, out)
    return out


def median_columns(block: Any, ops: np.ndarray, lo: int, hi: int) -> Any:
    """As :func:`byzdask.kernels._numba_coordinate.median_columns`, on a cupy block."""
    return _launch(block, "median", ops=ops, lo=lo, hi=hi, kind="median")


def sum_columns(block: Any, ops: np.ndarray, rows: list[int], divisor: int) -> Any:
    """As :func:`byzdask.kernels._numba_coordinate.sum_columns`, on a cupy block."""
    return _launch(block, "sum", ops=ops, rows=tuple(rows), divisor=divisor, kind="sum")


def mean_of_medians_columns(block: Any, ops: np.ndarray, lo: int, hi: int, rows: list[int],
                            lows: list[int], highs: list[int], divisor: int) -> Any:
    """As :func:`byzdask.kernels._numba_coordinate.mean_of_medians_columns`, on a cupy block."""
    return _launch(block, "meamed", ops=ops, lo=lo, hi=hi, rows=tuple(rows), lows=tuple(lows), highs=tuple(highs),
                   divisor=divisor, kind="mean_of_medians")
