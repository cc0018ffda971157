"""Peer-to-peer training on Dask actors: equal to the in-process reference, learns, robust,
message timeouts, asynchronous mode, lost workers. Every test starts and closes its own pool."""

from __future__ import annotations

import asyncio
import sys
import time

import cloudpickle
import pytest
import torch

from byzdask.aggregators import Average
from byzdask.aggregators.coordinate_wise.trimmed_mean import CoordinateWiseTrimmedMean
from byzdask.attacks.base import Attack
from byzdask.attacks.gaussian import GaussianAttack
from byzdask.attacks.little import LittleAttack
from byzdask.data import load_digits, partition_dataset
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.node import ByzantineNode
from byzdask.engine.node.training import InProcessPeerToPeer, make_honest_nodes
from byzdask.engine.peer_to_peer import PeerToPeer, Topology
from byzdask.errors import (
    ActorLostError,
    ConfigurationError,
    InputError,
    MessageTimeoutError,
)
from byzdask.models import build_model, get_flat_params
from byzdask.pre_aggregators.nnm import NearestNeighborMixing

pytestmark = pytest.mark.timeout(60)

# Worker processes cannot import this test module: ship its classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def split():
    return load_digits(seed=0)


def honest(split, n, *, momentum=0.9, seed=0, spread=False):
    model = build_model("logreg", input_shape=(64,), num_classes=10, seed=seed)
    nodes = make_honest_nodes(partition_dataset(split.train, n, seed=seed), model, batch_size=32,
                              momentum=momentum, seed=seed)
    if spread:  # start apart, so that consensus has something to do
        for i, node in enumerate(nodes):
            node.set_params(get_flat_params(build_model("logreg", input_shape=(64,), num_classes=10, seed=100 + i)))
    return nodes


def gaussian(ids):
    return [ByzantineNode(GaussianAttack(sigma=50.0, seed=k), node_id=i) for k, i in enumerate(ids)]


def thread_pool(count=2):
    return ActorPool(ActorPoolConfig("thread", count=count))


def assert_same_params(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-6, rtol=1e-5)


class Broken(Attack):
    """An attack whose node fails in round 2 (to see which error a round reports)."""

    def __init__(self):
        self.calls = 0

    def apply(self, **_):
        self.calls += 1
        if self.calls == 2:
            raise InputError("broken attack")
        return torch.zeros(650)


class Slow(Attack):
    """Zeros, after a pause (a straggler)."""

    def apply(self, **_):
        time.sleep(0.3)
        return torch.zeros(650)


# -- equality with the reference ---------------------------------------------------------------
async def test_dask_rounds_equal_the_reference(split):
    top = Topology.complete(7, byzantine=[5, 6])

    def build():
        return {"honest_nodes": honest(split, 5), "byzantine_nodes": gaussian([5, 6]), "topology": top,
                "aggregator": CoordinateWiseTrimmedMean(f=2)}

    ref = InProcessPeerToPeer(**build(), pre_aggregators=[NearestNeighborMixing(f=2)], lr=0.5)
    ref_infos = [ref.round() for _ in range(4)]
    async with thread_pool() as pool:
        p2p = PeerToPeer(**build(), pre_aggregator=NearestNeighborMixing(f=2), lr=0.5, actor_pool=pool)
        infos = [await p2p.round() for _ in range(4)]
        assert_same_params(await p2p.honest_params(), ref.honest_params())
        assert [i["round"] for i in infos] == [1, 2, 3, 4]
        for got, want in zip(infos, ref_infos):
            assert got["consensus_distance"] == pytest.approx(want["consensus_distance"], rel=1e-4, abs=1e-9)
            assert got["mixing"] == pytest.approx(want["mixing"], rel=1e-4)
        # the actors trained copies: the given nodes are untouched, fetch_nodes reads them back
        trained = await p2p.fetch_nodes()
        assert [n.step for n in trained] == [4] * 5 and p2p.honest_nodes[0].step == 0
        await p2p.close()


async def test_omniscient_byzantine_on_a_ring_equal_the_reference(split):
    # Little reads the honest vectors: omniscient ones see all 6, others only their 2 neighbours
    top = Topology.ring(8, byzantine=[3, 7])
    for omniscient in (False, True):
        def build(omniscient=omniscient):
            byz = [ByzantineNode(LittleAttack(f=2), node_id=i) for i in (3, 7)]
            return {"honest_nodes": honest(split, 6), "byzantine_nodes": byz, "topology": top,
                    "aggregator": CoordinateWiseTrimmedMean(f=1), "omniscient": omniscient, "lr": 0.5}

        ref = InProcessPeerToPeer(**build())
        for _ in range(3):
            ref.round()
        async with thread_pool() as pool:
            p2p = PeerToPeer(**build(), actor_pool=pool)
            for _ in range(3):
                await p2p.round()
            assert_same_params(await p2p.honest_params(), ref.honest_params())


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_worker_processes_over_tcp_equal_the_reference(split):
    top = Topology.ring(5, byzantine=[4])

    def build():
        return {"honest_nodes": honest(split, 4), "byzantine_nodes": gaussian([4]), "topology": top,
                "aggregator": CoordinateWiseTrimmedMean(f=1), "lr": 0.5}

    ref = InProcessPeerToPeer(**build())
    for _ in range(3):
        ref.round()
    config = ActorPoolConfig("process", count=2, protocol="tcp", memory_limit="1GiB")
    async with ActorPool(config, start_timeout=90) as pool:
        p2p = PeerToPeer(**build(), actor_pool=pool, round_timeout=30)
        for _ in range(3):
            await p2p.round()
        assert {ref.worker for ref in p2p.actors.values()} == set(pool.workers.values())
        assert_same_params(await p2p.honest_params(), ref.honest_params())
        await p2p.close()
        with pytest.raises(ConfigurationError, match="closed"):
            await p2p.round()


# -- learning ------------------------------------------------------------------------------------
async def test_learns_without_attack_and_stays_near_it_under_attack(split):
    async with thread_pool() as pool:
        clean = PeerToPeer(honest(split, 10), [], Topology.complete(10), aggregator=CoordinateWiseTrimmedMean(f=3),
                           lr=0.5, actor_pool=pool, test_data=split.test)
        base = (await clean.run(25, eval_every=25, progress=False))[-1]
        assert base["accuracy"] >= 0.9 and base["worst_accuracy"] >= 0.9

        top = Topology.complete(13, byzantine=[10, 11, 12])
        attacked = PeerToPeer(honest(split, 10), gaussian([10, 11, 12]), top, aggregator=CoordinateWiseTrimmedMean(f=3),
                              lr=0.5, actor_pool=pool, test_data=split.test)
        seen = []
        history = await attacked.run(25, eval_every=5, callback=seen.append, progress=False)
        assert [h["round"] for h in history] == [5, 10, 15, 20, 25] and seen == history == attacked.history
        assert history[-1]["worst_accuracy"] >= base["accuracy"] - 0.05

        broken = PeerToPeer(honest(split, 10), gaussian([10, 11, 12]), top, aggregator=Average(), lr=0.5,
                            actor_pool=pool, test_data=split.test)
        assert (await broken.run(3, eval_every=3, progress=False))[-1]["accuracy"] < 0.3


async def test_aggregation_moves_the_models_and_consensus_shrinks(split):
    async with thread_pool() as pool:
        p2p = PeerToPeer(honest(split, 8, momentum=0.0, spread=True), [], Topology.ring(8, k=2), aggregator=Average(),
                         lr=0.5, actor_pool=pool)
        infos = [await p2p.round() for _ in range(12)]
    assert all(i["mixing"] > 1e-3 for i in infos)
    assert all(i["consensus_distance"] < i["consensus_before"] for i in infos)
    assert infos[-1]["consensus_distance"] < 0.05 * infos[0]["consensus_before"]


@pytest.mark.parametrize("topology", [Topology.ring(6, byzantine=[5]), Topology.torus(3, 3, byzantine=[4])],
                         ids=["ring", "torus"])
async def test_sparse_topologies_run(split, topology):
    h = len(topology.honest_ids)
    async with thread_pool() as pool:
        p2p = PeerToPeer(honest(split, h), gaussian(topology.byzantine_ids), topology,
                         aggregator=CoordinateWiseTrimmedMean(f=1), lr=0.5, actor_pool=pool, test_data=split.test)
        history = p2p.history
        await p2p.run(6, eval_every=3, progress=False)
    assert [r["round"] for r in history] == [3, 6]
    assert history[-1]["accuracy"] > 0.6 and history[-1]["consensus_distance"] < 0.5


async def test_same_seed_same_history(split):
    async def once():
        top = Topology.ring(7, k=2, byzantine=[6])
        async with thread_pool(3) as pool:
            p2p = PeerToPeer(honest(split, 6), gaussian([6]), top, aggregator=CoordinateWiseTrimmedMean(f=1), lr=0.5,
                             actor_pool=pool, test_data=split.test)
            return await p2p.run(6, eval_every=2, progress=False)

    first = await once()
    assert first == await once()


# -- asynchronous mode ---------------------------------------------------------------------------
async def test_async_mode_learns(split):
    top = Topology.ring(9, k=2, byzantine=[8])
    async with thread_pool() as pool:
        p2p = PeerToPeer(honest(split, 8), gaussian([8]), top, aggregator=CoordinateWiseTrimmedMean(f=1), lr=0.5,
                         actor_pool=pool, mode="async", staleness=1, test_data=split.test, round_timeout=10)
        history = await p2p.run(20, eval_every=10, progress=False)
        info = await p2p.round()
    assert [h["round"] for h in history] == [10, 20] and info["round"] == 21 and info["late"] == 0
    assert history[-1]["accuracy"] >= 0.88 and history[-1]["consensus_distance"] < 0.5


async def test_async_nodes_do_not_wait_for_a_straggler(split):
    top = Topology.complete(4, byzantine=[3])
    async with thread_pool() as pool:
        p2p = PeerToPeer(honest(split, 3), [ByzantineNode(Slow(), node_id=3)], top, aggregator=Average(), lr=0.5,
                         actor_pool=pool, mode="async", staleness=0, round_timeout=0.05)
        infos = [await p2p.round() for _ in range(3)]
    # each honest node gives up on the straggler's vector of the round after 0.05 s
    assert [i["round"] for i in infos] == [1, 2, 3] and all(i["late"] == 3 for i in infos)


# -- failures ------------------------------------------------------------------------------------
async def test_missing_in_neighbour_times_out_naming_node_senders_and_round(split):
    async with thread_pool() as pool:
        p2p = PeerToPeer(honest(split, 4), [], Topology.ring(4), aggregator=Average(), lr=0.5, actor_pool=pool)
        await p2p.round()
        # node 0 alone runs round 2: its in-neighbours 1 and 3 never send
        with pytest.raises(MessageTimeoutError, match=r"round 2: node 0 received no vector from in-neighbour\(s\) "
                                                      r"\[1, 3\] within 0.3 s"):
            await p2p.actors[0].sync_round(1, 0.5, 0.0, 0.3)


async def test_a_failing_node_is_reported_before_the_timeouts_it_causes(split):
    top = Topology.complete(4, byzantine=[3])
    async with thread_pool() as pool:
        p2p = PeerToPeer(honest(split, 3), [ByzantineNode(Broken(), node_id=3)], top, aggregator=Average(), lr=0.5,
                         actor_pool=pool, round_timeout=0.5)
        await p2p.round()
        with pytest.raises(InputError, match="broken attack"):
            await p2p.round()


async def _close_worker(pool, name):
    await pool._cluster.workers[name].close()  # an in-process worker going away


async def test_lost_worker_raises_actor_lost_error_naming_the_nodes(split):
    async with thread_pool() as pool:
        p2p = PeerToPeer(honest(split, 4), [], Topology.ring(4), aggregator=Average(), lr=0.5, actor_pool=pool,
                         round_timeout=2)
        await p2p.round()
        await _close_worker(pool, "thread-1")  # holds nodes 1 and 3
        with pytest.raises(ActorLostError, match=r"round 2: the worker\(s\) holding node\(s\) \[1, 3\] were lost"):
            await p2p.round()


async def test_lost_nodes_resume_from_a_checkpoint(split):
    top = Topology.ring(5, byzantine=[4])

    def build():
        return {"honest_nodes": honest(split, 4), "byzantine_nodes": gaussian([4]), "topology": top,
                "aggregator": CoordinateWiseTrimmedMean(f=1), "lr": 0.5}

    ref = InProcessPeerToPeer(**build())
    for _ in range(5):
        ref.round()
    async with thread_pool(3) as pool:
        p2p = PeerToPeer(**build(), actor_pool=pool, round_timeout=2, checkpoint_every=2)
        for _ in range(3):
            await p2p.round()
        gone = pool.worker_named("thread-2")
        assert p2p.actors[2].worker == gone
        await _close_worker(pool, "thread-2")  # holds node 2
        await p2p.round()
        assert p2p.recoveries == 1 and p2p.round_index == 4
        assert p2p.actors[2].worker != gone and p2p.actors[2].worker in pool.workers.values()
        await p2p.round()
        assert_same_params(await p2p.honest_params(), ref.honest_params())


# -- in-process path and configuration ----------------------------------------------------------
def test_without_a_pool_the_reference_runs(split):
    top = Topology.ring(5, byzantine=[4])
    p2p = PeerToPeer(honest(split, 4), gaussian([4]), top, aggregator=CoordinateWiseTrimmedMean(f=1), lr=0.5,
                     test_data=split.test)
    ref = InProcessPeerToPeer(honest(split, 4), gaussian([4]), top, aggregator=CoordinateWiseTrimmedMean(f=1),
                              lr=0.5, test=split.test)
    history = p2p.run_sync(4, eval_every=2, progress=False)
    assert history == ref.run(4, eval_every=2) == p2p.history
    assert p2p.round_index == 4 and "in-process" in repr(p2p)
    assert_same_params(asyncio.run(p2p.honest_params()), ref.honest_params())


def test_run_sync_on_a_pool_started_from_synchronous_code(split):
    pool = thread_pool()
    with pool.sync():
        p2p = PeerToPeer(honest(split, 4), [], Topology.complete(4), aggregator=Average(), lr=0.5, actor_pool=pool,
                         test_data=split.test)
        history = p2p.run_sync(4, eval_every=2, progress=False)
    ref = InProcessPeerToPeer(honest(split, 4), [], Topology.complete(4), aggregator=Average(), lr=0.5,
                              test=split.test)
    # the reference computes its nodes in one batched call: equal to float32 rounding
    assert history == [pytest.approx(record, rel=1e-5, abs=1e-9) for record in ref.run(4, eval_every=2)]


def test_configuration_errors(split):
    nodes, top = honest(split, 4), Topology.ring(4)
    kwargs = {"aggregator": Average()}
    with pytest.raises(ConfigurationError, match="mode must be one of"):
        PeerToPeer(nodes, [], top, mode="gossip", **kwargs)
    with pytest.raises(ConfigurationError, match="mode='async' needs an actor_pool"):
        PeerToPeer(nodes, [], top, mode="async", **kwargs)
    with pytest.raises(ConfigurationError, match="staleness must be an integer >= 0, got -1"):
        PeerToPeer(nodes, [], top, staleness=-1, **kwargs)
    with pytest.raises(ConfigurationError, match="checkpoint_every"):
        PeerToPeer(nodes, [], top, checkpoint_every=0, **kwargs)
    with pytest.raises(ConfigurationError, match="3 honest and 1 Byzantine"):
        PeerToPeer(nodes, [], top.with_byzantine([3]), **kwargs)
    with pytest.raises(ConfigurationError, match="Topology"):
        PeerToPeer(nodes, [], "ring", **kwargs)
    with pytest.raises(ConfigurationError, match="pre_aggregator"):
        PeerToPeer(nodes, [], top, pre_aggregator="nnm", **kwargs)
    with pytest.raises(ConfigurationError, match="lacks"):
        PeerToPeer(nodes, [], top, aggregator={0: Average()})
    with pytest.raises(ConfigurationError, match="actor_pool"):
        PeerToPeer(nodes, [], top, actor_pool="local", **kwargs)
    with pytest.raises(ConfigurationError, match="test_data"):
        PeerToPeer(nodes, [], top, test_data=[1, 2], **kwargs)
    p2p = PeerToPeer(nodes, [], top, **kwargs)
    with pytest.raises(ConfigurationError, match="rounds"):
        p2p.run_sync(-1)
    with pytest.raises(ConfigurationError, match="no test split"):
        asyncio.run(p2p.evaluate())
    # per-node rules and chains
    per_node = PeerToPeer(nodes, [], top, aggregator={i: Average() for i in range(4)},
                          pre_aggregator={i: [] for i in range(4)})
    assert asyncio.run(per_node.round())["round"] == 1
