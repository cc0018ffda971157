"""Channels: mailbox semantics (no cluster) and channels between actors of in-process pools."""

from __future__ import annotations

import asyncio
import pickle

import networkx as nx
import numpy as np
import pytest
import torch

from byzdask.engine.actor import ChannelHost, Mailbox, Message, edges_of, open_channel
from byzdask.engine.actor.channels import pack
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.errors import ConfigurationError, MessageRejectedError, MessageTimeoutError

pytestmark = pytest.mark.timeout(60)


# -- the mailbox alone ------------------------------------------------------------------------------


async def test_mailbox_drops_duplicates_and_delivers_each_message_once():
    box = Mailbox("a", "ch")
    assert box.put("b", 0, round=None, tag=None, payload="x")
    assert not box.put("b", 0, round=None, tag=None, payload="x")  # a retried delivery
    assert box.put("b", 2, round=None, tag=None, payload="z")  # out of order is fine
    assert box.put("b", 1, round=None, tag=None, payload="y")
    assert not box.put("b", 1, round=None, tag=None, payload="y")
    assert box.put("c", 0, round=None, tag=None, payload="w")  # sequences are per sender
    got = [(await box.get(timeout=1)).payload for _ in range(4)]
    assert got == ["x", "z", "y", "w"]
    assert box.pending() == 0
    assert box.stats["duplicates"] == 2
    with pytest.raises(MessageTimeoutError, match="'a' received no message within 0.05 s"):
        await box.get(timeout=0.05)


async def test_mailbox_filters_by_round_tag_and_sender():
    box = Mailbox("a", "ch")
    box.put("b", 0, round=1, tag="grad", payload=1)
    box.put("c", 0, round=2, tag=None, payload=2)
    box.put("b", 1, round=2, tag=None, payload=3)
    assert await box.get(round=2, sender="b", timeout=1) == Message("b", 2, None, 3)
    assert (await box.get(tag="grad", timeout=1)).payload == 1
    with pytest.raises(MessageTimeoutError, match=r"with round=2, tag='grad'"):
        await box.get(round=2, tag="grad", timeout=0.05)
    assert (await box.get(tag=None, timeout=1)).payload == 2


async def test_mailbox_rejects_a_second_message_in_the_same_round():
    box = Mailbox("a", "ch")
    box.put("b", 0, round=3, tag=None, payload=1)
    with pytest.raises(MessageRejectedError, match="'b' already sent 'a' a message for round 3"):
        box.put("b", 1, round=3, tag=None, payload=2)
    box.put("b", 2, round=3, tag="other", payload=3)  # another tag is another conversation
    assert await box.take_round(3, ["b"], timeout=1) == {"b": 1}
    with pytest.raises(MessageRejectedError):
        box.put("b", 3, round=3, tag=None, payload=4)  # even after it was taken


async def test_take_round_waits_and_reports_missing_senders():
    box = Mailbox("a", "ch")

    async def late():
        await asyncio.sleep(0.05)
        box.put("c", 0, round=0, tag=None, payload="C")

    box.put("b", 0, round=0, tag=None, payload="B")
    task = asyncio.create_task(late())
    assert await box.take_round(0, ["c", "b"], timeout=2) == {"c": "C", "b": "B"}
    await task
    box.put("b", 1, round=1, tag=None, payload="B1")
    with pytest.raises(MessageTimeoutError, match=r"still missing \['c', 'd'\] \(received \['b'\]\)"):
        await box.take_round(1, ["b", "c", "d"], timeout=0.05)
    # What was taken before the timeout is still there.
    assert await box.take_round(1, ["b", "c"], timeout=0.05, partial=True) == {"b": "B1"}


async def test_discard_before_drops_old_rounds_and_late_messages():
    box = Mailbox("a", "ch")
    box.put("b", 0, round=0, tag=None, payload=0)
    box.put("b", 1, round=1, tag=None, payload=1)
    assert box.discard_before(1) == 1
    assert not box.put("c", 0, round=0, tag=None, payload="late")
    assert box.stats["stale"] == 1
    assert (await box.get(timeout=1)).payload == 1


def test_edges_of_topologies():
    names = ["a", "b", "c"]
    assert edges_of(names, nx.path_graph(["a", "b", "c"])) == [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")]
    assert edges_of(names, nx.DiGraph([("a", "b"), ("b", "b")])) == [("a", "b")]
    assert edges_of(names, {"a": ["b", "c"]}) == [("a", "b"), ("a", "c")]
    with pytest.raises(ConfigurationError, match="node 'z', which is not a member"):
        edges_of(names, [("a", "z")])
    with pytest.raises(ConfigurationError, match="must be a pair"):
        edges_of(names, [("a", "b", "c")])


# -- channels between actors --------------------------------------------------------------------------


class Node(ChannelHost):
    def __init__(self):
        self.seen = []

    async def step(self, round, vector, timeout=5.0, partial=False):
        channel = self.channel("vec")
        await channel.broadcast(vector, round=round)
        return await channel.recv_round(round, timeout=timeout, partial=partial)

    async def forge(self, victim, claimed_sender):
        # A Byzantine node trying to speak as someone else: it has no token for that edge.
        channel = self.channel("vec")
        handle = channel._peers[victim]
        await handle.channel_deliver("vec", claimed_sender, b"0" * 16, 0, 0, None, "forged")

    async def forge_batch(self, target_ref, claimed_sender):
        # The same forgery through the batched path another worker's outbox uses.
        headers = pickle.dumps([("vec", claimed_sender, [(target_ref.key, target_ref.name, b"0" * 16, 0)],
                                 0, None)])
        return await target_ref.handle.channel_deliver_batch(headers, pack(["forged"]))

    async def speak_to_non_neighbour(self, target_ref, payload):
        await target_ref.handle.channel_deliver("vec", self.channel("vec").owner, b"0" * 16, 0, 0, None, payload)

    async def neighbours(self):
        channel = self.channel("vec")
        return list(channel.in_neighbours), list(channel.out_neighbours)


class NotAHost:
    pass


async def spawn_nodes(pool, names):
    workers = list(pool.workers)
    return {n: await pool.spawn(Node, worker=workers[i % len(workers)], actor_name=n) for i, n in enumerate(names)}


def pool_of(count=2, protocol=None):
    return ActorPool([ActorPoolConfig("thread", count=count, protocol=protocol)])


async def test_round_on_a_ring_with_numpy_and_torch():
    async with pool_of() as pool:
        nodes = await spawn_nodes(pool, ["n0", "n1", "n2", "n3"])
        info = await pool.open_channel("vec", nodes, topology=nx.cycle_graph(["n0", "n1", "n2", "n3"]))
        assert info.in_neighbours["n0"] == ("n1", "n3")
        assert [list(x) for x in await nodes["n0"].neighbours()] == [["n1", "n3"], ["n1", "n3"]]
        vectors = {n: np.full(5, i, dtype=np.float32) for i, n in enumerate(nodes)}
        results = await asyncio.gather(*(nodes[n].step(0, vectors[n]) for n in nodes))
        got = dict(zip(nodes, results, strict=True))
        assert list(got["n0"]) == ["n1", "n3"]
        np.testing.assert_array_equal(got["n0"]["n3"], vectors["n3"])
        np.testing.assert_array_equal(got["n2"]["n1"], vectors["n1"])
        tensors = {n: torch.full((3,), float(i)) for i, n in enumerate(nodes)}
        results = await asyncio.gather(*(nodes[n].step(1, tensors[n]) for n in nodes))
        assert torch.equal(results[1]["n2"], tensors["n2"])
        for n in nodes:
            stats = await nodes[n].channel_stats("vec")
            assert stats == {"delivered": 4, "duplicates": 0, "stale": 0, "rejected": 0, "pending": 0}


async def test_tcp_channel_between_workers():
    async with pool_of(protocol="tcp") as pool:
        nodes = await spawn_nodes(pool, ["a", "b"])
        await open_channel("vec", nodes)
        assert nodes["a"].worker != nodes["b"].worker
        x = np.arange(1000, dtype=np.float64)
        results = await asyncio.gather(nodes["a"].step(0, x), nodes["b"].step(0, -x))
        np.testing.assert_array_equal(results[0]["b"], -x)
        np.testing.assert_array_equal(results[1]["a"], x)


async def test_sender_is_stamped_by_the_channel():
    async with pool_of() as pool:
        nodes = await spawn_nodes(pool, ["a", "b", "c"])
        await open_channel("vec", nodes)
        await nodes["a"].channel_send("vec", "b", "hello", 7, "greet")
        assert await nodes["b"].channel_recv("vec", timeout=5) == ("a", 7, "greet", "hello")
        # c claims to be a when talking to b: the token of edge a->b is not c's to give.
        with pytest.raises(MessageRejectedError, match="claims to come from 'a' but was not sent through 'a'"):
            await nodes["c"].forge("b", "a")
        stats = await nodes["b"].channel_stats("vec")
        assert stats["rejected"] == 1 and stats["pending"] == 0


async def test_a_forged_entry_inside_a_batch_is_rejected_and_the_rest_still_flows():
    async with pool_of(protocol="tcp") as pool:
        nodes = await spawn_nodes(pool, ["a", "b", "c"])
        await open_channel("vec", nodes)
        outcomes = await nodes["c"].forge_batch(nodes["b"], "a")
        assert isinstance(outcomes[0][0], MessageRejectedError)
        assert "claims to come from 'a'" in str(outcomes[0][0])
        stats = await nodes["b"].channel_stats("vec")
        assert stats["rejected"] == 1 and stats["pending"] == 0
        # honest traffic between the two workers (batched per worker pair) is untouched
        vectors = {n: np.full(4, i, dtype=np.float32) for i, n in enumerate(nodes)}
        results = dict(zip(nodes, await asyncio.gather(*(nodes[n].step(0, vectors[n]) for n in nodes)), strict=True))
        for receiver, got in results.items():
            assert sorted(got) == sorted(set(nodes) - {receiver})
            for sender, vector in got.items():
                np.testing.assert_array_equal(vector, vectors[sender])


async def test_non_neighbours_are_rejected():
    async with pool_of() as pool:
        nodes = await spawn_nodes(pool, ["a", "b", "c"])
        await open_channel("vec", nodes, topology=[("a", "b"), ("b", "c")])
        with pytest.raises(ConfigurationError, match="'a' cannot send to 'c', not an out-neighbour"):
            await nodes["a"].channel_send("vec", "c", "x")
        with pytest.raises(MessageRejectedError, match=r"'a' is not an in-neighbour of 'c' \(in-neighbours: \['b'\]\)"):
            await nodes["a"].speak_to_non_neighbour(nodes["c"], "x")
        with pytest.raises(MessageTimeoutError):
            await nodes["c"].channel_recv("vec", timeout=0.05)


async def test_broadcast_reaches_every_out_neighbour_once():
    async with pool_of() as pool:
        nodes = await spawn_nodes(pool, ["hub", "x", "y", "z"])
        await open_channel("vec", nodes, topology={"hub": ["x", "y", "z"]})
        await nodes["hub"].channel_broadcast("vec", {"w": np.ones(2)}, 0)
        for name in ("x", "y", "z"):
            sender, round_, tag, payload = await nodes[name].channel_recv("vec", timeout=5)
            assert (sender, round_, tag) == ("hub", 0, None)
            np.testing.assert_array_equal(payload["w"], np.ones(2))
            with pytest.raises(MessageTimeoutError, match=f"'{name}' received no message within 0.05 s"):
                await nodes[name].channel_recv("vec", timeout=0.05)


async def test_recv_round_timeout_and_partial():
    async with pool_of() as pool:
        nodes = await spawn_nodes(pool, ["a", "b", "c"])
        await open_channel("vec", nodes)
        # c stays silent (a crashed or Byzantine node): a and b still finish the round.
        results = await asyncio.gather(nodes["a"].step(0, 1.0, 0.3, True), nodes["b"].step(0, 2.0, 0.3, True))
        assert results == [{"b": 2.0}, {"a": 1.0}]
        await nodes["a"].channel_send("vec", "b", 3.0, 1)
        with pytest.raises(MessageTimeoutError, match=r"'b' waited 0.1 s for round 1 and is still missing \['c'\]"):
            await nodes["b"].channel_recv_round("vec", 1, None, 0.1)


async def test_equivocation_is_rejected():
    async with pool_of() as pool:
        nodes = await spawn_nodes(pool, ["a", "b"])
        await open_channel("vec", nodes)
        await nodes["a"].channel_send("vec", "b", "first", 4)
        with pytest.raises(MessageRejectedError, match="already sent 'b' a message for round 4"):
            await nodes["a"].channel_send("vec", "b", "second", 4)
        assert await nodes["b"].channel_recv_round("vec", 4, None, 5) == {"a": "first"}


async def test_open_channel_errors():
    async with pool_of(count=1) as pool:
        nodes = await spawn_nodes(pool, ["a", "b"])
        plain = await pool.spawn(NotAHost)
        with pytest.raises(ConfigurationError, match="member 'p' must be an ActorRef of a ChannelHost"):
            await open_channel("vec", {"a": nodes["a"], "p": plain})
        with pytest.raises(ConfigurationError, match="at least one member"):
            await open_channel("vec", {})
        await open_channel("vec", nodes)
        with pytest.raises(ConfigurationError, match="already open"):
            await open_channel("vec", nodes)
        with pytest.raises(ConfigurationError, match="no channel 'other'"):
            await nodes["a"].channel_recv("other", timeout=0.1)
        with pytest.raises(ConfigurationError, match="round must be an int"):
            await nodes["a"].channel_send("vec", "b", 1, "r1")
