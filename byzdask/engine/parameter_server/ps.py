"""Parameter-server training on a Dask cluster (or in this process).

Each round on a pool:

* every honest node's vector is one pure Dask task, ``gradient_at(params, step, buffer)``, on a
  copy of the node placed once on a worker (with its lineage, so Dask can rebuild it after a
  worker loss); the momentum buffer travels as the future of the previous round's task, so it
  never leaves the cluster and a lost result is recomputed;
* one :class:`~byzdask.engine.graph.scheduler.NodeScheduler` run of the round graph: one task per
  Byzantine node (reading the honest vectors when its attack needs them), then the
  pre-aggregators and the rule in one task that reads every vector in node order;
* the aggregate (one vector) comes back; the server steps and evaluates here.

Without a pool the same step functions run in this process, called directly (no thread hop).
Either way a round equals one round of
:class:`~byzdask.engine.node.training.InProcessParameterServer`. Same-architecture honest nodes
(in-process, and inside each worker group's task) compute their vectors in one batched call
(:mod:`byzdask.engine.node.batched`); subclassed nodes keep the per-node path.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from distributed import KilledWorker, wait

from byzdask.aggregators.base import Aggregator
from byzdask.data.dataset import Dataset
from byzdask.engine.graph.graph import ComputationGraph, GraphNode, graph_input
from byzdask.engine.graph.lowering import nbytes_of, scatter_min_bytes
from byzdask.engine.graph.ops import CallableOp
from byzdask.engine.graph.scheduler import NodeScheduler, pool_loop, run_coroutine_sync
from byzdask.engine.node.batched import batched_nodes, byzantine_vectors, evaluate_params, stack_vectors
from byzdask.engine.node.byzantine import ByzantineNode
from byzdask.engine.node.honest import HonestNode
from byzdask.engine.node.training import (
    _as_vector,
    _check_nodes,
    robust_aggregate,
    sgd_update,
)
from byzdask.engine.progress import round_progress
from byzdask.errors import ConfigurationError
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["ParameterServer", "byzantine_step", "honest_step"]

logger = logging.getLogger(__name__)

_TORCH_CONFIGURED = False


def _one_torch_thread() -> None:
    # Workers share a few cores: one intra-op thread per process avoids oversubscription.
    global _TORCH_CONFIGURED
    if not _TORCH_CONFIGURED:
        torch.set_num_threads(1)
        _TORCH_CONFIGURED = True


# -- step functions (task bodies; also run in-process) ------------------------------------------
def honest_step(node: HonestNode, params: Any, step: int, state: tuple[Any, Any] | None) -> tuple[Any, Any]:
    """One honest node's vector at ``params`` for minibatch ``step``.

    ``state`` is this node's previous result ``(vector, buffer)`` (None in the first round); the
    result is the new ``(vector, buffer)``. Pure: the node's counters are not read or changed.

    Examples
    --------
    >>> from byzdask.data import load_digits
    >>> from byzdask.models import build_model, get_flat_params
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10)
    >>> node = HonestNode(model, load_digits().train.subset(range(64)), momentum=0.5)
    >>> first = honest_step(node, get_flat_params(model), 0, None)
    >>> second = honest_step(node, get_flat_params(model), 1, first)
    >>> bool(torch.allclose(second[0], 0.5 * first[1] + node.gradient_at(step=1)[0]))
    True
    """
    _one_torch_thread()
    buffer = None if state is None else state[1]
    return node.gradient_at(params, step=step, buffer=buffer)


def byzantine_step(node: ByzantineNode, params: Any, step: int, round_index: int,
                   honest: Sequence[Any] | None) -> tuple[torch.Tensor, int]:
    """One Byzantine node's vector in round ``round_index``: ``(vector, node step after it)``.

    The node's model (if any) is set to ``params`` and its minibatch counter to ``step`` first;
    ``honest`` holds this round's honest results (``(vector, buffer)`` pairs or bare vectors) in
    node order, or None when the attack does not read them.

    Examples
    --------
    >>> from byzdask.attacks.inf import InfAttack
    >>> byzantine_step(ByzantineNode(InfAttack()), None, 0, 0, [torch.zeros(2)])
    (tensor([inf, inf]), 0)
    """
    _one_torch_thread()
    node.step = int(step)
    if node.model is not None:
        node.set_params(params)
    if honest is None or isinstance(honest, torch.Tensor):
        vectors = honest  # None, or the (h, d) honest vectors of a batched round
    else:
        vectors = [_vector_of(h) for h in honest]
    vector = _as_vector(node.attack_vector(honest_grads=vectors, round_index=round_index))
    return vector, node.step


def _vector_of(result: Any) -> Any:
    return result[0] if isinstance(result, tuple) else result


def _place(nodes: list[Any]) -> list[Any]:
    return nodes


_GROUPS: list[tuple[list[HonestNode], Any]] = []  # (placed group, its BatchedNodes or None), a few recent


def _group_batched(nodes: list[HonestNode]) -> Any:
    for placed, batched in _GROUPS:
        if placed is nodes:
            return batched
    batched = batched_nodes(nodes)
    _GROUPS.insert(0, (nodes, batched))
    del _GROUPS[8:]
    return batched


def _honest_group(nodes: list[HonestNode], params: Any, steps: list[int],
                  states: list[Any] | None) -> list[tuple[Any, Any]]:
    """Task body: the vectors of a group of honest nodes (one task per worker, not per node).

    Same-architecture nodes compute in one batched call (:mod:`byzdask.engine.node.batched`).
    """
    _one_torch_thread()
    batched = _group_batched(nodes)
    if batched is None:
        return [honest_step(node, params, step, None if states is None else states[k])
                for k, (node, step) in enumerate(zip(nodes, steps))]
    buffers = None
    if states is not None and any(s is not None and s[1] is not None for s in states):
        zero = torch.zeros(batched.num_params)
        buffers = torch.stack([zero if s is None or s[1] is None else _as_vector(s[1]) for s in states])
    vectors, new = batched.vectors(_as_vector(params), steps, buffers)
    return [(vectors[k], None if new is None else new[k]) for k in range(len(nodes))]


def _honest_vectors(groups: Sequence[list[tuple[Any, Any]]], order: Sequence[tuple[int, int]]) -> list[Any]:
    """Honest vectors in node order from the per-group results (``order[i] = (group, slot)``)."""
    return [groups[g][k][0] for g, k in order]


class _RoundAggregate:
    """Task body: the Byzantine vectors, then the pre-aggregators and the rule over all vectors.

    One task (not one per Byzantine node): an attack costs microseconds, a dependent Dask hop
    milliseconds.
    """

    def __init__(self, aggregator: Aggregator, pre_aggregators: tuple[PreAggregator, ...],
                 order: Sequence[tuple[int, int]]) -> None:
        self.aggregator = aggregator
        self.pre_aggregators = pre_aggregators
        self.order = tuple(order)

    def __call__(self, honest: Sequence[list[tuple[Any, Any]]], byzantine_nodes: list[ByzantineNode], params: Any,
                 byzantine_steps: list[int], round_index: int) -> dict[str, Any]:
        _one_torch_thread()
        vectors = _honest_vectors(honest, self.order)
        for node, step in zip(byzantine_nodes, byzantine_steps):
            node.step = int(step)
        byzantine = byzantine_vectors(byzantine_nodes, vectors, params, round_index)
        aggregate = robust_aggregate(stack_vectors(vectors, byzantine), self.aggregator, self.pre_aggregators)
        return {"aggregate": aggregate, "byzantine_steps": [int(node.step) for node in byzantine_nodes]}


def _pre_aggregators(value: Any) -> tuple[PreAggregator, ...]:
    if value is None:
        return ()
    if isinstance(value, PreAggregator):
        steps: Iterable[Any] = (value,)
    elif isinstance(value, (list, tuple)):
        steps = value
    else:
        raise ConfigurationError(
            f"pre_aggregator must be a PreAggregator, a sequence of them or None, got {type(value).__name__}"
        )
    steps = tuple(steps)
    for pre in steps:
        if not isinstance(pre, PreAggregator):
            raise ConfigurationError(f"pre_aggregator steps must be PreAggregator instances, got {type(pre).__name__}")
    return steps


def _positive_number(value: Any, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class ParameterServer:
    r"""Parameter-server training of honest and Byzantine nodes, on a Dask cluster or in-process.

    A round :math:`r` (counted from 0):

    1. every honest node :math:`i` computes its vector :math:`v_i` at the server's parameters
       :math:`x_r` on its minibatch ``step`` (with worker momentum when the node has it);
    2. every Byzantine node produces its attack vector (attacks that read the honest vectors
       get all of them, in node order; seeded attacks draw a fresh seed per round, see
       :meth:`ByzantineNode.attack_for_round <byzdask.engine.node.byzantine.ByzantineNode.attack_for_round>`);
    3. the vectors, honest nodes first then Byzantine nodes, each group in the order given, go
       through the pre-aggregators and the rule: :math:`a_r = F(\mathrm{pre}(v_1, \dots, v_n))`;
    4. the server steps: :math:`x_{r+1} = x_r - \eta_r (a_r + \lambda x_r)` with
       :math:`\eta_r = \eta \cdot s(r)` (``lr`` times ``lr_schedule(r)``).

    Results never depend on completion order or on where tasks ran: a run on a pool gives the
    same parameters as the same run in-process, and as
    :class:`~byzdask.engine.node.training.InProcessParameterServer`.

    Parameters
    ----------
    honest_nodes : sequence of HonestNode
    byzantine_nodes : sequence of ByzantineNode
    aggregator : Aggregator
        The robust rule (its ``f`` is the number of Byzantine inputs it tolerates).
    pre_aggregator : PreAggregator, PreAggregatorChain, sequence of them, or None
        Applied in order before the rule.
    lr : float
        Learning rate :math:`\eta > 0`.
    weight_decay : float
        :math:`\lambda \ge 0`, applied by the server.
    lr_schedule : callable, optional
        ``round -> factor`` multiplying ``lr`` (e.g. ``lambda r: 1 / (1 + r)``).
    actor_pool : ActorPool, optional
        A started pool: nodes compute on its workers, the rule runs there too. None: in-process.
    test_data : Dataset, optional
        Test split for :meth:`evaluate` and the history of :meth:`run`.
    params : vector, optional
        Initial parameters (default: those of the first honest node's model).
    timeout : float, optional
        Limit in seconds for one round on a pool (default 600); a round that takes longer
        raises ``TimeoutError`` naming the round.

    Attributes
    ----------
    params : torch.Tensor
        The current parameters (flat float32).
    round_index : int
        Rounds run so far.
    history : list of dict
        Every evaluation made by :meth:`run`: ``{"round", "accuracy", "loss"}``.

    Notes
    -----
    On a pool, an honest node's minibatch counter and momentum buffer are carried by the
    orchestrator (the buffer as a Dask future of the previous round's task), so each task is pure
    and Dask reruns it elsewhere when a worker is lost: a run survives the loss of a worker and
    still gives the same result. With momentum the futures form a chain across rounds that Dask
    keeps for recomputation (one small task per node and round on the scheduler).

    Cost per round on a pool: ``h + b + 1`` tasks in two or three dependent hops (about 10 ms
    of Dask overhead each, DESIGN §10) plus the compute; only the aggregate (``d`` floats)
    returns to the caller.

    Examples
    --------
    >>> from byzdask.aggregators import CoordinateWiseTrimmedMean
    >>> from byzdask.attacks.sign_flip import SignFlipAttack
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.engine.node.training import make_honest_nodes
    >>> from byzdask.models import build_model
    >>> split = load_digits(seed=0)
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10, seed=0)
    >>> honest = make_honest_nodes(partition_dataset(split.train, 5, seed=0), model, seed=0)
    >>> byzantine = [ByzantineNode(SignFlipAttack(), node_id=5)]
    >>> ps = ParameterServer(honest, byzantine, CoordinateWiseTrimmedMean(f=1), lr=0.5, test_data=split.test)
    >>> history = ps.run_sync(20, eval_every=10, progress=False)
    >>> [h["round"] for h in history], history[-1]["accuracy"] > 0.9
    ([10, 20], True)
    """

    def __init__(self, honest_nodes: Sequence[HonestNode], byzantine_nodes: Sequence[ByzantineNode] = (),
                 aggregator: Aggregator | None = None, pre_aggregator: Any = None, *, lr: float = 0.1,
                 weight_decay: float = 0.0, lr_schedule: Callable[[int], float] | None = None,
                 actor_pool: Any = None, test_data: Dataset | None = None, params: Any = None,
                 timeout: float = 600.0) -> None:
        self.honest_nodes, self.byzantine_nodes = _check_nodes(honest_nodes, byzantine_nodes)
        if not isinstance(aggregator, Aggregator):
            raise ConfigurationError(f"aggregator must be an Aggregator, got {type(aggregator).__name__}")
        self.aggregator = aggregator
        self.pre_aggregators = _pre_aggregators(pre_aggregator)
        self.lr = _positive_number(lr, "lr")
        self.weight_decay = _positive_number(weight_decay, "weight_decay", allow_zero=True)
        if lr_schedule is not None and not callable(lr_schedule):
            raise ConfigurationError(f"lr_schedule must be a callable round -> factor or None, got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        if test_data is not None and not isinstance(test_data, Dataset):
            raise ConfigurationError(f"test_data must be a byzdask.data.Dataset, got {type(test_data).__name__}")
        self.test_data = test_data
        self.timeout = _positive_number(timeout, "timeout")
        if actor_pool is not None and not hasattr(actor_pool, "client"):
            raise ConfigurationError(f"actor_pool must be an ActorPool, got {type(actor_pool).__name__}")
        self.pool = actor_pool
        first = self.honest_nodes[0]
        self.params = first.params() if params is None else _as_vector(params).clone()
        if self.params.numel() != first.num_params:
            raise ConfigurationError(f"params has {self.params.numel()} entries, the model {first.num_params}")
        self._eval_model = copy.deepcopy(first.model)
        self.round_index = 0
        self.history: list[dict[str, Any]] = []
        # cluster state: node futures, each honest node's last (vector, buffer) future
        self._placed: list[Any] | None = None
        self._placed_byzantine: Any = None
        self._groups: list[list[HonestNode]] = []
        self._honest_state: list[Any] = []
        self._graph: ComputationGraph | None = None
        self._batched: Any = False  # the in-process BatchedNodes (None: per-node path), built at first use

    # -- the round graph ----------------------------------------------------------------------
    def _round_graph(self, groups: int) -> ComputationGraph:
        order = [(i % groups, i // groups) for i in range(len(self.honest_nodes))]
        op = CallableOp(_RoundAggregate(self.aggregator, self.pre_aggregators, order), name="aggregate")
        inputs = {key: graph_input(key) for key in ("honest", "byzantine_nodes", "params", "byzantine_steps",
                                                      "round_index")}
        return ComputationGraph([GraphNode("aggregate", op, inputs)])

    # -- one round ------------------------------------------------------------------------------
    def _lr(self, r: int) -> float:
        return self.lr * (1.0 if self.lr_schedule is None else float(self.lr_schedule(r)))

    async def round(self) -> dict[str, Any]:
        """Run one round; returns ``{"round", "lr", "aggregate_norm"}`` (round counted from 1)."""
        r = self.round_index
        if self.pool is None:
            aggregate = self._local_aggregate(r)  # in this thread: a hop to a thread costs more than a round
        else:
            try:
                aggregate = await asyncio.wait_for(self._cluster_aggregate(r), self.timeout)
            except TimeoutError as exc:
                raise TimeoutError(f"parameter-server round {r + 1} did not finish within {self.timeout} s") from exc
        lr = self._lr(r)
        self.params = sgd_update(self.params, aggregate, lr, self.weight_decay)
        for node in self.honest_nodes:
            node.step += 1
        self.round_index += 1
        return {"round": self.round_index, "lr": lr, "aggregate_norm": float(aggregate.double().norm())}

    def _local_aggregate(self, r: int) -> torch.Tensor:
        if self._batched is False:
            self._batched = batched_nodes(self.honest_nodes)
        if self._batched is not None:
            _one_torch_thread()
            batched = self._batched
            vectors, buffers = batched.vectors(self.params, [n.step for n in self.honest_nodes], batched.node_buffers())
            batched.record_buffers(buffers)
            honest = vectors
        else:
            honest = []
            for node in self.honest_nodes:
                vector, node.momentum_buffer = honest_step(node, self.params, node.step,
                                                           (None, node.momentum_buffer))
                honest.append(vector)
        byzantine = byzantine_vectors(self.byzantine_nodes, honest, self.params, r)
        return robust_aggregate(stack_vectors(honest, byzantine), self.aggregator, self.pre_aggregators)

    async def _place_nodes(self) -> None:
        # One group of honest nodes per worker (a task per node would cost more than its
        # gradient). Groups are submitted, not scattered, so the scheduler can rebuild one
        # lost with its worker; other workers may take them over.
        client = self.pool.client
        workers = list((await self.pool.refresh_workers()).values())
        groups = max(1, min(len(workers), len(self.honest_nodes)))
        token = uuid.uuid4().hex[:8]
        self._groups = [self.honest_nodes[g::groups] for g in range(groups)]
        self._placed = [
            client.submit(_place, members, key=f"byzdask-ps-honest-{g}-{token}", pure=False,
                          workers=[workers[g % len(workers)]], allow_other_workers=True)
            for g, members in enumerate(self._groups)
        ]
        self._placed_byzantine = client.submit(_place, list(self.byzantine_nodes), pure=False,
                                               key=f"byzdask-ps-byzantine-{token}")
        self._honest_state = [
            [(None, node.momentum_buffer) for node in members]
            if any(node.momentum_buffer is not None for node in members) else None
            for members in self._groups
        ]
        self._graph = self._round_graph(groups)
        await wait([*self._placed, self._placed_byzantine])

    async def _cluster_aggregate(self, r: int) -> torch.Tensor:
        client = self.pool.client
        if self._placed is None:
            await self._place_nodes()
        params = self.params
        if nbytes_of(params) >= scatter_min_bytes():
            # one copy per worker, so the loss of a worker loses no input
            (params,) = await client.scatter([params], broadcast=True, hash=False)
        token = uuid.uuid4().hex[:8]
        honest = [
            client.submit(_honest_group, placed, params, [node.step for node in members], state,
                          key=f"byzdask-ps-grad-{g}-r{r}-{token}", pure=False)
            for g, (placed, members, state) in enumerate(zip(self._placed, self._groups, self._honest_state))
        ]
        inputs = {"honest": honest, "byzantine_nodes": self._placed_byzantine, "params": params, "round_index": r,
                  "byzantine_steps": [node.step for node in self.byzantine_nodes]}
        scheduler = NodeScheduler(self._graph, pool=self.pool, metadata={"round": r})
        try:
            result = (await scheduler.run(inputs))["aggregate"]
        except KilledWorker as exc:
            raise RuntimeError(
                f"parameter-server round {r + 1}: task {exc.task} was given up after killing "
                f"{exc.allowed_failures + 1} workers; see the worker logs"
            ) from exc
        # with momentum the next round reads this one's buffers; without, nothing is carried
        self._honest_state = honest if any(node.momentum for node in self.honest_nodes) else [None] * len(honest)
        for node, step in zip(self.byzantine_nodes, result["byzantine_steps"]):
            node.step = step
        return _as_vector(result["aggregate"])

    # -- evaluation and runs -------------------------------------------------------------------------
    def evaluate(self, data: Dataset | None = None) -> tuple[float, float]:
        """``(accuracy, mean loss)`` of the current parameters on ``data`` (default: the test split)."""
        data = data if data is not None else self.test_data
        if data is None:
            raise ConfigurationError("no test split: pass test_data= to the constructor or data= here")
        return evaluate_params(self._eval_model, self.params, data.x, data.y, self.honest_nodes[0].loss_fn)

    async def run(self, rounds: int, *, eval_every: int = 1, callback: Callable[[dict[str, Any]], None] | None = None,
                  progress: bool = True) -> list[dict[str, Any]]:
        """Run ``rounds`` rounds, evaluating every ``eval_every`` rounds and after the last.

        Parameters
        ----------
        rounds : int
        eval_every : int
        callback : callable, optional
            Called with each evaluation record ``{"round", "accuracy", "loss"}``.
        progress : bool
            Show a progress bar of the rounds (tqdm, on stderr).

        Returns
        -------
        list of dict
            This call's evaluations (also appended to :attr:`history`).
        """
        _check_count(rounds, "rounds", 0)
        _check_count(eval_every, "eval_every", 1)
        records: list[dict[str, Any]] = []
        bar = round_progress(rounds, progress, desc="rounds")
        try:
            for k in range(1, rounds + 1):
                await self.round()
                if self.test_data is not None and (k % eval_every == 0 or k == rounds):
                    accuracy, loss = self.evaluate()
                    record = {"round": self.round_index, "accuracy": accuracy, "loss": loss}
                    logger.debug("ps round %d: accuracy %.4f loss %.4f", self.round_index, accuracy, loss)
                    records.append(record)
                    self.history.append(record)
                    if bar is not None:
                        bar.set_postfix(accuracy=f"{accuracy:.3f}")
                    if callback is not None:
                        callback(record)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return records

    def run_sync(self, rounds: int, *, eval_every: int = 1, callback: Callable[[dict[str, Any]], None] | None = None,
                 progress: bool = True) -> list[dict[str, Any]]:
        """:meth:`run` from synchronous code (a pool started with ``start_sync()``, or none)."""
        return run_coroutine_sync(
            lambda: self.run(rounds, eval_every=eval_every, callback=callback, progress=progress),
            loop=pool_loop(self.pool),
        )

    async def close(self) -> None:
        """Bring the honest nodes' momentum buffers back and release this server's futures.

        The pool stays up; a later round places the nodes again from the state kept here.
        """
        states, groups = self._honest_state, self._groups
        self._placed, self._placed_byzantine, self._honest_state = None, None, []
        pending = [(g, s) for g, s in enumerate(states) if s is not None and not isinstance(s, list)]
        if pending and self.pool is not None and self.pool.running:
            results = await self.pool.client.gather([s for _, s in pending])
            for (g, _), result in zip(pending, results):
                for node, (_, buffer) in zip(groups[g], result):
                    node.momentum_buffer = buffer

    def __repr__(self) -> str:
        where = "in-process" if self.pool is None else repr(self.pool)
        return (f"ParameterServer({len(self.honest_nodes)} honest, {len(self.byzantine_nodes)} Byzantine, "
                f"{type(self.aggregator).__name__}, round {self.round_index}, {where})")

