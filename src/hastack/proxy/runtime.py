"""The data plane's live objects: servers with their slots, pools and sessions; backends with
their balancer and queue; counters; and the coarse timer that enforces every timeout.

These are mutable on purpose — they are the hot path. What they may do is decided elsewhere:
the state of each server comes in a `BackendView` from the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

from hastack.proxy.balance import make_balancer
from hastack.proxy.config import BackendSpec, FrontendSpec, OnMarkedDown
from hastack.proxy.tls import FrontendTls, server_context, server_hostname
from hastack.proxy.view import BackendView, ServerState, ServerView, candidates

__all__ = [
    "BackendRuntime",
    "FrontendRuntime",
    "Refusal",
    "ServerRuntime",
    "Session",
    "Timed",
    "Timers",
    "describe_error",
    "share",
    "tune",
]

log = logging.getLogger("hastack.proxy")

ErrorReporter = Callable[[str, str, str], None]  # backend, server, why

# Larger than asyncio's 64 KiB default so bulk transfers move in fewer, bigger writes; still
# small enough that a slow reader cannot make a worker hold much per connection.
WRITE_HIGH = 512 * 1024
WRITE_LOW = 128 * 1024


def tune(transport: asyncio.BaseTransport) -> None:
    cast(asyncio.WriteTransport, transport).set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)


class Refusal(Exception):
    """A request or connection the proxy answers itself: the status and a reason for people."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


class Session(Protocol):
    """Something holding a connection to a server, closed when that server is marked down."""

    def shutdown(self, why: str) -> None: ...


class Timed(Protocol):
    deadline: float  # loop time; 0: none

    def expire(self) -> None: ...


class Timers:
    """One periodic sweep instead of a timer per request.

    A connection sets `deadline` (cheap: one float) whenever its state changes; the sweep calls
    `expire()` on those past it. Timeouts are thus late by at most one tick, which is chosen
    from the smallest configured timeout.
    """

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._items: set[Timed] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, item: Timed) -> None:
        self._items.add(item)

    def discard(self, item: Timed) -> None:
        self._items.discard(item)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for item in [i for i in self._items if 0 < i.deadline <= now]:
                try:
                    if 0 < item.deadline <= now:
                        item.expire()
                except Exception:
                    log.exception("proxy: internal error in a timeout handler")


def describe_error(exc: BaseException, timeout: float) -> str:
    """`connection refused`, `timed out after 1s`: what an operator reads in a 503 or a log.

    asyncio words refusals as "Connect call failed (...)"; the errno says it plainly.
    """
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def share(total: int, index: int, workers: int) -> int:
    """Worker `index`'s part of a per-server limit; 0 (unlimited) stays 0.

    Workers do not share counters, so a limit is split; each worker gets at least 1.
    """
    if total == 0:
        return 0
    return max(1, total // workers + (1 if index < total % workers else 0))


# Counter names, for to_json: a class compiled by mypyc has no __slots__ to read at run time.
_SERVER_COUNTERS = (
    "bytes_in",
    "bytes_out",
    "conn_errors",
    "max_load",
    "redispatches",
    "resp_errors",
    "responses",
    "retries",
    "total",
)


class ServerCounters:
    __slots__ = _SERVER_COUNTERS

    def __init__(self) -> None:
        self.total = 0  # sessions (tcp) or requests (http) sent
        self.max_load = 0
        self.bytes_in = 0  # client to server
        self.bytes_out = 0  # server to client
        self.conn_errors = 0  # connect failures
        self.resp_errors = 0  # reset, empty, malformed or timed-out responses
        self.retries = 0
        self.redispatches = 0
        self.responses = [0, 0, 0, 0, 0, 0]  # 1xx..5xx, other

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SERVER_COUNTERS}


class ServerRuntime:
    """One server as this worker sees it: its state from the view, and live usage."""

    __slots__ = (
        "backend",
        "backup",
        "counters",
        "host",
        "idle",
        "load",
        "maxconn",
        "name",
        "port",
        "sessions",
        "state",
        "usable",
        "weight",
    )

    def __init__(self, backend: str, view: ServerView, maxconn: int) -> None:
        self.backend = backend
        self.name = view.name
        self.host = view.host
        self.port = view.port
        self.weight = view.weight
        self.backup = view.backup
        self.maxconn = maxconn
        self.state = view.state
        self.usable = view.usable
        self.load = 0
        self.idle: list[Any] = []  # pooled keep-alive connections (http), most recent last
        self.sessions: set[Session] = set()
        self.counters = ServerCounters()

    def shutdown_sessions(self, why: str) -> None:
        for session in list(self.sessions):
            session.shutdown(why)

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.shutdown("pool closed")


_BACKEND_COUNTERS = ("no_server", "queue_max", "queue_timeouts", "queued")


class BackendCounters:
    __slots__ = _BACKEND_COUNTERS

    def __init__(self) -> None:
        self.queued = 0  # requests that had to wait
        self.queue_max = 0
        self.queue_timeouts = 0
        self.no_server = 0  # refused: no usable server

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _BACKEND_COUNTERS}


class BackendRuntime:
    def __init__(self, spec: BackendSpec, index: int, workers: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.index = index
        self.workers = workers
        self.balancer = make_balancer(spec.balance)
        self.servers: dict[str, ServerRuntime] = {}
        self.order: list[ServerRuntime] = []
        self.candidates: list[ServerRuntime] = []
        self.active: str | None = None
        self.queue: deque[asyncio.Future[None]] = deque()
        self.queue_size = share(spec.queue_size, index, workers) if spec.queue_size else 0
        self.counters = BackendCounters()
        self.shutdown_on_down = spec.on_marked_down is OnMarkedDown.SHUTDOWN_SESSIONS
        self.connect_timeout = spec.timeouts.connect
        self.server_timeout = spec.timeouts.server
        self.retries = spec.retries
        self.redispatch = spec.redispatch
        # Read per request: plain attributes, not the configuration model's.
        self.retry_buffer = spec.retry_buffer
        self.pool_max_idle = spec.pool.max_idle
        self.pool_idle_timeout = spec.pool.idle_timeout
        self.ssl: ssl.SSLContext | None = server_context(spec.tls, spec.mode) if spec.tls else None

    def server_hostname(self, server: ServerRuntime) -> str | None:
        if self.spec.tls is None:
            return None
        return server_hostname(self.spec.tls, server.host)

    # ---- the view from the control plane ------------------------------------------------

    def apply(self, view: BackendView) -> None:
        """Take the control plane's word on every server, closing what must be closed."""
        seen: set[str] = set()
        order: list[ServerRuntime] = []
        for sv in view.servers:
            seen.add(sv.name)
            maxconn = share(sv.maxconn, self.index, self.workers)
            server = self.servers.get(sv.name)
            if server is not None and (server.host, server.port) != (sv.host, sv.port):
                self._retire(server, f"server moved to {sv.host}:{sv.port}")
                server = None
            if server is None:
                server = ServerRuntime(self.name, sv, maxconn)
                self.servers[sv.name] = server
            else:
                was_usable = server.usable
                server.weight = sv.weight
                server.backup = sv.backup
                server.maxconn = maxconn
                server.state = sv.state
                server.usable = sv.usable
                if not sv.usable:
                    server.close_idle()
                    if was_usable and sv.state is ServerState.DOWN and self.shutdown_on_down:
                        server.shutdown_sessions(f"server {self.name}/{sv.name} marked down")
            order.append(server)
        for name in [n for n in self.servers if n not in seen]:
            self._retire(self.servers.pop(name), "server left the pool")
        self.order = order
        self.active = view.active
        self.candidates = candidates(
            order, all_backups=self.spec.all_backups, active=view.active, sticky=self.spec.sticky
        )
        self._wake_all()

    def _retire(self, server: ServerRuntime, why: str) -> None:
        server.usable = False
        server.state = ServerState.DOWN
        server.close_idle()
        if self.shutdown_on_down:
            server.shutdown_sessions(f"{self.name}/{server.name}: {why}")

    # ---- slots and the queue ------------------------------------------------------------

    def try_acquire(
        self, client: bytes, exclude: frozenset[str] | set[str]
    ) -> ServerRuntime | None:
        """A server with a free slot, now, or None. Queued requests go first."""
        return None if self.queue else self._pick_now(client, exclude)

    async def acquire(self, client: bytes, exclude: frozenset[str] | set[str]) -> ServerRuntime:
        """A server slot, waiting in the bounded queue if needed; Refusal(503) otherwise."""
        server = self._pick_now(client, exclude)
        if server is not None:
            return server
        no_server = not self.candidates
        timeout = self.spec.timeouts.no_server if no_server else self.spec.timeouts.queue
        if no_server and timeout <= 0:
            self.counters.no_server += 1
            raise Refusal(503, f"no server is available in backend {self.name!r}")
        if len(self.queue) >= self.queue_size:
            raise Refusal(503, f"backend {self.name!r}: queue full ({self.queue_size} waiting)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.counters.queued += 1
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self.queue.append(future)
            self.counters.queue_max = max(self.counters.queue_max, len(self.queue))
            try:
                async with asyncio.timeout_at(deadline):
                    await future
            except TimeoutError:
                if not self.candidates:
                    self.counters.no_server += 1
                    raise Refusal(
                        503,
                        f"no server is available in backend {self.name!r} (waited {timeout:g}s)",
                    ) from None
                self.counters.queue_timeouts += 1
                raise Refusal(
                    503, f"backend {self.name!r}: no free server slot within {timeout:g}s (queue)"
                ) from None
            finally:
                if not future.done():
                    future.cancel()
                with contextlib.suppress(ValueError):
                    self.queue.remove(future)
            server = self._pick_now(client, exclude)
            if server is not None:
                return server

    def _pick_now(self, client: bytes, exclude: frozenset[str] | set[str]) -> ServerRuntime | None:
        server = self.balancer.pick(self.candidates, client, exclude)
        if server is None and exclude:
            server = self.balancer.pick(self.candidates, client)
        if server is not None:
            server.load += 1
            server.counters.max_load = max(server.counters.max_load, server.load)
        return server

    def release(self, server: ServerRuntime) -> None:
        server.load -= 1
        queue = self.queue
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(None)
                return

    def _wake_all(self) -> None:
        queue, self.queue = self.queue, deque()
        for future in queue:
            if not future.done():
                future.set_result(None)


_FRONTEND_COUNTERS = (
    "bad_requests",
    "bytes_in",
    "bytes_out",
    "conns_cur",
    "conns_total",
    "requests",
    "responses",
    "timeouts",
    "tls_failures",
    "tls_handshakes",
)


class FrontendCounters:
    __slots__ = _FRONTEND_COUNTERS

    def __init__(self) -> None:
        self.tls_handshakes = 0  # completed
        self.tls_failures = 0  # failed: refused, timed out, or the client gave up
        self.conns_total = 0
        self.conns_cur = 0
        self.requests = 0
        self.responses = [0, 0, 0, 0, 0, 0]  # 1xx..5xx, other
        self.bytes_in = 0
        self.bytes_out = 0
        self.bad_requests = 0  # answered 400
        self.timeouts = 0  # answered 408 or closed for client timeout

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FRONTEND_COUNTERS}


class FrontendRuntime:
    def __init__(self, spec: FrontendSpec, backend: BackendRuntime) -> None:
        self.spec = spec
        self.name = spec.name
        self.backend = backend
        self.counters = FrontendCounters()
        self.client_timeout = spec.timeouts.client
        self.request_timeout = spec.timeouts.http_request
        self.keep_alive_timeout = spec.timeouts.http_keep_alive
        self.max_header_size = spec.http.max_header_size
        self.max_headers = spec.http.max_headers
        self.forwarded_for = spec.http.forwarded_for
        # Behind TLS termination the server needs to know the client used https.
        self.forwarded_proto = b"X-Forwarded-Proto: https\r\n" if spec.tls else b""
        self.connections: set[Any] = set()
        # TLS termination (None: plain TCP). Built by the data plane, which may fail to load it.
        self.tls: FrontendTls | None = (
            FrontendTls(spec.tls, spec.mode, self.counters, spec.name) if spec.tls else None
        )
