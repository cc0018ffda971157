"""Device check: every rule and pre-aggregator on cupy and torch-CUDA inputs, against the HBM floor.

On a CUDA machine with cupy installed, this script generates (n, d) float32 inputs on the device
(by default (64, 2**24) and (32, 2**27), 4 GiB and 16 GiB), and times every rule of
``byzdask.registry.AGGREGATORS`` and every pre-aggregator of ``PRE_AGGREGATORS`` on

* ``cupy``: the cupy array itself;
* ``torch``: a torch CUDA tensor sharing the same memory (``torch.from_dlpack``), which byzdask
  takes back to cupy through DLPack;
* ``cupy-sort`` (CWMed, CWTM, MeaMed only): the cupy array with byzdask's CUDA selection kernels
  turned off (``byzdask.kernels.cuda-selection: library``), so the rule sorts each column with
  ``cupy.sort``: the row pair says whether the hand-written kernels beat the library call;

against the floor of the rule's class, measured in the same run with CUDA events:

* coordinate-wise rules: one streaming pass over the input (``x.sum(axis=0)``), the HBM floor;
* distance and iterative rules (Gram route): one Gram matrix (``x @ x.T``, cuBLAS) plus one pass;
* pre-aggregators: one read-and-write pass (``copyto``); NNM: one Gram matrix plus one
  read-and-write pass;

and against the CPU path: numpy inputs at a smaller d (``--cpu-d``, default 2**20, all cores),
extrapolated linearly to the device's d (the rules are linear in d). A rule's time is the wall
time of one ``aggregate`` / ``pre_aggregate`` call between two device synchronisations (the
minimum over ``--repeat`` calls, default 2, after one warm-up call at the first size), so host-side work and launch overheads
count. Each output is checked to be on the inputs' device, of their family and dtype.

Time limits: the whole script stays under ``--total-budget-s`` (default 240 s, plus start-up);
each rule gets ``--rule-budget-s`` (default 12 s) for both families and repeats: a rule whose
warm-up call alone overruns its share is reported from that call, and a rule reached after the total
budget is spent is listed as skipped. MDA and SMEA run with a small f (``--exhaustive-f``, default
2: their subset search is exponential in f); the other rules with f = n // 4.

Without cupy, or without a CUDA device, the script prints why and exits 0.
``--cpu-emulation`` runs the same code with numpy standing in for cupy (and CPU torch tensors),
at small sizes: it tests the script, not a GPU.

    python benchmarks/gpu_check.py                       # the two sizes above, table on stdout
    python benchmarks/gpu_check.py --quick               # (64, 2**20) and (32, 2**22), and checks the
                                                         # device results against numpy on the same data
    python benchmarks/gpu_check.py --rules cwmed,krum,gm --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common
import dask.config
import numpy as np

from byzdask import registry

DEFAULT_SIZES = [(64, 1 << 24), (32, 1 << 27)]
QUICK_SIZES = [(64, 1 << 20), (32, 1 << 22)]
EMULATION_SIZES = [(16, 1 << 12), (8, 1 << 13)]
EXHAUSTIVE = ("mda", "smea")
COORDINATE = ("average", "cwmed", "cwtm", "meamed")
#: Rules with CUDA selection kernels; they are also timed with those turned off (family "cupy-sort").
SELECTION = ("cwmed", "cwtm", "meamed")
SORT_FAMILY = "cupy-sort"


@dataclass
class Row:
    rule: str
    family: str
    n: int
    d: int
    f: int | None
    floor: str
    ms: float = math.nan
    floor_ms: float = math.nan
    cpu_ms: float = math.nan
    calls: int = 0
    note: str = ""
    samples_ms: list[float] = field(default_factory=list)

    @property
    def x_floor(self) -> float:
        return self.ms / self.floor_ms if self.ms > 0 and self.floor_ms > 0 else math.nan


# -- the device ------------------------------------------------------------------------------
class Device:
    """What the check needs from the accelerator: a namespace, synchronisation, timing, placement."""

    def __init__(self, emulate: bool = False) -> None:
        self.emulate = emulate
        if emulate:
            self.xp = np
            self.name = "CPU emulation (numpy stands in for cupy)"
            return
        import cupy as cp

        self.xp = cp
        self.dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(self.dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        self.name = (f"{name} (device {self.dev.id}, {props['totalGlobalMem'] / 2**30:.0f} GiB), "
                     f"CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, cupy {cp.__version__}")

    def sync(self) -> None:
        if not self.emulate:
            self.dev.synchronize()

    def free_bytes(self) -> int:
        if self.emulate:
            return 1 << 40
        self.free()
        return int(self.xp.cuda.runtime.memGetInfo()[0])

    def free(self) -> None:
        if not self.emulate:
            self.xp.get_default_memory_pool().free_all_blocks()

    def random(self, n: int, d: int, seed: int) -> Any:
        if self.emulate:
            return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
        self.xp.random.seed(seed)
        return self.xp.random.standard_normal((n, d), dtype=self.xp.float32)

    def kernel_ms(self, fn: Callable[[], Any], repeat: int = 5) -> float:
        """Best time of ``fn`` in ms, by CUDA events on the current stream (after one warm-up)."""
        fn()
        best = math.inf
        for _ in range(repeat):
            if self.emulate:
                t0 = time.perf_counter()
                fn()
                best = min(best, 1e3 * (time.perf_counter() - t0))
                continue
            start, stop = self.xp.cuda.Event(), self.xp.cuda.Event()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            best = min(best, self.xp.cuda.get_elapsed_time(start, stop))
        return best

    def as_torch(self, x: Any) -> Any:
        import torch

        return torch.from_numpy(x) if self.emulate else torch.from_dlpack(x)

    def placement(self, out: Any, family: str, like: Any) -> str:
        """"" when ``out`` (one array, or a list of them) has the family, device and dtype of ``like``."""
        first = out[0] if isinstance(out, list) else out
        if family == "torch":
            import torch

            if not isinstance(first, torch.Tensor):
                return f"returned {type(first).__name__}, expected a torch tensor"
            if first.device != like.device or first.dtype != like.dtype:
                return f"returned {first.dtype} on {first.device}, expected {like.dtype} on {like.device}"
            return ""
        if not isinstance(first, self.xp.ndarray):
            return f"returned {type(first).__module__}.{type(first).__name__}, expected {self.xp.__name__}.ndarray"
        if first.dtype != like.dtype:
            return f"returned dtype {first.dtype}, expected {like.dtype}"
        if not self.emulate and first.device.id != like.device.id:
            return f"returned an array on device {first.device.id}, expected {like.device.id}"
        return ""

    def to_host(self, out: Any) -> np.ndarray:
        if isinstance(out, list):
            return np.stack([self.to_host(o) for o in out])
        if hasattr(out, "detach"):
            out = out.detach()
            return out.cpu().numpy() if not self.emulate else out.numpy()
        return out if self.emulate else out.get()


def open_device(emulate: bool) -> tuple[Device | None, str]:
    """The device, or None and the reason it cannot be used."""
    if emulate:
        return Device(emulate=True), ""
    try:
        import cupy
    except ImportError as exc:
        return None, (f"cupy is not installed ({exc}); install the build for your CUDA, e.g. "
                      "`pip install cupy-cuda12x`, and run again")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - cupy raises CUDARuntimeError without a driver
        return None, f"cupy {cupy.__version__} is installed but finds no CUDA driver or device ({exc})"
    if count < 1:
        return None, f"cupy {cupy.__version__} finds no CUDA device"
    try:
        return Device(), ""
    except Exception as exc:  # noqa: BLE001 - report, do not crash a device check
        return None, f"cannot open CUDA device 0 through cupy: {type(exc).__name__}: {exc}"


# -- the rules -------------------------------------------------------------------------------
def choose_f(rule: str, n: int, exhaustive_f: int) -> int | None:
    if rule in ("average", "cwmed", "gm", "cc", "clipping", "bucketing"):
        return None
    if rule in EXHAUSTIVE:
        return min(exhaustive_f, (n - 1) // 2)
    return n // 4


def build(rule: str, n: int, d: int, exhaustive_f: int) -> tuple[Callable[[Any], Any], int | None]:
    """A one-argument call of the rule (aggregate or pre_aggregate) and its f."""
    f = choose_f(rule, n, exhaustive_f)
    if rule in registry.PRE_AGGREGATORS:
        kw = {"clipping": {"threshold": 2.0}, "arc": {"f": f}, "bucketing": {"bucket_size": 2, "seed": 0},
              "nnm": {"f": f}}[rule]
        return registry.build("pre-aggregator", rule, **kw).pre_aggregate, f
    if rule == "cc":
        kw = {"c_tau": float(math.sqrt(d)), "M": 10}
    elif f is None:
        kw = {}
    else:
        kw = {"f": f}
    return registry.build("aggregator", rule, **kw).aggregate, f


def floor_kind(rule: str) -> str:
    if rule in COORDINATE:
        return "pass"
    if rule == "nnm":
        return "gram+copy"
    if rule in registry.PRE_AGGREGATORS:
        return "copy"
    return "gram+pass"


def measure_floors(dev: Device, x: Any) -> dict[str, float]:
    xp = dev.xp
    floors = {"pass": dev.kernel_ms(lambda: x.sum(axis=0))}
    floors["gram"] = dev.kernel_ms(lambda: x @ x.T)
    floors["gram+pass"] = floors["gram"] + floors["pass"]
    buf = [xp.empty_like(x)]
    floors["copy"] = dev.kernel_ms(lambda: xp.copyto(buf[0], x))
    buf.clear()
    dev.free()
    floors["gram+copy"] = floors["gram"] + floors["copy"]
    return floors


class Budget:
    """The script's total time budget, and one rule's share of it."""

    def __init__(self, total_s: float) -> None:
        self.deadline = time.perf_counter() + total_s

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def time_calls(call: Callable[[], Any], sync: Callable[[], None], *, repeat: int, budget_s: float,
               warm: bool) -> tuple[list[float], Any, str]:
    """Wall times (ms) of ``call()`` between synchronisations; its last output; a note.

    One warm-up call unless ``warm``; then timed calls until ``repeat`` of them, or until the next
    one would end after ``budget_s`` (at least one timed call, unless the warm-up call alone took
    longer than ``budget_s``: then that call is the sample).
    """
    t_end = time.perf_counter() + budget_s
    samples: list[float] = []
    out, note = None, ""

    def once() -> float:
        nonlocal out
        out = None  # let the previous output go before the next call allocates
        sync()
        t0 = time.perf_counter()
        out = call()
        sync()
        return 1e3 * (time.perf_counter() - t0)

    if not warm:  # the first call compiles kernels and fills the memory pool: not a sample
        first = once()
        if first > 1e3 * budget_s:
            return [first], out, "1 call, incl. warm-up"
    while len(samples) < repeat:
        samples.append(once())
        if time.perf_counter() + samples[-1] / 1e3 > t_end:
            break
    if len(samples) < repeat:
        note = f"{len(samples)} of {repeat} calls (rule budget)"
    return samples, out, note


def cpu_times(rules: list[str], n: int, d: int, cpu_d: int, args: argparse.Namespace,
              budget: Budget) -> dict[str, tuple[float, str]]:
    """CPU (numpy) time of each rule at (n, cpu_d), scaled to d; with a note."""
    x = np.random.default_rng(args.seed).standard_normal((n, cpu_d), dtype=np.float32)
    out: dict[str, tuple[float, str]] = {}
    for rule in rules:
        if budget.left() < args.rule_budget_s:
            out[rule] = (math.nan, "CPU skipped (total budget)")
            continue
        call, _ = build(rule, n, cpu_d, args.exhaustive_f)
        try:
            samples, _, _ = time_calls(lambda call=call: call(x), lambda: None, repeat=args.repeat,
                                       budget_s=args.rule_budget_s / 2, warm=False)
        except Exception as exc:  # noqa: BLE001 - one failing rule must not stop the check
            out[rule] = (math.nan, f"CPU error: {type(exc).__name__}: {exc}")
            continue
        note = "" if cpu_d == d else f"CPU at d={cpu_d} x {d / cpu_d:g}"
        out[rule] = (min(samples) * d / cpu_d, note)
    return out


def run_size(dev: Device, n: int, d: int, rules: list[str], families: list[str], args: argparse.Namespace,
             budget: Budget, warmed: set[str]) -> tuple[list[Row], dict[str, float], str]:
    """Time every rule at (n, d); ``warmed`` holds the rules already called once (kernels compiled)."""
    need = n * d * 4 * 3  # the input, one (n, d) output, one more for temporaries and the copy floor
    free = dev.free_bytes()
    if free < need:
        return [], {}, f"skipped: needs about {need / 2**30:.0f} GiB of device memory, {free / 2**30:.0f} GiB free"
    cpu = {} if args.no_cpu else cpu_times(rules, n, d, min(args.cpu_d, d), args, budget)
    x = dev.random(n, d, args.seed)
    dev.sync()
    floors = measure_floors(dev, x)
    inputs = {"cupy": x}
    if "torch" in families:
        inputs["torch"] = dev.as_torch(x)
    if "cupy" in families:
        inputs[SORT_FAMILY] = x
    rows: list[Row] = []
    for rule in rules:
        warm = rule in warmed  # a later size needs no warm-up: the kernels are compiled
        call, f = build(rule, n, d, args.exhaustive_f)
        reference = None
        # the coordinate-wise rules also through the library route (cupy.sort), to compare with the CUDA kernels
        rule_families = [*families, SORT_FAMILY] if rule in SELECTION and "cupy" in families else families
        for family in rule_families:
            kind = floor_kind(rule)
            row = Row(rule, family, n, d, f, kind, floor_ms=floors[kind])
            row.cpu_ms, cpu_note = cpu.get(rule, (math.nan, "" if args.no_cpu else "CPU not run"))
            rows.append(row)
            if budget.left() < min(args.rule_budget_s, 5.0):
                row.note = "skipped (total budget spent)"
                continue
            share = min(args.rule_budget_s / len(rule_families), budget.left())
            arr = inputs[family]
            route = "library" if family == SORT_FAMILY else "raw"
            try:
                with dask.config.set({"byzdask.kernels.cuda-selection": route}):
                    samples, out, note = time_calls(lambda call=call, arr=arr: call(arr), dev.sync, repeat=args.repeat,
                                                    budget_s=share, warm=warm and family != SORT_FAMILY)
            except Exception as exc:  # noqa: BLE001 - report the failure in the table and go on
                row.note = f"error: {type(exc).__name__}: {str(exc)[:120]}"
                dev.free()
                continue
            warm = True
            warmed.add(rule)
            row.samples_ms = samples
            row.calls = len(samples)
            row.ms = min(samples)
            problems = [p for p in (dev.placement(out, "cupy" if family == SORT_FAMILY else family, arr), note,
                                    cpu_note) if p]
            if args.verify:
                host = dev.to_host(out)
                if reference is None:
                    reference = np.asarray(build(rule, n, d, args.exhaustive_f)[0](dev.to_host(x)))
                err = float(np.max(np.abs(host - reference)) / max(1.0, float(np.max(np.abs(reference)))))
                problems.append(f"max rel. diff vs numpy {err:.1e}" + (" (MISMATCH)" if err > 1e-3 else ""))
            row.note = "; ".join(problems)
            del out
            dev.free()
    del inputs, x
    dev.free()
    return rows, floors, ""


# -- output ----------------------------------------------------------------------------------
def render(n: int, d: int, rows: list[Row], floors: dict[str, float]) -> str:
    fmt = _common.format_ms
    head = (f"n={n}, d={d} (2^{int(math.log2(d))}), float32, {n * d * 4 / 2**30:.2f} GiB; floors (ms): "
            + ", ".join(f"{k} {fmt(v)}" for k, v in floors.items()))
    table = _common.format_table(
        ["rule", "family", "n", "d", "f", "ms", "floor", "floor ms", "x floor", "CPU ms", "CPU/GPU", "note"],
        [[r.rule, r.family, r.n, r.d, "-" if r.f is None else r.f, fmt(r.ms), r.floor, fmt(r.floor_ms),
          "-" if math.isnan(r.x_floor) else f"{r.x_floor:.1f}", fmt(r.cpu_ms),
          "-" if not (r.ms > 0 and r.cpu_ms > 0) else f"{r.cpu_ms / r.ms:.0f}", r.note] for r in rows],
        right=range(2, 11))
    return head + "\n" + table


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        n, _, d = part.strip().lower().partition("x")
        sizes.append((int(n), int(d)))
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (64x2^20, 32x2^22) and --verify")
    p.add_argument("--sizes", help="comma-separated NxD, e.g. 64x16777216,32x134217728")
    p.add_argument("--rules", help="comma-separated names among the rules and pre-aggregators (default: all)")
    p.add_argument("--families", default="cupy,torch", help="input families to time (default cupy,torch)")
    p.add_argument("--json", help="write the rows and floors to this file")
    p.add_argument("--repeat", type=int, default=2, help="timed calls per rule and family (after one warm-up)")
    p.add_argument("--rule-budget-s", type=float, default=12.0, help="seconds per rule, both families")
    p.add_argument("--total-budget-s", type=float, default=240.0, help="seconds for the whole check")
    p.add_argument("--exhaustive-f", type=int, default=2, help="f of MDA and SMEA (exponential in f)")
    p.add_argument("--cpu-d", type=int, default=1 << 20, help="d of the CPU run, scaled to each size's d")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU path")
    p.add_argument("--verify", action="store_true", help="compare each device result with numpy (small sizes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-emulation", action="store_true",
                   help="numpy stands in for cupy, CPU torch tensors for CUDA ones (tests the script, no GPU)")
    args = p.parse_args(argv)
    known = [*registry.AGGREGATORS, *registry.PRE_AGGREGATORS]
    args.rule_list = known if not args.rules else [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = [r for r in args.rule_list if r not in known]
    if unknown:
        p.error(f"unknown rule(s) {unknown}; choose among {', '.join(known)}")
    args.family_list = [fam.strip() for fam in args.families.split(",") if fam.strip()]
    if not args.family_list or set(args.family_list) - {"cupy", "torch"}:
        p.error(f"--families takes cupy and/or torch, got {args.families!r}")
    if args.sizes:
        args.size_list = parse_sizes(args.sizes)
    elif args.cpu_emulation:
        args.size_list = EMULATION_SIZES
    else:
        args.size_list = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.quick:
        args.verify = True
    return args


def _strict(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strict(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dev, reason = open_device(args.cpu_emulation)
    if dev is None:
        print(f"gpu_check: nothing to time here: {reason}.")
        return 0
    if "torch" in args.family_list:
        try:
            import torch
        except ImportError:
            print("gpu_check: torch is not installed: timing cupy inputs only")
            args.family_list = [f for f in args.family_list if f != "torch"]
        else:
            if not args.cpu_emulation and not torch.cuda.is_available():
                print("gpu_check: torch has no CUDA here: timing cupy inputs only")
                args.family_list = [f for f in args.family_list if f != "torch"]
    budget = Budget(args.total_budget_s)
    print(f"device: {dev.name}")
    print(_common.thread_report())
    print(f"rules: {', '.join(args.rule_list)}; families: {', '.join(args.family_list)}; "
          f"f = n // 4, MDA/SMEA f = {args.exhaustive_f}; cc: c_tau = sqrt(d), M = 10; "
          f"CPU: numpy at d = {args.cpu_d} scaled to d, all threads\n")
    report: dict[str, Any] = {"device": dev.name, "sizes": []}
    warmed: set[str] = set()
    for n, d in args.size_list:
        rows, floors, skipped = run_size(dev, n, d, args.rule_list, args.family_list, args, budget, warmed)
        if skipped:
            print(f"n={n}, d={d}: {skipped}\n")
        else:
            print(render(n, d, rows, floors) + "\n")
        report["sizes"].append({"n": n, "d": d, "skipped": skipped, "floors_ms": floors,
                                "rows": [{**asdict(r), "x_floor": r.x_floor} for r in rows]})
    print("ms: best wall time of one call between device synchronisations; floor: pass = x.sum(axis=0), "
          "gram = x @ x.T, copy = copyto, timed with CUDA events; x floor = ms / floor ms; "
          "CPU/GPU = CPU ms / ms.")
    if args.json:
        Path(args.json).write_text(json.dumps(_strict(report), indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
