#!/usr/bin/env python
"""Time every aggregation rule and pre-aggregator against the hardware floor and the peers.

    python benchmarks/aggregators.py                      # both sizes, every rule
    python benchmarks/aggregators.py --sizes 32x1048576 --rules krum,gm --repeat 3
    python benchmarks/aggregators.py --no-peers --json out.json

For each size (n vectors of dimension d, float32, one thread) it prints, per rule: byzdask's
time (min over the repeats) on the stacked (n, d) array, the floor of the rule's class measured
in the same run on the same array, the ratio byzdask / floor with the target of DESIGN §4 /
issue 2; byzdask's time on a list of n torch tensors; and, when ByzPy and ByzFL import, their
times on that same list and byzdask's speed-up (list input) over the faster of the two. The
last lines give the geometric mean of the speed-ups and the rules that miss their target.

Floors: one streaming pass reads the (n, d) input once (``x.sum(axis=0)``); one read-and-write
pass copies it (``np.copyto``); one Gram matrix is ``x @ x.T`` (BLAS, float32). Coordinate-wise
rules are held to 5x one pass; distance and iterative rules to 2x (one Gram + one pass);
pre-aggregators to 2x one read-and-write pass (NNM: one Gram + one read-and-write pass).

Every timed call runs in a forked child (see ``_common.measure``): a call longer than
``--timeout-per-call`` is reported as "skipped (> X s)", and a peer's exhaustive subset search
(MDA, SMEA) over more than ``--max-subsets`` subsets is not started at all (ByzFL's MDA builds
the list of all subsets in memory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # the checkout's byzdask, installed or not
import _common

DEFAULT_SIZES = "64x65536,32x1048576"
#: Rules in the order of the table: (name, class of floor).
RULES = [
    ("average", "coordinate-wise"),
    ("cwmed", "coordinate-wise"),
    ("cwtm", "coordinate-wise"),
    ("meamed", "coordinate-wise"),
    ("krum", "distance"),
    ("multikrum", "distance"),
    ("gm", "distance"),
    ("gm-3iter", "distance"),
    ("mda", "distance"),
    ("monna", "distance"),
    ("smea", "distance"),
    ("cc", "distance"),
    ("cge", "distance"),
    ("caf", "distance"),
    ("clipping", "pre-aggregator"),
    ("arc", "pre-aggregator"),
    ("bucketing", "pre-aggregator"),
    ("nnm", "pre-aggregator+gram"),
]
#: floor class -> (the floors it adds up, target multiple of that floor)
FLOORS = {
    "coordinate-wise": (("pass",), 5.0),
    "distance": (("gram", "pass"), 2.0),
    "pre-aggregator": (("rw",), 2.0),
    "pre-aggregator+gram": (("gram", "rw"), 2.0),
}
#: Rules whose peers search subsets exhaustively.
EXHAUSTIVE = {"mda", "smea"}
#: Size from which the targets apply (issue 2: d = 1,048,576).
TARGET_D = 1_048_576


def choose_f(rule: str, n: int) -> int | None:
    """f of the benchmark: n // 8 for the exhaustive rules (MDA, SMEA), n // 4 for the others."""
    if rule in ("average", "cwmed", "gm", "gm-3iter", "cc", "clipping", "bucketing"):
        return None
    return n // 8 if rule in EXHAUSTIVE else n // 4


@dataclass
class Row:
    rule: str
    n: int
    d: int
    f: int | None
    floor_class: str
    byzdask_ms: float = math.nan  # input: the stacked (n, d) numpy array
    byzdask_list_ms: float = math.nan  # input: the list of n torch tensors the peers get
    floor_ms: float = math.nan
    ratio: float = math.nan
    target: float = math.nan
    byzpy_ms: float = math.nan
    byzfl_ms: float = math.nan
    speedup: float = math.nan
    notes: dict[str, str] = field(default_factory=dict)


# -- the three implementations of each rule --------------------------------------------------

def byzdask_factory(rule: str, n: int, f: int | None, d: int) -> Callable[[], Callable[[Any], Any]]:
    """A function that builds the byzdask operator and returns its aggregate / pre_aggregate."""
    from byzdask.registry import resolve

    c_tau = float(math.sqrt(d))
    if rule == "gm-3iter":  # ByzFL's rule (DESIGN §3)
        cls, kw = resolve("aggregator", "gm"), {"init": "zero", "max_iter": 3, "tol": 0.0, "eps": 0.1}
    elif rule in ("clipping", "arc", "bucketing", "nnm"):
        cls = resolve("pre-aggregator", rule)
        kw = {"clipping": {"threshold": 2.0}, "arc": {"f": f}, "bucketing": {"bucket_size": 2, "seed": 0},
              "nnm": {"f": f}}[rule]
        return lambda: cls(**kw).pre_aggregate
    else:
        cls = resolve("aggregator", rule)
        kw = {} if f is None else {"f": f}
        if rule == "cc":
            kw = {"c_tau": c_tau, "M": 10}
    return lambda: cls(**kw).aggregate


def byzpy_factory(rule: str, n: int, f: int | None, d: int) -> Callable[[], Callable[[Any], Any]] | str:
    """ByzPy 0.1.4's operator for ``rule`` (its own API), or why there is none."""
    import importlib

    def cls(path: str) -> type:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module("byzpy." + module), name)

    c_tau = float(math.sqrt(d))
    table: dict[str, tuple[str, dict[str, Any], str]] = {
        "cwmed": ("aggregators.coordinate_wise.median.CoordinateWiseMedian", {}, "aggregate"),
        "cwtm": ("aggregators.coordinate_wise.trimmed_mean.CoordinateWiseTrimmedMean", {"f": f}, "aggregate"),
        "meamed": ("aggregators.coordinate_wise.mean_of_medians.MeanOfMedians", {"f": f}, "aggregate"),
        "krum": ("aggregators.geometric_wise.krum.Krum", {"f": f}, "aggregate"),
        "multikrum": ("aggregators.geometric_wise.krum.MultiKrum", {"f": f, "q": n - (f or 0)}, "aggregate"),
        "gm": ("aggregators.geometric_wise.geometric_median.GeometricMedian", {}, "aggregate"),
        "mda": ("aggregators.geometric_wise.minimum_diameter_average.MinimumDiameterAveraging", {"f": f},
                "aggregate"),
        "monna": ("aggregators.geometric_wise.monna.MoNNA", {"f": f}, "aggregate"),
        "smea": ("aggregators.geometric_wise.smea.SMEA", {"f": f}, "aggregate"),
        "cc": ("aggregators.norm_wise.center_clipping.CenteredClipping", {"c_tau": c_tau, "M": 10}, "aggregate"),
        "cge": ("aggregators.norm_wise.comparative_gradient_elimination.ComparativeGradientElimination",
                {"f": f}, "aggregate"),
        "caf": ("aggregators.norm_wise.caf.CAF", {"f": f}, "aggregate"),
        "clipping": ("pre_aggregators.clipping.Clipping", {"threshold": 2.0}, "pre_aggregate"),
        "arc": ("pre_aggregators.arc.ARC", {"f": f}, "pre_aggregate"),
        "bucketing": ("pre_aggregators.bucketing.Bucketing", {"bucket_size": 2}, "pre_aggregate"),
        "nnm": ("pre_aggregators.nnm.NearestNeighborMixing", {"f": f}, "pre_aggregate"),
    }
    if rule == "gm-3iter":
        return "n/a (runs to tolerance: row gm)"
    if rule not in table:
        return "n/a"
    path, kw, method = table[rule]
    try:
        klass = cls(path)
    except (ImportError, AttributeError) as exc:
        return f"n/a ({type(exc).__name__})"
    return lambda: getattr(klass(**kw), method)


def byzfl_factory(rule: str, n: int, f: int | None, d: int) -> Callable[[], Callable[[Any], Any]] | str:
    """ByzFL 0.0.11's callable for ``rule`` (its own API), or why there is none."""
    try:
        import byzfl
    except ImportError as exc:
        return f"n/a ({type(exc).__name__})"
    c_tau = float(math.sqrt(d))
    table: dict[str, tuple[str, dict[str, Any]]] = {
        "average": ("Average", {}),
        "cwmed": ("Median", {}),
        "cwtm": ("TrMean", {"f": f}),
        "meamed": ("Meamed", {"f": f}),
        "krum": ("Krum", {"f": f}),
        "multikrum": ("MultiKrum", {"f": f}),
        "gm-3iter": ("GeometricMedian", {"nu": 0.1, "T": 3}),
        "mda": ("MDA", {"f": f}),
        "monna": ("MoNNA", {"f": f, "idx": 0}),
        "smea": ("SMEA", {"f": f}),
        "cc": ("CenteredClipping", {"L": 10, "tau": c_tau}),
        "caf": ("CAF", {"f": f}),
        "clipping": ("Clipping", {"c": 2.0}),
        "arc": ("ARC", {"f": f}),
        "bucketing": ("Bucketing", {"s": 2}),
        "nnm": ("NNM", {"f": f}),
    }
    if rule == "gm":
        return "n/a (3 fixed steps: row gm-3iter)"
    if rule not in table:
        return "n/a"
    name, kw = table[rule]
    klass = getattr(byzfl, name, None)
    if klass is None:
        return f"n/a (no byzfl.{name})"
    return lambda: klass(**kw)


# -- running ----------------------------------------------------------------------------------

def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            n, d = part.lower().split("x")
            sizes.append((int(n), int(d)))
        except ValueError:
            raise SystemExit(f"--sizes: expected NxD[,NxD...], e.g. 64x65536; got {part!r}") from None
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"NxD list (default {DEFAULT_SIZES})")
    p.add_argument("--rules", default=None,
                   help="comma-separated names (default: all): " + ",".join(r for r, _ in RULES))
    p.add_argument("--repeat", type=int, default=5, help="timed calls per measurement; the min is kept")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every cell this many times, spread over the run, and keep the min")
    p.add_argument("--no-peers", action="store_true", help="do not time ByzPy and ByzFL")
    p.add_argument("--timeout-per-call", type=float, default=60.0,
                   help="seconds after which a call is abandoned and reported as skipped")
    p.add_argument("--budget-per-measurement", type=float, default=15.0,
                   help="stop repeating once a measurement has taken this many seconds")
    p.add_argument("--max-subsets", type=float, default=1e6,
                   help="largest C(n, f) a peer's exhaustive search (MDA, SMEA) may run over")
    p.add_argument("--memory-limit-gb", type=float, default=8.0,
                   help="cap on the extra memory (GiB) a timed call may allocate")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (default: unset for this run)")
    p.add_argument("--no-list", action="store_true",
                   help="do not time byzdask on the list of tensors (only on the stacked array)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    args.size_list = parse_sizes(args.sizes)
    known = [r for r, _ in RULES]
    args.rule_list = known if args.rules is None else [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = [r for r in args.rule_list if r not in known]
    if unknown:
        p.error(f"unknown rules {unknown}; choose from {','.join(known)}")
    return args


def measure(fn: Callable[[], Any], args: argparse.Namespace, *, repeat: int | None = None) -> _common.Timing:
    return _common.measure(fn, repeat=repeat or args.repeat, timeout_s=args.timeout_per_call,
                           budget_s=args.budget_per_measurement,
                           memory_limit_bytes=int(args.memory_limit_gb * 2**30))


def run_size(n: int, d: int, args: argparse.Namespace, peers: dict[str, bool]) -> tuple[list[Row], dict[str, float]]:
    import numpy as np
    import torch

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    vectors = list(torch.from_numpy(x))  # what the peers receive: n 1-D tensors (views of x)
    buf = np.empty_like(x)
    floor_fns = {"pass": lambda: x.sum(axis=0), "rw": lambda: np.copyto(buf, x), "gram": lambda: x @ x.T}
    floors = dict.fromkeys(floor_fns, math.nan)
    rows: dict[str, Row] = {}
    # every (rule, implementation) is measured once per round and the minimum over rounds kept:
    # rounds spread the samples of one cell over time, which a machine shared with others needs
    for rnd in range(args.rounds):
        for key, fn in floor_fns.items():
            floors[key] = _min(floors[key], measure(fn, args, repeat=max(args.repeat, 5)).best_ms)
        for rule in args.rule_list:
            f = choose_f(rule, n)
            row = rows.setdefault(rule, Row(rule, n, d, f, dict(RULES)[rule]))
            for impl, call in _implementations(rule, n, f, d, x, vectors, args, peers, row).items():
                if rnd and row.notes.get(impl, "").startswith(("skipped", "not available", "n/a", "error")):
                    continue  # no second try for what could not run
                timing = measure(call, args)
                if timing.ok:
                    setattr(row, f"{impl}_ms", _min(getattr(row, f"{impl}_ms"), timing.best_ms))
                    row.notes.pop(impl, None)
                elif not math.isfinite(getattr(row, f"{impl}_ms")):
                    row.notes[impl] = timing.describe()
            print(f"  round {rnd + 1}/{args.rounds}: measured {rule} (n={n}, d={d})", file=sys.stderr, flush=True)
    for row in rows.values():
        parts, row.target = FLOORS[row.floor_class]
        row.floor_ms = sum(floors[p] for p in parts)
        row.ratio = row.byzdask_ms / row.floor_ms
        peer_times = [v for v in (row.byzpy_ms, row.byzfl_ms) if math.isfinite(v)]
        same_input = row.byzdask_ms if args.no_list else row.byzdask_list_ms
        if peer_times and math.isfinite(same_input):
            row.speedup = min(peer_times) / same_input
    return list(rows.values()), floors


_warm: set[str] = set()


def warm_up(rule: str, x: Any, vectors: list[Any]) -> None:
    """Run byzdask's ``rule`` once here, on a small slice, before the timed children fork.

    Kernels compiled on first use (numba) are then inherited by every child instead of being
    compiled, and timed, in each of them. The slice keeps the dtype and layout of the input.
    """
    if rule in _warm:
        return
    _warm.add(rule)
    n_small = min(len(vectors), 12)
    f_small = choose_f(rule, n_small)
    make = byzdask_factory(rule, n_small, f_small, 64)
    small = x[:n_small, :64].copy()
    make()(small)
    make()([v[:64].clone() for v in vectors[:n_small]])


def _min(a: float, b: float) -> float:
    """The smaller of two times, ignoring nan."""
    if not math.isfinite(a):
        return b
    if not math.isfinite(b):
        return a
    return min(a, b)


def _implementations(rule: str, n: int, f: int | None, d: int, x: Any, vectors: list[Any],
                     args: argparse.Namespace, peers: dict[str, bool], row: Row) -> dict[str, Callable[[], Any]]:
    """The calls to time for ``rule``: byzdask on both inputs, then the peers on the list.

    An implementation that cannot run gets a note in ``row.notes`` instead of a call.
    """
    calls: dict[str, Callable[[], Any]] = {}
    try:
        make = byzdask_factory(rule, n, f, d)
    except ImportError:
        row.notes["byzdask"] = "not available"
    else:
        warm_up(rule, x, vectors)
        calls["byzdask"] = lambda: make()(x)
        if not args.no_list:
            calls["byzdask_list"] = lambda: make()(vectors)
    for peer, factory in (("byzpy", byzpy_factory), ("byzfl", byzfl_factory)):
        if not peers.get(peer):
            continue
        pmake = factory(rule, n, f, d)
        if isinstance(pmake, str):
            row.notes[peer] = pmake
        elif rule in EXHAUSTIVE and f is not None and math.comb(n, f) > args.max_subsets:
            row.notes[peer] = f"skipped (C({n},{f}) = {math.comb(n, f):.2g} subsets)"
        else:
            calls[peer] = lambda pm=pmake: pm()(vectors)
    return calls


def _cell(ms: float, note: str | None) -> str:
    return note if note else _common.format_ms(ms)


def render(n: int, d: int, rows: list[Row], floors: dict[str, float], peers: dict[str, bool]) -> str:
    with_list = any(math.isfinite(r.byzdask_list_ms) or "byzdask_list" in r.notes for r in rows)
    head = ["rule", "f", "byzdask ms", "floor ms", "x floor", "target"]
    if with_list:
        head.append("byzdask list ms")
    if any(peers.values()):
        head += ["byzpy ms", "byzfl ms", "speed-up"]
    body = []
    for r in rows:
        ok = "ok" if r.ratio <= r.target else "MISS"
        cells = [r.rule, "-" if r.f is None else str(r.f), _cell(r.byzdask_ms, r.notes.get("byzdask")),
                 _common.format_ms(r.floor_ms), "-" if not math.isfinite(r.ratio) else f"{r.ratio:.2f}",
                 "-" if not math.isfinite(r.ratio) else f"<= {r.target:g} {ok}"]
        if with_list:
            cells.append(_cell(r.byzdask_list_ms, r.notes.get("byzdask_list", r.notes.get("byzdask"))))
        if any(peers.values()):
            cells += [_cell(r.byzpy_ms, r.notes.get("byzpy")) if peers.get("byzpy") else "not installed",
                      _cell(r.byzfl_ms, r.notes.get("byzfl")) if peers.get("byzfl") else "not installed",
                      "-" if not math.isfinite(r.speedup) else f"{r.speedup:.1f}x"]
        body.append(cells)
    title = (f"n={n}, d={d:,} float32: floors (min of repeats) one streaming pass {_common.format_ms(floors['pass'])} ms, "
             f"one read-and-write pass {_common.format_ms(floors['rw'])} ms, one Gram {_common.format_ms(floors['gram'])} ms")
    right = {1, 2, 3, 4} | set(range(6, len(head)))
    table = _common.format_table(head, body, right=right)
    out = [title, table]
    speedups = [r.speedup for r in rows if math.isfinite(r.speedup)]
    if speedups:
        out.append(f"geomean speed-up over the faster peer at n={n}, d={d:,}: "
                   f"{_common.geomean(speedups):.1f}x over {len(speedups)} rules")
    return "\n".join(out)


def _strict(obj: Any) -> Any:
    """``obj`` with nan and inf floats replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.limit_threads(args.threads, unset_openblas_overrides=not args.keep_openblas_env)
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import byzdask  # noqa: F401

    _common.apply_runtime_limits()
    peers = {}
    if not args.no_peers:
        for name in ("byzpy", "byzfl"):
            try:
                __import__(name)
                peers[name] = True
            except ImportError:
                peers[name] = False
    print(_common.thread_report())
    print("f: n//4, except MDA and SMEA: n//8 (exhaustive subset search in the peers); "
          "cc: c_tau = sqrt(d), M = 10; gm: tol 1e-6 (byzdask, ByzPy); gm-3iter: ByzFL's rule "
          "(3 Weiszfeld steps from 0, nu = 0.1); bucketing: bucket_size 2; clipping: threshold 2")
    if args.no_peers:
        print("peers: not timed (--no-peers)")
    else:
        print("peers: " + ", ".join(f"{k} {'imported' if v else 'not installed'}" for k, v in peers.items()))
    print("input: byzdask ms on the stacked (n, d) numpy array (as the floors); byzdask list ms and the "
          "peers on a list of n 1-D torch tensors (views of it); speed-up = faster peer / byzdask list "
          f"(byzdask ms with --no-list); min of up to {args.repeat} timed calls after one warm-up, in each of "
          f"{args.rounds} round(s), "
          "each in a forked child\n")
    all_rows: list[Row] = []
    results = []
    for n, d in args.size_list:
        rows, floors = run_size(n, d, args, peers)
        all_rows += rows
        results.append({"n": n, "d": d, "floors_ms": floors, "rows": [asdict(r) for r in rows]})
        print(render(n, d, rows, floors, peers))
        print()
    speedups = [r.speedup for r in all_rows if math.isfinite(r.speedup)]
    if speedups:
        print(f"geomean speed-up over the faster peer, all sizes: {_common.geomean(speedups):.1f}x "
              f"over {len(speedups)} (rule, size) pairs")
    misses = [f"{r.rule} ({r.ratio:.1f}x > {r.target:g}x)" for r in all_rows
              if r.d >= TARGET_D and math.isfinite(r.ratio) and r.ratio > r.target]
    if any(r.d >= TARGET_D for r in all_rows):
        print(f"targets at d >= {TARGET_D:,}: " + ("all met" if not misses else "missed by " + ", ".join(misses)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            doc = {"environment": _common.thread_report(), "args": dict(vars(args)), "results": results}
            json.dump(_strict(doc), fh, indent=1, default=str, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
