"""The constructor keywords and shapes ByzPy users rely on: chunk_size, perm, lists, LabelFlipAttack."""

import numpy as np
import pytest
import torch

from byzdask.aggregators import (CAF, SMEA, ComparativeGradientElimination, CoordinateWiseMedian,
                                 CoordinateWiseTrimmedMean, Krum, MeanOfMedians, MinimumDiameterAveraging,
                                 MoNNA, MultiKrum)
from byzdask.attacks import EmpireAttack, InfAttack, LabelFlipAttack, LittleAttack, MimicAttack, SignFlipAttack
from byzdask.engine.graph.graph import ComputationGraph, GraphNode, graph_input
from byzdask.engine.graph.operator import OpContext
from byzdask.engine.graph.ops import CallableOp
from byzdask.errors import ConfigurationError
from byzdask.pre_aggregators import Bucketing

RULES = [CoordinateWiseMedian(chunk_size=100), CoordinateWiseTrimmedMean(2, chunk_size=100),
         MeanOfMedians(2, chunk_size=100), Krum(2, chunk_size=100), MultiKrum(2, 4, chunk_size=100),
         MinimumDiameterAveraging(2, chunk_size=100), MoNNA(2, chunk_size=100), SMEA(2, chunk_size=100),
         CAF(2, chunk_size=100), ComparativeGradientElimination(2, chunk_size=100)]
ATTACKS = [EmpireAttack(chunk_size=50), InfAttack(chunk_size=50), LittleAttack(2, chunk_size=50),
           MimicAttack(chunk_size=50), SignFlipAttack(chunk_size=50)]


def _run_subtasks(op, inputs, pool_size):
    ctx = OpContext("c", {"pool_size": pool_size})
    tasks = list(op.create_subtasks(inputs, context=ctx))
    return len(tasks), op.reduce_subtasks([t.run() for t in tasks], inputs, context=ctx)


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_rule_chunk_size_sets_blocks_and_count_grows_with_pool(rule):
    grads = list(torch.from_numpy(np.random.default_rng(1).normal(size=(11, 1000))))
    few, out = _run_subtasks(rule, {"gradients": grads}, 1)
    many, out8 = _run_subtasks(rule, {"gradients": grads}, 8)
    assert few == 10 and many > few  # 1000 / 100 blocks of 100 columns; narrower with 8 workers
    torch.testing.assert_close(out, rule.aggregate(grads))
    torch.testing.assert_close(out8, rule.aggregate(grads))


@pytest.mark.parametrize("attack", ATTACKS, ids=repr)
def test_attack_chunk_size_fans_out_and_matches(attack):
    honest = list(torch.from_numpy(np.random.default_rng(2).normal(size=(6, 400))))
    inputs = {"honest_grads": honest, "base_grad": honest[0]}
    few, out = _run_subtasks(attack, inputs, 1)
    many, _ = _run_subtasks(attack, inputs, 4)
    assert few == 8 and many > few
    torch.testing.assert_close(out, attack.apply(honest_grads=honest, base_grad=honest[0]))


def test_chunk_size_is_checked():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigurationError, match="chunk_size"):
            CoordinateWiseMedian(chunk_size=bad)
        with pytest.raises(ConfigurationError, match="chunk_size"):
            SignFlipAttack(chunk_size=bad)


def test_bucketing_fixed_perm():
    x = np.array([[1.0], [2.0], [4.0], [8.0], [16.0]])
    out = Bucketing(2, perm=[4, 2, 0, 1, 3]).pre_aggregate(x)
    np.testing.assert_allclose(out[:, 0], [10.0, 1.5, 8.0])
    with pytest.raises(ConfigurationError, match="permutation"):
        Bucketing(2, perm=[0, 0, 1])
    with pytest.raises(ValueError, match="n=4"):
        Bucketing(2, perm=[2, 1, 0]).pre_aggregate(x[:4])


def test_graph_outputs_and_topological_order_are_lists():
    op = CallableOp(lambda v: v)
    g = ComputationGraph([GraphNode("b", op, {"v": "a"}), GraphNode("a", op, {"v": graph_input("x")})])
    assert g.topological_order == ["a", "b"] and g.outputs == ["b"]
    g.outputs.append("zzz")  # a copy: the graph is unchanged
    assert g.outputs == ["b"]


def test_label_flip_needs_a_rule_at_construction():
    with pytest.raises(ValueError, match="num_classes"):
        LabelFlipAttack()
    model = torch.nn.Linear(2, 4)
    x, y = torch.randn(3, 2), torch.tensor([0, 1, 3])
    torch.testing.assert_close(LabelFlipAttack(num_classes="auto").apply(model=model, x=x, y=y),
                               LabelFlipAttack(num_classes=4).apply(model=model, x=x, y=y))
