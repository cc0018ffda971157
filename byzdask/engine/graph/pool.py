"""ActorPool: a Dask cluster and an asynchronous client, described by backend configs.

An :class:`ActorPool` is what the graph scheduler, the parameter server and peer-to-peer
training run on. ``ActorPool([ActorPoolConfig("thread", count=4)])`` starts one scheduler and
four in-process workers, all listening on 127.0.0.1; several configs make one heterogeneous
cluster whose workers carry resource tags (``cpu``, ``gpu``, or any tag the user names) and
names ``"<config name>-<i>"``. A config can also attach to a cluster that already runs (an
address, a ``distributed.Client``, a cluster object, a dask-jobqueue cluster); byzdask never
closes what the user passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


from byzdask import config
from byzdask.engine.actor import backends
from byzdask.engine.actor.channels import ChannelInfo, open_channel
from byzdask.engine.actor.ref import ActorRef, guarded
from byzdask.errors import CapabilityError, ConfigurationError

if TYPE_CHECKING:  # typing.Self needs Python 3.11; the package supports 3.10
    from typing import Self

__all__ = ["ActorPool", "ActorPoolConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorPoolConfig:
    """One group of workers of an :class:`ActorPool`.

    Parameters
    ----------
    backend : str, distributed.Client or cluster object
        ``"thread"`` (in-process workers), ``"process"`` (local worker processes), ``"gpu"``
        (one worker process per CUDA device, needs ``dask-cuda``), ``"tcp://host:port"`` /
        ``"tls://..."`` / ``"ucx://host:port"`` (attach to a running scheduler; UCX needs
        ``distributed-ucxx``), a ``distributed.Client``, or a cluster object (``LocalCluster``,
        ``SpecCluster``, a dask-jobqueue cluster). A pool attaches to at most one cluster.
    count : int
        Workers to start; for an attached cluster, how many workers to wait for (a dask-jobqueue
        cluster with no workers requested is scaled to ``count``).
    capabilities : sequence of str, optional
        Resource tags of these workers. Default ``("cpu",)`` for thread/process, ``("gpu",)``
        for gpu; workers of an attached cluster keep their own resources unless tags are given.
    name : str, optional
        Prefix of the workers' names (default: the backend name); workers are ``"<name>-<i>"``.
    threads_per_worker : int, optional
        Default ``byzdask.pool.threads-per-worker`` (1).
    memory_limit : int or str, optional
        Dask's memory limit per worker; default none for thread workers, ``"auto"`` for processes.
    host : str, optional
        Address every listener binds to; default ``byzdask.pool.host`` (127.0.0.1).
    protocol : str, optional
        ``"tcp"``, ``"tls"``, ``"ucx"`` or ``"inproc"`` (thread workers only). Default: inproc
        when every config is ``"thread"`` (nothing listens on the network), tls when
        ``security`` is given, tcp otherwise.
    security : distributed.security.Security or True, optional
        TLS settings; ``True`` makes a temporary self-signed certificate.
    resources : mapping, optional
        Extra Dask resources of each worker, e.g. ``{"memory-gb": 16}``.
    worker_options : mapping, optional
        Extra keyword arguments for ``distributed.Worker`` / ``Nanny``.

    Raises
    ------
    ConfigurationError
        An unknown backend, a non-positive count, a bad capability list.

    Examples
    --------
    >>> ActorPoolConfig("process", count=2, name="cpu").resolved_capabilities()
    ('cpu',)
    >>> ActorPoolConfig("thread", count=0)
    Traceback (most recent call last):
    ...
    byzdask.errors.ConfigurationError: count must be a positive integer, got 0
    """

    backend: Any
    count: int = 1
    capabilities: Sequence[str] | None = None
    name: str | None = None
    threads_per_worker: int | None = None
    memory_limit: Any = None
    host: str | None = None
    protocol: str | None = None
    security: Any = None
    resources: Mapping[str, float] | None = None
    worker_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        kind = backends.backend_kind(self.backend)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigurationError(f"count must be a positive integer, got {self.count!r}")
        if self.capabilities is not None:
            caps = (self.capabilities,) if isinstance(self.capabilities, str) else tuple(self.capabilities)
            if not all(isinstance(c, str) and c for c in caps):
                raise ConfigurationError(
                    f"capabilities must be non-empty strings such as 'cpu' or 'gpu', got {self.capabilities!r}"
                )
            object.__setattr__(self, "capabilities", caps)
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigurationError(f"name must be a non-empty string, got {self.name!r}")
        tpw = self.threads_per_worker
        if tpw is not None and (isinstance(tpw, bool) or not isinstance(tpw, int) or tpw < 1):
            raise ConfigurationError(f"threads_per_worker must be a positive integer, got {tpw!r}")
        if self.protocol is not None:
            protocol = self.protocol.removesuffix("://")
            if protocol not in ("tcp", "tls", "ucx", "ucxx", "inproc"):
                raise ConfigurationError(
                    f"protocol must be 'tcp', 'tls', 'ucx' or 'inproc', got {self.protocol!r}"
                )
            if protocol == "inproc" and kind != "thread":
                raise ConfigurationError(
                    f"protocol 'inproc' only works with backend 'thread', got backend {self.backend!r}"
                )
            object.__setattr__(self, "protocol", protocol)

    @property
    def kind(self) -> str:
        """``"thread"``, ``"process"``, ``"gpu"``, ``"address"``, ``"client"``, ``"cluster"`` or ``"jobqueue"``."""
        return backends.backend_kind(self.backend)

    def resolved_capabilities(self) -> tuple[str, ...]:
        """The capability tags these workers carry."""
        if self.capabilities is not None:
            return tuple(self.capabilities)
        return backends.default_capabilities(self.kind)

    def prefix(self) -> str:
        """Name prefix of these workers."""
        return self.name or (self.kind if self.kind in backends.LOCAL_BACKENDS else "worker")


def _construct(cls: type, args: tuple, kwargs: dict) -> Any:
    return cls(*args, **kwargs)


async def _tag_worker(capabilities: Sequence[str], extra: Mapping[str, float], dask_worker: Any = None) -> None:
    wanted = backends.worker_resources(capabilities, dask_worker.state.nthreads, extra)
    missing = {k: v for k, v in wanted.items() if k not in dask_worker.state.total_resources}
    if missing:
        await dask_worker.set_resources(**missing)


def _natural_key(name: str) -> tuple:
    match = re.match(r"^(.*?)(\d+)$", name)
    return (match.group(1), int(match.group(2)), name) if match else (name, -1, name)


class ActorPool:
    """A Dask cluster plus an asynchronous ``distributed.Client`` on the running loop.

    Parameters
    ----------
    configs : sequence of ActorPoolConfig (or one config)
        The worker groups. Local backends (thread / process / gpu) of all configs form one
        cluster; a config that attaches to an existing cluster must be the only one.
    start_timeout, shutdown_timeout : float or str, optional
        Defaults ``byzdask.pool.start-timeout`` / ``byzdask.pool.shutdown-timeout``.
    security : distributed.security.Security or True, optional
        TLS for every listener and connection of the pool (overrides the configs' ``security``);
        ``True`` makes temporary self-signed certificates (needs ``cryptography``). The
        protocol becomes ``tls`` and plain-TCP clients are refused.

    Attributes
    ----------
    client : distributed.Client
        Asynchronous client with ``direct_to_workers=True`` (available once started).
    size : int
        Number of workers.

    Raises
    ------
    ConfigurationError
        Invalid combinations of configs, or a missing package (``dask-cuda`` for ``gpu``,
        ``distributed-ucxx`` for ``ucx``) or device.

    Examples
    --------
    >>> import asyncio
    >>> async def main():
    ...     pool = ActorPool([ActorPoolConfig("thread", count=2, name="cpu"),
    ...                       ActorPoolConfig("thread", count=1, name="fast", capabilities=["cpu", "fast"])])
    ...     async with pool:
    ...         fast = pool.workers_with("fast")
    ...         assert fast == [pool.worker_named("fast-0")]
    ...         result = await pool.client.submit(sum, [1, 2], resources={"fast": 1})
    ...         return pool.size, sorted(pool.workers), result
    >>> asyncio.run(main())
    (3, ['cpu-0', 'cpu-1', 'fast-0'], 3)
    """

    def __init__(
        self,
        configs: Sequence[ActorPoolConfig] | ActorPoolConfig,
        *,
        start_timeout: Any = None,
        shutdown_timeout: Any = None,
        security: Any = None,
    ) -> None:
        if isinstance(configs, ActorPoolConfig):
            configs = [configs]
        self.configs = tuple(configs)
        if not self.configs:
            raise ConfigurationError("ActorPool needs at least one ActorPoolConfig, got none")
        for cfg in self.configs:
            if not isinstance(cfg, ActorPoolConfig):
                raise ConfigurationError(f"ActorPool takes ActorPoolConfig objects, got {cfg!r}")
        attach = [cfg for cfg in self.configs if cfg.kind not in backends.LOCAL_BACKENDS]
        if attach and len(self.configs) > 1:
            raise ConfigurationError(
                "a pool attaches to one existing cluster and cannot mix it with other configs; "
                f"got {len(self.configs)} configs including backend {attach[0].backend!r}"
            )
        self._start_timeout = config.get_timeout("pool.start-timeout", start_timeout)
        self._shutdown_timeout = config.get_timeout("pool.shutdown-timeout", shutdown_timeout)
        self._host = next((c.host for c in self.configs if c.host), None) or config.get("pool.host")
        self._security = self._resolve_security(security)
        self._protocol = self._resolve_protocol()
        self._gpu_devices: list[str] = []
        gpu_count = sum(c.count for c in self.configs if c.kind == "gpu")
        if gpu_count:
            self._gpu_devices = backends.visible_gpus(gpu_count)
        self._state = "new"
        self._cluster: Any = None
        self._client: Any = None
        self._owns_cluster = False
        self._owns_client = False
        self._scaled_jobqueue = False
        self._workers: dict[str, dict[str, Any]] = {}
        self._aliases: dict[str, str] = {}
        self._spawned: dict[Any, int] = {}
        self._runner: Any = None
        self._sync_client: Any = None

    # -- configuration -------------------------------------------------------------------------

    def _resolve_security(self, security: Any = None) -> Any:
        given = [security] if security not in (None, False) else [c.security for c in self.configs
                                                                  if c.security not in (None, False)]
        if not given:
            return None
        security = given[0]
        if security is True:
            try:
                from distributed.security import Security

                return Security.temporary()
            except ImportError as exc:
                raise ConfigurationError("security=True makes temporary certificates with the 'cryptography' "
                                         "package: pip install cryptography, or pass a Security object") from exc
        return security

    def _resolve_protocol(self) -> str | None:
        kinds = {c.kind for c in self.configs}
        protocols = {c.protocol for c in self.configs if c.protocol}
        if len(protocols) > 1:
            raise ConfigurationError(f"all configs of a pool must use one protocol, got {sorted(protocols)}")
        address_schemes = {c.backend.partition("://")[0] for c in self.configs if c.kind == "address"}
        if protocols & {"ucx", "ucxx"} or address_schemes & {"ucx", "ucxx"}:
            backends.require_ucx()
        if not kinds <= set(backends.LOCAL_BACKENDS):
            return None
        if protocols:
            protocol = protocols.pop()
        else:
            protocol = config.get("pool.protocol")
        if not protocol:
            # In-process workers talk through memory (actor calls ~0.15 ms instead of ~0.8 ms
            # over loopback TCP, measured here); anything else needs a network protocol.
            if self._security is not None:
                protocol = "tls"
            else:
                protocol = "inproc" if kinds == {"thread"} else "tcp"
        if protocol == "inproc" and kinds != {"thread"}:
            raise ConfigurationError("protocol 'inproc' only works when every config uses backend 'thread'")
        if protocol in ("ucx", "ucxx"):
            backends.require_ucx()
        return protocol

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The asynchronous ``distributed.Client`` of the running pool."""
        if self._client is None:
            raise RuntimeError("the ActorPool is not started; `await pool.start()` or `async with pool:` first")
        return self._client

    @property
    def running(self) -> bool:
        """Whether the pool is started and not shut down."""
        return self._state == "running"

    @property
    def size(self) -> int:
        """Number of workers (requested ones before start, registered ones after)."""
        if self._state == "running":
            return len(self._workers)
        return sum(cfg.count for cfg in self.configs)

    @property
    def scheduler_address(self) -> str:
        """Address of the scheduler."""
        return self.client.scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        """Link to the Dask dashboard, or None when it is not served."""
        if self._owns_cluster and self._cluster is not None:
            # The scheduler binds its dashboard to the pool's host; Dask's own link would name
            # the machine's public address for inproc clusters.
            from distributed.utils import format_dashboard_link

            port = self._cluster.scheduler_info.get("services", {}).get("dashboard")
            return None if port is None else format_dashboard_link(self._host, port)
        if self._client is None:
            return None
        try:
            return self._client.dashboard_link
        except (KeyError, AttributeError):
            return None

    async def start(self) -> Self:
        """Start (or attach to) the cluster and open the client; idempotent.

        Raises
        ------
        TimeoutError
            When the cluster or its workers are not up within the start timeout; whatever had
            started is closed again.
        """
        if self._state == "running":
            return self
        if self._state == "closed":
            raise RuntimeError("this ActorPool was shut down; create a new one")
        spawns = any(c.kind in ("process", "gpu") for c in self.configs)
        if spawns and getattr(multiprocessing.current_process(), "_inheriting", False):
            # a worker process importing the caller's main module, which starts a pool again at import
            raise RuntimeError(
                "an ActorPool with worker processes was started while a new process was importing the main module; "
                "put the code that starts the pool under `if __name__ == '__main__':` in your script"
            )
        self._state = "starting"
        try:
            try:
                outcome = await asyncio.wait_for(guarded(self._start()), self._start_timeout)
            except TimeoutError as exc:
                hint = (" (in a script, is the code that starts the pool under `if __name__ == '__main__':`? "
                        "worker processes import the main module)") if spawns else ""
                raise TimeoutError(
                    f"the ActorPool did not start within {self._start_timeout} s (backends: "
                    f"{[c.backend if isinstance(c.backend, str) else type(c.backend).__name__ for c in self.configs]}); "
                    f"raise byzdask.pool.start-timeout if the workers are slow to come up{hint}"
                ) from exc
            outcome.unwrap()
        except BaseException:
            try:
                await self._release()
            except Exception:
                logger.warning("closing the half-started ActorPool failed", exc_info=True)
            self._state = "closed"
            raise
        self._state = "running"
        logger.info("ActorPool started: %d workers, dashboard %s", self.size, self.dashboard_link)
        return self

    async def _start(self) -> None:
        from distributed import Client

        kind = self.configs[0].kind
        if kind in backends.LOCAL_BACKENDS:
            await self._start_local()
            wanted = sum(c.count for c in self.configs)
        else:
            cfg = self.configs[0]
            if kind == "address":
                self._client = Client(cfg.backend, asynchronous=True, direct_to_workers=True,
                                      security=self._security)
                self._owns_client = True
                await self._client
            elif kind == "client":
                await self._attach_client(cfg.backend)
            else:
                await self._attach_cluster(cfg.backend, jobqueue=(kind == "jobqueue"), count=cfg.count)
            wanted = cfg.count
            if cfg.capabilities is not None or cfg.resources:
                await self._client.run(_tag_worker, cfg.resolved_capabilities(), dict(cfg.resources or {}))
        if self._client is None:
            self._client = Client(self._cluster, asynchronous=True, direct_to_workers=True)
            self._owns_client = True
            await self._client
        await self._client.wait_for_workers(wanted)
        await self.refresh_workers()
        self._build_aliases()

    async def _start_local(self) -> None:
        from distributed import SpecCluster

        if all(c.kind == "gpu" for c in self.configs) and len(self.configs) == 1:
            await self._start_cuda_cluster(self.configs[0])
            return
        workers: dict[str, Any] = {}
        used: dict[str, int] = {}
        gpu_index = 0
        for cfg in self.configs:
            prefix = cfg.prefix()
            threads = cfg.threads_per_worker or config.get("pool.threads-per-worker")
            memory_limit = cfg.memory_limit if cfg.memory_limit is not None else config.get("pool.memory-limit")
            for _ in range(cfg.count):
                index = used.get(prefix, 0)
                used[prefix] = index + 1
                name = f"{prefix}-{index}"
                workers[name] = backends.worker_spec(
                    kind=cfg.kind,
                    name=name,
                    host=cfg.host or self._host,
                    protocol=self._protocol,
                    security=self._security,
                    threads=threads,
                    memory_limit=memory_limit,
                    resources=backends.worker_resources(cfg.resolved_capabilities(), threads, cfg.resources),
                    options=cfg.worker_options,
                    gpu_devices=self._gpu_devices,
                    gpu_index=gpu_index,
                )
                if cfg.kind == "gpu":
                    gpu_index += 1
        scheduler = backends.scheduler_spec(
            host=self._host, protocol=self._protocol, security=self._security,
            dashboard=bool(config.get("pool.dashboard")),
        )
        self._cluster = SpecCluster(workers=workers, scheduler=scheduler, asynchronous=True,
                                    security=self._security, name="byzdask")
        self._owns_cluster = True
        await self._cluster

    async def _start_cuda_cluster(self, cfg: ActorPoolConfig) -> None:
        from dask_cuda import LocalCUDACluster

        threads = cfg.threads_per_worker or config.get("pool.threads-per-worker")
        options: dict[str, Any] = dict(cfg.worker_options or {})
        if self._security is not None:
            options["security"] = self._security
        self._cluster = LocalCUDACluster(
            n_workers=cfg.count,
            CUDA_VISIBLE_DEVICES=",".join(self._gpu_devices),
            threads_per_worker=threads,
            host=self._host,
            protocol=self._protocol,
            dashboard_address=f"{self._host}:0" if config.get("pool.dashboard") else None,
            resources=backends.worker_resources(cfg.resolved_capabilities(), threads, cfg.resources),
            asynchronous=True,
            **options,
        )
        self._owns_cluster = True
        await self._cluster

    async def _attach_client(self, user_client: Any) -> None:
        from distributed import Client

        loop = getattr(getattr(user_client, "loop", None), "asyncio_loop", None)
        if user_client.asynchronous and loop is asyncio.get_running_loop():
            self._client = user_client
            self._owns_client = False
            return
        # A synchronous client lives on another loop: open our own connection to its scheduler.
        self._client = Client(user_client.scheduler.address, asynchronous=True, direct_to_workers=True,
                              security=user_client.security)
        self._owns_client = True
        await self._client

    async def _attach_cluster(self, cluster: Any, *, jobqueue: bool, count: int) -> None:
        from distributed import Client

        self._cluster = cluster
        self._owns_cluster = False
        if jobqueue and not getattr(cluster, "worker_spec", None):
            cluster.scale(count)
            self._scaled_jobqueue = True
        loop = getattr(getattr(cluster, "loop", None), "asyncio_loop", None)
        if getattr(cluster, "asynchronous", False) and loop is asyncio.get_running_loop():
            self._client = Client(cluster, asynchronous=True, direct_to_workers=True)
        else:
            self._client = Client(cluster.scheduler_address, asynchronous=True, direct_to_workers=True,
                                  security=getattr(cluster, "security", None))
        self._owns_client = True
        await self._client

    async def shutdown(self) -> None:
        """Close the client and the cluster that byzdask started (never those the user passed)."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        try:
            await asyncio.wait_for(self._release(), self._shutdown_timeout)
        except TimeoutError:
            logger.warning("the ActorPool did not shut down within %s s; giving up on it", self._shutdown_timeout)
        finally:
            self._state = "closed"

    async def _release(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = None
        if client is not None and self._owns_client:
            await client.close()
        if cluster is not None and self._owns_cluster:
            await cluster.close()
        elif cluster is not None and self._scaled_jobqueue:
            cluster.scale(0)
        self._cluster = None
        self._workers = {}

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -- workers -------------------------------------------------------------------------------

    async def refresh_workers(self) -> dict[str, str]:
        """Fetch the workers from the scheduler (for clusters that grow or shrink); name -> address."""
        info = await self.client.scheduler.identity(n_workers=-1)
        self._workers = {
            address: {
                "name": str(worker.get("name", address)),
                "resources": dict(worker.get("resources") or {}),
                "nthreads": worker.get("nthreads"),
            }
            for address, worker in info.get("workers", {}).items()
        }
        return self.workers

    def _build_aliases(self) -> None:
        # dask-cuda names its workers by device; offer "<config name>-<i>" as well.
        self._aliases = {}
        if self._owns_cluster and self.configs[0].kind == "gpu" and len(self.configs) == 1:
            prefix = self.configs[0].prefix()
            ordered = sorted(self._workers, key=lambda a: _natural_key(self._workers[a]["name"]))
            self._aliases = {f"{prefix}-{i}": address for i, address in enumerate(ordered)}

    @property
    def workers(self) -> dict[str, str]:
        """Worker name -> address, ordered by name."""
        pairs = [(w["name"], a) for a, w in self._workers.items()]
        return dict(sorted(pairs, key=lambda p: _natural_key(p[0])))

    @property
    def capabilities(self) -> dict[str, tuple[str, ...]]:
        """Worker name -> its resource tags."""
        return {w["name"]: tuple(sorted(w["resources"])) for w in self._workers.values()}

    def workers_with(self, capability: str) -> list[str]:
        """Addresses of the workers offering ``capability`` (a resource tag), ordered by name.

        The list is as of the last :meth:`refresh_workers` (done at start).
        """
        matching = [(w["name"], a) for a, w in self._workers.items() if w["resources"].get(capability, 0) > 0]
        return [a for _, a in sorted(matching, key=lambda p: _natural_key(p[0]))]

    def worker_named(self, name: str) -> str:
        """Address of the worker called ``name`` (an address is returned as is).

        Raises
        ------
        CapabilityError
            When no worker has that name.
        """
        if name in self._aliases:
            return self._aliases[name]
        for address, worker in self._workers.items():
            if worker["name"] == str(name):
                return address
        if name in self._workers:
            return name
        raise CapabilityError(
            f"no worker is named {name!r}; workers of this pool: {list(self.workers) + list(self._aliases)}"
        )

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

    def __repr__(self) -> str:
        return f"<ActorPool {self._state}: {self.size} workers>"
