"""One run of a computation graph on an :class:`~byzdask.engine.graph.pool.ActorPool`.

Each node is a coroutine that starts when the nodes it reads have been submitted, and runs on
the route that :func:`~byzdask.engine.graph.planner.choose_route` gives it: ``task``,
``subtasks`` or ``blocks`` (``local`` is the run without a pool). A node that reads futures is
routed once they exist, from their sizes and holders (``who_has``); the others keep the route
they were planned with. Only the outputs come back to the client.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from dask.task_spec import List, Task, TaskRef

from byzdask.engine.graph.graph import GraphInput, MessageSource
from byzdask.engine.graph.lowering import (
    LoweredGraph,
    NodePlan,
    Placement,
    _message_key,
    contains_future,
    nbytes_of,
    placement_workers,
    reduce_node,
    resolve_placement,
    run_node,
    run_piece,
    split_on_worker,
    subtask_meta,
    subtask_piece,
    task_key,
    to_task_arg,
)
from byzdask.engine.graph.planner import Route, choose_route, describe_inputs, scatter_min_bytes

__all__ = ["PoolRun"]

#: Seconds a node may wait for the futures it reads, and each pass of the blocks route.
WAIT_TIMEOUT = 600.0


class PoolRun:
    """One run of a graph on a pool (``scheduler``: the :class:`NodeScheduler` that owns the graph and pool)."""

    def __init__(self, scheduler: Any, values: dict[str, Any]) -> None:
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
        self.routes: dict[str, Route] = {}

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
            if (not contains_future(value) and any(p.route.name == "task" for p in plans)
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
        if plan.fanned_out:  # subtasks made here, from caller-held inputs
            self.routes[name] = plan.route
            return await self._run_fanned_out(plan)
        kwargs = self._node_kwargs(plan, upstream)
        route = plan.route
        if route.name != "blocks" and contains_future(kwargs) and not plan.decided:
            facts = await describe_inputs(self.client, plan.node.op, kwargs, timeout=WAIT_TIMEOUT)
            route = choose_route(name, plan.node.op, facts, pool=self.pool, min_bytes=self.scheduler.fanout_min_bytes)
        self.routes[name] = route
        if route.name == "blocks":
            from byzdask.engine.blockwise import aggregate_blocks_async

            (data,) = kwargs.values()
            return await aggregate_blocks_async(plan.node.op, data, client=self.client, timeout=WAIT_TIMEOUT)
        if route.name == "subtasks":
            return await self._run_fanned_out_on_workers(plan, kwargs)
        for key, value in kwargs.items():
            if not contains_future(value) and nbytes_of(value) >= self.scatter_min:
                kwargs[key] = await self._scatter(value, placement_workers(self.pool, plan.placement))
        placement = plan.placement
        if route.workers and not placement.workers and not placement.resources:
            # where most of its input lies; a preference (another worker may run it if that one leaves)
            placement = Placement(workers=route.workers, retries=placement.retries, loose=True)
        return await self._single_task(plan, kwargs, placement)

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
        # the reduce runs where the inputs are: here
        local_inputs = {k: self.values[s.name] if isinstance(s, GraphInput) else self.values[_message_key(s)]
                        for k, s in plan.node.inputs.items()}
        return await asyncio.to_thread(reduce_node, plan.node.op, plan.context, partials, **local_inputs)

    async def _run_fanned_out_on_workers(self, plan: NodePlan, kwargs: dict[str, Any]) -> Any:
        """Subtasks of a node whose inputs live on workers: split there, spread the pieces, reduce there.

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
            return await self._single_task(plan, kwargs, plan.placement)
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

    async def _single_task(self, plan: NodePlan, kwargs: dict[str, Any], placement: Placement) -> Any:
        key = task_key(plan.node.name, self.token)
        task = _task(key, run_node, plan.node.op, plan.context, **kwargs)
        (future,) = self.client.get({key: task}, [key], sync=False, **placement.client_kwargs())
        self.keep.append(future)
        return future


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
