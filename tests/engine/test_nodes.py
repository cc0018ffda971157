import copy
import pickle

import numpy as np
import pytest
import torch
from torch.nn import functional

from byzdask.aggregators import Average
from byzdask.aggregators.coordinate_wise.trimmed_mean import CoordinateWiseTrimmedMean
from byzdask.attacks.base import Attack
from byzdask.attacks.gaussian import GaussianAttack
from byzdask.attacks.inf import InfAttack
from byzdask.attacks.label_flip import LabelFlipAttack
from byzdask.attacks.sign_flip import SignFlipAttack
from byzdask.data import load_digits, partition_dataset
from byzdask.engine.node import ByzantineNode, HonestNode, batch_indices, evaluate_model
from byzdask.engine.node.training import (
    InProcessParameterServer,
    InProcessPeerToPeer,
    consensus_distance,
    make_honest_nodes,
    robust_aggregate,
    sgd_update,
)
from byzdask.engine.peer_to_peer.topology import Topology
from byzdask.errors import ConfigurationError, InputError
from byzdask.models import build_model, get_flat_params, set_flat_params
from byzdask.pre_aggregators.nnm import NearestNeighborMixing


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # tiny models: a second intra-op thread only adds contention on a loaded 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def split():
    return load_digits(seed=0)


def logreg(seed=0):
    return build_model("logreg", input_shape=(64,), num_classes=10, seed=seed)


def honest(split, n=10, *, seed=0, momentum=0.0, batch_size=32, model="logreg", kind="iid"):
    m = build_model(model, input_shape=(64,), num_classes=10, seed=seed)
    shards = partition_dataset(split.train, n, kind=kind, alpha=0.5, seed=seed)
    return make_honest_nodes(shards, m, batch_size=batch_size, momentum=momentum, seed=seed)


def reference_gradient(model, x, y):
    model = copy.deepcopy(model)
    loss = functional.cross_entropy(model(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


# -- honest node -------------------------------------------------------------------------------
def test_gradient_is_the_minibatch_gradient(split):
    node = HonestNode(logreg(), split.train.subset(range(200)), batch_size=16, seed=4)
    idx = torch.from_numpy(batch_indices(200, 16, seed=4, step=0))
    expected = reference_gradient(node.model, split.train.x[idx], split.train.y[idx])
    g = node.gradient()
    assert g.dtype == torch.float32 and torch.allclose(g, expected, atol=1e-6)
    assert node.step == 1


def test_momentum_follows_byzfl_convention(split):
    beta = 0.8
    plain = HonestNode(logreg(), split.train.subset(range(300)), batch_size=16, seed=1)
    mom = HonestNode(logreg(), split.train.subset(range(300)), batch_size=16, seed=1, momentum=beta)
    m = torch.zeros(650)
    for _ in range(4):
        g = plain.gradient()
        m = beta * m + (1 - beta) * g
        assert torch.allclose(mom.gradient(), m, atol=1e-6)
    assert torch.allclose(mom.momentum_buffer, m, atol=1e-6)


def test_same_seed_same_gradients_and_pickle_midway(split):
    a, b = honest(split, 2, momentum=0.9)[0], honest(split, 2, momentum=0.9)[0]
    for _ in range(3):
        assert torch.equal(a.gradient(), b.gradient())
    c = pickle.loads(pickle.dumps(a))
    assert torch.equal(a.gradient(), c.gradient())
    other = honest(split, 2, momentum=0.9, seed=1)[0]
    assert not torch.equal(b.gradient(), other.gradient())


def test_gradient_at_is_pure(split):
    node = honest(split, 3, momentum=0.5)[1]
    params = node.params() + 0.1
    v1, buf1 = node.gradient_at(params, step=7, buffer=torch.ones(650))
    assert node.step == 0 and node.momentum_buffer is None
    v2, buf2 = node.gradient_at(params, step=7, buffer=torch.ones(650))
    assert torch.equal(v1, v2) and torch.equal(buf1, buf2)
    raw, none = HonestNode(node.model, node.data, seed=node.seed, batch_size=32).gradient_at(params, step=7)
    assert none is None and torch.allclose(v1, 0.5 * torch.ones(650) + 0.5 * raw, atol=1e-6)


def test_local_step_and_params(split):
    node = honest(split, 3)[0]
    twin = copy.deepcopy(node)
    start = node.params()
    new = node.local_step(0.5, weight_decay=0.1)
    g = twin.gradient()
    assert torch.allclose(new, start - 0.5 * (g + 0.1 * start), atol=1e-6)
    assert torch.equal(node.params(), new)
    node.set_params(np.zeros(650, dtype=np.float64))
    assert float(node.params().abs().sum()) == 0.0


def test_evaluate(split):
    node = honest(split, 3)[0]
    acc, loss = node.evaluate(split.test.x, split.test.y)
    assert 0.0 <= acc <= 1.0 and loss > 0
    model = logreg()
    set_flat_params(model, torch.full((650,), float("nan")))
    acc, loss = evaluate_model(model, split.test.x, split.test.y)
    assert acc == 0.0 and np.isnan(loss)
    with pytest.raises(InputError):
        evaluate_model(model, split.test.x[:0], split.test.y[:0])


def test_batch_larger_than_shard_uses_whole_shard(split):
    node = HonestNode(logreg(), split.train.subset(range(5)), batch_size=64)
    x, y = node.sample_batch(0)
    assert x.shape[0] == 5 and sorted(y.tolist()) == sorted(split.train.y[:5].tolist())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_size": 0}, "batch_size"), ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"),
    ({"seed": -1}, "seed"), ({"node_id": 1.5}, "node_id"),
])
def test_honest_configuration_errors(split, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        HonestNode(logreg(), split.train, **kwargs)


def test_honest_needs_model_and_data(split):
    with pytest.raises(ConfigurationError, match="model"):
        HonestNode(None, split.train)
    with pytest.raises(ConfigurationError, match="Module"):
        HonestNode("model", split.train)
    with pytest.raises(ConfigurationError, match="Dataset"):
        HonestNode(logreg(), (split.train.x, split.train.y))
    with pytest.raises(ConfigurationError, match="empty"):
        HonestNode(logreg(), split.train.subset([]))


class Recorder(Attack):
    uses_honest_grads = True
    uses_base_grad = True
    uses_model_batch = True

    def apply(self, **kwargs):
        self.seen = kwargs
        return torch.zeros(650)


# -- Byzantine node ----------------------------------------------------------------------------
def test_byzantine_routes_only_flagged_inputs(split):
    inf = ByzantineNode(InfAttack())
    grads = [torch.ones(650), torch.zeros(650)]
    out = inf.attack_vector(honest_grads=grads, base_grad=torch.ones(650))
    assert torch.isinf(out).all() and out.shape == (650,)
    rec = Recorder()
    node = ByzantineNode(rec, model=logreg(), data=split.train.subset(range(50)), seed=2)
    node.attack_vector(honest_grads=grads)
    assert set(rec.seen) == {"honest_grads", "base_grad", "model", "x", "y"}
    assert rec.seen["x"].shape == (32, 64) and rec.seen["model"] is node.model
    assert node.step == 2  # one batch for the base gradient, one for the model-batch input


def test_byzantine_base_gradient_and_fallback(split):
    data = split.train.subset(range(100))
    node = ByzantineNode(SignFlipAttack(), model=logreg(), data=data, seed=5)
    idx = torch.from_numpy(batch_indices(100, 32, seed=5, step=0))
    expected = -reference_gradient(node.model, data.x[idx], data.y[idx])
    assert torch.allclose(node.attack_vector(honest_grads=[torch.ones(650)]), expected, atol=1e-6)
    bare = ByzantineNode(SignFlipAttack())
    assert torch.equal(bare.attack_vector(honest_grads=[torch.ones(650), 3 * torch.ones(650)]), -2 * torch.ones(650))
    assert torch.equal(bare.attack_vector(base_grad=torch.ones(3)), -torch.ones(3))


def test_byzantine_label_flip_uses_own_batch(split):
    data = split.train.subset(range(100))
    node = ByzantineNode(LabelFlipAttack(num_classes="auto"), model=logreg(), data=data, seed=5)
    idx = torch.from_numpy(batch_indices(100, 32, seed=5, step=0))
    expected = reference_gradient(node.model, data.x[idx], 9 - data.y[idx])
    assert torch.allclose(node.attack_vector(), expected, atol=1e-6)


def test_byzantine_errors():
    with pytest.raises(ConfigurationError, match="Attack"):
        ByzantineNode("inf")
    with pytest.raises(InputError, match="honest_grads"):
        ByzantineNode(InfAttack()).attack_vector()
    with pytest.raises(InputError, match="empty"):
        ByzantineNode(InfAttack()).attack_vector(honest_grads=[])
    with pytest.raises(InputError, match="base_grad"):
        ByzantineNode(SignFlipAttack()).attack_vector()
    with pytest.raises(InputError, match="model"):
        ByzantineNode(LabelFlipAttack(num_classes="auto")).attack_vector()
    with pytest.raises(InputError, match="data shard"):
        ByzantineNode(LabelFlipAttack(num_classes="auto"), model=logreg()).attack_vector()
    with pytest.raises(ConfigurationError, match="no model"):
        ByzantineNode(InfAttack()).params()


# -- step functions ------------------------------------------------------------------------------
def test_step_functions():
    vecs = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]), torch.tensor([100.0, 0.0])]
    assert robust_aggregate(vecs, CoordinateWiseTrimmedMean(f=1)).tolist() == [3.0, 0.0]
    assert robust_aggregate([np.array([1.0, 2.0])], Average()).dtype == torch.float32
    with pytest.raises(InputError):
        robust_aggregate([], Average())
    assert sgd_update(torch.ones(2), torch.ones(2), 0.5, weight_decay=1.0).tolist() == [0.0, 0.0]
    assert consensus_distance([torch.ones(3)] * 4) == 0.0
    with pytest.raises(InputError):
        consensus_distance([])


# -- parameter-server reference ------------------------------------------------------------------
def ps(split, attack=None, aggregator=None, pre=(), *, seed=0, lr=0.5, momentum=0.0, model="logreg", kind="iid"):
    nodes = honest(split, 10, seed=seed, momentum=momentum, model=model, kind=kind)
    byz = [] if attack is None else [ByzantineNode(attack(j), node_id=10 + j) for j in range(3)]
    return InProcessParameterServer(nodes, byz, aggregator=aggregator or Average(), pre_aggregators=pre, lr=lr,
                                    test=split.test)


def test_ps_learns_without_attack(split):
    history = ps(split).run(20, eval_every=10)
    assert [h["round"] for h in history] == [10, 20]
    assert history[-1]["accuracy"] >= 0.9


def test_ps_learns_mlp_with_momentum_on_non_iid(split):
    history = ps(split, lr=1.0, momentum=0.9, model="mlp", kind="dirichlet").run(40, eval_every=40)
    assert history[-1]["accuracy"] >= 0.9


def test_ps_same_seed_identical_histories(split):
    def run():
        server = ps(split, lambda j: GaussianAttack(sigma=5.0, seed=j), CoordinateWiseTrimmedMean(f=3),
                    momentum=0.9)
        return server.run(10, eval_every=2), server.params

    (h1, p1), (h2, p2) = run(), run()
    assert h1 == h2 and torch.equal(p1, p2)


@pytest.mark.parametrize("attack", [lambda j: SignFlipAttack(), lambda j: InfAttack(),
                                    lambda j: GaussianAttack(sigma=200.0, seed=j)])
@pytest.mark.parametrize("pre", [(), (NearestNeighborMixing(f=3),)])
def test_ps_robust_rule_learns_under_attack(split, attack, pre):
    history = ps(split, attack, CoordinateWiseTrimmedMean(f=3), pre).run(20, eval_every=20)
    assert history[-1]["accuracy"] >= 0.9


@pytest.mark.parametrize("attack", [lambda j: InfAttack(), lambda j: GaussianAttack(sigma=200.0, seed=j)])
def test_ps_average_breaks_under_attack(split, attack):
    assert ps(split, attack).run(20, eval_every=20)[-1]["accuracy"] < 0.3


def test_ps_callback_params_and_errors(split):
    seen = []
    server = ps(split, lr=lambda r: 0.5 / (1 + r))
    server.run(3, eval_every=5, callback=seen.append)
    assert [s["round"] for s in seen] == [3] and server.round_index == 3
    assert server.round()["lr"] == pytest.approx(0.125)
    nodes = honest(split, 2)
    with pytest.raises(ConfigurationError, match="lr"):
        InProcessParameterServer(nodes, aggregator=Average(), lr=0)
    with pytest.raises(ConfigurationError, match="weight_decay"):
        InProcessParameterServer(nodes, aggregator=Average(), weight_decay=-1)
    with pytest.raises(ConfigurationError, match="Aggregator"):
        InProcessParameterServer(nodes, aggregator="average")
    with pytest.raises(ConfigurationError, match="PreAggregator"):
        InProcessParameterServer(nodes, aggregator=Average(), pre_aggregators=[Average()])
    with pytest.raises(ConfigurationError, match="at least one honest"):
        InProcessParameterServer([], aggregator=Average())
    with pytest.raises(ConfigurationError, match="HonestNode"):
        InProcessParameterServer([ByzantineNode(InfAttack())], aggregator=Average())
    with pytest.raises(ConfigurationError, match="ByzantineNode"):
        InProcessParameterServer(nodes, nodes, aggregator=Average())
    with pytest.raises(ConfigurationError, match="params"):
        InProcessParameterServer(nodes, aggregator=Average(), params=torch.zeros(3))
    with pytest.raises(ConfigurationError, match="test split"):
        InProcessParameterServer(nodes, aggregator=Average()).evaluate()
    with pytest.raises(ConfigurationError, match="rounds"):
        server.run(-1)


# -- peer-to-peer reference ----------------------------------------------------------------------
def test_p2p_learns_and_reaches_consensus(split):
    nodes = honest(split, 8)
    for i, node in enumerate(nodes):  # start apart, so that consensus has something to do
        node.set_params(get_flat_params(logreg(seed=100 + i)))
    p2p = InProcessPeerToPeer(nodes, [], Topology.ring(8, k=2), aggregator=Average(), lr=0.5, test=split.test)
    infos = [p2p.round() for _ in range(25)]
    assert all(i["mixing"] > 0 for i in infos)
    assert infos[-1]["consensus_distance"] < 0.05 * infos[0]["consensus_before"]
    assert all(i["consensus_distance"] < i["consensus_before"] for i in infos)
    result = p2p.evaluate()
    assert result["worst_accuracy"] >= 0.88 and result["accuracy"] >= 0.9


def test_p2p_robust_under_attack_and_deterministic(split):
    def run():
        top = Topology.complete(13, byzantine=[10, 11, 12])
        byz = [ByzantineNode(GaussianAttack(sigma=50.0, seed=j), node_id=10 + j) for j in range(3)]
        p2p = InProcessPeerToPeer(honest(split, 10), byz, top, aggregator=CoordinateWiseTrimmedMean(f=3), lr=0.5,
                                  test=split.test)
        return p2p.run(20, eval_every=10)

    h1 = run()
    assert h1 == run()
    assert h1[-1]["worst_accuracy"] >= 0.9 and h1[-1]["consensus_distance"] < 1.0


def test_p2p_byzantine_sees_only_in_neighbours(split):
    rec = Recorder()
    top = Topology.from_edges([(0, 2), (1, 2), (2, 0), (2, 1), (0, 1), (1, 0)], 3, byzantine=[2])
    nodes = honest(split, 2)
    p2p = InProcessPeerToPeer(nodes, [ByzantineNode(rec, model=logreg(), data=split.train.subset(range(40)))], top,
                              aggregator=Average(), lr=0.1)
    p2p.round()
    assert len(rec.seen["honest_grads"]) == 2
    assert torch.allclose(rec.seen["base_grad"], torch.stack(rec.seen["honest_grads"]).mean(0))


def test_p2p_per_node_rules_and_errors(split):
    nodes = honest(split, 4)
    top = Topology.ring(4)
    p2p = InProcessPeerToPeer(nodes, [], top, aggregator={i: Average() for i in range(4)},
                              pre_aggregators={i: () for i in range(4)}, lr=0.1)
    assert p2p.round()["round"] == 1
    with pytest.raises(ConfigurationError, match="lacks"):
        InProcessPeerToPeer(nodes, [], top, aggregator={0: Average()})
    with pytest.raises(ConfigurationError, match="3 honest and 1 Byzantine"):
        InProcessPeerToPeer(nodes, [], top.with_byzantine([3]), aggregator=Average())
    with pytest.raises(ConfigurationError, match="Topology"):
        InProcessPeerToPeer(nodes, [], "ring", aggregator=Average())
    with pytest.raises(ConfigurationError, match="test split"):
        p2p.evaluate()


# -- node applications (in-process scheduler) ----------------------------------------------------
def test_honest_application_matches_node(split):
    from byzdask.engine.node.application import HonestNodeApplication

    a, b = honest(split, 2, momentum=0.9)[0], honest(split, 2, momentum=0.9)[0]
    app = HonestNodeApplication(a, aggregator=CoordinateWiseTrimmedMean(f=1), pre_aggregators=[NearestNeighborMixing(f=1)])
    params = b.params() * 0.5
    assert torch.equal(app.honest_gradient_sync(params), b.gradient_at(params, step=0)[0])
    b.set_params(params)
    b.step = 0
    b.gradient()
    assert torch.equal(app.honest_gradient_sync(), b.gradient())
    assert a.step == 2 and torch.equal(a.momentum_buffer, b.momentum_buffer)
    vecs = [torch.randn(5, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    expected = robust_aggregate(vecs, CoordinateWiseTrimmedMean(f=1), [NearestNeighborMixing(f=1)])
    assert torch.allclose(app.aggregate_sync(vecs), expected)


async def test_applications_async_entry_points(split):
    from byzdask.engine.node.application import (
        ByzantineNodeApplication,
        HonestNodeApplication,
    )

    node = honest(split, 2)[0]
    app = HonestNodeApplication(node, aggregator=Average())
    twin = copy.deepcopy(node)
    assert torch.equal(await app.honest_gradient(), twin.gradient())
    assert (await app.aggregate([torch.ones(2), torch.zeros(2)])).tolist() == [0.5, 0.5]
    byz = ByzantineNodeApplication(ByzantineNode(SignFlipAttack()))
    assert (await byz.attack(honest_grads=[torch.ones(2)])).tolist() == [-1.0, -1.0]
    assert byz.attack_sync(base_grad=torch.ones(2)).tolist() == [-1.0, -1.0]


def test_application_errors(split):
    from byzdask.engine.node.application import (
        ByzantineNodeApplication,
        HonestNodeApplication,
        NodeApplication,
    )

    node = honest(split, 2)[0]
    app = HonestNodeApplication(node)
    assert app.pipelines == ("honest_gradient",) and app.name == "honest-0"
    with pytest.raises(ConfigurationError, match="aggregate"):
        app.aggregate_sync([torch.ones(2)])
    with pytest.raises(ConfigurationError, match="already"):
        app.register_pipeline("honest_gradient", app._pipelines["honest_gradient"][0])
    with pytest.raises(ConfigurationError, match="HonestNode"):
        HonestNodeApplication(ByzantineNode(InfAttack()))
    with pytest.raises(ConfigurationError, match="ByzantineNode"):
        ByzantineNodeApplication(node)
    with pytest.raises(ConfigurationError, match="Aggregator"):
        HonestNodeApplication(node, aggregator="cwtm")
    with pytest.raises(ConfigurationError, match="PreAggregator"):
        HonestNodeApplication(node, aggregator=Average(), pre_aggregators=[Average()])
    with pytest.raises(ConfigurationError, match="name"):
        NodeApplication(name="")
    with pytest.raises(ConfigurationError, match="ComputationGraph"):
        NodeApplication(name="x").register_pipeline("p", "graph")
    with pytest.raises(InputError, match="honest_grads"):
        ByzantineNodeApplication(ByzantineNode(InfAttack())).attack_sync()
