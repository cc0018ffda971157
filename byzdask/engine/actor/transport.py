"""How channel messages move: per-worker outboxes, one actor call per turn, and the receiving actor.

Whatever the endpoints of one worker send to another worker within one turn of the event loop
leaves as one actor call (:func:`_post`, :func:`_flush`); :class:`ChannelHost` (the mixin of
every member actor) receives it and hands each message to its endpoint's mailbox. Small
payloads cross as one pickled blob (:func:`pack`), large arrays as Dask's zero-copy buffers.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Mapping
from typing import Any

from byzdask.errors import ConfigurationError, MessageRejectedError

__all__ = ["ChannelHost", "pack", "unpack"]


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
    >>> from byzdask.engine.actor.channels import open_channel
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

    def channel(self, name: str) -> Any:
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
        from byzdask.engine.actor.channels import Channel

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
