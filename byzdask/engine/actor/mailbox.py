"""A channel member's mailbox: messages kept per sender, sequence-checked, taken exactly once.

:class:`Mailbox` is what a :class:`~byzdask.engine.actor.channels.Channel` endpoint receives
into; :class:`Message` is what ``recv`` returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from byzdask.errors import MessageRejectedError, MessageTimeoutError

__all__ = ["Mailbox", "Message"]

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
