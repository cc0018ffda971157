"""Fan-out through shared memory: a pool of local worker processes reads the caller's input in place."""

from __future__ import annotations

import os

import dask.config
import numpy as np
import pytest
import torch

from byzdask.aggregators import (
    CenteredClipping,
    CoordinateWiseMedian,
    CoordinateWiseTrimmedMean,
    GeometricMedian,
    Krum,
    MoNNA,
)
from byzdask.engine.graph.ops import make_single_operator_graph
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.graph.scheduler import NodeScheduler
from byzdask.engine.shared import (
    CrossMemoryError,
    SharedArena,
    SharedArrays,
    probe_remote,
    read_remote,
    shareable,
    shared_block,
)
from byzdask.errors import InputError, NonFiniteError

pytestmark = pytest.mark.skipif(not SharedArena.available(), reason="no writable /dev/shm")


def _graph(rule):
    return make_single_operator_graph(node_name="agg", operator=rule, input_keys=("gradients",))


def _data(n=11, d=3001, dtype=np.float32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)
    x[-1] += 50.0  # one outlier
    return x


def test_arena_reserves_grows_and_is_removed(tmp_path):
    arena = SharedArena(str(tmp_path))
    with arena.holding(100) as (first, buf):
        assert buf.nbytes == 100 and os.path.exists(first)
        buf[:8].view(np.float32)[:] = [1.5, -2.0]
        view = shared_block(first, 0, 1, 2, "float32")
        assert view.tolist() == [[1.5, -2.0]] and not view.flags.writeable
        with pytest.raises(RuntimeError, match="in use by another aggregation"), arena.holding(10):
            pass
    with arena.holding(50) as (same, _):
        assert same == first  # big enough: reused
    with arena.holding(1 << 20) as (bigger, _):
        assert bigger != first and not os.path.exists(first)
    arena.close()
    arena.close()
    assert not os.path.exists(bigger)


def test_shareable_takes_cpu_float_arrays_and_lists_only():
    x = np.ones((3, 4, 2), np.float32)
    n, d, dtype, batch = shareable(x)
    assert (n, d, dtype, batch.shape, batch.family) == (3, 8, np.float32, (4, 2), "numpy")
    n, d, dtype, batch = shareable([torch.ones(5, dtype=torch.float16)] * 4)
    assert (n, d, dtype, batch.family, batch.dtype) == (4, 5, np.float32, "torch", torch.float16)
    assert shareable(np.ones((3, 4), np.int64)) is None
    assert shareable([np.ones(3), np.ones(4)]) is None
    assert shareable(np.ones(5)) is None
    assert shareable([]) is None
    assert shareable(np.ones((3, 0), np.float32)) is None


async def test_thread_pool_does_not_share_memory():
    async with ActorPool([ActorPoolConfig("thread", count=1)]) as pool:
        assert not pool.shares_memory and not await pool.reads_caller_memory()
        with pytest.raises(RuntimeError, match="no shared memory"):
            pool.shared_arena  # noqa: B018


def _addresses(rows):
    return np.array([r.ctypes.data for r in rows], dtype=np.uint64)


def test_read_remote_reads_rows_into_strided_rows_and_names_what_failed():
    pid = os.getpid()  # a process may always read its own memory: the same system call as from a worker
    src = np.arange(1030 * 9, dtype=np.float64).reshape(1030, 9)  # more rows than one call takes (1024)
    dest = np.zeros((1030, 8))
    read_remote(pid, _addresses(src), 2 * 8, dest[:, 1:4])  # columns 2:5 into columns 1:4 (strided rows)
    np.testing.assert_array_equal(dest[:, 1:4], src[:, 2:5])
    assert not dest[:, [0, 4, 5, 6, 7]].any()
    token = np.frombuffer(os.urandom(16), dtype=np.uint8).copy()
    assert probe_remote(pid, token.ctypes.data, 16) == token.tobytes()
    with pytest.raises(CrossMemoryError, match=f"could not read the memory of process {pid}: Bad address") as info:
        read_remote(pid, np.array([8], dtype=np.uint64), 0, np.zeros((1, 4)))
    assert info.value.errno == 14 and "cross-memory to false" in str(info.value)
    assert "Bad address" in probe_remote(pid, 8, 4)
    with pytest.raises(ValueError, match="3 contiguous rows"):
        read_remote(pid, _addresses(src[:3]), 0, np.zeros((3, 4))[:, ::2])


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("route", ["copied", "remote"])
async def test_process_pool_fans_out_through_shared_memory(route, monkeypatch):
    import byzdask.engine.shared

    x = _data()
    x[2, 7] = np.nan  # non-finite rows, dropped by every rule: one in the first block ...
    x[5, 2990] = np.inf  # ... and one in the last piece of the last block
    monkeypatch.setattr(byzdask.engine.shared, "PIECE_BYTES", 4096)  # 93 columns: 17 pieces per block
    with dask.config.set({"byzdask.scheduler.cross-memory": route == "remote"}):
        await _fan_out_through_shared_memory(route, x)


async def _fan_out_through_shared_memory(route, x):
    async with ActorPool([ActorPoolConfig("process", count=2, memory_limit="1GiB")], start_timeout=90) as pool:
        assert pool.shares_memory
        if route == "remote" and not await pool.reads_caller_memory():
            pytest.skip("the workers may not read the caller's memory here (not Linux, or Yama ptrace_scope >= 1)")
        for rule in (CoordinateWiseMedian(), CoordinateWiseTrimmedMean(f=2), Krum(f=2), GeometricMedian()):
            scheduler = NodeScheduler(_graph(rule), pool=pool, fanout_min_bytes=0)
            got = (await scheduler.run({"gradients": x}))["agg"]
            assert pool._arena is not None and pool._arena.path.startswith("/dev/shm/byzdask-")
            np.testing.assert_allclose(got, rule.aggregate(x), rtol=1e-4, atol=1e-5)  # GM: iterated to tol
            if rule.kind == "columnwise":
                # read from the caller's memory, a columnwise rule copies nothing: the arena holds the output only
                assert (pool._arena._size < x.nbytes) == (route == "remote")

        # anchor rows of every kind: computed per block (GM from the median), a row (MoNNA), held (CC "previous")
        clipping, reference = CenteredClipping(c_tau=1.0, init="previous"), CenteredClipping(c_tau=1.0, init="previous")
        for rule, twin in ((GeometricMedian(init="median"), None), (MoNNA(f=2, reference_index=4), None),
                           (clipping, reference)):
            scheduler = NodeScheduler(_graph(rule), pool=pool, fanout_min_bytes=0)
            for step in range(2):  # the second call of CC starts from the first call's result
                got = (await scheduler.run({"gradients": x + step}))["agg"]
                want = (rule if twin is None else twin).aggregate(x + step)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

        # too many non-finite rows (row 2 and three more): the error names them, the arena file is given up, the next run works
        bad = x.copy()
        bad[[0, 5, 9], 3000] = np.inf
        path = pool._arena.path
        with pytest.raises(NonFiniteError, match="4 of 11 input vectors"):
            await NodeScheduler(_graph(Krum(f=2)), pool=pool, fanout_min_bytes=0).run({"gradients": bad})
        assert pool._arena.path is None and not os.path.exists(path)
        got = (await NodeScheduler(_graph(Krum(f=2)), pool=pool, fanout_min_bytes=0).run({"gradients": x}))["agg"]
        np.testing.assert_allclose(got, Krum(f=2).aggregate(x), rtol=1e-5)

        # a list of torch tensors comes back as one torch tensor of their dtype and shape
        tensors = [torch.from_numpy(row.reshape(3, -1)) for row in _data(7, 3000, seed=1)]
        scheduler = NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool, fanout_min_bytes=0)
        got = (await scheduler.run({"gradients": tensors}))["agg"]
        assert isinstance(got, torch.Tensor) and got.shape == (3, 1000) and got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), CoordinateWiseMedian().aggregate(tensors).numpy())

        # a stacked bfloat16 tensor (numpy has no bfloat16) is computed in float32 and given back as bfloat16
        half = torch.from_numpy(_data(7, 2000, seed=3)).to(torch.bfloat16)
        got = (await scheduler.run({"gradients": half}))["agg"]
        assert got.dtype == torch.bfloat16 and got.shape == (2000,)
        np.testing.assert_array_equal(got.float().numpy(), CoordinateWiseMedian().aggregate(half).float().numpy())

        # float64 stays float64; the arena grows for the larger input
        x64 = _data(9, 50_000, np.float64, seed=2)
        old = pool._arena.path
        got = (await NodeScheduler(_graph(Krum(f=2)), pool=pool, fanout_min_bytes=0).run({"gradients": x64}))["agg"]
        assert got.dtype == np.float64 and pool._arena.path != old and not os.path.exists(old)
        np.testing.assert_allclose(got, Krum(f=2).aggregate(x64), rtol=1e-12)

        # below the threshold, or with the route turned off, the input is scattered as before
        pool._arena.close()  # no file now: a run through the arena would make a new one
        with dask.config.set({"byzdask.scheduler.shared-memory": False}):
            got = (await NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool,
                                       fanout_min_bytes=0).run({"gradients": x}))["agg"]
        np.testing.assert_allclose(got, CoordinateWiseMedian().aggregate(x))
        assert pool._arena.path is None
        got = (await NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool,
                                   fanout_min_bytes=x.nbytes + 1).run({"gradients": x}))["agg"]
        np.testing.assert_allclose(got, CoordinateWiseMedian().aggregate(x))
        assert pool._arena.path is None
        arena = pool._arena
        await NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool, fanout_min_bytes=0).run({"gradients": x})
        path = arena.path
        assert os.path.exists(path)
    assert not os.path.exists(path)  # removed at shutdown


def test_shared_arrays_locate_their_views_and_remove_their_files(tmp_path):
    import gc

    arrays = SharedArrays(str(tmp_path))
    x = arrays.new((4, 6), np.float64)
    assert x.shape == (4, 6) and x.dtype == np.float64 and not x.any()
    (path,) = os.listdir(tmp_path)
    assert arrays.locate(x) == (str(tmp_path / path), 0)
    assert arrays.locate(x[2:]) == (str(tmp_path / path), 2 * 6 * 8)
    assert arrays.locate(torch.from_numpy(x[1:3])) == (str(tmp_path / path), 6 * 8)
    assert arrays.locate(x[:, 1:]) is None  # not contiguous
    assert arrays.locate(x.copy()) is None
    with pytest.raises(InputError, match="non-negative integers"):
        arrays.new((3, -1))
    del x
    gc.collect()
    assert os.listdir(tmp_path) == []  # the last view went: the file went with it
    y = arrays.new(5)
    arrays.close()
    assert os.listdir(tmp_path) == [] and y.shape == (5,)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_input_in_a_shared_array_is_read_in_place(monkeypatch):
    import byzdask.engine.shared

    x = _data(11, 6001)
    x[3, 10] = np.nan  # non-finite in one block only
    async with ActorPool([ActorPoolConfig("process", count=2, memory_limit="1GiB")], start_timeout=90) as pool:
        # small blocks: 14 of them (7 rounds of the 2 workers), copied or read in place
        monkeypatch.setattr(byzdask.engine.shared, "BLOCK_BYTES", 20_000)
        for remote in (False, True):
            with dask.config.set({"byzdask.scheduler.cross-memory": remote}):
                for rule in (CoordinateWiseTrimmedMean(f=2), Krum(f=2)):
                    got = (await NodeScheduler(_graph(rule), pool=pool,
                                               fanout_min_bytes=0).run({"gradients": x}))["agg"]
                    np.testing.assert_allclose(got, rule.aggregate(x), rtol=1e-5, atol=1e-6)
        monkeypatch.undo()
        pool.shared_arena.close()  # the copies grew it; from here it should only ever hold an output
        shared = pool.shared_array(x.shape)
        shared[:] = x
        path = pool.locate_shared(shared)[0]
        for rule in (CoordinateWiseMedian(), Krum(f=2), GeometricMedian(init="median")):
            scheduler = NodeScheduler(_graph(rule), pool=pool, fanout_min_bytes=0)
            got = (await scheduler.run({"gradients": shared}))["agg"]
            np.testing.assert_allclose(got, rule.aggregate(x), rtol=1e-4, atol=1e-5)
            # nothing was copied: the pool's arena only ever held the d-vector output
            assert pool._arena._size < x.nbytes
        # rows 2..10 as a torch tensor over the shared array: still read in place
        rows = torch.from_numpy(shared[2:])
        got = (await NodeScheduler(_graph(Krum(f=2)), pool=pool, fanout_min_bytes=0).run({"gradients": rows}))["agg"]
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), Krum(f=2).aggregate(x[2:]), rtol=1e-5)
        assert pool._arena._size < x.nbytes
        # a float16 shared array is not of the working dtype: it is copied (converted) as any other input
        half = pool.shared_array(x.shape, np.float16)
        half[:] = x
        with dask.config.set({"byzdask.scheduler.cross-memory": False}):
            got = (await NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool,
                                       fanout_min_bytes=0).run({"gradients": half}))["agg"]
        assert got.dtype == np.float16 and pool._arena._size >= x.nbytes
        np.testing.assert_array_equal(got, CoordinateWiseMedian().aggregate(half))
        assert os.path.exists(path)
    assert not os.path.exists(path)  # removed at shutdown
    with pytest.raises(RuntimeError, match="no shared memory"):
        pool.shared_array(3)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_futures_held_by_the_workers_are_stored_by_them_and_aggregated_in_place():
    """n futures spread over the workers, or one future of the stacked array: the holders write them into the arena."""
    x = _data(9, 4001)
    x[4, 4000] = np.nan  # a non-finite row, in the last block
    async with ActorPool([ActorPoolConfig("process", count=2, memory_limit="1GiB")], start_timeout=90) as pool:
        client = pool.client
        futures = await client.scatter(list(x), hash=False, direct=True)
        holders = {addresses[0] for addresses in (await client.who_has(futures)).values()}
        assert len(holders) == 2  # spread over both workers: each writes its own rows
        for rule in (CoordinateWiseMedian(), Krum(f=2), GeometricMedian(init="median")):
            got = (await NodeScheduler(_graph(rule), pool=pool, fanout_min_bytes=0).run({"gradients": futures}))["agg"]
            np.testing.assert_allclose(got, rule.aggregate(x), rtol=1e-4, atol=1e-5)
            assert pool._arena._size >= x.nbytes  # the rows went through the arena
        # one future of the stacked (n, d) array, on one worker: it writes it into the arena, both workers aggregate
        (stacked,) = await client.scatter([x], hash=False, direct=True)
        pool.shared_arena.close()
        for rule in (CoordinateWiseTrimmedMean(f=2), Krum(f=2)):
            got = (await NodeScheduler(_graph(rule), pool=pool, fanout_min_bytes=0).run({"gradients": stacked}))["agg"]
            np.testing.assert_allclose(got, rule.aggregate(x), rtol=1e-5, atol=1e-6)
            assert pool._arena._size >= x.nbytes
        # torch vectors of shape (3, 1000), in float16: computed in float32, given back as the inputs are
        vectors = [torch.from_numpy(row[:3000].reshape(3, -1).copy()).to(torch.float16) for row in x]
        held = await client.scatter(vectors, hash=False, direct=True)
        got = (await NodeScheduler(_graph(Krum(f=2)), pool=pool, fanout_min_bytes=0).run({"gradients": held}))["agg"]
        assert isinstance(got, torch.Tensor) and got.shape == (3, 1000) and got.dtype == torch.float16
        np.testing.assert_allclose(got.float().numpy(), Krum(f=2).aggregate(vectors).float().numpy(), rtol=1e-2)
        # a future of a list of vectors is not an array: the usual route (subtasks and a reduce) takes it
        (listed,) = await client.scatter([list(x[:, :50])], hash=False)
        got = (await NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool,
                                   fanout_min_bytes=0).run({"gradients": listed}))["agg"]
        np.testing.assert_allclose(got, CoordinateWiseMedian().aggregate(x[:, :50]))
        # ragged vectors are not taken: the usual route names the problem
        ragged = await client.scatter([np.ones(5, np.float32), np.ones(6, np.float32), np.ones(5, np.float32)],
                                      hash=False)
        pool.shared_arena.close()
        with pytest.raises(InputError, match="shape"):
            await NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool, fanout_min_bytes=0).run({"gradients": ragged})
        # below the threshold they take the usual route (block by block over the sockets): no arena
        got = (await NodeScheduler(_graph(CoordinateWiseMedian()), pool=pool,
                                   fanout_min_bytes=x.nbytes + 1).run({"gradients": futures}))["agg"]
        np.testing.assert_allclose(got, CoordinateWiseMedian().aggregate(x))
        assert pool._arena.path is None
