import pytest
import torch

from byzdask.aggregators import Average, CoordinateWiseTrimmedMean
from byzdask.attacks.sign_flip import SignFlipAttack
from byzdask.data import load_digits, partition_dataset
from byzdask.engine.fedavg import FedAvg, sample_clients
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.node import ByzantineNode
from byzdask.engine.node.training import make_honest_nodes
from byzdask.errors import ConfigurationError
from byzdask.models import build_model
from byzdask.train import TrainConfig, run_training


@pytest.fixture(scope="module")
def split():
    return load_digits(seed=0)


def _job(split, aggregator, byzantine=0, attack=None, **kw):
    model = build_model("logreg", input_shape=(64,), num_classes=10, seed=0)
    honest = make_honest_nodes(partition_dataset(split.train, 8, seed=0), model, batch_size=16, seed=0)
    byz = [ByzantineNode(attack or SignFlipAttack(), node_id=8 + j) for j in range(byzantine)]
    return FedAvg(honest, byz, aggregator, lr=0.1, local_steps=3, test_data=split.test, **kw)


def test_fedavg_learns_with_sampling_and_local_steps(split):
    fl = _job(split, Average(), participation=0.5)
    start = fl.evaluate()[0]
    history = fl.run_sync(15, eval_every=15, progress=False)
    assert start < 0.3 and history[-1]["accuracy"] > 0.85
    assert sum(n.step for n in fl.honest_nodes) == 15 * 4 * 3  # 4 clients x 3 local steps per round


def test_robust_rule_survives_where_average_fails(split):
    results = {}
    for name, rule in (("average", Average()), ("cwtm", CoordinateWiseTrimmedMean(f=3))):
        # 3 of 11 clients send ten times the negated mean of the honest updates
        fl = _job(split, rule, byzantine=3, attack=_Scaled(SignFlipAttack()))
        results[name] = fl.run_sync(15, eval_every=15, progress=False)[-1]["accuracy"]
    assert results["average"] < 0.3 and results["cwtm"] > 0.8, results


class _Scaled(SignFlipAttack):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def apply(self, **kwargs):
        return 10.0 * self.inner.apply(**kwargs)


def test_pool_equals_in_process(split):
    local = _job(split, CoordinateWiseTrimmedMean(f=1), byzantine=1, clients_per_round=5)
    local.run_sync(3, eval_every=3, progress=False)
    pool = ActorPool(ActorPoolConfig("thread", count=2))
    pool.start_sync()
    try:
        remote = _job(split, CoordinateWiseTrimmedMean(f=1), byzantine=1, clients_per_round=5, actor_pool=pool)
        remote.run_sync(3, eval_every=3, progress=False)
    finally:
        pool.shutdown_sync()
    assert torch.allclose(local.params, remote.params, atol=1e-6)


def test_sampling_is_seeded_and_options_are_checked(split):
    assert sample_clients(10, 4, seed=1, round_index=2) == sample_clients(10, 4, seed=1, round_index=2)
    assert len({tuple(sample_clients(10, 4, seed=1, round_index=r)) for r in range(5)}) > 1
    with pytest.raises(ConfigurationError, match="clients_per_round must be an integer in"):
        _job(split, Average(), clients_per_round=9)
    with pytest.raises(ConfigurationError, match="participation must lie in"):
        _job(split, Average(), participation=0.0)
    with pytest.raises(ConfigurationError, match="local_steps"):
        FedAvg(_job(split, Average()).honest_nodes, [], Average(), local_steps=0)


def test_train_config_runs_fedavg():
    out = run_training(TrainConfig(protocol="fedavg", local_steps=2, participation=0.5, honest=6, byzantine=1,
                                   attack="signflip", lr=0.2, momentum=0.0, rounds=15, eval_every=15,
                                   cluster="none"), progress=False)
    assert out["final_accuracy"] > 0.8, out["final_accuracy"]
    with pytest.raises(ConfigurationError, match="fedavg"):
        run_training(TrainConfig(protocol="fedavg", mode="p2p", rounds=1, cluster="none"), progress=False)


def test_cli_and_sweep_take_fedavg(tmp_path):
    from click.testing import CliRunner

    from byzdask.cli import main
    from byzdask.experiments.config import SweepConfig

    result = CliRunner().invoke(main, ["train", "--no-progress", "--cluster", "none", "--protocol", "fedavg",
                                       "--local-steps", "2", "--clients-per-round", "4", "--rounds", "3",
                                       "--honest", "6", "--byzantine", "1", "--attack", "signflip"])
    assert result.exit_code == 0, result.output
    cfg = SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1, 3]},
                                 "training": {"honest": 8, "protocol": "fedavg", "clients_per_round": 3,
                                              "local_steps": 2}})
    points = cfg.points()
    assert points[0].train_config().protocol == "fedavg" and points[0].train_config().clients_per_round == 3
    # the rule sees 3 sampled clients + f Byzantine: f=3 gives n=6, too few for cwtm (n=11 would do)
    assert points[0].skip_reason is None and "with n=6; this point has f=3" in points[1].skip_reason
