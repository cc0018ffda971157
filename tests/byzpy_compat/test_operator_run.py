"""Operator.run as ByzPy's users call it: awaitable, compute or subtasks on a pool, fallbacks."""

import numpy as np
import pytest

from byzdask.aggregators import MultiKrum
from byzdask.engine.graph.operator import OpContext, Operator
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.graph.subtask import SubTask

pytestmark = pytest.mark.timeout(60)


class _CountingPool:
    """A ByzPy-style pool (``size``, ``run_subtask``), run in this process: counts what it ran."""

    def __init__(self, size):
        self.size = size
        self.ran = []

    async def run_subtask(self, task):
        self.ran.append(task.name)
        return task.run()


def _triple(v):
    return 3 * v


class _Parts(Operator):
    supports_subtasks = True

    def __init__(self, make_tasks=True):
        self.make_tasks = make_tasks
        self.computed = 0

    def compute(self, inputs, *, context=None):
        self.computed += 1
        return 3 * sum(inputs["parts"]) - 1

    def create_subtasks(self, inputs, *, context=None):
        if not self.make_tasks:
            return []
        return [SubTask(_triple, args=(v,), name=f"p{i}") for i, v in enumerate(inputs["parts"])]

    def reduce_subtasks(self, partials, inputs, *, context=None):
        async def later():  # an awaitable reduce is awaited
            return sum(partials) - 1
        return later()


async def test_run_without_pool_computes_and_awaits_awaitables():
    class Later(Operator):
        def compute(self, inputs, *, context=None):
            async def value():
                return inputs["v"] + 0.5
            return value()

    assert await Later().run({"v": 2}, context=OpContext("n"), pool=None) == 2.5
    op = _Parts()
    assert await op.run({"parts": [1, 2]}, context=OpContext("n")) == 8 and op.computed == 1


async def test_run_fans_out_on_a_pool_of_several_and_reduces():
    op, pool = _Parts(), _CountingPool(size=3)
    assert await op.run({"parts": [4, 5, 6, 7]}, context=OpContext("n"), pool=pool) == 65
    assert pool.ran == ["p0", "p1", "p2", "p3"] and op.computed == 0


@pytest.mark.parametrize("size, make_tasks", [(1, True), (4, False)])
async def test_run_falls_back_to_compute(size, make_tasks):
    op, pool = _Parts(make_tasks), _CountingPool(size=size)
    assert await op.run({"parts": [2, 2]}, context=OpContext("n"), pool=pool) == 11
    assert op.computed == 1 and pool.ran == []


async def test_rule_run_on_a_byzdask_pool_matches_aggregate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 40))
    rule = MultiKrum(2, chunk_size=8)
    async with ActorPool([ActorPoolConfig(backend="thread", count=2)]) as pool:
        out = await rule.run({"gradients": x}, context=OpContext("mk", {"pool_size": pool.size}), pool=pool)
    np.testing.assert_allclose(out, rule.aggregate(x), rtol=1e-10)
