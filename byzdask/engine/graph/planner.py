"""How one graph node runs: the four routes, chosen in one place (:func:`choose_route`).

* ``local``: no pool; the node runs in this process (the direct path);
* ``task``: one task on the pool, placed on the worker that holds most of the node's input
  (``workers=`` from the scheduler's ``who_has``); inputs that are futures never come through
  the client;
* ``subtasks``: the operator's own :meth:`~byzdask.engine.graph.operator.Operator.create_subtasks`
  as Dask tasks spread over the workers, then :meth:`~byzdask.engine.graph.operator.Operator.reduce_subtasks`
  where the inputs lie (in this process for inputs held here, in a task next to them for futures);
* ``blocks``: the n vectors of a columnwise or gram rule, held as futures on several workers
  or as a Dask array, aggregated column block by column block where they lie
  (:mod:`byzdask.engine.blockwise`); the n x d matrix is never gathered in one place.

One size decides between a task and a fan-out: ``byzdask.scheduler.fanout-min-bytes``
(:func:`fanout_min_bytes`); ``byzdask.scheduler.scatter-min-bytes`` only decides whether a
caller-held array is embedded in the task graph or scattered to its worker. Both are in
``byzdask.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dask
from dask.task_spec import TaskRef
from dask.utils import parse_bytes

from byzdask.errors import ConfigurationError

__all__ = ["ROUTES", "InputFacts", "Route", "choose_route", "describe_inputs", "fanout_min_bytes",
           "scatter_min_bytes"]

logger = logging.getLogger(__name__)

#: The routes a node can take, from the cheapest set-up to the widest fan-out.
ROUTES = ("local", "task", "subtasks", "blocks")
#: dask.config key: smallest input (bytes) of a node that fans out (subtasks or blocks) on a pool.
FANOUT_MIN_BYTES_KEY = "byzdask.scheduler.fanout-min-bytes"
#: Fallback of :data:`FANOUT_MIN_BYTES_KEY` when byzdask.yaml is not loaded (its value is the same).
DEFAULT_FANOUT_MIN_BYTES = 2**30
#: dask.config key: arrays at least this large are scattered to workers instead of embedded in the graph.
SCATTER_MIN_BYTES_KEY = "byzdask.scheduler.scatter-min-bytes"
DEFAULT_SCATTER_MIN_BYTES = 2**20


def _config_bytes(key: str, default: int) -> int:
    value = dask.config.get(key, default=default)
    try:
        out = parse_bytes(value) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"dask config {key!r} must be a number of bytes (e.g. 64 MiB), got {value!r}") from None
    if out < 0:
        raise ConfigurationError(f"dask config {key!r} must be >= 0, got {value!r}")
    return out


def fanout_min_bytes() -> int:
    """The configured fan-out threshold in bytes (``byzdask.scheduler.fanout-min-bytes``).

    Examples
    --------
    >>> with dask.config.set({"byzdask.scheduler.fanout-min-bytes": "1 MiB"}):
    ...     fanout_min_bytes()
    1048576
    """
    return _config_bytes(FANOUT_MIN_BYTES_KEY, DEFAULT_FANOUT_MIN_BYTES)


def scatter_min_bytes() -> int:
    """The configured scatter threshold in bytes (``byzdask.scheduler.scatter-min-bytes``)."""
    return _config_bytes(SCATTER_MIN_BYTES_KEY, DEFAULT_SCATTER_MIN_BYTES)


@dataclass(frozen=True)
class Route:
    """The route of one node, why it was taken, and (``task``) the workers holding most of its input.

    Examples
    --------
    >>> Route("task", "input below the threshold")
    Route(name='task', reason='input below the threshold', workers=None)
    """

    name: str
    reason: str
    workers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.name not in ROUTES:
            raise ConfigurationError(f"route must be one of {ROUTES}, got {self.name!r}")


@dataclass
class InputFacts:
    """What the planner knows of a node's inputs.

    Attributes
    ----------
    caller_bytes : int
        Bytes of the arrays held in this process.
    held : dict
        Worker address -> bytes of the node's future inputs it holds (empty when none, or unknown).
    known : bool
        False when the node reads futures whose sizes were not asked for (``to_dask``, planning).
    vectors : str or None
        ``"dask"`` when the node's one input is a Dask array, ``"futures"`` a list of futures
        (one vector each), None otherwise.
    """

    caller_bytes: int = 0
    held: dict[str, int] = field(default_factory=dict)
    known: bool = True
    vectors: str | None = None

    @property
    def total(self) -> int:
        """Bytes of all inputs (held here and on the workers)."""
        return self.caller_bytes + sum(self.held.values())


def blockable(op: Any, inputs: Mapping[str, Any]) -> str | None:
    """``"dask"`` / ``"futures"`` when ``op`` is a columnwise or gram rule of one input given as a Dask
    array / a list of futures, else None."""
    from byzdask.aggregators.base import Aggregator

    if not isinstance(op, Aggregator) or op.kind not in ("columnwise", "gram") or len(inputs) != 1:
        return None
    (value,) = inputs.values()
    if type(value).__name__ == "Array" and type(value).__module__.startswith("dask.array"):
        return "dask"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, TaskRef) for v in value):
        return "futures"
    return None


def choose_route(name: str, op: Any, facts: InputFacts, *, pool: Any, min_bytes: int) -> Route:
    """The route of node ``name`` (operator ``op``) from what is known of its inputs; logged with its reason.

    Examples
    --------
    >>> from byzdask.aggregators import CoordinateWiseMedian
    >>> choose_route("agg", CoordinateWiseMedian(), InputFacts(caller_bytes=64), pool=None, min_bytes=0).name
    'local'
    """
    route = _decide(op, facts, pool, min_bytes)
    logger.debug("node %r takes route %r: %s", name, route.name, route.reason)
    return route


def _decide(op: Any, facts: InputFacts, pool: Any, min_bytes: int) -> Route:
    if pool is None:
        return Route("local", "no pool: runs in this process")
    total, holders = facts.total, len(facts.held)
    if facts.vectors == "dask":
        return Route("blocks", "its input is a Dask array: aggregated block by block where its chunks are")
    if not facts.known:
        return Route("task", "reads futures: the route is decided when they exist (their sizes are asked then)")
    if facts.vectors == "futures" and holders > 1 and total >= min_bytes:
        return Route("blocks", f"{total} bytes of vectors on {holders} workers (>= {min_bytes}): "
                               "aggregated block by block where they lie")
    if getattr(op, "supports_subtasks", False) and total >= min_bytes:
        where = "on the worker holding them" if facts.held and not facts.caller_bytes else "here"
        return Route("subtasks", f"{total} bytes of input (>= {min_bytes}) and the operator has subtasks; "
                                 f"split {where}")
    if facts.held:
        ranked = sorted(facts.held, key=lambda w: (-facts.held[w], w))
        return Route("task", f"one task where most of its input lies ({facts.held[ranked[0]]} of {total} bytes)",
                     workers=(ranked[0],))
    why = "below the fan-out threshold" if getattr(op, "supports_subtasks", False) else "no subtasks"
    return Route("task", f"one task ({total} bytes of input, {why})")


def futures_in(value: Any) -> list[Any]:
    """The futures (task references) in ``value``, in lists, tuples and dicts."""
    if isinstance(value, TaskRef):
        return [value]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in futures_in(v)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in futures_in(v)]
    return []


async def describe_inputs(client: Any, op: Any, inputs: Mapping[str, Any], *, timeout: float | None) -> InputFacts:
    """:class:`InputFacts` of a node's inputs on a pool: the futures are waited for, then sized and located."""
    import asyncio

    from distributed import Future, wait

    from byzdask.engine.graph.lowering import nbytes_of

    facts = InputFacts(caller_bytes=nbytes_of(dict(inputs)), vectors=blockable(op, inputs))
    futures = [f for f in futures_in(dict(inputs)) if isinstance(f, Future)]
    if not futures:
        return facts
    with client.as_current():  # wait() runs on the default client: make it this asynchronous one
        await wait(futures, timeout=timeout)
    keys = list({f.key for f in futures})
    who_has, sizes = await asyncio.gather(client.scheduler.who_has(keys=keys),
                                          client.scheduler.nbytes(keys=keys, summary=False))
    for key in keys:
        holders = who_has.get(key) or []
        if holders:
            first = sorted(holders)[0]
            facts.held[first] = facts.held.get(first, 0) + max(0, int(sizes.get(key, 0)))
    return facts
