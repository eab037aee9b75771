"""The admin endpoint: stats page, JSON, Prometheus metrics and run-time commands over HTTP.

    GET  /  or /stats              the HTML stats page (refreshes itself)
    GET  /stats.json               the same as JSON
    GET  /metrics                  Prometheus text format
    GET  /servers                  every server's state, as JSON
    POST /servers/BACKEND/SERVER   {"state": "ready"|"drain"|"maint"} and/or {"weight": N}
    GET  /health                   200 "ok" while the proxy runs (for a resource monitor)

HTTP rather than a unix socket so the CLI, a browser, curl and Prometheus all use the same
door. It binds exactly the configured address (127.0.0.1 by default, never a wildcard).
Commands need an operator's `write` token (`Authorization: Bearer ...`, hastack.auth); other
reads a `read` token unless `open-reads`; `/health` is always open. A request refused for
want of a credential is answered 401 before anything is done with it: it changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from hastack.auth import Forbidden, Role, TokenFile, Unauthorized, authorize
from hastack.proxy.config import AdminSpec, parse_address
from hastack.proxy.control import AdminState, UnknownServer
from hastack.proxy.stats import render_html

if TYPE_CHECKING:
    from hastack.proxy.server import Proxy

__all__ = ["AdminServer"]

log = logging.getLogger("hastack.proxy")

MAX_HEAD = 16384
MAX_BODY = 65536
READ_TIMEOUT = 10.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
}
# Always answered without a credential: resource monitors and load balancers ask it.
OPEN_PATHS = ("/health",)


class AdminServer:
    def __init__(self, proxy: Proxy, spec: AdminSpec) -> None:
        self.proxy = proxy
        self.bind = spec.bind
        self.open_reads = spec.open_reads
        # Read now: a tokens file that is missing or does not parse stops the start, named.
        self.tokens = TokenFile(spec.tokens) if spec.tokens else None
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = parse_address(self.bind)
        self.server = await asyncio.start_server(self._handle, host, port, reuse_address=True)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_HEAD:
                    raise ValueError("head too large")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                authorization = None
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                    elif name.strip().lower() == "authorization":
                        authorization = value.strip()
                if not 0 <= length <= MAX_BODY:
                    raise ValueError("body too large")
                path = target.split("?", 1)[0]
                # Read (bounded) even when refused: closing on unread bytes would reset the
                # connection before the client reads our answer.
                body = await reader.readexactly(length) if length else b""
            self._authorize(method, path, authorization)
            status, ctype, payload = await self._route(method, path, body)
        except Unauthorized as exc:
            status, ctype, payload = 401, "application/json", _json({"error": str(exc)})
        except Forbidden as exc:
            status, ctype, payload = 403, "application/json", _json({"error": str(exc)})
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, ctype, payload = 400, "text/plain", b"bad request\n"
        except Exception:
            log.exception("proxy: internal error in the admin endpoint")
            status, ctype, payload = 500, "text/plain", b"internal error\n"
        try:
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
                    + ('WWW-Authenticate: Bearer realm="hastack"\r\n' if status == 401 else "")
                    + "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
                ).encode()
                + payload
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _authorize(self, method: str, path: str, authorization: str | None) -> None:
        """Raises Unauthorized or Forbidden unless the request may go on."""
        if method == "GET" and path in OPEN_PATHS:
            return
        need = Role.READ if method == "GET" else Role.WRITE
        operator = authorize(self.tokens, authorization, need=need, open_reads=self.open_reads)
        if need is Role.WRITE and operator is not None:
            log.info("proxy: %s %s by %s", method, path, operator.name)

    async def _route(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        proxy = self.proxy
        if method == "GET":
            if path in ("/", "/stats"):
                report = await proxy.report()
                return 200, "text/html; charset=utf-8", render_html(report).encode()
            if path == "/stats.json":
                return 200, "application/json", _json(await proxy.report())
            if path == "/metrics":
                return 200, "text/plain; version=0.0.4", await proxy.metrics()
            if path == "/servers":
                return 200, "application/json", _json(proxy.control.describe_servers())
            if path == "/health":
                return 200, "text/plain", b"ok\n"
            return 404, "text/plain", b"not found\n"
        if method == "POST" and path.startswith("/servers/"):
            parts = path.split("/")
            if len(parts) != 4:
                return 404, "text/plain", b"want /servers/BACKEND/SERVER\n"
            return self._command(parts[2], parts[3], body)
        return 405, "text/plain", b"method not allowed\n"

    def _command(self, backend: str, server: str, body: bytes) -> tuple[int, str, bytes]:
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict) or not set(request) <= {"state", "weight"}:
                raise ValueError('want {"state": "ready|drain|maint"} and/or {"weight": N}')
            if not request:
                raise ValueError('want {"state": "ready|drain|maint"} and/or {"weight": N}')
            if "weight" in request:
                weight = request["weight"]
                if isinstance(weight, bool) or not isinstance(weight, int):
                    raise ValueError("weight must be an integer 0..256")
                self.proxy.control.set_weight(backend, server, weight)
            if "state" in request:
                self.proxy.control.set_admin(backend, server, AdminState(request["state"]))
        except UnknownServer as exc:
            return 404, "application/json", _json({"error": str(exc)})
        except ValueError as exc:
            return 400, "application/json", _json({"error": str(exc)})
        found = [
            s
            for s in self.proxy.control.describe_servers()
            if s["backend"] == backend and s["server"] == server
        ]
        return 200, "application/json", _json(found[0])


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
