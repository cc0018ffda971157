"""MessageTriggerOp and MessageAwareNodeScheduler.deliver_message with ByzPy's semantics."""

import asyncio

import pytest

from byzdask.engine.graph.graph import ComputationGraph, GraphNode, graph_input
from byzdask.engine.graph.operator import MessageTriggerOp, OpContext
from byzdask.engine.graph.ops import CallableOp
from byzdask.engine.graph.scheduler import MessageAwareNodeScheduler
from byzdask.errors import ConfigurationError

pytestmark = pytest.mark.timeout(30)


def _scheduler():
    return MessageAwareNodeScheduler(ComputationGraph([GraphNode("k", CallableOp(lambda: 0), {})]))


async def test_delivery_wakes_every_waiter_of_its_type_only():
    s = _scheduler()
    waiting = [asyncio.ensure_future(s.wait_for_message("tick", timeout=5)) for _ in range(4)]
    other = asyncio.ensure_future(s.wait_for_message("tock", timeout=5))
    await asyncio.sleep(0.01)
    s.deliver_message("tick", "t1")
    assert await asyncio.gather(*waiting) == ["t1"] * 4
    assert not other.done() and s.mailbox.pending("tick") == 0
    s.deliver_message("tock", "t2")
    assert await other == "t2"


async def test_queued_messages_are_taken_once_each_in_order():
    s = _scheduler()
    for i in range(3):
        s.deliver_message("m", i)
    assert [await s.wait_for_message("m", timeout=1) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(asyncio.TimeoutError):
        await s.wait_for_message("m", timeout=0.05)


async def test_trigger_node_outputs_its_message_and_feeds_the_graph():
    graph = ComputationGraph([
        GraphNode("go", MessageTriggerOp("go", timeout=5.0), {}),
        GraphNode("sum", CallableOp(lambda m, b: m["v"] + b, input_mapping={"m": "m", "b": "b"}),
                  {"m": "go", "b": graph_input("b")}),
    ])
    s = MessageAwareNodeScheduler(graph)
    run = asyncio.ensure_future(s.run({"b": 1}))
    await asyncio.sleep(0.01)
    assert not run.done()
    s.deliver_message("go", {"v": 41})
    assert await run == {"sum": 42}


async def test_trigger_times_out_and_needs_a_scheduler():
    s = MessageAwareNodeScheduler(ComputationGraph([GraphNode("t", MessageTriggerOp("never", timeout=0.05), {})]))
    with pytest.raises(asyncio.TimeoutError, match="never"):
        await s.run({})
    op = MessageTriggerOp("x")
    assert (op.message_type, op.timeout) == ("x", None)
    with pytest.raises(RuntimeError, match="requires scheduler"):
        await op.run({}, context=OpContext("t", {}), pool=None)
    assert await op.run({}, context=OpContext("t", {"scheduler": _Box()}), pool=None) == "x!"
    with pytest.raises(ValueError):
        MessageTriggerOp("")
    with pytest.raises(ConfigurationError, match="timeout"):
        MessageTriggerOp("x", timeout=-1)


class _Box:
    async def wait_for_message(self, message_type, timeout=None):
        return message_type + "!"
