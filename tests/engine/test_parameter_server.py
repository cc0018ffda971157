"""ParameterServer: the cluster path equals the in-process reference, every rule x attack x chain
runs on a pool, a lost worker changes nothing, and training learns (and Average breaks).

One thread pool serves the module (started with ``start_sync``, closed by the fixture); the
worker-loss test starts and closes its own pool of two worker processes.
"""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest
import torch

from byzdask.aggregators import Average
from byzdask.aggregators.coordinate_wise.trimmed_mean import CoordinateWiseTrimmedMean
from byzdask.attacks.gaussian import GaussianAttack
from byzdask.attacks.inf import InfAttack
from byzdask.data import load_digits, partition_dataset
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.graph.scheduler import run_coroutine_sync
from byzdask.engine.node import ByzantineNode
from byzdask.engine.node.training import InProcessParameterServer, make_honest_nodes
from byzdask.engine.parameter_server import ParameterServer
from byzdask.engine.parameter_server.ps import byzantine_step, honest_step
from byzdask.errors import ConfigurationError
from byzdask.models import build_model
from byzdask.pre_aggregators.nnm import NearestNeighborMixing
from byzdask import registry
from byzdask.registry import AGGREGATORS, ATTACKS
from byzdask.train import TrainConfig, build_job

pytestmark = pytest.mark.timeout(300)

H, B, F = 10, 3, 3


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def split():
    return load_digits(seed=0)


@pytest.fixture(scope="module")
def pool():
    pool = ActorPool(ActorPoolConfig("thread", count=2))
    pool.start_sync()
    yield pool
    pool.shutdown_sync()


def on_pool(pool, make):
    loop = pool.client.loop.asyncio_loop
    return run_coroutine_sync(make, loop=loop, timeout=240)


def nodes(split, *, attack=None, seed=0, momentum=0.9, h=H, b=B, model="logreg"):
    m = build_model(model, input_shape=(64,), num_classes=10, seed=seed)
    shards = partition_dataset(split.train, h, seed=seed)
    honest = make_honest_nodes(shards, m, batch_size=32, momentum=momentum, seed=seed)
    byz = [] if attack is None else [ByzantineNode(attack(j), node_id=h + j) for j in range(b)]
    return honest, byz


# -- equality with the reference ----------------------------------------------------------------
def gaussian(j):
    return GaussianAttack(sigma=5.0, seed=j)


@pytest.mark.parametrize("pre", [(), (NearestNeighborMixing(f=F),)])
def test_pool_equals_in_process_and_reference(split, pool, pre):
    schedule = lambda r: 1.0 / (1.0 + 0.1 * r)
    h, b = nodes(split, attack=gaussian)
    reference = InProcessParameterServer(h, b, aggregator=CoordinateWiseTrimmedMean(f=F), pre_aggregators=pre,
                                         lr=lambda r: 0.5 * schedule(r), weight_decay=1e-3, test=split.test)
    expected = reference.run(6, eval_every=2)
    h, b = nodes(split, attack=gaussian)
    local = ParameterServer(h, b, CoordinateWiseTrimmedMean(f=F), list(pre), lr=0.5, lr_schedule=schedule,
                            weight_decay=1e-3, test_data=split.test)
    assert local.run_sync(6, eval_every=2, progress=False) == expected
    h, b = nodes(split, attack=gaussian)
    remote = ParameterServer(h, b, CoordinateWiseTrimmedMean(f=F), list(pre), lr=0.5, lr_schedule=schedule,
                             weight_decay=1e-3, actor_pool=pool, test_data=split.test)
    assert remote.run_sync(6, eval_every=2, progress=False) == expected
    assert torch.equal(remote.params, reference.params) and torch.equal(local.params, reference.params)
    assert remote.history == expected and remote.round_index == 6
    # close brings the momentum buffers home; the run continues from them, on the pool or not
    on_pool(pool, remote.close)
    assert all(torch.equal(x.momentum_buffer, y.momentum_buffer)
               for x, y in zip(remote.honest_nodes, reference.honest_nodes))
    reference.run(2)
    remote.run_sync(2, progress=False)
    assert torch.equal(remote.params, reference.params)


def test_same_seed_identical_histories_on_pool(split, pool):
    def run():
        h, b = nodes(split, attack=gaussian)
        ps = ParameterServer(h, b, CoordinateWiseTrimmedMean(f=F), lr=0.5, actor_pool=pool, test_data=split.test)
        return ps.run_sync(5, progress=False), ps.params

    (h1, p1), (h2, p2) = run(), run()
    assert h1 == h2 and torch.equal(p1, p2)


def test_seeded_attack_draws_fresh_noise_each_round(split):
    node = ByzantineNode(GaussianAttack(seed=3), node_id=11)
    honest = [torch.zeros(5)]
    a0, _ = byzantine_step(node, None, 0, 0, honest)
    a0_again, _ = byzantine_step(node, None, 0, 0, honest)
    a1, _ = byzantine_step(node, None, 0, 1, honest)
    assert torch.equal(a0, a0_again) and not torch.equal(a0, a1)
    assert node.attack.seed == 3


def test_honest_step_is_pure(split):
    (node, *_), _ = nodes(split, h=2)
    params = node.params()
    first = honest_step(node, params, 0, None)
    assert node.step == 0 and node.momentum_buffer is None
    assert torch.equal(honest_step(node, params, 0, None)[0], first[0])


# -- every rule x attack x chain on the pool ------------------------------------------------------
def _matrix_server(rule, attack, chain, pool=None):
    probe = registry.build("aggregator", rule, {"f": 1, "c_tau": 1.0})
    byzantine = B if probe.f is None else min(B, probe.max_f(H + B))  # Bulyan (n >= 4f + 3): 2 of 12
    n = H + (byzantine if attack != "none" else 0)
    f = byzantine if probe.f is None else min(byzantine, probe.max_f(n))
    config = TrainConfig(aggregator=rule, attack=attack, pre_aggregators=chain, honest=H, byzantine=byzantine, f=f,
                         batch_size=16, seed=1, aggregator_kwargs={"c_tau": 1.0} if rule == "cc" else {})
    job = build_job(config)
    return ParameterServer(job["honest"], job["byzantine"], job["aggregator"], job["pre_aggregators"], lr=0.5,
                           actor_pool=pool)


@pytest.mark.slow
def test_every_rule_and_attack_runs_on_the_pool(pool):
    servers = {(rule, attack): _matrix_server(rule, attack, (), pool)
               for rule in AGGREGATORS for attack in ["none", *ATTACKS]}

    async def run_all():  # all runs at once: their Dask latencies overlap
        await asyncio.gather(*(ps.run(2, progress=False) for ps in servers.values()))
        await asyncio.gather(*(ps.close() for ps in servers.values()))

    on_pool(pool, run_all)
    for (rule, attack), ps in servers.items():
        assert ps.round_index == 2, (rule, attack)
        if rule != "average":
            assert torch.isfinite(ps.params).all(), (rule, attack)


@pytest.mark.slow
@pytest.mark.parametrize("chain", [("nnm",), ("arc", "clipping")])
def test_every_rule_attack_and_chain_in_process(chain):
    for rule in AGGREGATORS:
        for attack in ["none", *ATTACKS]:
            ps = _matrix_server(rule, attack, chain)
            rounds = 1 if rule == "average" else 2  # Average is wrecked by inf after one round
            ps.run_sync(rounds, progress=False)
            assert ps.round_index == rounds
            if rule != "average":
                assert torch.isfinite(ps.params).all(), (rule, attack, chain)


# -- a lost worker ------------------------------------------------------------------------------
@pytest.mark.slow
def test_survives_the_loss_of_a_worker(split):
    h, b = nodes(split, attack=gaussian)
    reference = InProcessParameterServer(h, b, aggregator=CoordinateWiseTrimmedMean(f=F), lr=0.5, test=split.test)
    expected = reference.run(6, eval_every=3)
    pool = ActorPool(ActorPoolConfig("process", count=2))
    client = pool.start_sync()
    try:
        h, b = nodes(split, attack=gaussian)
        ps = ParameterServer(h, b, CoordinateWiseTrimmedMean(f=F), lr=0.5, actor_pool=pool, test_data=split.test)
        first = ps.run_sync(3, eval_every=3, progress=False)
        pids = client.run(os.getpid)
        victim = min(pids)
        os.kill(pids[victim], signal.SIGKILL)
        second = ps.run_sync(3, eval_every=3, progress=False)
        assert first + second == expected
        assert torch.equal(ps.params, reference.params)
    finally:
        pool.shutdown_sync()


# -- learning (in-process: the pool path is proven equal above) ------------------------------------
ROUNDS = 30
SEEDS = (0, 1, 2)


def _accuracy(split, rule, attack, seed, pre=()):
    kwargs = {"c_tau": 1.0} if rule == "cc" else {}
    config = TrainConfig(aggregator=rule, attack=attack, pre_aggregators=pre, seed=seed, aggregator_kwargs=kwargs,
                         attack_kwargs={"sigma": 200.0} if attack == "gaussian" else {})
    job = build_job(config)
    ps = ParameterServer(job["honest"], job["byzantine"], job["aggregator"], job["pre_aggregators"], lr=0.5,
                         test_data=job["split"].test)
    return ps.run_sync(ROUNDS, eval_every=ROUNDS, progress=False)[-1]["accuracy"]


@pytest.fixture(scope="module")
def clean(split):
    return {rule: np.mean([_accuracy(split, rule, "none", s) for s in SEEDS]) for rule in ("cwtm", "average")}


def test_learns_without_attack(clean):
    assert clean["cwtm"] >= 0.9 and clean["average"] >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_robust_rule_stays_within_five_points(split, clean, attack):
    accuracy = np.mean([_accuracy(split, "cwtm", attack, s) for s in SEEDS])
    assert accuracy >= clean["cwtm"] - 0.05, (attack, accuracy, clean["cwtm"])
    chained = _accuracy(split, "cwtm", attack, 0, pre=("nnm",))
    assert chained >= clean["cwtm"] - 0.05, (attack, chained)


@pytest.mark.parametrize("attack", ["inf", "gaussian"])
def test_average_falls_under_attack(split, attack):
    assert np.mean([_accuracy(split, "average", attack, s) for s in SEEDS]) < 0.3


# -- interface and errors -------------------------------------------------------------------------
def test_run_callback_history_and_async_round(split):
    h, b = nodes(split, attack=lambda j: InfAttack(), momentum=0.0, h=4, b=1)
    ps = ParameterServer(h, b, CoordinateWiseTrimmedMean(f=1), lr=0.5, test_data=split.test)
    seen = []
    out = ps.run_sync(4, eval_every=3, callback=seen.append, progress=True)
    assert [r["round"] for r in out] == [3, 4] and seen == out == ps.history
    info = asyncio.run(ps.round())
    assert info["round"] == 5 and info["lr"] == 0.5 and np.isfinite(info["aggregate_norm"])
    assert ps.run_sync(0, progress=False) == []
    assert "ParameterServer(4 honest, 1 Byzantine" in repr(ps)


def test_configuration_errors(split):
    h, _ = nodes(split, h=2)
    with pytest.raises(ConfigurationError, match="Aggregator"):
        ParameterServer(h, [], "average")
    with pytest.raises(ConfigurationError, match="lr must"):
        ParameterServer(h, [], Average(), lr=0)
    with pytest.raises(ConfigurationError, match="weight_decay"):
        ParameterServer(h, [], Average(), weight_decay=-1.0)
    with pytest.raises(ConfigurationError, match="lr_schedule"):
        ParameterServer(h, [], Average(), lr_schedule=3)
    with pytest.raises(ConfigurationError, match="pre_aggregator"):
        ParameterServer(h, [], Average(), pre_aggregator="nnm")
    with pytest.raises(ConfigurationError, match="PreAggregator"):
        ParameterServer(h, [], Average(), pre_aggregator=[Average()])
    with pytest.raises(ConfigurationError, match="test_data"):
        ParameterServer(h, [], Average(), test_data=[1])
    with pytest.raises(ConfigurationError, match="ActorPool"):
        ParameterServer(h, [], Average(), actor_pool="local")
    with pytest.raises(ConfigurationError, match="params has 3"):
        ParameterServer(h, [], Average(), params=torch.zeros(3))
    with pytest.raises(ConfigurationError, match="at least one honest"):
        ParameterServer([], [], Average())
    ps = ParameterServer(h, [], Average())
    with pytest.raises(ConfigurationError, match="no test split"):
        ps.evaluate()
    with pytest.raises(ConfigurationError, match="rounds"):
        ps.run_sync(-1)
    with pytest.raises(ConfigurationError, match="eval_every"):
        ps.run_sync(1, eval_every=0)
