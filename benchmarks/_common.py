"""Timing and thread-limit helpers shared by the scripts in ``benchmarks/``.

Import this module, and call :func:`limit_threads`, *before* numpy, torch or byzdask are
imported: BLAS and OpenMP read their thread counts from the environment when they load.

    import _common
    _common.limit_threads(1)
    import numpy as np  # noqa: E402

Timings are taken in a forked child process (:func:`measure`), so that a call that would run
for hours (an exhaustive subset search) is cut at a time budget and reported as skipped instead
of hanging the benchmark; the child shares the parent's memory (copy on write), so the inputs
are not copied.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "THREAD_VARIABLES",
    "Timing",
    "format_ms",
    "format_table",
    "geomean",
    "limit_threads",
    "measure",
    "thread_report",
]

#: Environment variables that cap the threads of BLAS / OpenMP runtimes.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)
#: Set on some machines to work around old OpenBLAS builds; they slow a current numpy down.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_state: dict[str, Any] = {"threads": None, "unset": ()}


def limit_threads(threads: int = 1, *, unset_openblas_overrides: bool = True) -> None:
    """Cap every BLAS/OpenMP runtime at ``threads`` threads.

    Sets the variables of :data:`THREAD_VARIABLES`; unsets ``OPENBLAS_CORETYPE`` and
    ``OPENBLAS_L2_SIZE`` together (for this process only) unless asked not to. Must run before
    numpy and torch are imported; :func:`apply_runtime_limits` finishes the job after they are.
    """
    import sys

    loaded = [m for m in ("numpy", "torch") if m in sys.modules]
    if loaded:
        raise RuntimeError(f"limit_threads must run before importing {', '.join(loaded)}")
    for var in THREAD_VARIABLES:
        os.environ[var] = str(int(threads))
    unset = []
    if unset_openblas_overrides:
        for var in OPENBLAS_OVERRIDES:
            if os.environ.pop(var, None) is not None:
                unset.append(var)
    _state["threads"] = int(threads)
    _state["unset"] = tuple(unset)


def apply_runtime_limits() -> None:
    """After numpy/torch are imported: torch.set_num_threads and threadpoolctl limits."""
    threads = _state["threads"]
    if threads is None:
        return
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        _state["limiter"] = threadpool_limits(limits=threads)
    except ImportError:
        pass


def thread_report() -> str:
    """One paragraph on the machine, the libraries and the thread limits in force."""
    lines = [(f"machine: {platform.machine()} {_cpu_name()}, {os.cpu_count()} logical cores, "
             f"python {platform.python_version()}")]
    from importlib import metadata

    versions = []
    for dist in ("numpy", "torch", "byzdask", "byzpy", "byzfl", "dask"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    lines.append("versions: " + ", ".join(versions))
    threads = _state["threads"]
    msg = f"threads: {threads if threads is not None else 'not limited'}"
    try:
        import torch

        msg += f" (torch.get_num_threads() = {torch.get_num_threads()})"
    except ImportError:
        pass
    if _state["unset"]:
        msg += f"; unset for this run: {', '.join(_state['unset'])}"
    lines.append(msg)
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            lines.append(f"  {info.get('internal_api')} {info.get('version', '')} "
                         f"arch={info.get('architecture', '-')} threads={info.get('num_threads')} "
                         f"({os.path.basename(info.get('filepath', ''))})")
    except ImportError:
        lines.append("  (threadpoolctl not installed: BLAS details unknown)")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@dataclass
class Timing:
    """Result of :func:`measure`: wall times in seconds of the timed calls, or why there are none."""

    samples: list[float] = field(default_factory=list)
    status: str = "ok"  # "ok" | "timeout" | "error"
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.samples)

    @property
    def best_ms(self) -> float:
        return 1e3 * min(self.samples) if self.samples else math.nan

    def describe(self) -> str:
        """The best time in ms, or the reason there is none."""
        if self.ok:
            return format_ms(self.best_ms)
        return self.message or self.status


def _limit_memory(extra_bytes: int | None) -> None:
    """Cap this process's data segment at its current size plus ``extra_bytes`` (Linux)."""
    if not extra_bytes:
        return
    try:
        import resource

        with open("/proc/self/status", encoding="utf-8") as fh:
            data_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmData:"))
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = data_kb * 1024 + int(extra_bytes)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ImportError, OSError, StopIteration, ValueError):
        pass  # no cap on this platform: the time-out still applies


def _child(conn: Any, fn: Callable[[], Any], repeat: int, warmup_below_s: float, budget_s: float,
           memory_limit_bytes: int | None) -> None:
    try:
        _limit_memory(memory_limit_bytes)
        taken, warmed = 0, False
        start = time.perf_counter()
        while taken < repeat:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if not warmed:
                warmed = True
                if dt < warmup_below_s:
                    continue  # a fast first call warms caches and allocators: not a sample
            conn.send(("sample", dt))
            taken += 1
            if time.perf_counter() - start > budget_s:
                break
        conn.send(("done", None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def measure(fn: Callable[[], Any], *, repeat: int = 5, timeout_s: float = 60.0, budget_s: float = 20.0,
            warmup_below_s: float = 1.0, memory_limit_bytes: int | None = None,
            in_process: bool = False) -> Timing:
    """Time ``fn()`` ``repeat`` times (after one warm-up call when that call is fast).

    The calls run in a forked child: if one call takes more than ``timeout_s`` the child is
    killed and the result says ``skipped (> timeout_s s)``. Sampling stops early once
    ``budget_s`` seconds have been spent (at least one sample is always taken). An exception
    in ``fn`` is returned as status "error" with its message.

    ``memory_limit_bytes`` caps what the child may allocate beyond what it inherited (a
    MemoryError is then reported as an error, not a machine out of memory).

    ``in_process=True`` runs the calls here (no fork, no timeout): for platforms without fork.
    """
    if in_process or "fork" not in multiprocessing.get_all_start_methods():
        timing = Timing()
        try:
            fn()
            t_end = time.perf_counter() + budget_s
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                timing.samples.append(time.perf_counter() - t0)
                if time.perf_counter() > t_end:
                    break
        except Exception as exc:  # noqa: BLE001
            return Timing(status="error", message=f"error: {type(exc).__name__}: {exc}")
        return timing
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, repeat, warmup_below_s, budget_s, memory_limit_bytes), daemon=True)
    proc.start()
    child.close()
    timing = Timing()
    try:
        while True:
            # a (short) warm-up call may run before the first timed call
            wait = timeout_s + (warmup_below_s if not timing.samples else 0.0)
            if not parent.poll(wait):
                timing.status = "timeout" if not timing.samples else "ok"
                if not timing.samples:
                    timing.message = f"skipped (> {timeout_s:g} s)"
                break
            try:
                kind, value = parent.recv()
            except EOFError:
                timing.status, timing.message = "error", f"error: child exited with code {proc.exitcode}"
                break
            if kind == "sample":
                timing.samples.append(value)
            elif kind == "error":
                timing.status, timing.message = "error", f"error: {value}"
                break
            else:
                break
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        parent.close()
    if timing.status == "error" and timing.samples:
        timing.status = "ok"
    return timing


def geomean(values: Iterable[float]) -> float:
    """Geometric mean of the positive finite values (nan when there are none)."""
    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not vals:
        return math.nan
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def format_ms(ms: float) -> str:
    """A time in ms with 3 significant digits (at least one decimal below 100 ms)."""
    if ms is None or not math.isfinite(ms):
        return "-"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def format_table(header: list[str], rows: list[list[str]], *, right: Iterable[int] = ()) -> str:
    """A plain-text table with aligned columns; columns whose index is in ``right`` align right."""
    right = set(right)
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)
