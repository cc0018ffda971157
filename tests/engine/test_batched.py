"""Batched honest nodes equal the per-node path (logreg, MLP, CNN; momentum; every attack), and
nodes a user subclassed fall back to the per-node path."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from byzdask.engine.node import HonestNode, batch_indices
from byzdask.engine.node.batched import BatchedNodes, batch_index_block, batched_nodes
from byzdask.engine.node.training import InProcessParameterServer, InProcessPeerToPeer
from byzdask.engine.parameter_server import ParameterServer
from byzdask.registry import ATTACKS
from byzdask.train import TrainConfig, build_job, parse_topology

pytestmark = pytest.mark.timeout(120)


class PerNode(HonestNode):
    """A user subclass with its own compute_gradient (same maths): keeps the per-node path."""

    def compute_gradient(self, x, y):
        return super().compute_gradient(x, y)


def job(**options):
    config = TrainConfig(honest=4, byzantine=2, cluster="none", **options)
    return config, build_job(config)


def per_node(nodes):
    for node in nodes:
        node.__class__ = PerNode
    return nodes


def assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_hashed_indices_are_distinct_in_range_and_a_pure_function_of_seed_and_step():
    block = batch_index_block([50, 40], 8, [3, 9], [[0, 1, 2], [7, 8, 9]])
    assert block.shape == (2, 3, 8)
    for i, size in enumerate((50, 40)):
        for t in range(3):
            row = block[i, t]
            assert len(set(row.tolist())) == 8 and row.min() >= 0 and row.max() < size
    assert (block[1, 2] == batch_indices(40, 8, seed=9, step=9)).all()
    assert not (block[0, 0] == block[0, 1]).all()
    assert (batch_indices(5, 8, seed=1, step=0) == np.arange(5)).all()  # a small shard gives itself


@pytest.mark.parametrize("model", ["logreg", "mlp", "cnn"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_batched_parameter_server_equals_per_node(model, momentum):
    results = []
    for batched in (True, False):
        config, parts = job(model=model, momentum=momentum, attack="signflip")
        honest = parts["honest"] if batched else per_node(parts["honest"])
        ps = InProcessParameterServer(honest, parts["byzantine"], aggregator=parts["aggregator"], lr=0.5)
        ps.run(4)
        assert (batched_nodes(honest) is not None) == batched
        results.append(ps.params)
    assert_close(results[0], results[1])


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_attack_batched_equals_per_node(attack):
    results = []
    for batched in (True, False):
        config, parts = job(attack=attack, momentum=0.9)
        honest = parts["honest"] if batched else per_node(parts["honest"])
        ps = ParameterServer(honest, parts["byzantine"], parts["aggregator"], lr=0.5)
        for _ in range(3):
            asyncio.run(ps.round())
        results.append((ps.params, [n.momentum_buffer for n in honest], [n.step for n in parts["byzantine"]]))
    assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        assert_close(a, b)
    assert results[0][2] == results[1][2]


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_batched_peer_to_peer_equals_per_node(model):
    results = []
    for batched in (True, False):
        config, parts = job(model=model, momentum=0.9, attack="little", mode="p2p")
        honest = parts["honest"] if batched else per_node(parts["honest"])
        top = parse_topology("ring:2", 6, [4, 5])
        p2p = InProcessPeerToPeer(honest, parts["byzantine"], top, aggregator=parts["aggregator"], lr=0.5,
                                  weight_decay=1e-3, test=parts["split"].test)
        history = p2p.run(3, eval_every=3)
        results.append((torch.stack(p2p.honest_params()), history, [n.params() for n in honest]))
    assert_close(results[0][0], results[1][0])
    assert_close(torch.stack(results[0][2]), results[1][0])  # the node models hold the batched rows
    assert results[0][1] == [pytest.approx(r, rel=1e-5, abs=1e-9) for r in results[1][1]]


def test_subclassed_or_mixed_nodes_fall_back():
    _, parts = job()
    nodes = parts["honest"]
    assert isinstance(batched_nodes(nodes), BatchedNodes)
    assert batched_nodes(per_node(list(nodes[:1])) + nodes[1:]) is None
    _, other = job(model="mlp")
    assert batched_nodes(nodes[1:] + other["honest"][:1]) is None  # another architecture
