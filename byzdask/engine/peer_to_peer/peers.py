"""The actors of peer-to-peer training: one per node, holding its model, data and momentum.

:class:`HonestPeer` and :class:`ByzantinePeer` are Dask actors (via
:class:`~byzdask.engine.graph.pool.ActorPool`) that exchange their vectors through one
:mod:`channel <byzdask.engine.actor.channels>`. Their methods are ``async`` and never block on
another actor; torch work that took more than ``INLINE_BELOW`` seconds last time runs through
:func:`asyncio.to_thread` so the worker keeps serving messages meanwhile (shorter work runs
inline: a thread hop costs more than a small model's step). :class:`~byzdask.engine.peer_to_peer.train.PeerToPeer` drives them; the
round semantics are those of :class:`~byzdask.engine.node.training.InProcessPeerToPeer`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from byzdask.aggregators.base import Aggregator
from byzdask.data.dataset import Dataset
from byzdask.engine.actor.channels import Channel, ChannelHost, pack, unpack
from byzdask.engine.node.byzantine import ByzantineNode
from byzdask.engine.node.honest import HonestNode
from byzdask.engine.node.training import _as_vector, robust_aggregate
from byzdask.errors import ActorLostError, ConfigurationError, MessageTimeoutError
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["ByzantinePeer", "HonestPeer", "byzantine_vector", "node_name"]

logger = logging.getLogger(__name__)


def node_name(node_id: int) -> str:
    """The channel name of node ``node_id``.

    Examples
    --------
    >>> node_name(3)
    'node-3'
    """
    return f"node-{int(node_id)}"


def byzantine_vector(node: ByzantineNode, seen: Sequence[torch.Tensor], round_index: int) -> torch.Tensor:
    """What a Byzantine peer sends in round ``round_index`` after seeing the honest vectors ``seen``.

    ``seen`` holds the honest vectors it received (in id order); their mean is its base
    vector, and its model (when it has one) is set to that mean first, as in
    :class:`~byzdask.engine.node.training.InProcessPeerToPeer`.

    Examples
    --------
    >>> from byzdask.attacks.sign_flip import SignFlipAttack
    >>> node = ByzantineNode(SignFlipAttack())
    >>> byzantine_vector(node, [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])], 0).tolist()
    [-2.0, -2.0]
    """
    base = torch.stack([_as_vector(v) for v in seen]).mean(dim=0) if seen else None
    if node.model is not None and base is not None:
        node.set_params(base)
    return _as_vector(node.attack_vector(honest_grads=list(seen), base_grad=base, round_index=round_index))


_DRIVER_METHODS = frozenset({"sync_round", "async_rounds", "params", "evaluate", "get_state", "set_state",
                             "get_node", "ping"})


#: Compute that took less than this many seconds last time runs inline (see ``_Peer._compute``).
INLINE_BELOW = 0.002

def _worker_actors() -> dict[str, Any] | None:
    """The actors of the Dask worker running this code (None outside a worker)."""
    from distributed import get_worker

    try:
        return get_worker().state.actors
    except ValueError:
        return None


def _one_torch_thread() -> None:
    # Several workers share a few cores: one intra-op thread each avoids oversubscription.
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class _Peer(ChannelHost):
    """What both kinds of peers share: identity, channel wiring, freshness bookkeeping."""

    def __init__(self, node: Any, node_id: int, in_ids: Sequence[int]) -> None:
        _one_torch_thread()
        self.node = node
        self.node_id = int(node_id)
        self.name = node_name(node_id)
        #: In-neighbours on the channel, in id order (what this peer waits for).
        self.in_ids = [int(i) for i in in_ids]
        self.channel_name: str | None = None
        #: Asynchronous mode: sender id -> (round, vector) of the freshest message received.
        self.latest: dict[int, tuple[int, Any]] = {}
        #: Seconds the last run of each compute function took (see :meth:`_compute`).
        self._durations: dict[str | None, float] = {}

    async def _compute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``: inline when its last run was short, else in a thread.

        A thread hop costs a fraction of a millisecond on a busy machine, more than a small
        model's step; a long step inline would stall the worker's event loop (messages,
        heartbeats). The first run of each function goes to a thread and is timed.
        """
        key = getattr(fn, "__name__", None)
        if self._durations.get(key, INLINE_BELOW) < INLINE_BELOW:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._durations[key] = time.perf_counter() - start

        def timed() -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._durations[key] = time.perf_counter() - start

        return await asyncio.to_thread(timed)

    async def use_channel(self, name: str) -> None:
        """Speak on channel ``name`` from now on (after a recovery the driver opens a new one)."""
        self.channel(name)  # raises when it is not open here
        self.channel_name = name
        self.latest = {}

    def _channel(self) -> Channel:
        return self.channel(self.channel_name)

    async def ping(self) -> int:
        """The node id (the driver's liveness probe)."""
        return self.node_id

    async def run_many(self, request: Any) -> Any:
        """Run one method on several peers of this worker at once; their results or errors, in order.

        ``request`` is :func:`pack` of ``(method, [(actor key, args), ...])`` (this peer
        included or not), the answer :func:`pack` of the list of results. The driver makes
        one such call per worker instead of one per node. A peer that is not held here gets
        an :class:`~byzdask.errors.ActorLostError` in its place.
        """
        method, calls = unpack(request)
        if method not in _DRIVER_METHODS:
            raise ConfigurationError(f"run_many runs one of {sorted(_DRIVER_METHODS)}, got {method!r}")
        actors = _worker_actors()

        async def one(key: str, args: tuple) -> Any:
            peer = actors.get(key) if actors is not None else (self if len(calls) == 1 else None)
            if not isinstance(peer, _Peer):
                raise ActorLostError(f"peer actor {key!r} is not held by this worker")
            return await getattr(peer, method)(*args)

        results = await asyncio.gather(*(one(key, tuple(args)) for key, args in calls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        return pack(results)

    async def _receive_round(self, r: int, timeout: float | None) -> list[Any]:
        """The in-neighbours' vectors of round ``r``, in id order; a missing one is an error."""
        if not self.in_ids:
            return []
        names = {node_name(i): i for i in self.in_ids}
        got = await self._channel().recv_round(r, timeout=timeout, partial=True)
        missing = [i for name, i in names.items() if name not in got]
        if missing:
            raise MessageTimeoutError(
                f"peer-to-peer round {r + 1}: node {self.node_id} received no vector from in-neighbour(s) "
                f"{missing} within {timeout} s (received from {sorted(names[s] for s in got)}); "
                "a neighbour is slow, stuck or gone (raise round_timeout if it is only slow)"
            )
        return [got[node_name(i)] for i in self.in_ids]

    async def _collect_fresh(self, oldest: int, timeout: float | None) -> tuple[list[Any], list[int]]:
        """Asynchronous mode: wait until every in-neighbour's freshest vector is of round >= ``oldest``.

        Returns the fresh vectors (id order) and the ids that had none fresh when ``timeout`` ran out.
        """
        mailbox = self._channel().mailbox
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while mailbox.pending():
            self._record(await mailbox.get(timeout=0))
        while True:
            stale = [i for i in self.in_ids if i not in self.latest or self.latest[i][0] < oldest]
            if not stale:
                break
            remaining = None if deadline is None else deadline - loop.time()
            try:
                if remaining is not None and remaining <= 0:
                    raise MessageTimeoutError("deadline passed")
                self._record(await mailbox.get(timeout=remaining))
            except MessageTimeoutError:
                logger.debug("node %d: no vector of round >= %d from %s within %s s; going on without them",
                             self.node_id, oldest, stale, timeout)
                break
        fresh = [self.latest[i][1] for i in self.in_ids if i in self.latest and self.latest[i][0] >= oldest]
        return fresh, stale

    def _record(self, message: Any) -> None:
        sender = int(message.sender.rsplit("-", 1)[1])
        if sender not in self.latest or message.round >= self.latest[sender][0]:
            self.latest[sender] = (message.round, message.payload)


class HonestPeer(_Peer):
    """An honest node as an actor: local step, exchange, robust aggregation of what it received.

    Parameters
    ----------
    node : HonestNode
        Its model, shard and momentum (the actor owns this copy).
    node_id : int
        Its topology id.
    in_ids : sequence of int
        Ids of its in-neighbours on the channel.
    aggregator : Aggregator
        Its own rule.
    pre_aggregators : sequence of PreAggregator
        Its own chain, applied in order before the rule.
    test_data : Dataset, optional
        Held for :meth:`evaluate`.

    Notes
    -----
    Inputs of the aggregation: its own vector first, then its in-neighbours' in id order.
    Vectors it receives are read-only (a neighbour on the same worker hands over its tensor).
    Cost of a round: one local step (forward and backward on a minibatch), one rule over
    ``1 + len(in_ids)`` vectors of length ``d``.

    Examples
    --------
    Outside an actor (no channel) it still holds and evaluates its node:

    >>> from byzdask.aggregators import Average
    >>> from byzdask.data import load_digits
    >>> from byzdask.models import build_model
    >>> split = load_digits(seed=0)
    >>> node = HonestNode(build_model("logreg", input_shape=(64,), num_classes=10), split.train)
    >>> peer = HonestPeer(node, 0, [1, 2], Average(), test_data=split.test)
    >>> peer.name, peer.in_ids, asyncio.run(peer.params()).shape
    ('node-0', [1, 2], torch.Size([650]))
    """

    def __init__(self, node: HonestNode, node_id: int, in_ids: Sequence[int], aggregator: Aggregator,
                 pre_aggregators: Sequence[PreAggregator] = (), test_data: Dataset | None = None) -> None:
        super().__init__(node, node_id, in_ids)
        self.aggregator = aggregator
        self.pre_aggregators = tuple(pre_aggregators)
        self.test_data = test_data

    def _aggregate(self, own: torch.Tensor, received: Sequence[Any]) -> tuple[torch.Tensor, float]:
        new = robust_aggregate([own, *received], self.aggregator, self.pre_aggregators)
        self.node.set_params(new)
        return new, float((new - own).double().norm())

    async def sync_round(self, r: int, lr: float, weight_decay: float, timeout: float | None) -> dict[str, Any]:
        """Round ``r`` of the synchronous protocol; ``{"sent", "params", "mixing"}``."""
        sent = await self._compute(self.node.local_step, lr, weight_decay=weight_decay)
        await self._channel().broadcast(sent, round=r)
        received = await self._receive_round(r, timeout)
        new, mixing = await self._compute(self._aggregate, sent, received)
        return {"sent": sent, "params": new, "mixing": mixing}

    async def async_rounds(self, first: int, lrs: Sequence[float], weight_decay: float, timeout: float | None,
                           staleness: int) -> dict[str, Any]:
        """Rounds ``first, first + 1, ...`` (one per learning rate) of the asynchronous protocol.

        Returns ``{"params", "mixing" (mean), "late" (in-neighbour vectors missing or stale at
        aggregation time, summed over the rounds)}``.
        """
        mixing, late = [], 0
        new = None
        for k, lr in enumerate(lrs):
            t = first + k
            sent = await self._compute(self.node.local_step, lr, weight_decay=weight_decay)
            await self._channel().broadcast(sent, round=t)
            fresh, stale = await self._collect_fresh(t - staleness, timeout)
            late += len(stale)
            new, m = await self._compute(self._aggregate, sent, fresh)
            mixing.append(m)
        params = new if new is not None else self.node.params()
        return {"params": params, "mixing": float(sum(mixing) / max(len(mixing), 1)), "late": late}

    async def params(self) -> torch.Tensor:
        """A copy of the node's parameters."""
        return self.node.params()

    async def evaluate(self, data: Dataset | None = None) -> tuple[float, float]:
        """``(accuracy, loss)`` of the node's model on ``data`` (default: the test split it holds)."""
        data = data if data is not None else self.test_data
        return await asyncio.to_thread(self.node.evaluate, data.x, data.y)

    async def get_state(self) -> dict[str, Any]:
        """What a checkpoint keeps: parameters, momentum buffer, minibatch counter."""
        buffer = self.node.momentum_buffer
        return {"params": self.node.params(), "step": self.node.step,
                "momentum_buffer": None if buffer is None else buffer.clone()}

    async def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s output."""
        self.node.set_params(state["params"])
        self.node.step = int(state["step"])
        buffer = state["momentum_buffer"]
        self.node.momentum_buffer = None if buffer is None else torch.as_tensor(buffer).clone()

    async def get_node(self) -> HonestNode:
        """A copy of the node as it is now."""
        return copy.deepcopy(self.node)


class ByzantinePeer(_Peer):
    """A Byzantine node as an actor: it reads what it receives and sends its attack's vector.

    Parameters
    ----------
    node : ByzantineNode
    node_id : int
    in_ids : sequence of int
        The honest nodes it hears (its honest in-neighbours; every honest node when omniscient).

    Notes
    -----
    It sends once per round, after it has heard the honest vectors of that round (synchronous
    mode) or the fresh ones (asynchronous mode); see :func:`byzantine_vector`.

    Examples
    --------
    >>> from byzdask.attacks.inf import InfAttack
    >>> peer = ByzantinePeer(ByzantineNode(InfAttack(), node_id=4), 4, [0, 1])
    >>> peer.name, asyncio.run(peer.get_state())
    ('node-4', {'step': 0})
    """

    async def sync_round(self, r: int, timeout: float | None) -> dict[str, Any]:
        """Round ``r``: wait for this round's honest vectors, attack, send; ``{}``."""
        seen = await self._receive_round(r, timeout)
        vector = await self._compute(byzantine_vector, self.node, seen, r)
        await self._channel().broadcast(vector, round=r)
        return {}

    async def async_rounds(self, first: int, count: int, timeout: float | None, staleness: int) -> dict[str, Any]:
        """``count`` rounds of the asynchronous protocol from round ``first``; ``{"late"}``."""
        late = 0
        for t in range(first, first + count):
            seen, stale = await self._collect_fresh(t - staleness, timeout)
            late += len(stale)
            vector = await self._compute(byzantine_vector, self.node, seen, t)
            await self._channel().broadcast(vector, round=t)
        return {"late": late}

    async def get_state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the minibatch counter."""
        return {"step": self.node.step}

    async def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s output."""
        self.node.step = int(state["step"])
