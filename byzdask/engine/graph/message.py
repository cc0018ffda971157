"""A mailbox of typed messages: each delivered exactly once, in order per type, with timeouts."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict, deque
from typing import Any

from byzdask.errors import ConfigurationError, MessageTimeoutError

__all__ = ["MessageBox"]

logger = logging.getLogger(__name__)


class MessageBox:
    """Messages queued by type, for coroutines that wait for them.

    A delivered message goes to the longest-waiting receiver of its type, or is queued until
    one asks. Every message is received exactly once, and messages of one type are received
    in the order they were delivered. :meth:`deliver` may be called from any thread.

    Examples
    --------
    >>> import asyncio
    >>> box = MessageBox()
    >>> box.deliver("grad", 1)
    >>> box.deliver("grad", 2)
    >>> asyncio.run(box.receive("grad", timeout=1.0)), box.pending("grad")
    (1, 1)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: defaultdict[str, deque[Any]] = defaultdict(deque)
        self._waiters: defaultdict[str, deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = defaultdict(deque)

    def pending(self, message_type: str) -> int:
        """How many messages of ``message_type`` are queued, not yet received."""
        with self._lock:
            return len(self._queued.get(message_type, ()))

    def deliver(self, message_type: str, payload: Any) -> None:
        """Hand ``payload`` to the first receiver waiting for ``message_type``, or queue it."""
        _check_type(message_type)
        with self._lock:
            waiters = self._waiters.get(message_type)
            while waiters:
                loop, fut = waiters.popleft()
                if fut.done():
                    continue
                if _running_loop() is loop:
                    fut.set_result(payload)
                else:
                    loop.call_soon_threadsafe(self._hand_over, message_type, fut, payload)
                return
            self._queued[message_type].append(payload)

    def _hand_over(self, message_type: str, fut: asyncio.Future, payload: Any) -> None:
        # Runs on the waiter's loop; a waiter that gave up meanwhile puts the message back first in line.
        if fut.done():
            with self._lock:
                self._queued[message_type].appendleft(payload)
            self._wake_next(message_type)
            return
        fut.set_result(payload)

    def _wake_next(self, message_type: str) -> None:
        with self._lock:
            queue = self._queued.get(message_type)
            waiters = self._waiters.get(message_type)
            while queue and waiters:
                loop, fut = waiters.popleft()
                if fut.done():
                    continue
                payload = queue.popleft()
                if _running_loop() is loop:
                    fut.set_result(payload)
                else:
                    loop.call_soon_threadsafe(self._hand_over, message_type, fut, payload)

    async def receive(self, message_type: str, *, timeout: float | None = None) -> Any:
        """Wait for the next message of ``message_type`` and take it.

        Raises
        ------
        MessageTimeoutError
            When no message arrived within ``timeout`` seconds (the message type is named).
        """
        _check_type(message_type)
        if timeout is not None and (isinstance(timeout, bool) or timeout < 0):
            raise ConfigurationError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
        loop = asyncio.get_running_loop()
        with self._lock:
            queue = self._queued.get(message_type)
            if queue:
                return queue.popleft()
            fut = loop.create_future()
            self._waiters[message_type].append((loop, fut))
        try:
            done, _ = await asyncio.wait({fut}, timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(message_type, fut)
            raise
        if done:
            return fut.result()
        self._abandon(message_type, fut)
        raise MessageTimeoutError(f"no message of type {message_type!r} arrived within {timeout} s")

    def _abandon(self, message_type: str, fut: asyncio.Future) -> None:
        """Withdraw a waiter; a message it already got but will not read goes back to the front."""
        with self._lock:
            if fut.done() and not fut.cancelled():
                self._queued[message_type].appendleft(fut.result())
                requeued = True
            else:
                fut.cancel()
                requeued = False
            waiters = self._waiters.get(message_type)
            if waiters:
                self._waiters[message_type] = deque(w for w in waiters if w[1] is not fut)
        if requeued:
            logger.debug("message of type %r returned to the queue by a cancelled receiver", message_type)
            self._wake_next(message_type)


def _check_type(message_type: Any) -> None:
    if not isinstance(message_type, str) or not message_type:
        raise ConfigurationError(f"message_type must be a non-empty string, got {message_type!r}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
