"""Channels: mailboxes held by actors, with sender stamping and exactly-once delivery.

A channel connects actors (members, known by node names) along a directed topology; each holds
one :class:`Channel` endpoint, opened by :func:`open_channel`, its only way to speak:

* ``await channel.send(to, payload, round=r)`` and ``await channel.broadcast(payload, round=r)``
  deliver to out-neighbours; the message is stamped with the endpoint's owner, never with a
  name taken from the payload.
* ``await channel.recv(timeout=...)`` takes the next message (optionally of a given round, tag
  or sender); ``await channel.recv_round(r, timeout=...)`` takes this round's message of every
  in-neighbour, as ``{sender: payload}``.

Stamping is enforced: each edge ``u -> v`` has a random token known only to ``u``'s and ``v``'s
endpoints; a message from a node that is not an in-neighbour, or with a forged sender, is
rejected (:class:`~byzdask.errors.MessageRejectedError`). A per-edge sequence number drops
retried deliveries; a sender speaks at most once per (round, tag) (no equivocation).

Payloads cross as zero-copy buffers, batched per worker pair and event-loop turn, received by
:class:`ChannelHost` (the members' mixin; :mod:`byzdask.engine.actor.transport`) into each
endpoint's :mod:`~byzdask.engine.actor.mailbox`. Between two actors of one worker a payload is
handed over by reference: treat received payloads as read-only.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from byzdask import config
from byzdask.engine.actor.mailbox import Mailbox, Message
from byzdask.engine.actor.transport import ChannelHost, _current_worker, _post, pack, unpack
from byzdask.errors import (
    ActorLostError,
    ConfigurationError,
    MessageRejectedError,
    MessageTimeoutError,
)

__all__ = ["Channel", "ChannelHost", "ChannelInfo", "Mailbox", "Message", "edges_of", "open_channel", "pack", "unpack"]

logger = logging.getLogger(__name__)


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

