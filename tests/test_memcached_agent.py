"""`hastack:memcached` against Debian's memcached: start, monitor, a killed server found and
started again empty, a port already taken named in the failed start (another server
serving meanwhile, its value kept), and the
stop-on-isolation switch (docs/memcached.md). Starts servers: run under the lab lock."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hastack.executor.agents.base import OcfRc, OpRequest
from hastack.executor.agents.memcached import PROGRAM, MemcachedAgent, ask_version

pytestmark = pytest.mark.skipif(not Path(PROGRAM).exists(), reason="memcached is not installed")


def request(tmp: Path, op: str, port: int, **params: str) -> OpRequest:
    return OpRequest(
        instance="cache",
        primitive="cache",
        op=op,
        params={"port": str(port), "listen": "127.0.0.1", **params},
        meta={},
        timeout=10.0,
        state_dir=str(tmp),
        cluster={"node": "n1", "address": "127.0.0.1"},
    )


async def roundtrip(port: int, command: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(command)
    await writer.drain()
    data = await reader.readuntil(b"\r\n")
    if data.startswith(b"VALUE"):
        data += await reader.readuntil(b"END\r\n")
    writer.close()
    return data


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[MemcachedAgent, int]]:
    a = MemcachedAgent()
    port = random.randrange(30000, 40000)
    yield a, port
    await a.execute(request(tmp_path, "stop", port))


async def test_start_monitor_kill_restart_empty(
    agent: tuple[MemcachedAgent, int], tmp_path: Path
) -> None:
    a, port = agent
    result = await a.execute(request(tmp_path, "start", port))
    assert result.rc == OcfRc.SUCCESS, result.reason
    assert result.duration < 2.0  # memcached starts in milliseconds
    assert (await a.execute(request(tmp_path, "monitor", port))).rc == OcfRc.SUCCESS
    assert await roundtrip(port, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    pid = json.loads(next((tmp_path / "services").glob("cache-*/pid")).read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    assert (await a.execute(request(tmp_path, "monitor", port))).rc == OcfRc.NOT_RUNNING
    result = await a.execute(request(tmp_path, "start", port))
    assert result.rc == OcfRc.SUCCESS, result.reason
    assert await roundtrip(port, b"get k\r\n") == b"END\r\n"  # a new server is empty


async def test_a_taken_port_is_a_clear_failed_start(
    agent: tuple[MemcachedAgent, int], tmp_path: Path
) -> None:
    a, port = agent
    # Another node's server (its own state directory and port) serves throughout.
    peer_dir, peer_port = tmp_path / "peer", port + 1
    started = await a.execute(request(peer_dir, "start", peer_port))
    assert started.rc == OcfRc.SUCCESS, started.reason
    try:
        assert await roundtrip(peer_port, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            result = await a.execute(request(tmp_path, "start", port))
        assert result.rc == OcfRc.ERR_GENERIC
        assert "Address already in use" in result.reason, result.reason
        # The failed start touched nothing of the other server: it answers, its value kept.
        assert (await a.execute(request(peer_dir, "monitor", peer_port))).rc == OcfRc.SUCCESS
        assert await roundtrip(peer_port, b"get k\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
    finally:
        await a.execute(request(peer_dir, "stop", peer_port))


async def test_version_probe_has_a_deadline() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts, never answers: a hung server
        why = await ask_version("127.0.0.1", silent.getsockname()[1], 0.3)
    assert why == "no answer to 'version' within 0.3s"


def test_stopped_on_isolation_unless_turned_off() -> None:
    a = MemcachedAgent()
    assert a.stop_when_isolated({})
    assert a.stop_when_isolated({"flush-on-rejoin": "true"})
    assert not a.stop_when_isolated({"flush-on-rejoin": "false"})
