"""Reference training loops, run in one process: what the Dask orchestrators must reproduce.

:class:`InProcessParameterServer` and :class:`InProcessPeerToPeer` run the exact round
semantics of DESIGN §6 with plain Python calls. The step functions they use
(:func:`robust_aggregate`, :func:`sgd_update`, :func:`consensus_distance`) are the ones the
Dask versions call, so that both paths share one kernel per concept.

Node order: honest nodes first, in the order given, then Byzantine nodes in the order given
(for the parameter server); topology ids (peer-to-peer). Never completion order.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from byzdask.aggregators.base import Aggregator
from byzdask.data.dataset import Dataset
from byzdask.engine.node.batched import batched_nodes, byzantine_vectors, evaluate_params, stack_vectors
from byzdask.engine.node.byzantine import ByzantineNode
from byzdask.engine.node.honest import HonestNode
from byzdask.engine.peer_to_peer.topology import Topology
from byzdask.errors import ConfigurationError, InputError
from byzdask.pre_aggregators.base import PreAggregator

__all__ = [
    "InProcessParameterServer",
    "InProcessPeerToPeer",
    "consensus_distance",
    "make_honest_nodes",
    "node_seeds",
    "robust_aggregate",
    "sgd_update",
]

logger = logging.getLogger(__name__)

LearningRate = float | Callable[[int], float]


# -- step functions shared with the Dask orchestrators ---------------------------------------
def _as_vector(v: Any) -> torch.Tensor:
    return torch.as_tensor(v).to(torch.float32).reshape(-1)


def robust_aggregate(vectors: Sequence[Any], aggregator: Aggregator,
                     pre_aggregators: Sequence[PreAggregator] = ()) -> torch.Tensor:
    """Run the pre-aggregators in order, then the rule; return a flat float32 torch vector.

    Parameters
    ----------
    vectors : sequence of vectors, or one (n, d) tensor
        In node order (torch or numpy, all of one length).
    aggregator : Aggregator
        The robust rule.
    pre_aggregators : sequence of PreAggregator
        Applied left to right before the rule.

    Examples
    --------
    >>> from byzdask.aggregators import Average
    >>> robust_aggregate([torch.tensor([1.0, 3.0]), torch.tensor([3.0, 5.0])], Average()).tolist()
    [2.0, 4.0]
    """
    if len(vectors) == 0:
        raise InputError("robust_aggregate needs at least one vector, got none")
    if isinstance(vectors, torch.Tensor) and vectors.ndim == 2 and vectors.dtype == torch.float32 \
            and not pre_aggregators:
        return _as_vector(aggregator.aggregate(vectors))  # one (n, d) tensor: no restacking
    batch = [_as_vector(v) for v in vectors]
    for pre in pre_aggregators:
        batch = pre.pre_aggregate(batch)
    return _as_vector(aggregator.aggregate(batch))


def sgd_update(params: torch.Tensor, direction: torch.Tensor, lr: float, weight_decay: float = 0.0) -> torch.Tensor:
    r"""One SGD step, :math:`x - \eta\,(v + \lambda x)`, as a new tensor.

    Examples
    --------
    >>> sgd_update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -1.0]), lr=0.5).tolist()
    [0.5, 2.5]
    """
    step = direction + float(weight_decay) * params if weight_decay else direction
    return params - float(lr) * step


def consensus_distance(vectors: Sequence[torch.Tensor]) -> float:
    r"""Mean squared distance of the vectors to their mean, :math:`\frac1h\sum_i \lVert x_i - \bar x\rVert^2`.

    The usual measure of disagreement between honest models in decentralised SGD (Koloskova
    et al., ICML 2020); 0 when all agree.

    Examples
    --------
    >>> consensus_distance([torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.0])])
    1.0
    """
    if len(vectors) == 0:
        raise InputError("consensus_distance needs at least one vector, got none")
    stack = torch.stack([_as_vector(v).double() for v in vectors])
    return float(((stack - stack.mean(dim=0)) ** 2).sum(dim=1).mean())


def _lr_at(lr: LearningRate, r: int) -> float:
    return float(lr(r)) if callable(lr) else float(lr)


def _check_lr(lr: Any, weight_decay: Any) -> None:
    if not callable(lr) and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise ConfigurationError(f"lr must be a positive number or a callable round -> lr, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ConfigurationError(f"weight_decay must be a non-negative number, got {weight_decay!r}")


# -- building nodes ------------------------------------------------------------------------
def node_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent node seeds derived from one job seed (``numpy.random.SeedSequence``).

    Examples
    --------
    >>> node_seeds(0, 3) == node_seeds(0, 3), len(set(node_seeds(0, 3)))
    (True, 3)
    """
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(int(count))]


def make_honest_nodes(shards: Sequence[Dataset], model: nn.Module, *, batch_size: int = 32,
                      momentum: float = 0.0, seed: int = 0, first_id: int = 0) -> list[HonestNode]:
    """One :class:`HonestNode` per shard, each with its own copy of ``model`` and its own seed.

    Examples
    --------
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.models import build_model
    >>> train = load_digits().train
    >>> nodes = make_honest_nodes(partition_dataset(train, 3), build_model("logreg", input_shape=(64,),
    ...                           num_classes=10), batch_size=8)
    >>> [n.node_id for n in nodes], nodes[0].model is nodes[1].model
    ([0, 1, 2], False)
    """
    seeds = node_seeds(seed, len(shards))
    return [HonestNode(copy.deepcopy(model), shard, batch_size=batch_size, momentum=momentum, seed=s,
                       node_id=first_id + i) for i, (shard, s) in enumerate(zip(shards, seeds))]


def _check_nodes(honest: Sequence[Any], byzantine: Sequence[Any]) -> tuple[list[HonestNode], list[ByzantineNode]]:
    honest, byzantine = list(honest), list(byzantine)
    if not honest:
        raise ConfigurationError("training needs at least one honest node, got none")
    for node in honest:
        if not isinstance(node, HonestNode):
            raise ConfigurationError(f"honest nodes must be HonestNode instances, got {type(node).__name__}")
    for node in byzantine:
        if not isinstance(node, ByzantineNode):
            raise ConfigurationError(f"Byzantine nodes must be ByzantineNode instances, got {type(node).__name__}")
    sizes = {node.num_params for node in honest}
    if len(sizes) != 1:
        raise ConfigurationError(f"honest nodes' models differ in size: {sorted(sizes)}")
    return honest, byzantine


# -- parameter server -------------------------------------------------------------------------
class InProcessParameterServer:
    """Parameter-server training in this process: the reference the Dask version must equal.

    A round, for round index ``r``:

    1. every honest node receives the parameters and computes its vector (gradient, with worker
       momentum when configured), in node order;
    2. every Byzantine node (its model, if any, also receives the parameters) produces its
       attack vector; attacks that read the honest vectors get all of them, in node order;
    3. the vectors (honest first, then Byzantine) go through the pre-aggregators and the rule;
    4. the server steps: :math:`x \\leftarrow x - \\eta_r (a + \\lambda x)`.

    Parameters
    ----------
    honest_nodes : sequence of HonestNode
    byzantine_nodes : sequence of ByzantineNode
    aggregator : Aggregator
    pre_aggregators : sequence of PreAggregator
        Applied in order before the rule.
    lr : float or callable
        Learning rate, or a schedule ``round -> lr``.
    weight_decay : float
        :math:`\\lambda` (L2 regularisation applied by the server).
    params : vector, optional
        Initial parameters (default: those of the first honest node's model).
    test : Dataset, optional
        Test split for :meth:`evaluate` and :meth:`run`.

    Examples
    --------
    >>> from byzdask.aggregators import Average
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.models import build_model
    >>> split = load_digits(seed=0)
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10, seed=0)
    >>> nodes = make_honest_nodes(partition_dataset(split.train, 5, seed=0), model, batch_size=32, seed=0)
    >>> ps = InProcessParameterServer(nodes, [], aggregator=Average(), lr=0.5, test=split.test)
    >>> history = ps.run(30, eval_every=30)
    >>> history[-1]["round"], history[-1]["accuracy"] > 0.9
    (30, True)
    """

    def __init__(self, honest_nodes: Sequence[HonestNode], byzantine_nodes: Sequence[ByzantineNode] = (), *,
                 aggregator: Aggregator, pre_aggregators: Sequence[PreAggregator] = (), lr: LearningRate = 0.1,
                 weight_decay: float = 0.0, params: Any = None, test: Dataset | None = None) -> None:
        self.honest_nodes, self.byzantine_nodes = _check_nodes(honest_nodes, byzantine_nodes)
        if not isinstance(aggregator, Aggregator):
            raise ConfigurationError(f"aggregator must be an Aggregator, got {type(aggregator).__name__}")
        self.pre_aggregators = tuple(pre_aggregators)
        for pre in self.pre_aggregators:
            if not isinstance(pre, PreAggregator):
                raise ConfigurationError(f"pre_aggregators must be PreAggregator instances, got {type(pre).__name__}")
        _check_lr(lr, weight_decay)
        self.aggregator, self.lr, self.weight_decay = aggregator, lr, float(weight_decay)
        self.params = self.honest_nodes[0].params() if params is None else _as_vector(params).clone()
        if self.params.numel() != self.honest_nodes[0].num_params:
            raise ConfigurationError(
                f"params has {self.params.numel()} entries, the model {self.honest_nodes[0].num_params}"
            )
        self.test = test
        self._eval_model = copy.deepcopy(self.honest_nodes[0].model)
        #: Number of rounds run so far.
        self.round_index = 0
        self._batched: Any = False  # BatchedNodes, or None for the per-node path; built at the first round

    def round(self) -> dict[str, Any]:
        """Run one round; return ``{"round", "lr", "aggregate_norm"}`` (round counted from 1)."""
        r = self.round_index
        if self._batched is False:
            self._batched = batched_nodes(self.honest_nodes)
        batched = self._batched
        if batched is not None:
            vectors, buffers = batched.vectors(self.params, [n.step for n in self.honest_nodes], batched.node_buffers())
            batched.record_buffers(buffers)
            honest_vectors = vectors
            for node in self.honest_nodes:
                node.step += 1
        else:
            honest_vectors = []
            for node in self.honest_nodes:
                node.set_params(self.params)
                honest_vectors.append(node.gradient())
        attacks = byzantine_vectors(self.byzantine_nodes, honest_vectors, self.params, r)
        aggregate = robust_aggregate(stack_vectors(honest_vectors, attacks), self.aggregator,
                                     self.pre_aggregators)
        lr = _lr_at(self.lr, r)
        self.params = sgd_update(self.params, aggregate, lr, self.weight_decay)
        self.round_index += 1
        return {"round": self.round_index, "lr": lr, "aggregate_norm": float(aggregate.double().norm())}

    def evaluate(self, data: Dataset | None = None) -> tuple[float, float]:
        """``(accuracy, loss)`` of the current parameters on ``data`` (default: the test split)."""
        data = data if data is not None else self.test
        if data is None:
            raise ConfigurationError("no test split: pass test= to the constructor or data= here")
        self._eval_model.load_state_dict(self.honest_nodes[0].model.state_dict())
        return evaluate_params(self._eval_model, self.params, data.x, data.y, self.honest_nodes[0].loss_fn)

    def run(self, rounds: int, *, eval_every: int = 1,
            callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run ``rounds`` rounds; evaluate every ``eval_every`` rounds and after the last.

        Returns the evaluations: ``[{"round", "accuracy", "loss"}, ...]``; ``callback`` gets
        each one as it is made.
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ConfigurationError(f"rounds must be a non-negative integer, got {rounds!r}")
        if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
            raise ConfigurationError(f"eval_every must be a positive integer, got {eval_every!r}")
        history = []
        for k in range(1, rounds + 1):
            self.round()
            if self.test is not None and (k % eval_every == 0 or k == rounds):
                acc, loss = self.evaluate()
                record = {"round": self.round_index, "accuracy": acc, "loss": loss}
                logger.debug("ps round %d: accuracy %.4f loss %.4f", self.round_index, acc, loss)
                history.append(record)
                if callback is not None:
                    callback(record)
        return history


# -- peer to peer -----------------------------------------------------------------------------
def _per_node(value: Any, ids: Sequence[int], what: str) -> dict[int, Any]:
    if isinstance(value, Mapping):
        missing = [i for i in ids if i not in value]
        if missing:
            raise ConfigurationError(f"{what} mapping lacks honest node ids {missing}")
        return {i: value[i] for i in ids}
    return {i: value for i in ids}


class InProcessPeerToPeer:
    """Synchronous peer-to-peer training in this process: the reference for the Dask version.

    A round:

    1. every honest node takes a local SGD step on its own vector (gradient, with momentum when
       configured): :math:`x_i^{+} = x_i - \\eta_r (v_i + \\lambda x_i)`;
    2. every Byzantine node makes one attack vector, sent to all its out-neighbours. It sees the
       honest vectors it receives (its honest in-neighbours' :math:`x_j^{+}`, in id order; all
       honest vectors when ``omniscient``); its base vector is their mean;
    3. every honest node aggregates its own vector (first) and its in-neighbours' vectors (in id
       order) with its pre-aggregators and rule, and writes the result into its model.

    Parameters
    ----------
    honest_nodes, byzantine_nodes : sequences
        ``honest_nodes[k]`` plays ``topology.honest_ids[k]``, ``byzantine_nodes[k]`` plays
        ``topology.byzantine_ids[k]``.
    topology : Topology
    aggregator : Aggregator or mapping
        One rule for all, or ``{honest id: rule}``.
    pre_aggregators : sequence or mapping
        One chain for all, or ``{honest id: chain}``.
    lr, weight_decay : as for :class:`InProcessParameterServer`.
    omniscient : bool
        Byzantine nodes see every honest vector, not only their in-neighbours'.
    test : Dataset, optional

    Examples
    --------
    >>> from byzdask.aggregators import Average
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.models import build_model
    >>> split = load_digits(seed=0)
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10, seed=0)
    >>> nodes = make_honest_nodes(partition_dataset(split.train, 4, seed=0), model, seed=0)
    >>> p2p = InProcessPeerToPeer(nodes, [], Topology.ring(4), aggregator=Average(), lr=0.5, test=split.test)
    >>> info = p2p.round()
    >>> info["round"], info["consensus_distance"] < info["consensus_before"]
    (1, True)
    """

    def __init__(self, honest_nodes: Sequence[HonestNode], byzantine_nodes: Sequence[ByzantineNode],
                 topology: Topology, *, aggregator: Aggregator | Mapping[int, Aggregator],
                 pre_aggregators: Sequence[PreAggregator] | Mapping[int, Sequence[PreAggregator]] = (),
                 lr: LearningRate = 0.1, weight_decay: float = 0.0, omniscient: bool = False,
                 test: Dataset | None = None) -> None:
        self.honest_nodes, self.byzantine_nodes = _check_nodes(honest_nodes, byzantine_nodes)
        if not isinstance(topology, Topology):
            raise ConfigurationError(f"topology must be a Topology, got {type(topology).__name__}")
        h_ids, b_ids = topology.honest_ids, topology.byzantine_ids
        if len(h_ids) != len(self.honest_nodes) or len(b_ids) != len(self.byzantine_nodes):
            raise ConfigurationError(
                f"the topology has {len(h_ids)} honest and {len(b_ids)} Byzantine ids, got "
                f"{len(self.honest_nodes)} honest and {len(self.byzantine_nodes)} Byzantine nodes"
            )
        _check_lr(lr, weight_decay)
        self.topology = topology
        self.aggregators = _per_node(aggregator, h_ids, "aggregator")
        for rule in self.aggregators.values():
            if not isinstance(rule, Aggregator):
                raise ConfigurationError(f"aggregator must be an Aggregator, got {type(rule).__name__}")
        self.pre_aggregators = {i: tuple(c) for i, c in _per_node(pre_aggregators, h_ids, "pre_aggregators").items()}
        self.lr, self.weight_decay, self.omniscient, self.test = lr, float(weight_decay), bool(omniscient), test
        self.honest_by_id = dict(zip(h_ids, self.honest_nodes))
        self.byzantine_by_id = dict(zip(b_ids, self.byzantine_nodes))
        self.round_index = 0
        self._batched = batched_nodes(self.honest_nodes)
        self._matrix: torch.Tensor | None = None
        if self._batched is not None:
            # the honest models' parameters become rows of one (h, d) matrix (views, no copy)
            self._matrix = torch.stack([node.params() for node in self.honest_nodes])
            for node, row in zip(self.honest_nodes, self._matrix):
                for param, view in zip(node.model.parameters(), self._batched.split(row)):
                    param.data = view

    def honest_params(self) -> list[torch.Tensor]:
        """The honest nodes' parameters, in honest id order."""
        if self._matrix is not None:
            return list(self._matrix.clone().unbind(0))
        return [node.params() for node in self.honest_nodes]

    def round(self) -> dict[str, Any]:
        """Run one synchronous round.

        Returns
        -------
        dict
            ``round``; ``consensus_before`` and ``consensus_distance``: the honest models'
            :func:`consensus_distance` after the local steps and after the aggregation;
            ``mixing``: mean over honest nodes of :math:`\\lVert x_i^{new} - x_i^{+}\\rVert`
            (how far aggregation moved them).
        """
        r = self.round_index
        lr = _lr_at(self.lr, r)
        top = self.topology
        sent: dict[int, torch.Tensor] = {}
        batched, matrix = self._batched, self._matrix
        if batched is not None and matrix is not None:
            vectors, buffers = batched.vectors(matrix, [n.step for n in self.honest_nodes], batched.node_buffers())
            batched.record_buffers(buffers)
            if self.weight_decay:
                vectors = vectors + self.weight_decay * matrix
            stepped = matrix - lr * vectors
            matrix.copy_(stepped)
            for node, i, row in zip(self.honest_nodes, top.honest_ids, stepped.unbind(0)):
                node.step += 1
                sent[i] = row
        else:
            for i, node in self.honest_by_id.items():
                sent[i] = node.local_step(lr, weight_decay=self.weight_decay)
        honest_all = [sent[i] for i in top.honest_ids]
        for b, node in self.byzantine_by_id.items():
            seen = honest_all if self.omniscient else [sent[j] for j in top.in_neighbours(b) if j in self.honest_by_id]
            base = torch.stack(seen).mean(dim=0) if seen else None
            if node.model is not None and base is not None:
                node.set_params(base)
            sent[b] = _as_vector(node.attack_vector(honest_grads=seen, base_grad=base, round_index=r))
        mixing, news = [], []
        for i, node in self.honest_by_id.items():
            inputs = [sent[i]] + [sent[j] for j in top.in_neighbours(i)]
            new = robust_aggregate(inputs, self.aggregators[i], self.pre_aggregators[i])
            if matrix is None:
                node.set_params(new)
            news.append(new)
            mixing.append(float((new - sent[i]).double().norm()))
        if matrix is not None:
            matrix.copy_(torch.stack(news))
        self.round_index += 1
        return {
            "round": self.round_index,
            "lr": lr,
            "consensus_before": consensus_distance(honest_all),
            "consensus_distance": consensus_distance(self.honest_params()),
            "mixing": float(np.mean(mixing)),
        }

    def evaluate(self, data: Dataset | None = None) -> dict[str, float]:
        """Accuracy of every honest model on ``data`` (default: the test split).

        Returns ``{"accuracy": mean, "worst_accuracy": min, "loss": mean loss}``.
        """
        data = data if data is not None else self.test
        if data is None:
            raise ConfigurationError("no test split: pass test= to the constructor or data= here")
        if self._matrix is not None:
            accs, losses = evaluate_params(self.honest_nodes[0].model, self._matrix, data.x, data.y,
                                           self.honest_nodes[0].loss_fn)
            return {"accuracy": float(np.mean(accs)), "worst_accuracy": float(np.min(accs)),
                    "loss": float(np.mean(losses))}
        results = [node.evaluate(data.x, data.y) for node in self.honest_nodes]
        accs = [a for a, _ in results]
        return {"accuracy": float(np.mean(accs)), "worst_accuracy": float(np.min(accs)),
                "loss": float(np.mean([loss for _, loss in results]))}

    def run(self, rounds: int, *, eval_every: int = 1,
            callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run ``rounds`` rounds; evaluate every ``eval_every`` rounds and after the last.

        Returns ``[{"round", "accuracy", "worst_accuracy", "loss", "consensus_distance"}, ...]``.
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ConfigurationError(f"rounds must be a non-negative integer, got {rounds!r}")
        if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
            raise ConfigurationError(f"eval_every must be a positive integer, got {eval_every!r}")
        history = []
        for k in range(1, rounds + 1):
            info = self.round()
            if self.test is not None and (k % eval_every == 0 or k == rounds):
                record = {"round": info["round"], **self.evaluate(), "consensus_distance": info["consensus_distance"]}
                history.append(record)
                if callback is not None:
                    callback(record)
        return history
