"""Using a running :class:`~byzdask.engine.graph.pool.ActorPool`: actors, channels, synchronous use.

:class:`PoolUse` is the part of the pool that works once it runs (the pool derives from it):
:meth:`~PoolUse.spawn` places an actor on a worker, :meth:`~PoolUse.open_channel` wires actors,
and :meth:`~PoolUse.start_sync` / :meth:`~PoolUse.sync` run the pool from synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from byzdask import config
from byzdask.engine.actor.channels import ChannelInfo, open_channel
from byzdask.engine.actor.ref import ActorRef, guarded
from byzdask.errors import CapabilityError

__all__ = ["PoolUse"]


def _construct(cls: type, args: tuple, kwargs: dict) -> Any:
    return cls(*args, **kwargs)


class PoolUse:
    """Actors and synchronous use of a pool; mixed into :class:`~byzdask.engine.graph.pool.ActorPool`."""

    # -- actors --------------------------------------------------------------------------------

    async def spawn(
        self,
        cls: type,
        *args: Any,
        capability: str | None = None,
        worker: str | None = None,
        actor_name: str | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Create ``cls(*args, **kwargs)`` as an actor on one worker and return its :class:`ActorRef`.

        Parameters
        ----------
        cls : type
            The actor's class (methods should be ``async def``, see :class:`ActorRef`).
        *args, **kwargs
            Constructor arguments.
        capability : str, optional
            Place it on a worker offering this tag (round-robin over them).
        worker : str, optional
            Place it on the worker with this name (or address).
        actor_name : str, optional
            Readable name used in errors (default ``"<cls name>-<i>"``).

        Raises
        ------
        CapabilityError
            No worker offers ``capability`` or is called ``worker``.
        """
        client = self.client
        if worker is not None:
            address = self.worker_named(worker)
        else:
            candidates = self.workers_with(capability) if capability else list(self.workers.values())
            if not candidates:
                offered = sorted({tag for tags in self.capabilities.values() for tag in tags})
                raise CapabilityError(
                    f"no worker of this pool offers capability {capability!r} (offered: {offered})"
                )
            turn = self._spawned.get(capability, 0)
            self._spawned[capability] = turn + 1
            address = candidates[turn % len(candidates)]
        count = self._spawned.get("__all__", 0)
        self._spawned["__all__"] = count + 1
        name = actor_name or f"{cls.__name__}-{count}"
        key = f"byzdask-actor-{name}-{uuid.uuid4().hex[:8]}"
        future = client.submit(_construct, cls, args, kwargs, actor=True, workers=[address],
                               allow_other_workers=False, key=key, pure=False)
        limit = config.get_timeout("actor.call-timeout")
        try:
            outcome = await asyncio.wait_for(guarded(future), limit)
        except TimeoutError as exc:
            future.cancel()
            raise TimeoutError(f"actor {name!r} was not created on {address} within {limit} s") from exc
        return ActorRef(outcome.unwrap(), name, address, future)

    async def open_channel(self, name: str, members: Mapping[str, ActorRef], topology: Any = None,
                           *, timeout: Any = None, send_timeout: Any = None) -> ChannelInfo:
        """Open a channel between actors; see :func:`byzdask.engine.actor.channels.open_channel`."""
        return await open_channel(name, members, topology, timeout=timeout, send_timeout=send_timeout)

    # -- synchronous use -----------------------------------------------------------------------

    def start_sync(self) -> Any:
        """Start the pool on a background event loop and return a synchronous ``Client``.

        For scripts and the CLI. Run coroutines on the pool with :meth:`call_sync`; close with
        :meth:`shutdown_sync` (or use ``with pool.sync() as client:``).
        """
        from distributed import Client
        from distributed.utils import LoopRunner, sync

        if self._runner is not None:
            return self._sync_client
        runner = LoopRunner(asynchronous=False)
        runner.start()
        try:
            sync(runner.loop, self.start)
            target = self._cluster if self._owns_cluster else self.scheduler_address
            self._sync_client = Client(target, loop=runner.loop, direct_to_workers=True,
                                       security=self._security, set_as_default=False)
        except BaseException:
            with contextlib.suppress(Exception):
                sync(runner.loop, self.shutdown)
            runner.stop()
            raise
        self._runner = runner
        return self._sync_client

    def call_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run the coroutine function ``fn(*args, **kwargs)`` on a pool started with :meth:`start_sync`."""
        from distributed.utils import sync

        if self._runner is None:
            raise RuntimeError("call_sync needs a pool started with start_sync(); inside a loop, await instead")
        return sync(self._runner.loop, fn, *args, **kwargs)

    def shutdown_sync(self) -> None:
        """Close a pool started with :meth:`start_sync`."""
        from distributed.utils import sync

        runner, client = self._runner, self._sync_client
        if runner is None:
            return
        self._runner = self._sync_client = None
        try:
            if client is not None:
                client.close()
            sync(runner.loop, self.shutdown)
        finally:
            runner.stop()

    @contextlib.contextmanager
    def sync(self) -> Iterator[Any]:
        """``with pool.sync() as client:`` runs the pool for a block of synchronous code.

        Examples
        --------
        >>> from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
        >>> pool = ActorPool(ActorPoolConfig("thread", count=2))
        >>> with pool.sync() as client:
        ...     client.submit(pow, 2, 10).result(), pool.size
        (1024, 2)
        """
        client = self.start_sync()
        try:
            yield client
        finally:
            self.shutdown_sync()

