"""run_operator and OperatorExecutor: in-process, on a pool given, on a pool they start and close."""

import numpy as np
import pytest

import byzdask
from byzdask.aggregators.average import Average
from byzdask.engine.executor import OperatorExecutor, run_operator
from byzdask.engine.graph.ops import CallableOp
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.errors import ConfigurationError, InputError

pytestmark = pytest.mark.timeout(60)


def vectors(rng, n=5, d=6):
    return [rng.standard_normal(d) for _ in range(n)]


def test_exported_from_the_package():
    assert byzdask.run_operator is run_operator and byzdask.OperatorExecutor is OperatorExecutor


async def test_run_operator_in_process(rng):
    g = vectors(rng)
    np.testing.assert_allclose(await run_operator(Average(), {"gradients": g}), np.mean(g, axis=0))
    np.testing.assert_allclose(await run_operator(Average(), g), np.mean(g, axis=0))  # the only input


async def test_run_operator_on_configs_starts_and_closes_a_pool(rng):
    g = vectors(rng)
    seen = []
    op = CallableOp(lambda x: seen.append(1) or x * 2, input_mapping={"x": "x"})
    assert await run_operator(op, {"x": 3}, pool=ActorPoolConfig("thread", count=1)) == 6
    out = await run_operator(Average(), g, pool_config=[ActorPoolConfig("thread", count=2)])
    np.testing.assert_allclose(out, np.mean(g, axis=0))


async def test_executor_keeps_a_given_pool_open(rng):
    g = vectors(rng)
    async with ActorPool(ActorPoolConfig("thread", count=2)) as pool:
        async with OperatorExecutor(Average(), pool=pool, fanout_min_bytes=0, metadata={"n_blocks": 2}) as ex:
            first = await ex.run({"gradients": g})
            second = await ex.run(g)
        assert pool.running  # not closed by the executor
    np.testing.assert_allclose(first, np.mean(g, axis=0))
    np.testing.assert_allclose(second, first)


async def test_executor_owns_the_pool_it_starts(rng):
    ex = OperatorExecutor(Average(), pool=[ActorPoolConfig("thread", count=1)])
    assert ex.pool is None
    async with ex:
        pool = ex.pool
        assert pool.running
        await ex.run(vectors(rng))
    assert not pool.running and ex.pool is None


def test_executor_sync_use_with_a_pool(rng):
    g = vectors(rng)
    with OperatorExecutor(Average(), pool=ActorPoolConfig("thread", count=2)) as ex:
        pool = ex.pool
        out = ex.run_sync(g, timeout=30)
        again = ex.run_sync({"gradients": g}, timeout=30)
    np.testing.assert_allclose(out, np.mean(g, axis=0))
    np.testing.assert_allclose(again, out)
    assert not pool.running


def test_executor_errors():
    with pytest.raises(ConfigurationError, match="Operator"):
        OperatorExecutor(len)
    with pytest.raises(ConfigurationError, match="either pool or pool_config"):
        OperatorExecutor(Average(), pool=1, pool_config=2)
    with pytest.raises(ConfigurationError, match="input_keys"):
        OperatorExecutor(Average(), input_keys=[""])
    two = CallableOp(lambda a, b: a + b, input_mapping={"a": "a", "b": "b"})
    with pytest.raises(InputError, match="mapping"):
        OperatorExecutor(two).run_sync([1, 2])
    with pytest.raises(RuntimeError, match="with OperatorExecutor"):
        OperatorExecutor(Average(), pool=ActorPoolConfig("thread")).run_sync([np.ones(1)])
    assert OperatorExecutor(two, input_keys="a").input_keys == ("a",)
    assert "Average" in repr(OperatorExecutor(Average()))
