"""hastack's proxy beside HAProxy: same backends, same machine, same load generator.

    .venv/bin/python bench/proxy_bench.py [--workers 2] [--runs 3] [--duration 5]
        [--only http,tcp,bulk,https,handshakes,kill,reload]

Backends are two single-process nginx instances on loopback (C speed, so they are not what is
measured; the `direct` row shows what they do without a proxy). Load comes from wrk on
loopback. Both proxies run with the same number of processes (hastack: workers; HAProxy:
nbthread), the same balancing (roundrobin over the two servers) and keep-alive to the
servers. Printed: HTTP keep-alive requests/s and p99 latency, TCP-mode requests/s, bulk
throughput (1 MiB responses), each with HAProxy's figure and the ratio (medians of --runs);
HTTPS keep-alive requests/s and TLS handshakes/s (one request per connection) with the same
certificate (EC P-256, made here). Every measure also runs hastack with HAProxy as its data
plane (`data-plane: haproxy`, what `hastack:haproxy` runs). Then failed requests while one
backend is killed under load, for hastack, hastack:haproxy, and HAProxy with its default
checks (inter 2s, fall 3; retries 3 without redispatch) and tuned with `option redispatch` +
`retry-on all-retryable-errors`; and failed requests across three reloads under load
(`hastack proxy reload`; HAProxy in master-worker mode, SIGUSR2, listeners passed on).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from debs import ensure_programs

HOST = "127.0.0.1"
T = TypeVar("T")
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

    def start(
        self, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
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


def make_certificate(work: Path) -> tuple[Path, Path, Path]:
    """A self-signed EC P-256 certificate for 127.0.0.1: (cert, key, both in one file)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.hastack.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    paths = (work / "bench.crt", work / "bench.key", work / "bench.pem")
    paths[0].write_bytes(cert_pem)
    paths[1].write_bytes(key_pem)
    paths[2].write_bytes(cert_pem + key_pem)  # HAProxy's `crt` wants both in one file
    return paths


@dataclass
class Ports:
    http: int
    tcp: int
    https: int


def haproxy_config(
    workers: int, ports: Ports, servers: list[int], work: Path, *, tuned: bool = False
) -> str:
    lines = "\n".join(f"    server s{i} {HOST}:{p} check" for i, p in enumerate(servers))
    extra = "    option redispatch\n    retry-on all-retryable-errors\n" if tuned else ""
    http, tcp, https = ports.http, ports.tcp, ports.https
    return f"""\
global
    nbthread {workers}
    maxconn 4000
    stats socket {work}/haproxy-{http}.sock mode 600 level admin expose-fd listeners
defaults
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
frontend web
    mode http
    bind {HOST}:{http}
    default_backend app
frontend web-tls
    mode http
    bind {HOST}:{https} ssl crt {work}/bench.pem alpn http/1.1
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


def hastack_config(
    workers: int, ports: Ports, servers: list[int], work: Path, *, haproxy: bool = False
) -> str:
    items = "".join(
        f"      - {{name: s{i}, address: '{HOST}:{p}'}}\n" for i, p in enumerate(servers)
    )
    http, tcp, https = ports.http, ports.tcp, ports.https
    plane = f"data-plane: haproxy\nhaproxy: {{run-dir: '{work}/hh-{http}'}}\n" if haproxy else ""
    return f"""\
{plane}workers: {workers}
admin: null
hard-stop-after: 10s
frontends:
  - {{name: web, bind: ['{HOST}:{http}'], backend: app}}
  - {{name: tcp, bind: ['{HOST}:{tcp}'], backend: tcpapp, mode: tcp}}
  - name: web-tls
    bind: ['{HOST}:{https}']
    backend: app
    tls: {{certificates: [{{cert: '{work}/bench.crt', key: '{work}/bench.key'}}]}}
backends:
  - name: app
    check: {{type: tcp, interval: 2s}}   # the same active checks as HAProxy's default
    servers:
{items}  - name: tcpapp
    mode: tcp
    check: {{type: tcp, interval: 2s}}
    servers:
{items}"""


BASELINE: list[str] = []  # --baseline SRC: the source tree of the "before" hastack


def baseline_config(workers: int, ports: Ports, servers: list[int]) -> str:
    items = "".join(
        f"      - {{name: s{i}, address: '{HOST}:{p}'}}\n" for i, p in enumerate(servers)
    )
    return f"""\
workers: {workers}
admin: null
frontends:
  - {{name: web, bind: ['{HOST}:{ports.http}'], backend: app}}
  - {{name: tcp, bind: ['{HOST}:{ports.tcp}'], backend: tcpapp, mode: tcp}}
backends:
  - name: app
    check: {{type: tcp, interval: 2s}}
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


def wrk(
    url: str, *, connections: int, duration: float, threads: int = 1, close: bool = False
) -> Load:
    extra = ["-H", "Connection: close"] if close else []
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "3s",
            "--latency",
            *extra,
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
    failed, requests = _failures(out)
    return Load(
        rps=rps,
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan"),
        mbytes=float(transfer.group(1)) * _SIZE[transfer.group(2)] if transfer else 0.0,
        requests=requests,
        failed=failed,
    )


@dataclass
class Running:
    kind: str
    ports: Ports
    process: subprocess.Popen[bytes]
    config: Path
    pid_file: Path

    def reload(self) -> None:
        if self.kind == "haproxy":
            os.kill(self.process.pid, signal.SIGUSR2)  # the master starts new workers
        else:
            subprocess.run(
                [sys.executable, "-m", "hastack", "proxy", "reload", "-c", str(self.config),
                 "--pid-file", str(self.pid_file)],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip


@contextlib.contextmanager
def proxy(
    kind: str, procs: Processes, work: Path, workers: int, servers: list[int], tuned: bool = False
) -> Iterator[Running]:
    ports = Ports(free_port(), free_port(), free_port())
    pid_file = work / f"{kind}-{ports.http}.pid"
    if kind == "haproxy":
        cfg = work / f"haproxy-{ports.http}.cfg"
        cfg.write_text(haproxy_config(workers, ports, servers, work, tuned=tuned))
        process = procs.start(
            ["haproxy", "-W", "-db", "-f", str(cfg)], work / f"haproxy-{ports.http}.log"
        )
    elif kind == "baseline":
        # Another hastack source tree (e.g. main's), plain HTTP and TCP only: the before of a
        # before/after measured in the same run. Its configuration uses no newer keys.
        cfg = work / f"baseline-{ports.http}.yaml"
        cfg.write_text(baseline_config(workers, ports, servers))
        env = {**os.environ, "PYTHONPATH": BASELINE[0]}
        process = procs.start(
            [sys.executable, "-m", "hastack", "proxy", "run", "-c", str(cfg), "--grace", "0"],
            work / f"baseline-{ports.http}.log",
            env=env,
        )
        ports = Ports(ports.http, ports.tcp, ports.http)  # no TLS frontend
    else:
        cfg = work / f"hastack-{ports.http}.yaml"
        cfg.write_text(
            hastack_config(workers, ports, servers, work, haproxy=kind == "hastack-haproxy")
        )
        process = procs.start(
            [sys.executable, "-m", "hastack", "proxy", "run", "-c", str(cfg), "--grace", "0",
             "--pid-file", str(pid_file)],
            work / f"hastack-{ports.http}.log",
        )  # fmt: skip
    try:
        for port in (ports.http, ports.tcp, ports.https):
            wait_port(port, process)
        time.sleep(0.5)
        yield Running(kind, ports, process, cfg, pid_file)
    finally:
        procs.stop(process)


def median(values: list[float]) -> float:
    return statistics.median(values)


SIDE_BY_SIDE = ("http", "tcp", "bulk", "https", "handshakes")
SECTIONS = (*SIDE_BY_SIDE, "kill", "reload")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="processes / threads per proxy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated: {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also run the hastack of this source tree (HTTP, TCP, bulk): before/after in one run",
    )
    args = parser.parse_args()
    if args.baseline:
        BASELINE.append(str(Path(args.baseline).resolve()))
    args.only = [o for o in args.only.split(",") if o]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    ensure_tools()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="hastack-proxy-bench-"))
    (work / "big.bin").write_bytes(os.urandom(BIG))
    make_certificate(work)
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
        f"{args.connections} connections, {args.duration:g}s x {args.runs} runs (medians); "
        f"native hot path: {native_state()}",
        flush=True,
    )
    measures = [m for m in SIDE_BY_SIDE if m in args.only]
    if measures:
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
        guarded("side by side", side_by_side, args, procs, work, ports, measures)
    if "kill" in args.only:
        print(
            "\nbackend killed under load (wrk 8 s, 20 connections, SIGKILL one of two nginx at "
            "2 s):"
        )
        for kind, tuned, label in (
            ("hastack", False, "hastack (tcp check every 2s, passive errors, retries)"),
            ("hastack-haproxy", False, "hastack:haproxy (hastack's checks, HAProxy retries)"),
            ("haproxy", False, "HAProxy default checks (inter 2s fall 3, retries 3)"),
            ("haproxy", True, "HAProxy + option redispatch + retry-on all"),
        ):
            result = guarded(label, kill_run, kind, tuned, procs, work, args.workers)
            if result is not None:
                print(f"  {label:<56} failed {result[0]:>6} of {result[1]:>7}", flush=True)
    if "reload" in args.only:
        print("\nthree reloads under load (wrk 8 s, 20 connections, a reload at 2, 4 and 6 s):")
        for kind, label in (
            ("hastack", "hastack (hastack proxy reload)"),
            ("hastack-haproxy", "hastack:haproxy (hastack proxy reload)"),
            ("haproxy", "HAProxy (master-worker, SIGUSR2, expose-fd listeners)"),
        ):
            result = guarded(label, reload_run, kind, procs, work, args.workers, ports)
            if result is not None:
                print(f"  {label:<56} failed {result[0]:>6} of {result[1]:>7}", flush=True)
    for backend in backends:
        procs.stop(backend)
    return 0


def guarded(what: str, run: Callable[..., T], *args: Any) -> T | None:
    """One section; a failure is printed and the others still run (one lock hold measures
    everything it can)."""
    try:
        return run(*args)
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError, ValueError) as exc:
        print(f"  {what}: FAILED: {type(exc).__name__}: {exc}", flush=True)
        return None


def native_state() -> str:
    try:
        from hastack.proxy import native
    except ImportError:
        return "?"
    return native.state()


KINDS = ("haproxy", "hastack", "hastack-haproxy")
LABELS = {
    "haproxy": "HAProxy",
    "hastack": "hastack",
    "hastack-haproxy": "hastack:haproxy",
    "baseline": "baseline",
}


def side_by_side(
    args: argparse.Namespace, procs: Processes, work: Path, ports: list[int], measures: list[str]
) -> None:
    results: dict[str, dict[str, float]] = {}
    # The proxies run side by side and the runs rotate (A B C, B C A, ...), so a drift in what
    # else the machine is doing falls on all alike.
    kinds = (*KINDS, "baseline") if BASELINE else KINDS
    with contextlib.ExitStack() as stack:
        frontends = {
            kind: stack.enter_context(proxy(kind, procs, work, args.workers, ports)).ports
            for kind in kinds
        }
        plan = {
            "http": ("http", "/", args.connections, False),
            "tcp": ("tcp", "/", args.connections, False),
            "bulk": ("http", "/big", 10, False),
            "https": ("https", "/", args.connections, False),
            "handshakes": ("https", "/", args.connections, True),
        }
        runs: dict[tuple[str, str], list[Load]] = {}
        for name in measures:
            which, path, connections, close = plan[name]
            for i in range(args.runs):
                for kind in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                    if kind == "baseline" and which == "https":
                        continue
                    port = getattr(frontends[kind], which)
                    scheme = "https" if which == "https" else "http"
                    url = f"{scheme}://{HOST}:{port}{path}"
                    load = wrk(url, connections=connections, duration=args.duration, close=close)
                    runs.setdefault((kind, name), []).append(load)
        for kind in kinds:
            done = [m for m in measures if (kind, m) in runs]
            results[kind] = {"errors": sum(r.failed for m in done for r in runs[(kind, m)])}
            for name in done:
                value = [r.mbytes if name == "bulk" else r.rps for r in runs[(kind, name)]]
                results[kind][name] = median(value)
            if "http" in measures:
                results[kind]["p99"] = median([r.p99_ms for r in runs[(kind, "http")]])
                spread = ", ".join(f"{r.rps:,.0f}" for r in runs[(kind, "http")])
                print(f"{LABELS[kind]}: HTTP runs {spread} req/s", flush=True)
    h, hh, a = results["hastack"], results["hastack-haproxy"], results["haproxy"]
    print()
    print(
        f"{'measure':<36}{'hastack':>10}{'ratio':>7}{'hastack:haproxy':>17}{'ratio':>7}"
        f"{'HAProxy':>10}"
    )
    rows = [
        ("HTTP keep-alive req/s", "http", "{:,.0f}", True),
        ("HTTP keep-alive p99 latency (ms)", "p99", "{:.2f}", False),
        ("TCP mode req/s", "tcp", "{:,.0f}", True),
        ("bulk 1 MiB responses (MiB/s)", "bulk", "{:,.0f}", True),
        ("HTTPS keep-alive req/s", "https", "{:,.0f}", True),
        ("TLS handshakes/s (1 request each)", "handshakes", "{:,.0f}", True),
    ]
    for title, key, fmt, higher in rows:
        if key not in h:
            continue

        def ratio(x: dict[str, float], key: str = key, higher: bool = higher) -> str:
            return f"{(x[key] / a[key] if higher else a[key] / x[key]):.2f}x"

        print(
            f"{title:<36}{fmt.format(h[key]):>10}{ratio(h):>7}{fmt.format(hh[key]):>17}"
            f"{ratio(hh):>7}{fmt.format(a[key]):>10}"
        )
    print("(ratios: against HAProxy; for p99, HAProxy's over ours)")
    if "baseline" in results:
        b = results["baseline"]
        for title, key, fmt, higher in rows:
            if key in b:
                ratio = b[key] / a[key] if higher else a[key] / b[key]
                print(f"baseline {title:<36}{fmt.format(b[key]):>10}{ratio:>6.2f}x")
    print(
        f"(errors during these runs: hastack {h['errors']:.0f}, hastack:haproxy "
        f"{hh['errors']:.0f}, HAProxy {a['errors']:.0f})"
    )


def _failures(out: str) -> tuple[int, int]:
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        failed += sum(int(g) for g in errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        failed += int(non2xx.group(1))
    return failed, total


def _load(procs: Processes, port: int) -> subprocess.Popen[str]:
    load = subprocess.Popen(
        ["wrk", "-t1", "-c20", "-d8s", "--timeout", "3s", f"http://{HOST}:{port}/"],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.started.append(load)  # type: ignore[arg-type]
    return load


def kill_run(kind: str, tuned: bool, procs: Processes, work: Path, workers: int) -> tuple[int, int]:
    ports = [free_port(), free_port()]
    victims = [start_nginx(procs, work, p) for p in ports]
    try:
        with proxy(kind, procs, work, workers, ports, tuned=tuned) as running:
            load = _load(procs, running.ports.http)
            time.sleep(2.0)
            procs.stop(victims[0], signal.SIGKILL)
            out, _ = load.communicate(timeout=40)
    finally:
        for victim in victims:
            procs.stop(victim)
    return _failures(out)


def reload_run(
    kind: str, procs: Processes, work: Path, workers: int, servers: list[int]
) -> tuple[int, int]:
    with proxy(kind, procs, work, workers, servers, tuned=True) as running:
        load = _load(procs, running.ports.http)
        for _ in range(3):
            time.sleep(2.0)
            running.reload()
        out, _ = load.communicate(timeout=40)
    return _failures(out)


if __name__ == "__main__":
    sys.exit(main())
