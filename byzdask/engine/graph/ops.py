"""Ready-made operators and graph builders: callables as operators, one-node graphs, chains."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from byzdask.engine.graph.graph import ComputationGraph, GraphNode, graph_input
from byzdask.engine.graph.operator import OpContext, Operator
from byzdask.errors import ConfigurationError

__all__ = ["CallableOp", "RemoteCallableOp", "make_chain_graph", "make_single_operator_graph"]


class CallableOp(Operator):
    """Run a plain Python callable as a graph node.

    Parameters
    ----------
    fn : callable
        Called as ``fn(**kwargs)``. With a pool it runs on a worker, so it must be picklable
        (cloudpickle: lambdas and closures are fine).
    input_mapping : mapping, optional
        ``fn``'s parameter -> the node input key it reads. None passes every node input under its
        own key.
    name : str, optional
        A readable name (task keys, errors).

    Examples
    --------
    >>> op = CallableOp(lambda a, b: a + b, input_mapping={"a": "x", "b": "y"})
    >>> op.compute({"x": 1, "y": 2})
    3
    """

    name = "callable"

    def __init__(self, fn: Callable[..., Any], *, input_mapping: Mapping[str, str] | None = None,
                 name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigurationError(f"fn must be callable, got {type(fn).__name__}")
        if input_mapping is not None:
            if not isinstance(input_mapping, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in input_mapping.items()
            ):
                raise ConfigurationError(f"input_mapping must map parameter names to input keys, got {input_mapping!r}")
            input_mapping = dict(input_mapping)
        self.fn = fn
        self.input_mapping = input_mapping
        if name is not None:
            self.name = name
        self.input_keys = tuple(dict.fromkeys(input_mapping.values())) if input_mapping else ()
        self._repr_params = {"fn": getattr(fn, "__name__", fn)}

    def _kwargs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{type(self).__name__} expects a mapping of inputs, got {type(inputs).__name__}")
        if self.input_mapping is None:
            return dict(inputs)
        kwargs = {}
        for param, source in self.input_mapping.items():
            if source not in inputs:
                raise KeyError(
                    f"{type(self).__name__} needs input {source!r} for parameter {param!r}; got keys "
                    f"{sorted(map(str, inputs))}"
                )
            kwargs[param] = inputs[source]
        return kwargs

    def compute(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        return self.fn(**self._kwargs(inputs))


class RemoteCallableOp(CallableOp):
    """A :class:`CallableOp` pinned to a kind of worker.

    With a pool, its task carries a placement: ``affinity="cpu"``/``"gpu"`` asks for a worker
    offering that resource, any other string for the worker of that name; the scheduler fails
    at once with :class:`~byzdask.errors.CapabilityError` when no worker qualifies. The task is
    rerun up to ``max_retries`` times after a worker failure. Without a pool it runs in-process.

    Examples
    --------
    >>> op = RemoteCallableOp(lambda a: max(a), input_mapping={"a": "x"}, affinity="cpu")
    >>> op.affinity, op.compute({"x": [1, 5]})
    ('cpu', 5)
    """

    name = "remote_callable"

    def __init__(self, fn: Callable[..., Any], *, input_mapping: Mapping[str, str] | None = None,
                 affinity: str | None = None, max_retries: int = 0, name: str | None = None) -> None:
        super().__init__(fn, input_mapping=input_mapping, name=name)
        if affinity is not None and (not isinstance(affinity, str) or not affinity):
            raise ConfigurationError(f"affinity must be 'cpu', 'gpu', a worker name or None, got {affinity!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        self.affinity = affinity
        self.max_retries = max_retries
        self._repr_params = {**self._repr_params, "affinity": affinity}


def make_single_operator_graph(*, node_name: str, operator: Operator,
                               input_keys: Sequence[str]) -> ComputationGraph:
    """A one-node graph whose inputs are graph inputs named like the operator's input keys.

    Examples
    --------
    >>> from byzdask.aggregators.average import Average
    >>> g = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    >>> g.outputs, sorted(g.required_inputs)
    (['agg'], ['gradients'])
    """
    if isinstance(input_keys, str):
        input_keys = (input_keys,)
    node = GraphNode(name=node_name, op=operator, inputs={key: graph_input(key) for key in input_keys})
    return ComputationGraph([node], outputs=[node_name])


def make_chain_graph(operators: Sequence[Operator], *, input_name: str = "gradients",
                     names: Sequence[str] | None = None) -> ComputationGraph:
    """Chain operators (pre-aggregators, then an aggregator) into a graph without naming nodes.

    The first operator reads graph input ``input_name``; each next one reads the previous
    node's output under its first input key. Nodes are named after the operators' ``name``
    (``"-2"``, ``"-3"``... added on repeats) unless ``names`` is given; the output is the last node.

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.aggregators.average import Average
    >>> g = make_chain_graph([CallableOp(lambda vectors: vectors[:2], name="first2"), Average()])
    >>> g.order, g.outputs
    (('first2', 'average'), ['average'])
    """
    operators = list(operators)
    if not operators:
        raise ConfigurationError("make_chain_graph needs at least one operator, got none")
    if names is None:
        names, seen = [], {}
        for op in operators:
            base = str(getattr(op, "name", type(op).__name__))
            seen[base] = seen.get(base, 0) + 1
            names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    names = list(names)
    if len(names) != len(operators):
        raise ConfigurationError(f"names must give one name per operator ({len(operators)}), got {len(names)}")
    nodes, previous = [], None
    for op, name in zip(operators, names):
        keys = tuple(getattr(op, "input_keys", ()) or ())
        if keys:
            key = keys[0]
        elif isinstance(op, CallableOp):
            key = _first_parameter(op.fn) or input_name
        else:
            raise ConfigurationError(f"{op!r} declares no input_keys; cannot wire it into a chain")
        source = graph_input(input_name) if previous is None else previous
        nodes.append(GraphNode(name=name, op=op, inputs={key: source}))
        previous = name
    return ComputationGraph(nodes, outputs=[previous])


def _first_parameter(fn: Callable[..., Any]) -> str | None:
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None
    return params[0] if params else None
