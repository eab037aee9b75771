"""`python -m hastack.lab.net.demo_api --port 8080`: the demo's HTTP API service.

A stand-in for an OpenStack API behind a VIP: every GET answers 200 with a small JSON body
naming the host that served it (the lab host's own hostname, from its UTS namespace), so a
client can see the VIP move. Run by the cluster as a `hastack:service` resource.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["main"]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"node": socket.gethostname(), "pid": os.getpid(), "path": self.path})
        data = (body + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would fill the service log during a load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack.lab.net.demo_api")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args(argv)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((args.bind, args.port), _Handler)
    server.daemon_threads = True
    print(f"demo API on {args.bind}:{args.port} as {socket.gethostname()}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
