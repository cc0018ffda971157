"""The planner: four routes, chosen in one place, shown by to_dask, logged with a reason; results unchanged."""

import logging

import dask
import dask.array as da
import numpy as np
import pytest

from byzdask.aggregators import CoordinateWiseMedian, Krum
from byzdask.engine.graph.ops import CallableOp, make_single_operator_graph
from byzdask.engine.graph.planner import ROUTES, InputFacts, Route, choose_route
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.graph.pool_run import PoolRun
from byzdask.engine.graph.scheduler import NodeScheduler
from byzdask.errors import ConfigurationError


class _Pool:  # what choose_route reads of a pool: nothing but that there is one
    size = 2


def test_routes_from_facts():
    rule, pool = Krum(f=1), _Pool()
    assert choose_route("a", rule, InputFacts(caller_bytes=10), pool=None, min_bytes=0).name == "local"
    assert choose_route("a", rule, InputFacts(caller_bytes=10), pool=pool, min_bytes=11).name == "task"
    assert choose_route("a", rule, InputFacts(caller_bytes=10), pool=pool, min_bytes=10).name == "subtasks"
    assert choose_route("a", CallableOp(sum, input_mapping={"x": "x"}), InputFacts(caller_bytes=10), pool=pool, min_bytes=0).name == "task"
    spread = InputFacts(held={"w1": 6, "w2": 4}, vectors="futures")
    assert choose_route("a", rule, spread, pool=pool, min_bytes=10).name == "blocks"
    small = choose_route("a", rule, spread, pool=pool, min_bytes=11)
    assert small.name == "task" and small.workers == ("w1",)  # where most of the input lies
    one = InputFacts(held={"w2": 10}, vectors="futures")
    assert choose_route("a", rule, one, pool=pool, min_bytes=10).name == "subtasks"  # split where they lie
    assert choose_route("a", rule, InputFacts(vectors="dask"), pool=pool, min_bytes=2**60).name == "blocks"
    with pytest.raises(ConfigurationError, match="route must be one of"):
        Route("shared", "gone")
    assert ROUTES == ("local", "task", "subtasks", "blocks")


def test_threshold_is_in_the_packaged_config():
    assert dask.config.get("byzdask.scheduler.fanout-min-bytes") == "1 GiB"
    assert dask.config.get("byzdask.scheduler.scatter-min-bytes") == "1 MiB"
    assert dask.config.get("byzdask.scheduler.shared-memory", None) is None


def test_to_dask_shows_the_route_and_the_run_logs_it(caplog, rng):
    x = rng.standard_normal((5, 8))
    graph = make_single_operator_graph(node_name="agg", operator=CoordinateWiseMedian(), input_keys=("gradients",))
    with caplog.at_level(logging.DEBUG, logger="byzdask.engine.graph.planner"):
        dsk = NodeScheduler(graph).to_dask({"gradients": x})
    assert dsk.byzdask_routes["agg"].name == "local"
    assert any("takes route 'local'" in r.getMessage() for r in caplog.records)
    key = dsk.byzdask_outputs["agg"]
    assert dsk.layers[key].annotations == {"byzdask_route": "local"}


async def test_each_route_on_a_pool_gives_the_direct_result(rng):
    x = rng.standard_normal((7, 64)).astype(np.float32)
    rule = Krum(f=2)
    expected = rule.aggregate(x)
    graph = make_single_operator_graph(node_name="agg", operator=rule, input_keys=("gradients",))
    seen = {}
    real = PoolRun._run_node

    async def spy(self, name, deps):
        out = await real(self, name, deps)
        seen.setdefault(self.routes[name].name, self.routes[name])
        return out

    PoolRun._run_node = spy
    try:
        async with ActorPool([ActorPoolConfig("thread", count=2)]) as pool:
            big, small = NodeScheduler(graph, pool=pool, fanout_min_bytes=0), NodeScheduler(graph, pool=pool)
            assert big.to_dask({"gradients": x}).byzdask_routes["agg"].name == "subtasks"
            np.testing.assert_allclose((await big.run({"gradients": x}))["agg"], expected, rtol=1e-5)
            np.testing.assert_allclose((await small.run({"gradients": x}))["agg"], expected, rtol=1e-5)
            addresses = list(pool.workers.values())
            futures = [pool.client.submit(np.array, row, workers=[addresses[i % 2]], pure=False)
                       for i, row in enumerate(x)]
            np.testing.assert_allclose((await big.run({"gradients": futures}))["agg"], expected, rtol=1e-5)
            assert seen["blocks"].reason.startswith(f"{x.nbytes} bytes of vectors on 2 workers")
            np.testing.assert_allclose((await small.run({"gradients": futures}))["agg"], expected, rtol=1e-5)
            assert seen["task"].workers is None or seen["task"].workers[0] in addresses
            (stacked,) = await pool.client.scatter([x], hash=False, workers=[addresses[1]])
            seen.pop("task", None)
            np.testing.assert_allclose((await small.run({"gradients": stacked}))["agg"], expected, rtol=1e-5)
            assert seen["task"].workers == (addresses[1],)  # placed on its holder
            lazy = da.from_array(x, chunks=(7, 16))
            assert big.to_dask({"gradients": lazy}).byzdask_routes["agg"].name == "blocks"
            np.testing.assert_allclose((await small.run({"gradients": lazy}))["agg"], expected, rtol=1e-5)
    finally:
        PoolRun._run_node = real
    assert set(seen) == {"task", "subtasks", "blocks"}
