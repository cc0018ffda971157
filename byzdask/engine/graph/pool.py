"""ActorPool: a Dask cluster and an asynchronous client, described by backend configs.

An :class:`ActorPool` is what the graph scheduler, the parameter server and peer-to-peer
training run on. ``ActorPool([ActorPoolConfig("thread", count=4)])`` starts one scheduler and
four in-process workers, all listening on 127.0.0.1; several configs make one heterogeneous
cluster whose workers carry resource tags (``cpu``, ``gpu``, or any tag the user names) and
names ``"<config name>-<i>"``; a config can also attach to a running cluster (byzdask never
closes what the user passed in). This module holds the life cycle and the workers; the specs
are built in :mod:`~byzdask.engine.graph.cluster_spec`, actors in :mod:`~byzdask.engine.graph.pool_use`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any


from byzdask import config
from byzdask.engine.actor import backends
from byzdask.engine.actor.ref import guarded
from byzdask.engine.graph.cluster_spec import (
    ActorPoolConfig,
    cuda_cluster_kwargs,
    local_cluster_spec,
    resolve_protocol,
    resolve_security,
)
from byzdask.engine.graph.pool_use import PoolUse
from byzdask.errors import CapabilityError, ConfigurationError

if TYPE_CHECKING:  # typing.Self needs Python 3.11; the package supports 3.10
    from typing import Self

__all__ = ["ActorPool", "ActorPoolConfig"]  # ActorPoolConfig lives in cluster_spec

logger = logging.getLogger(__name__)


async def _tag_worker(capabilities: Sequence[str], extra: Mapping[str, float], dask_worker: Any = None) -> None:
    wanted = backends.worker_resources(capabilities, dask_worker.state.nthreads, extra)
    missing = {k: v for k, v in wanted.items() if k not in dask_worker.state.total_resources}
    if missing:
        await dask_worker.set_resources(**missing)


def _natural_key(name: str) -> tuple:
    match = re.match(r"^(.*?)(\d+)$", name)
    return (match.group(1), int(match.group(2)), name) if match else (name, -1, name)


class ActorPool(PoolUse):
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
        self._security = resolve_security(self.configs, security)
        self._protocol = resolve_protocol(self.configs, self._security)
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
        workers, scheduler = local_cluster_spec(self.configs, host=self._host, protocol=self._protocol,
                                                security=self._security, gpu_devices=self._gpu_devices)
        self._cluster = SpecCluster(workers=workers, scheduler=scheduler, asynchronous=True,
                                    security=self._security, name="byzdask")
        self._owns_cluster = True
        await self._cluster

    async def _start_cuda_cluster(self, cfg: ActorPoolConfig) -> None:
        from dask_cuda import LocalCUDACluster

        self._cluster = LocalCUDACluster(**cuda_cluster_kwargs(cfg, host=self._host, protocol=self._protocol,
                                                             security=self._security, gpu_devices=self._gpu_devices))
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

    def __repr__(self) -> str:
        return f"<ActorPool {self._state}: {self.size} workers>"
