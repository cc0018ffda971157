"""Channels: mailboxes held by actors, with sender stamping and exactly-once delivery.

A channel connects a set of actors (its members, each known by a node name) along a directed
topology. Each member holds one :class:`Channel` endpoint, opened by
:func:`open_channel` from the driver; the endpoint is the only way to speak on the channel:

* ``await channel.send(to, payload, round=r)`` and ``await channel.broadcast(payload, round=r)``
  deliver to out-neighbours; the message is stamped with the endpoint's owner, never with a
  name taken from the payload.
* ``await channel.recv(timeout=...)`` takes the next message (optionally of a given round, tag
  or sender); ``await channel.recv_round(r, timeout=...)`` takes this round's message of every
  in-neighbour, as ``{sender: payload}``.

Stamping is enforced: each directed edge ``u -> v`` gets a random token known only to ``u``'s
and ``v``'s endpoints, so ``v`` accepts a message claiming to come from ``u`` only when it
carries that token. A node that is not an in-neighbour, or a forged sender, is rejected with
:class:`~byzdask.errors.MessageRejectedError`. Every message carries a per-edge sequence number,
so a retried delivery is dropped and each message is taken by exactly one ``recv``. A sender
speaks at most once per (round, tag): a second message is rejected (no equivocation).

Payloads travel as separate arguments of one actor call, so numpy arrays and CPU torch tensors
(and plain lists / dicts of them) cross as zero-copy buffers. Messages to actors of another
worker go through that worker's outbox: whatever the endpoints of one worker send to another
worker within one turn of the event loop leaves as one actor call (a broadcast's payload once
per receiving worker), and the receiving worker hands each message to its receivers' endpoints,
each of which checks its own edge token and sequence number. Between two actors of the same worker the payload is
handed over by reference: treat received payloads as read-only.

Members are actors whose class derives from :class:`ChannelHost`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import pickle
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from byzdask import config
from byzdask.errors import (
    ActorLostError,
    ConfigurationError,
    MessageRejectedError,
    MessageTimeoutError,
)

__all__ = ["Channel", "ChannelHost", "ChannelInfo", "Mailbox", "Message", "edges_of", "open_channel", "pack", "unpack"]

logger = logging.getLogger(__name__)


class Message(NamedTuple):
    """A received message: who sent it (stamped by the channel), its round and tag, the payload."""

    sender: str
    round: int | None
    tag: str | None
    payload: Any


class _SeenSequence:
    """Sequence numbers already accepted from one sender: a watermark plus the ones above it."""

    __slots__ = ("above", "low")

    def __init__(self) -> None:
        self.low = 0
        self.above: set[int] = set()

    def add(self, seq: int) -> bool:
        """Record ``seq``; return False when it was already seen."""
        if seq < self.low or seq in self.above:
            return False
        self.above.add(seq)
        while self.low in self.above:
            self.above.remove(self.low)
            self.low += 1
        return True


class Mailbox:
    """The inbox of one channel endpoint (a plain asyncio object, owned by one actor).

    Parameters
    ----------
    owner : str
        Name of the node that owns it.
    channel : str
        Name of the channel (for messages).

    Notes
    -----
    ``put`` costs O(1); ``get`` scans the pending messages, O(pending);
    ``take_round`` costs O(number of senders).

    Examples
    --------
    >>> import asyncio
    >>> box = Mailbox("a", "grad")
    >>> box.put("b", 0, round=1, tag=None, payload=[1.0])
    True
    >>> box.put("b", 0, round=1, tag=None, payload=[1.0])  # a retried delivery: dropped
    False
    >>> asyncio.run(box.get(timeout=1.0))
    Message(sender='b', round=1, tag=None, payload=[1.0])
    """

    def __init__(self, owner: str, channel: str):
        self.owner = owner
        self.channel = channel
        self._pending: dict[int, Message] = {}
        self._by_round: dict[tuple[int, str | None, str], int] = {}
        self._spoken: set[tuple[int, str | None, str]] = set()
        self._seen: dict[str, _SeenSequence] = {}
        self._arrivals = 0
        self._changed = asyncio.Event()
        self.floor: int | None = None
        self.stats = {"delivered": 0, "duplicates": 0, "stale": 0, "rejected": 0}

    def put(self, sender: str, seq: int, *, round: int | None, tag: str | None, payload: Any) -> bool:
        """Store a message already authenticated as coming from ``sender``.

        Returns False (and stores nothing) for a duplicate delivery or a round below the floor.

        Raises
        ------
        MessageRejectedError
            When ``sender`` already spoke in this (round, tag).
        """
        seen = self._seen.setdefault(sender, _SeenSequence())
        if not seen.add(seq):
            self.stats["duplicates"] += 1
            return False
        if round is not None and self.floor is not None and round < self.floor:
            self.stats["stale"] += 1
            logger.debug("%s/%s dropped a message of round %s from %s (floor %s)",
                         self.channel, self.owner, round, sender, self.floor)
            return False
        if round is not None:
            key = (round, tag, sender)
            if key in self._spoken:
                self.stats["rejected"] += 1
                raise MessageRejectedError(
                    f"channel {self.channel!r}: {sender!r} already sent {self.owner!r} a message "
                    f"for round {round}, tag {tag!r}; a node speaks once per round and tag"
                )
            self._spoken.add(key)
            self._by_round[key] = self._arrivals
        self._pending[self._arrivals] = Message(sender, round, tag, payload)
        self._arrivals += 1
        self.stats["delivered"] += 1
        self._notify()
        return True

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _match(self, sender: str | None, round: int | None, tag: str | None, any_tag: bool) -> int | None:
        if round is not None and sender is not None and not any_tag:
            return self._by_round.get((round, tag, sender))
        for arrival, message in self._pending.items():
            if sender is not None and message.sender != sender:
                continue
            if round is not None and message.round != round:
                continue
            if not any_tag and message.tag != tag:
                continue
            return arrival
        return None

    def _pop(self, arrival: int) -> Message:
        message = self._pending.pop(arrival)
        if message.round is not None:
            self._by_round.pop((message.round, message.tag, message.sender), None)
        return message

    def pending(self) -> int:
        """Number of messages delivered and not yet taken."""
        return len(self._pending)

    async def _wait(self, deadline: float | None, what: str) -> None:
        loop = asyncio.get_running_loop()
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            raise MessageTimeoutError(what)
        try:
            await asyncio.wait_for(self._changed.wait(), remaining)
        except TimeoutError as exc:
            raise MessageTimeoutError(what) from exc

    async def get(
        self,
        *,
        sender: str | None = None,
        round: int | None = None,
        tag: Any = ...,
        timeout: float | None = None,
    ) -> Message:
        """Take the oldest message matching the filters, waiting up to ``timeout`` seconds.

        ``tag=...`` (the default) matches any tag; ``tag=None`` only untagged messages.

        Raises
        ------
        MessageTimeoutError
            Naming the channel, the owner and the filters it waited for.
        """
        any_tag = tag is ...
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            arrival = self._match(sender, round, None if any_tag else tag, any_tag)
            if arrival is not None:
                return self._pop(arrival)
            filters = ", ".join(
                f"{k}={v!r}" for k, v in (("sender", sender), ("round", round)) if v is not None
            )
            if not any_tag:
                filters = f"{filters}, tag={tag!r}" if filters else f"tag={tag!r}"
            await self._wait(
                deadline,
                f"channel {self.channel!r}: {self.owner!r} received no message"
                f"{' with ' + filters if filters else ''} within {timeout} s",
            )

    async def take_round(
        self,
        round: int,
        senders: Iterable[str],
        *,
        tag: str | None = None,
        timeout: float | None = None,
        partial: bool = False,
    ) -> dict[str, Any]:
        """Take the message of ``round`` from each of ``senders``; ``{sender: payload}``.

        With ``partial=True`` a timeout returns the messages that arrived; otherwise it raises
        :class:`~byzdask.errors.MessageTimeoutError` naming the senders still missing.
        """
        wanted = list(senders)
        got: dict[str, Any] = {}
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            for sender in wanted:
                if sender not in got:
                    arrival = self._by_round.get((round, tag, sender))
                    if arrival is not None:
                        got[sender] = self._pop(arrival).payload
            if len(got) == len(wanted):
                return {sender: got[sender] for sender in wanted}
            missing = [s for s in wanted if s not in got]
            try:
                await self._wait(
                    deadline,
                    f"channel {self.channel!r}: {self.owner!r} waited {timeout} s for round "
                    f"{round}{'' if tag is None else f', tag {tag!r}'} and is still missing "
                    f"{missing} (received {sorted(got)})",
                )
            except MessageTimeoutError:
                if partial:
                    return {sender: got[sender] for sender in wanted if sender in got}
                # Put back what was taken, so a later call can still see it.
                for sender, payload in got.items():
                    self._put_back(sender, round, tag, payload)
                raise

    def _put_back(self, sender: str, round: int, tag: str | None, payload: Any) -> None:
        self._by_round[(round, tag, sender)] = self._arrivals
        self._pending[self._arrivals] = Message(sender, round, tag, payload)
        self._arrivals += 1

    def discard_before(self, round: int) -> int:
        """Drop pending messages of rounds below ``round`` and refuse later ones; return the count."""
        self.floor = round if self.floor is None else max(self.floor, round)
        stale = [a for a, m in self._pending.items() if m.round is not None and m.round < self.floor]
        for arrival in stale:
            self._pop(arrival)
        self._spoken = {key for key in self._spoken if key[0] >= self.floor}
        return len(stale)


class Channel:
    """One member's endpoint of a channel; created inside the member by :func:`open_channel`.

    Use it from the member's own ``async`` methods: ``channel = self.channel("grad")``.

    Attributes
    ----------
    name : str
        The channel's name.
    owner : str
        The member's node name; every message sent here is stamped with it.
    in_neighbours, out_neighbours : tuple of str
        Who may send to the owner, and to whom the owner may send (sorted).
    """

    def __init__(
        self,
        name: str,
        owner: str,
        peers: Mapping[str, Any],
        out_tokens: Mapping[str, bytes],
        in_tokens: Mapping[str, bytes],
        send_timeout: float | None = None,
    ):
        self.name = name
        self.send_timeout = send_timeout
        self.owner = owner
        self._peers = dict(peers)
        self._out_tokens = dict(out_tokens)
        self._in_tokens = dict(in_tokens)
        self._next_seq = {to: 0 for to in self._peers}
        self.mailbox = Mailbox(owner, name)
        self.out_neighbours = tuple(sorted(self._peers))
        self.in_neighbours = tuple(sorted(self._in_tokens))

    def __repr__(self) -> str:
        return (f"<Channel {self.name!r} of {self.owner!r}: in={list(self.in_neighbours)} "
                f"out={list(self.out_neighbours)}>")

    def accept(self, sender: str, token: bytes, seq: int, round: int | None, tag: str | None, payload: Any) -> bool:
        """Authenticate and store an incoming message (called by the delivering peer)."""
        expected = self._in_tokens.get(sender)
        if expected is None:
            self.mailbox.stats["rejected"] += 1
            logger.warning("channel %r: %r rejected a message from %r, not an in-neighbour",
                           self.name, self.owner, sender)
            raise MessageRejectedError(
                f"channel {self.name!r}: {sender!r} is not an in-neighbour of {self.owner!r} "
                f"(in-neighbours: {list(self.in_neighbours)})"
            )
        if not isinstance(token, bytes) or not hmac.compare_digest(token, expected):
            self.mailbox.stats["rejected"] += 1
            logger.warning("channel %r: %r rejected a message claiming to come from %r",
                           self.name, self.owner, sender)
            raise MessageRejectedError(
                f"channel {self.name!r}: a message to {self.owner!r} claims to come from "
                f"{sender!r} but was not sent through {sender!r}'s endpoint"
            )
        return self.mailbox.put(sender, seq, round=round, tag=tag, payload=payload)

    async def send(self, to: str, payload: Any, *, round: int | None = None, tag: str | None = None) -> None:
        """Deliver ``payload`` to out-neighbour ``to``, stamped with this endpoint's owner.

        Raises
        ------
        ConfigurationError
            ``to`` is not an out-neighbour.
        MessageRejectedError
            The receiver refused it (e.g. a second message in the same round).
        ActorLostError
            The receiver's worker was lost.
        MessageTimeoutError
            The receiver did not acknowledge within the channel's send timeout (its worker is
            unreachable or its event loop is blocked).
        """
        if to not in self._peers:
            raise ConfigurationError(
                f"channel {self.name!r}: {self.owner!r} cannot send to {to!r}, not an "
                f"out-neighbour (out-neighbours: {list(self.out_neighbours)})"
            )
        _check_stamp(round, tag)
        await self._send_to((to,), payload, round, tag)

    async def broadcast(self, payload: Any, *, round: int | None = None, tag: str | None = None) -> None:
        """Send ``payload`` to every out-neighbour.

        Out-neighbours on this worker get it by reference; those on another worker get it in
        one actor call per worker (the payload serialized once), concurrently. Every
        out-neighbour is tried; the first failure is raised afterwards.
        """
        _check_stamp(round, tag)
        await self._send_to(self.out_neighbours, payload, round, tag)

    async def _send_to(self, targets: Iterable[str], payload: Any, round: int | None, tag: str | None) -> None:
        worker = _current_worker()
        here = None if worker is None else worker.address
        groups: dict[Any, list[tuple[str, Any, int]]] = {}
        for to in targets:
            seq = self._next_seq[to]
            self._next_seq[to] = seq + 1
            handle = self._peers[to]
            groups.setdefault(getattr(handle, "_address", None), []).append((to, handle, seq))
        errors: list[BaseException] = []
        for to, handle, seq in groups.pop(here, []) if here is not None else []:
            actor = worker.state.actors.get(handle.key)
            if actor is None:  # not held here after all: deliver through the comm
                groups.setdefault(None, []).append((to, handle, seq))
                continue
            try:
                # Same worker: hand the payload over by reference, no serialization, no comm.
                actor.channel(self.name).accept(self.owner, self._out_tokens[to], seq, round, tag, payload)
            except (MessageRejectedError, ConfigurationError) as exc:
                errors.append(exc)
        calls = []
        for address, batch in groups.items():
            if address is None:  # unknown placement: one call per receiver
                calls.extend(self._deliver((item,), round, tag, payload) for item in batch)
            else:
                calls.append(self._deliver(batch, round, tag, payload))
        if calls:
            for result in await asyncio.gather(*calls, return_exceptions=True):
                if isinstance(result, BaseException):
                    errors.append(result)
        for error in errors:
            if not isinstance(error, Exception):
                raise error
        if errors:
            raise errors[0]

    async def _deliver(self, batch: Iterable[tuple[str, Any, int]], round: int | None, tag: str | None,
                       payload: Any) -> None:
        """Deliver ``payload`` to every receiver of ``batch`` (all on one worker) through the outbox."""
        batch = list(batch)
        names = [to for to, _, _ in batch]
        entries = [(handle.key, to, self._out_tokens[to], seq) for to, handle, seq in batch]
        handle = batch[0][1]
        sent = _post(getattr(handle, "_address", None), handle, (self.name, self.owner, entries, round, tag),
                     payload, self.send_timeout)
        try:
            errors = await asyncio.wait_for(asyncio.shield(sent), self.send_timeout)
        except TimeoutError as exc:
            raise MessageTimeoutError(
                f"channel {self.name!r}: {names} did not acknowledge {self.owner!r}'s message of round "
                f"{round} within {self.send_timeout} s; their worker is unreachable, lost or blocked"
            ) from exc
        except RuntimeError as exc:
            if "Worker holding Actor was lost" in str(exc):
                raise ActorLostError(
                    f"channel {self.name!r}: the worker holding {names} was lost; {self.owner!r} could not "
                    f"deliver round {round}"
                ) from exc
            raise
        except OSError as exc:
            from distributed.comm.core import CommClosedError

            if isinstance(exc, CommClosedError) or type(exc) is OSError:
                raise ActorLostError(
                    f"channel {self.name!r}: cannot reach {names} ({exc}); {self.owner!r} could not "
                    f"deliver round {round}"
                ) from exc
            raise
        for error in errors or ():
            if error is not None:
                raise error

    async def recv(
        self,
        *,
        timeout: Any = None,
        round: int | None = None,
        tag: Any = ...,
        sender: str | None = None,
    ) -> Message:
        """Take the next message (of ``round`` / ``tag`` / ``sender`` when given).

        ``timeout`` defaults to ``byzdask.channel.recv-timeout``; ``tag=...`` matches any tag.

        Raises
        ------
        MessageTimeoutError
            Nothing matching arrived in time; the message names the channel and filters.
        """
        limit = config.get_timeout("channel.recv-timeout", timeout)
        return await self.mailbox.get(sender=sender, round=round, tag=tag, timeout=limit)

    async def recv_round(
        self,
        round: int,
        *,
        tag: str | None = None,
        timeout: Any = None,
        senders: Iterable[str] | None = None,
        partial: bool = False,
    ) -> dict[str, Any]:
        """This round's payload from every in-neighbour (or from ``senders``), ``{sender: payload}``.

        The dict is ordered by sender name. With ``partial=True`` a timeout returns those that
        arrived (a silent Byzantine neighbour cannot stall the round); otherwise it raises
        :class:`~byzdask.errors.MessageTimeoutError` naming the missing senders.
        """
        wanted = self.in_neighbours if senders is None else tuple(senders)
        unknown = [s for s in wanted if s not in self._in_tokens]
        if unknown:
            raise ConfigurationError(
                f"channel {self.name!r}: {unknown} are not in-neighbours of {self.owner!r} "
                f"(in-neighbours: {list(self.in_neighbours)})"
            )
        limit = config.get_timeout("channel.recv-timeout", timeout)
        return await self.mailbox.take_round(round, wanted, tag=tag, timeout=limit, partial=partial)

    def discard_before(self, round: int) -> int:
        """Drop pending messages of older rounds and ignore late ones; return how many were dropped."""
        return self.mailbox.discard_before(round)


def _check_stamp(round: Any, tag: Any) -> None:
    if round is not None and (isinstance(round, bool) or not isinstance(round, int)):
        raise ConfigurationError(f"round must be an int or None, got {round!r}")
    if tag is not None and not isinstance(tag, str):
        raise ConfigurationError(f"tag must be a str or None, got {tag!r}")


def _current_worker() -> Any:
    """The Dask worker running this code, or None outside a worker."""
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


#: Messages waiting to leave, per (event loop, sending worker, receiving worker): a list of
#: ``(header, payload, send timeout, future)``. Whatever the endpoints of one worker send to
#: another worker within one turn of the event loop leaves as one actor call.
_OUTBOXES: dict[tuple[int, str | None, str | None], list[tuple[tuple, Any, float | None, asyncio.Future]]] = {}


def _post(address: str | None, handle: Any, header: tuple, payload: Any, timeout: float | None) -> asyncio.Future:
    """Queue one message for the actors of worker ``address``; the future gets its outcome."""
    loop = asyncio.get_running_loop()
    worker = _current_worker()
    key = (id(loop), None if worker is None else worker.address, address)
    box = _OUTBOXES.get(key)
    if box is None or address is None:
        box = []
        if address is not None:
            _OUTBOXES[key] = box
        loop.call_soon(lambda: loop.create_task(_flush(key, handle, box)))
    sent = loop.create_future()
    sent.add_done_callback(_retrieve)
    box.append((header, payload, timeout, sent))
    return sent


def _retrieve(future: asyncio.Future) -> None:
    # A sender that timed out no longer awaits its future: mark its error as seen.
    if not future.cancelled():
        future.exception()


async def _flush(key: tuple, handle: Any, box: list) -> None:
    """Send the queued messages of one outbox in one actor call and settle their futures."""
    from byzdask.engine.actor.ref import guarded

    if _OUTBOXES.get(key) is box:
        del _OUTBOXES[key]
    timeouts = [timeout for _, _, timeout, _ in box]
    limit = None if any(t is None for t in timeouts) else max(timeouts)
    headers = pickle.dumps([header for header, _, _, _ in box], protocol=pickle.HIGHEST_PROTOCOL)
    try:
        call = handle.channel_deliver_batch(headers, pack([payload for _, payload, _, _ in box]))
        results = (await asyncio.wait_for(guarded(call), limit)).unwrap()
    except BaseException as exc:
        for _, _, _, sent in box:
            if not sent.done():
                sent.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    for k, (_, _, _, sent) in enumerate(box):
        if not sent.done():
            sent.set_result(None if results is None else results[k])


#: Values with fewer tensor / array bytes than this cross as one pickled blob (see :func:`pack`).
PICKLE_BELOW = 1 << 20


def _packable_bytes(value: Any) -> int | None:
    """Bytes of the arrays in ``value``; None when one is not in host memory."""
    if isinstance(value, (list, tuple)):
        parts = [_packable_bytes(v) for v in value]
    elif isinstance(value, dict):
        parts = [_packable_bytes(v) for v in value.values()]
    elif isinstance(value, (str, bytes, int, float, bool, type(None))):
        return 0
    else:
        device = getattr(value, "device", "cpu")
        if str(device) != "cpu":
            return None
        return int(getattr(value, "nbytes", 0))
    return None if any(p is None for p in parts) else sum(parts)


def pack(value: Any) -> Any:
    """``value`` as one pickled blob when its arrays are small and in host memory, else itself.

    Dask serializes each element of a list or dict argument (or result) of an actor call on
    its own, about 0.1 ms apiece; one blob of small vectors costs a tenth of that. Large or
    device arrays keep Dask's own (zero-copy) path. :func:`unpack` reverses it.

    Examples
    --------
    >>> import numpy as np
    >>> blob = pack([{"v": np.ones(3)}, 2.5])
    >>> isinstance(blob, bytes), unpack(blob)[1]
    (True, 2.5)
    >>> isinstance(pack([np.ones(1 << 18)]), list)  # 2 MiB: left to Dask
    True
    """
    size = _packable_bytes(value)
    if size is None or size >= PICKLE_BELOW:
        return value
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(value: Any) -> Any:
    """The value :func:`pack` was given (unpickled: it comes from a member of the same Dask cluster)."""
    return pickle.loads(value) if isinstance(value, bytes) else value


class ChannelHost:
    """Mixin for actor classes that take part in channels.

    It needs no ``__init__``: endpoints are created by :func:`open_channel`. Inside the actor,
    ``self.channel(name)`` returns the endpoint. The ``channel_*`` methods below let a driver
    act *as this node* (it can only make the node speak as itself).

    Examples
    --------
    >>> import asyncio
    >>> import numpy as np
    >>> from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
    >>> class Node(ChannelHost):
    ...     async def step(self, round):
    ...         channel = self.channel("vec")
    ...         await channel.broadcast(np.full(3, round, dtype=np.float32), round=round)
    ...         got = await channel.recv_round(round, timeout=5)
    ...         return {sender: float(v.sum()) for sender, v in got.items()}
    >>> async def main():
    ...     async with ActorPool([ActorPoolConfig("thread", count=2)]) as pool:
    ...         nodes = {n: await pool.spawn(Node, actor_name=n) for n in ("a", "b", "c")}
    ...         await open_channel("vec", nodes, topology=[("a", "b"), ("b", "c"), ("c", "a")])
    ...         return await asyncio.gather(*(ref.step(2) for ref in nodes.values()))
    >>> asyncio.run(main())
    [{'c': 6.0}, {'a': 6.0}, {'b': 6.0}]
    """

    def channel(self, name: str) -> Channel:
        """This actor's endpoint of channel ``name``."""
        channels = self.__dict__.get("_byzdask_channels", {})
        try:
            return channels[name]
        except KeyError:
            raise ConfigurationError(
                f"this actor has no channel {name!r} (open ones: {sorted(channels)}); "
                "open it with byzdask.engine.actor.open_channel"
            ) from None

    async def channel_open(self, name: str, owner: str, peers: Mapping[str, Any],
                           out_tokens: Mapping[str, bytes], in_tokens: Mapping[str, bytes],
                           send_timeout: float | None = None) -> None:
        """Create this actor's endpoint (called by :func:`open_channel`)."""
        channels = self.__dict__.setdefault("_byzdask_channels", {})
        if name in channels:
            raise ConfigurationError(f"channel {name!r} is already open on {owner!r}")
        channels[name] = Channel(name, owner, peers, out_tokens, in_tokens, send_timeout)

    async def channel_deliver(self, name: str, sender: str, token: bytes, seq: int,
                              round: int | None, tag: str | None, payload: Any) -> bool:
        """Accept a message for this actor (called by the sending endpoint)."""
        return self.channel(name).accept(sender, token, seq, round, tag, payload)

    async def channel_deliver_batch(self, headers: bytes, payloads: Any) -> list | None:
        """Accept messages for actors of this worker (called by another worker's outbox).

        ``headers`` is the pickled list of ``(channel, sender, entries, round, tag)``, one per
        message, where ``entries`` holds ``(actor key, receiver name, edge token, sequence
        number)`` per receiver; ``payloads`` (:func:`pack`-ed) the messages' payloads. Each
        receiver's own endpoint authenticates its entry. Returns None when every receiver took
        its message, else, per message, None or a list of per-entry outcomes (None or error).
        """
        # Dask unpickles every actor call's arguments anyway: these blobs add no new trust.
        messages = pickle.loads(headers)
        payloads = unpack(payloads)
        worker = _current_worker()
        results: list[list[Exception | None] | None] = []
        for (name, sender, entries, round, tag), payload in zip(messages, payloads):
            outcomes: list[Exception | None] = []
            for key, to, token, seq in entries:
                actor = self if worker is None else worker.state.actors.get(key, None)
                try:
                    if not isinstance(actor, ChannelHost):
                        raise MessageRejectedError(f"channel {name!r}: no member {to!r} on this worker")
                    endpoint = actor.channel(name)
                    if endpoint.owner != to:
                        raise MessageRejectedError(
                            f"channel {name!r}: a message for {to!r} was addressed to {endpoint.owner!r}"
                        )
                    endpoint.accept(sender, token, seq, round, tag, payload)
                except (MessageRejectedError, ConfigurationError) as exc:
                    outcomes.append(exc)
                else:
                    outcomes.append(None)
            results.append(outcomes if any(e is not None for e in outcomes) else None)
        return results if any(r is not None for r in results) else None

    async def channel_send(self, name: str, to: str, payload: Any, round: int | None = None,
                           tag: str | None = None) -> None:
        """Make this node send ``payload`` to ``to`` (stamped with this node's name)."""
        await self.channel(name).send(to, payload, round=round, tag=tag)

    async def channel_broadcast(self, name: str, payload: Any, round: int | None = None,
                                tag: str | None = None) -> None:
        """Make this node send ``payload`` to all its out-neighbours."""
        await self.channel(name).broadcast(payload, round=round, tag=tag)

    async def channel_recv(self, name: str, timeout: Any = None, round: int | None = None,
                           tag: Any = ..., sender: str | None = None) -> tuple:
        """Take this node's next message, as a plain ``(sender, round, tag, payload)`` tuple."""
        message = await self.channel(name).recv(timeout=timeout, round=round, tag=tag, sender=sender)
        return tuple(message)

    async def channel_recv_round(self, name: str, round: int, tag: str | None = None,
                                 timeout: Any = None, partial: bool = False) -> dict[str, Any]:
        """This node's messages of ``round`` from all in-neighbours, ``{sender: payload}``."""
        return await self.channel(name).recv_round(round, tag=tag, timeout=timeout, partial=partial)

    async def channel_stats(self, name: str) -> dict[str, int]:
        """Counts of delivered, duplicate, stale and rejected messages, and pending ones."""
        channel = self.channel(name)
        return {**channel.mailbox.stats, "pending": channel.mailbox.pending()}


@dataclass(frozen=True)
class ChannelInfo:
    """What :func:`open_channel` wired: the channel's name and each member's neighbours."""

    name: str
    in_neighbours: Mapping[str, tuple[str, ...]]
    out_neighbours: Mapping[str, tuple[str, ...]]


def edges_of(members: Iterable[str], topology: Any = None) -> list[tuple[str, str]]:
    """Directed edges of a topology over ``members`` (self-loops dropped).

    Parameters
    ----------
    members : iterable of str
        Node names.
    topology : None, networkx graph, mapping or iterable of pairs
        ``None``: every node to every other. An undirected ``networkx.Graph`` gives both
        directions of each edge, a ``DiGraph`` its edges. A mapping ``{node: out-neighbours}``
        or a list of ``(u, v)`` pairs.

    Raises
    ------
    ConfigurationError
        For a node of the topology that is not a member.

    Examples
    --------
    >>> edges_of(["a", "b", "c"])
    [('a', 'b'), ('a', 'c'), ('b', 'a'), ('b', 'c'), ('c', 'a'), ('c', 'b')]
    >>> edges_of(["a", "b"], {"a": ["b"]})
    [('a', 'b')]
    """
    names = list(members)
    known = set(names)
    if topology is None:
        return [(u, v) for u in names for v in names if u != v]
    if hasattr(topology, "edges") and hasattr(topology, "is_directed"):
        pairs = list(topology.edges())
        if not topology.is_directed():
            pairs = pairs + [(v, u) for u, v in pairs]
    elif isinstance(topology, Mapping):
        pairs = [(u, v) for u, outs in topology.items() for v in outs]
    else:
        pairs = [tuple(pair) for pair in topology]
    edges: list[tuple[str, str]] = []
    for pair in pairs:
        if len(pair) != 2:
            raise ConfigurationError(f"a topology edge must be a pair (u, v), got {pair!r}")
        u, v = pair
        for node in (u, v):
            if node not in known:
                raise ConfigurationError(
                    f"topology names node {node!r}, which is not a member (members: {sorted(known)})"
                )
        if u != v and (u, v) not in edges:
            edges.append((u, v))
    return sorted(edges)


async def open_channel(name: str, members: Mapping[str, Any], topology: Any = None, *,
                       timeout: Any = None, send_timeout: Any = None) -> ChannelInfo:
    """Open channel ``name`` on every member actor, wired along ``topology``.

    Parameters
    ----------
    name : str
        The channel's name (a member may hold several channels).
    members : mapping of str to ActorRef
        Node name -> actor whose class derives from :class:`ChannelHost`.
    topology : optional
        See :func:`edges_of`; default: every member may send to every other.
    timeout : float or str, optional
        Default ``byzdask.channel.open-timeout``.
    send_timeout : float or str, optional
        How long a send waits for the receiver's acknowledgement; default
        ``byzdask.channel.send-timeout`` (read here, on the driver, and shipped to the members).

    Returns
    -------
    ChannelInfo
        The in- and out-neighbours of each member.

    Raises
    ------
    ConfigurationError
        A member is not a :class:`ChannelHost`, a topology node is unknown, or the channel is
        already open.
    """
    if not members:
        raise ConfigurationError("open_channel needs at least one member, got none")
    for node, ref in members.items():
        cls = getattr(ref, "cls", None)
        if not (isinstance(cls, type) and issubclass(cls, ChannelHost)):
            raise ConfigurationError(
                f"member {node!r} must be an ActorRef of a ChannelHost subclass, got {ref!r}"
            )
    edges = edges_of(members, topology)
    outs: dict[str, list[str]] = {node: [] for node in members}
    ins: dict[str, list[str]] = {node: [] for node in members}
    tokens: dict[tuple[str, str], bytes] = {}
    for u, v in edges:
        outs[u].append(v)
        ins[v].append(u)
        tokens[(u, v)] = secrets.token_bytes(16)
    limit = config.get_timeout("channel.open-timeout", timeout)
    send_limit = config.get_timeout("channel.send-timeout", send_timeout)
    calls = [
        members[node].channel_open(
            name,
            node,
            {v: members[v].handle for v in outs[node]},
            {v: tokens[(node, v)] for v in outs[node]},
            {u: tokens[(u, node)] for u in ins[node]},
            send_limit,
            call_timeout=limit,
        )
        for node in members
    ]
    await asyncio.gather(*calls)
    return ChannelInfo(
        name=name,
        in_neighbours={node: tuple(sorted(ins[node])) for node in members},
        out_neighbours={node: tuple(sorted(outs[node])) for node in members},
    )
