"""HTTP/1.1 mode: requests parsed and proxied one by one, keep-alive on both sides.

Parsing is httptools (the llhttp parser of Node.js, which uvicorn also uses): a C state machine
that is strict about framing (it refuses Content-Length together with Transfer-Encoding,
bad chunk sizes, bare LF, invalid methods — the request-smuggling cases) and costs a few
microseconds per request. A hand-written parser would be slower and would have to relearn
those lessons; h11 is correct but pure Python, several times slower per request.

The shape per client connection:

    client bytes -> HttpRequestParser -> Exchange (head rebuilt, body streamed or buffered)
                 -> a server slot (balancer, maxconn, queue) -> a pooled or new connection
    server bytes -> response head parsed (our own split at CRLFCRLF, then llhttp)
                 -> body forwarded as received: counted for Content-Length, watched by the
                    parser for chunked, until close otherwise

Bodies are passed through untouched on the response side, so a large download costs one
write per read. The hot path (a pooled connection and a free slot) runs in protocol callbacks
without creating a task; connecting, queueing and retrying run in a task.

Failures: a connect failure is retried on another server (redispatch); a reset or an empty
answer is retried too when the method is idempotent and the whole request is still buffered;
once the first response byte has gone to the client nothing is retried. Refusals are answered
with a short text body that says why (400, 408, 502, 503, 504).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

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

__all__ = ["HttpClientConn", "HttpServerConn", "error_response"]

log = logging.getLogger("hastack.proxy")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
# Hop-by-hop headers: they describe one connection, so the proxy sets its own.
_REQUEST_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer"}
)
_RESPONSE_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"upgrade"})
MAX_RESPONSE_HEAD = 65536
# Request bytes held while no server connection is ready; beyond it the client is paused.
HOLD_LIMIT = 262144

REASONS = {
    400: "Bad Request",
    405: "Method Not Allowed",
    408: "Request Timeout",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Why the client's reading is paused (a bit each, reading resumes when none is left).
_PIPELINE = 1  # a later request waits for the current response
_UPSTREAM = 2  # the server is not taking the request body as fast as it comes
_HOLD = 4  # too much request body held while no server connection is ready

# Response body framing.
_HEAD, _NOBODY, _LENGTH, _CHUNKED, _CLOSE, _TUNNEL = range(6)


def error_response(status: int, why: str) -> bytes:
    reason = REASONS.get(status, "Error")
    body = f"{status} {reason}: {why}\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
    ).encode() + body


_NOT_TRIED: frozenset[str] = frozenset()


class _Refuse(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


def _status_class(status: int) -> int:
    index = status // 100 - 1
    return index if 0 <= index < 5 else 5


class Exchange:
    """One request and its response."""

    __slots__ = (
        "attempts",
        "buffer",
        "buffered",
        "chunked",
        "client",
        "client_keep",
        "complete",
        "conn",
        "head",
        "http10",
        "keep_alive",
        "method",
        "replayable",
        "server",
        "started",
        "started_at",
        "status",
        "task",
        "tried",
        "upgrade",
    )

    def __init__(self, client: HttpClientConn, started_at: float) -> None:
        self.client = client
        self.started_at = started_at
        self.method = b""
        self.head = b""
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.replayable = True  # the whole request is still in `buffer`
        self.complete = False  # the whole request has been read from the client
        self.chunked = False
        self.keep_alive = True
        self.client_keep = True
        self.http10 = False
        self.upgrade = False
        self.server: ServerRuntime | None = None  # the slot held
        self.conn: HttpServerConn | None = None
        self.attempts = 0
        # Servers tried already: a shared empty set until a retry adds one (most requests
        # are never retried, so they allocate no set).
        self.tried: frozenset[str] | set[str] = _NOT_TRIED
        self.started = False  # response bytes have gone to the client
        self.status = 0
        self.task: asyncio.Task[None] | None = None


class HttpClientConn:
    """A client connection on an HTTP frontend (an asyncio protocol by its methods; no base
    class, so that mypyc compiles it as a native class: runtime.py, "Compiled")."""

    def __init__(self, plane: DataPlane, frontend: FrontendRuntime) -> None:
        self.plane = plane
        self.loop = plane.loop
        self.frontend = frontend
        self.backend: BackendRuntime = frontend.backend
        self.counters = frontend.counters
        self.transport: asyncio.Transport | None = None
        self.client_ip = "-"
        self.client_key = b""
        self.parser = httptools.HttpRequestParser(self)
        self.building: Exchange | None = None  # request being read
        self.current: Exchange | None = None  # request being answered
        self.pending: deque[Exchange] = deque()  # read, waiting for `current` to finish
        self.url = b""
        self.parts: list[bytes] = []  # request header lines as they will be sent
        self.nheaders = 0
        self.hosts = 0  # Host header lines (RFC 9112 §3.2: exactly one in HTTP/1.1)
        self.conn_value = b""  # Connection header(s), for the tokens it lists
        self.te = b""
        self.upgrade_line = b""
        self.head_size = 0
        self.raw_head = 0
        self.paused = 0
        self.write_paused = False
        self.deadline = 0.0
        self.closed = False
        self.lost = False
        self.tunnel = False
        self.upgraded: Exchange | None = None
        self.bytes_seen = 0

    # ---- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0])
        self.client_key = self.client_ip.encode()
        self.counters.conns_total += 1
        self.counters.conns_cur += 1
        self.frontend.connections.add(self)
        self.deadline = self.loop.time() + self.frontend.request_timeout
        self.plane.timers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        # `closed` may already be set (the proxy closed it after an answer); `lost` says this
        # ran, so the connection leaves the frontend's set and the timers exactly once.
        if self.lost:
            return
        self.lost = True
        self.closed = True
        self.counters.conns_cur -= 1
        self.frontend.connections.discard(self)
        self.plane.timers.discard(self)
        current = self.current
        if current is not None:
            self._abandon(current, "client went away")
        for ex in self.pending:
            self._abandon(ex, "client went away")
        self.pending.clear()

    def eof_received(self) -> bool:
        return False  # the client is done: the transport closes (asyncio.Protocol's default)

    def _abandon(self, ex: Exchange, why: str) -> None:
        if ex.task is not None and not ex.task.done():
            ex.task.cancel()
        conn = ex.conn
        if conn is not None:
            ex.conn = None
            conn.abandon(why)
        self._release(ex)

    def _release(self, ex: Exchange) -> None:
        server = ex.server
        if server is not None:
            ex.server = None
            self.backend.release(server)

    def shutdown(self, why: str) -> None:
        if self.transport is not None:
            self.transport.abort()

    def is_idle(self) -> bool:
        """Between requests on a kept connection: closing it now loses nothing."""
        return self.current is None and not self.pending and self.building is None

    def _pause(self, bit: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= bit

    def _resume(self, bit: int) -> None:
        if self.paused & bit:
            self.paused &= ~bit
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        current = self.current
        if current is not None and current.conn is not None:
            current.conn.pause_from_client(True)
        self.deadline = self.loop.time() + self.frontend.client_timeout

    def resume_writing(self) -> None:
        self.write_paused = False
        current = self.current
        if current is not None and current.conn is not None:
            current.conn.pause_from_client(False)
        self._rearm()

    # ---- timeouts ------------------------------------------------------------------------

    def _rearm(self) -> None:
        building = self.building
        now = self.loop.time()
        if building is not None:
            if building.method:  # head done, body still coming
                self.deadline = now + self.frontend.client_timeout
            else:
                self.deadline = building.started_at + self.frontend.request_timeout
        elif self.current is not None or self.pending:
            self.deadline = now + self.frontend.client_timeout if self.write_paused else 0.0
        else:
            self.deadline = now + self.frontend.keep_alive_timeout

    def expire(self) -> None:
        self.deadline = 0.0
        if self.closed or self.transport is None:
            return
        building = self.building
        if self.tunnel or self.write_paused:
            self.counters.timeouts += 1
            self.transport.abort()
        elif building is not None and not building.method:
            self.counters.timeouts += 1
            self._refuse_request(
                408, f"the request head was not received within {self.frontend.request_timeout:g}s"
            )
        elif building is not None:
            self.counters.timeouts += 1
            current = self.current
            if current is not None and current.started:
                self.transport.abort()
            else:
                self._refuse_request(
                    408,
                    f"the request body stalled for {self.frontend.client_timeout:g}s",
                )
        elif self.current is None and not self.pending:
            if self.bytes_seen == 0:
                self.counters.timeouts += 1
            self.transport.close()  # idle keep-alive (or never spoke): close quietly

    # ---- reading requests ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        n = len(data)
        self.counters.bytes_in += n
        self.bytes_seen += n
        if self.tunnel or self.closed or self.upgraded is not None:
            self._not_parsing(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_requested(data[exc.args[0] :])
            return
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refuse):
                self._refuse_request(refusal.status, refusal.why)
            else:
                log.error("proxy: internal error while reading a request", exc_info=refusal)
                self._refuse_request(400, "the request could not be processed")
            return
        except httptools.HttpParserError as exc:
            self._refuse_request(400, f"malformed request: {exc}")
            return
        building = self.building
        if building is not None:
            if building.method:  # a body is coming
                self.deadline = self.loop.time() + self.frontend.client_timeout
                return
            # The head is still incomplete. llhttp calls on_header only for complete lines, so
            # one endless line is caught by counting raw bytes here.
            self.raw_head += n
            if (
                self.url
                and not self.nheaders
                and data.endswith(b"\n")
                and self.parser.get_http_version() == "0.0"
            ):
                # A request line ended without a version: HTTP/0.9, whose client waits for an
                # answer without sending a blank line (llhttp would wait for headers).
                self._refuse_request(400, "HTTP/0.9 requests are not served")
                return
            if self.raw_head > self.frontend.max_header_size:
                self._refuse_request(
                    400,
                    f"request head larger than {self.frontend.max_header_size} bytes",
                )

    def _not_parsing(self, data: bytes) -> None:
        if self.tunnel:
            self._tunnel_up(data)
        elif self.upgraded is not None and not self.closed:
            self._body(self.upgraded, data)  # before the 101: held for the server

    def on_message_begin(self) -> None:
        self.building = Exchange(self, self.loop.time())
        self.url = b""
        self.parts = []
        self.nheaders = 0
        self.hosts = 0
        self.conn_value = b""
        self.te = b""
        self.upgrade_line = b""
        self.head_size = 0
        self.raw_head = 0
        self.deadline = self.building.started_at + self.frontend.request_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.frontend.max_header_size:
            raise _Refuse(400, f"request line longer than {self.frontend.max_header_size} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        # One pass: limits, hop-by-hop headers set aside, the rest ready to send.
        self.nheaders += 1
        if self.nheaders > self.frontend.max_headers:
            raise _Refuse(400, f"more than {self.frontend.max_headers} request headers")
        self.head_size += len(name) + len(value)
        if self.head_size > self.frontend.max_header_size:
            raise _Refuse(400, f"request head larger than {self.frontend.max_header_size} bytes")
        lower = name.lower()
        if lower in _REQUEST_HOP:
            if lower == b"connection":
                self.conn_value += value + b","
            elif lower == b"upgrade":
                self.upgrade_line = name + b": " + value + b"\r\n"
            return
        if lower == b"host":
            self.hosts += 1
        elif lower == b"transfer-encoding":
            self.te = value
        self.parts += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        ex = self.building
        assert ex is not None
        parser = self.parser
        version = parser.get_http_version()
        if self.hosts != 1 and (self.hosts > 1 or version == "1.1"):
            # RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host and
            # to any request with more than one (two proxies could pick different ones).
            raise _Refuse(400, f"{self.hosts} Host headers (an HTTP/1.1 request has one)")
        if version == "0.9":
            raise _Refuse(400, "HTTP/0.9 requests are not served")
        method = parser.get_method()
        if method == b"CONNECT":
            raise _Refuse(405, "CONNECT is not proxied")
        ex.method = method
        ex.keep_alive = parser.should_keep_alive()
        ex.http10 = version == "1.0"
        ex.upgrade = parser.should_upgrade()
        if ex.method not in IDEMPOTENT:
            ex.replayable = False  # kept in the buffer until sent, never sent twice
        ex.head = self._request_head(ex)
        self.counters.requests += 1
        self.frontend_request_started(ex)

    def _request_head(self, ex: Exchange) -> bytes:
        parts = _drop_listed(self.parts, self.conn_value) if self.conn_value else self.parts
        if self.te:
            ex.chunked = self.te.rstrip().lower().endswith(b"chunked")
        head = [ex.method, b" ", self.url, b" HTTP/1.1\r\n", *parts]
        if self.frontend.forwarded_for:
            head += (b"X-Forwarded-For: ", self.client_key, b"\r\n", self.frontend.forwarded_proto)
        if ex.upgrade:
            head += (self.upgrade_line, b"Connection: Upgrade\r\n")
        head.append(b"\r\n")
        return b"".join(head)

    def frontend_request_started(self, ex: Exchange) -> None:
        if self.current is None:
            self.current = ex
            self.deadline = 0.0
            self._dispatch(ex)
        else:
            self.pending.append(ex)
            self._pause(_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.building
        if ex is not None:
            if ex.chunked:
                body = b"%x\r\n%b\r\n" % (len(body), body)
            self._body(ex, body)

    def on_message_complete(self) -> None:
        ex = self.building
        if ex is None:
            return
        if ex.chunked:
            self._body(ex, b"0\r\n\r\n")
        ex.complete = True
        self.building = None
        if self.current is ex:
            self.deadline = 0.0 if not self.write_paused else self.deadline

    def _body(self, ex: Exchange, data: bytes) -> None:
        conn = ex.conn
        if conn is not None and conn.transport is not None:
            conn.transport.write(data)
            conn.server.counters.bytes_in += len(data)
            if ex.replayable:
                ex.buffer.append(data)
                ex.buffered += len(data)
                if ex.buffered > self.backend.retry_buffer:
                    ex.replayable = False
                    ex.buffer = []
            return
        ex.buffer.append(data)
        ex.buffered += len(data)
        if ex.buffered > self.backend.retry_buffer:
            ex.replayable = False
        if ex.buffered > HOLD_LIMIT:
            self._pause(_HOLD)

    # ---- upgrade (WebSocket) ---------------------------------------------------------------

    def _upgrade_requested(self, rest: bytes) -> None:
        ex = self.current if self.current is not None and not self.pending else None
        if ex is None and self.pending:
            ex = self.pending[-1]
        if ex is None:
            self._refuse_request(400, "upgrade request could not be matched")
            return
        ex.replayable = False
        ex.complete = True
        self.building = None
        self.upgraded = ex
        if rest:
            self._body(ex, rest)

    def start_tunnel(self) -> None:
        self.tunnel = True
        self.deadline = self.loop.time() + self.frontend.client_timeout
        self._resume(_PIPELINE | _HOLD)

    def _tunnel_up(self, data: bytes) -> None:
        current = self.current
        if current is not None and current.conn is not None and current.conn.transport:
            current.conn.transport.write(data)
            current.conn.server.counters.bytes_in += len(data)
        self.deadline = self.loop.time() + self.frontend.client_timeout

    # ---- sending to a server -------------------------------------------------------------

    def _dispatch(self, ex: Exchange) -> None:
        """Fast path when a slot and a pooled connection are free; else a task."""
        backend = self.backend
        exclude = ex.tried if backend.redispatch else _NOT_TRIED
        server = backend.try_acquire(self.client_key, exclude)
        if server is not None:
            ex.server = server
            self._note_redispatch(ex, server)
            conn = _pop_idle(server)
            if conn is not None:
                conn.attach(ex)
                return
        ex.task = self.loop.create_task(self._dispatch_slow(ex))

    def _note_redispatch(self, ex: Exchange, server: ServerRuntime) -> None:
        if ex.tried and server.name not in ex.tried:
            server.counters.redispatches += 1

    async def _dispatch_slow(self, ex: Exchange) -> None:
        backend = self.backend
        last_error = ""
        try:
            while True:
                if ex.server is None:
                    exclude = ex.tried if backend.redispatch else _NOT_TRIED
                    server = await backend.acquire(self.client_key, exclude)
                    ex.server = server
                    self._note_redispatch(ex, server)
                server = ex.server
                conn = _pop_idle(server)
                if conn is None:
                    try:
                        conn = await self.plane.open_http(backend, server)
                    except (OSError, TimeoutError) as exc:
                        last_error = describe_error(exc, backend.connect_timeout)
                        server.counters.conn_errors += 1
                        self.plane.report_error(backend.name, server.name, f"connect: {last_error}")
                        self._release(ex)
                        _add_tried(ex, server.name)
                        ex.attempts += 1
                        if ex.attempts > backend.retries:
                            raise Refusal(
                                503,
                                f"could not connect to a server of backend {backend.name!r} "
                                f"in {ex.attempts} attempt(s); last: {server.name} "
                                f"{last_error}",
                            ) from None
                        server.counters.retries += 1
                        continue
                if self.closed:
                    conn.park()
                    self._release(ex)
                    return
                ex.task = None
                conn.attach(ex)
                return
        except Refusal as refusal:
            ex.task = None
            self._release(ex)
            self._fail(ex, refusal.status, refusal.why)

    # ---- answers ---------------------------------------------------------------------------

    def write_response(self, data: bytes) -> None:
        self.counters.bytes_out += len(data)
        if self.transport is not None:
            self.transport.write(data)

    def response_done(self, ex: Exchange) -> None:
        """The server connection delivered the whole response (slot already released)."""
        self._count_status(ex.status)
        if self.current is ex:
            self.current = None
        if self.closed or self.transport is None:
            return
        if not ex.client_keep or not ex.complete:
            # A response may end before its request body (an early 413, say); the connection
            # cannot be reused then, as the rest of the body would be read as a request.
            self.transport.close()
            self.closed = True
            return
        if self.pending:
            self.current = self.pending.popleft()
            if not self.pending:
                self._resume(_PIPELINE)
            self._dispatch(self.current)
        else:
            self._resume(_PIPELINE)
            self._rearm()

    def server_failed(self, ex: Exchange, conn: HttpServerConn, why: str, fresh: bool) -> None:
        """The server connection broke before the response was complete."""
        server = conn.server
        ex.conn = None
        self._release(ex)
        if self.closed:
            return
        if not ex.started:
            server.counters.resp_errors += 1
            if fresh:
                self.plane.report_error(self.backend.name, server.name, why)
            if ex.replayable and ex.attempts < self.backend.retries:
                ex.attempts += 1
                _add_tried(ex, server.name)
                server.counters.retries += 1
                self._dispatch(ex)
                return
            self._fail(
                ex,
                502,
                f"server {self.backend.name}/{server.name} {why} before answering",
            )
        else:
            server.counters.resp_errors += 1
            if self.transport is not None:
                self.transport.abort()

    def server_timeout(self, ex: Exchange, conn: HttpServerConn) -> None:
        ex.conn = None
        self._release(ex)
        conn.server.counters.resp_errors += 1
        if ex.started:
            if self.transport is not None:
                self.transport.abort()
            return
        self._fail(
            ex,
            504,
            f"server {self.backend.name}/{conn.server.name} did not answer within "
            f"{self.backend.server_timeout:g}s",
        )

    def _fail(self, ex: Exchange, status: int, why: str) -> None:
        if self.closed or self.transport is None:
            return
        if ex.started:
            self.transport.abort()
            return
        ex.status = status
        self._count_status(status)
        self.write_response(error_response(status, why))
        self.transport.close()
        self.closed = True

    def _refuse_request(self, status: int, why: str) -> None:
        """A request the proxy will not pass on; the connection closes after the answer."""
        if status == 400:
            self.counters.bad_requests += 1
        self.building = None
        current = self.current
        if current is not None and current.started:
            if self.transport is not None:
                self.transport.abort()
            return
        if current is not None:
            self._abandon(current, "request refused")
            self.current = None
        self._count_status(status)
        self.write_response(error_response(status, why))
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _count_status(self, status: int) -> None:
        self.counters.responses[_status_class(status)] += 1


class _ValidateOnly:
    """Parser callbacks for a head handled by `_plain_head`: none, llhttp only validates."""


_VALIDATE_ONLY = _ValidateOnly()
_NOT_PLAIN = (
    b"\r\ntransfer-encoding:",
    b"\r\nupgrade:",
    b"\r\nkeep-alive:",
    b"\r\nproxy-connection:",
)

_PLAIN_TOKENS = frozenset({b"", b"close", b"keep-alive", b"upgrade"})
_PLAIN_VALUES = frozenset(
    {b"keep-alive,", b"Keep-Alive,", b"close,", b"Close,", b"Upgrade,", b"upgrade,"}
)


def _drop_listed(parts: list[bytes], listed: bytes) -> list[bytes]:
    """Header lines without those the Connection header names (hop-by-hop by declaration).

    `parts` holds 4 items per header (name, ": ", value, CRLF); usually nothing is dropped.
    """
    if listed in _PLAIN_VALUES:
        return parts  # the usual `Connection: keep-alive`, without a set per response
    tokens = {t.strip().lower() for t in listed.split(b",")} - _PLAIN_TOKENS
    if not tokens:
        return parts
    out: list[bytes] = []
    for i in range(0, len(parts), 4):
        if parts[i].lower() not in tokens:
            out += parts[i : i + 4]
    return out


def _decimal(data: bytes, start: int, end: int) -> int:
    """The number written in data[start:end] between optional spaces and tabs, or -1 if it is
    not only decimal digits (or too long to be a length we take on this path)."""
    while start < end and (data[start] == 32 or data[start] == 9):
        start += 1
    while end > start and (data[end - 1] == 32 or data[end - 1] == 9):
        end -= 1
    if start == end or end - start > 18:
        return -1
    n = 0
    for i in range(start, end):
        c = data[i]
        if c < 48 or c > 57:
            return -1
        n = n * 10 + c - 48
    return n


def _add_tried(ex: Exchange, name: str) -> None:
    tried = ex.tried
    if isinstance(tried, set):
        tried.add(name)
    else:
        ex.tried = {name}


def _pop_idle(server: ServerRuntime) -> HttpServerConn | None:
    idle = server.idle
    while idle:
        conn: HttpServerConn = idle.pop()
        if not conn.closed:
            return conn
    return None


class HttpServerConn:
    """A connection to a server; carries one exchange at a time, pooled in between."""

    def __init__(self, plane: DataPlane, backend: BackendRuntime, server: ServerRuntime) -> None:
        self.plane = plane
        self.loop = plane.loop
        self.backend = backend
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.ex: Exchange | None = None
        self.mode = _HEAD
        self.remaining = 0
        self.head_buf = b""
        self.parser: httptools.HttpResponseParser | None = None
        # The connection's validating parser for usual heads (one per connection, not per
        # response); `parser` is it or a parser for one unusual response.
        self.validator: httptools.HttpResponseParser | None = None
        self.reason = b""
        self.parts: list[bytes] = []  # response header lines as they will be sent
        self.conn_value = b""
        self.upgrade_line = b""
        self.length = -1
        self.te = b""
        self.plain = b""  # a usual response head as received (`_plain_head`), else b""
        self.as_is = True  # ... with no Connection header, or `keep-alive`
        self.conn_at = -1  # ... and where its Connection line starts and ends (-1: none)
        self.conn_end = -1
        self.message_done = False
        self.keep = False
        self.dechunk = False
        self.got = False
        self.used = 0  # exchanges carried so far
        self.deadline = 0.0
        self.closed = False
        self.paused_by_client = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)
        self.server.sessions.add(self)
        self.plane.timers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.sessions.discard(self)
        self.plane.timers.discard(self)
        if self.ex is None:
            return
        ex, self.ex = self.ex, None
        client = ex.client
        if self.mode == _CLOSE:
            # No length given: the end of the connection is the end of the response.
            ex.client_keep = False
            ex.conn = None
            self._release_slot(ex)
            self.server.counters.responses[_status_class(ex.status)] += 1
            client.response_done(ex)
        elif self.mode == _TUNNEL:
            self._release_slot(ex)
            if client.transport is not None:
                client.transport.close()
        else:
            why = "reset the connection" if exc is not None else "closed the connection"
            if self.got:
                why += " in the middle of the response head"
            client.server_failed(ex, self, why, fresh=self.used == 0)

    def eof_received(self) -> bool:
        return False  # the server closed: connection_lost follows

    def _release_slot(self, ex: Exchange) -> None:
        if ex.server is not None:
            server, ex.server = ex.server, None
            self.backend.release(server)

    def shutdown(self, why: str) -> None:
        if self.transport is not None:
            self.transport.abort()

    def abandon(self, why: str) -> None:
        """The client went away mid-exchange: this connection's state is unknown, close it."""
        self.ex = None
        if self.transport is not None:
            self.transport.abort()

    def park(self) -> None:
        """Keep a fresh connection nobody needs any more, if the pool has room."""
        if self.server.usable and len(self.server.idle) < self.backend.pool_max_idle:
            self.deadline = self.loop.time() + self.backend.pool_idle_timeout
            self.server.idle.append(self)
        elif self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        ex = self.ex
        if ex is not None:
            ex.client._pause(_UPSTREAM)

    def resume_writing(self) -> None:
        ex = self.ex
        if ex is not None:
            ex.client._resume(_UPSTREAM)

    def pause_from_client(self, paused: bool) -> None:
        if self.transport is None or self.paused_by_client == paused:
            return
        self.paused_by_client = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def expire(self) -> None:
        self.deadline = 0.0
        ex = self.ex
        if ex is None:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        if self.paused_by_client:
            return  # the client is slow, not the server; the client's timeout governs
        self.ex = None
        if self.transport is not None:
            self.transport.abort()
        ex.client.server_timeout(ex, self)

    # ---- sending -------------------------------------------------------------------------

    def attach(self, ex: Exchange) -> None:
        transport = self.transport
        assert transport is not None
        self.ex = ex
        ex.conn = self
        self.mode = _HEAD
        self.got = False
        self.head_buf = b""
        self.deadline = self.loop.time() + self.backend.server_timeout
        server = self.server
        server.counters.total += 1
        data = b"".join((ex.head, *ex.buffer)) if ex.buffer else ex.head
        transport.write(data)
        server.counters.bytes_in += len(data)
        if not ex.replayable:
            ex.buffer = []
        client = ex.client
        client._resume(_HOLD)

    # ---- the response --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:
            # Bytes on an idle connection: the server is confused; do not reuse it.
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            return
        n = len(data)
        self.server.counters.bytes_out += n
        mode = self.mode
        if mode == _LENGTH:
            self.data_received_body(ex, data)
        elif mode == _CHUNKED:
            self._chunked(ex, data)
        elif mode in (_CLOSE, _TUNNEL):
            ex.client.write_response(data)
        else:
            self.got = True
            self._head(ex, data)
        if self.ex is ex:
            # Still answering: the server has `server_timeout` for its next bytes. (A finished
            # response set the pool's deadline instead; usually one read is the whole answer.)
            self.deadline = self.loop.time() + self.backend.server_timeout

    def _chunked(self, ex: Exchange, data: bytes) -> None:
        if not self.dechunk:
            ex.client.write_response(data)
        self._feed_chunked(ex, data)

    def _feed_chunked(self, ex: Exchange, data: bytes) -> None:
        """The parser finds the end of a chunked body (and de-chunks for HTTP/1.0 clients)."""
        parser = self.parser
        assert parser is not None
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._bad_response(ex, f"sent a malformed chunked body ({exc})")
            return
        if self.message_done:
            self._finish(ex)

    def _bad_response(self, ex: Exchange, why: str) -> None:
        self.ex = None
        self.keep = False
        if self.transport is not None:
            self.transport.abort()
        self._release_slot(ex)
        ex.conn = None
        ex.client._fail(ex, 502, f"server {self.backend.name}/{self.server.name} {why}")

    def _head(self, ex: Exchange, data: bytes) -> None:
        buf = self.head_buf + data if self.head_buf else data
        client = ex.client
        while True:
            start = buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_RESPONSE_HEAD:
                    self._bad_response(ex, "sent a response head that is too large")
                else:
                    self.head_buf = buf
                return
            head, buf = buf[: end + 4], buf[end + 4 :]
            self.parts = []
            self.conn_value = b""
            self.upgrade_line = b""
            self.length = -1
            self.te = b""
            self.reason = b""
            self.message_done = False
            self.plain = self._plain_head(head)
            # llhttp validates every head; only unusual ones need our per-header callbacks. A
            # usual head goes to the connection's own validating parser, which is also given
            # the body (so it stays at message boundaries) — except after a HEAD request,
            # where llhttp could not know that no body follows.
            if self.plain and ex.method != b"HEAD":
                parser = self.validator
                if parser is None:
                    parser = self.validator = httptools.HttpResponseParser(_VALIDATE_ONLY)
            else:
                parser = httptools.HttpResponseParser(_VALIDATE_ONLY if self.plain else self)
            self.parser = parser
            try:
                parser.feed_data(head)
            except httptools.HttpParserUpgrade:
                pass  # a 101: the head is complete, what follows is the new protocol
            except httptools.HttpParserError as exc:
                self._bad_response(ex, f"sent a malformed response ({exc})")
                return
            status = parser.get_status_code()
            if 100 <= status < 200 and status != 101:
                if not ex.http10:
                    ex.started = True
                    client.write_response(self._response_head(ex, status, keep=True))
                if not buf:
                    self.head_buf = b""
                    return
                continue
            self.head_buf = b""
            break
        ex.status = status
        self.keep = parser.should_keep_alive()
        length = self.length
        if status == 101:
            if not ex.upgrade:
                self._bad_response(ex, "switched protocols without being asked")
                return
            mode = _TUNNEL
        elif ex.method == b"HEAD" or status in (204, 304):
            mode = _NOBODY
        elif self.te and self.te.rstrip().lower().endswith(b"chunked"):
            mode = _CHUNKED
        elif length >= 0:
            mode = _LENGTH
        else:
            mode = _CLOSE
        self.mode = mode
        self.dechunk = mode == _CHUNKED and ex.http10
        ex.client_keep = (
            ex.keep_alive
            and mode not in (_CLOSE, _TUNNEL)
            and not self.dechunk
            and not ex.upgrade
            and not self.plane.closing
        )
        if mode in (_CLOSE, _TUNNEL):
            self.keep = False
        ex.started = True
        # The head and the body bytes that came with it go out in one write: one system call
        # per small response instead of two.
        if mode == _LENGTH:
            n = len(buf)
            if n > length:
                self.keep = False
                buf = buf[:length]
            if buf and parser is self.validator:
                parser.feed_data(buf)  # counted by llhttp too: the next head starts clean
            if self.plain and self.as_is and ex.client_keep and not ex.http10 and n <= length:
                # The usual case: what to send is what came, without its Connection line if
                # it has one (`start` is this head and the body bytes that came with it).
                conn = self.conn_at
                out = start if conn < 0 else start[:conn] + start[self.conn_end :]
            else:
                head = self._response_head(ex, status, keep=ex.client_keep)
                out = head + buf if buf else head
            if n < length:
                self.remaining = length - n
                client.write_response(out)
                return
            self.remaining = 0
            client.write_response(out)
            self._finish(ex)
            return
        head = self._response_head(ex, status, keep=ex.client_keep)
        if mode == _NOBODY:
            client.write_response(head)
            if buf:
                self.keep = False
            self._finish(ex)
        elif mode == _CHUNKED:
            if self.dechunk:
                client.write_response(head)
            else:
                client.write_response(head + buf if buf else head)
            if buf:
                self._feed_chunked(ex, buf)
        elif mode == _TUNNEL:
            client.write_response(head + buf if buf else head)
            client.start_tunnel()
        else:
            client.write_response(head + buf if buf else head)

    def data_received_body(self, ex: Exchange, data: bytes) -> None:
        n = len(data)
        remaining = self.remaining
        client = ex.client
        validator = self.validator
        if n < remaining:
            self.remaining = remaining - n
            if validator is not None and self.parser is validator:
                validator.feed_data(data)
            client.write_response(data)
            return
        if n > remaining:
            data = data[:remaining]
        if validator is not None and self.parser is validator:
            validator.feed_data(data)
        client.write_response(data)
        self.remaining = 0
        if n > remaining:
            self.keep = False
        self._finish(ex)

    def _plain_head(self, head: bytes) -> bytes:
        """The usual response head, ready to forward, or b"" when it needs the careful path.

        Usual: HTTP/1.1, a Content-Length, no hop-by-hop header but a plain `Connection:
        keep-alive` or `close` (dropped here; ours is added). Handled with a few C-level
        searches instead of one Python callback per header. llhttp still parses the head, so
        a malformed one is refused all the same.
        """
        if not head.startswith(b"HTTP/1.1 "):
            return b""
        self.conn_at = -1
        self.as_is = True
        low = head.lower()
        for name in _NOT_PLAIN:
            # find(), not `name in low`: bytes.__contains__ first tries its argument as an
            # integer and builds a TypeError for every substring search (measured: half of
            # this function's time).
            if low.find(name) >= 0:
                return b""
        start = low.find(b"\r\ncontent-length:")
        if start < 0:
            return b""
        end = low.find(b"\r\n", start + 17)
        length = _decimal(low, start + 17, end)
        if length < 0:
            return b""
        conn = low.find(b"\r\nconnection:")
        if conn >= 0:
            conn_end = low.find(b"\r\n", conn + 13)
            token = low[conn + 13 : conn_end].strip()
            if token not in (b"keep-alive", b"close"):
                return b""
            if low.find(b"\r\nconnection:", conn_end) >= 0:
                return b""
            self.conn_at = conn
            self.conn_end = conn_end
            self.as_is = token == b"keep-alive"
        self.length = length
        return head  # as received; `_response_head` rewrites it only when it must

    def _response_head(self, ex: Exchange, status: int, *, keep: bool) -> bytes:
        if self.plain:
            head = self.plain
            if self.conn_at >= 0:
                head = head[: self.conn_at] + head[self.conn_end :]
            head = head[:-2]  # without the blank line: our Connection header follows
            if not keep:
                return head + b"Connection: close\r\n\r\n"
            if ex.http10:
                return head + b"Connection: keep-alive\r\n\r\n"
            return head + b"\r\n"
        parts = _drop_listed(self.parts, self.conn_value) if self.conn_value else self.parts
        if self.dechunk:
            parts = _drop_listed(parts, b"transfer-encoding")
        reason = self.reason or REASONS.get(status, "").encode()
        if status == 101:
            tail = self.upgrade_line + b"Connection: Upgrade\r\n\r\n"
        elif not keep:
            tail = b"Connection: close\r\n\r\n"
        elif ex.http10:
            tail = b"Connection: keep-alive\r\n\r\n"
        else:
            tail = b"\r\n"
        return b"HTTP/1.1 %d %b\r\n%b%b" % (status, reason, b"".join(parts), tail)

    def _finish(self, ex: Exchange) -> None:
        self.ex = None
        self.used += 1
        ex.conn = None
        self._release_slot(ex)
        server = self.server
        server.counters.responses[_status_class(ex.status)] += 1
        if (
            self.keep
            and ex.complete
            and server.usable
            and not self.closed
            and not self.plane.closing
            and len(server.idle) < self.backend.pool_max_idle
        ):
            self.deadline = self.loop.time() + self.backend.pool_idle_timeout
            if self.paused_by_client:
                self.pause_from_client(False)
            server.idle.append(self)
        else:
            self.closed = True
            self.deadline = 0.0
            if self.transport is not None:
                self.transport.close()
        ex.client.response_done(ex)

    # ---- parser callbacks (response head, chunked bodies) --------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in _RESPONSE_HOP:
            if lower == b"connection":
                self.conn_value += value + b","
            elif lower == b"upgrade":
                self.upgrade_line = name + b": " + value + b"\r\n"
            return
        if lower == b"content-length":
            self.length = int(value)  # llhttp has checked it is a number
        elif lower == b"transfer-encoding":
            self.te = value
        self.parts += (name, b": ", value, b"\r\n")

    def on_body(self, body: bytes) -> None:
        if self.dechunk and self.ex is not None:
            self.ex.client.write_response(body)

    def on_message_complete(self) -> None:
        self.message_done = True
