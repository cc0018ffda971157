"""The scheduling layer: graphs of operators, their lowering to Dask, and the pool they run on."""

from byzdask.engine.graph.graph import (
    ComputationGraph,
    GraphInput,
    GraphNode,
    MessageSource,
    graph_input,
)
from byzdask.engine.graph.operator import OpContext, Operator
from byzdask.engine.graph.ops import (
    CallableOp,
    RemoteCallableOp,
    make_chain_graph,
    make_single_operator_graph,
)
from byzdask.engine.graph.scheduler import MessageAwareNodeScheduler, NodeScheduler
from byzdask.engine.graph.subtask import SubTask

__all__ = [
    "ActorPool",
    "ActorPoolConfig",
    "CallableOp",
    "ComputationGraph",
    "GraphInput",
    "GraphNode",
    "MessageAwareNodeScheduler",
    "MessageSource",
    "NodeScheduler",
    "OpContext",
    "Operator",
    "RemoteCallableOp",
    "SubTask",
    "graph_input",
    "make_chain_graph",
    "make_single_operator_graph",
]


def __getattr__(name: str):
    # The pool imports distributed; load it only when asked for.
    if name in ("ActorPool", "ActorPoolConfig"):
        from byzdask.engine.graph import pool

        return getattr(pool, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
