"""HAProxy as the data plane: `data-plane: haproxy` (and the `hastack:haproxy` resource).

hastack keeps everything but the bytes — the configuration model, the control plane (checks of
every type, Galera's included; the cluster source; run-time commands; the sticky writer) and
the admin endpoint — and Debian's haproxy moves them, for users who want its speed, HTTP/2 and
ecosystem. The control plane's `BackendView`s reach HAProxy through its run-time API (the
stats socket), so "a stopped instance leaves the pool at once" holds here too:

    a server the source adds       add server B/S ADDR weight W   + enable server B/S
    a server the source removes    set server B/S state maint, shutdown sessions, del server
    up / drain / down, maint       set server B/S state ready | drain | maint
    a new weight                   set server B/S weight W
    a sticky backend               every usable server but the active one in drain

    render(config, views, files)   the haproxy.cfg of a configuration and the present server
                                   states (pure): a reload starts from what is, not from the
                                   file's servers
    command(socket, line)          one run-time command
    HaproxyPlane                   runs `haproxy -W` (master-worker), pushes views, reloads
                                   with SIGUSR2 (the master passes the listeners to the new
                                   worker: no connection lost), reads counters (`show stat`)

Checks are hastack's (HAProxy renders none): one prober for both data planes, and a state that
HAProxy's own checks would not know (the cluster's, Galera's wsrep). What HAProxy does not get:
passive error counting (its `observe` needs its own checks; `retry-on` and `option redispatch`
keep requests from failing meanwhile), `timeouts.no-server`, and the retry buffer size (its
`tune.bufsize` applies). Rendered for HAProxy 2.6 (Debian 12).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hastack.errors import HastackError
from hastack.proxy.config import (
    BackendSpec,
    Balance,
    FrontendSpec,
    Mode,
    OnMarkedDown,
    ProxyConfig,
    TlsVersion,
)
from hastack.proxy.stats import add_into, counters_only
from hastack.proxy.view import BackendView, ServerState, ServerView

__all__ = ["HaproxyPlane", "Wanted", "command", "render", "wanted_states"]

log = logging.getLogger("hastack.proxy")

START_TIMEOUT = 15.0
_IDEMPOTENT = "GET HEAD PUT DELETE OPTIONS TRACE"
_BALANCE = {
    Balance.ROUNDROBIN: "roundrobin",
    Balance.LEASTCONN: "leastconn",
    Balance.SOURCE: "source",
    Balance.FIRST: "first",
}
_TLS = {TlsVersion.TLS1_2: "TLSv1.2", TlsVersion.TLS1_3: "TLSv1.3"}


@dataclass(frozen=True, slots=True)
class Wanted:
    """What HAProxy should hold for one server."""

    host: str
    port: int
    state: str  # ready | drain | maint
    weight: int
    down: bool  # marked down (not an operator's maint): its sessions may be cut


def wanted_states(view: BackendView, spec: BackendSpec) -> dict[str, Wanted]:
    """The run-time state of each server of a backend, from the control plane's view."""
    out: dict[str, Wanted] = {}
    for server in view.servers:
        if server.state is ServerState.UP:
            state = "ready"
            if spec.sticky and server.name != view.active:
                state = "drain"  # one writer: new sessions only to the active server
        elif server.state is ServerState.DRAIN:
            state = "drain"
        else:
            state = "maint"
        out[server.name] = Wanted(
            server.host,
            server.port,
            state,
            server.weight,
            server.state is ServerState.DOWN,
        )
    return out


def _as_maint(want: Wanted) -> Wanted:
    return Wanted(want.host, want.port, "maint", want.weight, want.down)


def _seconds(value: float) -> str:
    return f"{round(value * 1000)}ms"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _server_line(
    spec: BackendSpec, server: ServerView, wanted: Wanted, backup: bool, files: Mapping[str, str]
) -> str:
    words = [f"server {server.name} {_address(server.host, server.port)}"]
    words.append(f"weight {server.weight}")
    if backup:
        words.append("backup")
    if server.maxconn:
        words.append(f"maxconn {server.maxconn}")
    if wanted.state != "ready":
        words.append("disabled")  # pushed to its exact state once HAProxy runs
    words += _server_tls(spec, files)
    if spec.mode is Mode.HTTP:
        words.append(f"pool-max-conn {spec.pool.max_idle}")
        words.append(f"pool-purge-delay {_seconds(spec.pool.idle_timeout)}")
    return "    " + " ".join(words)


def _server_tls(spec: BackendSpec, files: Mapping[str, str]) -> list[str]:
    tls = spec.tls
    if tls is None:
        return []
    words = ["ssl", f"ssl-min-ver {_TLS[tls.min_version]}"]
    if tls.verify:
        words.append("verify required")
        words.append(f"ca-file {tls.ca or files.get('system-ca', '@system-ca')}")
        if tls.sni:
            words.append(f"sni str({tls.sni}) verifyhost {tls.sni}")
    else:
        words.append("verify none")
    if spec.mode is Mode.HTTP:
        words.append("alpn http/1.1")
    return words


def _frontend(frontend: FrontendSpec, files: Mapping[str, str]) -> list[str]:
    lines = [f"frontend {frontend.name}", f"    mode {frontend.mode.value}"]
    tls = frontend.tls
    for address in frontend.bind:
        words = [f"    bind {address}", f"backlog {frontend.backlog}"]
        if frontend.freebind:
            words.append("transparent")  # binds an address not (yet) here (IP_FREEBIND)
        if tls is not None:
            words.append("ssl")
            words += [f"crt {files[c.cert]}" for c in tls.certificates]
            words.append(f"ssl-min-ver {_TLS[tls.min_version]}")
            alpn = (
                tls.alpn
                if tls.alpn is not None
                else (["http/1.1"] if frontend.mode is Mode.HTTP else [])
            )
            if alpn:
                words.append("alpn " + ",".join(alpn))
            if tls.ciphers:
                words.append(f"ciphers {tls.ciphers}")
        lines.append(" ".join(words))
    lines.append(f"    timeout client {_seconds(frontend.timeouts.client)}")
    if frontend.mode is Mode.HTTP:
        lines.append(f"    timeout http-request {_seconds(frontend.timeouts.http_request)}")
        lines.append(f"    timeout http-keep-alive {_seconds(frontend.timeouts.http_keep_alive)}")
        lines.append("    option http-keep-alive")
        # On a reload the old workers answer one more request on an idle connection (with
        # Connection: close) instead of closing it under a client that is sending one.
        lines.append("    option idle-close-on-response")
        if frontend.http.forwarded_for:
            lines.append("    option forwardfor")
            if tls is not None:
                lines.append("    http-request set-header X-Forwarded-Proto https")
    lines.append(f"    default_backend {frontend.backend}")
    return lines


def _backend(spec: BackendSpec, view: BackendView | None, files: Mapping[str, str]) -> list[str]:
    lines = [f"backend {spec.name}", f"    mode {spec.mode.value}"]
    lines.append(f"    balance {_BALANCE[spec.balance]}")
    if spec.balance is Balance.SOURCE:
        lines.append("    hash-type consistent")  # servers come and go at run time
    lines.append(f"    retries {spec.retries}")
    lines.append("    option redispatch" if spec.redispatch else "    no option redispatch")
    if spec.mode is Mode.HTTP:
        # As the built-in proxy: connect failures, and resets or silence before any answer
        # for idempotent requests only; a 5xx is an answer and is passed on.
        lines.append("    retry-on conn-failure empty-response response-timeout")
        lines.append(f"    http-request disable-l7-retry unless {{ method {_IDEMPOTENT} }}")
        lines.append("    http-reuse safe")
    if spec.all_backups:
        lines.append("    option allbackups")
    lines.append(f"    timeout connect {_seconds(spec.timeouts.connect)}")
    lines.append(f"    timeout server {_seconds(spec.timeouts.server)}")
    lines.append(f"    timeout queue {_seconds(spec.timeouts.queue)}")
    backups = {s.name for s in spec.servers if s.backup}
    if view is not None:
        wanted = wanted_states(view, spec)
        for server in view.servers:
            lines.append(
                _server_line(spec, server, wanted[server.name], server.name in backups, files)
            )
    return lines


def render(
    config: ProxyConfig,
    views: Mapping[str, BackendView],
    files: Mapping[str, str],
    socket_path: str,
) -> str:
    """The haproxy.cfg for `config` with the servers and states of `views`.

    `files` maps each frontend certificate path to the PEM HAProxy reads (certificate and key
    in one file, which the plane writes). No health checks: hastack's control plane checks.
    """
    max_headers = max(f.http.max_headers for f in config.frontends)
    lines = [
        "# Written by hastack (data-plane: haproxy); changes here are overwritten.",
        "global",
        f"    nbthread {config.workers}",
        f"    stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        f"    hard-stop-after {_seconds(config.hard_stop_after)}",
        f"    tune.http.maxhdr {max_headers}",
        "defaults",
        "    timeout connect 1s",
        "    timeout client 60s",
        "    timeout server 60s",
        "",
    ]
    for frontend in config.frontends:
        lines += [*_frontend(frontend, files), ""]
    for backend in config.backends:
        lines += [*_backend(backend, views.get(backend.name), files), ""]
    return "\n".join(lines)


def unsupported(config: ProxyConfig) -> list[str]:
    """What the configuration asks that HAProxy does differently (logged at start)."""
    notes = []
    for backend in config.backends:
        if backend.passive.error_limit and backend.check is not None:
            notes.append(f"backend {backend.name}: passive error counting is the built-in's only")
        if backend.timeouts.no_server > 0:
            notes.append(f"backend {backend.name}: timeouts.no-server is the built-in's only")
    return notes


async def command(socket_path: str, line: str, timeout: float = 5.0) -> str:
    """One run-time API command; its answer (HAProxy closes after answering)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(socket_path)
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
    return answer.decode(errors="replace")


_COUNTED = {
    "stot": "total",
    "smax": "max_load",
    "bin": "bytes_in",
    "bout": "bytes_out",
    "econ": "conn_errors",
    "eresp": "resp_errors",
    "wretr": "retries",
    "wredis": "redispatches",
}


def _int(row: Mapping[str, str], key: str) -> int:
    value = row.get(key) or "0"
    return int(value) if value.isdigit() else 0


def parse_stat(text: str) -> dict[str, Any]:
    """`show stat` CSV in the counters' shape of the built-in data plane (stats.py)."""
    rows = list(csv.DictReader(io.StringIO(text.lstrip("# "))))
    frontends: dict[str, Any] = {}
    backends: dict[str, Any] = {}
    for row in rows:
        name, kind = row.get("pxname", ""), row.get("svname", "")
        responses = [_int(row, f"hrsp_{c}") for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")]
        if kind == "FRONTEND":
            frontends[name] = {
                "conns_total": _int(row, "stot"),
                "conns_cur": _int(row, "scur"),
                "requests": _int(row, "req_tot"),
                "responses": responses,
                "bytes_in": _int(row, "bin"),
                "bytes_out": _int(row, "bout"),
                "bad_requests": _int(row, "ereq"),
                "timeouts": 0,
            }
        elif kind == "BACKEND":
            entry = backends.setdefault(name, {"servers": {}})
            entry["queue_cur"] = _int(row, "qcur")
            entry["queue_max"] = _int(row, "qmax")
        else:
            entry = backends.setdefault(name, {"servers": {}})
            server: dict[str, Any] = {ours: _int(row, theirs) for theirs, ours in _COUNTED.items()}
            server["load"] = _int(row, "scur")
            server["responses"] = responses
            entry["servers"][kind] = server
    return {"frontends": frontends, "backends": backends}


# HAProxy's master gets SIGTERM if the process that started it dies, as the built-in workers
# stop when their supervisor's socket closes (Linux PR_SET_PDEATHSIG, kept across exec). Set
# by util-linux's `setpriv` (in every Debian), not by a `preexec_fn`: Python code between fork
# and exec in a process with threads (every agent: gRPC's) may deadlock or crash — one start
# in the full test run died so, with gRPC's poller complaining in the child before the exec.
_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "TERM", "--")


class HaproxyPlane:
    """Debian's haproxy as the data plane of one proxy, driven by the control plane's views."""

    def __init__(self, config: ProxyConfig, folder: Path, binary: str = "haproxy") -> None:
        self.config = config
        self.folder = folder
        self.binary = binary
        self.socket = str(folder / "haproxy.sock")
        self.cfg = folder / "haproxy.cfg"
        self.views: dict[str, BackendView] = {}
        self.applied: dict[str, dict[str, Wanted]] = {}  # what HAProxy holds, as we know it
        self.process: asyncio.subprocess.Process | None = None
        self.retired: dict[str, Any] = {}  # counters of HAProxy workers replaced by a reload
        self._wake = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._signature: tuple[tuple[float, int], ...] = ()

    # ---- the control plane's side ---------------------------------------------------------

    def apply(self, view: BackendView) -> None:
        self.views[view.name] = view
        self._wake.set()

    # ---- life ------------------------------------------------------------------------------

    def _files(self) -> dict[str, str]:
        """Each frontend certificate with its key in one PEM, as HAProxy's `crt` wants."""
        out: dict[str, str] = {}
        certs = self.folder / "certs"
        certs.mkdir(mode=0o700, exist_ok=True)
        for frontend in self.config.frontends:
            if frontend.tls is None:
                continue
            for i, cert in enumerate(frontend.tls.certificates):
                body = Path(cert.cert).read_bytes()
                if cert.key:
                    body = body.rstrip(b"\n") + b"\n" + Path(cert.key).read_bytes()
                path = certs / f"{frontend.name}-{i}.pem"
                partial = path.with_suffix(".new")
                partial.write_bytes(body)
                partial.chmod(0o600)
                partial.replace(path)
                out[cert.cert] = str(path)
        return out

    def _cert_signature(self) -> tuple[tuple[float, int], ...]:
        out = []
        for frontend in self.config.frontends:
            for cert in frontend.tls.certificates if frontend.tls else []:
                for path in (cert.cert, cert.key):
                    if path:
                        try:
                            st = os.stat(path)
                            out.append((st.st_mtime, st.st_size))
                        except OSError:
                            out.append((0.0, -1))
        return tuple(out)

    def _write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = render(self.config, self.views, self._files(), self.socket)
        partial = self.cfg.with_suffix(".new")
        partial.write_text(text)
        partial.replace(self.cfg)
        self._signature = self._cert_signature()
        # What the new worker will hold: every server as rendered (not ready = `disabled`).
        self.applied = {}
        for backend in self.config.backends:
            view = self.views.get(backend.name)
            if view is None:
                continue
            self.applied[backend.name] = {
                name: want if want.state == "ready" else _as_maint(want)
                for name, want in wanted_states(view, backend).items()
            }

    async def _check(self) -> None:
        """`haproxy -c`: a configuration HAProxy would refuse never reaches it."""
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            "-q",
            "-f",
            str(self.cfg),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise HastackError(f"haproxy refused the configuration: {out.decode().strip()}")

    async def start(self) -> None:
        for note in unsupported(self.config):
            log.warning("proxy: data-plane haproxy: %s", note)
        self._write_config()
        await self._check()
        log_path = self.folder / "haproxy.log"
        with log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *_DIE_WITH_PARENT,
                self.binary,
                "-W",
                "-db",
                "-f",
                str(self.cfg),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        try:
            await self._wait_worker(None)
        except BaseException:
            await self._kill()
            raise
        self._pusher = asyncio.get_running_loop().create_task(self._push_loop())
        self._watcher = asyncio.get_running_loop().create_task(self._watch_certificates())
        self._wake.set()
        log.info("proxy: haproxy running (master pid %d)", self.process.pid)

    async def _worker_pid(self) -> int | None:
        try:
            info = await command(self.socket, "show info", timeout=1.0)
        except (OSError, TimeoutError):
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        return None

    async def _wait_worker(self, old: int | None) -> int:
        """Until a worker other than `old` answers on the stats socket."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            if self.process is None or self.process.returncode is not None:
                raise HastackError(f"haproxy exited: {self._log_tail()}")
            pid = await self._worker_pid()
            if pid is not None and pid != old:
                return pid
            await asyncio.sleep(0.05)
        raise HastackError(f"haproxy did not start within {START_TIMEOUT:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = (self.folder / "haproxy.log").read_text(errors="replace").splitlines()
            return " / ".join(lines[-3:])
        return ""

    async def reload(self, config: ProxyConfig) -> None:
        """Serve `config` (a reload of hastack, or changed certificate files): a new HAProxy
        worker with the listeners of the old one (master-worker, SIGUSR2), rendered with the
        present servers and states so that nothing is missing meanwhile."""
        async with self._lock:
            before = self.config
            self.config = config
            try:
                self._write_config()
                await self._check()
            except (HastackError, OSError) as exc:
                self.config = before
                self._write_config()
                raise HastackError(str(exc)) from None
            old = await self._worker_pid()
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                last = parse_stat(await command(self.socket, "show stat", timeout=2.0))
                add_into(self.retired, counters_only(last))  # the new worker counts from 0
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGUSR2)
            await self._wait_worker(old)
        self._wake.set()

    async def _watch_certificates(self) -> None:
        intervals = [f.tls.watch_interval for f in self.config.frontends if f.tls]
        if not intervals:
            return
        while True:
            await asyncio.sleep(min(intervals))
            if self._cert_signature() != self._signature:
                log.info("proxy: certificate files changed; haproxy reloads them")
                try:
                    await self.reload(self.config)
                except HastackError as exc:
                    log.error("proxy: changed certificates not used: %s", exc)

    async def stop(self, grace: float = 0.0) -> None:
        for task in (self._pusher, self._watcher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        process = self.process
        if process is None or process.returncode is not None:
            return
        # SIGUSR1: soft stop (stop listening, let sessions finish); SIGTERM: now.
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGUSR1 if grace > 0 else signal.SIGTERM)
        try:
            async with asyncio.timeout(grace + 3.0):
                await process.wait()
        except TimeoutError:
            await self._kill()

    async def _kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()

    # ---- pushing views ---------------------------------------------------------------------

    async def _push_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                try:
                    await self._push()
                except (OSError, TimeoutError, HastackError) as exc:
                    log.warning("proxy: haproxy run-time API: %s; trying again", exc)
                    await asyncio.sleep(0.2)
                    self._wake.set()

    async def _push(self) -> None:
        for backend in self.config.backends:
            view = self.views.get(backend.name)
            if view is None:
                continue
            wanted = wanted_states(view, backend)
            have = self.applied.setdefault(backend.name, {})
            for name in [n for n in have if n not in wanted]:
                if await self._remove(backend, name):
                    del have[name]
                else:
                    have[name] = _as_maint(have[name])
                    self._retry_soon()
            for name, want in wanted.items():
                before = have.get(name)
                if before is not None and (before.host, before.port) != (want.host, want.port):
                    if not await self._remove(backend, name):
                        self._retry_soon()
                        continue
                    before = None
                if before is None:
                    await self._add(backend, name, want)
                    before = Wanted(want.host, want.port, "maint", want.weight, False)
                if before.weight != want.weight:
                    await self._run(f"set server {backend.name}/{name} weight {want.weight}")
                if before.state != want.state:
                    await self._run(f"set server {backend.name}/{name} state {want.state}")
                    cut = backend.on_marked_down is OnMarkedDown.SHUTDOWN_SESSIONS
                    if want.state == "maint" and want.down and cut:
                        await self._run(f"shutdown sessions server {backend.name}/{name}")
                have[name] = want

    async def _add(self, backend: BackendSpec, name: str, want: Wanted) -> None:
        words = [f"add server {backend.name}/{name} {_address(want.host, want.port)}"]
        words.append(f"weight {want.weight}")
        words += _server_tls(backend, {})
        await self._run(" ".join(words))
        log.info("proxy: haproxy: server %s/%s added", backend.name, name)

    async def _remove(self, backend: BackendSpec, name: str) -> bool:
        """Out of the pool at once (maint); deleted when no session uses it any more — False
        while some still do (they finish, or are cut with shutdown-sessions)."""
        target = f"{backend.name}/{name}"
        await self._run(f"set server {target} state maint")
        if backend.on_marked_down is OnMarkedDown.SHUTDOWN_SESSIONS:
            await self._run(f"shutdown sessions server {target}")
        answer = await command(self.socket, f"del server {target}")
        if "deleted" in answer or "No such server" in answer:
            log.info("proxy: haproxy: server %s removed", target)
            return True
        return False

    def _retry_soon(self) -> None:
        asyncio.get_running_loop().call_later(0.5, self._wake.set)

    async def _run(self, line: str) -> None:
        answer = (await command(self.socket, line)).strip()
        if answer and not answer.startswith(("New server registered", "Server deleted")):
            raise HastackError(f"{line!r}: {answer}")

    # ---- reading ---------------------------------------------------------------------------

    async def counters(self) -> dict[str, Any]:
        try:
            now = parse_stat(await command(self.socket, "show stat", timeout=2.0))
        except (OSError, TimeoutError):
            now = {}
        total: dict[str, Any] = {}
        add_into(total, self.retired)
        return add_into(total, now)

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None
