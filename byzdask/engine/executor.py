"""Run one operator without writing a graph: :func:`run_operator` and :class:`OperatorExecutor`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from byzdask.engine.graph.operator import Operator
from byzdask.engine.graph.ops import make_single_operator_graph
from byzdask.engine.graph.scheduler import NodeScheduler
from byzdask.errors import ConfigurationError, InputError

if TYPE_CHECKING:
    from typing import Self

__all__ = ["OperatorExecutor", "run_operator"]


def _input_keys(operator: Operator, given: Sequence[str] | None) -> tuple[str, ...] | None:
    if given is not None:
        keys = (given,) if isinstance(given, str) else tuple(given)
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise ConfigurationError(f"input_keys must be non-empty strings, got {given!r}")
        return keys
    keys = tuple(getattr(operator, "input_keys", ()) or ())
    return keys or None


def _as_mapping(inputs: Any, keys: tuple[str, ...] | None) -> Mapping[str, Any]:
    if isinstance(inputs, Mapping):
        return inputs
    if keys is not None and len(keys) == 1:
        return {keys[0]: inputs}
    raise InputError(
        f"inputs must be a mapping of input key -> value (the operator reads {list(keys or [])}), "
        f"got {type(inputs).__name__}"
    )


def _is_pool_config(value: Any) -> bool:
    from byzdask.engine.graph.pool import ActorPoolConfig

    if isinstance(value, ActorPoolConfig):
        return True
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0 and all(
        isinstance(v, ActorPoolConfig) for v in value
    )


class OperatorExecutor:
    """Run one operator repeatedly, keeping its graph, scheduler and (optionally) a pool.

    Parameters
    ----------
    operator : Operator
        An aggregator, pre-aggregator, attack or any operator.
    pool : ActorPool, ActorPoolConfig or sequence of ActorPoolConfig, optional
        An ActorPool is used as given (and not closed); configs start a pool on entry that is
        closed on exit. None runs in-process.
    input_keys : sequence of str, optional
        The operator's input keys; default ``operator.input_keys``.
    node_name : str, optional
        Name of the node (in task keys and the operator's context); default ``operator.name``.
    metadata : mapping, optional
        Given to the operator in its context.
    fanout_min_bytes : int, optional
        See :class:`~byzdask.engine.graph.scheduler.NodeScheduler`.

    Use ``async with OperatorExecutor(...) as ex: await ex.run(inputs)``, or from synchronous
    code ``with OperatorExecutor(...) as ex: ex.run_sync(inputs)`` (the pool then runs on a
    background event loop).

    Examples
    --------
    >>> import numpy as np
    >>> from byzdask.aggregators.average import Average
    >>> with OperatorExecutor(Average()) as ex:
    ...     ex.run_sync([np.ones(2), np.zeros(2)])
    array([0.5, 0.5])
    """

    def __init__(self, operator: Operator, *, pool: Any = None, input_keys: Sequence[str] | None = None,
                 node_name: str | None = None, metadata: Mapping[str, Any] | None = None,
                 fanout_min_bytes: int | None = None, pool_config: Any = None) -> None:
        if not isinstance(operator, Operator):
            raise ConfigurationError(f"operator must be an Operator, got {type(operator).__name__}")
        if pool is not None and pool_config is not None:
            raise ConfigurationError("give either pool or pool_config, not both")
        pool = pool if pool is not None else pool_config
        self.operator = operator
        self.input_keys = _input_keys(operator, input_keys)
        self.node_name = node_name or str(getattr(operator, "name", type(operator).__name__))
        self._metadata = dict(metadata or {})
        self._fanout_min_bytes = fanout_min_bytes
        self._configs = pool if pool is not None and _is_pool_config(pool) else None
        self._pool = None if self._configs is not None else pool
        self._owns_pool = False
        self._sync_started = False
        self._scheduler: NodeScheduler | None = None
        self._graph_keys: tuple[str, ...] | None = None

    @property
    def pool(self) -> Any:
        """The pool in use (None before a configured pool is started, or when running in-process)."""
        return self._pool

    def _scheduler_for(self, inputs: Mapping[str, Any]) -> NodeScheduler:
        keys = self.input_keys or tuple(inputs)
        if self._scheduler is None or self._graph_keys != keys or self._scheduler.pool is not self._pool:
            graph = make_single_operator_graph(node_name=self.node_name, operator=self.operator, input_keys=keys)
            self._scheduler = NodeScheduler(graph, pool=self._pool, metadata=self._metadata,
                                            fanout_min_bytes=self._fanout_min_bytes)
            self._graph_keys = keys
        return self._scheduler

    # -- asynchronous use ---------------------------------------------------------------------
    async def start(self) -> OperatorExecutor:
        """Start the configured pool (no-op otherwise)."""
        if self._configs is not None and self._pool is None:
            from byzdask.engine.graph.pool import ActorPool

            pool = ActorPool(self._configs)
            await pool.start()
            self._pool, self._owns_pool = pool, True
        return self

    async def close(self) -> None:
        """Shut down the pool this executor started."""
        if self._owns_pool and self._pool is not None:
            pool, self._pool, self._owns_pool = self._pool, None, False
            await pool.shutdown()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run(self, inputs: Any) -> Any:
        """Run the operator on ``inputs`` (a mapping, or the value of its only input) and return its output."""
        if self._configs is not None and self._pool is None:
            await self.start()
        mapping = _as_mapping(inputs, self.input_keys)
        result = await self._scheduler_for(mapping).run(mapping)
        return result[self.node_name]

    # -- synchronous use ----------------------------------------------------------------------
    def __enter__(self) -> Self:
        if self._configs is not None and self._pool is None:
            from byzdask.engine.graph.pool import ActorPool

            pool = ActorPool(self._configs)
            pool.start_sync()
            self._pool, self._owns_pool, self._sync_started = pool, True, True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._owns_pool and self._pool is not None and self._sync_started:
            pool, self._pool, self._owns_pool, self._sync_started = self._pool, None, False, False
            pool.shutdown_sync()

    def run_sync(self, inputs: Any, *, timeout: float | None = None) -> Any:
        """:meth:`run` from synchronous code (inside ``with``, or without a pool)."""
        mapping = _as_mapping(inputs, self.input_keys)
        if self._configs is not None and self._pool is None:
            raise RuntimeError("a configured pool starts on entry: use `with OperatorExecutor(...) as ex:`")
        return self._scheduler_for(mapping).run_sync(mapping, timeout=timeout)[self.node_name]

    def __repr__(self) -> str:
        return f"OperatorExecutor({self.operator!r}, pool={self._pool!r})"


async def run_operator(operator: Operator, inputs: Any, *, pool: Any = None, input_keys: Sequence[str] | None = None,
                       metadata: Mapping[str, Any] | None = None, pool_config: Any = None) -> Any:
    """Run one operator once, in-process or on a pool; returns its output.

    Parameters
    ----------
    operator : Operator
        What to run.
    inputs : mapping or value
        Input key -> value, or the value of the operator's only input.
    pool : ActorPool, ActorPoolConfig or sequence of ActorPoolConfig, optional
        A pool to run on (not closed), or configs of a pool started and closed for this call.
    input_keys, metadata
        See :class:`OperatorExecutor`. ``pool_config`` is accepted as ByzPy's name for ``pool``.

    Examples
    --------
    >>> import asyncio
    >>> import numpy as np
    >>> from byzdask.aggregators.average import Average
    >>> asyncio.run(run_operator(Average(), {"gradients": [np.ones(2), np.zeros(2)]}))
    array([0.5, 0.5])
    """
    async with OperatorExecutor(operator, pool=pool, input_keys=input_keys, metadata=metadata,
                                pool_config=pool_config) as executor:
        return await executor.run(inputs)
