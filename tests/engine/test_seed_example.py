"""The seed's example runs verbatim with ``byzpy`` renamed to ``byzdask`` (and as examples/seed_example.py)."""

import ast
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(60)

# Copied from the seed's architecture page; the only change is byzpy -> byzdask.
SEED_EXAMPLE = '''
from byzdask.engine.graph.ops import make_single_operator_graph
from byzdask.engine.graph.scheduler import NodeScheduler
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.aggregators.coordinate_wise.median import CoordinateWiseMedian

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
'''

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed_example.py"


async def test_seed_example_verbatim(rng):
    gradients = [rng.standard_normal(6).astype(np.float32) for _ in range(7)]
    namespace = {"gradients": gradients}
    code = compile(SEED_EXAMPLE, "<seed example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    try:
        await eval(code, namespace)
        assert namespace["pool"].size == 4
        np.testing.assert_allclose(namespace["aggregated"], np.median(np.stack(gradients), axis=0), rtol=1e-6)
        assert namespace["aggregated"].dtype == np.float32
    finally:
        if "pool" in namespace:
            await namespace["pool"].shutdown()


async def test_example_script_main(rng):
    gradients = [rng.standard_normal(4) for _ in range(5)]
    main = runpy.run_path(str(EXAMPLE))["main"]
    np.testing.assert_allclose(await main(gradients), np.median(np.stack(gradients), axis=0))


def test_example_script_runs_as_a_program():
    root = str(EXAMPLE.parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=50, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "median of 7 gradients" in done.stdout
