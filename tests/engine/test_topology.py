import pickle

import networkx as nx
import pytest

from byzdask.engine.peer_to_peer.topology import Topology
from byzdask.errors import ConfigurationError, InputError


def degrees(t):
    return sorted({t.in_degree(i) for i in range(t.n)}), sorted({len(t.out_neighbours(i)) for i in range(t.n)})


def test_complete():
    t = Topology.complete(5)
    assert degrees(t) == ([4], [4]) and t.is_connected()
    assert t.in_neighbours(2) == [0, 1, 3, 4]
    assert len(t.edges()) == 20
    assert Topology.complete(1).edges() == []


@pytest.mark.parametrize(("n", "k"), [(3, 1), (7, 1), (7, 3), (10, 2)])
def test_ring(n, k):
    t = Topology.ring(n, k)
    assert degrees(t) == ([2 * k], [2 * k]) and t.is_connected()
    expected = sorted({(0 + d) % n for d in range(1, k + 1)} | {(0 - d) % n for d in range(1, k + 1)})
    assert t.in_neighbours(0) == expected


@pytest.mark.parametrize(("n", "k"), [(8, 3), (10, 4), (13, 2), (6, 5)])
def test_k_regular_connected_and_seeded(n, k):
    t = Topology.k_regular(n, k, seed=3)
    assert degrees(t) == ([k], [k]) and t.is_connected()
    assert t.edges() == Topology.k_regular(n, k, seed=3).edges()


def test_erdos_renyi_connected_seeded_and_retries():
    t = Topology.erdos_renyi(20, 0.25, seed=0)
    assert t.is_connected()
    assert t.edges() == Topology.erdos_renyi(20, 0.25, seed=0).edges()
    assert t.edges() != Topology.erdos_renyi(20, 0.25, seed=1).edges()
    # p = 0.15 on 20 nodes is often disconnected: the retry still returns a connected graph
    for s in range(5):
        assert Topology.erdos_renyi(20, 0.15, seed=s).is_connected()
    # symmetric: every edge goes both ways
    assert all((v, u) in set(t.edges()) for u, v in t.edges())
    with pytest.raises(ConfigurationError, match="raise p"):
        Topology.erdos_renyi(10, 0.0, seed=0, max_tries=3)


def test_torus():
    t = Topology.torus(3, 4)
    assert t.n == 12 and degrees(t) == ([4], [4]) and t.is_connected()
    # node r*cols + c: neighbours (r±1, c), (r, c±1) with wrap-around
    assert t.in_neighbours(5) == sorted([1, 9, 4, 6])
    assert t.in_neighbours(11) == sorted([7, 3, 10, 8])


def test_from_edges_and_from_networkx():
    t = Topology.from_edges([(0, 1), (1, 2)], 4)
    assert t.in_neighbours(2) == [1] and t.out_neighbours(2) == [] and t.in_neighbours(3) == []
    assert not t.is_connected()
    u = Topology.from_edges([(0, 1), (1, 2)], 3, directed=False)
    assert u.in_neighbours(1) == [0, 2]
    g = nx.DiGraph([(0, 1), (1, 0), (1, 2), (2, 1)])
    assert Topology.from_networkx(g).edges() == u.edges()
    assert Topology.from_networkx(nx.cycle_graph(4)).edges() == Topology.ring(4).edges()
    assert Topology.from_networkx(nx.MultiGraph([(0, 1), (0, 1)])).edges() == [(0, 1), (1, 0)]


def test_byzantine_ids():
    t = Topology.ring(6, byzantine=[5, 2])
    assert t.byzantine_ids == [2, 5] and t.honest_ids == [0, 1, 3, 4]
    assert t.is_byzantine(2) and not t.is_byzantine(0)
    assert t.byzantine_in_neighbours(1) == [2] and t.byzantine_in_neighbours(0) == [5]
    assert t.with_byzantine([]).honest_ids == list(range(6))
    assert "byzantine=[2, 5]" in repr(t)
    again = pickle.loads(pickle.dumps(t))
    assert again.edges() == t.edges() and again.byzantine_ids == [2, 5]


@pytest.mark.parametrize(("build", "match"), [
    (lambda: Topology.complete(0), "n must be"),
    (lambda: Topology.ring(4, 2), "2k"),
    (lambda: Topology.ring(5, 0), "k must be"),
    (lambda: Topology.k_regular(5, 3), "even"),
    (lambda: Topology.k_regular(4, 4), "k < n"),
    (lambda: Topology.erdos_renyi(5, 1.5), "p must"),
    (lambda: Topology.torus(2, 5), "rows"),
    (lambda: Topology.from_edges([(0, 3)], 3), "outside"),
    (lambda: Topology.from_edges([(1, 1)], 3), "self-loops"),
    (lambda: Topology.from_edges([(0, 1, 2)], 3), "pair"),
    (lambda: Topology.from_networkx(nx.relabel_nodes(nx.path_graph(3), {0: "a"})), "labels"),
    (lambda: Topology.from_networkx("not a graph"), "networkx"),
    (lambda: Topology(nx.Graph()), "DiGraph"),
    (lambda: Topology(nx.DiGraph()), "empty"),
    (lambda: Topology.complete(3, byzantine=[3]), "Byzantine ids"),
])
def test_configuration_errors(build, match):
    with pytest.raises(ConfigurationError, match=match):
        build()


def test_query_errors():
    t = Topology.complete(3)
    for bad in (3, -1, 1.0, "0", True):
        with pytest.raises(InputError, match="node id"):
            t.in_neighbours(bad)
    with pytest.raises(InputError):
        t.out_neighbours(7)
