"""hastack's proxy beside HAProxy: same backends, same machine, same load generator.

    .venv/bin/python bench/proxy_bench.py [--workers 2] [--runs 3] [--duration 5]

Backends are two single-process nginx instances on loopback (C speed, so they are not what is
measured; the `direct` row shows what they do without a proxy). Load comes from wrk on
loopback. Both proxies run with the same number of processes (hastack: workers; HAProxy:
nbthread), the same balancing (roundrobin over the two servers) and keep-alive to the
servers. Printed: HTTP keep-alive requests/s and p99 latency, TCP-mode requests/s, bulk
throughput (1 MiB responses), each with HAProxy's figure and the ratio (medians of --runs);
then failed requests while one backend is killed under load, for hastack and for HAProxy with
its default checks (inter 2s, fall 3; retries 3 without redispatch), and HAProxy tuned with
`option redispatch` + `retry-on all-retryable-errors`.

Installs haproxy, wrk and nginx-light with apt-get when missing (root). Every process it
starts is stopped by its PID. Traffic stays on 127.0.0.1. A benchmark, not a test: it never
passes or fails on a figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from debs import ensure_programs

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
BIG = 1 << 20  # bytes of the bulk response


def ensure_tools() -> None:
    ensure_programs("haproxy", "wrk", "nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


class Processes:
    """Everything this run starts, stopped by PID at the end (never by name)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)
        self.started = []


NGINX = """\
master_process off;
daemon off;
worker_processes 1;
pid {dir}/nginx-{port}.pid;
error_log {dir}/nginx-{port}.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path {dir}/body-{port};
    proxy_temp_path {dir}/proxy-{port};
    fastcgi_temp_path {dir}/fcgi-{port};
    uwsgi_temp_path {dir}/uwsgi-{port};
    scgi_temp_path {dir}/scgi-{port};
    server {{
        listen {host}:{port} backlog=4096;
        location = / {{ default_type text/plain; return 200 "hello from {port}\\n"; }}
        location = /big {{ alias {dir}/big.bin; }}
    }}
}}
"""


def start_nginx(procs: Processes, work: Path, port: int) -> subprocess.Popen[bytes]:
    conf = work / f"nginx-{port}.conf"
    conf.write_text(NGINX.format(dir=work, port=port, host=HOST))
    process = procs.start(
        ["nginx", "-c", str(conf), "-p", str(work), "-e", str(work / f"nginx-{port}.log")],
        work / f"nginx-{port}.out",
    )
    wait_port(port, process)
    return process


def haproxy_config(
    workers: int, http: int, tcp: int, servers: list[int], *, tuned: bool = False
) -> str:
    lines = "\n".join(f"    server s{i} {HOST}:{p} check" for i, p in enumerate(servers))
    extra = "    option redispatch\n    retry-on all-retryable-errors\n" if tuned else ""
    return f"""\
global
    nbthread {workers}
    maxconn 4000
defaults
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
frontend web
    mode http
    bind {HOST}:{http}
    default_backend app
backend app
    mode http
    balance roundrobin
    option http-keep-alive
{extra}{lines}
frontend tcp
    mode tcp
    bind {HOST}:{tcp}
    default_backend tcpapp
backend tcpapp
    mode tcp
    balance roundrobin
{lines}
"""


def hastack_config(workers: int, http: int, tcp: int, servers: list[int]) -> str:
    items = "".join(
        f"      - {{name: s{i}, address: '{HOST}:{p}'}}\n" for i, p in enumerate(servers)
    )
    return f"""\
workers: {workers}
admin: null
frontends:
  - {{name: web, bind: ['{HOST}:{http}'], backend: app}}
  - {{name: tcp, bind: ['{HOST}:{tcp}'], backend: tcpapp, mode: tcp}}
backends:
  - name: app
    check: {{type: tcp, interval: 2s}}   # the same active checks as HAProxy's default
    servers:
{items}  - name: tcpapp
    mode: tcp
    check: {{type: tcp, interval: 2s}}
    servers:
{items}"""


@dataclass
class Load:
    rps: float
    p99_ms: float
    mbytes: float  # MiB/s transferred
    requests: int
    failed: int  # non-2xx answers + socket errors (connect, read, write, timeout)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_SIZE = {"B": 1 / (1 << 20), "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}


def wrk(url: str, *, connections: int, duration: float, threads: int = 1) -> Load:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "3s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        failed += sum(int(g) for g in errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        failed += int(non2xx.group(1))
    return Load(
        rps=rps,
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan"),
        mbytes=float(transfer.group(1)) * _SIZE[transfer.group(2)] if transfer else 0.0,
        requests=requests,
        failed=failed,
    )


@contextlib.contextmanager
def proxy(
    kind: str, procs: Processes, work: Path, workers: int, servers: list[int], tuned: bool = False
) -> Iterator[tuple[int, int]]:
    http, tcp = free_port(), free_port()
    if kind == "haproxy":
        cfg = work / f"haproxy-{http}.cfg"
        cfg.write_text(haproxy_config(workers, http, tcp, servers, tuned=tuned))
        process = procs.start(["haproxy", "-f", str(cfg), "-db"], work / f"haproxy-{http}.log")
    else:
        cfg = work / f"hastack-{http}.yaml"
        cfg.write_text(hastack_config(workers, http, tcp, servers))
        process = procs.start(
            [sys.executable, "-m", "hastack", "proxy", "run", "-c", str(cfg), "--grace", "0"],
            work / f"hastack-{http}.log",
        )
    try:
        wait_port(http, process)
        wait_port(tcp, process)
        time.sleep(0.5)
        yield http, tcp
    finally:
        procs.stop(process)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="processes / threads per proxy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    ensure_tools()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="hastack-proxy-bench-"))
    (work / "big.bin").write_bytes(os.urandom(BIG))
    try:
        return run(args, procs, work)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, procs: Processes, work: Path) -> int:
    ports = [free_port(), free_port()]
    backends = [start_nginx(procs, work, p) for p in ports]
    print(
        f"{os.cpu_count()} cores; {args.workers} process(es) per proxy; wrk 1 thread, "
        f"{args.connections} connections, {args.duration:g}s x {args.runs} runs (medians)",
        flush=True,
    )
    direct = [
        wrk(f"http://{HOST}:{ports[0]}/", connections=args.connections, duration=args.duration)
        for _ in range(args.runs)
    ]
    direct_bulk = wrk(f"http://{HOST}:{ports[0]}/big", connections=10, duration=args.duration)
    print(
        f"direct to nginx (no proxy): {median([d.rps for d in direct]):,.0f} req/s, "
        f"bulk {direct_bulk.mbytes:,.0f} MiB/s",
        flush=True,
    )
    results: dict[str, dict[str, float]] = {}
    # Both proxies run side by side and the runs alternate (A B, B A, ...), so a drift in what
    # else the machine is doing falls on both alike.
    with (
        proxy("haproxy", procs, work, args.workers, ports) as haproxy,
        proxy("hastack", procs, work, args.workers, ports) as hastack,
    ):
        frontends = {"haproxy": haproxy, "hastack": hastack}
        runs: dict[tuple[str, str], list[Load]] = {}
        measures = (("http", 0, "/", args.connections), ("tcp", 1, "/", args.connections))
        measures += (("bulk", 0, "/big", 10),)
        for name, which, path, connections in measures:
            for i in range(args.runs):
                order = ("haproxy", "hastack") if i % 2 == 0 else ("hastack", "haproxy")
                for kind in order:
                    url = f"http://{HOST}:{frontends[kind][which]}{path}"
                    load = wrk(url, connections=connections, duration=args.duration)
                    runs.setdefault((kind, name), []).append(load)
        for kind in ("haproxy", "hastack"):
            keep, tcp_runs, bulk = (runs[(kind, m)] for m in ("http", "tcp", "bulk"))
            results[kind] = {
                "http": median([r.rps for r in keep]),
                "p99": median([r.p99_ms for r in keep]),
                "tcp": median([r.rps for r in tcp_runs]),
                "bulk": median([r.mbytes for r in bulk]),
                "errors": sum(r.failed for r in keep + tcp_runs + bulk),
            }
            spread = ", ".join(f"{r.rps:,.0f}" for r in keep)
            print(f"{kind}: HTTP runs {spread} req/s", flush=True)
    h, a = results["hastack"], results["haproxy"]
    print()
    print(f"{'measure':<34}{'hastack':>12}{'HAProxy':>12}{'ratio':>8}")
    rows = [
        ("HTTP keep-alive req/s", "http", "{:,.0f}", True),
        ("HTTP keep-alive p99 latency (ms)", "p99", "{:.2f}", False),
        ("TCP mode req/s", "tcp", "{:,.0f}", True),
        ("bulk 1 MiB responses (MiB/s)", "bulk", "{:,.0f}", True),
    ]
    for title, key, fmt, higher in rows:
        ratio = h[key] / a[key] if higher else a[key] / h[key]
        note = "" if higher else " (HAProxy/hastack)"
        print(f"{title:<34}{fmt.format(h[key]):>12}{fmt.format(a[key]):>12}{ratio:>7.2f}x{note}")
    print(f"(errors during these runs: hastack {h['errors']:.0f}, HAProxy {a['errors']:.0f})")

    print("\nbackend killed under load (wrk 8 s, 20 connections, SIGKILL one of two nginx at 2 s):")
    for kind, tuned, label in (
        ("hastack", False, "hastack (tcp check every 2s, passive errors, retries)"),
        ("haproxy", False, "HAProxy default checks (inter 2s fall 3, retries 3)"),
        ("haproxy", True, "HAProxy + option redispatch + retry-on all"),
    ):
        failed, total = kill_run(kind, tuned, procs, work, args.workers)
        print(f"  {label:<56} failed {failed:>6} of {total:>7}", flush=True)
    for backend in backends:
        procs.stop(backend)
    return 0


def kill_run(kind: str, tuned: bool, procs: Processes, work: Path, workers: int) -> tuple[int, int]:
    ports = [free_port(), free_port()]
    victims = [start_nginx(procs, work, p) for p in ports]
    try:
        with proxy(kind, procs, work, workers, ports, tuned=tuned) as (http, _tcp):
            load = subprocess.Popen(
                ["wrk", "-t1", "-c20", "-d8s", "--timeout", "3s", f"http://{HOST}:{http}/"],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.started.append(load)  # type: ignore[arg-type]
            time.sleep(2.0)
            procs.stop(victims[0], signal.SIGKILL)
            out, _ = load.communicate(timeout=40)
    finally:
        for victim in victims:
            procs.stop(victim)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        failed += sum(int(g) for g in errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        failed += int(non2xx.group(1))
    return failed, total


if __name__ == "__main__":
    sys.exit(main())
