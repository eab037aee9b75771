"""`python -m hastack.lab.net.demo_api --port 8080`: the demo's HTTP API service.

A stand-in for an OpenStack API behind a VIP: every GET answers 200 with a small JSON body
naming the host that served it (the lab host's own hostname, from its UTS namespace), so a
client can see the VIP move. Run by the cluster as a `hastack:service` resource.

With `--cache HOST:PORT,... --etcd-config FILE` it also serves `/kv/KEY` with cache-aside through
oslo.cache (hastack.lab.net.cache_api; the lab extra).

Requests are served by a fixed pool of long-lived threads, as an OpenStack API's WSGI server
serves them (uwsgi's or mod_wsgi's threads), not by a thread per request: oslo.cache's
memcached client lives in a `threading.local` (dogpile.cache's memcached backends), so what
it learnt about a failing server lives as long as its thread. With a thread per request every
request starts with a new client that has forgotten the dead server — each request on that
server's keys pays the socket timeout, and the server never leaves the hash ring (measured in
M2: a 0.5 s miss on a third of the keys for the whole partition).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

__all__ = ["main"]


class _Handler(BaseHTTPRequestHandler):
    cache: Any = None  # a CacheAside in cache-aside mode

    def do_GET(self) -> None:
        status = 200
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/kv/") and self.cache is not None:
            from hastack.lab.net.cache_api import handle  # noqa: PLC0415 (the lab extra)

            status, answer = handle(self.cache, url.path, urllib.parse.parse_qs(url.query))
            answer["node"] = socket.gethostname()
            body = json.dumps(answer)
        else:
            body = json.dumps({"node": socket.gethostname(), "pid": os.getpid(), "path": self.path})
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would fill the service log during a load


class PooledHTTPServer(HTTPServer):
    """An HTTP server whose requests run on at most `workers` threads that outlive them."""

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 workers: int) -> None:  # fmt: skip
        super().__init__(address, handler)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api")

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack.lab.net.demo_api")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--cache", help="memcached servers HOST:PORT,... (cache-aside mode)")
    parser.add_argument(
        "--etcd-config",
        help="the database for /kv/: a client configuration (cluster, etcd: endpoints, tls)",
    )
    parser.add_argument("--workers", type=int, default=8, help="threads serving requests")
    parser.add_argument("--socket-timeout", type=float, default=0.5)
    parser.add_argument(
        "--retry-attempts",
        type=int,
        default=None,
        help="failed retries before a server leaves the hash ring (default: never)",
    )
    parser.add_argument("--retry-delay", type=float, default=1.0)
    parser.add_argument("--dead-timeout", type=float, default=10.0)
    parser.add_argument(
        "--errors-raise", action="store_true", help="cache errors reach the caller (anchor)"
    )
    args = parser.parse_args(argv)
    if args.cache:
        from hastack.lab.net.cache_api import (  # noqa: PLC0415 (the lab extra)
            NEVER_DROP,
            CacheAside,
            CacheSettings,
        )
        from hastack.model.agent_config import parse_client_config  # noqa: PLC0415

        settings = CacheSettings(
            servers=tuple(s for s in args.cache.split(",") if s),
            socket_timeout=args.socket_timeout,
            retry_attempts=args.retry_attempts or NEVER_DROP,
            retry_delay=args.retry_delay,
            dead_timeout=args.dead_timeout,
            errors_as_misses=not args.errors_raise,
        )
        if not args.etcd_config:
            parser.error("--cache needs --etcd-config (the database behind the cache)")
        client = parse_client_config(Path(args.etcd_config).read_text(), args.etcd_config)
        _Handler.cache = CacheAside(settings, client.etcd)
    server = PooledHTTPServer((args.bind, args.port), _Handler, args.workers)
    print(f"demo API on {args.bind}:{args.port} as {socket.gethostname()}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
