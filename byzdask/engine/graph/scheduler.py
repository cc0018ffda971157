"""Run computation graphs on Dask: in-process, or on an :class:`~byzdask.engine.graph.pool.ActorPool`.

Without a pool, the lowered graph (see :mod:`byzdask.engine.graph.lowering`) runs in-process
on Dask's threaded scheduler (the synchronous one for one-node graphs), off the event loop.

With a pool (:mod:`byzdask.engine.graph.pool_run`), a node only waits for the nodes it reads,
so independent nodes run at once, and each node takes one of four routes chosen by
:func:`byzdask.engine.graph.planner.choose_route` (``local``, ``task``, ``subtasks``,
``blocks``; logged at debug level with the reason, and shown by :meth:`NodeScheduler.to_dask`).
Inputs that are futures stay on the workers; large inputs held by the caller are scattered once
(``hash=False``) to the worker that reads them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import dask
import dask.local
import dask.threaded
from dask.highlevelgraph import HighLevelGraph

from byzdask.engine.graph.graph import ComputationGraph, GraphInput, MessageSource
from byzdask.engine.graph.lowering import (
    LoweredGraph,
    NodePlan,
    _message_key,
    contains_future,
    lower,
    plan_nodes,
)
from byzdask.engine.graph.message import MessageBox, triggers_as_messages
from byzdask.engine.graph.planner import fanout_min_bytes
from byzdask.errors import ConfigurationError, InputError

__all__ = ["MessageAwareNodeScheduler", "MessageSource", "NodeScheduler", "pool_loop", "run_coroutine_sync"]

logger = logging.getLogger(__name__)


class NodeScheduler:
    """Run a :class:`ComputationGraph` by lowering it to a Dask graph.

    Parameters
    ----------
    graph : ComputationGraph
        The graph to run.
    pool : ActorPool, optional
        Run on this pool's cluster (``pool.client``). None runs in-process.
    metadata : mapping, optional
        Given to every operator in its :class:`~byzdask.engine.graph.operator.OpContext`
        (plus ``pool_size`` with a pool). Must be picklable with a pool.
    fanout_min_bytes : int, optional
        Smallest input (bytes) of a node that fans out into subtasks on a pool; defaults to the
        dask config ``byzdask.scheduler.fanout-min-bytes``.

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.aggregators.average import Average
    >>> from byzdask.engine.graph.ops import make_single_operator_graph
    >>> graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    >>> NodeScheduler(graph).run_sync({"gradients": [np.ones(2), np.zeros(2)]})
    {'agg': array([0.5, 0.5])}
    """

    def __init__(self, graph: ComputationGraph, *, pool: Any = None, metadata: Mapping[str, Any] | None = None,
                 fanout_min_bytes: int | None = None) -> None:
        if not isinstance(graph, ComputationGraph):
            raise ConfigurationError(f"graph must be a ComputationGraph, got {type(graph).__name__}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ConfigurationError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        if fanout_min_bytes is not None and (isinstance(fanout_min_bytes, bool)
                                             or not isinstance(fanout_min_bytes, int) or fanout_min_bytes < 0):
            raise ConfigurationError(f"fanout_min_bytes must be a non-negative integer or None, got {fanout_min_bytes!r}")
        self.graph = graph
        self.pool = pool
        self.metadata = dict(metadata or {})
        self._fanout_min_bytes = fanout_min_bytes

    # -- inputs and planning ------------------------------------------------------------
    @property
    def fanout_min_bytes(self) -> int:
        """The fan-out threshold in force (bytes)."""
        return fanout_min_bytes() if self._fanout_min_bytes is None else self._fanout_min_bytes

    def _check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(inputs, Mapping):
            raise InputError(f"inputs must be a mapping of graph input name -> value, got {type(inputs).__name__}")
        missing = sorted(self.graph.required_inputs - set(inputs))
        if missing:
            raise InputError(
                f"Missing graph inputs: {', '.join(map(repr, missing))}; the graph needs "
                f"{sorted(self.graph.required_inputs)}, got {sorted(map(str, inputs))}"
            )
        values = {name: inputs[name] for name in self.graph.required_inputs}
        if self.pool is None and contains_future(values):
            raise InputError(
                "the inputs hold Dask futures but the scheduler has no pool; pass the pool that owns them "
                "(NodeScheduler(graph, pool=pool))"
            )
        return values

    def _plan(self, values: Mapping[str, Any]) -> dict[str, NodePlan]:
        return plan_nodes(self.graph, values, pool=self.pool, metadata=self.metadata, min_bytes=self.fanout_min_bytes)

    def to_dask(self, inputs: Mapping[str, Any]) -> HighLevelGraph:
        """The lowered Dask graph for ``inputs``, to inspect, ``dask.visualize`` or run with ``dask.get``.

        Keys are ``"<node>-<token>"``; the key of each output is in the returned graph's
        ``byzdask_outputs`` attribute (output name -> key), and the route of each node
        (:class:`~byzdask.engine.graph.planner.Route`: ``local``, ``task``, ``subtasks`` or
        ``blocks``, with its reason) in ``byzdask_routes``, also the ``byzdask_route`` annotation
        of the node's last task. A node that reads futures is routed again when it runs, once
        their sizes and holders are known. Nothing is computed or submitted.

        Examples
        --------
        >>> import numpy as np
        >>> from byzdask.aggregators.average import Average
        >>> from byzdask.engine.graph.ops import make_single_operator_graph
        >>> graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
        >>> dsk = NodeScheduler(graph).to_dask({"gradients": [np.ones(2), np.zeros(2)]})
        >>> dask.get(dsk, dsk.byzdask_outputs["agg"])
        array([0.5, 0.5])
        >>> dsk.byzdask_routes["agg"].name
        'local'

        """
        values = self._values_for_lowering(inputs)
        plans = self._plan(values)
        lowered = lower(self.graph, values, plans, uuid.uuid4().hex[:12])
        for name, keys in lowered.node_keys.items():
            lowered.annotations[keys[-1]] = {**lowered.annotations.get(keys[-1], {}),
                                             "byzdask_route": plans[name].route.name}
        hlg = lowered.to_high_level_graph()
        hlg.byzdask_outputs = dict(lowered.outputs)
        hlg.byzdask_routes = {name: plan.route for name, plan in plans.items()}
        return hlg

    def _values_for_lowering(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self._check_inputs(inputs)

    def _lower(self, values: Mapping[str, Any]) -> LoweredGraph:
        return lower(self.graph, values, self._plan(values), uuid.uuid4().hex[:12])

    # -- running ------------------------------------------------------------------------
    async def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run the graph on ``inputs``; returns ``{output node name: value}``.

        Raises
        ------
        InputError
            A required graph input is missing (it is named).
        CapabilityError
            A task asks for a capability no worker of the pool offers (raised before anything runs).
        """
        values = self._check_inputs(inputs)
        return await self._execute(values)

    async def _execute(self, values: dict[str, Any]) -> dict[str, Any]:
        if self.pool is None:
            lowered = self._lower(values)
            return await asyncio.to_thread(_run_local, lowered, len(self.graph))
        from byzdask.engine.graph.pool_run import PoolRun

        return await PoolRun(self, values).run()

    def run_sync(self, inputs: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """:meth:`run` for scripts and notebooks (where an event loop may already run).

        With a pool, the pool's event loop must run in another thread (e.g. a pool started by
        :class:`~byzdask.engine.executor.OperatorExecutor`); inside that loop, ``await run()``.
        """
        loop = pool_loop(self.pool) if self.pool is not None else None
        return run_coroutine_sync(lambda: self.run(inputs), loop=loop, timeout=timeout)


def _run_local(lowered: LoweredGraph, n_nodes: int) -> dict[str, Any]:
    keys = list(lowered.outputs.values())
    if n_nodes == 1:
        results = dask.local.get_sync(lowered.tasks, keys)
    else:
        results = dask.threaded.get(lowered.tasks, keys, num_workers=max(2, min(n_nodes, 16)))
    return dict(zip(lowered.outputs, results))


class MessageAwareNodeScheduler(NodeScheduler):
    """A :class:`NodeScheduler` whose graphs may read delivered messages.

    Node inputs made by :meth:`GraphInput.from_message` are filled from messages given to
    :meth:`deliver_message`. A run waits for one message of each type its graph reads (every
    source of that type reads the same message; ``field`` picks an entry of a mapping payload),
    then runs the graph. A :class:`~byzdask.engine.graph.operator.MessageTriggerOp` node outputs
    the next message of its type (the scheduler's ``graph`` is then the given graph with each such
    node reading a message input). As in ByzPy, a delivered message wakes every waiter of its
    type; with none waiting it is queued, and queued messages are taken once each, in delivery
    order per type. (Channels between actors keep exactly-once delivery per consumer.)

    Examples
    --------
    >>> import asyncio
    >>> from byzdask.engine.graph.graph import ComputationGraph, GraphNode, GraphInput
    >>> from byzdask.engine.graph.ops import CallableOp
    >>> node = GraphNode("double", CallableOp(lambda x: 2 * x, input_mapping={"x": "x"}),
    ...                  {"x": GraphInput.from_message("value", field="v", timeout=5.0)})
    >>> scheduler = MessageAwareNodeScheduler(ComputationGraph([node]))
    >>> scheduler.deliver_message("value", {"v": 21})
    >>> asyncio.run(scheduler.run({}))
    {'double': 42}
    """

    def __init__(self, graph: ComputationGraph, *, pool: Any = None, metadata: Mapping[str, Any] | None = None,
                 fanout_min_bytes: int | None = None) -> None:
        super().__init__(triggers_as_messages(graph), pool=pool, metadata=metadata,
                         fanout_min_bytes=fanout_min_bytes)
        self.mailbox = MessageBox()

    def deliver_message(self, message_type: str, payload: Any) -> None:
        """Deliver a message (from any thread); it wakes every waiter of its type, or is queued."""
        self.mailbox.deliver(message_type, payload, every_waiter=True)

    async def wait_for_message(self, message_type: str, *, timeout: float | None = None) -> Any:
        """Take the next message of ``message_type``, waiting up to ``timeout`` seconds.

        Raises
        ------
        MessageTimeoutError
            Nothing arrived in time; the message type is named.
        """
        return await self.mailbox.receive(message_type, timeout=timeout)

    async def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        values = self._check_inputs(inputs)
        by_type: dict[str, list[MessageSource]] = {}
        for source in self.graph.message_sources:
            by_type.setdefault(source.message_type, []).append(source)
        payloads = await asyncio.gather(*(
            self.wait_for_message(t, timeout=_shortest_timeout(sources)) for t, sources in by_type.items()
        ))
        for (message_type, sources), payload in zip(by_type.items(), payloads):
            for source in sources:
                values[_message_key(source)] = source.extract(payload)
        return await self._execute(values)

    def _values_for_lowering(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        values = self._check_inputs(inputs)
        for source in self.graph.message_sources:
            values.setdefault(_message_key(source), inputs.get(_message_key(source), source))
        return values


def _shortest_timeout(sources: list[MessageSource]) -> float | None:
    timeouts = [s.timeout for s in sources if s.timeout is not None]
    return min(timeouts) if timeouts else None


# -- running coroutines from synchronous code -----------------------------------------------


def pool_loop(pool: Any) -> asyncio.AbstractEventLoop | None:
    """The asyncio loop that runs ``pool``'s client (None without a pool or client)."""
    client = getattr(pool, "client", None)
    loop = getattr(client, "loop", None)
    return getattr(loop, "asyncio_loop", loop)


def run_coroutine_sync(make: Callable[[], Awaitable[Any]], *, loop: asyncio.AbstractEventLoop | None = None,
                       timeout: float | None = None) -> Any:
    """Run the coroutine ``make()`` to completion from synchronous code and return its result.

    * ``loop`` given and running in another thread: the coroutine runs there;
    * otherwise, with no event loop running in this thread: ``asyncio.run``;
    * otherwise (a notebook cell): in a fresh event loop on a helper thread.

    Raises
    ------
    RuntimeError
        ``loop`` is the loop running in this thread (it would deadlock: ``await`` instead).

    Examples
    --------
    >>> async def add(a, b):
    ...     return a + b
    >>> run_coroutine_sync(lambda: add(1, 2))
    3
    """
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if loop is not None and loop.is_running():
        if loop is current:
            raise RuntimeError(
                "run_sync was called on the event loop that drives the pool; use `await scheduler.run(...)` here"
            )
        return asyncio.run_coroutine_threadsafe(_as_coroutine(make), loop).result(timeout)
    if current is None:
        return asyncio.run(_with_timeout(make, timeout))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="byzdask-run-sync") as executor:
        return executor.submit(asyncio.run, _with_timeout(make, timeout)).result()


async def _as_coroutine(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()


async def _with_timeout(make: Callable[[], Awaitable[Any]], timeout: float | None) -> Any:
    return await asyncio.wait_for(_as_coroutine(make), timeout)

