"""TCP mode: piping, the one-writer (sticky + backup) pattern, shutdown-sessions, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hastack.eventlog import read_events
from hastack.proxy.cli import _event_recorder
from hastack.proxy.control import AdminState
from test_proxy_support import HOST, free_port, http_config, running, state_of, wait_for

pytestmark = pytest.mark.timeout(60)


@dataclass
class TcpServer:
    """Answers every line with `NAME: line`; a separate health listener can be closed alone."""

    name: str
    host: str
    port: int
    health_port: int | None = None
    server: asyncio.Server | None = None
    health: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, limit=1 << 20)
        await self.start_health()

    async def start_health(self) -> None:
        if self.health_port is not None:
            self.health = await asyncio.start_server(
                lambda r, w: w.close(), self.host, self.health_port
            )

    async def stop_health(self) -> None:
        if self.health is not None:
            self.health.close()
            self.health = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while line := await reader.readline():
                writer.write(self.name.encode() + b": " + line)
                await writer.drain()
            writer.write_eof()  # half-close answered: we are done too
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def stop(self) -> None:
        await self.stop_health()
        if self.server is not None:
            self.server.close()
        for w in list(self.writers):
            w.transport.abort()


def _ports_free_on(hosts: list[str]) -> tuple[int, int]:
    """Two port numbers free on every one of `hosts` (the servers share port numbers)."""
    for _ in range(50):
        ports = (free_port(), free_port())
        try:
            for host in hosts:
                for port in ports:
                    with socket.socket() as s:
                        s.bind((host, port))
            return ports
        except OSError:
            continue
    raise RuntimeError("no common free ports")


@contextlib.asynccontextmanager
async def db_nodes(count: int) -> AsyncIterator[list[TcpServer]]:
    hosts = [f"127.0.0.{i + 2}" for i in range(count)]
    port, health = _ports_free_on(hosts)
    nodes = [TcpServer(f"db{i + 1}", h, port, health) for i, h in enumerate(hosts)]
    for node in nodes:
        await node.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: str) -> str:
    writer.write(text.encode() + b"\n")
    await writer.drain()
    async with asyncio.timeout(3):
        return (await reader.readline()).decode().strip()


async def who(port: int) -> str:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        return (await ask(reader, writer, "hello")).split(":")[0]
    finally:
        writer.close()


async def test_tcp_pipes_both_ways_with_half_close() -> None:
    async with db_nodes(1) as (node,):
        port = free_port()
        config = http_config(
            port, [{"name": "db1", "address": f"{node.host}:{node.port}"}], mode="tcp"
        )
        async with running(config) as proxy:
            reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
            big = "x" * 300_000
            assert await ask(reader, writer, big) == f"db1: {big}"
            writer.write_eof()  # the server still answers after our half-close
            assert await reader.read() == b""
            writer.close()
            report = await proxy.report()
            assert report["frontends"][0]["bytes_in"] >= 300_000
            assert report["backends"][0]["servers"][0]["bytes_out"] >= 300_000


async def test_one_writer_pattern_sticky_backup_and_shutdown_sessions(tmp_path: Path) -> None:
    async with db_nodes(3) as nodes:
        db1 = nodes[0]
        port = free_port()
        servers = [
            {"name": n.name, "address": f"{n.host}:{n.port}", "backup": n is not db1} for n in nodes
        ]
        config = http_config(
            port,
            servers,
            mode="tcp",
            sticky=True,
            check={
                "type": "tcp",
                "port": db1.health_port,
                "interval": "50ms",
                "rise": 2,
                "fall": 1,
            },
            **{"on-marked-down": "shutdown-sessions"},
        )
        events = tmp_path / "events.jsonl"
        async with running(config, on_active_changed=_event_recorder(str(events))) as proxy:
            assert {await who(port) for _ in range(3)} == {"db1"}
            reader, writer = await asyncio.open_connection(HOST, port)
            assert (await ask(reader, writer, "w1")).startswith("db1")
            # db1 leaves the primary component: its data port still accepts, its check fails
            await db1.stop_health()
            await wait_for(lambda: state_of(proxy, "db1") == "down")
            async with asyncio.timeout(2):
                assert await reader.read() == b""  # the session to the old writer was cut
            writer.close()
            assert {await who(port) for _ in range(3)} == {"db2"}
            # db1 comes back: writes stay on db2 (sticky), they do not flap back
            await db1.start_health()
            await wait_for(lambda: state_of(proxy, "db1") == "up")
            assert {await who(port) for _ in range(3)} == {"db2"}
            active = [s["server"] for s in proxy.control.describe_servers() if s["active"]]
            assert active == ["db2"]
            # db2 goes into maintenance: the next writer is db1 (first in order), not db3
            proxy.control.set_admin("be", "db2", AdminState.MAINT)
            assert {await who(port) for _ in range(3)} == {"db1"}
            # every change of writer is an event: in the stats, the metrics and the log
            report = await proxy.report()
            backend = report["backends"][0]
            assert backend["active"] == "db1"
            assert backend["active_changes"] == 3
            moves = [(h["active"], h["was"]) for h in backend["active_history"]]
            assert moves == [("db1", None), ("db2", "db1"), ("db1", "db2")]
            assert backend["active_history"][1]["reason"].startswith("down")
            assert backend["active_history"][2]["reason"] == "maint: set to maint by an operator"
            metrics = (await proxy.metrics()).decode()
            assert 'hastack_proxy_backend_active_changes_total{backend="be"} 3.0' in metrics
            logged = [e for e in read_events(events) if e["event"] == "writer-changed"]
            assert [(e["backend"], e["active"], e["was"]) for e in logged] == [
                ("be", "db1", None),
                ("be", "db2", "db1"),
                ("be", "db1", "db2"),
            ]


async def test_tcp_idle_timeout_and_retry_to_another_server() -> None:
    async with db_nodes(1) as (node,):
        port = free_port()
        dead = f"{HOST}:{free_port()}"
        servers = [
            {"name": "dead", "address": dead},
            {"name": "db1", "address": f"{node.host}:{node.port}"},
        ]
        config = http_config(
            port,
            servers,
            mode="tcp",
            balance="first",
            frontend={"timeouts": {"client": "200ms"}},
        )
        async with running(config) as proxy:
            reader, writer = await asyncio.open_connection(HOST, port)
            assert (await ask(reader, writer, "hi")).startswith("db1")  # dead refused: redispatched
            async with asyncio.timeout(2):
                assert await reader.read() == b""  # idle for 200 ms: closed
            writer.close()
            report = await proxy.report()
            dead_row = next(s for s in report["backends"][0]["servers"] if s["server"] == "dead")
            assert dead_row["conn_errors"] >= 1
