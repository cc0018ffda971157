"""Backends of an :class:`~byzdask.engine.graph.pool.ActorPool`, expressed as Dask cluster specs.

A backend says where workers run:

================================  =========================================================
``"thread"``                      in-process :class:`distributed.Worker` objects
``"process"``                     local worker processes (:class:`distributed.Nanny`)
``"gpu"``                         one worker process per CUDA device (``dask-cuda``)
``"tcp://host:port"``, ...        attach to a running scheduler (``ucx://`` needs
                                  ``distributed-ucxx``)
a ``distributed.Client``          attach to the client's cluster (never closed by byzdask)
a cluster object                  ``LocalCluster``, ``SpecCluster``, a dask-jobqueue cluster...
================================  =========================================================

The local backends of all configs of a pool become one :class:`distributed.SpecCluster`: one
scheduler and one worker spec per config and index, named ``"<config name>-<i>"`` and carrying
the config's capabilities as Dask resources (``{"cpu": threads}``, ``{"gpu": 1}``).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from byzdask.errors import ConfigurationError

__all__ = [
    "LOCAL_BACKENDS",
    "backend_kind",
    "default_capabilities",
    "is_loopback",
    "require_ucx",
    "scheduler_spec",
    "visible_gpus",
    "worker_resources",
    "worker_spec",
]

logger = logging.getLogger(__name__)

LOCAL_BACKENDS = ("thread", "process", "gpu")
ADDRESS_SCHEMES = ("tcp", "tls", "ucx", "ucxx", "inproc")


def backend_kind(backend: Any) -> str:
    """Classify a backend: ``"thread"``, ``"process"``, ``"gpu"``, ``"address"``, ``"client"``,
    ``"cluster"`` or ``"jobqueue"``.

    Parameters
    ----------
    backend : str, distributed.Client or cluster object
        What an :class:`~byzdask.engine.graph.pool.ActorPoolConfig` received.

    Returns
    -------
    str
        The kind.

    Raises
    ------
    ConfigurationError
        For anything else, naming the value and the valid choices.

    Examples
    --------
    >>> backend_kind("thread"), backend_kind("tcp://127.0.0.1:8786")
    ('thread', 'address')
    >>> backend_kind("threads")
    Traceback (most recent call last):
    ...
    byzdask.errors.ConfigurationError: backend must be 'thread', 'process', 'gpu', an address such as 'tcp://host:port' or 'ucx://host:port', a distributed.Client or a cluster object; got 'threads'
    """
    if isinstance(backend, str):
        if backend in LOCAL_BACKENDS:
            return backend
        scheme, sep, rest = backend.partition("://")
        if sep and scheme in ADDRESS_SCHEMES and rest:
            return "address"
    else:
        from distributed import Client

        if isinstance(backend, Client):
            return "client"
        if _is_jobqueue_cluster(backend):
            return "jobqueue"
        if hasattr(backend, "scheduler_address") and callable(getattr(backend, "close", None)):
            return "cluster"
    raise ConfigurationError(
        "backend must be 'thread', 'process', 'gpu', an address such as 'tcp://host:port' or "
        f"'ucx://host:port', a distributed.Client or a cluster object; got {backend!r}"
    )


def _is_jobqueue_cluster(obj: Any) -> bool:
    if importlib.util.find_spec("dask_jobqueue") is None:
        return False
    from dask_jobqueue import JobQueueCluster

    return isinstance(obj, JobQueueCluster)


def default_capabilities(kind: str) -> tuple[str, ...]:
    """Capability tags a backend gets when its config names none.

    Local CPU backends offer ``cpu``, the GPU backend ``gpu``; workers of a cluster byzdask
    attaches to keep the resources they were started with (empty tuple: add none).

    Examples
    --------
    >>> default_capabilities("process"), default_capabilities("gpu"), default_capabilities("address")
    (('cpu',), ('gpu',), ())
    """
    if kind == "gpu":
        return ("gpu",)
    if kind in ("thread", "process"):
        return ("cpu",)
    return ()


def worker_resources(
    capabilities: Iterable[str], threads: int, extra: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Dask resources of a worker offering ``capabilities``.

    A ``gpu`` tag is worth one unit (one device per worker); every other tag is worth the
    worker's thread count, so a task asking for ``{"cpu": 1}`` still runs ``threads`` at a time.

    Examples
    --------
    >>> worker_resources(["cpu"], 2)
    {'cpu': 2}
    >>> worker_resources(["gpu", "fast"], 1, {"memory-gb": 16})
    {'gpu': 1, 'fast': 1, 'memory-gb': 16}
    """
    resources: dict[str, float] = {}
    for tag in capabilities:
        resources[tag] = 1 if tag == "gpu" else threads
    resources.update(extra or {})
    return resources


def require_ucx() -> None:
    """Fail with a clear message when ``distributed-ucxx`` (the UCX comm of Dask) is absent.

    Raises
    ------
    ConfigurationError
        Naming the package to install.
    """
    if importlib.util.find_spec("distributed_ucxx") is None:
        raise ConfigurationError(
            "UCX comms need the package distributed-ucxx, which is not installed; install it "
            "with `pip install 'byzdask[ucx]'` (distributed-ucxx-cu12) or use protocol 'tcp'"
        )


def visible_gpus(count: int) -> list[str]:
    """CUDA devices for ``count`` GPU workers, through dask-cuda.

    Parameters
    ----------
    count : int
        Workers requested (one per device).

    Returns
    -------
    list of str
        The ``CUDA_VISIBLE_DEVICES`` entries, one per worker.

    Raises
    ------
    ConfigurationError
        When dask-cuda is absent, no device is visible, or fewer devices than ``count``.
    """
    if importlib.util.find_spec("dask_cuda") is None:
        raise ConfigurationError(
            "the 'gpu' backend needs the package dask-cuda, which is not installed; install it "
            "with `pip install 'byzdask[gpu]'` or use backend='thread' / 'process'"
        )
    from dask_cuda.utils import get_n_gpus

    try:
        available = int(get_n_gpus())
    except Exception as exc:  # pynvml raises its own error types when no driver is present
        raise ConfigurationError(f"the 'gpu' backend found no CUDA device: {exc}") from exc
    if available < 1:
        raise ConfigurationError("the 'gpu' backend found no CUDA device on this machine")
    if count > available:
        raise ConfigurationError(
            f"the 'gpu' backend runs one worker per device; count={count} but only "
            f"{available} CUDA device(s) are visible"
        )
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(available)]
    return devices[:count]


def _rotated(devices: list[str], first: int) -> str:
    # The worker sees its own device first, as dask-cuda arranges it.
    return ",".join(devices[first:] + devices[:first])


def scheduler_spec(
    *, host: str, protocol: str, security: Any, dashboard: bool
) -> dict[str, Any]:
    """The SpecCluster entry of the scheduler, bound to ``host``.

    Examples
    --------
    >>> spec = scheduler_spec(host="127.0.0.1", protocol="tcp", security=None, dashboard=True)
    >>> spec["options"]["dashboard_address"]
    '127.0.0.1:0'
    """
    from distributed import Scheduler

    options: dict[str, Any] = {
        "host": None if protocol == "inproc" else host,
        "protocol": protocol,
        "dashboard": dashboard,
        "dashboard_address": f"{_bracket(host)}:0",
    }
    if security is not None:
        options["security"] = security
    return {"cls": Scheduler, "options": options}


def worker_spec(
    *,
    kind: str,
    name: str,
    host: str,
    protocol: str,
    security: Any,
    threads: int,
    memory_limit: Any,
    resources: Mapping[str, float],
    options: Mapping[str, Any] | None = None,
    gpu_devices: list[str] | None = None,
    gpu_index: int = 0,
) -> dict[str, Any]:
    """The SpecCluster entry of one worker of a local backend.

    Parameters
    ----------
    kind : {"thread", "process", "gpu"}
        In-process worker, worker process, or worker process pinned to one CUDA device.
    name : str
        The worker's name (``"<config name>-<i>"``).
    host, protocol, security
        Where and how it listens; its HTTP server binds to ``host`` too.
    threads : int
        Threads of the worker.
    memory_limit
        Dask's ``memory_limit``; ``None`` picks 0 (none) for threads and ``"auto"`` otherwise.
    resources : mapping
        Its Dask resources (capability tags).
    options : mapping, optional
        Extra keyword arguments for :class:`distributed.Worker` / :class:`distributed.Nanny`.
    gpu_devices, gpu_index
        For ``kind="gpu"``: the devices and which one this worker owns.

    Examples
    --------
    >>> spec = worker_spec(kind="thread", name="cpu-0", host="127.0.0.1", protocol="tcp",
    ...                    security=None, threads=1, memory_limit=None, resources={"cpu": 1})
    >>> spec["cls"].__name__, spec["options"]["name"], spec["options"]["memory_limit"]
    ('Worker', 'cpu-0', 0)
    """
    from distributed import Nanny, Worker

    if memory_limit is None:
        memory_limit = 0 if kind == "thread" else "auto"
    worker_options: dict[str, Any] = {
        "name": name,
        "host": None if protocol == "inproc" else host,
        "protocol": protocol,
        "nthreads": threads,
        "memory_limit": memory_limit,
        "resources": dict(resources),
        "dashboard": False,
        "dashboard_address": f"{_bracket(host)}:0",
    }
    if security is not None:
        worker_options["security"] = security
    if kind == "gpu":
        devices = gpu_devices or ["0"]
        env = dict(worker_options.get("env", {}))
        env["CUDA_VISIBLE_DEVICES"] = _rotated(devices, gpu_index)
        worker_options["env"] = env
    worker_options.update(options or {})
    cls = Worker if kind == "thread" else Nanny
    return {"cls": cls, "options": worker_options}


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(address: str) -> bool:
    """Whether a Dask address (``tcp://127.0.0.1:8786``, ``inproc://...``) stays on this host.

    Examples
    --------
    >>> is_loopback("tcp://127.0.0.1:8786"), is_loopback("tcp://0.0.0.0:8786")
    (True, False)
    >>> is_loopback("inproc://10.1.2.3/42/1")
    True
    """
    scheme, _, rest = address.partition("://")
    if scheme == "inproc":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
