"""TCP mode: a server is chosen once per connection, then bytes are piped both ways.

Connect failures are retried (another server when `redispatch`); after that the session is
only bytes. Flow control is the transports' own: when one side's write buffer fills, the
other side stops being read, so memory stays bounded whatever the speeds. A session to a
server that is marked down is closed at once when the backend says `on-marked-down:
shutdown-sessions` — that is how a client of the Galera writer learns to reconnect, and
reaches the new writer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from hastack.proxy.runtime import (
    BackendRuntime,
    FrontendRuntime,
    Refusal,
    ServerRuntime,
    describe_error,
    tune,
)

if TYPE_CHECKING:
    from hastack.proxy.dataplane import DataPlane

__all__ = ["TcpClientConn", "TcpServerConn"]


class TcpClientConn:
    """A client connection on a TCP frontend (an asyncio protocol by its methods)."""

    def __init__(self, plane: DataPlane, frontend: FrontendRuntime) -> None:
        self.plane = plane
        self.loop = plane.loop
        self.frontend = frontend
        self.backend: BackendRuntime = frontend.backend
        self.counters = frontend.counters
        self.transport: asyncio.Transport | None = None
        self.peer: TcpServerConn | None = None
        self.server: ServerRuntime | None = None
        self.held: list[bytes] = []
        self.client_key = b""
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.eof = False
        self.deadline = 0.0
        self.idle = min(frontend.client_timeout, frontend.backend.server_timeout)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)
        self.transport.pause_reading()  # nothing to do with bytes until a server is connected
        peer = transport.get_extra_info("peername")
        self.client_key = str(peer[0]).encode() if peer else b""
        self.counters.conns_total += 1
        self.counters.conns_cur += 1
        self.frontend.connections.add(self)
        self.plane.timers.add(self)
        self.task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        backend = self.backend
        tried: set[str] = set()
        attempts = 0
        try:
            while True:
                server = await backend.acquire(
                    self.client_key, tried if backend.redispatch else set()
                )
                if tried and server.name not in tried:
                    server.counters.redispatches += 1
                try:
                    peer = await self.plane.open_tcp(backend, server, self)
                except (OSError, TimeoutError) as exc:
                    backend.release(server)
                    server.counters.conn_errors += 1
                    why = describe_error(exc, backend.connect_timeout)
                    self.plane.report_error(backend.name, server.name, f"connect: {why}")
                    tried.add(server.name)
                    attempts += 1
                    if attempts > backend.retries:
                        raise Refusal(
                            503, f"no server of {backend.name!r} accepted: {why}"
                        ) from None
                    server.counters.retries += 1
                    continue
                if self.closed:
                    backend.release(server)
                    if peer.transport is not None:
                        peer.transport.close()
                    return
                self.server = server
                self.peer = peer
                server.counters.total += 1
                server.sessions.add(self)
                assert peer.transport is not None
                for chunk in self.held:
                    peer.transport.write(chunk)
                self.held = []
                self.deadline = self.loop.time() + self.idle
                if self.transport is not None:
                    self.transport.resume_reading()
                return
        except Refusal:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        finally:
            self.task = None

    def data_received(self, data: bytes) -> None:
        self.counters.bytes_in += len(data)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
            assert self.server is not None
            self.server.counters.bytes_in += len(data)
            self.deadline = self.loop.time() + self.idle
        else:
            self.held.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        # Keep the connection half-open while the server may still be answering.
        return not (peer is not None and peer.eof)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.counters.conns_cur -= 1
        self.frontend.connections.discard(self)
        self.plane.timers.discard(self)
        if self.task is not None:
            self.task.cancel()
        server = self.server
        if server is not None:
            self.server = None
            server.sessions.discard(self)
            self.backend.release(server)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def shutdown(self, why: str) -> None:
        """The server was marked down: cut both sides so the client reconnects elsewhere."""
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.abort()
        if self.transport is not None:
            self.transport.abort()

    def expire(self) -> None:
        self.deadline = 0.0
        self.counters.timeouts += 1
        self.shutdown("idle")


class TcpServerConn:
    def __init__(self, client: TcpClientConn, server: ServerRuntime) -> None:
        self.client = client
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)

    def data_received(self, data: bytes) -> None:
        client = self.client
        n = len(data)
        client.counters.bytes_out += n
        self.server.counters.bytes_out += n
        client.deadline = client.loop.time() + client.idle
        if client.transport is not None:
            client.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        transport = self.client.transport
        if transport is not None and transport.can_write_eof() and not transport.is_closing():
            transport.write_eof()
        return not self.client.eof

    def connection_lost(self, exc: Exception | None) -> None:
        transport = self.client.transport
        if transport is not None and not transport.is_closing():
            if exc is not None:
                transport.abort()
            else:
                transport.close()

    def pause_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.resume_reading()
