"""A mailbox of typed messages: each delivered exactly once, in order per type, with timeouts."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict, deque
from typing import Any

from byzdask.engine.graph.operator import Operator
from byzdask.errors import ConfigurationError, MessageTimeoutError

__all__ = ["MessageBox", "triggers_as_messages"]

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

    def deliver(self, message_type: str, payload: Any, *, every_waiter: bool = False) -> None:
        """Hand ``payload`` to the first receiver waiting for ``message_type``, or queue it.

        With ``every_waiter=True`` every receiver waiting for that type now gets the same
        payload (ByzPy's scheduler semantics); it is queued, for the next receiver, only when none waits.

        Examples
        --------
        >>> import asyncio
        >>> async def two_waiters():
        ...     box = MessageBox()
        ...     waiting = [asyncio.ensure_future(box.receive("go", timeout=5)) for _ in range(2)]
        ...     await asyncio.sleep(0)
        ...     box.deliver("go", "now", every_waiter=True)
        ...     return await asyncio.gather(*waiting), box.pending("go")
        >>> asyncio.run(two_waiters())
        (['now', 'now'], 0)
        """
        _check_type(message_type)
        with self._lock:
            waiters = self._waiters.get(message_type)
            live = []
            while waiters:
                loop, fut = waiters.popleft()
                if fut.done():
                    continue
                live.append((loop, fut))
                if not every_waiter:
                    break
            if not live:
                self._queued[message_type].append(payload)
                return
            share = _Share(len(live))
            current = _running_loop()
            for loop, fut in live:
                if current is loop:
                    fut.set_result(payload)
                    share.taken = True
                    share.left -= 1
                else:
                    loop.call_soon_threadsafe(self._hand_over, message_type, fut, payload, share)

    def _hand_over(self, message_type: str, fut: asyncio.Future, payload: Any, share: _Share | None = None) -> None:
        # Runs on the waiter's loop; a message whose every waiter gave up meanwhile goes back first in line.
        share = share if share is not None else _Share(1)
        with self._lock:
            share.left -= 1
            if not fut.done():
                fut.set_result(payload)
                share.taken = True
                return
            if share.left > 0 or share.taken:
                return
            self._queued[message_type].appendleft(payload)
        self._wake_next(message_type)

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


class _Share:
    """How many receivers a delivered message was handed to still have to take it, and whether one did."""

    __slots__ = ("left", "taken")

    def __init__(self, left: int) -> None:
        self.left = left
        self.taken = False


def _check_type(message_type: Any) -> None:
    if not isinstance(message_type, str) or not message_type:
        raise ConfigurationError(f"message_type must be a non-empty string, got {message_type!r}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def triggers_as_messages(graph: Any) -> Any:
    """``graph`` with each :class:`~byzdask.engine.graph.operator.MessageTriggerOp` node reading a message input.

    The node becomes one that outputs what it reads from ``GraphInput.from_message`` of the
    trigger's type and timeout, so the scheduler's message machinery serves it. A graph without
    triggers is returned as it is.

    Examples
    --------
    >>> from byzdask.engine.graph.graph import ComputationGraph, GraphNode
    >>> from byzdask.engine.graph.operator import MessageTriggerOp
    >>> g = triggers_as_messages(ComputationGraph([GraphNode("go", MessageTriggerOp("go"), {})]))
    >>> [s.message_type for s in g.message_sources]
    ['go']
    """
    from byzdask.engine.graph.graph import ComputationGraph, GraphInput, GraphNode
    from byzdask.engine.graph.operator import MessageTriggerOp

    if not any(isinstance(node.op, MessageTriggerOp) for node in graph.nodes.values()):
        return graph
    nodes = []
    for node in graph.nodes.values():
        if isinstance(node.op, MessageTriggerOp):
            source = GraphInput.from_message(node.op.message_type, timeout=node.op.timeout or None)
            node = GraphNode(node.name, _Triggered(node.op), {**node.inputs, _TRIGGER_KEY: source})
        nodes.append(node)
    return ComputationGraph(nodes, outputs=graph.outputs)


_TRIGGER_KEY = "__message__"


class _Triggered(Operator):
    """The operator of a trigger node once its message is an input: it outputs that message."""

    def __init__(self, trigger: Any) -> None:
        self.trigger = trigger
        self.name = trigger.name
        self.input_keys = (_TRIGGER_KEY,)

    def compute(self, inputs: Any, *, context: Any = None) -> Any:
        return inputs[_TRIGGER_KEY]

    def __repr__(self) -> str:
        return repr(self.trigger)
