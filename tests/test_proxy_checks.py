"""Health checks against real servers on loopback.

The MySQL and Galera checks run against a small MySQL-protocol server written here (greeting,
mysql_native_password login, COM_QUERY with a text result set, COM_QUIT). The client side is
aiomysql/PyMySQL, an independent implementation, so the fake server is held to the real
protocol; a real MariaDB Galera cluster comes with the lab issue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from hastack.proxy.checks import run_check
from hastack.proxy.config import CheckSpec
from test_proxy_support import HOST, Backend, Request, backends, free_port

pytestmark = pytest.mark.timeout(30)

CLIENT_LONG_PASSWORD = 1
CLIENT_LONG_FLAG = 4
CLIENT_CONNECT_WITH_DB = 8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH
)
SERVER_STATUS_AUTOCOMMIT = 2


def _lenenc(n: int) -> bytes:
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    return b"\xfd" + n.to_bytes(3, "little")


def _lenstr(data: bytes) -> bytes:
    return _lenenc(len(data)) + data


def native_token(password: bytes, scramble: bytes) -> bytes:
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(scramble + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix, strict=True))


@dataclass
class FakeMysql:
    """Speaks enough of the MySQL protocol for a login and `SHOW GLOBAL STATUS`."""

    user: str = "check"
    password: str = "secret"
    status: dict[str, str] = field(
        default_factory=lambda: {"wsrep_local_state": "4", "wsrep_cluster_status": "Primary"}
    )
    greeting_error: tuple[int, str] | None = None
    queries: list[str] = field(default_factory=list)
    logins: int = 0
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(seq: int, payload: bytes) -> None:
            writer.write(len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload)

        async def read() -> tuple[int, bytes]:
            header = await reader.readexactly(4)
            return header[3], await reader.readexactly(int.from_bytes(header[:3], "little"))

        def error(seq: int, code: int, message: str) -> None:
            send(seq, b"\xff" + code.to_bytes(2, "little") + b"#28000" + message.encode())

        try:
            if self.greeting_error is not None:
                error(0, *self.greeting_error)
                await writer.drain()
                return
            scramble = os.urandom(20).replace(b"\0", b"\1")
            send(
                0,
                b"\x0a"
                + b"10.11.6-MariaDB-fake\0"
                + struct.pack("<I", 7)
                + scramble[:8]
                + b"\0"
                + struct.pack("<H", CAPABILITIES & 0xFFFF)
                + bytes([33])
                + struct.pack("<H", SERVER_STATUS_AUTOCOMMIT)
                + struct.pack("<H", CAPABILITIES >> 16)
                + bytes([21])
                + b"\0" * 10
                + scramble[8:]
                + b"\0"
                + b"mysql_native_password\0",
            )
            seq, login = await read()
            rest = login[32:]
            user, _, rest = rest.partition(b"\0")
            token = rest[1 : 1 + rest[0]]
            expected = native_token(self.password.encode(), scramble)
            if user.decode() != self.user or token != expected:
                error(seq + 1, 1045, f"Access denied for user '{user.decode()}'")
                await writer.drain()
                return
            self.logins += 1
            ok = b"\x00\x00\x00" + struct.pack("<HH", SERVER_STATUS_AUTOCOMMIT, 0)
            send(seq + 1, ok)
            while True:
                seq, packet = await read()
                command, argument = packet[0], packet[1:]
                if command == 1:  # COM_QUIT
                    return
                if command != 3:
                    error(seq + 1, 1047, "Unknown command")
                    continue
                query = argument.decode()
                self.queries.append(query)
                if "wsrep" not in query:
                    send(seq + 1, ok)
                    continue
                seq += 1
                send(seq, _lenenc(2))
                for name in (b"Variable_name", b"Value"):
                    seq += 1
                    send(
                        seq,
                        _lenstr(b"def")
                        + _lenstr(b"")
                        + _lenstr(b"")
                        + _lenstr(b"")
                        + _lenstr(name)
                        + _lenstr(name)
                        + b"\x0c"
                        + struct.pack("<HIBHB", 33, 256, 0xFD, 0, 0)
                        + b"\0\0",
                    )
                eof = b"\xfe" + struct.pack("<HH", 0, SERVER_STATUS_AUTOCOMMIT)
                seq += 1
                send(seq, eof)
                for key, value in self.status.items():
                    seq += 1
                    send(seq, _lenstr(key.encode()) + _lenstr(value.encode()))
                seq += 1
                send(seq, eof)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def fake_mysql(**kwargs: object) -> AsyncIterator[FakeMysql]:
    server = FakeMysql(**kwargs)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def spec(**data: object) -> CheckSpec:
    return CheckSpec.model_validate(data)


async def test_tcp_check() -> None:
    async with backends("a") as (a,):
        ok = await run_check(spec(type="tcp"), HOST, a.port, 1.0)
        assert ok.ok
    refused = await run_check(spec(type="tcp"), HOST, free_port(), 1.0)
    assert (refused.ok, refused.message) == (False, "connection refused")


async def test_http_check_expectations() -> None:
    async def handler(
        backend: Backend, request: Request
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        return {"/ok": 200, "/moved": 301, "/down": 503}.get(request.path, 404), [], b""

    async with backends("a", handler=handler) as (a,):
        result = await run_check(spec(type="http", http={"path": "/ok"}), HOST, a.port, 1.0)
        assert (result.ok, result.message) == (True, "HTTP 200")
        assert (await run_check(spec(type="http", http={"path": "/moved"}), HOST, a.port, 1.0)).ok
        strict = spec(type="http", http={"path": "/moved", "expect": [200]})
        result = await run_check(strict, HOST, a.port, 1.0)
        assert (result.ok, result.message) == (False, "HTTP 301 (expected 200)")
        result = await run_check(spec(type="http", http={"path": "/down"}), HOST, a.port, 1.0)
        assert not result.ok
        head = spec(type="http", http={"method": "HEAD", "path": "/ok", "host": "api.example"})
        assert (await run_check(head, HOST, a.port, 1.0)).ok
        assert a.requests[-1].method == "HEAD"
        assert a.requests[-1].header("Host") == "api.example"


async def test_check_timeout() -> None:
    server = await asyncio.start_server(lambda r, w: None, HOST, 0)  # accepts, never answers
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run_check(spec(type="http"), HOST, port, 0.2)
        assert (result.ok, result.message) == (False, "timed out after 0.2s")
    finally:
        server.close()


async def test_mysql_greeting_and_login() -> None:
    async with fake_mysql() as db:
        result = await run_check(spec(type="mysql"), HOST, db.port, 2.0)
        assert result.ok
        assert "10.11.6-MariaDB-fake" in result.message
        login = spec(type="mysql", mysql={"user": "check", "password": "secret"})
        result = await run_check(login, HOST, db.port, 2.0)
        assert result.ok, result.message
        assert db.logins == 1
        wrong = spec(type="mysql", mysql={"user": "check", "password": "nope"})
        result = await run_check(wrong, HOST, db.port, 2.0)
        assert not result.ok
        assert "1045" in result.message
    async with fake_mysql(greeting_error=(1040, "Too many connections")) as busy:
        result = await run_check(spec(type="mysql"), HOST, busy.port, 2.0)
        assert (result.ok, result.message) == (False, "MySQL error 1040: Too many connections")


@pytest.mark.parametrize(
    ("status", "ok", "words"),
    [
        ({"wsrep_local_state": "4", "wsrep_cluster_status": "Primary"}, True, "Synced"),
        ({"wsrep_local_state": "2", "wsrep_cluster_status": "Primary"}, False, "Donor"),
        ({"wsrep_local_state": "4", "wsrep_cluster_status": "non-Primary"}, False, "primary"),
        ({}, False, "not a Galera node"),
    ],
)
async def test_galera_check(status: dict[str, str], ok: bool, words: str) -> None:
    async with fake_mysql(status=status) as db:
        check = spec(type="galera", mysql={"user": "check", "password": "secret"})
        result = await run_check(check, HOST, db.port, 2.0)
        assert result.ok is ok, result.message
        assert words in result.message
        assert any("wsrep_local_state" in q for q in db.queries)
