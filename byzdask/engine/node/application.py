"""Node applications: a node's work as named computation graphs run by a :class:`NodeScheduler`.

An application holds pipelines (:class:`~byzdask.engine.graph.graph.ComputationGraph` objects
registered by name) and runs them in-process or on an actor pool. The honest application has
the pipelines ``"aggregate"`` (pre-aggregators then the rule, on graph input ``gradients``) and
``"honest_gradient"``; the Byzantine one has ``"attack"``. Pipelines that compute on a node
take the node itself as a graph input, so on a pool they run on a copy of it: the task is pure,
and the application keeps the node's step counter and momentum buffer up to date here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from byzdask.aggregators.base import Aggregator
from byzdask.engine.graph.graph import ComputationGraph, GraphNode, graph_input
from byzdask.engine.graph.ops import CallableOp, make_chain_graph
from byzdask.engine.graph.scheduler import NodeScheduler
from byzdask.engine.node.byzantine import ByzantineNode
from byzdask.engine.node.honest import HonestNode
from byzdask.errors import ConfigurationError
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["ByzantineNodeApplication", "HonestNodeApplication", "NodeApplication"]


def _honest_gradient_task(node: HonestNode, params: Any, step: int, buffer: Any) -> tuple[Any, Any]:
    return node.gradient_at(params, step=step, buffer=buffer)


def _attack_task(node: ByzantineNode, honest_grads: Any, base_grad: Any) -> Any:
    return node.attack_vector(honest_grads=honest_grads, base_grad=base_grad)


class NodeApplication:
    """Named pipelines of one node, run through :class:`~byzdask.engine.graph.scheduler.NodeScheduler`.

    Parameters
    ----------
    name : str
        The node's name (in the metadata every operator sees, with the pipeline's name).
    pool : ActorPool, optional
        Run the pipelines on this pool's cluster; None runs them in-process.
    metadata : mapping, optional
        Extra metadata for every run.

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.aggregators import Average
    >>> from byzdask.engine.graph.ops import make_chain_graph
    >>> app = NodeApplication(name="n0")
    >>> app.register_pipeline("mean", make_chain_graph([Average()]))
    >>> app.run_pipeline_sync("mean", {"gradients": [np.ones(2), np.zeros(2)]})
    {'average': array([0.5, 0.5])}
    """

    def __init__(self, *, name: str, pool: Any = None, metadata: Mapping[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.pool = pool
        self.metadata = dict(metadata or {})
        self._pipelines: dict[str, tuple[ComputationGraph, dict[str, Any]]] = {}

    def register_pipeline(self, name: str, graph: ComputationGraph, *,
                          metadata: Mapping[str, Any] | None = None) -> None:
        """Register ``graph`` under ``name`` (names are unique per application)."""
        if not isinstance(graph, ComputationGraph):
            raise ConfigurationError(f"graph must be a ComputationGraph, got {type(graph).__name__}")
        if name in self._pipelines:
            raise ConfigurationError(f"pipeline {name!r} is already registered on node {self.name!r}")
        self._pipelines[name] = (graph, dict(metadata or {}))

    @property
    def pipelines(self) -> tuple[str, ...]:
        """Names of the registered pipelines."""
        return tuple(self._pipelines)

    def has_pipeline(self, name: str) -> bool:
        """Whether a pipeline is registered under ``name``."""
        return name in self._pipelines

    def _scheduler(self, name: str, metadata: Mapping[str, Any] | None) -> NodeScheduler:
        if name not in self._pipelines:
            raise ConfigurationError(
                f"unknown pipeline {name!r} on node {self.name!r}; registered: {', '.join(self._pipelines) or 'none'}"
            )
        graph, own = self._pipelines[name]
        meta = {"node": self.name, "pipeline": name, **self.metadata, **own, **dict(metadata or {})}
        return NodeScheduler(graph, pool=self.pool, metadata=meta)

    async def run_pipeline(self, name: str, inputs: Mapping[str, Any], *,
                           metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run pipeline ``name`` on ``inputs``; returns ``{output node: value}``."""
        return await self._scheduler(name, metadata).run(inputs)

    def run_pipeline_sync(self, name: str, inputs: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None,
                          timeout: float | None = None) -> dict[str, Any]:
        """:meth:`run_pipeline` from synchronous code."""
        return self._scheduler(name, metadata).run_sync(inputs, timeout=timeout)


class HonestNodeApplication(NodeApplication):
    """An honest node's pipelines: ``"aggregate"`` and ``"honest_gradient"``.

    ``"aggregate"`` runs the pre-aggregators then the rule on graph input ``gradients`` (its
    output node is ``"aggregate"``). ``"honest_gradient"`` runs
    :meth:`HonestNode.gradient_at <byzdask.engine.node.honest.HonestNode.gradient_at>` on graph
    inputs ``node``, ``params``, ``step``, ``buffer``; :meth:`honest_gradient` feeds it the
    node's own step and buffer and records the new ones.

    Parameters
    ----------
    node : HonestNode
    aggregator : Aggregator, optional
        The node's rule (needed for ``"aggregate"``: peer-to-peer nodes aggregate, parameter
        server workers need not).
    pre_aggregators : sequence of PreAggregator
    name, pool, metadata
        As for :class:`NodeApplication`; ``name`` defaults to ``"honest-<node_id>"``.

    Examples
    --------
    >>> import torch
    >>> from byzdask.aggregators import Average
    >>> from byzdask.data import load_digits
    >>> from byzdask.models import build_model
    >>> node = HonestNode(build_model("logreg", input_shape=(64,), num_classes=10),
    ...                   load_digits().train.subset(range(64)), batch_size=8)
    >>> app = HonestNodeApplication(node, aggregator=Average())
    >>> app.pipelines
    ('honest_gradient', 'aggregate')
    >>> app.honest_gradient_sync().shape, node.step
    (torch.Size([650]), 1)
    >>> app.aggregate_sync([torch.ones(2), torch.zeros(2)]).tolist()
    [0.5, 0.5]
    """

    def __init__(self, node: HonestNode, *, aggregator: Aggregator | None = None,
                 pre_aggregators: Sequence[PreAggregator] = (), name: str | None = None, pool: Any = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        if not isinstance(node, HonestNode):
            raise ConfigurationError(f"node must be an HonestNode, got {type(node).__name__}")
        super().__init__(name=name or f"honest-{node.node_id}", pool=pool, metadata=metadata)
        self.node = node
        op = CallableOp(_honest_gradient_task, name="honest_gradient")
        inputs = {key: graph_input(key) for key in ("node", "params", "step", "buffer")}
        self.register_pipeline("honest_gradient", ComputationGraph([GraphNode("honest_gradient", op, inputs)]))
        if aggregator is not None:
            if not isinstance(aggregator, Aggregator):
                raise ConfigurationError(f"aggregator must be an Aggregator, got {type(aggregator).__name__}")
            steps = list(pre_aggregators)
            for pre in steps:
                if not isinstance(pre, PreAggregator):
                    raise ConfigurationError(f"pre_aggregators must be PreAggregator instances, got {type(pre).__name__}")
            names = [f"pre-{i}" for i in range(len(steps))] + ["aggregate"]
            self.register_pipeline("aggregate", make_chain_graph([*steps, aggregator], names=names))

    def _gradient_inputs(self, params: Any) -> dict[str, Any]:
        return {"node": self.node, "params": params, "step": self.node.step, "buffer": self.node.momentum_buffer}

    def _record(self, result: dict[str, Any], params: Any) -> Any:
        vector, buffer = result["honest_gradient"]
        if self.pool is not None and params is not None:
            self.node.set_params(params)  # the task wrote them into a copy of the node
        self.node.step += 1
        self.node.momentum_buffer = buffer
        return vector

    async def honest_gradient(self, params: Any = None) -> Any:
        """The node's next vector at ``params`` (default: its model's); advances its step and momentum."""
        params_in = params
        result = await self.run_pipeline("honest_gradient", self._gradient_inputs(params_in))
        return self._record(result, params_in)

    def honest_gradient_sync(self, params: Any = None, *, timeout: float | None = None) -> Any:
        """:meth:`honest_gradient` from synchronous code."""
        result = self.run_pipeline_sync("honest_gradient", self._gradient_inputs(params), timeout=timeout)
        return self._record(result, params)

    async def aggregate(self, gradients: Any) -> Any:
        """Pre-aggregate and aggregate ``gradients`` (in node order) with the node's rule."""
        return (await self.run_pipeline("aggregate", {"gradients": gradients}))["aggregate"]

    def aggregate_sync(self, gradients: Any, *, timeout: float | None = None) -> Any:
        """:meth:`aggregate` from synchronous code."""
        return self.run_pipeline_sync("aggregate", {"gradients": gradients}, timeout=timeout)["aggregate"]


class ByzantineNodeApplication(NodeApplication):
    """A Byzantine node's pipeline ``"attack"``: the node's attack vector.

    The pipeline runs :meth:`ByzantineNode.attack_vector
    <byzdask.engine.node.byzantine.ByzantineNode.attack_vector>` on graph inputs ``node``,
    ``honest_grads`` and ``base_grad`` (each may be None when the attack does not read it).

    Examples
    --------
    >>> import torch
    >>> from byzdask.attacks.inf import InfAttack
    >>> app = ByzantineNodeApplication(ByzantineNode(InfAttack()))
    >>> app.attack_sync(honest_grads=[torch.zeros(3)]).tolist()
    [inf, inf, inf]
    """

    def __init__(self, node: ByzantineNode, *, name: str | None = None, pool: Any = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        if not isinstance(node, ByzantineNode):
            raise ConfigurationError(f"node must be a ByzantineNode, got {type(node).__name__}")
        super().__init__(name=name or f"byzantine-{node.node_id}", pool=pool, metadata=metadata)
        self.node = node
        op = CallableOp(_attack_task, name="attack")
        inputs = {key: graph_input(key) for key in ("node", "honest_grads", "base_grad")}
        self.register_pipeline("attack", ComputationGraph([GraphNode("attack", op, inputs)]))

    def _inputs(self, honest_grads: Any, base_grad: Any) -> dict[str, Any]:
        return {"node": self.node, "honest_grads": honest_grads, "base_grad": base_grad}

    async def attack(self, *, honest_grads: Any = None, base_grad: Any = None) -> Any:
        """The node's attack vector for this round."""
        return (await self.run_pipeline("attack", self._inputs(honest_grads, base_grad)))["attack"]

    def attack_sync(self, *, honest_grads: Any = None, base_grad: Any = None, timeout: float | None = None) -> Any:
        """:meth:`attack` from synchronous code."""
        return self.run_pipeline_sync("attack", self._inputs(honest_grads, base_grad), timeout=timeout)["attack"]
