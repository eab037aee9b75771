"""The demo API's HTTP server (hastack.lab.net.demo_api) on loopback: its requests run on a
few threads that outlive them, so what a thread's oslo.cache client learnt about a dead
memcached server (a `threading.local` in dogpile.cache) is still known at the next request."""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

from hastack.lab.net.demo_api import PooledHTTPServer

LOCAL = threading.local()


class _Counting(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        LOCAL.served = getattr(LOCAL, "served", 0) + 1  # per thread, as dogpile's client is
        data = json.dumps({"thread": threading.get_ident(), "served": LOCAL.served}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_requests_run_on_a_few_threads_that_keep_their_state() -> None:
    server = PooledHTTPServer(("127.0.0.1", 0), _Counting, workers=3)
    runner = threading.Thread(target=server.serve_forever, daemon=True)
    runner.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    def get(_: int) -> dict[str, int]:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return dict(json.loads(answer.read()))

    try:
        with ThreadPoolExecutor(6) as clients:
            answers = list(clients.map(get, range(60)))
    finally:
        server.shutdown()
        server.server_close()
    threads = {a["thread"] for a in answers}
    assert 1 <= len(threads) <= 3  # never a thread per request
    assert max(a["served"] for a in answers) >= 20  # a thread's state outlived its requests
