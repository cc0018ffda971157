#!/usr/bin/env python
"""The best any fan-out over local worker processes could do on this machine, against the direct path.

    python benchmarks/fanout_bound.py                        # n=32, d=2^22 (512 MiB), 2 workers
    python benchmarks/fanout_bound.py --log2-d 24 --workers 8 --repeat 3

No Dask here: the caller and ``--workers`` forked processes share one anonymous shared-memory
mapping, so nothing is serialised or sent over a socket. Rows (n=32 float32, min over
``--repeat`` runs):

- ``direct``: ``rule.aggregate(x)`` in this process, for CWMed and Krum (one core);
- ``1 process, 1/W of d`` / ``W processes at once, 1/W of d each``: CWMed on a (n, d/W) block,
  alone and with every worker busy on its own block at the same time (how much the cores slow
  each other: memory bandwidth, shared caches, SMT siblings);
- ``copy into warm shared memory`` / ``copy into fresh memory``: what shipping the input to
  another process costs at the very least (one copy; ``fresh`` pays the first-touch page
  faults that a newly received buffer pays);
- ``fan-out bound, CWMed``: copy each block into shared memory and let its worker compute the
  block's median as soon as its copy is done (copy and compute overlap), until the last worker
  finishes;
- ``fan-out bound, Krum``: the same with each worker computing its block's Gram partial, then,
  after the caller has summed them, its block of the weighted sum (the two passes of a gram rule;
  the n x n decision itself is left out).

A real fan-out (Dask tasks, TCP, the reduce) costs more than the bound; where the bound does not
beat ``direct``, no fan-out will (see ``benchmarks/engine.py`` for the real ones).
"""

from __future__ import annotations

import argparse
import itertools
import mmap
import multiprocessing as mp
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import _common

_common.limit_threads(1)

import numpy as np

N = 32


def _blocks(d: int, workers: int) -> list[tuple[int, int]]:
    edges = [round(i * d / workers) for i in range(workers + 1)]
    return list(itertools.pairwise(edges))


def _view(shared: mmap.mmap, d: int, start: int, stop: int) -> np.ndarray:
    """Block ``[start, stop)`` of the input, stored block after block (each block contiguous)."""
    return np.frombuffer(shared, dtype=np.float32, count=N * (stop - start), offset=4 * N * start).reshape(N, stop - start)


def _worker(conn, shared: mmap.mmap, d: int, span: tuple[int, int]) -> None:
    from byzdask.aggregators import CoordinateWiseMedian

    _common.apply_runtime_limits()
    rule = CoordinateWiseMedian()
    block = _view(shared, d, *span)
    local = np.ascontiguousarray(block[:, : max(1, block.shape[1])])  # a private copy for the "alone" rows
    rule.aggregate(local[:, :1024])  # load the compiled kernels
    while True:
        cmd = conn.recv()
        t0 = time.perf_counter()
        if cmd == "stop":
            return
        if cmd == "median-private":
            rule.aggregate(local)
        elif cmd == "median":
            rule.aggregate(block)
        elif cmd == "gram":
            conn.send(np.asarray(block @ block.T, dtype=np.float64))
            continue
        elif isinstance(cmd, tuple) and cmd[0] == "combine":
            cmd[1].astype(np.float32) @ block
        conn.send(time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log2-d", type=int, default=22)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _common.apply_runtime_limits()
    print(_common.thread_report())
    from byzdask.aggregators import CoordinateWiseMedian, Krum

    d, workers = 1 << args.log2_d, args.workers
    spans = _blocks(d, workers)
    x = np.random.default_rng(0).standard_normal((N, d), dtype=np.float32)
    shared = mmap.mmap(-1, x.nbytes)  # anonymous and shared: forked workers see the same pages
    blocks = [_view(shared, d, *s) for s in spans]
    for blk, (a, b) in zip(blocks, spans):
        np.copyto(blk, x[:, a:b])
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    for span in spans:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, shared, d, span), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)

    def best(fn) -> float:
        fn()
        return min(_timed(fn) for _ in range(args.repeat))

    def ask(conns, cmd):
        for c in conns:
            c.send(cmd)
        return [c.recv() for c in conns]

    rows = []
    try:
        cwmed, krum = CoordinateWiseMedian(), Krum(f=8)
        rows.append(["direct, CWMed", best(lambda: cwmed.aggregate(x))])
        rows.append(["direct, Krum (f=8)", best(lambda: krum.aggregate(x))])
        alone = min(min(ask(pipes[:1], "median-private")) for _ in range(args.repeat + 1))
        together = min(max(ask(pipes, "median-private")) for _ in range(args.repeat + 1))
        rows.append([f"1 process, 1/{workers} of d (CWMed)", alone])
        rows.append([f"{workers} processes at once, 1/{workers} of d each (CWMed)", together])
        rows.append(["copy into warm shared memory",
                     best(lambda: [np.copyto(blk, x[:, a:b]) for blk, (a, b) in zip(blocks, spans)])])
        rows.append(["copy into fresh memory", best(lambda: x.copy())])

        def fan_median():
            for blk, (a, b), c in zip(blocks, spans, pipes):
                np.copyto(blk, x[:, a:b])
                c.send("median")
            for c in pipes:
                c.recv()

        def fan_krum():
            for blk, (a, b), c in zip(blocks, spans, pipes):
                np.copyto(blk, x[:, a:b])
                c.send("gram")
            gram = sum(c.recv() for c in pipes)
            weights = np.full(N, 1.0 / N) + 0.0 * gram[0]
            ask(pipes, ("combine", weights))

        rows.append(["fan-out bound, CWMed", best(fan_median)])
        rows.append(["fan-out bound, Krum", best(fan_krum)])
    finally:
        for c in pipes:
            c.send("stop")
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    print(f"\nn={N}, d=2^{args.log2_d} float32 ({x.nbytes / 2**20:.0f} MiB), {workers} worker processes, "
          f"{os.cpu_count()} cores; min of {args.repeat} runs")
    print(_common.format_table(["what", "ms"], [[w, f"{1e3 * t:.1f}"] for w, t in rows], right=[1]))
    direct = {"CWMed": rows[0][1], "Krum": rows[1][1]}
    for rule in ("CWMed", "Krum"):
        bound = dict(rows)[f"fan-out bound, {rule}"]
        print(f"{rule}: bound / direct = {bound / direct[rule]:.2f}"
              + ("  (no fan-out can beat the direct path here)" if bound >= direct[rule] else ""))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
