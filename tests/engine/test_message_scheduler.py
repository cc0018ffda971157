"""MessageBox and MessageAwareNodeScheduler: exactly once, in order per type, timeouts that say what they waited for."""

import asyncio
import threading

import numpy as np
import pytest

from byzdask.aggregators.average import Average
from byzdask.engine.graph.graph import (
    ComputationGraph,
    GraphInput,
    GraphNode,
    graph_input,
)
from byzdask.engine.graph.message import MessageBox
from byzdask.engine.graph.ops import CallableOp
from byzdask.engine.graph.scheduler import MessageAwareNodeScheduler
from byzdask.errors import ConfigurationError, MessageTimeoutError

pytestmark = pytest.mark.timeout(30)


async def test_queued_messages_arrive_in_order_once():
    box = MessageBox()
    for i in range(5):
        box.deliver("m", i)
    got = [await box.receive("m", timeout=1) for _ in range(5)]
    assert got == [0, 1, 2, 3, 4]
    assert box.pending("m") == 0
    with pytest.raises(MessageTimeoutError, match="'m'"):
        await box.receive("m", timeout=0.01)


async def test_waiters_are_served_in_order_and_each_message_once():
    box = MessageBox()
    waiters = [asyncio.ensure_future(box.receive("m", timeout=5)) for _ in range(3)]
    await asyncio.sleep(0)
    for i in range(4):
        box.deliver("m", i)
    assert await asyncio.gather(*waiters) == [0, 1, 2]
    assert box.pending("m") == 1
    assert await box.receive("m", timeout=1) == 3


async def test_types_are_independent():
    box = MessageBox()
    box.deliver("a", 1)
    box.deliver("b", 2)
    assert await box.receive("b", timeout=1) == 2
    assert await box.receive("a", timeout=1) == 1


async def test_timeout_names_the_type_and_loses_nothing():
    box = MessageBox()
    with pytest.raises(MessageTimeoutError, match="'grad'.*0.05"):
        await box.receive("grad", timeout=0.05)
    box.deliver("grad", "late")  # the timed-out waiter must not swallow it
    assert await box.receive("grad", timeout=1) == "late"


async def test_a_cancelled_receiver_returns_its_message():
    box = MessageBox()
    waiter = asyncio.ensure_future(box.receive("m", timeout=5))
    await asyncio.sleep(0)
    box.deliver("m", "first")  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it reads it
    with pytest.raises(asyncio.CancelledError):
        await waiter
    box.deliver("m", "second")
    assert [await box.receive("m", timeout=1), await box.receive("m", timeout=1)] == ["first", "second"]


async def test_delivery_from_other_threads_is_exactly_once():
    box = MessageBox()
    n = 200
    waiters = [asyncio.ensure_future(box.receive("m", timeout=10)) for _ in range(n // 2)]
    await asyncio.sleep(0)

    def produce(start):
        for i in range(start, n, 2):
            box.deliver("m", i)

    threads = [threading.Thread(target=produce, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    first = await asyncio.gather(*waiters)
    rest = [await box.receive("m", timeout=5) for _ in range(n - len(first))]
    assert sorted(first + rest) == list(range(n))
    evens = [v for v in first + rest if v % 2 == 0]
    assert evens == sorted(evens)  # one producer's messages stay in its order
    assert box.pending("m") == 0


async def test_bad_arguments():
    box = MessageBox()
    with pytest.raises(ConfigurationError):
        box.deliver("", 1)
    with pytest.raises(ConfigurationError):
        await box.receive("m", timeout=-1)


async def test_scheduler_reads_messages_and_inputs():
    graph = ComputationGraph([
        GraphNode("agg", Average(), {"gradients": GraphInput.from_message("grads", field="vectors", timeout=5)}),
        GraphNode("scaled", CallableOp(lambda v, s, r: v * s + r, input_mapping={"v": "v", "s": "s", "r": "r"}),
                  {"v": "agg", "s": GraphInput.from_message("grads", field="scale"), "r": graph_input("shift")}),
    ])
    scheduler = MessageAwareNodeScheduler(graph)
    run = asyncio.ensure_future(scheduler.run({"shift": 1.0}))
    await asyncio.sleep(0.01)
    assert not run.done()
    scheduler.deliver_message("grads", {"vectors": [np.ones(2), 3 * np.ones(2)], "scale": 10.0})
    out = await asyncio.wait_for(run, 5)
    np.testing.assert_allclose(out["scaled"], [21.0, 21.0])
    # one message consumed per run: a second run waits for the next one
    scheduler.deliver_message("grads", {"vectors": [np.zeros(2)], "scale": 1.0})
    out = await scheduler.run({"shift": 0.0})
    np.testing.assert_allclose(out["scaled"], [0.0, 0.0])


async def test_scheduler_timeout_names_the_message_type():
    graph = ComputationGraph([GraphNode("n", CallableOp(lambda x: x, input_mapping={"x": "x"}),
                                        {"x": GraphInput.from_message("round-7", timeout=0.05)})])
    scheduler = MessageAwareNodeScheduler(graph)
    with pytest.raises(MessageTimeoutError, match="'round-7'"):
        await scheduler.run({})
    scheduler.deliver_message("round-7", 4)
    assert await scheduler.run({}) == {"n": 4}


async def test_wait_for_message_api():
    graph = ComputationGraph([GraphNode("n", CallableOp(lambda: 1), {})])
    scheduler = MessageAwareNodeScheduler(graph)
    scheduler.deliver_message("x", 1)
    assert await scheduler.wait_for_message("x", timeout=1) == 1
    with pytest.raises(MessageTimeoutError, match="'x'"):
        await scheduler.wait_for_message("x", timeout=0.01)


def test_to_dask_shows_message_placeholders():
    graph = ComputationGraph([GraphNode("n", CallableOp(lambda x: x, input_mapping={"x": "x"}),
                                        {"x": GraphInput.from_message("m")})])
    dsk = MessageAwareNodeScheduler(graph).to_dask({})
    assert len(dsk) == 2
