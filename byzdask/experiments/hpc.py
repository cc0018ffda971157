"""Batch-system clusters (SLURM, PBS, SGE, LSF, ...) through dask-jobqueue.

``--cluster slurm`` (and :func:`jobqueue_cluster` from Python) builds a dask-jobqueue cluster
whose settings come, first to last, from the explicit arguments (CLI options), from the
``byzdask.jobqueue`` section of ``dask.config`` (``byzdask.yaml``, ``~/.config/dask/*.yaml``,
``DASK_BYZDASK__JOBQUEUE__QUEUE=short``...), from dask-jobqueue's own ``jobqueue.<system>``
settings, and last from byzdask's fallbacks (1 core and 4 GiB per job). The cluster is scaled to
the requested number of *jobs*; each job runs ``processes`` Dask worker processes.

Option names are the same for every system; they map onto each system's keyword:
``account`` is SLURM's and PBS's account, SGE's, LSF's and OAR's project; ``job_extra`` are
extra scheduler directives (``#SBATCH --gres=gpu:1``); ``prologue`` are shell lines run before
the worker starts (``module load ...``).

Network: workers on compute nodes must reach the scheduler, so it cannot listen on loopback.
It listens on ``scheduler_host`` when given, else on ``interface`` (a network interface name,
also used by the workers), else on the address this host's name resolves to (never on every
interface); the dashboard listens on ``127.0.0.1`` unless ``dashboard_address`` says otherwise
(reach it with ``ssh -L``).

:func:`job_script` renders the script a job would run without starting anything.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask.config

from byzdask import config as byz_config
from byzdask.errors import ConfigurationError

__all__ = ["OPTIONS", "SYSTEMS", "click_options", "cluster_class", "job_script", "jobqueue_cluster",
           "jobqueue_options", "jobqueue_pool", "pop_click_options"]

logger = logging.getLogger(__name__)

#: ``--cluster`` names and their dask-jobqueue classes.
SYSTEMS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
           "oar": "OARCluster", "htcondor": "HTCondorCluster", "moab": "MoabCluster"}

#: byzdask option -> dask-jobqueue keyword, per system (None: the system has no such setting).
_ACCOUNT = {"slurm": "account", "pbs": "account", "moab": "account", "sge": "project", "lsf": "project",
            "oar": "project", "local": "project", "htcondor": None}
_NO_QUEUE = ("htcondor",)

#: Options read from ``byzdask.jobqueue.<key>`` (key with dashes), with what each sets.
OPTIONS = {
    "queue": "queue / partition the jobs go to",
    "account": "account (SLURM, PBS) or project (SGE, LSF, OAR) charged",
    "walltime": "wall-clock limit of each job, e.g. 01:00:00",
    "cores": "cores per job",
    "memory": "memory per job, e.g. 16GiB",
    "processes": "Dask worker processes per job",
    "job_extra": "extra scheduler directives, e.g. --gres=gpu:1",
    "prologue": "shell lines run before the worker starts, e.g. module load cuda",
    "interface": "network interface of scheduler and workers, e.g. ib0",
    "scheduler_host": "address the scheduler listens on (default: this host's name resolution)",
    "dashboard_address": "address of the dashboard (default 127.0.0.1:0)",
    "local_directory": "worker scratch directory on the compute nodes",
    "log_directory": "directory of the job logs",
    "python": "Python executable on the compute nodes",
    "job_name": "name of the jobs",
}
_FALLBACKS = {"cores": 1, "memory": "4GiB"}
_LIST_OPTIONS = ("job_extra", "prologue")


def _config_key(option: str) -> str:
    return option.replace("_", "-")


def cluster_class(system: Any) -> type:
    """The dask-jobqueue cluster class of ``system`` (a name in :data:`SYSTEMS` or a class).

    Raises
    ------
    ConfigurationError
        An unknown name, or dask-jobqueue not installed.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("dask_jobqueue")
    >>> cluster_class("slurm").__name__
    'SLURMCluster'
    >>> cluster_class("torque")
    Traceback (most recent call last):
    ...
    byzdask.errors.ConfigurationError: unknown job-queue system 'torque'; use one of slurm, pbs, sge, lsf, oar, htcondor, moab
    """
    if isinstance(system, type):
        return system
    if system not in SYSTEMS:
        raise ConfigurationError(f"unknown job-queue system {system!r}; use one of {', '.join(SYSTEMS)}")
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise ConfigurationError(
            f"--cluster {system} needs dask-jobqueue: pip install 'byzdask[hpc]' (or pip install dask-jobqueue)"
        ) from exc
    return getattr(dask_jobqueue, SYSTEMS[system])


def _system_name(cls: type) -> str:
    return cls.job_cls.default_config_name() if hasattr(cls, "job_cls") else "local"


def _setting(option: str, given: Mapping[str, Any]) -> Any:
    if given.get(option) is not None:
        return given[option]
    return byz_config.get(f"jobqueue.{_config_key(option)}", default=None)


def jobqueue_options(system: Any, **options: Any) -> dict[str, Any]:
    """The keyword arguments of the dask-jobqueue cluster class for ``system``.

    Each option (see :data:`OPTIONS`) is taken from ``options`` when given (not None), else from
    ``byzdask.jobqueue.<option>``; options that stay None are left to dask-jobqueue's own
    ``jobqueue.<system>`` settings, except ``cores`` and ``memory`` which fall back to 1 and 4 GiB.
    Nothing is started.

    Parameters
    ----------
    system : str or type
        ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``, ``"oar"``, ``"htcondor"``, ``"moab"``, or a
        dask-jobqueue cluster class (e.g. ``dask_jobqueue.local.LocalCluster`` in tests).
    **options
        The options of :data:`OPTIONS`; any other keyword goes to the class unchanged.

    Returns
    -------
    dict

    Raises
    ------
    ConfigurationError
        An option the system does not have (``account`` or ``queue`` for HTCondor), a bad
        ``cores`` / ``processes`` (not positive, or ``processes > cores``).

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("dask_jobqueue")
    >>> import dask
    >>> with dask.config.set({"byzdask.jobqueue.queue": "short", "byzdask.jobqueue.walltime": "02:00:00"}):
    ...     kwargs = jobqueue_options("slurm", account="proj1", memory="8GiB")
    >>> kwargs["queue"], kwargs["walltime"], kwargs["account"], kwargs["memory"], kwargs["cores"]
    ('short', '02:00:00', 'proj1', '8GiB', 1)
    """
    cls = cluster_class(system)
    name = _system_name(cls)
    known = {k: options.pop(k) for k in list(options) if k in OPTIONS}
    kwargs: dict[str, Any] = {}
    for option in OPTIONS:
        value = _setting(option, known)
        if option in _LIST_OPTIONS:
            value = [value] if isinstance(value, str) else list(value or [])
        if value is None or option in ("scheduler_host", "dashboard_address", "interface"):
            continue
        if option == "account":
            keyword = _ACCOUNT.get(name, "account")
            if keyword is None:
                raise ConfigurationError(f"{name} jobs have no account or project; got account={value!r}")
            kwargs[keyword] = value
        elif option == "queue":
            if name in _NO_QUEUE:
                raise ConfigurationError(f"{name} jobs have no queue; got queue={value!r}")
            kwargs["queue"] = value
        elif option == "job_extra":
            kwargs["job_extra_directives"] = value
        elif option == "prologue":
            kwargs["job_script_prologue"] = value
        else:
            kwargs[option] = value
    for option, fallback in _FALLBACKS.items():
        if option not in kwargs and dask.config.get(f"jobqueue.{name}.{option}", default=None) is None:
            kwargs[option] = fallback
    cores = kwargs.get("cores") or dask.config.get(f"jobqueue.{name}.cores", default=None)
    for option in ("cores", "processes"):
        value = kwargs.get(option)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigurationError(f"{option} must be a positive integer, got {value!r}")
    if kwargs.get("processes") and cores and kwargs["processes"] > cores:
        raise ConfigurationError(f"processes ({kwargs['processes']}) cannot exceed cores per job ({cores})")
    interface = _setting("interface", known)
    if interface is not None:
        kwargs["interface"] = interface
    kwargs.update(options)
    return kwargs


def _scheduler_options(given: Mapping[str, Any], interface: str | None) -> dict[str, Any]:
    dashboard = _setting("dashboard_address", given) or "127.0.0.1:0"
    host = _setting("scheduler_host", given)
    if host is None and interface is None:
        host = socket.gethostbyname(socket.getfqdn())
        if ipaddress.ip_address(host).is_loopback:
            raise ConfigurationError(
                f"this host's name resolves to the loopback address {host}, which compute nodes cannot "
                "reach; set scheduler_host (byzdask.jobqueue.scheduler-host) to an address of this host "
                "or interface (byzdask.jobqueue.interface) to its network interface, e.g. ib0"
            )
    out: dict[str, Any] = {"dashboard_address": dashboard}
    if host is not None:
        out["host"] = host
    return out


def _check_jobs(jobs: Any) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigurationError(f"jobs must be a non-negative integer, got {jobs!r}")
    return jobs


def jobqueue_cluster(system: Any, *, jobs: int | None = None, asynchronous: bool = False,
                     capabilities: Sequence[str] = (), **options: Any) -> Any:
    """Build a dask-jobqueue cluster for ``system`` and scale it to ``jobs`` jobs.

    Parameters
    ----------
    system : str or type
        As in :func:`jobqueue_options`.
    jobs : int, optional
        Jobs to submit (each with ``processes`` workers); default ``byzdask.jobqueue.jobs``.
        0 submits none (scale later with ``cluster.scale(jobs=...)``).
    capabilities : sequence of str
        Resource tags the workers register with, e.g. ``("cpu",)`` (see :func:`job_script`).
    asynchronous : bool
        Build the cluster on the running event loop: the call returns an awaitable that starts
        and scales it (``cluster = await jobqueue_cluster(...)``), or ``async with`` it.
    **options
        See :func:`jobqueue_options`; ``scheduler_host`` and ``dashboard_address`` place the
        scheduler (see the module notes).

    Returns
    -------
    dask_jobqueue.JobQueueCluster
        Close it when done (``with jobqueue_cluster(...) as cluster:``); closing cancels its jobs.

    Examples
    --------
    dask-jobqueue's test class runs the jobs as local processes (``jobs=0``: none submitted yet):

    >>> import pytest; _ = pytest.importorskip("dask_jobqueue")
    >>> from dask_jobqueue.local import LocalCluster
    >>> with jobqueue_cluster(LocalCluster, jobs=0, cores=2, processes=1, memory="1GiB",
    ...                       scheduler_host="127.0.0.1") as cluster:
    ...     print(cluster.scheduler_address.startswith("tcp://127.0.0.1:"), "--nthreads 2" in cluster.job_script())
    True True
    """
    jobs = _check_jobs(byz_config.get("jobqueue.jobs", default=1) if jobs is None else jobs)
    cls = cluster_class(system)
    given = {k: options.pop(k) for k in ("scheduler_host", "dashboard_address") if k in options}
    kwargs = jobqueue_options(cls, **options)
    if capabilities:
        kwargs = _with_resources(cls, kwargs, capabilities)
    scheduler_options = {**_scheduler_options(given, kwargs.get("interface")),
                         **kwargs.pop("scheduler_options", {})}
    logger.info("starting a %s cluster (%s jobs) with %s", cls.__name__, jobs, kwargs)
    cluster = cls(scheduler_options=scheduler_options, asynchronous=asynchronous, **kwargs)
    if asynchronous:
        return _AwaitableCluster(cluster, jobs)
    if jobs:
        cluster.scale(jobs=jobs)
    return cluster


async def _start_and_scale(cluster: Any, jobs: int) -> Any:
    await cluster
    if jobs:
        cluster.scale(jobs=jobs)
    return cluster


class _AwaitableCluster:
    """Wraps an asynchronous cluster so that ``await`` / ``async with`` start it, then scale it."""

    def __init__(self, cluster: Any, jobs: int) -> None:
        self.cluster, self.jobs = cluster, jobs

    def __await__(self) -> Any:
        return _start_and_scale(self.cluster, self.jobs).__await__()

    async def __aenter__(self) -> Any:
        return await self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cluster.close()


def job_script(system: Any, *, scheduler_address: str | None = None, capabilities: Sequence[str] = (),
               **options: Any) -> str:
    """The script one job would run (header directives, prologue, worker command); starts nothing.

    Parameters
    ----------
    system : str or type
        As in :func:`jobqueue_options`.
    scheduler_address : str, optional
        Written into the worker command; default a placeholder ``tcp://<scheduler-address>:8786``.
    capabilities : sequence of str
        Resource tags the workers register with (``--resources cpu=<threads>``), as
        :func:`jobqueue_pool` submits them; default none.
    **options
        See :func:`jobqueue_options`.

    Returns
    -------
    str

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("dask_jobqueue")
    >>> script = job_script("slurm", queue="short", account="proj1", walltime="01:00:00", cores=4, memory="8GiB")
    >>> for line in script.splitlines():
    ...     if line.startswith("#SBATCH"):
    ...         print(line)
    #SBATCH -J dask-worker
    #SBATCH -p short
    #SBATCH -A proj1
    #SBATCH -n 1
    #SBATCH --cpus-per-task=4
    #SBATCH --mem=8G
    #SBATCH -t 01:00:00
    >>> "-m distributed.cli.dask_worker tcp://<scheduler-address>:8786" in script
    True
    """
    cls = cluster_class(system)
    options.pop("scheduler_host", None)
    options.pop("dashboard_address", None)
    kwargs = jobqueue_options(cls, **options)
    if capabilities:
        kwargs = _with_resources(cls, kwargs, capabilities)
    return _job(cls, kwargs, scheduler_address).job_script()


def _job(cls: type, kwargs: Mapping[str, Any], scheduler_address: str | None = None) -> Any:
    address = scheduler_address or "tcp://<scheduler-address>:8786"
    try:
        return cls.job_cls(scheduler=address, name="byzdask-worker", **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{cls.__name__} rejected the options {dict(kwargs)}: {exc}") from exc


def _with_resources(cls: type, kwargs: dict[str, Any], capabilities: Sequence[str]) -> dict[str, Any]:
    """Add ``--resources cpu=<threads>`` to the worker command: workers register with their tags."""
    from byzdask.engine.actor.backends import worker_resources

    threads = int(_job(cls, kwargs).worker_process_threads)
    resources = worker_resources(capabilities, threads)
    base = kwargs.get("worker_extra_args")
    if base is None:
        base = dask.config.get(f"jobqueue.{_system_name(cls)}.worker-extra-args", default=None) or []
    spec = ",".join(f"{tag}={value:g}" for tag, value in resources.items())
    return {**kwargs, "worker_extra_args": [*base, "--resources", spec]}


def jobqueue_pool(system: Any, *, jobs: int | None = None, capabilities: Sequence[str] = ("cpu",),
                  **options: Any) -> Any:
    """An :class:`~byzdask.engine.graph.pool.ActorPool` on a new job-queue cluster (``--cluster slurm``).

    The cluster is built and scaled by :func:`jobqueue_cluster`; its workers register with the
    ``capabilities`` tags (``--resources`` in the job script, so workers that join later carry
    them too); the pool waits for every worker of the jobs (``jobs x processes``) and closes
    the cluster (cancelling its jobs) when it shuts down.

    Parameters
    ----------
    system : str or type
        As in :func:`jobqueue_options`.
    jobs : int, optional
        At least 1; default ``byzdask.jobqueue.jobs``.
    capabilities : sequence of str
        Resource tags of the workers.
    **options
        See :func:`jobqueue_cluster`.

    Returns
    -------
    ActorPool
    """
    from byzdask.engine.graph.pool import ActorPoolConfig

    jobs = _check_jobs(byz_config.get("jobqueue.jobs", default=1) if jobs is None else jobs)
    if jobs == 0:
        raise ConfigurationError("a pool needs at least one job, got jobs=0")
    cluster = jobqueue_cluster(system, jobs=jobs, capabilities=capabilities, **options)
    try:
        workers = sum(len(spec.get("group", [""])) for spec in cluster.worker_spec.values())
        pool = _owning_pool_class()(ActorPoolConfig(cluster, count=workers, capabilities=list(capabilities) or None))
    except BaseException:
        cluster.close()
        raise
    pool._jobqueue_cluster = cluster
    return pool


@functools.cache
def _owning_pool_class() -> type:
    from byzdask.engine.graph.pool import ActorPool

    class JobQueuePool(ActorPool):
        """An ActorPool that also closes the job-queue cluster it was built on."""

        _jobqueue_cluster: Any = None

        async def shutdown(self) -> None:
            try:
                await super().shutdown()
            finally:
                cluster, self._jobqueue_cluster = self._jobqueue_cluster, None
                if cluster is not None:
                    timeout = float(byz_config.get("jobqueue.close-timeout", default=60))
                    try:
                        await asyncio.wait_for(asyncio.to_thread(cluster.close, timeout=timeout), timeout + 5)
                    except TimeoutError:
                        # never hang the caller; say which cluster may still hold jobs
                        logger.warning("the job-queue cluster %r did not close within %s s; "
                                       "check the batch system for its jobs", cluster, timeout)

    return JobQueuePool


def click_options(*, jobs: bool = True) -> Callable[[Callable], Callable]:
    """A decorator adding the job-queue options of :data:`OPTIONS` (and ``--jobs``) to a click command.

    The command receives them as keyword arguments (None or an empty tuple when not given);
    :func:`pop_click_options` collects those that were given, for :func:`jobqueue_pool`,
    :func:`jobqueue_cluster` or :func:`job_script`. Defaults stay in ``byzdask.jobqueue``.

    Examples
    --------
    >>> import click
    >>> @click.command()
    ... @click_options(jobs=False)
    ... def show(**options):
    ...     print(pop_click_options(options))
    >>> show(["--queue", "short", "--job-extra", "--gres=gpu:1", "--cores", "4"], standalone_mode=False)
    {'queue': 'short', 'cores': 4, 'job_extra': ['--gres=gpu:1']}
    """
    import click

    flags = {
        "queue": ("--queue", "-q"), "account": ("--account", "-A"), "walltime": ("--walltime", "-t"),
        "cores": ("--cores",), "memory": ("--memory",), "processes": ("--processes",),
        "job_extra": ("--job-extra",), "prologue": ("--prologue",), "interface": ("--interface",),
        "scheduler_host": ("--scheduler-host",), "dashboard_address": ("--dashboard-address",),
        "local_directory": ("--local-directory",), "log_directory": ("--log-directory",),
        "python": ("--python",), "job_name": ("--job-name",),
    }
    types = {"cores": int, "processes": int}

    def decorate(command: Callable) -> Callable:
        for option in reversed(list(flags)):
            multiple = option in _LIST_OPTIONS
            text = (OPTIONS[option] + ("; repeat the option" if multiple else "")
                    + f"  [default: byzdask.jobqueue.{_config_key(option)}]")
            command = click.option(*flags[option], option, type=types.get(option, str), multiple=multiple,
                                   default=None, help=text)(command)
        if jobs:
            command = click.option("--jobs", "jobs", type=int, default=None,
                                   help="batch jobs to submit  [default: byzdask.jobqueue.jobs]")(command)
        return command

    return decorate


def pop_click_options(values: dict[str, Any]) -> dict[str, Any]:
    """Remove the :func:`click_options` values from ``values``; return those that were given."""
    out = {}
    for option in (*OPTIONS, "jobs"):
        value = values.pop(option, None)
        if value not in (None, ()):
            out[option] = list(value) if isinstance(value, tuple) else value
    return out

