"""aggregate_blocks: inputs held on a cluster, aggregated block by block along d, never gathered."""

import inspect
import logging

import dask.array as da
import numpy as np
import pytest
import torch
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.aggregators import CoordinateWiseMedian, GeometricMedian, Krum
from byzdask.aggregators.geometric_wise.monna import MoNNA
from byzdask.aggregators.norm_wise.center_clipping import CenteredClipping
from byzdask.engine.blockwise import aggregate_blocks, aggregate_blocks_async
from byzdask.errors import (
    ConfigurationError,
    InputError,
    NonFiniteError,
    ToleranceError,
)
from byzdask.pre_aggregators import NearestNeighborMixing, RobustAggregator
from byzdask.registry import AGGREGATORS, resolve

pytestmark = pytest.mark.timeout(120)


def build(name):
    cls = resolve("aggregator", name)
    params = inspect.signature(cls).parameters
    kwargs = {p: v for p, v in (("f", 2), ("c_tau", 1.0), ("seed", 0)) if p in params}
    rule = cls(**kwargs)
    if rule.f is not None and rule.f > rule.max_f(9):  # Bulyan: the largest f it takes of 9
        rule = cls(**{**kwargs, "f": rule.max_f(9)})
    return rule


class MaxResult(SchedulerPlugin):
    """Records the largest task result held by any worker."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.largest = 0

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            ts = self.scheduler.tasks.get(key)
            if ts is not None:
                self.largest = max(self.largest, ts.get_nbytes())


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(processes=False, protocol="tcp", host="127.0.0.1", n_workers=2, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as c:
        yield c


def gradients(rng, n=9, d=40, bad_row=None, bad_cols=slice(None)):
    x = rng.standard_normal((n, d)).astype(np.float32)
    if bad_row is not None:
        x[bad_row, bad_cols] = np.nan
    return x


def close(got, want, rule=""):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5, err_msg=rule)


# -- the same result as the direct path, for every rule --------------------------------------


@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_every_rule_equals_the_direct_path(client, rng, name):
    """Uneven blocks with NaN in a single block only (the second pass), and NaN in one row everywhere."""
    for chunk, bad_cols in ((7, slice(3, 5)), (16, slice(None))):
        x = gradients(rng, bad_row=4, bad_cols=bad_cols)
        rule, reference = build(name), build(name)
        got = aggregate_blocks(rule, da.from_array(x, chunks=(5, chunk)), client=client,
                               allow_gather=rule.kind not in ("columnwise", "gram"))  # a direct rule gathers
        want = reference.aggregate(x)
        if name == "average":  # a mean propagates NaN
            assert np.isnan(got).any() and np.array_equal(np.isnan(got), np.isnan(want))
            got, want = np.nan_to_num(got), np.nan_to_num(want)
        close(got, want, f"{name}, chunk {chunk}")
        assert got.dtype == np.float32 and got.shape == (40,)


@settings(max_examples=6, deadline=None)
@given(n=st.integers(5, 9), d=st.integers(1, 30), chunk=st.integers(1, 12),
       rule=st.sampled_from(["cwtm", "krum", "gm", "meamed"]), seed=st.integers(0, 2**16))
def test_random_shapes_and_chunks(client, n, d, chunk, rule, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    op = resolve("aggregator", rule)(**({"f": 1} if rule != "gm" else {}))
    got = aggregate_blocks(op, da.from_array(x, chunks=(n, chunk)), client=client)
    close(got, op.aggregate(x), rule)


def test_per_vector_shape_and_float64(client, rng):
    x = rng.standard_normal((7, 3, 4))
    for rule in (CoordinateWiseMedian(), Krum(f=1), GeometricMedian()):
        got = aggregate_blocks(rule, da.from_array(x, chunks=(7, 2, 4)), client=client)
        assert got.shape == (3, 4) and got.dtype == np.float64
        close(got, rule.aggregate(x))


# -- inputs: futures, torch, lists of dask arrays, lazy results ---------------------------------


def test_list_of_futures(client, rng):
    vectors = list(gradients(rng, n=7, d=30))
    futures = client.scatter(vectors, hash=False)
    for rule in (CoordinateWiseMedian(), GeometricMedian(), MoNNA(f=2, reference_index=3)):
        for columns in (8, None):
            close(aggregate_blocks(rule, futures, client=client, block_columns=columns), rule.aggregate(vectors))


def test_torch_futures_give_a_torch_result(client, rng):
    vectors = [torch.from_numpy(v.reshape(5, 6)) for v in gradients(rng, n=7, d=30)]
    futures = client.scatter(vectors, hash=False)
    got = aggregate_blocks(Krum(f=2), futures, client=client, block_columns=7)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == (5, 6)
    close(got.numpy(), Krum(f=2).aggregate(vectors).numpy())


def test_list_of_dask_arrays(client, rng):
    x = gradients(rng, n=7, d=20)
    parts = [da.from_array(v, chunks=6) for v in x]
    close(aggregate_blocks(GeometricMedian(), parts, client=client, block_columns=8), GeometricMedian().aggregate(x))


def test_compute_false_keeps_the_result_on_the_cluster(client, rng):
    x = gradients(rng, n=7, d=20).reshape(7, 4, 5)
    for rule in (CoordinateWiseMedian(), Krum(f=2)):
        out = aggregate_blocks(rule, da.from_array(x, chunks=(7, 2, 5)), client=client, compute=False)
        assert isinstance(out, da.Array) and out.shape == (4, 5)
        close(out.compute(), rule.aggregate(x))


def test_float16_inputs_keep_their_dtype(client, rng):
    x = gradients(rng, n=5, d=12).astype(np.float16)
    got = aggregate_blocks(CoordinateWiseMedian(), da.from_array(x, chunks=(5, 5)), client=client)
    assert got.dtype == np.float16
    close(got, CoordinateWiseMedian().aggregate(x))


def test_centered_clipping_previous_is_carried_between_calls(client, rng):
    blockwise, direct = (CenteredClipping(c_tau=0.5, M=3, init="previous") for _ in range(2))
    for step, compute in enumerate((True, False, True)):
        x = gradients(rng, n=7, d=20) + step
        got = aggregate_blocks(blockwise, da.from_array(x, chunks=(7, 6)), client=client, compute=compute)
        close(np.asarray(got), direct.aggregate(x), f"round {step}")
    blockwise.reset()
    x = gradients(rng, n=7, d=20)
    close(aggregate_blocks(blockwise, da.from_array(x, chunks=(7, 6)), client=client),
          CenteredClipping(c_tau=0.5, M=3, init="previous").aggregate(x))


def test_centered_clipping_previous_of_another_size(client, rng):
    rule = CenteredClipping(c_tau=0.5, init="previous")
    aggregate_blocks(rule, da.from_array(gradients(rng, n=5, d=8), chunks=(5, 3)), client=client)
    with pytest.raises(InputError, match="previous aggregate of 8 coordinates, got vectors of 9"):
        aggregate_blocks(rule, da.from_array(gradients(rng, n=5, d=9), chunks=(5, 3)), client=client)


def test_the_matrix_is_never_held_in_one_place(cluster, client, rng):
    x = rng.standard_normal((8, 4000))
    plugin = MaxResult(cluster.scheduler)
    cluster.scheduler.add_plugin(plugin, name="max-result")
    try:
        for rule in (CoordinateWiseMedian(), GeometricMedian()):
            futures = client.scatter(list(x), hash=False)
            plugin.largest = 0
            aggregate_blocks(rule, futures, client=client, block_columns=1000)
            assert plugin.largest <= x.nbytes // 4 + 1024, (rule, plugin.largest)
    finally:
        cluster.scheduler.remove_plugin(name="max-result")


# -- errors ---------------------------------------------------------------------------------------


def test_too_many_non_finite_rows(client, rng):
    x = gradients(rng, n=7)
    x[[0, 2, 5], 3] = np.inf
    with pytest.raises(NonFiniteError, match="3 of 7 input vectors hold NaN or Inf, more than the 2"):
        aggregate_blocks(Krum(f=2), da.from_array(x, chunks=(7, 10)), client=client)
    x[6, 0] = np.nan
    with pytest.raises(NonFiniteError, match="4 of 7 input vectors hold NaN or Inf, more than the 3"):
        aggregate_blocks(CoordinateWiseMedian(), da.from_array(x, chunks=(7, 10)), client=client)


def test_too_few_inputs(client, rng):
    with pytest.raises(ToleranceError, match="got n=4"):
        aggregate_blocks(Krum(f=2), da.from_array(gradients(rng, n=4), chunks=(4, 10)), client=client)


def test_monna_reference_errors(client, rng):
    x = gradients(rng, n=7, bad_row=1, bad_cols=slice(0, 2))
    with pytest.raises(InputError, match=r"reference vector \(index 1\) holds NaN"):
        aggregate_blocks(MoNNA(f=2, reference_index=1), da.from_array(x, chunks=(7, 10)), client=client)
    with pytest.raises(InputError, match="reference_index=9 but only n=7"):
        aggregate_blocks(MoNNA(f=2, reference_index=9), da.from_array(x, chunks=(7, 10)), client=client)


def test_direct_rules_raise_or_gather(client, rng, caplog):
    x = gradients(rng, n=7)
    rule = RobustAggregator(CoordinateWiseMedian(), NearestNeighborMixing(f=2))
    with pytest.raises(ConfigurationError, match="'direct' rule .* allow_gather=True"):
        aggregate_blocks(rule, da.from_array(x, chunks=(7, 10)), client=client)
    with caplog.at_level(logging.WARNING, logger="byzdask.engine.blockwise"):
        close(aggregate_blocks(rule, da.from_array(x, chunks=(7, 10)), client=client, allow_gather=True),
              rule.aggregate(x))
        futures = client.scatter(list(x), hash=False)
        close(aggregate_blocks(rule, futures, client=client, allow_gather=True), rule.aggregate(x))
    assert "gathering" in caplog.text


@pytest.mark.parametrize("data, message", [
    (np.zeros((3, 4)), "got ndarray"),
    ([np.zeros(4)], "got a ndarray"),
    ([], "empty sequence"),
    (da.zeros(4, chunks=2), r"shape \(n, \.\.\.\)"),
    (da.zeros((3, 4), dtype=np.int32, chunks=2), "got dtype int32"),
    ([da.zeros(4, chunks=2), da.zeros(5, chunks=2)], "one shape"),
])
def test_bad_data(client, data, message):
    with pytest.raises(InputError, match=message):
        aggregate_blocks(CoordinateWiseMedian(), data, client=client)


def test_bad_arguments(client, rng):
    x = da.from_array(gradients(rng), chunks=(9, 10))
    with pytest.raises(InputError, match="block_columns must be a positive integer or None, got 0"):
        aggregate_blocks(CoordinateWiseMedian(), x, client=client, block_columns=0)
    with pytest.raises(InputError, match="rule must be an Aggregator"):
        aggregate_blocks(np.median, x, client=client)


def test_ragged_futures(client):
    futures = client.scatter([np.zeros(4, dtype=np.float32), np.zeros(5, dtype=np.float32)], hash=False)
    with pytest.raises(InputError, match=r"one shape, got \['\(4,\)', '\(5,\)'\]"):
        aggregate_blocks(CoordinateWiseMedian(), futures, client=client)


def test_timeout(client, rng):
    import time

    def slow(block):
        time.sleep(1.0)
        return block

    x = da.from_array(gradients(rng), chunks=(9, 10)).map_blocks(slow)
    with pytest.raises(TimeoutError):
        aggregate_blocks(CoordinateWiseMedian(), x, client=client, timeout=0.05)


# -- the asynchronous variant ------------------------------------------------------------------------


async def test_async_variant(cluster, rng):
    x = gradients(rng, n=7, bad_row=2)
    async with Client(cluster.scheduler_address, asynchronous=True) as client:
        futures = await client.scatter(list(x), hash=False)
        for rule in (CoordinateWiseMedian(), Krum(f=2), GeometricMedian()):
            close(await aggregate_blocks_async(rule, futures, client=client, block_columns=9), rule.aggregate(x))
        with pytest.raises(InputError, match="needs a synchronous client"):
            aggregate_blocks(Krum(f=2), futures, client=client)


async def test_async_variant_needs_an_async_client(client, rng):
    with pytest.raises(InputError, match="needs an asynchronous client"):
        await aggregate_blocks_async(Krum(f=2), da.from_array(gradients(rng), chunks=(9, 10)), client=client)


async def test_node_scheduler_on_a_pool_aggregates_dask_arrays_and_futures_in_blocks(rng):
    from byzdask.engine.graph.ops import make_single_operator_graph
    from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
    from byzdask.engine.graph.scheduler import NodeScheduler

    x = gradients(rng, n=7, bad_row=5)
    graph = make_single_operator_graph(node_name="agg", operator=GeometricMedian(), input_keys=("gradients",))
    async with ActorPool([ActorPoolConfig("thread", count=2)]) as pool:
        scheduler = NodeScheduler(graph, pool=pool, fanout_min_bytes=0)
        out = await scheduler.run({"gradients": da.from_array(x, chunks=(7, 15))})
        close(out["agg"], GeometricMedian().aggregate(x))
        futures = await pool.client.scatter(list(x), hash=False)
        close((await scheduler.run({"gradients": futures}))["agg"], GeometricMedian().aggregate(x))
