"""Seconds per training round: parameter server and peer-to-peer, in-process and on a local cluster.

The job of ``byzdask train`` (10 honest + 3 Byzantine nodes, attack "little", CWTM, logistic
regression on digits, batch 32, momentum 0.9). For each mode it times rounds in-process (the
compute: gradients, attacks, rule, update, no Dask) and on a local cluster of 2 worker
processes with one thread each (what ``byzdask train`` starts); the difference is what Dask
costs per round (task submission, scheduling hops, transfers). Rounds are timed in blocks
after warm-up rounds; a block's time is divided by its rounds, and the table shows the
minimum and the median over blocks (the machine may be shared: read the minimum).

    python benchmarks/training.py                 # PS and P2P, 5 blocks of 10 rounds
    python benchmarks/training.py --blocks 3 --rounds 20 --modes ps --json out.json
"""

from __future__ import annotations

import _common

_common.limit_threads(1)

import argparse
import json
import os
import statistics
import time

import torch

from byzdask.engine.graph.scheduler import run_coroutine_sync
from byzdask.train import TrainConfig, build_job, make_pool, make_trainer


def time_rounds(trainer, pool, blocks: int, rounds: int, warmup: int = 3) -> list[float]:
    loop = None if pool is None else pool.client.loop.asyncio_loop

    async def block(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            await trainer.round()
        return (time.perf_counter() - start) / count

    run_coroutine_sync(lambda: block(warmup), loop=loop)
    per_round = [run_coroutine_sync(lambda: block(rounds), loop=loop) for _ in range(blocks)]
    close = getattr(trainer, "close", None)
    if close is not None:
        run_coroutine_sync(close, loop=loop)
    return per_round


def bench(mode: str, cluster: str, blocks: int, rounds: int) -> dict:
    config = TrainConfig(mode=mode, cluster=cluster, workers=2)
    pool = make_pool(cluster, 2)
    try:
        if pool is not None:
            pool.start_sync()
        trainer = make_trainer(config, build_job(config), pool)
        times = time_rounds(trainer, pool, blocks, rounds)
    finally:
        if pool is not None:
            pool.shutdown_sync()
    return {"mode": mode, "cluster": cluster, "min_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per block")
    parser.add_argument("--modes", default="ps,p2p")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for mode in args.modes.split(","):
        local = bench(mode, "none", args.blocks, args.rounds)
        cluster = bench(mode, "local", args.blocks, args.rounds)
        overhead = cluster["min_ms"] - local["min_ms"]
        rows.append({"mode": mode, "in_process_ms": local["min_ms"], "in_process_median_ms": local["median_ms"],
                     "cluster_ms": cluster["min_ms"], "cluster_median_ms": cluster["median_ms"],
                     "overhead_ms": overhead})
    print(f"13 nodes (10 honest + 3 Byzantine), digits, logreg; local cluster: 2 worker processes x 1 thread; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'mode':5} {'in-process ms/round':>20} {'cluster ms/round':>17} {'Dask overhead ms':>17}"
          f" {'(medians)':>20}")
    for r in rows:
        print(f"{r['mode']:5} {r['in_process_ms']:20.1f} {r['cluster_ms']:17.1f} {r['overhead_ms']:17.1f}"
              f"   {r['in_process_median_ms']:7.1f} / {r['cluster_median_ms']:7.1f}")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
