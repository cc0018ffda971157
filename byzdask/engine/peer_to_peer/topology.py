"""Communication graphs of peer-to-peer training, on networkx.

A :class:`Topology` is a directed graph over node ids ``0..n-1``: an edge ``(u, v)`` means
``u`` sends its vector to ``v``. Undirected generators add both directions. Which ids are
Byzantine is part of the topology, so that an orchestrator can map ids to nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import networkx as nx
import numpy as np

from byzdask.errors import ConfigurationError, InputError

__all__ = ["Topology"]


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _seeds(seed: int, count: int) -> list[int]:
    """A reproducible sequence of seeds derived from ``seed``: retry ``k`` uses the k-th."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(count)]


class Topology:
    """A directed communication graph over nodes ``0..n-1``, with the Byzantine ids marked.

    Build one with a generator (:meth:`complete`, :meth:`ring`, :meth:`k_regular`,
    :meth:`erdos_renyi`, :meth:`torus`) or from your own graph (:meth:`from_edges`,
    :meth:`from_networkx`).

    Parameters
    ----------
    graph : networkx.DiGraph
        Nodes exactly ``0..n-1``, no self-loops (a node always uses its own vector).
    byzantine : iterable of int
        Ids of the Byzantine nodes (default none).

    Raises
    ------
    ConfigurationError
        For node labels other than ``0..n-1``, self-loops or unknown Byzantine ids.

    Examples
    --------
    >>> t = Topology.ring(5, byzantine=[4])
    >>> t.in_neighbours(0), t.out_neighbours(0), t.honest_ids
    ([1, 4], [1, 4], [0, 1, 2, 3])
    """

    def __init__(self, graph: nx.DiGraph, *, byzantine: Iterable[int] = ()) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise ConfigurationError(f"graph must be a networkx.DiGraph, got {type(graph).__name__}")
        n = graph.number_of_nodes()
        if n < 1:
            raise ConfigurationError("a topology needs at least one node, got an empty graph")
        if set(graph.nodes) != set(range(n)):
            raise ConfigurationError(
                f"node labels must be 0..{n - 1}, got {sorted(graph.nodes, key=str)[:5]}...; relabel with "
                f"networkx.convert_node_labels_to_integers"
            )
        loops = list(nx.selfloop_edges(graph))
        if loops:
            raise ConfigurationError(f"self-loops are not allowed (a node always uses its own vector), got {loops[:3]}")
        byz = sorted({int(b) for b in byzantine})
        bad = [b for b in byz if not 0 <= b < n]
        if bad:
            raise ConfigurationError(f"Byzantine ids must lie in [0, {n}), got {bad}")
        self.graph = graph
        self.byzantine_ids: list[int] = byz
        self._byz = frozenset(byz)

    # -- generators ---------------------------------------------------------------------
    @classmethod
    def _undirected(cls, g: nx.Graph, byzantine: Iterable[int]) -> Topology:
        return cls(nx.DiGraph(g.to_directed()), byzantine=byzantine)

    @classmethod
    def complete(cls, n: int, *, byzantine: Iterable[int] = ()) -> Topology:
        """Every node sends to every other (in-degree n - 1).

        Examples
        --------
        >>> Topology.complete(4).in_degree(0)
        3
        """
        n = _count(n, "n", 1)
        return cls._undirected(nx.complete_graph(n), byzantine)

    @classmethod
    def ring(cls, n: int, k: int = 1, *, byzantine: Iterable[int] = ()) -> Topology:
        """A ring where each node exchanges with its ``k`` nearest nodes on each side (degree 2k).

        Needs ``n >= 2k + 1``.

        Examples
        --------
        >>> Topology.ring(7, k=2).in_neighbours(0)
        [1, 2, 5, 6]
        """
        n, k = _count(n, "n", 3), _count(k, "k", 1)
        if 2 * k + 1 > n:
            raise ConfigurationError(f"ring(n, k) needs n >= 2k + 1; got n={n}, k={k} (use complete(n) instead)")
        g = nx.circulant_graph(n, list(range(1, k + 1)))
        return cls._undirected(g, byzantine)

    @classmethod
    def k_regular(cls, n: int, k: int, *, seed: int = 0, byzantine: Iterable[int] = (),
                  max_tries: int = 100) -> Topology:
        """A connected random ``k``-regular undirected graph (networkx's ``random_regular_graph``).

        Needs ``0 < k < n`` and ``n * k`` even. Disconnected draws are retried with seeds
        derived from ``seed``; after ``max_tries`` a :class:`ConfigurationError` is raised.

        Examples
        --------
        >>> t = Topology.k_regular(8, 3, seed=0)
        >>> sorted({t.in_degree(i) for i in range(8)}), t.is_connected()
        ([3], True)
        """
        n, k = _count(n, "n", 2), _count(k, "k", 1)
        if k >= n or (n * k) % 2:
            raise ConfigurationError(f"k_regular(n, k) needs k < n and n*k even; got n={n}, k={k}")
        for s in _seeds(seed, _count(max_tries, "max_tries", 1)):
            g = nx.random_regular_graph(k, n, seed=s)
            if nx.is_connected(g):
                return cls._undirected(g, byzantine)
        raise ConfigurationError(
            f"no connected {k}-regular graph on {n} nodes in {max_tries} draws from seed {seed}; raise k"
        )

    @classmethod
    def erdos_renyi(cls, n: int, p: float, *, seed: int = 0, byzantine: Iterable[int] = (),
                    max_tries: int = 100) -> Topology:
        """A connected undirected Erdős–Rényi graph G(n, p).

        Disconnected draws are retried with seeds derived from ``seed``; after ``max_tries`` a
        :class:`ConfigurationError` says to raise ``p`` (G(n, p) is connected with high
        probability when ``p > ln(n) / n``).

        Examples
        --------
        >>> Topology.erdos_renyi(10, 0.5, seed=1).is_connected()
        True
        """
        n = _count(n, "n", 1)
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigurationError(f"p must lie in [0, 1], got {p!r}")
        for s in _seeds(seed, _count(max_tries, "max_tries", 1)):
            g = nx.gnp_random_graph(n, float(p), seed=s)
            if nx.is_connected(g):
                return cls._undirected(g, byzantine)
        raise ConfigurationError(
            f"no connected G(n={n}, p={p}) in {max_tries} draws from seed {seed}; raise p above "
            f"ln(n)/n = {np.log(max(n, 2)) / n:.3f}"
        )

    @classmethod
    def torus(cls, rows: int, cols: int, *, byzantine: Iterable[int] = ()) -> Topology:
        """A 2-D periodic grid: node ``r * cols + c`` exchanges with its 4 grid neighbours.

        Needs ``rows, cols >= 3`` (so that every node has 4 distinct neighbours).

        Examples
        --------
        >>> Topology.torus(3, 4).in_neighbours(0)
        [1, 3, 4, 8]
        """
        rows, cols = _count(rows, "rows", 3), _count(cols, "cols", 3)
        g = nx.grid_2d_graph(rows, cols, periodic=True)
        g = nx.relabel_nodes(g, {(r, c): r * cols + c for r, c in g.nodes})
        return cls._undirected(g, byzantine)

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[int, int]], n: int, *, directed: bool = True,
                   byzantine: Iterable[int] = ()) -> Topology:
        """A topology from ``(sender, receiver)`` pairs over ids ``0..n-1``.

        With ``directed=False`` every edge goes both ways.

        Raises
        ------
        ConfigurationError
            For ids outside ``0..n-1`` or self-loops.

        Examples
        --------
        >>> t = Topology.from_edges([(0, 1), (1, 2), (2, 0)], 3)
        >>> t.in_neighbours(0), t.out_neighbours(0)
        ([2], [1])
        """
        n = _count(n, "n", 1)
        g = nx.DiGraph()
        g.add_nodes_from(range(n))
        for edge in edges:
            if len(edge) != 2:
                raise ConfigurationError(f"an edge is a (sender, receiver) pair, got {edge!r}")
            u, v = (int(e) for e in edge)
            if not (0 <= u < n and 0 <= v < n):
                raise ConfigurationError(f"edge {edge!r} names a node outside 0..{n - 1}")
            g.add_edge(u, v)
            if not directed:
                g.add_edge(v, u)
        return cls(g, byzantine=byzantine)

    @classmethod
    def from_networkx(cls, graph: nx.Graph, *, byzantine: Iterable[int] = ()) -> Topology:
        """A topology from a networkx graph with nodes ``0..n-1`` (undirected edges go both ways).

        Examples
        --------
        >>> Topology.from_networkx(nx.path_graph(3)).in_neighbours(1)
        [0, 2]
        """
        if not isinstance(graph, nx.Graph):
            raise ConfigurationError(f"graph must be a networkx graph, got {type(graph).__name__}")
        if graph.is_multigraph():
            graph = nx.DiGraph(graph) if graph.is_directed() else nx.Graph(graph)
        g = nx.DiGraph(graph) if graph.is_directed() else nx.DiGraph(graph.to_directed())
        return cls(g, byzantine=byzantine)

    def with_byzantine(self, byzantine: Iterable[int]) -> Topology:
        """The same graph with another set of Byzantine ids.

        Examples
        --------
        >>> Topology.complete(4).with_byzantine([0, 3]).honest_ids
        [1, 2]
        """
        return type(self)(self.graph, byzantine=byzantine)

    # -- queries ------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of nodes."""
        return self.graph.number_of_nodes()

    @property
    def honest_ids(self) -> list[int]:
        """Ids of the honest nodes, in increasing order."""
        return [i for i in range(self.n) if i not in self._byz]

    def is_byzantine(self, i: int) -> bool:
        """Whether node ``i`` is Byzantine."""
        return self._check(i) in self._byz

    def _check(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n:
            raise InputError(f"node id must be an integer in [0, {self.n}), got {i!r}")
        return int(i)

    def in_neighbours(self, i: int) -> list[int]:
        """Ids of the nodes that send to ``i``, in increasing order."""
        return sorted(self.graph.predecessors(self._check(i)))

    def out_neighbours(self, i: int) -> list[int]:
        """Ids of the nodes ``i`` sends to, in increasing order."""
        return sorted(self.graph.successors(self._check(i)))

    def in_degree(self, i: int) -> int:
        """Number of in-neighbours of ``i``."""
        return int(self.graph.in_degree(self._check(i)))

    def byzantine_in_neighbours(self, i: int) -> list[int]:
        """Ids of the Byzantine nodes that send to ``i``."""
        return [j for j in self.in_neighbours(i) if j in self._byz]

    def is_connected(self) -> bool:
        """Whether every node can reach every other (strong connectivity)."""
        return nx.is_strongly_connected(self.graph)

    def edges(self) -> list[tuple[int, int]]:
        """All ``(sender, receiver)`` pairs, sorted."""
        return sorted((int(u), int(v)) for u, v in self.graph.edges)

    def __repr__(self) -> str:
        return f"Topology(n={self.n}, edges={self.graph.number_of_edges()}, byzantine={self.byzantine_ids})"
