"""The CUDA selection kernels, emulated on the CPU: each generated kernel text is compiled as C++
with CUDA's built-ins standing in, launched over a grid of blocks and threads, and compared with
the numba route (bit for bit) and with a sort-based reference. On a GPU the same kernels run on
the device (``requires_gpu`` test at the end)."""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import types
from typing import ClassVar

import dask.config
import numpy as np
import pytest

from byzdask.errors import ConfigurationError
from byzdask.kernels import _cuda_coordinate as cuda
from byzdask.kernels import coordinate
from byzdask.kernels.arrays import get_cupy

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
GUARD = 300  # elements past the end of each output that no thread may write
SENTINEL = -12345.0


class Emulator:
    """Stands in for :func:`byzdask.kernels._cuda_coordinate.run_on_device`: a C++ build of the kernel text."""

    libraries: ClassVar[dict[str, ctypes.CDLL]] = {}  # one build per kernel text, for the whole run

    def __init__(self, folder):
        self.folder = folder
        self.launches: list[tuple[str, tuple, int, int]] = []

    def _library(self, source: str, name: str) -> ctypes.CDLL:
        lib = self.libraries.get(source)
        if lib is None:
            key = hashlib.sha1(source.encode()).hexdigest()[:16]
            src, so = self.folder / f"{key}.cpp", self.folder / f"{key}.so"
            src.write_text(cuda.EMULATION_PRELUDE + cuda.emulation_source(source, name))
            subprocess.run([CXX, "-O0", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(so), str(src)],
                           check=True, capture_output=True, timeout=120)
            lib = self.libraries[source] = ctypes.CDLL(str(so))
        return lib

    def __call__(self, source: str, name: str, block: np.ndarray, stride: int, out: np.ndarray) -> None:
        d = out.shape[0]
        guarded = np.full(d + GUARD, SENTINEL, dtype=out.dtype)
        grid = (d + cuda.THREADS - 1) // cuda.THREADS
        launch = getattr(self._library(source, name), f"byz_launch_{name}")
        launch(ctypes.c_uint(grid), ctypes.c_uint(cuda.THREADS), ctypes.c_void_p(block.ctypes.data),
               ctypes.c_longlong(stride), ctypes.c_longlong(d), ctypes.c_void_p(guarded.ctypes.data))
        assert np.all(guarded[d:] == SENTINEL), "a thread past the last column wrote to the output"
        out[...] = guarded[:d]
        self.launches.append((name, block.shape, stride, grid))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda-emulation")


@pytest.fixture
def emulated(monkeypatch, folder):
    """Route numpy blocks of at most MAX_ROWS rows through the emulated CUDA kernels."""
    if CXX is None:
        pytest.skip("no C++ compiler to build the CUDA kernels for the CPU")
    emulator = Emulator(folder)
    monkeypatch.setattr(cuda, "run", emulator)
    monkeypatch.setattr(coordinate, "_compiled_route",
                        lambda block, xp: cuda if block.shape[0] <= cuda.MAX_ROWS else None)
    return emulator


def _numba(fn, block, *args):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(coordinate, "_compiled_route", coordinate._fused_route)
        return fn(block, *args, np)


def _data(m: int, d: int, dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, d))
    x[:, ::7] = rng.integers(-2, 3, size=(m, len(range(0, d, 7))))  # ties
    x[rng.integers(0, m), ::5] = 1e30  # an outlier row in some columns
    return x.astype(dtype)


def _reference(kind: str, block: np.ndarray, f: int) -> np.ndarray:
    s = np.sort(block.astype(np.float64), axis=0)
    m = block.shape[0]
    if kind == "median":
        return 0.5 * s[(m - 1) // 2] + 0.5 * s[m // 2]
    if kind == "trimmed":
        return s[f:m - f].mean(axis=0)
    med = 0.5 * s[(m - 1) // 2] + 0.5 * s[m // 2]
    dist = np.abs(s - med)
    order = np.argsort(dist, axis=0, kind="stable")  # ties keep the smaller (earlier) value
    keep = np.take_along_axis(s, order[:m - f], axis=0)
    return keep.mean(axis=0)


CASES = ([("median", m, 0, np.float32) for m in (1, 2, 3, 4, 7, 8, 13, 32, 33, 64)]
         + [("trimmed", m, max(1, (m - 1) // 3), np.float32) for m in (3, 5, 8, 13, 32, 33, 64)]
         + [("trimmed", 9, 4, np.float32)]
         + [("meamed", m, max(1, (m - 1) // 3), np.float32) for m in (3, 5, 8, 13, 32, 64)]
         + [(kind, m, 3, np.float64) for kind in ("median", "trimmed", "meamed") for m in (7, 32)])


@pytest.mark.parametrize("kind,m,f,dtype", CASES)
def test_emulated_kernel_equals_the_numba_route(emulated, kind, m, f, dtype):
    fn, args = {"median": (coordinate.coordinate_median, ()),
                "trimmed": (coordinate.coordinate_trimmed_mean, (f,)),
                "meamed": (coordinate.coordinate_mean_of_medians, (f,))}[kind]
    d = 1000  # four blocks of 256 threads, the last one partly past the end
    block = _data(m, d, dtype, seed=m + 100 * f)
    got = fn(block, *args, np)
    assert got.dtype == block.dtype and got.shape == (d,)
    if kind == "median" or f:
        assert emulated.launches, "the CUDA kernel did not run"
        _, shape, stride, grid = emulated.launches[-1]
        assert shape == (m, d) and stride == d and grid == 4
    np.testing.assert_array_equal(got, _numba(fn, block, *args))
    finite = np.abs(_reference(kind, block, f)) < 1e29
    np.testing.assert_allclose(got[finite], _reference(kind, block, f)[finite], rtol=2e-6 if dtype == np.float32
                               else 1e-12, atol=1e-6)


def test_column_slice_is_read_in_place_through_its_row_stride(emulated):
    full = _data(9, 3000, np.float32, seed=5)
    block = full[:, 700:1900]
    got = coordinate.coordinate_trimmed_mean(block, 2, np)
    _, shape, stride, grid = emulated.launches[-1]
    assert shape == (9, 1200) and stride == 3000 and grid == 5
    np.testing.assert_array_equal(got, _numba(coordinate.coordinate_trimmed_mean, np.ascontiguousarray(block), 2))


def test_every_rule_on_the_emulated_kernels(emulated):
    from byzdask.aggregators import (
        CoordinateWiseMedian,
        CoordinateWiseTrimmedMean,
        MeanOfMedians,
    )

    x = _data(13, 5000, np.float32, seed=9)
    x[3, 10] = np.nan  # one non-finite row, dropped by the rules
    for rule in (CoordinateWiseMedian(), CoordinateWiseTrimmedMean(f=3), MeanOfMedians(f=3)):
        got = rule.aggregate(x)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(coordinate, "_compiled_route", coordinate._fused_route)
            want = rule.aggregate(x)
        np.testing.assert_array_equal(got, want)
    assert {name.rsplit("_", 1)[0] for name, *_ in emulated.launches} == {"byz_median", "byz_sum", "byz_meamed"}


def test_kernel_source_rejects_what_it_cannot_unroll():
    ops = np.zeros((0, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="1..64 rows, got m=65"):
        cuda.kernel_source("k", 65, ops, np.float32, lo=0, hi=0, kind="median")
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        cuda.kernel_source("k", 3, ops, np.int32, lo=0, hi=0, kind="median")
    with pytest.raises(ValueError, match="kind must be"):
        cuda.kernel_source("k", 3, ops, np.float32, kind="mode")


def test_raw_route_takes_cupy_blocks_only_and_follows_the_setting():
    fake = types.ModuleType("cupy")
    fake.RawKernel = object
    small, big = np.zeros((64, 4), np.float32), np.zeros((65, 4), np.float32)
    assert coordinate._raw_route(small, np) is None
    assert coordinate._raw_route(small, fake) is cuda
    assert coordinate._raw_route(big, fake) is None
    assert coordinate._raw_route(small.astype(np.float16), fake) is None
    assert coordinate._raw_route(small, types.ModuleType("fakecupy")) is None
    with dask.config.set({"byzdask.kernels.cuda-selection": "library"}):
        assert coordinate._raw_route(small, fake) is None
    with dask.config.set({"byzdask.kernels.cuda-selection": "fast"}), \
            pytest.raises(ConfigurationError, match="'raw' or 'library', got 'fast'"):
        coordinate._raw_route(small, fake)


def _has_device() -> bool:
    cp = get_cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - a cupy without a driver raises several kinds
        return False


@pytest.mark.requires_gpu
@pytest.mark.skipif(not _has_device(), reason="needs cupy and a CUDA device")
@pytest.mark.parametrize("kind,m,f,dtype", [("median", 32, 0, np.float32), ("trimmed", 33, 8, np.float32),
                                             ("meamed", 64, 16, np.float32), ("median", 7, 0, np.float64)])
def test_device_kernel_equals_the_numba_route(kind, m, f, dtype):
    cp = get_cupy()
    fn, args = {"median": (coordinate.coordinate_median, ()),
                "trimmed": (coordinate.coordinate_trimmed_mean, (f,)),
                "meamed": (coordinate.coordinate_mean_of_medians, (f,))}[kind]
    block = _data(m, 100_003, dtype, seed=m)
    assert coordinate._raw_route(cp.asarray(block), cp) is cuda
    got = fn(cp.asarray(block), *args, cp)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(got), _numba(fn, block, *args))
