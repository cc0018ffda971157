#!/usr/bin/env python
"""Engine overheads, and when fanning a rule out over worker processes pays.

    python benchmarks/engine.py                          # overheads, then the rule table
    python benchmarks/engine.py --part overhead
    python benchmarks/engine.py --part rules --rules cwmed,krum,gm --sizes 1M,4M,16M --repeat 3
    python benchmarks/engine.py --part rules --sizes 64K,256K,1M,4M --no-peer   # find the crossover

Part "overhead" (no rule, tiny payloads): the cost of one in-process NodeScheduler run; a
task round trip; many independent tasks; one NodeScheduler run of a trivial node on a pool;
an actor method call, each on a thread pool (in-process workers) and on a process pool
(2 worker processes, TCP on 127.0.0.1).

Part "rules": CWMed, Krum and GM at n=32, float32, for each d:

- ``direct``: ``rule.aggregate(x)`` in this process on the stacked (n, d) array;
- ``fan-out``: ``NodeScheduler(graph, pool=2 process workers, fanout_min_bytes=0)`` on the
  caller-held input: the *subtasks* route (each column block sent to one worker, the small
  partials reduced here);
- ``1 task``: the same scheduler without fan-out: the *task* route (the whole input goes to one worker);
- ``resident 1 task`` / ``resident fan-out``: the input already lives on a worker as one future
  (put there untimed, as gradients computed on workers are), aggregated there by one task, or
  by the *subtasks* route split next to the data (pieces spread over the workers, a reduce there);
- ``spread blocks``: the n vectors live on the workers as n futures, spread over them (as a
  parameter server's honest gradients): the *blocks* route
  (:func:`byzdask.engine.blockwise.aggregate_blocks` moves column blocks between the workers);
- ``byzpy pool``: ByzPy 0.1.4's own NodeScheduler on its ActorPool (process backend, 2 workers),
  run in the peer venv (``--peer-python``) on the same inputs, when it is installed.

Each time is the minimum over ``--repeat`` runs after one warm-up run; ``direct``, ``fan-out``
and ``1 task`` take turns (one run of each, ``--repeat`` times, in a new
seeded order each turn), and so do the two ``resident`` columns, so that neither a drift of the machine's speed
nor the run before favours one of them. The crossover printed at
the end is, per rule, the smallest d at which the fan-out beat the direct path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import _common

_common.limit_threads(1)  # one BLAS thread here, as in each worker process (Dask's nannies set 1)

import numpy as np

N = 32
RULES = {"cwmed": ("CoordinateWiseMedian", {}), "krum": ("Krum", {"f": 8}), "gm": ("GeometricMedian", {})}
DEFAULT_PEER_PYTHON = "/work/peervenv/bin/python"


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def label(d: int) -> str:
    for unit, scale in (("M", 2**20), ("K", 2**10)):
        if d >= scale and d % scale == 0:
            return f"{d // scale}{unit}"
    return str(d)


def build_rule(name: str):
    from byzdask.registry import build

    _, kwargs = RULES[name]
    return build("aggregator", name, **kwargs)


async def best_of(fn, repeat: int) -> float:
    """Min wall time (s) of ``await fn()`` over ``repeat`` runs after one warm-up."""
    return (await best_interleaved({"fn": fn}, repeat))["fn"]


async def best_interleaved(fns: dict, repeat: int) -> dict:
    """Min wall time (s) of each ``await fn()``, the functions taking turns (one warm-up each).

    On a machine whose speed drifts (a shared VM), timing each function in its own stretch of
    time compares the machine's moods; taking turns compares the functions. Each turn takes
    them in a new (seeded) order: a run that pays for the one before it (memory the previous
    one freed, say) does not always follow the same one.
    """
    for fn in fns.values():
        await fn()
    best = dict.fromkeys(fns, math.inf)
    for turn in range(repeat):
        for label in random.Random(turn).sample(list(fns), len(fns)):
            fn = fns[label]
            t0 = time.perf_counter()
            await fn()
            best[label] = min(best[label], time.perf_counter() - t0)
    return best


# -- overheads -------------------------------------------------------------------------------


class Counter:
    def __init__(self):
        self.n = 0

    async def add(self, k):
        self.n += k
        return self.n


def inc(x):
    return x + 1


async def overheads(repeat: int) -> list[list[str]]:
    from byzdask.engine.graph.ops import CallableOp, make_single_operator_graph
    from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
    from byzdask.engine.graph.scheduler import NodeScheduler

    rows = []
    graph = make_single_operator_graph(node_name="inc", operator=CallableOp(inc, input_mapping={"x": "x"}),
                                       input_keys=("x",))
    local = NodeScheduler(graph)
    runs = 200
    t = await best_of(lambda: _many(lambda: local.run({"x": 1}), runs), repeat)
    rows.append(["NodeScheduler.run, in-process (1 node)", "-", f"{1e3 * t / runs:.3f}"])
    for backend in ("thread", "process"):
        async with ActorPool([ActorPoolConfig(backend, count=2)]) as pool:
            rows += await _pool_overheads(pool, backend, NodeScheduler(graph, pool=pool), repeat)
    return rows


async def _pool_overheads(pool, backend: str, on_pool, repeat: int) -> list[list[str]]:
    client = pool.client
    ref = await pool.spawn(Counter)
    rows = []
    t = await best_of(lambda: _many(lambda: client.submit(inc, 1, pure=False), 20), repeat)
    rows.append(["task round trip (submit, await)", backend, f"{1e3 * t / 20:.2f}"])
    t = await best_of(lambda: client.gather([client.submit(inc, i, pure=False) for i in range(500)]), repeat)
    rows.append(["independent tasks (500 submitted at once)", backend, f"{1e3 * t / 500:.3f}"])
    t = await best_of(lambda: _many(lambda: on_pool.run({"x": 1}), 20), repeat)
    rows.append(["NodeScheduler.run on the pool (1 node)", backend, f"{1e3 * t / 20:.2f}"])
    t = await best_of(lambda: _many(lambda: ref.add(1), 100), repeat)
    rows.append(["actor method call (await ref.add(1))", backend, f"{1e3 * t / 100:.3f}"])
    return rows


async def _many(make, count: int):
    for _ in range(count):
        await make()


# -- rules -----------------------------------------------------------------------------------


async def rule_times(rules: list[str], sizes: list[int], repeat: int, workers: int) -> dict:
    from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig

    results: dict = {}
    async with ActorPool([ActorPoolConfig("process", count=workers)]) as pool:
        for d in sizes:
            x = np.random.default_rng(d).standard_normal((N, d), dtype=np.float32)
            for name in rules:
                row = await _rule_row(pool, name, x, repeat)
                results[(name, d)] = row
                print(f"  {name:6s} d={label(d):5s} " + "  ".join(f"{k} {1e3 * v:8.1f} ms" for k, v in row.items()),
                      flush=True)
            del x
    return results


async def _rule_row(pool, name: str, x: np.ndarray, repeat: int) -> dict:
    from byzdask.engine.graph.ops import make_single_operator_graph
    from byzdask.engine.graph.scheduler import NodeScheduler

    rule = build_rule(name)
    graph = make_single_operator_graph(node_name=name, operator=rule, input_keys=("gradients",))
    fan = NodeScheduler(graph, pool=pool, fanout_min_bytes=0)
    single = NodeScheduler(graph, pool=pool, fanout_min_bytes=2**62)
    row = await best_interleaved({
        "direct": lambda: asyncio.to_thread(rule.aggregate, x),
        "fan-out": lambda: fan.run({"gradients": x}),
        "1 task": lambda: single.run({"gradients": x}),
    }, repeat)
    check = (await fan.run({"gradients": x}))[name]
    np.testing.assert_allclose(check, rule.aggregate(x), rtol=1e-3, atol=1e-4)
    on_worker = {"gradients": (await pool.client.scatter([x], hash=False, direct=True))[0]}
    row.update(await best_interleaved({"resident 1 task": lambda: single.run(on_worker),
                                       "resident fan-out": lambda: fan.run(on_worker)}, repeat))
    on_worker.clear()  # releases the future
    # one future per node's vector, spread over the workers (as a parameter server's honest gradients)
    spread = {"gradients": await pool.client.scatter(list(x), hash=False, direct=True)}
    row["spread blocks"] = await best_of(lambda: fan.run(spread), repeat)
    spread.clear()
    return row


PEER_SCRIPT = r'''
import asyncio, json, math, sys, time
import numpy as np
import torch
from byzpy.engine.graph.ops import make_single_operator_graph
from byzpy.engine.graph.scheduler import NodeScheduler
from byzpy.engine.graph.pool import ActorPool, ActorPoolConfig
from byzpy.aggregators.coordinate_wise.median import CoordinateWiseMedian
from byzpy.aggregators.geometric_wise.krum import Krum
from byzpy.aggregators.geometric_wise.geometric_median import GeometricMedian

def build(name):
    return {"cwmed": lambda: CoordinateWiseMedian(), "krum": lambda: Krum(f=8),
            "gm": lambda: GeometricMedian()}[name]()

async def main(rules, sizes, repeat, workers, n):
    out = {}
    pool = ActorPool([ActorPoolConfig(backend="process", count=workers)])
    await pool.start()
    try:
        for d in sizes:
            x = np.random.default_rng(d).standard_normal((n, d), dtype=np.float32)
            grads = list(torch.from_numpy(x))  # ByzPy's rules take torch tensors
            for name in rules:
                graph = make_single_operator_graph(node_name="agg", operator=build(name), input_keys=("gradients",))
                sched = NodeScheduler(graph, pool=pool)
                await sched.run({"gradients": grads})
                best = math.inf
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    await sched.run({"gradients": grads})
                    best = min(best, time.perf_counter() - t0)
                out[f"{name}:{d}"] = best
                print(json.dumps({"key": f"{name}:{d}", "s": best}), flush=True)
    finally:
        await pool.shutdown()
    return out

if __name__ == "__main__":
    rules, sizes, repeat, workers, n = json.loads(sys.argv[1])
    asyncio.run(main(rules, sizes, repeat, workers, n))
'''


def peer_times(python: str, rules: list[str], sizes: list[int], repeat: int, workers: int,
               timeout: float) -> dict:
    if not os.path.exists(python):
        print(f"  (no peer venv at {python}: ByzPy column skipped)")
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "byzpy_pool_bench.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(PEER_SCRIPT)
        results = {}
        try:
            proc = subprocess.run([python, path, json.dumps([rules, sizes, repeat, workers, N])],
                                  capture_output=True, text=True, timeout=timeout, check=False)
            stdout, status = proc.stdout, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            status = f"timed out after {timeout:g} s"
        for line in stdout.splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                name, d = rec["key"].split(":")
                results[(name, int(d))] = rec["s"]
        if len(results) < len(rules) * len(sizes):
            print(f"  ByzPy pool: {len(results)} of {len(rules) * len(sizes)} timings ({status})")
        return results


def report(results: dict, peer: dict, rules: list[str], sizes: list[int]) -> str:
    fmt = _common.format_ms
    header = ["rule", "d", "MiB", "direct ms", "fan-out ms", "1 task ms", "resident 1 task ms",
              "resident fan-out ms", "spread blocks ms", "byzpy pool ms", "fan-out / direct", "blocks / direct",
              "byzpy / fan-out"]
    rows = []
    for name in rules:
        for d in sizes:
            r = results.get((name, d))
            if r is None:
                continue
            p = peer.get((name, d))
            rows.append([name, label(d), f"{N * d * 4 / 2**20:.0f}", fmt(1e3 * r["direct"]), fmt(1e3 * r["fan-out"]),
                         fmt(1e3 * r["1 task"]), fmt(1e3 * r["resident 1 task"]),
                         fmt(1e3 * r["resident fan-out"]), fmt(1e3 * r["spread blocks"]), fmt(1e3 * p) if p else "-",
                         f"{r['fan-out'] / r['direct']:.2f}", f"{r['spread blocks'] / r['direct']:.2f}",
                         f"{p / r['fan-out']:.2f}" if p else "-"])
    lines = [_common.format_table(header, rows, right=range(1, len(header)))]
    lines.append("")
    for name in rules:
        for column in ("fan-out", "spread blocks"):
            wins = [d for d in sizes
                    if (name, d) in results and results[(name, d)][column] < results[(name, d)]["direct"]]
            if wins:
                d = min(wins)
                lines.append(f"crossover {name}, {column}: beats direct from d={label(d)} "
                             f"({N * d * 4 / 2**20:.0f} MiB of input at n={N}) among d in {[label(s) for s in sizes]}")
            else:
                lines.append(f"crossover {name}, {column}: never beat direct for d in {[label(s) for s in sizes]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("overhead", "rules", "peer", "all"), default="all")
    parser.add_argument("--rules", default="cwmed,krum,gm")
    parser.add_argument("--sizes", default="1M,4M,16M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--peer-timeout", type=float, default=900.0)
    parser.add_argument("--json", help="write the timings here")
    args = parser.parse_args()

    logging.getLogger("distributed").setLevel(logging.WARNING)
    _common.apply_runtime_limits()
    print(_common.thread_report())
    out: dict = {}
    if args.part in ("overhead", "all"):
        rows = asyncio.run(overheads(args.repeat))
        print("\nOverheads (min over repeats, per operation)")
        print(_common.format_table(["what", "pool", "ms"], rows, right=[2]))
        out["overhead"] = rows
    if args.part in ("rules", "peer", "all"):
        rules = [r.strip() for r in args.rules.split(",") if r.strip()]
        unknown = sorted(set(rules) - set(RULES))
        if unknown:
            parser.error(f"unknown rules {unknown}; choose from {sorted(RULES)}")
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
        print(f"\nRules at n={N}, float32, {args.workers} worker processes (min of {args.repeat} runs)")
        results = {} if args.part == "peer" else asyncio.run(rule_times(rules, sizes, args.repeat, args.workers))
        peer = {} if args.no_peer else peer_times(args.peer_python, rules, sizes, args.repeat, args.workers,
                                                  args.peer_timeout)
        print()
        if args.part == "peer":
            for (name, d), t in sorted(peer.items()):
                print(f"byzpy pool {name} d={label(d)}: {_common.format_ms(1e3 * t)} ms")
        else:
            print(report(results, peer, rules, sizes))
        out["rules"] = {f"{k[0]}:{k[1]}": v for k, v in results.items()}
        out["byzpy"] = {f"{k[0]}:{k[1]}": v for k, v in peer.items()}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
