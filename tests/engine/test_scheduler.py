"""NodeScheduler: in-process runs, runs on a pool, routing, data placement, concurrency, every rule.

Every pool here is started and closed by the test that uses it: in-process thread workers,
except one test with worker processes.
"""

import asyncio
import inspect
import threading

import dask
import numpy as np
import pytest
from distributed import get_worker

from byzdask.aggregators.average import Average
from byzdask.engine.graph.graph import ComputationGraph, GraphNode, graph_input
from byzdask.engine.graph.operator import Operator
from byzdask.engine.graph.ops import (
    CallableOp,
    RemoteCallableOp,
    make_chain_graph,
    make_single_operator_graph,
)
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.graph.scheduler import NodeScheduler, run_coroutine_sync
from byzdask.engine.graph.subtask import SubTask
from byzdask.errors import CapabilityError, InputError
from byzdask.registry import AGGREGATORS, PRE_AGGREGATORS, resolve

pytestmark = pytest.mark.timeout(60)


# -- pools -----------------------------------------------------------------------------------


class Cluster:
    """An in-process ActorPool: prefix -> (workers, threads per worker, capabilities)."""

    def __init__(self, specs):
        self.pool = ActorPool([ActorPoolConfig("thread", count=count, name=prefix, threads_per_worker=threads,
                                               capabilities=caps)
                               for prefix, (count, threads, caps) in specs.items()])

    async def __aenter__(self):
        await self.pool.start()
        self.client = self.pool.client
        return self

    async def __aexit__(self, *exc):
        await self.pool.shutdown()


DEFAULT = {"cpu": (2, 2, ["cpu"])}
ONE_THREAD_EACH = {"w": (2, 1, ["cpu"])}


def grads(rng, n=6, d=8):
    return [rng.standard_normal(d) for _ in range(n)]


# -- operators used by the tests (module level: picklable by reference) --------------------------


BARRIERS: dict[str, threading.Barrier] = {}
CALLS: list[str] = []


def wait_at(name, value):
    BARRIERS[name].wait(timeout=10)
    return value


def worker_name(**_):
    return get_worker().name


class BlockSum(Operator):
    """Sum of all entries, fanned out over row blocks; each subtask reports its worker."""

    name = "blocksum"
    input_keys = ("x",)
    supports_subtasks = True

    def __init__(self, affinity=None, max_retries=0):
        self.affinity_of_subtasks = affinity
        self.retries_of_subtasks = max_retries

    def compute(self, inputs, *, context=None):
        return float(np.asarray(inputs["x"]).sum())

    def create_subtasks(self, inputs, *, context=None):
        x = np.asarray(inputs["x"])
        return [SubTask(_block_sum, args=(block,), name=f"rows{i}", affinity=self.affinity_of_subtasks,
                        max_retries=self.retries_of_subtasks) for i, block in enumerate(np.array_split(x, 3))]

    def reduce_subtasks(self, partials, inputs, *, context=None):
        CALLS.append(f"reduce:{context.node_name}")
        return sum(p for p, _ in partials), sorted({w for _, w in partials})


def _block_sum(block):
    try:
        where = get_worker().name
    except ValueError:
        where = "local"
    return float(block.sum()), where


# -- in-process (no pool) ------------------------------------------------------------------------


def test_single_node_equals_direct(rng):
    g = grads(rng)
    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    out = NodeScheduler(graph).run_sync({"gradients": g})
    np.testing.assert_allclose(out["agg"], Average().aggregate(g))


async def test_chain_runs_in_order(rng):
    g = grads(rng)
    graph = make_chain_graph([CallableOp(lambda vectors: [2 * v for v in vectors], name="double"), Average()])
    out = await NodeScheduler(graph).run({"gradients": g})
    np.testing.assert_allclose(out["average"], 2 * np.mean(g, axis=0))


def test_missing_input_is_named():
    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    with pytest.raises(InputError, match="'gradients'"):
        NodeScheduler(graph).run_sync({"grads": []})
    with pytest.raises(InputError, match="mapping"):
        NodeScheduler(graph).run_sync([1])


def test_metadata_and_node_name_reach_the_operator():
    seen = []

    class Spy(Operator):
        input_keys = ("x",)

        def compute(self, inputs, *, context=None):
            seen.append((context.node_name, dict(context.metadata)))
            return inputs["x"]

    graph = make_single_operator_graph(node_name="spy", operator=Spy(), input_keys=("x",))
    assert NodeScheduler(graph, metadata={"round": 3}).run_sync({"x": 1}) == {"spy": 1}
    assert seen == [("spy", {"round": 3})]


def test_independent_nodes_run_concurrently_in_process():
    BARRIERS["local"] = threading.Barrier(2)
    graph = ComputationGraph([
        GraphNode("a", CallableOp(lambda v: wait_at("local", v), input_mapping={"v": "v"}), {"v": graph_input("a")}),
        GraphNode("b", CallableOp(lambda v: wait_at("local", v), input_mapping={"v": "v"}), {"v": graph_input("b")}),
    ])
    assert NodeScheduler(graph).run_sync({"a": 1, "b": 2}, timeout=20) == {"a": 1, "b": 2}


def test_errors_propagate():
    def boom(x):
        raise ValueError("boom from the node")

    graph = make_single_operator_graph(node_name="n", operator=CallableOp(boom, input_mapping={"x": "x"}),
                                       input_keys=("x",))
    with pytest.raises(ValueError, match="boom from the node"):
        NodeScheduler(graph).run_sync({"x": 1})


def test_to_dask_runs_with_dask_get_and_computes_nothing_while_built(rng):
    calls = []
    graph = make_chain_graph([CallableOp(lambda vectors: calls.append(1) or vectors, name="spy"), Average()])
    g = grads(rng)
    dsk = NodeScheduler(graph).to_dask({"gradients": g})
    assert calls == []
    assert len(dsk) == 3  # the input and two nodes
    np.testing.assert_allclose(dask.get(dsk, dsk.byzdask_outputs["average"]), np.mean(g, axis=0))
    assert calls == [1]


def test_futures_without_a_pool_are_refused():
    from dask.task_spec import TaskRef

    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    with pytest.raises(InputError, match="no pool"):
        NodeScheduler(graph).run_sync({"gradients": [TaskRef("x")]})


async def test_run_sync_inside_a_running_loop(rng):
    g = grads(rng)
    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    out = NodeScheduler(graph).run_sync({"gradients": g})  # as in a notebook cell
    np.testing.assert_allclose(out["agg"], np.mean(g, axis=0))


def test_run_coroutine_sync_refuses_the_current_loop():
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(RuntimeError, match="await"):
            run_coroutine_sync(lambda: asyncio.sleep(0), loop=loop)

    asyncio.run(main())


def test_scheduler_validates_its_arguments():
    from byzdask.errors import ConfigurationError

    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    with pytest.raises(ConfigurationError, match="ComputationGraph"):
        NodeScheduler("graph")
    with pytest.raises(ConfigurationError, match="metadata"):
        NodeScheduler(graph, metadata=[1])
    with pytest.raises(ConfigurationError, match="fanout_min_bytes"):
        NodeScheduler(graph, fanout_min_bytes=-1)


# -- on a cluster --------------------------------------------------------------------------------


async def test_pool_single_node_equals_direct(rng):
    g = grads(rng)
    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    async with Cluster(DEFAULT) as c:
        out = await NodeScheduler(graph, pool=c.pool).run({"gradients": g})
    np.testing.assert_allclose(out["agg"], Average().aggregate(g))


async def test_pool_runs_independent_nodes_concurrently():
    BARRIERS["pool"] = threading.Barrier(2)
    graph = ComputationGraph([
        GraphNode("a", CallableOp(wait_at, input_mapping={"name": "n", "value": "v"}),
                  {"n": graph_input("name"), "v": graph_input("a")}),
        GraphNode("b", CallableOp(wait_at, input_mapping={"name": "n", "value": "v"}),
                  {"n": graph_input("name"), "v": graph_input("b")}),
        GraphNode("sum", CallableOp(lambda a, b: a + b, input_mapping={"a": "a", "b": "b"}), {"a": "a", "b": "b"}),
    ])
    async with Cluster(ONE_THREAD_EACH) as c:
        out = await asyncio.wait_for(NodeScheduler(graph, pool=c.pool).run({"name": "pool", "a": 1, "b": 2}), 30)
    assert out == {"sum": 3}


async def test_pool_fan_out_spreads_subtasks_and_reduces(rng):
    x = rng.standard_normal((30, 4))
    graph = make_single_operator_graph(node_name="s", operator=BlockSum(), input_keys=("x",))
    async with Cluster(ONE_THREAD_EACH) as c:
        scheduler = NodeScheduler(graph, pool=c.pool, fanout_min_bytes=0)
        dsk = scheduler.to_dask({"x": x})
        CALLS.clear()
        total, workers = (await scheduler.run({"x": x}))["s"]
        # below the threshold: one task, no subtasks
        small = await NodeScheduler(graph, pool=c.pool, fanout_min_bytes=10**9).run({"x": x})
    assert total == pytest.approx(x.sum())
    assert set(workers) <= {"w-0", "w-1"} and CALLS == ["reduce:s"]
    assert small["s"] == pytest.approx(x.sum())
    assert len(dsk) == 1 + 3 + 1  # input, three subtasks, reduce


async def test_pool_routes_by_capability_and_by_name():
    specs = {"cpu": (1, 1, ["cpu"]), "gpu": (1, 1, ["gpu"])}
    graph = ComputationGraph([
        GraphNode("on_gpu", RemoteCallableOp(worker_name, affinity="gpu"), {}),
        GraphNode("on_cpu", RemoteCallableOp(worker_name, affinity="cpu"), {}),
        GraphNode("by_name", RemoteCallableOp(worker_name, affinity="cpu-0", max_retries=2), {}),
    ])
    async with Cluster(specs) as c:
        scheduler = NodeScheduler(graph, pool=c.pool)
        out = await scheduler.run({})
        annotations = {k.rsplit("-", 1)[0]: layer.annotations for k, layer in scheduler.to_dask({}).layers.items()}
        sub = await NodeScheduler(make_single_operator_graph(node_name="s", operator=BlockSum(affinity="gpu"),
                                                             input_keys=("x",)),
                                  pool=c.pool, fanout_min_bytes=0).run({"x": np.ones((6, 2))})
    assert out == {"on_gpu": "gpu-0", "on_cpu": "cpu-0", "by_name": "cpu-0"}
    assert annotations["on_gpu"] == {"resources": {"gpu": 1}, "byzdask_route": "task"}
    assert annotations["by_name"]["retries"] == 2 and len(annotations["by_name"]["workers"]) == 1
    assert sub["s"] == (12.0, ["gpu-0"])


async def test_impossible_capability_fails_before_anything_runs():
    CALLS.clear()
    graph = ComputationGraph([
        GraphNode("fine", CallableOp(lambda: CALLS.append("ran")), {}),
        GraphNode("tpu", RemoteCallableOp(worker_name, affinity="tpu"), {}),
    ])
    async with Cluster(DEFAULT) as c:
        with pytest.raises(CapabilityError, match="'tpu'"):
            await NodeScheduler(graph, pool=c.pool).run({})
        with pytest.raises(CapabilityError, match="'gpu'"):
            await NodeScheduler(make_single_operator_graph(node_name="s", operator=BlockSum(affinity="gpu"),
                                                           input_keys=("x",)),
                                pool=c.pool, fanout_min_bytes=0).run({"x": np.ones((6, 2))})
    assert CALLS == []


async def test_future_inputs_stay_on_the_workers(rng):
    g = grads(rng, n=4, d=5)
    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    async with Cluster(DEFAULT) as c:
        futures = [c.client.submit(np.array, v, pure=False) for v in g]
        gathered, scattered = [], []
        real_gather, real_scatter = c.client.gather, c.client.scatter

        def spy_gather(futs, *a, **k):
            gathered.extend(f.key for f in futs)
            return real_gather(futs, *a, **k)

        def spy_scatter(*a, **k):
            scattered.append(a)
            return real_scatter(*a, **k)

        c.client.gather, c.client.scatter = spy_gather, spy_scatter
        out = await NodeScheduler(graph, pool=c.pool).run({"gradients": futures})
        dsk = NodeScheduler(graph, pool=c.pool).to_dask({"gradients": futures})
    np.testing.assert_allclose(out["agg"], np.mean(g, axis=0))
    assert len(gathered) == 1 and gathered[0].startswith("agg-")  # only the output came back
    assert scattered == []
    (task,) = dsk.values()
    assert {f.key for f in futures} <= set(task.dependencies)


async def test_large_caller_inputs_are_scattered_once(rng):
    g = [rng.standard_normal(2**15) for _ in range(8)]  # 2 MiB in all
    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    async with Cluster(DEFAULT) as c:
        scattered = []
        real_scatter = c.client.scatter

        def spy_scatter(data, *a, **k):
            scattered.append((len(data), k.get("hash")))
            return real_scatter(data, *a, **k)

        c.client.scatter = spy_scatter
        out = await NodeScheduler(graph, pool=c.pool).run({"gradients": g})
    np.testing.assert_allclose(out["agg"], np.mean(g, axis=0))
    assert scattered == [(1, False)]


async def test_pool_errors_propagate():
    def boom():
        raise ValueError("boom on a worker")

    graph = ComputationGraph([GraphNode("n", CallableOp(boom), {})])
    async with Cluster(DEFAULT) as c:
        with pytest.raises(ValueError, match="boom on a worker"):
            await NodeScheduler(graph, pool=c.pool).run({})


async def test_chain_on_pool_keeps_intermediates_on_workers(rng):
    g = grads(rng)
    graph = make_chain_graph([CallableOp(lambda vectors: [2 * v for v in vectors], name="double"), Average()])
    async with Cluster(DEFAULT) as c:
        out = await NodeScheduler(graph, pool=c.pool).run({"gradients": g})
    np.testing.assert_allclose(out["average"], 2 * np.mean(g, axis=0))


# -- every rule through the scheduler equals its direct result --------------------------------------


def build(kind, name):
    try:
        cls = resolve(kind, name)
    except ImportError as exc:  # a rule not written yet
        pytest.skip(f"{kind} {name!r} is not available: {exc}")
    params = inspect.signature(cls).parameters
    kwargs = {}
    for pname, value in (("f", 2), ("c_tau", 1.0), ("bucket_size", 2)):
        if pname in params:
            kwargs[pname] = value
    if "seed" in params:
        kwargs["seed"] = 0
    op = cls(**kwargs)
    if getattr(op, "f", None) is not None and hasattr(op, "max_f") and op.f > op.max_f(9):  # e.g. Bulyan: the largest f it takes at n=9
        op = cls(**{**kwargs, "f": op.max_f(9)})
    return op


RULES = [("aggregator", name) for name in AGGREGATORS] + [("pre-aggregator", name) for name in PRE_AGGREGATORS]


async def check_rules_on(pool, rng):
    g = [rng.standard_normal(40).astype(np.float32) for _ in range(9)]
    checked = 0
    for kind, name in RULES:
        op = build(kind, name)
        key = op.input_keys[0]
        graph = make_single_operator_graph(node_name=name, operator=op, input_keys=(key,))
        direct = op.compute({key: g})
        for fanout in (None, 0):
            scheduler = NodeScheduler(graph, pool=pool, metadata={"n_blocks": 3}, fanout_min_bytes=fanout)
            out = (await scheduler.run({key: g}))[name]
            np.testing.assert_allclose(np.asarray(out), np.asarray(direct), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{kind} {name}, fanout_min_bytes={fanout}")
        checked += 1
    return checked


async def test_every_rule_on_a_thread_pool(rng):
    async with Cluster(DEFAULT) as c:
        assert await check_rules_on(c.pool, rng) == len(RULES)


@pytest.mark.timeout(120)
async def test_every_rule_on_a_process_pool(rng):
    async with ActorPool([ActorPoolConfig("process", count=2)]) as pool:
        assert await check_rules_on(pool, rng) == len(RULES)


async def test_fan_out_of_inputs_living_on_workers(rng):
    """Futures (or upstream outputs) large enough fan out where they lie; nothing comes to the client."""
    x = rng.standard_normal((30, 4))
    graph = make_single_operator_graph(node_name="s", operator=BlockSum(), input_keys=("x",))
    chain = ComputationGraph([
        GraphNode("make", CallableOp(np.asarray, input_mapping={"a": "x"}), {"x": graph_input("x")}),
        GraphNode("s", BlockSum(), {"x": "make"}),
    ])
    async with Cluster(ONE_THREAD_EACH) as c:
        (future,) = await c.client.scatter([x], hash=False)
        gathered = []
        real_gather = c.client.gather

        def spy_gather(futs, *a, **k):
            gathered.extend(f.key for f in futs)
            return real_gather(futs, *a, **k)

        c.client.gather = spy_gather
        CALLS.clear()
        total, workers = (await NodeScheduler(graph, pool=c.pool, fanout_min_bytes=0).run({"x": future}))["s"]
        chained, _ = (await NodeScheduler(chain, pool=c.pool, fanout_min_bytes=0).run({"x": x}))["s"]
        small = (await NodeScheduler(graph, pool=c.pool, fanout_min_bytes=10**9).run({"x": future}))["s"]
    assert total == pytest.approx(x.sum()) and chained == pytest.approx(x.sum()) and small == pytest.approx(x.sum())
    assert set(workers) == {"w-0", "w-1"}  # the pieces were spread
    assert CALLS == ["reduce:s", "reduce:s"]  # the reduce ran for both fanned-out runs, not for the small one
    assert all(k.startswith("s-") for k in gathered)  # only results came back


async def test_fan_out_on_workers_checks_capabilities():
    async with Cluster(DEFAULT) as c:
        (future,) = await c.client.scatter([np.ones((6, 2))], hash=False)
        graph = make_single_operator_graph(node_name="s", operator=BlockSum(affinity="gpu"), input_keys=("x",))
        with pytest.raises(CapabilityError, match="'gpu'"):
            await NodeScheduler(graph, pool=c.pool, fanout_min_bytes=0).run({"x": future})
