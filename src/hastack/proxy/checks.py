"""Active health checks: one probe of one server, with a result that says why.

    tcp     the server accepts a connection
    http    a request (method, path, Host) is answered with an expected status
    mysql   the server sends a MySQL greeting, not an error packet such as "Too many
            connections" or "Host is blocked"; with a user, a login succeeds too
    galera  a login, then `wsrep_local_state` = 4 (Synced) and `wsrep_cluster_status` =
            Primary: HAProxy's mysql-check shows a node of a non-Primary component as up,
            and writes there fail (lab facts), so the check reads the wsrep status itself

The MySQL login and query go through aiomysql (on PyMySQL, the reference pure-Python client):
the authentication plugins, auth switch and result-set decoding are theirs, not ours.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiomysql  # type: ignore[import-untyped]

from hastack.proxy.config import CheckSpec, CheckType
from hastack.proxy.runtime import describe_error

__all__ = ["CheckResult", "run_check"]

GALERA_QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_cluster_status')"
)
SYNCED = "4"


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    message: str
    duration: float  # seconds


async def run_check(spec: CheckSpec, host: str, port: int, timeout: float) -> CheckResult:
    """Probe once; never raises for a failed server, only reports."""
    started = time.monotonic()
    port = spec.port or port
    try:
        async with asyncio.timeout(timeout):
            if spec.type is CheckType.TCP:
                message = await _tcp(host, port)
            elif spec.type is CheckType.HTTP:
                message = await _http(spec, host, port)
            elif spec.type is CheckType.MYSQL:
                message = await _mysql(spec, host, port, timeout)
            else:
                message = await _galera(spec, host, port, timeout)
        return CheckResult(True, message, time.monotonic() - started)
    except TimeoutError:
        return CheckResult(False, f"timed out after {timeout:g}s", time.monotonic() - started)
    except _Failed as exc:
        return CheckResult(False, str(exc), time.monotonic() - started)
    except OSError as exc:
        return CheckResult(False, describe_error(exc, timeout), time.monotonic() - started)
    except aiomysql.Error as exc:
        return CheckResult(False, _mysql_error(exc), time.monotonic() - started)


class _Failed(Exception):
    pass


async def _tcp(host: str, port: int) -> str:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    return "connected"


async def _http(spec: CheckSpec, host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        check = spec.http
        authority = check.host or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        writer.write(
            f"{check.method} {check.path} HTTP/1.1\r\nHost: {authority}\r\n"
            "User-Agent: hastack-check\r\nConnection: close\r\n\r\n".encode()
        )
        line = await reader.readline()
    finally:
        writer.close()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise _Failed(f"not an HTTP response: {line[:60]!r}" if line else "closed without answer")
    status = int(parts[1])
    if not check.accepts(status):
        raise _Failed(f"HTTP {status} (expected {', '.join(str(e) for e in check.expect)})")
    return f"HTTP {status}"


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(4)
    length = int.from_bytes(header[:3], "little")
    return await reader.readexactly(length)


def parse_greeting(payload: bytes) -> str:
    """The server version from a handshake packet; _Failed with the server's error if not."""
    if not payload:
        raise _Failed("empty greeting")
    if payload[0] == 0xFF:
        code = int.from_bytes(payload[1:3], "little")
        text = payload[3:]
        if text.startswith(b"#"):
            text = text[6:]
        raise _Failed(f"MySQL error {code}: {text.decode(errors='replace')}")
    if payload[0] != 10:
        raise _Failed(f"unknown MySQL protocol version {payload[0]}")
    version = payload[1:].split(b"\0", 1)[0].decode(errors="replace")
    return version


async def _mysql(spec: CheckSpec, host: str, port: int, timeout: float) -> str:
    if spec.mysql.user:
        conn = await _login(spec, host, port, timeout)
        version = str(conn.get_server_info())
        await _close(conn)
        return f"logged in ({version})"
    reader, writer = await asyncio.open_connection(host, port)
    try:
        version = parse_greeting(await _read_packet(reader))
    except asyncio.IncompleteReadError:
        raise _Failed("connection closed before the greeting") from None
    finally:
        writer.close()
    return f"greeting ({version})"


async def _galera(spec: CheckSpec, host: str, port: int, timeout: float) -> str:
    conn = await _login(spec, host, port, timeout)
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(GALERA_QUERY)
            rows = await cursor.fetchall()
    finally:
        await _close(conn)
    status = {str(name).lower(): _text(value) for name, value in rows}
    return judge_galera(status)


def judge_galera(status: dict[str, str]) -> str:
    """Healthy only when Synced (4) in the Primary component; otherwise say what it is."""
    state = status.get("wsrep_local_state")
    component = status.get("wsrep_cluster_status")
    if state is None or component is None:
        raise _Failed("not a Galera node (no wsrep status)")
    if component != "Primary":
        raise _Failed(f"not in the primary component (wsrep_cluster_status={component})")
    if state != SYNCED:
        names = {"1": "Joining", "2": "Donor/Desynced", "3": "Joined", "4": "Synced"}
        raise _Failed(f"not synced (wsrep_local_state={state} {names.get(state, '?')})")
    return "Synced, Primary"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _login(spec: CheckSpec, host: str, port: int, timeout: float) -> Any:
    return await aiomysql.connect(
        host=host,
        port=port,
        user=spec.mysql.user,
        password=spec.mysql.password,
        connect_timeout=timeout,
        autocommit=True,
    )


async def _close(conn: Any) -> None:
    try:
        await conn.ensure_closed()  # COM_QUIT, as HAProxy's check does
    except Exception:
        conn.close()


def _mysql_error(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(exc.args)
    if len(args) >= 2 and isinstance(args[0], int):
        return f"MySQL error {args[0]}: {args[1]}"
    return f"MySQL: {exc}"
