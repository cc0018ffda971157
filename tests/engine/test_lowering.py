"""Lowering: the Dask graph a computation graph becomes, placement, thresholds (no cluster)."""

import dask
import numpy as np
import pytest
import torch
from dask.task_spec import DataNode, List, Task, TaskRef

from byzdask.aggregators.average import Average
from byzdask.engine.graph.graph import ComputationGraph, GraphNode, graph_input
from byzdask.engine.graph.lowering import (
    DEFAULT_FANOUT_MIN_BYTES,
    FANOUT_MIN_BYTES_KEY,
    Placement,
    contains_future,
    fanout_min_bytes,
    lower,
    nbytes_of,
    plan_nodes,
    resolve_placement,
    scatter_min_bytes,
    to_task_arg,
)
from byzdask.engine.graph.ops import (
    CallableOp,
    RemoteCallableOp,
    make_single_operator_graph,
)
from byzdask.errors import CapabilityError, ConfigurationError


class FakePool:
    size = 3

    def workers_with(self, capability):
        return {"cpu": ["tcp://a", "tcp://b"], "gpu": ["tcp://b"]}.get(capability, [])

    def worker_named(self, name):
        return {"alpha": "tcp://a"}[name]


def test_nbytes_of_counts_arrays_in_containers():
    assert nbytes_of(np.zeros(3, dtype=np.float32)) == 12
    assert nbytes_of(torch.zeros(3, dtype=torch.float64)) == 24
    assert nbytes_of([np.zeros(2), (np.zeros(1),), {"a": np.zeros(1)}]) == 32
    assert nbytes_of("text") == 0 and nbytes_of(3) == 0


def test_contains_future_and_task_args():
    ref = TaskRef("k")
    assert contains_future(ref) and contains_future([1, ref]) and contains_future({"a": (ref,)})
    assert not contains_future([1, np.zeros(2)])
    assert to_task_arg(ref) is ref and to_task_arg([1, 2]) == [1, 2]
    assert isinstance(to_task_arg([1, ref]), List)
    assert isinstance(to_task_arg({"a": ref}), Task)
    with pytest.raises(ConfigurationError, match="string keys"):
        to_task_arg({1: ref})
    dsk = {"k": DataNode("k", 5), "out": Task("out", lambda x, y: (x, y), to_task_arg([ref, 1]),
                                               to_task_arg({"a": ref}))}
    assert dask.get(dsk, "out") == ([5, 1], {"a": 5})


def test_thresholds_come_from_dask_config():
    assert fanout_min_bytes() == DEFAULT_FANOUT_MIN_BYTES
    with dask.config.set({FANOUT_MIN_BYTES_KEY: "2 MiB", "byzdask.scheduler.scatter-min-bytes": 10}):
        assert fanout_min_bytes() == 2 * 2**20
        assert scatter_min_bytes() == 10
    with dask.config.set({FANOUT_MIN_BYTES_KEY: "lots"}), pytest.raises(ConfigurationError, match="lots"):
        fanout_min_bytes()
    with dask.config.set({FANOUT_MIN_BYTES_KEY: -1}), pytest.raises(ConfigurationError, match=">= 0"):
        fanout_min_bytes()


def test_placements():
    pool = FakePool()
    assert resolve_placement(pool, None, 2) == Placement(retries=2)
    assert resolve_placement(None, "gpu") == Placement()
    assert resolve_placement(pool, "gpu").annotations() == {"resources": {"gpu": 1}}
    assert resolve_placement(pool, "alpha", 1).annotations() == {"workers": ["tcp://a"], "retries": 1}
    with pytest.raises(CapabilityError, match="'tpu'.*cpu: 2 workers, gpu: 1 workers"):
        resolve_placement(pool, "tpu", what="node 'x'")

    class NoGpu(FakePool):
        def workers_with(self, capability):
            return ["tcp://a"] if capability == "cpu" else []

    with pytest.raises(CapabilityError, match="node 'x' needs capability 'gpu'"):
        resolve_placement(NoGpu(), "gpu", what="node 'x'")


def test_one_task_per_node_and_inputs_as_data_nodes(rng):
    graph = ComputationGraph([
        GraphNode("a", CallableOp(lambda v: v + 1, input_mapping={"v": "v"}), {"v": graph_input("x")}),
        GraphNode("b", CallableOp(lambda v, w: v * w, input_mapping={"v": "v", "w": "w"}),
                  {"v": "a", "w": graph_input("x")}),
    ])
    values = {"x": 3}
    plans = plan_nodes(graph, values, pool=None, metadata={"round": 1}, min_bytes=0)
    lowered = lower(graph, values, plans, "tok")
    assert set(lowered.tasks) == {"input-x-tok", "a-tok", "b-tok"}
    assert lowered.tasks["b-tok"].dependencies == {"a-tok", "input-x-tok"}
    assert lowered.outputs == {"b": "b-tok"}
    assert dask.get(lowered.tasks, "b-tok") == 12
    assert plans["a"].context.metadata == {"round": 1} and plans["a"].context.node_name == "a"


def test_fan_out_needs_a_pool_subtasks_and_enough_bytes(rng):
    x = [rng.standard_normal(64) for _ in range(5)]
    graph = make_single_operator_graph(node_name="agg", operator=Average(), input_keys=("gradients",))
    meta = {"n_blocks": 4}
    assert not plan_nodes(graph, {"gradients": x}, pool=None, metadata=meta, min_bytes=0)["agg"].fanned_out
    assert not plan_nodes(graph, {"gradients": x}, pool=FakePool(), metadata=meta,
                          min_bytes=nbytes_of(x) + 1)["agg"].fanned_out
    plans = plan_nodes(graph, {"gradients": x}, pool=FakePool(), metadata=meta, min_bytes=nbytes_of(x))
    assert plans["agg"].fanned_out and len(plans["agg"].subtasks) == 4
    assert plans["agg"].context.metadata["pool_size"] == 3
    lowered = lower(graph, {"gradients": x}, plans, "t")
    assert len(lowered.node_keys["agg"]) == 5 and lowered.outputs["agg"] == "agg-t"
    np.testing.assert_allclose(dask.get(lowered.tasks, "agg-t"), np.mean(x, axis=0))
    hlg = lowered.to_high_level_graph()
    np.testing.assert_allclose(dask.get(hlg, "agg-t"), np.mean(x, axis=0))


def test_nodes_reading_other_nodes_or_futures_do_not_fan_out(rng):
    x = [rng.standard_normal(64) for _ in range(5)]
    graph = ComputationGraph([
        GraphNode("copy", CallableOp(lambda v: list(v), input_mapping={"v": "v"}), {"v": graph_input("x")}),
        GraphNode("agg", Average(), {"gradients": "copy"}),
        GraphNode("agg2", Average(), {"gradients": graph_input("f")}),
    ])
    plans = plan_nodes(graph, {"x": x, "f": [TaskRef("k")]}, pool=FakePool(), metadata={}, min_bytes=0)
    assert not plans["agg"].fanned_out and not plans["agg2"].fanned_out


def test_annotations_reach_the_high_level_graph():
    graph = ComputationGraph([GraphNode("g", RemoteCallableOp(lambda: 1, affinity="gpu", max_retries=3), {})])
    plans = plan_nodes(graph, {}, pool=FakePool(), metadata={}, min_bytes=0)
    hlg = lower(graph, {}, plans, "t").to_high_level_graph()
    assert hlg.layers["g-t"].annotations == {"resources": {"gpu": 1}, "retries": 3}


def test_capability_errors_are_raised_while_planning():
    graph = ComputationGraph([GraphNode("g", RemoteCallableOp(lambda: 1, affinity="tpu"), {})])
    with pytest.raises(CapabilityError, match="node 'g' needs capability 'tpu'"):
        plan_nodes(graph, {}, pool=FakePool(), metadata={}, min_bytes=0)
