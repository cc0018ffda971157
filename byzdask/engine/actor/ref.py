"""ActorRef: a Dask actor handle whose method calls are awaited, with byzdask errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from byzdask import config
from byzdask.errors import ActorLostError

__all__ = ["ActorRef"]

logger = logging.getLogger(__name__)

_LOST_STATUSES = ("lost", "error", "cancelled")


class ActorRef:
    """A handle to a stateful object living on a Dask worker (a Dask actor).

    ``await ref.method(*args, **kwargs)`` runs ``method`` on the worker that holds the object
    and returns its result. With a client opened with ``direct_to_workers=True`` (what
    :class:`~byzdask.engine.graph.pool.ActorPool` opens) a call costs about 1 ms.
    A ref can be passed to another actor's method; there it calls the same object.

    Actor methods should be ``async def``: they then run on the worker's event loop and may
    themselves await calls on other actors. A synchronous method that blocks on another
    actor's result deadlocks when the call cycles back across workers (Dask runs one actor
    thread per worker). Heavy synchronous work inside an async method should go through
    ``await asyncio.to_thread(...)`` so the worker keeps answering heartbeats.

    Parameters
    ----------
    actor : distributed.Actor
        The Dask handle (the result of ``client.submit(cls, actor=True)``).
    name : str
        A readable name used in error messages, e.g. ``"node-3"``.
    worker : str, optional
        Address of the worker holding the object.
    future : distributed.Future, optional
        The future of the actor's task; its status tells whether the worker was lost.

    Raises
    ------
    ActorLostError
        From a call, when the worker holding the object was lost (the state is gone).
    TimeoutError
        From a call that ran past its limit (``byzdask.actor.call-timeout``, or ``call_timeout=``
        of :meth:`call`).

    Examples
    --------
    >>> import asyncio
    >>> from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
    >>> class Counter:
    ...     def __init__(self, start):
    ...         self.n = start
    ...     async def add(self, k):
    ...         self.n += k
    ...         return self.n
    >>> async def main():
    ...     async with ActorPool([ActorPoolConfig("thread", count=1)]) as pool:
    ...         ref = await pool.spawn(Counter, 10, actor_name="counter")
    ...         await ref.add(1)
    ...         return await ref.add(2), ref.name
    >>> asyncio.run(main())
    (13, 'counter')
    """

    __slots__ = ("_actor", "_future", "_name", "_worker")

    def __init__(self, actor: Any, name: str, worker: str | None = None, future: Any = None):
        self._actor = actor
        self._name = name
        self._worker = worker if worker is not None else getattr(actor, "_address", None)
        self._future = future

    @property
    def name(self) -> str:
        """The actor's readable name."""
        return self._name

    @property
    def worker(self) -> str | None:
        """Address of the worker holding the object."""
        return self._worker

    @property
    def cls(self) -> type:
        """The class of the remote object."""
        return self._actor._cls

    @property
    def key(self) -> str:
        """Dask key of the actor's task."""
        return self._actor.key

    @property
    def handle(self) -> Any:
        """The underlying :class:`distributed.Actor`."""
        return self._actor

    def __repr__(self) -> str:
        return f"<ActorRef {self._name!r}: {self.cls.__name__} on {self._worker}>"

    def __reduce__(self):
        # The future stays with the driver; the Dask handle re-binds to the worker it lands on.
        return (ActorRef, (self._actor, self._name, self._worker))

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        if not callable(getattr(self._actor._cls, method, None)):
            raise AttributeError(  # noqa: TRY004  (attribute lookup protocol)
                f"{self._actor._cls.__name__} (actor {self._name!r}) has no method {method!r}"
            )

        def bound(*args: Any, **kwargs: Any):
            return self.call(method, *args, **kwargs)

        bound.__name__ = method
        return bound

    async def call(self, method: str, *args: Any, call_timeout: Any = None, **kwargs: Any) -> Any:
        """Run ``method(*args, **kwargs)`` on the actor and return its result.

        Parameters
        ----------
        method : str
            Name of the method.
        *args, **kwargs
            Its arguments (numpy arrays and CPU torch tensors travel as zero-copy buffers).
        call_timeout : float or str, optional
            Limit for this call; default ``byzdask.actor.call-timeout``. (``ref.method(...)``
            passes every keyword to the method and uses the default limit.)

        Raises
        ------
        ActorLostError
            The worker holding the actor was lost.
        TimeoutError
            No answer within ``call_timeout``.
        """
        limit = config.get_timeout("actor.call-timeout", call_timeout)
        self._check_alive()
        try:
            pending = getattr(self._actor, method)(*args, **kwargs)
            outcome = await asyncio.wait_for(guarded(pending), limit)
        except TimeoutError as exc:
            raise TimeoutError(
                f"actor {self._name!r} did not answer {method}() within {limit} s "
                "(raise byzdask.actor.call-timeout or pass call_timeout=)"
            ) from exc
        except RuntimeError as exc:
            if "Worker holding Actor was lost" in str(exc):
                raise self._lost(method, exc) from exc
            raise
        except OSError as exc:
            if _is_comm_failure(exc):
                raise self._lost(method, exc) from exc
            raise
        return outcome.unwrap()

    def _check_alive(self) -> None:
        future = self._future
        if future is not None and future.status in _LOST_STATUSES:
            raise self._lost(None, None)

    def _lost(self, method: str | None, cause: BaseException | None) -> ActorLostError:
        call = f" during {method}()" if method else ""
        detail = f": {cause}" if cause is not None else ""
        return ActorLostError(
            f"actor {self._name!r} ({self._actor._cls.__name__}) on worker {self._worker} was "
            f"lost{call}{detail}; its state is gone (restore it from a checkpoint)"
        )


class _Outcome:
    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None):
        self.value = value
        self.error = error

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


async def guarded(awaitable: Any) -> _Outcome:
    """Await ``awaitable``, keeping a TimeoutError it raises apart from a ``wait_for`` timeout.

    Since Python 3.11 ``asyncio.TimeoutError is TimeoutError``, so a timeout raised by the
    remote method (e.g. a channel's MessageTimeoutError) would otherwise read as the call's own.
    """
    try:
        return _Outcome(value=await awaitable)
    except TimeoutError as exc:
        return _Outcome(error=exc)


def _is_comm_failure(exc: OSError) -> bool:
    """Whether an OSError comes from Dask's comms rather than from the user's method."""
    from distributed.comm.core import CommClosedError

    if isinstance(exc, CommClosedError):
        return True
    return type(exc) is OSError and "Actor's worker" in str(exc)
