"""The seed's scheduling-layer example, verbatim with ``byzpy`` renamed to ``byzdask``.

A one-node graph with a coordinate-wise median, run by a NodeScheduler on a pool of four
in-process (thread) workers. Run it as ``python examples/seed_example.py``.
"""

import asyncio  # noqa: I001  (the seed's imports are kept in their order)

import numpy as np

from byzdask.engine.graph.ops import make_single_operator_graph
from byzdask.engine.graph.scheduler import NodeScheduler
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.aggregators.coordinate_wise.median import CoordinateWiseMedian


async def main(gradients):
    # Create graph
    aggregator = CoordinateWiseMedian()
    graph = make_single_operator_graph(
        node_name="agg",
        operator=aggregator,
        input_keys=("gradients",)
    )

    # Create pool and scheduler
    pool = ActorPool([ActorPoolConfig(backend="thread", count=4)])
    await pool.start()
    scheduler = NodeScheduler(graph, pool=pool)

    # Execute
    results = await scheduler.run({"gradients": gradients})
    aggregated = results["agg"]

    await pool.shutdown()
    return aggregated


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    gradients = [rng.standard_normal(5).astype(np.float32) for _ in range(7)]
    aggregated = asyncio.run(main(gradients))
    print("median of 7 gradients:", np.round(aggregated, 3))
