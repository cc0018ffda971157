"""Every rule, pre-aggregator and attack keeps a device array on the device (a CPU stand-in for cupy).

No GPU here, so this test runs the cupy code path on a fake device namespace: ``FakeDevice``
wraps a numpy array the way a cupy array wraps device memory, and behaves like cupy where the
difference matters:

* implicit conversion to numpy (``np.asarray(a)``, ``np.array(a)``) raises ``TypeError``; only
  ``a.get()`` copies to the host;
* a ufunc or numpy function that mixes a device array with a host array (ndim >= 1) raises
  ``TypeError``; with device arrays only, ``np.f(a)`` dispatches to the namespace, as cupy's
  ``__array_function__`` does;
* reductions and scalar indexing return 0-d device arrays, not numpy scalars.

``byzdask.kernels.arrays.get_cupy`` is patched to return the fake namespace, and the array
class's ``__module__`` starts with "cupy", so :func:`~byzdask.kernels.arrays.array_family`
names it "cupy". The test checks that each operator returns device arrays equal to the numpy
result, and that the host round trips (``get``, ``bool``/``float``/``int``/``tolist`` of a
device value) do not grow with d (no synchronisation per column block).
"""

from __future__ import annotations

import types
from collections import Counter
from typing import Any

import numpy as np
import pytest
from numpy.lib.mixins import NDArrayOperatorsMixin

from byzdask import registry
from byzdask.kernels import arrays

SYNCS: Counter = Counter()


def _device(args: Any, where: str) -> Any:
    """Unwrap device arrays; refuse host arrays (ndim >= 1) mixed into a device computation."""
    if isinstance(args, FakeDevice):
        return args._a
    if isinstance(args, np.ndarray) and args.ndim > 0:
        raise TypeError(f"{where}: host numpy array of shape {args.shape} mixed with device arrays")
    if isinstance(args, (list, tuple)):
        return type(args)(_device(a, where) for a in args)
    if isinstance(args, dict):
        return {k: _device(v, where) for k, v in args.items()}
    return args


def _index(key: Any) -> Any:
    """Indices may be device arrays or host arrays (cupy accepts both)."""
    if isinstance(key, FakeDevice):
        return key._a
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key


def _wrap(out: Any) -> Any:
    if isinstance(out, np.ndarray):
        return FakeDevice(out)
    if isinstance(out, np.generic) and not isinstance(out, np.bool_ | np.number):
        return out
    if isinstance(out, np.bool_ | np.number):
        return FakeDevice(np.asarray(out))  # cupy reductions give 0-d device arrays
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        return tuple(_wrap(o) for o in out)
    if isinstance(out, list):
        return [_wrap(o) for o in out]
    return out


class FakeDevice(NDArrayOperatorsMixin):
    """A numpy array posing as device memory (see the module notes)."""

    __module__ = "cupy._fake"  # array_family() reads the module name
    device = "fake:0"

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed (fake device array); use .get()")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        where = f"{ufunc.__name__}.{method}"
        return _wrap(getattr(ufunc, method)(*_device(inputs, where), **_device(kwargs, where)))

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        where = func.__name__
        return _wrap(func(*_device(args, where), **_device(kwargs, where)))

    def get(self) -> np.ndarray:
        SYNCS["get"] += 1
        return self._a.copy()

    def tolist(self) -> Any:
        SYNCS["tolist"] += 1
        return self._a.tolist()

    def __bool__(self) -> bool:
        SYNCS["scalar"] += 1
        return bool(self._a)

    def __float__(self) -> float:
        SYNCS["scalar"] += 1
        return float(self._a)

    def __int__(self) -> int:
        SYNCS["scalar"] += 1
        return int(self._a)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (FakeDevice(row) for row in self._a)

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_index(key)] = value._a if isinstance(value, FakeDevice) else value

    def __repr__(self) -> str:
        return f"FakeDevice({self._a!r})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # no __array_interface__ / __array_struct__ / __dlpack__ back door
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args: Any, **kwargs: Any) -> Any:
                where = f"ndarray.{name}"
                return _wrap(attr(*_device(args, where), **_device(kwargs, where)))
            return method
        return _wrap(attr)


_CREATION = {"asarray", "array", "ascontiguousarray"}  # explicit host -> device copies


class FakeNamespace(types.ModuleType):
    """numpy's functions on :class:`FakeDevice` arrays, as ``cupy`` offers them."""

    ndarray = FakeDevice

    def __getattr__(self, name: str) -> Any:
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, constants
        if name in _CREATION:
            def create(a: Any, *args: Any, **kwargs: Any) -> Any:
                host = a._a if isinstance(a, FakeDevice) else a
                return FakeDevice(np.array(attr(host, *args, **kwargs), copy=not isinstance(a, FakeDevice)))
            return create

        def function(*args: Any, **kwargs: Any) -> Any:
            return _wrap(attr(*_device(args, f"xp.{name}"), **_device(kwargs, f"xp.{name}")))
        return function


FAKE = FakeNamespace("fakecupy")


@pytest.fixture(autouse=True)
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arrays, "get_cupy", lambda: FAKE)
    SYNCS.clear()


RULES = {
    "average": {},
    "cwmed": {},
    "cwtm": {"f": 1},
    "meamed": {"f": 2},
    "krum": {"f": 1},
    "multikrum": {"f": 2},
    "gm": {},
    "mda": {"f": 2},
    "monna": {"f": 2},
    "smea": {"f": 1},
    "cc": {"c_tau": 1.0},
    "cge": {"f": 2},
    "caf": {"f": 2},
    "bulyan": {"f": 1},
    "dnc": {"f": 2, "subsample": 50, "iters": 2, "seed": 0},
    "rfa": {},
    "signguard": {"seed": 0},
    "clippedclustering": {},
}
EXTRA_RULES = [("gm", {"init": "mean"}), ("gm", {"init": "zero"}), ("cc", {"c_tau": 1.0, "init": "median"}),
               ("cc", {"c_tau": 1.0, "init": "previous"}), ("caf", {"f": 2, "power_iters": 3})]
PRE = {"clipping": {"threshold": 1.0}, "arc": {"f": 2}, "nnm": {"f": 2}, "bucketing": {"bucket_size": 2, "seed": 0},
       "bucketing1": {"bucket_size": 1, "seed": 0}}
ATTACKS = {"empire": {}, "signflip": {}, "little": {"f": 2}, "gaussian": {"seed": 0}, "inf": {}, "mimic": {}}


def _data(n: int, d: int, dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)
    x[-1] *= 30.0  # one outlier, so the robust rules choose
    return x


def test_fake_namespace_behaves_like_cupy() -> None:
    a = FakeDevice(np.arange(4.0))
    with pytest.raises(TypeError):
        np.asarray(a)
    with pytest.raises(TypeError):
        a + np.ones(4)
    assert isinstance(np.sum(a), FakeDevice) and isinstance(a.sum(), FakeDevice)
    assert arrays.array_family(a) == "cupy"
    b = arrays.as_batch(a.reshape(2, 2))
    assert b.xp is FAKE and isinstance(b.matrix, FakeDevice)


def _check(out: Any, expected: np.ndarray) -> None:
    assert isinstance(out, FakeDevice), f"expected a device array, got {type(out).__name__}"
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_allclose(out.get(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,kwargs", [*RULES.items(), *EXTRA_RULES], ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rule_stays_on_device(name: str, kwargs: dict, dtype: Any) -> None:
    x = _data(9, 300, dtype)
    expected = registry.build("aggregator", name, **kwargs).aggregate(x)
    rule = registry.build("aggregator", name, **kwargs)
    _check(rule.aggregate(FakeDevice(x.copy())), expected)
    out = rule.aggregate([FakeDevice(v.copy()) for v in x])  # a list of vectors (a second call for "previous")
    assert isinstance(out, FakeDevice) and out.shape == (300,)


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_with_nonfinite_row_stays_on_device(name: str) -> None:
    if name == "average":
        pytest.skip("Average propagates NaN by definition")
    x = _data(9, 64)
    x[2, 5] = np.nan
    expected = registry.build("aggregator", name, **RULES[name]).aggregate(x)
    _check(registry.build("aggregator", name, **RULES[name]).aggregate(FakeDevice(x.copy())), expected)


@pytest.mark.parametrize("name", sorted(RULES))
def test_fanout_stays_on_device(name: str) -> None:
    rule = registry.build("aggregator", name, **RULES[name])
    if not rule.supports_subtasks:
        pytest.skip(f"{name} has no fan-out")
    from byzdask.engine.graph.operator import OpContext

    x = _data(9, 300)
    expected = registry.build("aggregator", name, **RULES[name]).aggregate(x)
    inputs = {"gradients": FakeDevice(x.copy())}
    context = OpContext(metadata={"n_blocks": 3})
    partials = [task.run() for task in rule.create_subtasks(inputs, context=context)]
    assert all(isinstance(p, FakeDevice) for p in partials)
    _check(rule.reduce_subtasks(partials, inputs, context=context), expected)


@pytest.mark.parametrize("name", sorted(PRE))
def test_pre_aggregator_stays_on_device(name: str) -> None:
    cls_name = name.rstrip("1")
    x = _data(9, 300)
    x[3, 7] = np.inf
    expected = registry.build("pre-aggregator", cls_name, **PRE[name]).pre_aggregate(x)
    _check(registry.build("pre-aggregator", cls_name, **PRE[name]).pre_aggregate(FakeDevice(x.copy())), expected)
    rows = registry.build("pre-aggregator", cls_name, **PRE[name]).pre_aggregate([FakeDevice(v.copy()) for v in x])
    assert isinstance(rows, list) and all(isinstance(r, FakeDevice) for r in rows)
    np.testing.assert_allclose(np.stack([r.get() for r in rows]), expected, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_stays_on_device(name: str) -> None:
    x = _data(6, 50)
    attack = registry.build("attack", name, **ATTACKS[name])
    expected = attack.apply(honest_grads=list(x), base_grad=x[0])
    out = registry.build("attack", name, **ATTACKS[name]).apply(honest_grads=[FakeDevice(v.copy()) for v in x],
                                                                 base_grad=FakeDevice(x[0].copy()))
    _check(out, np.asarray(expected))


def _round_trips(name: str, kwargs: dict, d: int, kind: str = "aggregator") -> int:
    x = FakeDevice(_data(9, d))
    op = registry.build(kind, name, **kwargs)
    SYNCS.clear()
    op.aggregate(x) if kind == "aggregator" else op.pre_aggregate(x)
    return sum(SYNCS.values())


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_host_round_trips_do_not_grow_with_d(name: str) -> None:
    # 9 rows: 29,127 float32 columns per cache block, so d = 100,000 runs 4 blocks
    small, large = _round_trips(name, RULES[name], 1000), _round_trips(name, RULES[name], 100_000)
    assert large == small, f"{name}: {small} host round trips at d=1000, {large} at d=100000"
    assert small <= 6, f"{name}: {small} host round trips per call ({dict(SYNCS)})"


@pytest.mark.parametrize("name", ["clipping", "arc", "nnm", "bucketing"])
def test_pre_aggregator_host_round_trips_do_not_grow_with_d(name: str) -> None:
    small = _round_trips(name, PRE[name], 1000, "pre-aggregator")
    large = _round_trips(name, PRE[name], 100_000, "pre-aggregator")
    assert large == small and small <= 4, (name, small, large)


# -- the device check script (benchmarks/gpu_check.py) runs its code path without a GPU --------
def _gpu_check():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_check_emulation(tmp_path, capsys) -> None:
    import json

    out = tmp_path / "gpu.json"
    rc = _gpu_check().main(["--cpu-emulation", "--sizes", "8x512", "--rules", "cwmed,krum,nnm", "--repeat", "1",
                            "--verify", "--cpu-d", "256", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["sizes"][0]["rows"]
    # the coordinate-wise rules are timed a third time with the CUDA selection kernels off
    assert [(r["rule"], r["family"]) for r in rows] == [("cwmed", "cupy"), ("cwmed", "torch"), ("cwmed", "cupy-sort"),
                                                       ("krum", "cupy"), ("krum", "torch"), ("nnm", "cupy"),
                                                       ("nnm", "torch")]
    assert all(r["ms"] > 0 and r["cpu_ms"] > 0 and "rel. diff vs numpy 0.0e+00" in r["note"] for r in rows)
    assert "x floor" in capsys.readouterr().out


def test_gpu_check_without_a_device_exits_0(capsys) -> None:
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert _gpu_check().main(["--quick"]) == 0
        assert "nothing to time here: cupy is not installed" in capsys.readouterr().out
    else:  # pragma: no cover - a machine with cupy: the script runs or says why not
        pytest.skip("cupy is installed here")
