"""ActorRef and ActorPool.spawn on in-process pools (each test starts and closes its own)."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest
import torch

from byzdask.engine.actor import ActorRef
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.errors import ActorLostError, CapabilityError

pytestmark = pytest.mark.timeout(60)


class Counter:
    def __init__(self, start=0, *, step=1):
        self.n = start
        self.step = step
        self.label = "counter"

    async def add(self, k=None):
        self.n += self.step if k is None else k
        return self.n

    def add_sync(self, k):
        self.n += k
        return self.n

    async def where(self):
        from distributed import get_worker

        return get_worker().name

    async def fail(self):
        raise ValueError("bad input 7")

    async def slow(self, seconds):
        await asyncio.sleep(seconds)
        return seconds

    async def scale(self, array):
        return array * 2

    async def ask(self, other, k):
        # An actor awaiting another actor: never blocks the worker.
        return await other.add(k)


def thread_pool(**kwargs):
    configs = [
        ActorPoolConfig("thread", count=2, name="cpu"),
        ActorPoolConfig("thread", count=1, name="acc", capabilities=["gpu"]),
    ]
    return ActorPool(configs, **kwargs)


async def test_spawn_and_call():
    async with thread_pool() as pool:
        ref = await pool.spawn(Counter, 5, step=3, actor_name="c")
        assert isinstance(ref, ActorRef)
        assert ref.name == "c" and ref.cls is Counter
        assert ref.worker in pool.workers.values()
        assert await ref.add() == 8
        assert await ref.add(2) == 10
        assert await ref.add_sync(1) == 11  # synchronous methods run in the worker's actor thread
        assert await ref.call("add", 4) == 15
        assert "Counter" in repr(ref) and "'c'" in repr(ref)


async def test_calls_run_concurrently_on_the_worker_loop():
    async with thread_pool() as pool:
        ref = await pool.spawn(Counter)
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await asyncio.gather(*(ref.slow(0.3) for _ in range(4)))
        assert results == [0.3] * 4
        assert loop.time() - start < 1.0


async def test_placement_by_capability_and_name():
    async with thread_pool() as pool:
        on_gpu = await pool.spawn(Counter, capability="gpu")
        assert await on_gpu.where() == "acc-0"
        named = await pool.spawn(Counter, worker="cpu-1")
        assert await named.where() == "cpu-1"
        by_address = await pool.spawn(Counter, worker=pool.worker_named("cpu-0"))
        assert await by_address.where() == "cpu-0"
        # Round-robin over the workers offering a capability.
        spread = [await pool.spawn(Counter, capability="cpu") for _ in range(4)]
        assert [await r.where() for r in spread] == ["cpu-0", "cpu-1", "cpu-0", "cpu-1"]
        with pytest.raises(CapabilityError, match=r"capability 'tpu' \(offered: \['cpu', 'gpu'\]\)"):
            await pool.spawn(Counter, capability="tpu")
        with pytest.raises(CapabilityError, match="no worker is named 'cpu-9'"):
            await pool.spawn(Counter, worker="cpu-9")


async def test_errors_of_the_method_reach_the_caller():
    async with thread_pool() as pool:
        ref = await pool.spawn(Counter)
        with pytest.raises(ValueError, match="bad input 7"):
            await ref.fail()
        with pytest.raises(AttributeError, match="has no method 'nope'"):
            ref.nope  # noqa: B018
        with pytest.raises(AttributeError):
            ref._private  # noqa: B018
        with pytest.raises(AttributeError, match="has no method 'label'"):
            ref.label  # noqa: B018


async def test_call_timeout_names_the_actor_and_method():
    async with thread_pool() as pool:
        ref = await pool.spawn(Counter, actor_name="sleepy")
        with pytest.raises(TimeoutError, match=r"actor 'sleepy' did not answer slow\(\) within 0.2 s"):
            await ref.call("slow", 5, call_timeout=0.2)


async def test_actor_calls_actor_through_a_ref():
    async with thread_pool() as pool:
        a = await pool.spawn(Counter, worker="cpu-0")
        b = await pool.spawn(Counter, 100, worker="cpu-1")
        assert await a.ask(b, 5) == 105
        assert await b.add(0) == 105


async def test_arrays_and_tensors_round_trip():
    async with thread_pool(start_timeout=30) as pool:
        ref = await pool.spawn(Counter)
        x = np.arange(6, dtype=np.float32)
        np.testing.assert_array_equal(await ref.scale(x), x * 2)
        t = torch.arange(4, dtype=torch.float64)
        assert torch.equal(await ref.scale(t), t * 2)


async def test_ref_pickles_to_the_same_actor():
    async with thread_pool() as pool:
        ref = await pool.spawn(Counter, actor_name="p")
        clone = pickle.loads(pickle.dumps(ref))
        assert clone.name == "p" and clone.key == ref.key and clone.worker == ref.worker


async def test_lost_actor_raises_actor_lost_error():
    async with thread_pool() as pool:
        ref = await pool.spawn(Counter, worker="cpu-1", actor_name="victim")
        await ref.add(1)
        await pool._cluster.workers["cpu-1"].close()  # an in-process worker going away
        for _ in range(100):
            if ref._future.status != "finished":
                break
            await asyncio.sleep(0.05)
        with pytest.raises(ActorLostError, match="actor 'victim' \\(Counter\\) on worker .* was lost"):
            await ref.add(1)


def test_actors_from_synchronous_code():
    pool = ActorPool([ActorPoolConfig("thread", count=1)])
    with pool.sync():
        ref = pool.call_sync(pool.spawn, Counter, 1, actor_name="sync")
        assert pool.call_sync(ref.add, 2) == 3
        assert pool.call_sync(ref.call, "add", 4, call_timeout=5) == 7
