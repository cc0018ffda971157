"""ActorPool on real in-process clusters: backends, tags, names, routing, binding, ownership.

One style in this module: each test starts and closes its own pool inside the test's event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util

import dask
import psutil
import pytest
from distributed import Client, LocalCluster, Scheduler, Worker

from byzdask import config
from byzdask.engine.actor import backends
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.errors import CapabilityError, ConfigurationError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_leaked_processes():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    leaked = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not _is_multiprocessing_helper(p)
    ]
    for _ in range(50):
        leaked = [p for p in leaked if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not leaked:
            break
        psutil.wait_procs(leaked, timeout=0.1)
    assert not leaked, f"processes left running: {leaked}"


def _is_multiprocessing_helper(proc):
    # The resource tracker lives as long as this interpreter, by design of multiprocessing.
    try:
        return any("multiprocessing.resource_tracker" in part for part in proc.cmdline())
    except psutil.Error:
        return True


def listening_addresses() -> set[tuple[str, int]]:
    procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
    found = set()
    for proc in procs:
        for conn in proc.net_connections("inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


# -- configuration errors (constructor) -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "threads"}, "backend must be 'thread', 'process', 'gpu'"),
        ({"backend": 42}, "got 42"),
        ({"backend": "thread", "count": 0}, "count must be a positive integer, got 0"),
        ({"backend": "thread", "count": 1.5}, "got 1.5"),
        ({"backend": "thread", "capabilities": ["cpu", ""]}, "capabilities must be non-empty strings"),
        ({"backend": "thread", "name": ""}, "name must be a non-empty string"),
        ({"backend": "thread", "threads_per_worker": 0}, "threads_per_worker must be a positive integer"),
        ({"backend": "thread", "protocol": "http"}, "protocol must be 'tcp', 'tls', 'ucx' or 'inproc'"),
        ({"backend": "process", "protocol": "inproc"}, "only works with backend 'thread'"),
    ],
)
def test_config_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        ActorPoolConfig(**kwargs)


def test_config_defaults_and_capabilities():
    assert ActorPoolConfig("thread").resolved_capabilities() == ("cpu",)
    assert ActorPoolConfig("gpu").resolved_capabilities() == ("gpu",)
    assert ActorPoolConfig("tcp://127.0.0.1:1").resolved_capabilities() == ()
    assert ActorPoolConfig("thread", capabilities="fast").resolved_capabilities() == ("fast",)
    assert ActorPoolConfig("thread").prefix() == "thread"
    assert ActorPoolConfig("process", name="cpu").prefix() == "cpu"


def test_pool_rejects_bad_combinations():
    with pytest.raises(ConfigurationError, match="at least one"):
        ActorPool([])
    with pytest.raises(ConfigurationError, match="takes ActorPoolConfig"):
        ActorPool(["thread"])
    with pytest.raises(ConfigurationError, match="attaches to one existing cluster"):
        ActorPool([ActorPoolConfig("tcp://127.0.0.1:1"), ActorPoolConfig("thread")])
    with pytest.raises(ConfigurationError, match="one protocol"):
        ActorPool([ActorPoolConfig("thread", protocol="tcp"), ActorPoolConfig("thread", protocol="inproc")])
    with pytest.raises(ConfigurationError, match="inproc"):
        ActorPool([ActorPoolConfig("thread", protocol="inproc"), ActorPoolConfig("process")])
    with pytest.raises(ConfigurationError, match="positive duration"):
        ActorPool(ActorPoolConfig("thread"), start_timeout=-1)


@pytest.mark.skipif(importlib.util.find_spec("dask_cuda") is not None, reason="dask-cuda is installed")
def test_gpu_backend_without_dask_cuda_names_the_package():
    with pytest.raises(ConfigurationError, match="dask-cuda"):
        ActorPool([ActorPoolConfig("gpu")])


@pytest.mark.skipif(importlib.util.find_spec("distributed_ucxx") is not None, reason="distributed-ucxx is installed")
def test_ucx_without_distributed_ucxx_names_the_package():
    with pytest.raises(ConfigurationError, match="distributed-ucxx"):
        ActorPool([ActorPoolConfig("ucx://127.0.0.1:13337")])
    with pytest.raises(ConfigurationError, match="distributed-ucxx"):
        ActorPool([ActorPoolConfig("process", protocol="ucx")])


def test_client_before_start_is_an_error():
    pool = ActorPool(ActorPoolConfig("thread", count=2))
    assert pool.size == 2 and not pool.running
    with pytest.raises(RuntimeError, match="not started"):
        _ = pool.client


def test_is_loopback():
    assert backends.is_loopback("tcp://127.0.0.1:1")
    assert backends.is_loopback("tls://[::1]:1")
    assert backends.is_loopback("tcp://localhost:1")
    assert not backends.is_loopback("tcp://0.0.0.0:1")
    assert not backends.is_loopback("tcp://example.org:1")


# -- local backends -------------------------------------------------------------------------------


async def test_thread_pool_runs_tasks_and_closes():
    pool = ActorPool([ActorPoolConfig("thread", count=2)])
    async with pool:
        assert pool.running and pool.size == 2
        assert list(pool.workers) == ["thread-0", "thread-1"]
        assert pool.scheduler_address.startswith("inproc://")
        assert await pool.client.submit(lambda x: x + 1, 41) == 42
        assert pool.dashboard_link.startswith("http://127.0.0.1:")
        client, cluster = pool.client, pool._cluster
    assert client.status == "closed"
    assert cluster.status.name == "closed"
    assert not pool.running
    with pytest.raises(RuntimeError, match="shut down"):
        await pool.start()
    await pool.shutdown()  # a second shutdown is harmless


async def test_start_is_idempotent():
    pool = ActorPool(ActorPoolConfig("thread"))
    try:
        await pool.start()
        client = pool.client
        await pool.start()
        assert pool.client is client
    finally:
        await pool.shutdown()


async def test_heterogeneous_pool_tags_names_and_routing():
    configs = [
        ActorPoolConfig("thread", count=2, name="cpu"),
        ActorPoolConfig("thread", count=1, name="acc", capabilities=["gpu"], resources={"memory-gb": 4}),
        ActorPoolConfig("thread", count=1, capabilities=["cpu", "fast"], threads_per_worker=2),
    ]
    async with ActorPool(configs) as pool:
        assert list(pool.workers) == ["acc-0", "cpu-0", "cpu-1", "thread-0"]
        assert pool.capabilities["acc-0"] == ("gpu", "memory-gb")
        assert pool.capabilities["thread-0"] == ("cpu", "fast")
        assert pool.workers_with("cpu") == [pool.worker_named(n) for n in ("cpu-0", "cpu-1", "thread-0")]
        assert pool.workers_with("gpu") == [pool.worker_named("acc-0")]
        assert pool.workers_with("tpu") == []
        info = await pool.client.scheduler.identity(n_workers=-1)
        resources = {w["name"]: w["resources"] for w in info["workers"].values()}
        assert resources["thread-0"] == {"cpu": 2, "fast": 2}
        assert resources["acc-0"] == {"gpu": 1, "memory-gb": 4}

        def where():
            from distributed import get_worker

            return get_worker().name

        futures = [pool.client.submit(where, resources={"gpu": 1}, pure=False) for _ in range(4)]
        assert set(await pool.client.gather(futures)) == {"acc-0"}
        futures = [pool.client.submit(where, resources={"fast": 1}, pure=False) for _ in range(3)]
        assert set(await pool.client.gather(futures)) == {"thread-0"}
        named = pool.worker_named("cpu-1")
        assert await pool.client.submit(where, workers=[named], pure=False) == "cpu-1"
        assert pool.worker_named(named) == named
        with pytest.raises(CapabilityError, match="no worker is named 'cpu-7'"):
            pool.worker_named("cpu-7")


async def test_same_prefix_continues_numbering():
    async with ActorPool([ActorPoolConfig("thread"), ActorPoolConfig("thread", count=2)]) as pool:
        assert list(pool.workers) == ["thread-0", "thread-1", "thread-2"]


async def test_tcp_pool_binds_to_loopback_only():
    async with ActorPool([ActorPoolConfig("thread", count=2, protocol="tcp")]) as pool:
        addresses = [pool.scheduler_address, *pool.workers.values()]
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
        listening = listening_addresses()
        assert listening, "the cluster should listen somewhere"
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
        assert await pool.client.submit(sum, [1, 2, 3]) == 6


async def test_inproc_thread_pool_listens_only_for_its_dashboard():
    async with ActorPool([ActorPoolConfig("thread", count=2)]) as pool:
        listening = listening_addresses()
        assert {ip for ip, _ in listening} <= {"127.0.0.1"}, listening
        assert all(a.startswith("inproc://") for a in pool.workers.values())


async def test_dashboard_can_be_turned_off():
    with dask.config.set({"byzdask.pool.dashboard": False}):
        async with ActorPool([ActorPoolConfig("thread")]) as pool:
            assert pool.dashboard_link is None or "127.0.0.1" in pool.dashboard_link


@pytest.mark.skipif(importlib.util.find_spec("cryptography") is None, reason="needs cryptography for TLS")
async def test_tls_pool_with_temporary_certificates():
    async with ActorPool([ActorPoolConfig("thread", count=1, security=True)]) as pool:
        assert pool.scheduler_address.startswith("tls://127.0.0.1:")
        assert await pool.client.submit(pow, 3, 2) == 9


# -- attaching to clusters that already run ------------------------------------------------------


async def test_attach_to_tcp_address_with_capabilities():
    async with (
        Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0") as scheduler,
        Worker(scheduler.address, host="127.0.0.1", nthreads=2, name="remote-a", dashboard_address="127.0.0.1:0"),
    ):
        pool = ActorPool([ActorPoolConfig(scheduler.address, capabilities=["cpu", "big"])])
        async with pool:
            assert pool.scheduler_address == scheduler.address
            assert list(pool.workers) == ["remote-a"]
            assert pool.workers_with("big") == pool.workers_with("cpu") == [pool.worker_named("remote-a")]
            assert await pool.client.submit(sum, [2, 3], resources={"big": 1}) == 5
        assert scheduler.status.name == "running"


async def test_attach_to_address_without_workers_times_out():
    async with Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0") as scheduler:
        pool = ActorPool([ActorPoolConfig(scheduler.address, count=1)], start_timeout=0.5)
        with pytest.raises(TimeoutError, match="did not start within 0.5 s"):
            await pool.start()
        assert not pool.running


async def test_users_async_client_is_used_and_not_closed():
    async with LocalCluster(processes=False, n_workers=1, threads_per_worker=1, asynchronous=True,
                            dashboard_address="127.0.0.1:0") as cluster:
        async with Client(cluster, asynchronous=True) as user_client:
            async with ActorPool([ActorPoolConfig(user_client)]) as pool:
                assert pool.client is user_client
                assert pool.size == 1
                assert await pool.client.submit(pow, 2, 5) == 32
            assert user_client.status == "running"
            assert await user_client.submit(pow, 2, 3) == 8
        assert cluster.status.name == "running"


async def test_users_cluster_object_is_not_closed():
    async with LocalCluster(processes=False, n_workers=2, threads_per_worker=1, asynchronous=True,
                            dashboard_address="127.0.0.1:0") as cluster:
        async with ActorPool([ActorPoolConfig(cluster, count=2)]) as pool:
            assert pool.size == 2
            assert pool.workers_with("cpu") == []  # the user's workers keep their own resources
            assert await pool.client.submit(pow, 2, 4) == 16
        assert cluster.status.name == "running"
        async with Client(cluster, asynchronous=True) as client:
            assert await client.submit(pow, 2, 2) == 4


def test_users_sync_client_on_another_loop_is_not_closed():
    with LocalCluster(processes=False, protocol="tcp", n_workers=1, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as user_client:

        async def use_pool():
            async with ActorPool([ActorPoolConfig(user_client)]) as pool:
                assert pool.client is not user_client
                return await pool.client.submit(pow, 3, 3)

        assert asyncio.run(use_pool()) == 27
        assert user_client.status == "running"
        assert user_client.submit(pow, 3, 2).result(timeout=10) == 9


@pytest.mark.requires_jobqueue
@pytest.mark.skipif(importlib.util.find_spec("dask_jobqueue") is None, reason="dask-jobqueue is not installed")
async def test_jobqueue_cluster_is_scaled_and_not_closed():
    from dask_jobqueue.local import LocalCluster as JobQueueLocalCluster

    async with JobQueueLocalCluster(cores=1, memory="1GB", processes=1, asynchronous=True,
                                    scheduler_options={"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}) as cluster:
        async with ActorPool([ActorPoolConfig(cluster, count=1, capabilities=["cpu"])]) as pool:
            assert pool.size == 1
            assert await pool.client.submit(pow, 2, 6, resources={"cpu": 1}) == 64
        assert cluster.status.name == "running"


@pytest.mark.requires_ucx
@pytest.mark.skipif(importlib.util.find_spec("distributed_ucxx") is None, reason="distributed-ucxx is not installed")
async def test_ucx_cluster_on_loopback(monkeypatch):
    monkeypatch.setenv("UCX_TLS", "tcp")
    monkeypatch.setenv("UCXPY_IFNAME", "lo")
    async with ActorPool([ActorPoolConfig("process", count=2, protocol="ucx")], start_timeout=120) as pool:
        assert pool.scheduler_address.startswith("ucx")
        assert await pool.client.submit(sum, [1, 2, 3]) == 6


# -- synchronous use --------------------------------------------------------------------------------


def test_sync_context_manager_and_call_sync():
    pool = ActorPool([ActorPoolConfig("thread", count=2)])
    with pool.sync() as client:
        assert client.submit(pow, 2, 10).result(timeout=10) == 1024
        assert pool.size == 2

        async def count_workers():
            return len(await pool.refresh_workers())

        assert pool.call_sync(count_workers) == 2
    assert client.status == "closed"
    assert not pool.running


def test_call_sync_needs_start_sync():
    pool = ActorPool([ActorPoolConfig("thread")])
    with pytest.raises(RuntimeError, match="start_sync"):
        pool.call_sync(asyncio.sleep, 0)


def test_config_defaults_are_in_dask_config():
    assert dask.config.get("byzdask.pool.host") == "127.0.0.1"
    assert config.get_timeout("pool.shutdown-timeout") == 30.0
    with dask.config.set({"byzdask.actor.call-timeout": None}):
        assert config.get_timeout("actor.call-timeout") is None
    with pytest.raises(ConfigurationError, match="must be a duration"):
        config.get_timeout("pool.start-timeout", "soon")
