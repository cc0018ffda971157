"""ActorPool with worker processes: serialization, actor calls across processes, a worker killed
under an actor. Each test starts and closes its own pool of two worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import cloudpickle
import numpy as np
import psutil
import pytest
import torch

from byzdask.engine.actor import ChannelHost, open_channel
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.errors import ActorLostError, MessageTimeoutError

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

# Worker processes cannot import this test module: ship its classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def no_leaked_processes():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    leaked = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not _is_multiprocessing_helper(p)
    ]
    _gone, alive = psutil.wait_procs(leaked, timeout=10)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {alive}"


def _is_multiprocessing_helper(proc):
    # The resource tracker lives as long as this interpreter, by design of multiprocessing.
    try:
        return any("multiprocessing.resource_tracker" in part for part in proc.cmdline())
    except psutil.Error:
        return True


class Peer(ChannelHost):
    def __init__(self, label):
        self.label = label
        self.state = {"w": torch.zeros(3)}

    async def pid(self):
        return os.getpid()

    async def echo(self, payload):
        return payload

    async def ping(self, other, depth):
        # A -> B -> A -> ... across two worker processes: async methods never block the worker.
        if depth == 0:
            return [self.label]
        return [self.label, *await other.ping(self.handle_of_me, depth - 1)]

    async def remember(self, me):
        self.handle_of_me = me

    async def round(self, r, vector):
        channel = self.channel("vec")
        await channel.broadcast(vector, round=r)
        got = await channel.recv_round(r, timeout=20)
        return {sender: v.sum().item() for sender, v in got.items()}

    async def slow(self, seconds):
        await asyncio.sleep(seconds)
        return seconds


def process_pool():
    return ActorPool([ActorPoolConfig("process", count=2, memory_limit="1GiB")], start_timeout=90)


async def test_actors_across_processes_then_a_worker_is_killed():
    # One pool for the whole module: worker processes take seconds to start on 2 cores.
    async with process_pool() as pool:
        assert list(pool.workers) == ["process-0", "process-1"]
        assert all(a.startswith("tcp://127.0.0.1:") for a in pool.workers.values())
        a = await pool.spawn(Peer, "a", worker="process-0", actor_name="a")
        b = await pool.spawn(Peer, "b", worker="process-1", actor_name="victim")
        pids = {await a.pid(), await b.pid()}
        assert len(pids) == 2 and os.getpid() not in pids

        # Serialization of arrays, tensors and plain containers of them.
        payload = {
            "f32": torch.arange(5, dtype=torch.float32),
            "f64": np.linspace(0, 1, 7),
            "ints": [np.arange(3), torch.ones(2, dtype=torch.int64)],
        }
        back = await a.echo(payload)
        assert torch.equal(back["f32"], payload["f32"])
        np.testing.assert_array_equal(back["f64"], payload["f64"])
        assert torch.equal(back["ints"][1], payload["ints"][1])

        # Calls that cycle between two processes, and a channel round between them.
        await a.remember(a)
        await b.remember(b)
        assert await a.ping(b, 3) == ["a", "b", "a", "b"]
        await open_channel("vec", {"a": a, "b": b}, send_timeout=3)
        results = await asyncio.gather(a.round(0, torch.ones(4)), b.round(0, torch.full((4,), 2.0)))
        assert results == [{"b": 8.0}, {"a": 4.0}]

        # The worker holding "victim" is killed while a call is in flight.
        pid = await b.pid()
        in_flight = asyncio.ensure_future(b.slow(30))
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ActorLostError, match="actor 'victim' \\(Peer\\) on worker tcp://127.0.0.1:\\d+ was lost"):
            await asyncio.wait_for(in_flight, 30)
        with pytest.raises(ActorLostError, match="'victim'"):
            await asyncio.wait_for(b.pid(), 30)
        # A message to the lost node fails within the send timeout, naming it; the survivor
        # keeps working.
        with pytest.raises((ActorLostError, MessageTimeoutError), match="'b'"):
            await a.channel_send("vec", "b", torch.ones(2), 1)
        assert await a.echo(5) == 5


def test_a_script_without_main_guard_fails_fast_and_says_why(tmp_path):
    """Worker processes import the main module: a script that starts a pool at import gets the fix named."""
    import subprocess
    import time

    script = tmp_path / "no_guard.py"
    script.write_text(
        "import asyncio\n"
        "from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig\n"
        "async def main():\n"
        "    async with ActorPool([ActorPoolConfig('process', count=1)], start_timeout=60):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, cwd=tmp_path,
                          check=False)
    assert proc.returncode != 0
    assert "put the code that starts the pool under `if __name__ == '__main__':`" in proc.stderr
    assert "AssertionError" not in proc.stderr  # closing the half-started cluster does not hide the start error
    assert time.monotonic() - started < 50  # not the 60 s start timeout
