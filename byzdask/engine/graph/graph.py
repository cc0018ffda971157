"""Graph primitives: inputs, nodes and the validated computation graph (a DAG of operators)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from byzdask.engine.graph.operator import Operator
from byzdask.errors import ConfigurationError

__all__ = ["ComputationGraph", "GraphInput", "GraphNode", "MessageSource", "graph_input"]


@dataclass(frozen=True)
class MessageSource:
    """A node input read from a message delivered to a :class:`MessageAwareNodeScheduler`.

    Made by :meth:`GraphInput.from_message`. In one run, every source of one message type reads
    the same message (one message of that type is consumed per run); ``field`` picks an entry
    of a mapping payload.

    Parameters
    ----------
    message_type : str
        The type the message is delivered under.
    field : str, optional
        The key to read from a mapping payload; None reads the whole payload.
    timeout : float, optional
        Seconds to wait for the message; None waits without limit.
    """

    message_type: str
    field: str | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.message_type, str) or not self.message_type:
            raise ConfigurationError(f"message_type must be a non-empty string, got {self.message_type!r}")
        if self.field is not None and not isinstance(self.field, str):
            raise ConfigurationError(f"field must be a string or None, got {self.field!r}")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not self.timeout > 0):
            raise ConfigurationError(f"timeout must be a positive number of seconds or None, got {self.timeout!r}")

    def extract(self, payload: Any) -> Any:
        """The part of ``payload`` this source reads."""
        if self.field is None:
            return payload
        if not isinstance(payload, Mapping):
            raise TypeError(
                f"message {self.message_type!r}: cannot read field {self.field!r} from a payload of type "
                f"{type(payload).__name__}; expected a mapping"
            )
        if self.field not in payload:
            raise KeyError(
                f"message {self.message_type!r} has no field {self.field!r}; it has {sorted(map(str, payload))}"
            )
        return payload[self.field]


@dataclass(frozen=True)
class GraphInput:
    """A value the caller supplies when the graph runs, by name.

    Examples
    --------
    >>> graph_input("gradients")
    GraphInput(name='gradients')
    >>> GraphInput.from_message("grad", field="vector", timeout=5.0)
    MessageSource(message_type='grad', field='vector', timeout=5.0)
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"a graph input name must be a non-empty string, got {self.name!r}")

    @classmethod
    def from_message(cls, message_type: str, field: str | None = None,
                     timeout: float | None = None) -> MessageSource:
        """An input read from a delivered message (see :class:`MessageSource`)."""
        return MessageSource(message_type=message_type, field=field, timeout=timeout)


def graph_input(name: str) -> GraphInput:
    """Shorthand for ``GraphInput(name)``.

    Examples
    --------
    >>> graph_input("x").name
    'x'
    """
    return GraphInput(name)


NodeSource = GraphInput | MessageSource | str


@dataclass(frozen=True)
class GraphNode:
    """One operator and where each of its inputs comes from.

    Parameters
    ----------
    name : str
        Unique within the graph; the key of its output.
    op : Operator
        What the node computes.
    inputs : mapping
        The operator's input key -> a :class:`GraphInput` (supplied by the caller), a
        :class:`MessageSource` (a delivered message), or the name of another node (its output).

    Examples
    --------
    >>> from byzdask.aggregators.average import Average
    >>> GraphNode("agg", Average(), {"gradients": graph_input("gradients")}).name
    'agg'
    """

    name: str
    op: Operator
    inputs: Mapping[str, NodeSource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"a node name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.op, Operator):
            raise ConfigurationError(
                f"node {self.name!r}: op must be an Operator, got {type(self.op).__name__}"
            )
        if not isinstance(self.inputs, Mapping):
            raise ConfigurationError(
                f"node {self.name!r}: inputs must be a mapping of input key -> source, got "
                f"{type(self.inputs).__name__}"
            )
        for key, source in self.inputs.items():
            if not isinstance(key, str):
                raise ConfigurationError(f"node {self.name!r}: input keys must be strings, got {key!r}")
            if not isinstance(source, (GraphInput, MessageSource, str)):
                raise ConfigurationError(
                    f"node {self.name!r}: input {key!r} must be a GraphInput, a message source or a node "
                    f"name, got {type(source).__name__}"
                )
        object.__setattr__(self, "inputs", dict(self.inputs))

    def node_dependencies(self) -> list[str]:
        """Names of the nodes whose outputs this node reads (in input order, without repeats)."""
        return list(dict.fromkeys(s for s in self.inputs.values() if isinstance(s, str)))


class ComputationGraph:
    """A validated DAG of :class:`GraphNode` objects.

    Parameters
    ----------
    nodes : sequence of GraphNode
        At least one; names unique.
    outputs : sequence of str, optional
        The nodes whose outputs a run returns. Defaults to the sinks (nodes no other node reads),
        in topological order.

    Raises
    ------
    ConfigurationError
        An empty graph, a duplicate node name, an input naming an unknown node, a cycle, an
        unknown output.

    Examples
    --------
    >>> from byzdask.aggregators.average import Average
    >>> g = ComputationGraph([GraphNode("agg", Average(), {"gradients": graph_input("gradients")})])
    >>> g.outputs, g.topological_order, sorted(g.required_inputs)
    (['agg'], ['agg'], ['gradients'])
    """

    def __init__(self, nodes: Sequence[GraphNode], *, outputs: Sequence[str] | None = None) -> None:
        nodes = list(nodes)
        if not nodes:
            raise ConfigurationError("a ComputationGraph requires at least one node, got none")
        self._nodes: dict[str, GraphNode] = {}
        for node in nodes:
            if not isinstance(node, GraphNode):
                raise ConfigurationError(f"graph nodes must be GraphNode objects, got {type(node).__name__}")
            if node.name in self._nodes:
                raise ConfigurationError(f"Duplicate graph node name {node.name!r}: node names must be unique")
            self._nodes[node.name] = node
        for node in nodes:
            for key, source in node.inputs.items():
                if isinstance(source, str) and source not in self._nodes:
                    raise ConfigurationError(
                        f"node {node.name!r} reads input {key!r} from unknown node {source!r} (nodes: "
                        f"{', '.join(sorted(self._nodes))}); use graph_input({source!r}) for a value the "
                        "caller supplies"
                    )
        self._dag = nx.DiGraph()
        self._dag.add_nodes_from(self._nodes)
        for node in nodes:
            for dep in node.node_dependencies():
                self._dag.add_edge(dep, node.name)
        try:
            cycle = nx.find_cycle(self._dag)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            raise ConfigurationError(f"the graph contains a cycle: {path}")
        self._order = tuple(nx.lexicographical_topological_sort(self._dag, key=list(self._nodes).index))
        if outputs is None:
            outputs = [n for n in self._order if self._dag.out_degree(n) == 0]
        if isinstance(outputs, str):
            outputs = [outputs]
        outputs = tuple(outputs)
        if not outputs:
            raise ConfigurationError("outputs must name at least one node, got none")
        for out in outputs:
            if out not in self._nodes:
                raise ConfigurationError(
                    f"Unknown output node {out!r}: outputs must be node names ({', '.join(sorted(self._nodes))})"
                )
        self._outputs: tuple[str, ...] = outputs
        self.required_inputs: frozenset[str] = frozenset(
            s.name for n in nodes for s in n.inputs.values() if isinstance(s, GraphInput)
        )
        self.message_sources: tuple[MessageSource, ...] = tuple(dict.fromkeys(
            s for n in self._order for s in self._nodes[n].inputs.values() if isinstance(s, MessageSource)
        ))

    @property
    def nodes(self) -> Mapping[str, GraphNode]:
        """Node name -> node, in the order given."""
        return dict(self._nodes)

    @property
    def order(self) -> tuple[str, ...]:
        """Node names in a topological order (ties broken by the order given)."""
        return self._order

    @property
    def topological_order(self) -> list[str]:
        """:attr:`order` as a new list (ByzPy's name and type)."""
        return list(self._order)

    @property
    def outputs(self) -> list[str]:
        """The nodes whose outputs a run returns, as a new list (as in ByzPy)."""
        return list(self._outputs)

    def nodes_in_order(self) -> Iterator[GraphNode]:
        """The nodes in topological order."""
        for name in self._order:
            yield self._nodes[name]

    def node(self, name: str) -> GraphNode:
        """The node called ``name``."""
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} in the graph; nodes: {', '.join(sorted(self._nodes))}") from None

    def dependents(self, name: str) -> list[str]:
        """Names of the nodes that read ``name``'s output."""
        return sorted(self._dag.successors(name), key=self._order.index)

    def as_networkx(self) -> nx.DiGraph:
        """A copy of the dependency graph (edges from producer to consumer)."""
        return self._dag.copy()

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"ComputationGraph(nodes={list(self._order)}, outputs={list(self.outputs)})"
