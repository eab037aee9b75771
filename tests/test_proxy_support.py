"""Helpers for the proxy tests: real backend servers and an HTTP client, on loopback.

Not a test module itself (no tests here); the name keeps it among the proxy's test files.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

from hastack.auth import Role, add_token
from hastack.proxy.config import ProxyConfig
from hastack.proxy.server import Proxy
from hastack.proxy.sources import BackendSource

HOST = "127.0.0.1"


@dataclass(frozen=True)
class AdminTokens:
    path: Path
    write: str  # alice's token: may change servers
    read: str  # bob's: may only look


@functools.cache
def admin_tokens() -> AdminTokens:
    """A tokens file for the proxies the tests start (made once per test process)."""
    directory = Path(tempfile.mkdtemp(prefix="hastack-tokens-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "tokens"
    return AdminTokens(
        path, add_token(path, "alice", Role.WRITE), add_token(path, "bob", Role.READ)
    )


def admin_spec(admin_port: int) -> dict[str, Any]:
    """An admin endpoint whose writes need alice's token; reads are open."""
    return {"bind": f"{HOST}:{admin_port}", "tokens": str(admin_tokens().path), "open-reads": True}


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


Handler = Callable[["Backend", Request], Awaitable[tuple[int, list[tuple[str, str]], bytes] | None]]


async def echo(backend: Backend, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(
        {
            "server": backend.name,
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
            "body": request.body.decode(errors="replace"),
        }
    ).encode()
    return 200, [("Content-Type", "application/json")], body


class _ServerProtocol(asyncio.Protocol):
    """A keep-alive HTTP/1.1 server that parses with httptools and answers via a handler."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.tasks: list[asyncio.Task[None]] = []
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.backend.connections.add(self)
        self.backend.accepted += 1
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.backend.connections.discard(self)
        if self.worker is not None:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode(), value.decode()))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        self.queue.put_nowait(Request(method, self.url.decode(), self.headers, self.body))

    async def _serve(self) -> None:
        while True:
            request = await self.queue.get()
            assert request is not None
            self.backend.requests.append(request)
            answer = await self.backend.handler(self.backend, request)
            if answer is None or self.transport is None or self.transport.is_closing():
                continue
            status, headers, body = answer
            head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
            if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
                head += f"Content-Length: {len(body)}\r\n"
            self.transport.write(head.encode() + b"\r\n" + body)


@dataclass
class Backend:
    name: str
    port: int = 0
    host: str = HOST
    handler: Handler = echo
    server: asyncio.Server | None = None
    connections: set[_ServerProtocol] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    accepted: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> Backend:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _ServerProtocol(self), self.host, self.port or 0, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def kill(self) -> None:
        """A crash: stop listening and reset every connection."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def backends(*names: str, handler: Handler = echo) -> AsyncIterator[list[Backend]]:
    started = [await Backend(n, handler=handler).start() for n in names]
    try:
        yield started
    finally:
        for b in started:
            await b.kill()


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class _ResponseReader:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode(), value.decode()))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


class Client:
    """A keep-alive HTTP/1.1 client on raw streams (one request at a time); TLS with `tls`."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.server_hostname = server_hostname
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        if self.tls is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        else:
            self.reader, self.writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.server_hostname or self.host,
            )

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def send_raw(self, data: bytes) -> None:
        if self.writer is None:
            await self.connect()
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def read_response(self, head_only: bool = False) -> Response:
        assert self.reader is not None
        state = _ResponseReader()
        while not state.done:
            data = await self.reader.read(65536)
            if not data:
                if state.parser.get_status_code() and not state.done:
                    with contextlib.suppress(httptools.HttpParserError):
                        state.parser.feed_data(b"")
                    if state.body or state.headers:
                        break
                await self.close()
                raise ConnectionError("connection closed before a complete response")
            state.parser.feed_data(data)
        response = Response(state.parser.get_status_code(), state.headers, state.body)
        if (response.header("connection") or "").lower() == "close":
            await self.close()
        return response

    async def request(
        self,
        method: str = "GET",
        path: str = "/",
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        if self.writer is None:
            await self.connect()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        await self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return await self.read_response()


async def get(port: int, path: str = "/", **kwargs: Any) -> Response:
    client = Client(HOST, port)
    try:
        return await client.request("GET", path, **kwargs)
    finally:
        await client.close()


def http_config(
    port: int,
    servers: list[dict[str, Any]],
    *,
    admin_port: int | None = None,
    frontend: dict[str, Any] | None = None,
    **backend: Any,
) -> ProxyConfig:
    """A one-frontend, one-backend configuration (as a YAML document would give)."""
    mode = backend.pop("mode", "http")
    data: dict[str, Any] = {
        "admin": admin_spec(admin_port) if admin_port else None,
        "frontends": [
            {
                "name": "fe",
                "bind": [f"{HOST}:{port}"],
                "backend": "be",
                "mode": mode,
                **(frontend or {}),
            }
        ],
        "backends": [{"name": "be", "mode": mode, "servers": servers, **backend}],
    }
    return ProxyConfig.model_validate(data)


@contextlib.asynccontextmanager
async def running(
    config: ProxyConfig, source: BackendSource | None = None, **options: Any
) -> AsyncIterator[Proxy]:
    proxy = Proxy(config, source, **options)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def servers_of(*backends: Backend, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": b.name, "address": b.address, **extra} for b in backends]


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def state_of(proxy: Proxy, server: str, backend: str = "be") -> str:
    for s in proxy.control.describe_servers():
        if s["backend"] == backend and s["server"] == server:
            return str(s["state"])
    return "absent"
