#!/usr/bin/env python
"""Aggregation of inputs larger than one worker's memory (issue 6, item 4).

    python benchmarks/scale.py                       # n=32, d=2^26 float32 (8 GiB), 2 workers x 5 GiB
    python benchmarks/scale.py --log2-d 24           # 2 GiB: a quick try
    python benchmarks/scale.py --log2-d 20 --check   # small: also compare with rule.aggregate on the gathered input
    python benchmarks/scale.py --persist             # hold the input on the workers first (spills to disk at 8 GiB)

A LocalCluster of ``--workers`` worker processes (one thread each, ``--memory-limit`` each,
everything on 127.0.0.1) holds an (n, d) float32 input generated on the workers, block by
block (``--block-columns`` columns, seeded per block, so a block generated twice is the same
block); the client never holds it. Each rule runs through
:func:`byzdask.engine.blockwise.aggregate_blocks` (CWMed: one pass; Krum and GM: Gram partials
and anchor rows, then the weighted sum: two passes). Honest rows are uniform on [-1, 1), three
of the n rows are Byzantine (shifted by +10).

By default the input is not persisted: each pass generates the blocks it reads, so the times
include generating the data; the row ``generate`` times one pass that only generates and sums
the blocks, the floor of one pass. With ``--persist`` the input is generated once (untimed)
and held by the workers (Dask spills what exceeds 60 % of a worker's limit to disk); the row
``read`` then times one pass that sums the held blocks.

Peak memory: the resident set size of each worker process, sampled every 50 ms from this
process (psutil on the workers' pids) while each rule runs; the largest over all workers is
printed against the limit.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import _common

_common.limit_threads(1)

import numpy as np

RULES = {"cwmed": ("CoordinateWiseMedian", {}), "krum": ("Krum", {"f": 8}), "gm": ("GeometricMedian", {})}
BYZANTINE_ROWS = 3
GiB = 2**30


def generate_block(n: int, seed: int, block_info=None) -> np.ndarray:
    """One (n, b) block of the input: seeded by its block index, so every generation is identical."""
    info = block_info[None]
    (start, stop) = info["array-location"][1]
    index = info["chunk-location"][1]
    rng = np.random.default_rng([seed, index])
    block = rng.random((n, stop - start), dtype=np.float32)  # uniform: 3x cheaper than normal draws
    block *= 2.0
    block -= 1.0
    block[:BYZANTINE_ROWS] += 10.0
    return block


def make_input(n: int, d: int, block_columns: int, seed: int):
    import dask.array as da

    chunks = ((n,), tuple(min(block_columns, d - s) for s in range(0, d, block_columns)))
    return da.map_blocks(generate_block, n, seed, dtype=np.float32, chunks=chunks, name=f"scale-input-{seed}-{n}-{d}")


class PeakRSS:
    """Samples the resident set size of the given processes in a thread; keeps each one's peak."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.interval = interval
        self.peaks = [0] * len(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, proc in enumerate(self.procs):
                self.peaks[i] = max(self.peaks[i], proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def current_rss(pids: list[int]) -> list[int]:
    import psutil

    return [psutil.Process(p).memory_info().rss for p in pids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--log2-d", type=int, default=26)
    parser.add_argument("--rules", default="cwmed,krum,gm")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="5GiB")
    parser.add_argument("--block-columns", type=int, default=2**20, help="columns per block (default 2^20: 128 MiB at n=32)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--persist", action="store_true", help="generate the input once and hold it on the workers")
    parser.add_argument("--check", action="store_true", help="compare with rule.aggregate on the gathered input (small d only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()

    from distributed import Client, LocalCluster, wait

    from byzdask import aggregators
    from byzdask.engine.blockwise import aggregate_blocks

    n, d = args.n, 2**args.log2_d
    x = make_input(n, d, args.block_columns, args.seed)
    print(f"input: n={n} x d=2^{args.log2_d} float32 = {n * d * 4 / GiB:.2f} GiB, {x.numblocks[1]} blocks of "
          f"{args.block_columns} columns ({n * args.block_columns * 4 / 2**20:.0f} MiB); {args.workers} workers x "
          f"{args.memory_limit}; {'persisted' if args.persist else 'generated in each pass'}")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, memory_limit=args.memory_limit,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        limit = next(iter(client.scheduler_info()["workers"].values()))["memory_limit"]
        print(f"workers: pids {pids}, memory limit {limit / GiB:.2f} GiB each, idle RSS "
              f"{', '.join(f'{r / GiB:.2f}' for r in current_rss(pids))} GiB")
        data = x
        if args.persist:
            t = time.perf_counter()
            data = client.persist(x)
            wait(data, timeout=args.timeout)
            print(f"persisted in {time.perf_counter() - t:.1f} s; RSS "
                  f"{', '.join(f'{r / GiB:.2f}' for r in current_rss(pids))} GiB")
        # warm-up (untimed): the workers import byzdask and run each rule once on a small input
        small = make_input(n, 4096, 1024, args.seed + 1)
        for name in args.rules.split(","):
            cls_name, kwargs = RULES[name]
            aggregate_blocks(getattr(aggregators, cls_name)(**kwargs), small, client=client, timeout=args.timeout)
        rows = []

        def run(label, fn):
            best, peak = float("inf"), 0
            for _ in range(args.repeat):
                with PeakRSS(pids) as sampler:
                    t = time.perf_counter()
                    out = fn()
                    elapsed = time.perf_counter() - t
                best = min(best, elapsed)
                peak = max(peak, *sampler.peaks)
            rows.append((label, best, peak))
            print(f"{label:>10}: {best:8.2f} s   peak worker RSS {peak / GiB:5.2f} GiB "
                  f"({100 * peak / limit:.0f}% of the limit)", flush=True)
            return out

        run("read" if args.persist else "generate", lambda: float(data.sum(dtype=np.float64).compute(timeout=args.timeout)))
        for name in args.rules.split(","):
            cls_name, kwargs = RULES[name]
            rule = getattr(aggregators, cls_name)(**kwargs)
            out = run(name, lambda rule=rule: aggregate_blocks(rule, data, client=client, timeout=args.timeout))
            honest = float(np.abs(out).mean())
            print(f"{'':>10}  output: shape {out.shape}, mean |y_k| = {honest:.4f} (Byzantine rows sit at +10)")
            if args.check:
                full = data.compute()
                want = rule.aggregate(full)
                print(f"{'':>10}  max |blockwise - direct| = {float(np.abs(out - want).max()):.3g}")
    print()
    print(_common.format_table(["rule", "time s", "peak worker RSS GiB", "limit GiB"],
                               [[label, f"{t:.2f}", f"{p / GiB:.2f}", f"{limit / GiB:.2f}"] for label, t, p in rows]))


if __name__ == "__main__":
    main()
