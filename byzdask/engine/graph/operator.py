"""The operator model: every aggregator, pre-aggregator and attack is an :class:`Operator`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from byzdask.engine.graph.subtask import SubTask
from byzdask.errors import ConfigurationError

__all__ = ["MessageTriggerOp", "OpContext", "Operator"]


@dataclass(frozen=True)
class OpContext:
    """What an operator knows about the place it runs in.

    Parameters
    ----------
    node_name : str, optional
        The graph node running the operator.
    metadata : mapping
        Free-form metadata given to the scheduler (round number, node id, ...).
    """

    node_name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Operator:
    """A reusable, stateless compute primitive.

    Subclasses implement :meth:`compute`. Operators that gain from fan-out set
    ``supports_subtasks = True`` and implement :meth:`create_subtasks` and
    :meth:`reduce_subtasks`; running the subtasks and the reduce gives the result of
    :meth:`compute` (to float round-off).

    ``input_keys`` names the entries of the ``inputs`` mapping the operator reads.
    """

    name: str = "operator"
    input_keys: tuple[str, ...] = ()
    supports_subtasks: bool = False

    def compute(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        """Compute the operator's output directly, in this process."""
        raise NotImplementedError

    def create_subtasks(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Sequence[SubTask]:
        """Split the work into independent :class:`SubTask` objects."""
        raise NotImplementedError(f"{type(self).__name__} does not support subtasks")

    def reduce_subtasks(
        self, partials: Sequence[Any], inputs: Mapping[str, Any], *, context: OpContext | None = None
    ) -> Any:
        """Combine the subtasks' results (in the order of :meth:`create_subtasks`)."""
        raise NotImplementedError(f"{type(self).__name__} does not support subtasks")

    async def run(self, inputs: Mapping[str, Any], *, context: OpContext | None = None, pool: Any = None) -> Any:
        """Run the operator once, as ByzPy's ``Operator.run`` does (awaitable).

        With a pool of more than one worker and ``supports_subtasks``, the subtasks of
        :meth:`create_subtasks` run on the pool (``pool.run_subtask`` when the pool has one, else
        one Dask task each on ``pool.client``) and :meth:`reduce_subtasks` combines them; an
        operator that makes no subtasks, or no such pool, runs :meth:`compute`. A result that is
        awaitable is awaited. Graphs run through a :class:`~byzdask.engine.graph.scheduler.NodeScheduler`,
        which lowers them to Dask instead of calling this.

        Examples
        --------
        >>> import asyncio
        >>> import numpy as np
        >>> from byzdask.aggregators import CoordinateWiseMedian
        >>> x = np.array([[1.0], [2.0], [9.0]])
        >>> asyncio.run(CoordinateWiseMedian().run({"gradients": x}, context=OpContext("m")))
        array([2.])
        """
        context = context if context is not None else OpContext()
        if self.supports_subtasks and pool is not None and int(getattr(pool, "size", 0) or 0) > 1:
            tasks = list(self.create_subtasks(inputs, context=context))
            if tasks:
                partials = await _run_on_pool(pool, tasks)
                return await _maybe_await(self.reduce_subtasks(partials, inputs, context=context))
        return await _maybe_await(self.compute(inputs, context=context))

    def run_subtasks_locally(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        """Run the fan-out path in this process: create, run each subtask, reduce."""
        context = context or OpContext()
        tasks = self.create_subtasks(inputs, context=context)
        return self.reduce_subtasks([t.run() for t in tasks], inputs, context=context)

    def _require(self, inputs: Mapping[str, Any], key: str) -> Any:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{type(self).__name__}.compute expects a mapping of inputs, got {type(inputs).__name__}")
        try:
            return inputs[key]
        except KeyError:
            raise KeyError(
                f"{type(self).__name__} needs input {key!r}; got keys {sorted(map(str, inputs))}"
            ) from None

    def __repr__(self) -> str:
        params = getattr(self, "_repr_params", {})
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"


class MessageTriggerOp(Operator):
    """A node that waits for one message of ``message_type`` and outputs its payload.

    It runs in a :class:`~byzdask.engine.graph.scheduler.MessageAwareNodeScheduler` (or any
    object with ``wait_for_message`` given as ``context.metadata["scheduler"]``), as in ByzPy.

    Parameters
    ----------
    message_type : str
        The type of message to wait for (non-empty).
    timeout : float, optional
        Seconds to wait before :class:`~byzdask.errors.MessageTimeoutError` (a ``TimeoutError``);
        None waits without limit.

    Examples
    --------
    >>> import asyncio
    >>> from byzdask.engine.graph.graph import ComputationGraph, GraphNode
    >>> from byzdask.engine.graph.scheduler import MessageAwareNodeScheduler
    >>> scheduler = MessageAwareNodeScheduler(ComputationGraph([GraphNode("go", MessageTriggerOp("go", timeout=5.0), {})]))
    >>> scheduler.deliver_message("go", {"step": 1})
    >>> asyncio.run(scheduler.run({}))
    {'go': {'step': 1}}
    """

    def __init__(self, message_type: str, timeout: float | None = None) -> None:
        if not isinstance(message_type, str) or not message_type:
            raise ConfigurationError(f"message_type must be a non-empty string, got {message_type!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ConfigurationError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
        self.message_type = message_type
        self.timeout = timeout
        self.name = f"message_trigger_{message_type}"
        self._repr_params = {"message_type": message_type, "timeout": timeout}

    def compute(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        raise RuntimeError(
            f"{self!r} waits for a message: run it with `await op.run(..., context=...)` or in a "
            "MessageAwareNodeScheduler, not with compute()"
        )

    async def run(self, inputs: Mapping[str, Any], *, context: OpContext | None = None, pool: Any = None) -> Any:
        scheduler = (context.metadata if context is not None else {}).get("scheduler")
        if scheduler is None or not hasattr(scheduler, "wait_for_message"):
            raise RuntimeError(
                f"{self!r} requires scheduler in context metadata: run it in a MessageAwareNodeScheduler, "
                "or pass OpContext(metadata={'scheduler': scheduler})"
            )
        return await scheduler.wait_for_message(self.message_type, timeout=self.timeout)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _run_on_pool(pool: Any, tasks: Sequence[SubTask]) -> list[Any]:
    """Each subtask on ``pool``, results in the order of ``tasks``."""
    run_subtask = getattr(pool, "run_subtask", None)
    if run_subtask is not None:
        return list(await asyncio.gather(*(run_subtask(t) for t in tasks)))
    client = pool.client
    futures = [client.submit(t.fn, *t.args, pure=False, retries=t.max_retries, **t.kwargs)
               for t in tasks]
    return list(await client.gather(futures))
