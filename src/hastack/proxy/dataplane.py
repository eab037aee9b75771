"""The data plane of one process: listeners, backends' live state, counters, timeouts.

It takes server states from the control plane (`apply`) and reports what traffic saw
(`report_error`) — in one process directly, across processes through the supervisor. Several
workers each bind every frontend address with SO_REUSEPORT, and the kernel spreads new
connections over them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, cast

from hastack.proxy.config import Mode, ProxyConfig
from hastack.proxy.http import HttpClientConn, HttpServerConn
from hastack.proxy.listeners import listening_socket
from hastack.proxy.runtime import BackendRuntime, FrontendRuntime, ServerRuntime, Timers
from hastack.proxy.tcp import TcpClientConn, TcpServerConn
from hastack.proxy.view import BackendView

__all__ = ["DataPlane", "listening_socket"]

log = logging.getLogger("hastack.proxy")


def _tick(config: ProxyConfig) -> float:
    """The timer sweep period: a tenth of the smallest timeout, within 10 ms .. 250 ms."""
    smallest = min(
        [f.timeouts.http_request for f in config.frontends]
        + [f.timeouts.http_keep_alive for f in config.frontends]
        + [f.timeouts.client for f in config.frontends]
        + [b.timeouts.server for b in config.backends]
        + [b.pool.idle_timeout for b in config.backends]
    )
    return min(0.25, max(0.01, smallest / 10))


class DataPlane:
    loop: asyncio.AbstractEventLoop  # set by start(), before any connection exists

    def __init__(
        self,
        config: ProxyConfig,
        *,
        index: int = 0,
        workers: int = 1,
        report_error: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.workers = workers
        self._report_error = report_error
        self.timers = Timers(_tick(config))
        self.backends = {b.name: BackendRuntime(b, index, workers) for b in config.backends}
        self.frontends = [FrontendRuntime(f, self.backends[f.backend]) for f in config.frontends]
        self.listeners: list[asyncio.Server] = []
        self.closing = False
        self._watcher: asyncio.Task[None] | None = None

    async def start(self, listeners: Mapping[str, list[socket.socket]]) -> None:
        """Accept on the sockets given for every frontend address (bound by the supervisor,
        which keeps them across reloads; listeners.py). The plane closes only its own copies."""
        self.loop = asyncio.get_running_loop()
        self.timers.start()
        self._watcher = self.loop.create_task(self._watch_certificates())
        try:
            for frontend in self.frontends:
                for address in frontend.spec.bind:
                    tls = frontend.tls
                    for sock in listeners.get(address, []):
                        # TLS is the event loop's (OpenSSL underneath); FrontendTls counts the
                        # handshakes and picks the certificate.
                        server = await self.loop.create_server(
                            self._factory(frontend),
                            sock=sock,
                            backlog=frontend.spec.backlog,
                            ssl=tls.default if tls is not None else None,
                            ssl_handshake_timeout=tls.spec.handshake_timeout if tls else None,
                        )
                        self.listeners.append(server)
        except BaseException:
            await self.stop()
            raise

    def _factory(self, frontend: FrontendRuntime) -> Callable[[], asyncio.Protocol]:
        # The connection classes are asyncio protocols by their methods, not by a base class
        # (so mypyc compiles them as native classes): typed as protocols here, where asyncio
        # takes them.
        make: Callable[[], asyncio.Protocol]
        if frontend.spec.mode is Mode.HTTP:
            make = cast(Callable[[], asyncio.Protocol], lambda: HttpClientConn(self, frontend))
        else:
            make = cast(Callable[[], asyncio.Protocol], lambda: TcpClientConn(self, frontend))
        return make

    async def _watch_certificates(self) -> None:
        """Certificate files are looked at every `watch-interval`; changed ones are read again
        (new connections get them, established ones keep theirs). Handshakes past their
        timeout are counted as failed on the way (FrontendTls.sweep)."""
        watched = [f.tls for f in self.frontends if f.tls is not None]
        if not watched:
            return
        tick = min(
            1.0,
            *(t.spec.handshake_timeout for t in watched),
            *(t.spec.watch_interval for t in watched),
        )
        looked = self.loop.time()
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            for tls in watched:
                tls.sweep()
                if now - looked >= tls.spec.watch_interval:
                    tls.refresh()
            if now - looked >= min(t.spec.watch_interval for t in watched):
                looked = now

    def apply(self, view: BackendView) -> None:
        backend = self.backends.get(view.name)
        if backend is not None:
            backend.apply(view)

    def report_error(self, backend: str, server: str, why: str) -> None:
        if self._report_error is not None:
            self._report_error(backend, server, why)

    async def open_http(self, backend: BackendRuntime, server: ServerRuntime) -> HttpServerConn:
        # The connect timeout covers the TLS handshake too: both are "reaching the server".
        async with asyncio.timeout(backend.connect_timeout):
            _, conn = await self.loop.create_connection(
                cast(Callable[[], asyncio.Protocol], lambda: HttpServerConn(self, backend, server)),
                server.host,
                server.port,
                ssl=backend.ssl,
                server_hostname=backend.server_hostname(server),
            )
        return cast(HttpServerConn, conn)

    async def open_tcp(
        self, backend: BackendRuntime, server: ServerRuntime, client: TcpClientConn
    ) -> TcpServerConn:
        async with asyncio.timeout(backend.connect_timeout):
            _, conn = await self.loop.create_connection(
                cast(Callable[[], asyncio.Protocol], lambda: TcpServerConn(client, server)),
                server.host,
                server.port,
                ssl=backend.ssl,
                server_hostname=backend.server_hostname(server),
            )
        return cast(TcpServerConn, conn)

    async def drain(self, grace: float) -> None:
        """Hand over to a newer data plane (a reload) without dropping a request.

        Stop accepting (the sockets stay open in the supervisor and the new plane accepts
        from them); every response from now on closes its connection (`Connection: close`), so
        busy clients move to the new plane after their request; connections idle at this
        moment close at their own keep-alive timeout, as they would have anyway, so no client
        meets a close it could not meet without a reload; TCP sessions run to their end. What
        is still open after `grace` (HAProxy's hard-stop-after) is cut.
        """
        self.closing = True
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        for backend in self.backends.values():
            for server in backend.servers.values():
                server.close_idle()
        deadline = self.loop.time() + grace
        # Polling: a reload is rare, and an event per closed connection would cost every one.
        while self.loop.time() < deadline and self._open_sessions():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await self.stop()

    def _open_sessions(self) -> int:
        return sum(len(f.connections) for f in self.frontends)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting; let sessions finish for `grace` seconds; then cut what is left."""
        self.closing = True
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        for backend in self.backends.values():
            for server in backend.servers.values():
                server.close_idle()
        deadline = self.loop.time() + grace
        # Polling: stopping is rare, and an event per closed connection would cost every session.
        while grace > 0 and self.loop.time() < deadline and self._busy_sessions():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for frontend in self.frontends:
            for conn in list(frontend.connections):
                conn.shutdown("proxy stopping")
        for backend in self.backends.values():
            for server in backend.servers.values():
                server.shutdown_sessions("proxy stopping")
        await asyncio.sleep(0)
        await self.timers.stop()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None

    def _busy_sessions(self) -> int:
        """Sessions still working; idle keep-alive connections are closed on the way."""
        busy = 0
        for frontend in self.frontends:
            for conn in list(frontend.connections):
                if isinstance(conn, HttpClientConn) and conn.is_idle():
                    conn.shutdown("proxy stopping")
                else:
                    busy += 1
        return busy

    def stats(self) -> dict[str, Any]:
        """Counters of this process, summed by the supervisor across workers."""
        return {
            "frontends": {
                f.name: {**f.counters.to_json(), "conns_cur": len(f.connections)}
                for f in self.frontends
            },
            "backends": {
                b.name: {
                    **b.counters.to_json(),
                    "queue_cur": len(b.queue),
                    "servers": {
                        s.name: {
                            **s.counters.to_json(),
                            "load": s.load,
                            "idle": len(s.idle),
                            "sessions": len(s.sessions),
                        }
                        for s in b.servers.values()
                    },
                }
                for b in self.backends.values()
            },
        }
