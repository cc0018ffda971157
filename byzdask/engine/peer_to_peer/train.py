"""Peer-to-peer training: every node a Dask actor that exchanges vectors with its neighbours.

:class:`PeerToPeer` runs the rounds of DESIGN §6 on an
:class:`~byzdask.engine.graph.pool.ActorPool`. Each node lives in an actor
(:class:`~byzdask.engine.peer_to_peer.peers.HonestPeer` or
:class:`~byzdask.engine.peer_to_peer.peers.ByzantinePeer`) holding its model, data, momentum and
its own aggregator and pre-aggregator chain; vectors travel along the topology's edges through
one channel, stamped with their sender and round. The driver only starts rounds, gathers the
honest parameters (for the consensus distance) and asks for evaluations. Without a pool the
same rounds run in this process through
:class:`~byzdask.engine.node.training.InProcessPeerToPeer`, the reference the actors reproduce.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from byzdask import config
from byzdask.aggregators.base import Aggregator
from byzdask.data.dataset import Dataset
from byzdask.engine.actor.channels import pack, unpack
from byzdask.engine.node.byzantine import ByzantineNode
from byzdask.engine.node.honest import HonestNode
from byzdask.engine.node.training import (
    InProcessPeerToPeer,
    _check_lr,
    _check_nodes,
    _lr_at,
    _per_node,
    consensus_distance,
)
from byzdask.engine.peer_to_peer.peers import ByzantinePeer, HonestPeer, node_name
from byzdask.engine.peer_to_peer.topology import Topology
from byzdask.engine.progress import round_progress
from byzdask.errors import ActorLostError, ConfigurationError, MessageTimeoutError
from byzdask.pre_aggregators.base import PreAggregator

if TYPE_CHECKING:  # typing.Self needs Python 3.11; the package supports 3.10
    from typing import Self

__all__ = ["PeerToPeer"]

logger = logging.getLogger(__name__)

MODES = ("sync", "async")


def _chain(value: Any, what: str) -> tuple[PreAggregator, ...]:
    if value is None:
        return ()
    steps = (value,) if isinstance(value, PreAggregator) else value
    if not isinstance(steps, (list, tuple)):
        raise ConfigurationError(
            f"{what} must be a PreAggregator, a sequence of them, None or a mapping honest id -> those, "
            f"got {type(value).__name__}"
        )
    for step in steps:
        if not isinstance(step, PreAggregator):
            raise ConfigurationError(f"{what} steps must be PreAggregator instances, got {type(step).__name__}")
    return tuple(steps)


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _own_copy(node: Any) -> Any:
    # The actor gets its own model and buffers; the (read-only) shard is shared, not copied.
    memo = {} if node.data is None else {id(node.data): node.data}
    return copy.deepcopy(node, memo)


def _initial_state(node: Any) -> dict[str, Any]:
    if isinstance(node, HonestNode):
        buffer = node.momentum_buffer
        return {"params": node.params(), "step": node.step,
                "momentum_buffer": None if buffer is None else buffer.clone()}
    return {"step": node.step}


class _NodesLost(Exception):
    def __init__(self, ids: list[int], cause: BaseException) -> None:
        super().__init__(ids)
        self.ids, self.cause = ids, cause


class PeerToPeer:
    r"""Decentralised training of honest and Byzantine nodes along a topology, on Dask actors.

    **Synchronous round** ``r`` (``mode="sync"``, the default), on every node at once:

    1. an honest node :math:`i` takes a local SGD step on its own vector (gradient with worker
       momentum when configured), :math:`x_i^{+} = x_i - \eta_r (v_i + \lambda x_i)`, and sends
       :math:`x_i^{+}` to its out-neighbours, tagged with round ``r``;
    2. a Byzantine node waits for this round's vectors of the honest nodes it hears (its honest
       in-neighbours; every honest node when ``omniscient``), takes their mean as its base
       vector, and sends its attack's vector to its out-neighbours (seeded attacks draw a fresh
       seed per round, see :meth:`ByzantineNode.attack_for_round
       <byzdask.engine.node.byzantine.ByzantineNode.attack_for_round>`);
    3. an honest node takes exactly its in-neighbours' vectors of round ``r`` (waiting at most
       ``round_timeout`` seconds; a missing one raises
       :class:`~byzdask.errors.MessageTimeoutError` naming the node, the missing senders and the
       round), aggregates its own vector (first) and theirs (in id order) with its own
       pre-aggregators and rule, and writes the result into its model.

    The result equals :class:`~byzdask.engine.node.training.InProcessPeerToPeer` on the same
    nodes: arrival order never matters, so the same seeds give the same history.

    **Asynchronous mode** (``mode="async"``) with staleness bound :math:`s` = ``staleness``:
    each node runs its own loop of rounds with no global barrier. In its local round :math:`t`,
    an honest node takes its local step and sends :math:`x_i^{+}` tagged :math:`t`; it keeps
    the freshest vector received from each in-neighbour, waits (at most ``round_timeout``
    seconds) until every in-neighbour's freshest vector is of round :math:`\ge t - s`, then
    aggregates its own vector with the in-neighbours' vectors of round :math:`\ge t - s`
    (those still older are left out and counted as ``late``). A Byzantine node does the
    same waiting on the honest vectors it hears, then sends its attack tagged :math:`t`.
    Nobody waits for a node more than :math:`s` rounds behind itself, and a node always sends
    before it waits, so the loops cannot deadlock; a silent or slow neighbour costs at most
    ``round_timeout`` per round. Nodes meet only at evaluation points: :meth:`run` lets every
    node run ``eval_every`` rounds on its own, then evaluates (and :meth:`round` runs one
    round per node). Results depend on timing: asynchronous runs are not reproducible.

    Parameters
    ----------
    honest_nodes : sequence of HonestNode
        ``honest_nodes[k]`` plays ``topology.honest_ids[k]``.
    byzantine_nodes : sequence of ByzantineNode
        ``byzantine_nodes[k]`` plays ``topology.byzantine_ids[k]``.
    topology : Topology
        Who sends to whom (edges between two Byzantine nodes carry nothing and are not wired).
    aggregator : Aggregator or mapping
        One rule for every honest node (each node gets its own copy), or ``{honest id: rule}``.
    pre_aggregator : PreAggregator, sequence, None or mapping
        Applied in order before the rule; one chain for all, or ``{honest id: chain}``.
    lr : float or callable
        Learning rate, or a schedule ``round -> lr``.
    weight_decay : float
        :math:`\lambda \ge 0` in the local step.
    actor_pool : ActorPool, optional
        A started pool: every node becomes an actor on its workers (node ``k`` in id order on
        worker ``k mod W``). None: the rounds run in this process, on the given node objects.
    mode : {"sync", "async"}
        Synchronous rounds, or asynchronous nodes (needs a pool).
    round_timeout : float or str, optional
        How long a node waits for its in-neighbours' vectors in one round; default
        ``byzdask.channel.recv-timeout``. Also bounds each send.
    staleness : int
        :math:`s \ge 0` of the asynchronous mode.
    omniscient : bool
        Byzantine nodes see every honest vector of the round, not only their in-neighbours'.
    test_data : Dataset, optional
        Test split: each honest actor holds it and evaluates its own model.
    checkpoint_every : int, optional
        Keep every node's state (parameters, momentum buffer, minibatch counter) every that
        many rounds. When a worker is lost, the lost nodes are respawned on the remaining
        workers, every node returns to the last checkpoint (round 0 when none was taken yet)
        and the rounds since are replayed (synchronous replays give the same result).
        None: a lost worker raises :class:`~byzdask.errors.ActorLostError` naming the nodes.
    capability : str, optional
        Place the actors on workers with this resource tag (default: every worker).

    Attributes
    ----------
    round_index : int
        Rounds run so far.
    history : list of dict
        Every record of :meth:`run`: ``{"round", "consensus_distance"}`` plus, with test data,
        ``"accuracy"`` (mean over honest nodes), ``"worst_accuracy"`` and ``"loss"`` (mean).
    recoveries : int
        How many times lost nodes were resumed from a checkpoint.

    Notes
    -----
    On a pool, the actors work on copies of the nodes (the shards are shared, not copied): the
    objects passed in keep their initial state. :meth:`honest_params` and :meth:`fetch_nodes`
    read the trained state back. Extra state that a node subclass keeps outside its model,
    momentum buffer and minibatch counter is not checkpointed.

    Cost of a synchronous round: one driver call per worker (it runs the round of every node
    that worker holds); vectors between actors of one worker go by reference, and what the
    nodes of one worker send to another worker within one turn of its event loop leaves as
    one actor call (the honest vectors in one, the Byzantine ones in another); the local steps
    and aggregations run in parallel across workers; ``2 h`` vectors come back to the driver
    for the consensus distance. Small vectors cross as one pickled blob, large ones zero-copy
    (:func:`~byzdask.engine.actor.channels.pack`).

    Examples
    --------
    >>> from byzdask.aggregators import Average
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
    >>> from byzdask.engine.node.training import make_honest_nodes
    >>> from byzdask.models import build_model
    >>> split = load_digits(seed=0)
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10, seed=0)
    >>> nodes = make_honest_nodes(partition_dataset(split.train, 4, seed=0), model, seed=0)
    >>> async def main():
    ...     async with ActorPool(ActorPoolConfig("thread", count=2)) as pool:
    ...         p2p = PeerToPeer(nodes, [], Topology.ring(4), aggregator=Average(), lr=0.5,
    ...                          actor_pool=pool, test_data=split.test)
    ...         history = await p2p.run(20, eval_every=10, progress=False)
    ...         await p2p.close()
    ...         return [h["round"] for h in history], history[-1]["accuracy"] > 0.9
    >>> asyncio.run(main())
    ([10, 20], True)
    """

    def __init__(self, honest_nodes: Sequence[HonestNode], byzantine_nodes: Sequence[ByzantineNode],
                 topology: Topology, *, aggregator: Aggregator | Mapping[int, Aggregator],
                 pre_aggregator: Any = None, lr: float | Callable[[int], float] = 0.1, weight_decay: float = 0.0,
                 actor_pool: Any = None, mode: str = "sync", round_timeout: Any = None, staleness: int = 1,
                 omniscient: bool = False, test_data: Dataset | None = None, checkpoint_every: int | None = None,
                 capability: str | None = None) -> None:
        self.honest_nodes, self.byzantine_nodes = _check_nodes(honest_nodes, byzantine_nodes)
        if not isinstance(topology, Topology):
            raise ConfigurationError(f"topology must be a Topology, got {type(topology).__name__}")
        h_ids, b_ids = topology.honest_ids, topology.byzantine_ids
        if len(h_ids) != len(self.honest_nodes) or len(b_ids) != len(self.byzantine_nodes):
            raise ConfigurationError(
                f"the topology has {len(h_ids)} honest and {len(b_ids)} Byzantine ids, got "
                f"{len(self.honest_nodes)} honest and {len(self.byzantine_nodes)} Byzantine nodes"
            )
        self.topology = topology
        self.aggregators = _per_node(aggregator, h_ids, "aggregator")
        for rule in self.aggregators.values():
            if not isinstance(rule, Aggregator):
                raise ConfigurationError(f"aggregator must be an Aggregator, got {type(rule).__name__}")
        if isinstance(pre_aggregator, Mapping):
            chains = {i: _chain(c, "pre_aggregator") for i, c in _per_node(pre_aggregator, h_ids,
                                                                             "pre_aggregator").items()}
        else:
            chain = _chain(pre_aggregator, "pre_aggregator")
            chains = {i: chain for i in h_ids}
        self.pre_aggregators = chains
        _check_lr(lr, weight_decay)
        self.lr, self.weight_decay = lr, float(weight_decay)
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "async" and actor_pool is None:
            raise ConfigurationError(
                "mode='async' needs an actor_pool (nodes progress on messages between actors); "
                "pass ActorPool([ActorPoolConfig('thread', count=...)]) or use mode='sync'"
            )
        self.mode = mode
        self.round_timeout = config.get_timeout("channel.recv-timeout", round_timeout)
        self.staleness = _count(staleness, "staleness", 0)
        self.omniscient = bool(omniscient)
        if test_data is not None and not isinstance(test_data, Dataset):
            raise ConfigurationError(f"test_data must be a byzdask.data.Dataset, got {type(test_data).__name__}")
        self.test_data = test_data
        self.checkpoint_every = None if checkpoint_every is None else _count(checkpoint_every, "checkpoint_every", 1)
        if actor_pool is not None and not hasattr(actor_pool, "spawn"):
            raise ConfigurationError(f"actor_pool must be an ActorPool, got {type(actor_pool).__name__}")
        self.pool = actor_pool
        self.capability = capability
        self.nodes: dict[int, Any] = {**dict(zip(h_ids, self.honest_nodes)), **dict(zip(b_ids, self.byzantine_nodes))}
        self.round_index = 0
        self.history: list[dict[str, Any]] = []
        self.recoveries = 0
        self._reference: InProcessPeerToPeer | None = None
        if actor_pool is None:
            self._reference = InProcessPeerToPeer(
                self.honest_nodes, self.byzantine_nodes, topology, aggregator=self.aggregators,
                pre_aggregators=self.pre_aggregators, lr=lr, weight_decay=weight_decay, omniscient=omniscient,
                test=test_data,
            )
        self._edges = self._channel_edges()
        self._actors: dict[int, Any] = {}
        self._generation = 0
        self._checkpoint: tuple[int, dict[int, dict[str, Any]]] | None = None
        self._closed = False

    # -- wiring ------------------------------------------------------------------------------------
    def _channel_edges(self) -> list[tuple[int, int]]:
        top = self.topology
        edges = {(u, v) for u, v in top.edges() if not (top.is_byzantine(u) and top.is_byzantine(v))}
        if self.omniscient:
            edges |= {(h, b) for h in top.honest_ids for b in top.byzantine_ids}
        return sorted(edges)

    def _in_ids(self, i: int) -> list[int]:
        return sorted(u for u, v in self._edges if v == i)

    @property
    def actors(self) -> dict[int, Any]:
        """Node id -> :class:`~byzdask.engine.actor.ref.ActorRef` (empty before the first round)."""
        return dict(self._actors)

    def _addresses(self) -> list[str]:
        if self.capability is not None:
            addresses = self.pool.workers_with(self.capability)
        else:
            addresses = list(self.pool.workers.values())
        if not addresses:
            raise ActorLostError(
                f"no worker{'' if self.capability is None else f' with capability {self.capability!r}'} "
                "is left in the pool to hold the peer-to-peer nodes"
            )
        return addresses

    async def _spawn(self, i: int, address: str) -> Any:
        node = _own_copy(self.nodes[i])
        name = node_name(i)
        if self.topology.is_byzantine(i):
            return await self.pool.spawn(ByzantinePeer, node, i, self._in_ids(i), worker=address, actor_name=name)
        return await self.pool.spawn(
            HonestPeer, node, i, self._in_ids(i), copy.deepcopy(self.aggregators[i]), self.pre_aggregators[i],
            self.test_data, worker=address, actor_name=name,
        )

    async def _open(self) -> None:
        name = f"p2p-{self._generation}-{uuid.uuid4().hex[:6]}"
        members = {node_name(i): self._actors[i] for i in sorted(self._actors)}
        edges = [(node_name(u), node_name(v)) for u, v in self._edges]
        await self.pool.open_channel(name, members, edges, send_timeout=self.round_timeout)
        await asyncio.gather(*(self._actors[i].use_channel(name) for i in sorted(self._actors)))

    async def start(self) -> None:
        """Create the node actors and open their channel (done by the first round when needed)."""
        if self._reference is not None or self._actors:
            return
        if self._closed:
            raise ConfigurationError("this PeerToPeer was closed: its nodes' actors are gone; build a new one")
        if not getattr(self.pool, "running", True):
            raise ConfigurationError("the actor_pool is not running; start it first (`async with pool:`)")
        addresses = self._addresses()
        ids = list(range(self.topology.n))
        refs = await asyncio.gather(*(self._spawn(i, addresses[k % len(addresses)]) for k, i in enumerate(ids)))
        self._actors = dict(zip(ids, refs))
        await self._open()
        self._checkpoint = (self.round_index, {i: _initial_state(self.nodes[i]) for i in ids})

    async def close(self) -> None:
        """Release the node actors (the pool stays up); the run cannot continue afterwards."""
        actors, self._actors = self._actors, {}
        self._closed = self._reference is None
        futures = [f for f in (getattr(ref, "_future", None) for ref in actors.values()) if f is not None]
        if futures and getattr(self.pool, "running", False):
            await self.pool.client.cancel(futures)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- rounds --------------------------------------------------------------------------------------
    async def round(self) -> dict[str, Any]:
        """Run one round.

        Returns
        -------
        dict
            ``round`` (counted from 1), ``lr``, ``consensus_distance`` (honest models after the
            round), ``mixing`` (mean over honest nodes of :math:`\\lVert x_i^{new} - x_i^{+}\\rVert`,
            how far aggregation moved them); synchronous rounds add ``consensus_before`` (after
            the local steps), asynchronous ones ``late`` (vectors left out as stale).

        Raises
        ------
        MessageTimeoutError
            A node did not receive all its in-neighbours' vectors in time (synchronous mode).
        ActorLostError
            A worker holding nodes was lost and no checkpointing was asked for.
        """
        return await self._advance(1)

    async def _advance(self, count: int) -> dict[str, Any]:
        if self._reference is not None:
            info = None
            for _ in range(count):
                info = self._reference.round()  # in this thread: a thread hop costs more than a round
                self.round_index = self._reference.round_index
            return info
        await self.start()
        target = self.round_index + count
        info: dict[str, Any] = {}
        while self.round_index < target:
            try:
                if self.mode == "sync":
                    info = await self._sync_round(self.round_index)
                else:
                    info = await self._async_rounds(self.round_index, target - self.round_index)
            except _NodesLost as lost:
                if self.checkpoint_every is None:
                    raise ActorLostError(
                        f"peer-to-peer round {self.round_index + 1}: the worker(s) holding node(s) {lost.ids} "
                        f"were lost and their state with them ({lost.cause}); pass checkpoint_every= to "
                        "resume lost nodes from a checkpoint"
                    ) from lost.cause
                await self._recover(lost.ids)
                continue
            await self._maybe_checkpoint()
        return info

    async def _call_all(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        """``method(*args[i])`` on every node ``i``: one actor call per worker, not per node."""
        groups: dict[Any, list[int]] = {}
        for i in args:
            groups.setdefault(self._actors[i].worker, []).append(i)
        calls = {}
        for ids in groups.values():
            first = self._actors[ids[0]]
            calls[tuple(ids)] = first.run_many(pack((method, [(self._actors[i].key, args[i]) for i in ids])))
        answers = await asyncio.gather(*calls.values(), return_exceptions=True)
        results: dict[int, Any] = {}
        for ids, answer in zip(calls, answers):
            if not isinstance(answer, BaseException):
                answer = unpack(answer)
            for k, i in enumerate(ids):
                results[i] = answer if isinstance(answer, BaseException) else answer[k]
        return await self._gather({i: results[i] for i in args})

    async def _gather(self, results: dict[int, Any]) -> dict[int, Any]:
        """The results of one call per node; the most telling error when some failed."""
        errors = {i: e for i, e in results.items() if isinstance(e, BaseException)}
        if not errors:
            return results
        for error in errors.values():
            if not isinstance(error, Exception):
                raise error
        if any(isinstance(e, (ActorLostError, OSError)) for e in errors.values()):
            lost = await self._probe()
            if lost:
                cause = next(e for e in errors.values() if isinstance(e, (ActorLostError, OSError)))
                raise _NodesLost(lost, cause)
        # root causes first: a node that failed makes its out-neighbours time out
        first = min(errors, key=lambda i: (isinstance(errors[i], MessageTimeoutError), i))
        raise errors[first]

    async def _probe(self) -> list[int]:
        ids = sorted(self._actors)
        answers = await asyncio.gather(*(self._actors[i].call("ping", call_timeout=10) for i in ids),
                                       return_exceptions=True)
        return [i for i, a in zip(ids, answers) if isinstance(a, BaseException)]

    async def _sync_round(self, r: int) -> dict[str, Any]:
        lr = _lr_at(self.lr, r)
        top = self.topology
        args = {}
        for i in range(top.n):
            if top.is_byzantine(i):
                args[i] = (r, self.round_timeout)
            else:
                args[i] = (r, lr, self.weight_decay, self.round_timeout)
        results = await self._call_all("sync_round", args)
        honest = [results[i] for i in top.honest_ids]
        self.round_index = r + 1
        return {
            "round": self.round_index,
            "lr": lr,
            "consensus_before": consensus_distance([h["sent"] for h in honest]),
            "consensus_distance": consensus_distance([h["params"] for h in honest]),
            "mixing": float(np.mean([h["mixing"] for h in honest])),
        }

    async def _async_rounds(self, first: int, count: int) -> dict[str, Any]:
        lrs = [_lr_at(self.lr, t) for t in range(first, first + count)]
        top = self.topology
        args = {}
        for i in range(top.n):
            if top.is_byzantine(i):
                args[i] = (first, count, self.round_timeout, self.staleness)
            else:
                args[i] = (first, lrs, self.weight_decay, self.round_timeout, self.staleness)
        results = await self._call_all("async_rounds", args)
        honest = [results[i] for i in top.honest_ids]
        self.round_index = first + count
        return {
            "round": self.round_index,
            "lr": lrs[-1],
            "consensus_distance": consensus_distance([h["params"] for h in honest]),
            "mixing": float(np.mean([h["mixing"] for h in honest])),
            "late": int(sum(res["late"] for res in results.values())),
        }

    # -- checkpoints -----------------------------------------------------------------------------------
    async def _maybe_checkpoint(self) -> None:
        k = self.checkpoint_every
        if k is None or self._checkpoint is None:
            return
        if self.round_index // k > self._checkpoint[0] // k:
            ids = sorted(self._actors)
            states = await self._call_all("get_state", {i: () for i in ids})
            self._checkpoint = (self.round_index, states)
            logger.debug("peer-to-peer checkpoint at round %d", self.round_index)

    async def _recover(self, lost: list[int]) -> None:
        round_index, states = self._checkpoint
        logger.warning("peer-to-peer: node(s) %s lost in round %d; resuming from the checkpoint of round %d",
                       lost, self.round_index + 1, round_index)
        await self.pool.refresh_workers()
        addresses = self._addresses()
        for k, i in enumerate(lost):
            self._actors[i] = await self._spawn(i, addresses[k % len(addresses)])
        self._generation += 1
        await self._open()
        await self._call_all("set_state", {i: (states[i],) for i in sorted(self._actors)})
        self.round_index = round_index
        self.recoveries += 1

    # -- results -----------------------------------------------------------------------------------------
    async def honest_params(self) -> list[Any]:
        """The honest nodes' parameters (flat torch vectors), in honest id order."""
        if self._reference is not None:
            return self._reference.honest_params()
        await self.start()
        ids = self.topology.honest_ids
        return list((await self._call_all("params", {i: () for i in ids})).values())

    async def fetch_nodes(self) -> list[HonestNode]:
        """Copies of the honest nodes as trained so far, in honest id order."""
        if self._reference is not None:
            return [copy.deepcopy(node) for node in self.honest_nodes]
        await self.start()
        ids = self.topology.honest_ids
        return list((await self._call_all("get_node", {i: () for i in ids})).values())

    async def evaluate(self) -> dict[str, float]:
        """Every honest model on the test split: ``{"accuracy": mean, "worst_accuracy": min, "loss": mean}``."""
        if self.test_data is None:
            raise ConfigurationError("no test split: pass test_data= to PeerToPeer")
        if self._reference is not None:
            return await asyncio.to_thread(self._reference.evaluate)
        await self.start()
        ids = self.topology.honest_ids
        results = list((await self._call_all("evaluate", {i: () for i in ids})).values())
        accs = [a for a, _ in results]
        return {"accuracy": float(np.mean(accs)), "worst_accuracy": float(np.min(accs)),
                "loss": float(np.mean([loss for _, loss in results]))}

    async def run(self, rounds: int, *, eval_every: int = 1, callback: Callable[[dict[str, Any]], None] | None = None,
                  progress: bool = True) -> list[dict[str, Any]]:
        """Run ``rounds`` rounds, recording every ``eval_every`` rounds and after the last.

        Parameters
        ----------
        rounds : int
        eval_every : int
            In asynchronous mode, also how many rounds the nodes run between two meetings.
        callback : callable, optional
            Called with each record as it is made.
        progress : bool
            Show a progress bar of the rounds (tqdm, on stderr).

        Returns
        -------
        list of dict
            This call's records ``{"round", "consensus_distance", "accuracy", "worst_accuracy",
            "loss"}`` (the last three with test data), also appended to :attr:`history`.
        """
        _count(rounds, "rounds", 0)
        _count(eval_every, "eval_every", 1)
        records: list[dict[str, Any]] = []
        bar = round_progress(rounds, progress, desc="p2p rounds")
        try:
            done = 0
            while done < rounds:
                step = min(eval_every, rounds - done) if self.mode == "async" else 1
                info = await self._advance(step)
                done += step
                if bar is not None:
                    bar.update(step)
                if done % eval_every and done != rounds:
                    continue
                record = {"round": info["round"], "consensus_distance": info["consensus_distance"]}
                if self.test_data is not None:
                    record.update(await self.evaluate())
                    if bar is not None:
                        bar.set_postfix(accuracy=f"{record['accuracy']:.3f}")
                logger.debug("p2p record %s", record)
                records.append(record)
                self.history.append(record)
                if callback is not None:
                    callback(record)
        finally:
            if bar is not None:
                bar.close()
        return records

    def run_sync(self, rounds: int, *, eval_every: int = 1, callback: Callable[[dict[str, Any]], None] | None = None,
                 progress: bool = True) -> list[dict[str, Any]]:
        """:meth:`run` from synchronous code (a pool started with ``start_sync()``, or none)."""
        from byzdask.engine.graph.scheduler import pool_loop, run_coroutine_sync

        return run_coroutine_sync(
            lambda: self.run(rounds, eval_every=eval_every, callback=callback, progress=progress),
            loop=pool_loop(self.pool),
        )

    def __repr__(self) -> str:
        where = "in-process" if self.pool is None else repr(self.pool)
        return (f"PeerToPeer({len(self.honest_nodes)} honest, {len(self.byzantine_nodes)} Byzantine, "
                f"{self.topology!r}, mode={self.mode!r}, round {self.round_index}, {where})")

