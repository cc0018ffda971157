"""What an :class:`~byzdask.engine.graph.pool.ActorPool` starts, as pure functions of its configs.

:class:`ActorPoolConfig` describes one group of workers; :func:`local_cluster_spec` turns the
configs into the worker and scheduler specs that ``distributed.SpecCluster`` runs (as
``distributed.LocalCluster`` translates its options into a spec), :func:`resolve_protocol`
and :func:`resolve_security` pick the comm protocol and TLS settings. Nothing here starts
anything; the pool's life cycle is in :mod:`byzdask.engine.graph.pool`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from byzdask import config
from byzdask.engine.actor import backends
from byzdask.errors import ConfigurationError

__all__ = ["ActorPoolConfig", "cuda_cluster_kwargs", "local_cluster_spec", "resolve_protocol", "resolve_security"]


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


def resolve_security(configs: Sequence[ActorPoolConfig], security: Any = None) -> Any:
    """The TLS settings of a pool: ``security``, else the first config's (True: temporary certificates)."""
    given = [security] if security not in (None, False) else [c.security for c in configs
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


def resolve_protocol(configs: Sequence[ActorPoolConfig], security: Any) -> str | None:
    """The comm protocol of a cluster byzdask starts (None when the pool attaches to one)."""
    kinds = {c.kind for c in configs}
    protocols = {c.protocol for c in configs if c.protocol}
    if len(protocols) > 1:
        raise ConfigurationError(f"all configs of a pool must use one protocol, got {sorted(protocols)}")
    address_schemes = {c.backend.partition("://")[0] for c in configs if c.kind == "address"}
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
        if security is not None:
            protocol = "tls"
        else:
            protocol = "inproc" if kinds == {"thread"} else "tcp"
    if protocol == "inproc" and kinds != {"thread"}:
        raise ConfigurationError("protocol 'inproc' only works when every config uses backend 'thread'")
    if protocol in ("ucx", "ucxx"):
        backends.require_ucx()
    return protocol


def local_cluster_spec(configs: Sequence[ActorPoolConfig], *, host: str, protocol: str | None, security: Any,
                       gpu_devices: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``SpecCluster`` worker specs (name -> spec) and scheduler spec of local backends.

    Workers are named ``"<prefix>-<i>"``, counted per prefix across configs.

    Examples
    --------
    >>> workers, scheduler = local_cluster_spec([ActorPoolConfig("thread", count=2, name="cpu")],
    ...                                         host="127.0.0.1", protocol="tcp", security=None, gpu_devices=[])
    >>> sorted(workers), scheduler["options"]["host"]
    (['cpu-0', 'cpu-1'], '127.0.0.1')
    """
    workers: dict[str, Any] = {}
    used: dict[str, int] = {}
    gpu_index = 0
    for cfg in configs:
        prefix = cfg.prefix()
        threads = cfg.threads_per_worker or config.get("pool.threads-per-worker")
        memory_limit = cfg.memory_limit if cfg.memory_limit is not None else config.get("pool.memory-limit")
        for _ in range(cfg.count):
            index = used.get(prefix, 0)
            used[prefix] = index + 1
            name = f"{prefix}-{index}"
            workers[name] = backends.worker_spec(
                kind=cfg.kind, name=name, host=cfg.host or host, protocol=protocol, security=security,
                threads=threads, memory_limit=memory_limit,
                resources=backends.worker_resources(cfg.resolved_capabilities(), threads, cfg.resources),
                options=cfg.worker_options, gpu_devices=list(gpu_devices), gpu_index=gpu_index,
            )
            if cfg.kind == "gpu":
                gpu_index += 1
    scheduler = backends.scheduler_spec(host=host, protocol=protocol, security=security,
                                        dashboard=bool(config.get("pool.dashboard")))
    return workers, scheduler


def cuda_cluster_kwargs(cfg: ActorPoolConfig, *, host: str, protocol: str | None, security: Any,
                        gpu_devices: Sequence[str]) -> dict[str, Any]:
    """Keyword arguments of ``dask_cuda.LocalCUDACluster`` for one ``"gpu"`` config."""
    threads = cfg.threads_per_worker or config.get("pool.threads-per-worker")
    options: dict[str, Any] = dict(cfg.worker_options or {})
    if security is not None:
        options["security"] = security
    return dict(
        n_workers=cfg.count, CUDA_VISIBLE_DEVICES=",".join(gpu_devices), threads_per_worker=threads, host=host,
        protocol=protocol, dashboard_address=f"{host}:0" if config.get("pool.dashboard") else None,
        resources=backends.worker_resources(cfg.resolved_capabilities(), threads, cfg.resources),
        asynchronous=True, **options,
    )
