"""UCX comms (distributed-ucxx) on loopback: a pool over ucx:// runs an aggregation.

UCX runs over TCP on a machine without an RDMA NIC or a GPU when told to (UCX_TLS=tcp,
UCX_SOCKADDR_TLS_PRIORITY=tcp); the variables are set before the first UCX endpoint and are
inherited by the worker processes. Skipped where distributed-ucxx is not installed.
"""

import importlib.util

import numpy as np
import pytest

pytestmark = [
    pytest.mark.requires_ucx,
    pytest.mark.skipif(importlib.util.find_spec("distributed_ucxx") is None,
                       reason="distributed-ucxx is not installed (pip install 'byzdask[ucx]')"),
    pytest.mark.timeout(180),
]


@pytest.fixture
def ucx_over_tcp(monkeypatch):
    monkeypatch.setenv("UCX_TLS", "tcp")
    monkeypatch.setenv("UCX_SOCKADDR_TLS_PRIORITY", "tcp")
    monkeypatch.setenv("UCX_WARN_UNUSED_ENV_VARS", "n")


async def test_process_pool_over_ucx_runs_an_aggregation(ucx_over_tcp):
    from byzdask.aggregators import CoordinateWiseMedian, GeometricMedian
    from byzdask.engine.blockwise import aggregate_blocks_async
    from byzdask.engine.graph.ops import make_single_operator_graph
    from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
    from byzdask.engine.graph.scheduler import NodeScheduler

    x = np.random.default_rng(0).standard_normal((7, 5000)).astype(np.float32)
    async with ActorPool([ActorPoolConfig("process", count=2, protocol="ucx")]) as pool:
        info = pool.client.scheduler_info()
        assert pool.client.scheduler.address.startswith("ucx://127.0.0.1:")
        assert all(address.startswith("ucx://127.0.0.1:") for address in info["workers"])

        # a graph node, fanned out over both workers
        graph = make_single_operator_graph(node_name="agg", operator=CoordinateWiseMedian(),
                                           input_keys=("gradients",))
        scheduler = NodeScheduler(graph, pool=pool, metadata={"n_blocks": 2}, fanout_min_bytes=0)
        out = (await scheduler.run({"gradients": list(x)}))["agg"]
        np.testing.assert_allclose(out, CoordinateWiseMedian().aggregate(x))

        # vectors held by the workers, aggregated block by block where they lie
        futures = await pool.client.scatter(list(x), hash=False)
        got = await aggregate_blocks_async(GeometricMedian(), futures, client=pool.client, block_columns=1000,
                                           timeout=60)
        np.testing.assert_allclose(got, GeometricMedian().aggregate(x), rtol=1e-5, atol=1e-6)
