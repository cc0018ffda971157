"""TLS end to end (temporary self-signed certificates), and loopback as the default listening address."""

from __future__ import annotations

import asyncio
import os

import psutil
import pytest
from distributed import Client

from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.errors import ConfigurationError
from byzdask.train import TrainConfig, make_pool, run_training

pytestmark = pytest.mark.timeout(240)

SMALL = dict(honest=4, byzantine=1, rounds=2, eval_every=2, attack="signflip", workers=2)


async def test_a_tls_pool_refuses_a_plain_tcp_client():
    async with ActorPool(ActorPoolConfig("thread", count=2), security=True) as pool:
        address = pool.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        assert all(a.startswith("tls://127.0.0.1:") for a in pool.workers.values())
        assert await pool.client.submit(sum, [1, 2]) == 3
        with pytest.raises((OSError, TimeoutError, asyncio.TimeoutError)):
            async with Client(address.replace("tls://", "tcp://"), asynchronous=True, timeout="2s"):
                pass


@pytest.mark.parametrize("mode", ["ps", "p2p"])
def test_training_runs_over_tls_as_over_tcp(mode):
    assert make_pool("thread", 2, tls=True)._protocol == "tls"
    secure = run_training(TrainConfig(mode=mode, cluster="thread", tls=True, **SMALL), progress=False)
    plain = run_training(TrainConfig(mode=mode, cluster="thread", **SMALL), progress=False)
    assert secure["config"]["tls"] is True
    assert [h["round"] for h in secure["history"]] == [2]
    assert secure["history"] == plain["history"]  # the same training, only the transport differs


def test_tls_is_refused_for_clusters_byzdask_does_not_start():
    with pytest.raises(ConfigurationError, match="--tls makes temporary certificates"):
        make_pool("tcp://127.0.0.1:8786", 2, tls=True)


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    return [(c.pid, c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids]


def test_a_train_run_listens_on_loopback_only():
    found: list[tuple[int, str, int]] = []
    me = psutil.Process(os.getpid())
    try:  # sockets this test process already listens on (clusters of earlier tests) are not the run's
        before = set(_listening({me.pid, *(p.pid for p in me.children(recursive=True))}))
    except psutil.AccessDenied:  # pragma: no cover - a host that hides other sockets
        pytest.skip("this host does not list the sockets of its processes")

    def echo(line: str) -> None:  # called once the cluster is up: look at every socket it listens on
        if line.startswith("cluster:"):
            pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
            found.extend(s for s in _listening(pids) if s not in before)

    try:
        run_training(TrainConfig(cluster="local", **SMALL), progress=False, echo=echo)
    except psutil.AccessDenied:  # pragma: no cover - a host that hides other sockets
        pytest.skip("this host does not list the sockets of its processes")
    assert found, "no listening socket was seen"
    assert {ip for _, ip, _ in found} == {"127.0.0.1"}, found
