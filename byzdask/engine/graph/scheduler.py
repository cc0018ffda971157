"""Run computation graphs on Dask: in-process, or on an :class:`~byzdask.engine.graph.pool.ActorPool`.

Without a pool, the lowered graph (see :mod:`byzdask.engine.graph.lowering`) runs in-process
on Dask's threaded scheduler (the synchronous one for one-node graphs), off the event loop.

With a pool, every node is a task on the pool's cluster; a node only waits for the nodes it
reads, so independent nodes run at once. Where the data goes:

* inputs that are already futures stay on the workers: the tasks that read them are placed by
  Dask next to them, nothing travels through the client;
* large inputs held by the caller are scattered once (``hash=False``) to the worker that reads them;
* a fanned-out node (an operator with subtasks and inputs of at least ``fanout_min_bytes``)
  sends each subtask's blocks once, to different workers, gathers the small partials
  (column blocks of the result, or n x n Gram partials) and reduces them next to the inputs,
  in the caller's process: the full inputs never cross the network.
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
from dask.task_spec import List, Task, TaskRef

from byzdask.engine.graph.graph import ComputationGraph, GraphInput, MessageSource
from byzdask.engine.graph.lowering import (
    LoweredGraph,
    NodePlan,
    Placement,
    _message_key,
    contains_future,
    fanout_min_bytes,
    lower,
    nbytes_of,
    placement_workers,
    plan_nodes,
    reduce_node,
    resolve_placement,
    run_node,
    run_piece,
    scatter_min_bytes,
    split_on_worker,
    subtask_meta,
    subtask_piece,
    task_key,
    to_task_arg,
)
from byzdask.engine.graph.message import MessageBox, triggers_as_messages
from byzdask.errors import ConfigurationError, InputError

__all__ = ["MessageAwareNodeScheduler", "MessageSource", "NodeScheduler", "pool_loop", "run_coroutine_sync"]

logger = logging.getLogger(__name__)
#: Seconds a fan-out through the pool's shared memory may take (each round of block tasks).
_SHARED_TIMEOUT = 600.0


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
        ``byzdask_outputs`` attribute (output name -> key). Nothing is computed or submitted.

        Examples
        --------
        >>> import numpy as np
        >>> from byzdask.aggregators.average import Average
        >>> from byzdask.engine.graph.ops import make_single_operator_graph
        >>> graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
        >>> dsk = NodeScheduler(graph).to_dask({"gradients": [np.ones(2), np.zeros(2)]})
        >>> dask.get(dsk, dsk.byzdask_outputs["agg"])
        array([0.5, 0.5])
        """
        lowered = self._lower(self._values_for_lowering(inputs))
        hlg = lowered.to_high_level_graph()
        hlg.byzdask_outputs = dict(lowered.outputs)
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
        # one aggregation node fed a Dask array, or futures of at least fanout_min_bytes, runs block by block
        # where the data lies (imported here: blockwise imports every rule)
        from byzdask.engine.blockwise import run_graph_blockwise

        done = await self._run_shared(values)
        if done is None:
            done = await run_graph_blockwise(self.graph, values, self.pool.client, min_bytes=self.fanout_min_bytes)
        if done is not None:
            return done
        return await _PoolRun(self, values).run()

    async def _run_shared(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """A one-node aggregation graph on a caller-held input, or on n futures, fanned out through the pool's shared memory.

        Taken when the pool's workers are local processes (:attr:`ActorPool.shares_memory`), the
        input holds at least ``fanout_min_bytes``, ``byzdask.scheduler.shared-memory`` is on and
        the arena is free; otherwise None (the usual route). Futures: :meth:`_run_shared_held`.
        """
        from distributed import Future

        from byzdask.engine.blockwise import single_aggregation
        from byzdask.engine.shared import aggregate_shared, readable_in_place, shareable

        found = single_aggregation(self.graph, values)
        if found is None or not dask.config.get("byzdask.scheduler.shared-memory", True):
            return None
        node, op, value = found
        if value is None or not getattr(self.pool, "shares_memory", False) or self.pool.shared_arena.busy:
            return None
        if isinstance(value, Future):  # one stacked array on a worker
            return await self._run_shared_held(node, op, [value], stacked=True)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Future) for v in value):
            return await self._run_shared_held(node, op, list(value))
        if contains_future(value) or nbytes_of(value) < self.fanout_min_bytes:
            return None
        layout = shareable(value)
        if layout is None:
            return None
        # an input in one of the pool's shared arrays (stacked, of the working dtype) is read where it lies
        placed = self.pool.locate_shared(value) if readable_in_place(layout) else None
        # otherwise the workers read it from this process's memory when they may, else it is copied in
        remote = (placed is None and dask.config.get("byzdask.scheduler.cross-memory", True)
                  and await self.pool.reads_caller_memory())
        logger.debug("node %r fans out through shared memory (%s)", node.name,
                     "in place" if placed else "read by the workers" if remote else "copied")
        result = await aggregate_shared(op, value, layout, self.pool.shared_arena, self.pool.client,
                                        workers=max(1, self.pool.size), timeout=_SHARED_TIMEOUT, placed=placed,
                                        remote=remote)
        return {node.name: result}

    async def _run_shared_held(self, node: Any, op: Any, futures: list[Any], *,
                               stacked: bool = False) -> dict[str, Any] | None:
        """The n futures of a one-node aggregation, held by the pool's local worker processes, through shared memory.

        Each holding worker writes its vectors into the arena (one task each), then the blocks
        are aggregated in place as a caller-held input is; None (the usual route: block by block
        over the sockets, or, for one stacked future, subtasks and a reduce) when they hold less
        than ``fanout_min_bytes`` or are not same-shaped CPU float arrays. ``stacked``: one
        future of an (n, ...) array.
        """
        from byzdask.engine.blockwise import held_nbytes
        from byzdask.engine.shared import aggregate_shared, held_layout

        client, timeout = self.pool.client, _SHARED_TIMEOUT
        if await held_nbytes(client, futures, timeout) < self.fanout_min_bytes:
            return None
        described = await held_layout(futures, client, timeout, stacked=stacked)
        if described is None:
            return None
        layout, groups = described
        logger.debug("node %r: %d held vectors go through shared memory", node.name, len(futures))
        result = await aggregate_shared(op, futures, layout, self.pool.shared_arena, client,
                                        workers=max(1, self.pool.size), timeout=timeout, held=groups)
        return {node.name: result}

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


class _PoolRun:
    """One run of a graph on a pool: each node a coroutine that submits its tasks when its inputs exist."""

    def __init__(self, scheduler: NodeScheduler, values: dict[str, Any]) -> None:
        self.scheduler = scheduler
        self.graph = scheduler.graph
        self.pool = scheduler.pool
        self.client = scheduler.pool.client
        self.values = values
        self.token = uuid.uuid4().hex[:12]
        self.scatter_min = scatter_min_bytes()
        # planning checks every placement before anything is submitted
        self.plans = scheduler._plan(values)
        self.handles: dict[str, Any] = {}
        self.keep: list[Any] = []  # futures kept alive until the run ends

    async def run(self) -> dict[str, Any]:
        await self._place_inputs()
        done: dict[str, asyncio.Future] = {}
        for node in self.graph.nodes_in_order():
            deps = {d: done[d] for d in node.node_dependencies()}
            done[node.name] = asyncio.ensure_future(self._run_node(node.name, deps))
        try:
            await asyncio.gather(*done.values())
        except BaseException:
            for fut in done.values():
                fut.cancel()
            raise
        results = {name: done[name].result() for name in self.graph.outputs}
        remote = {name: r for name, r in results.items() if contains_future(r)}
        if remote:
            gathered = await self.client.gather(list(remote.values()))
            results.update(zip(remote, gathered))
        return results

    async def _place_inputs(self) -> None:
        """Scatter the large caller-held inputs read by nodes that run as one task."""
        readers: dict[str, list[NodePlan]] = {}
        for plan in self.plans.values():
            for source in plan.node.inputs.values():
                if isinstance(source, GraphInput):
                    readers.setdefault(source.name, []).append(plan)
                elif isinstance(source, MessageSource):
                    readers.setdefault(_message_key(source), []).append(plan)
        for name, value in self.values.items():
            plans = readers.get(name, [])
            if (not contains_future(value) and any(not p.fanned_out for p in plans)
                    and nbytes_of(value) >= self.scatter_min):
                self.handles[name] = await self._scatter(value, _common_workers(self.pool, plans))
            else:
                self.handles[name] = value

    async def _scatter(self, value: Any, workers: list[str] | None) -> Any:
        (future,) = await self.client.scatter([value], hash=False, workers=workers, direct=True)
        self.keep.append(future)
        return future

    def _node_kwargs(self, plan: NodePlan, upstream: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = {}
        for key, source in plan.node.inputs.items():
            if isinstance(source, GraphInput):
                kwargs[key] = self.handles[source.name]
            elif isinstance(source, MessageSource):
                kwargs[key] = self.handles[_message_key(source)]
            else:
                kwargs[key] = upstream[source]
        return kwargs

    async def _run_node(self, name: str, deps: dict[str, asyncio.Future]) -> Any:
        if deps:
            await asyncio.gather(*deps.values())
        upstream = {d: fut.result() for d, fut in deps.items()}
        plan = self.plans[name]
        if plan.fanned_out:
            return await self._run_fanned_out(plan)
        kwargs = self._node_kwargs(plan, upstream)
        if (plan.node.op.supports_subtasks and contains_future(kwargs)
                and await self._input_bytes(kwargs) >= self.scheduler.fanout_min_bytes):
            return await self._run_fanned_out_on_workers(plan, kwargs)
        for key, value in kwargs.items():
            if not contains_future(value) and nbytes_of(value) >= self.scatter_min:
                kwargs[key] = await self._scatter(value, placement_workers(self.pool, plan.placement))
        return await self._single_task(plan, kwargs)

    async def _run_fanned_out(self, plan: NodePlan) -> Any:
        name = plan.node.name
        futures = []
        groups: dict[tuple, list[tuple[int, int, Any]]] = {}
        subtasks = plan.subtasks or []
        arg_lists = [list(st.args) for st in subtasks]
        for i, (st, placement) in enumerate(zip(subtasks, plan.sub_placements)):
            allowed = placement_workers(self.pool, placement)
            for j, arg in enumerate(st.args):
                if nbytes_of(arg) >= self.scatter_min and not contains_future(arg):
                    groups.setdefault(tuple(allowed or ()), []).append((i, j, arg))
        for allowed, items in groups.items():
            scattered = await self.client.scatter([arg for _, _, arg in items], hash=False,
                                                  workers=list(allowed) or None, direct=True)
            for (i, j, _), future in zip(items, scattered):
                arg_lists[i][j] = future
                self.keep.append(future)
        for i, (st, placement) in enumerate(zip(subtasks, plan.sub_placements)):
            key = task_key(f"{name}-{st.name or 'subtask'}-{i}", self.token)
            task = _task(key, st.fn, *arg_lists[i], **st.kwargs)
            (future,) = self.client.get({key: task}, [key], sync=False, **placement.client_kwargs())
            futures.append(future)
        partials = await self.client.gather(futures)
        local_inputs = {k: self.values[s.name] if isinstance(s, GraphInput) else self.values[_message_key(s)]
                        for k, s in plan.node.inputs.items()}
        return await asyncio.to_thread(reduce_node, plan.node.op, plan.context, partials, **local_inputs)


    async def _input_bytes(self, kwargs: Mapping[str, Any]) -> int:
        """Bytes of a node's inputs, counting the futures among them once they are computed."""
        from distributed import wait

        futures = _futures_in(kwargs)
        await wait(futures)
        sizes = await self.client.scheduler.nbytes(keys=list({f.key for f in futures}), summary=False)
        return sum(max(0, int(v)) for v in sizes.values()) + nbytes_of(kwargs)

    async def _run_fanned_out_on_workers(self, plan: NodePlan, kwargs: dict[str, Any]) -> Any:
        """Fan out a node whose inputs live on workers: split there, spread the pieces, reduce there.

        The inputs never come to the client: a task next to them creates the subtasks; each
        piece gets its own key and moves at most once, to the worker that runs it (spread
        round-robin as a preference, or as its affinity requires); the reduce runs next to the
        inputs and its result stays on the cluster.
        """
        name, op, ctx = plan.node.name, plan.node.op, plan.context
        split_key = task_key(f"{name}-split", self.token)
        (split,) = self.client.get({split_key: _task(split_key, split_on_worker, op, ctx, **kwargs)}, [split_key],
                                   sync=False, **plan.placement.client_kwargs())
        self.keep.append(split)
        meta = await self.client.submit(subtask_meta, split, key=task_key(f"{name}-meta", self.token), pure=False)
        if not meta:
            return await self._single_task(plan, kwargs)
        addresses = list(getattr(self.pool, "workers", {}).values())
        tasks, placements, sub_keys = {}, {}, []
        for i, (sub_name, affinity, retries) in enumerate(meta):
            placement = resolve_placement(self.pool, affinity, retries,
                                          what=f"subtask {sub_name or i!r} of node {name!r}")
            if affinity is None and addresses:
                placement = Placement(workers=(addresses[i % len(addresses)],), retries=placement.retries, loose=True)
            piece_key = task_key(f"{name}-piece-{i}", self.token)
            sub_key = task_key(f"{name}-{sub_name or 'subtask'}-{i}", self.token)
            tasks[piece_key] = Task(piece_key, subtask_piece, split, i)
            tasks[sub_key] = Task(sub_key, run_piece, TaskRef(piece_key))
            placements[sub_key] = placement.annotations()
            sub_keys.append(sub_key)
        reduce_key = task_key(name, self.token)
        tasks[reduce_key] = _task(reduce_key, reduce_node, op, ctx, List(*(TaskRef(k) for k in sub_keys)), **kwargs)
        placements[reduce_key] = plan.placement.annotations()
        lowered = LoweredGraph(tasks=tasks, annotations=placements, outputs={name: reduce_key},
                               node_keys={name: [*sub_keys, reduce_key]})
        (future,) = self.client.get(lowered.to_high_level_graph(), [reduce_key], sync=False)
        self.keep.append(future)
        return future

    async def _single_task(self, plan: NodePlan, kwargs: dict[str, Any]) -> Any:
        key = task_key(plan.node.name, self.token)
        task = _task(key, run_node, plan.node.op, plan.context, **kwargs)
        (future,) = self.client.get({key: task}, [key], sync=False, **plan.placement.client_kwargs())
        self.keep.append(future)
        return future


def _futures_in(value: Any) -> list[Any]:
    if isinstance(value, TaskRef):
        return [value]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in _futures_in(v)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _futures_in(v)]
    return []


def _task(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
    return Task(key, fn, *(to_task_arg(a) for a in args), **{k: to_task_arg(v) for k, v in kwargs.items()})


def _common_workers(pool: Any, plans: list[NodePlan]) -> list[str] | None:
    """Workers allowed for every reader of an input (None: any worker)."""
    allowed: set[str] | None = None
    for plan in plans:
        workers = placement_workers(pool, plan.placement)
        if workers is not None:
            allowed = set(workers) if allowed is None else allowed & set(workers)
    return sorted(allowed) if allowed else None


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

