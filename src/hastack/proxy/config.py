"""The proxy's configuration: frontends, backends, servers, checks, timeouts.

The same model serves the standalone file (`hastack proxy run -c proxy.yaml`) and the `config`
parameter of a `hastack:proxy` resource inside the cluster configuration: it is a plain `Spec`
(frozen, kebab-case keys, unknown keys refused) and reading it does no I/O. Names and defaults
follow HAProxy where an operator would look for them (`balance roundrobin`, `inter/fastinter/
rise/fall`, `on-marked-down shutdown-sessions`, `timeout connect/client/server/queue`).

    workers: 2
    admin: {bind: 127.0.0.1:8404, tokens: /etc/hastack/tokens}
    cluster:
      name: prod
      etcd:
        endpoints: [https://10.0.0.11:2379]
        tls: {ca: /etc/hastack/pki/ca.crt, cert: /etc/hastack/pki/node.crt,
              key: /etc/hastack/pki/node.key}
    frontends:
      - {name: api, bind: [10.0.0.10:8774], backend: nova-api}
    backends:
      - name: nova-api
        cluster: {resource: nova-api, port: 8774}
        check: {type: http, path: /healthcheck}
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import Annotated

import pydantic

from hastack.model.agent_config import EtcdSpec
from hastack.model.base import Duration, Name, Spec
from hastack.model.document import Loc, load_yaml, validate

__all__ = [
    "AdminSpec",
    "BackendSpec",
    "Balance",
    "CertificateSpec",
    "CheckSpec",
    "CheckType",
    "ClusterLink",
    "ClusterPool",
    "DataPlane",
    "FollowRole",
    "FrontendSpec",
    "FrontendTimeouts",
    "FrontendTlsSpec",
    "HaproxySpec",
    "HttpCheckSpec",
    "HttpLimits",
    "Mode",
    "MysqlCheckSpec",
    "OnMarkedDown",
    "PassiveSpec",
    "PoolSpec",
    "ProxyConfig",
    "ServerSpec",
    "ServerTimeouts",
    "ServerTlsSpec",
    "TlsVersion",
    "parse_address",
    "parse_config",
]

MAX_WEIGHT = 256  # HAProxy's range, so weights carry over unchanged


def parse_address(text: str) -> tuple[str, int]:
    """`10.0.0.1:80`, `[::1]:80` or `name:80` -> (host, port); ValueError says what is wrong."""
    value = text.strip()
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise ValueError(f"not an address (want [v6]:port): {text!r}")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"not an address (want host:port): {text!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a port in {text!r} (want 1-65535)")
    return host, int(port)


def _address(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not an address (want host:port): {value!r}")
    host, port = parse_address(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Address = Annotated[str, pydantic.BeforeValidator(_address)]


class Mode(enum.StrEnum):
    HTTP = "http"  # requests parsed, keep-alive both ways, retries per request
    TCP = "tcp"  # bytes piped; the server is chosen once per connection


class Balance(enum.StrEnum):
    ROUNDROBIN = "roundrobin"  # smooth weighted round robin
    LEASTCONN = "leastconn"  # fewest in-flight requests (tcp: sessions) per unit of weight
    SOURCE = "source"  # client address hashed (rendezvous): the same client, the same server
    FIRST = "first"  # the first server in order that is below its maxconn


class CheckType(enum.StrEnum):
    TCP = "tcp"  # a connection is accepted
    HTTP = "http"  # a request answered with an expected status
    MYSQL = "mysql"  # a MySQL server greeting (and a login when a user is given)
    GALERA = "galera"  # login, then wsrep_local_state = 4 (Synced) and cluster status Primary


class OnMarkedDown(enum.StrEnum):
    NONE = "none"  # sessions to a server marked down run on (HAProxy's default)
    SHUTDOWN_SESSIONS = "shutdown-sessions"  # closed at once, so clients reconnect elsewhere


class FollowRole(enum.StrEnum):
    ANY = "any"  # nodes where an instance is Started, Unpromoted or Promoted
    PROMOTED = "promoted"  # only the node of the Promoted instance (the writer)


class HttpLimits(Spec):
    """Refusals of hostile or broken requests, answered 400 before a server sees them."""

    max_header_size: Annotated[int, pydantic.Field(ge=1024, le=1048576)] = 16384
    max_headers: Annotated[int, pydantic.Field(ge=1, le=1000)] = 100
    forwarded_for: bool = True  # add X-Forwarded-For with the client's address


class FrontendTimeouts(Spec):
    # Idle time allowed on the client side (tcp: in either direction); HAProxy's `timeout client`.
    client: Duration = 60.0
    http_request: Duration = 10.0  # the whole request head, from its first byte (slowloris)
    http_keep_alive: Duration = 10.0  # idle wait for the next request on a kept connection

    # Durations go through a BeforeValidator, so their bounds are checked here.
    @pydantic.model_validator(mode="after")
    def _positive(self) -> FrontendTimeouts:
        if min(self.client, self.http_request, self.http_keep_alive) <= 0:
            raise ValueError("timeouts must be positive")
        return self


class DataPlane(enum.StrEnum):
    BUILTIN = "builtin"  # hastack's own worker processes (uvloop + httptools)
    HAPROXY = "haproxy"  # Debian's haproxy, configured and driven by hastack (haproxy.py)


class TlsVersion(enum.StrEnum):
    TLS1_2 = "1.2"
    TLS1_3 = "1.3"


class CertificateSpec(Spec):
    """A certificate (PEM, with its chain after it) and its private key (PEM, unencrypted).

    `key` may be left out when the key is in the certificate file. The names SNI selects on
    are read from the certificate itself (subjectAltName, else the common name).
    """

    cert: Annotated[str, pydantic.Field(min_length=1)]
    key: Annotated[str, pydantic.Field(min_length=1)] | None = None


class FrontendTlsSpec(Spec):
    """TLS termination on a frontend, with the standard library's ssl (OpenSSL)."""

    # The first is the default, for clients that send no SNI or a name no certificate has.
    certificates: Annotated[list[CertificateSpec], pydantic.Field(min_length=1)]
    min_version: TlsVersion = TlsVersion.TLS1_2
    # OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); default: Python's.
    ciphers: str | None = None
    # ALPN protocols offered; default `http/1.1` on an HTTP frontend, none on TCP.
    alpn: list[Annotated[str, pydantic.Field(min_length=1, max_length=255)]] | None = None
    handshake_timeout: Duration = 10.0
    # How often the certificate files are looked at; a changed one is read again, no restart.
    watch_interval: Duration = 2.0

    @pydantic.model_validator(mode="after")
    def _positive(self) -> FrontendTlsSpec:
        if min(self.handshake_timeout, self.watch_interval) <= 0:
            raise ValueError("handshake-timeout and watch-interval must be positive")
        return self


class ServerTlsSpec(Spec):
    """TLS from the proxy to the servers of a backend."""

    verify: bool = True  # the server's certificate against `ca` (default: the system's CAs)
    ca: str | None = None  # PEM file of the CAs to trust
    sni: str | None = None  # server name sent and verified; default the server's address
    min_version: TlsVersion = TlsVersion.TLS1_2


class FrontendSpec(Spec):
    name: Name
    bind: Annotated[list[Address], pydantic.Field(min_length=1)]
    backend: Name
    mode: Mode = Mode.HTTP
    timeouts: FrontendTimeouts = FrontendTimeouts()
    http: HttpLimits = HttpLimits()
    backlog: Annotated[int, pydantic.Field(ge=1, le=65535)] = 1024
    # Bind even when the address is not (yet) on this host (IP_FREEBIND, HAProxy's `freebind`):
    # a proxy clone listens on the VIP on every node, and answers wherever the VIP lands.
    freebind: bool = False
    tls: FrontendTlsSpec | None = None


def _default_expect() -> list[int | str]:
    return ["2xx", "3xx"]


class HttpCheckSpec(Spec):
    method: Annotated[str, pydantic.Field(pattern=r"^[A-Z]{1,16}$")] = "GET"
    path: Annotated[str, pydantic.Field(pattern=r"^/\S*$")] = "/"
    host: str | None = None  # Host header; default the server's address
    # Statuses that count as healthy: numbers, or classes like "2xx" (default 2xx and 3xx).
    expect: list[int | str] = pydantic.Field(default_factory=_default_expect, min_length=1)

    @pydantic.field_validator("expect")
    @classmethod
    def _expect(cls, value: list[int | str]) -> list[int | str]:
        for item in value:
            if isinstance(item, int):
                if not 100 <= item <= 599:
                    raise ValueError(f"not an HTTP status: {item}")
            elif len(item) != 3 or item[0] not in "12345" or item[1:].lower() != "xx":
                raise ValueError(f"not a status or class like 2xx: {item!r}")
        return value

    def accepts(self, status: int) -> bool:
        for item in self.expect:
            if item == status or (isinstance(item, str) and str(status)[0] == item[0]):
                return True
        return False


class MysqlCheckSpec(Spec):
    """The account a MySQL or Galera check logs in with (HAProxy's `mysql-check user`)."""

    user: str | None = None
    password: str = ""


class CheckSpec(Spec):
    type: CheckType = CheckType.TCP
    interval: Duration = 2.0  # HAProxy's `inter`
    fastinter: Duration | None = None  # while a transition is in progress (default interval)
    downinter: Duration | None = None  # while the server is down (default interval)
    rise: Annotated[int, pydantic.Field(ge=1, le=100)] = 2
    fall: Annotated[int, pydantic.Field(ge=1, le=100)] = 3
    timeout: Duration | None = None  # default: the smaller of interval and connect timeout
    port: Annotated[int, pydantic.Field(ge=1, le=65535)] | None = None  # default: the server's
    http: HttpCheckSpec = HttpCheckSpec()
    mysql: MysqlCheckSpec = MysqlCheckSpec()

    @pydantic.model_validator(mode="after")
    def _sane(self) -> CheckSpec:
        for name in ("interval", "fastinter", "downinter", "timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        if self.type is CheckType.GALERA and not self.mysql.user:
            raise ValueError("a galera check logs in to read wsrep status: set mysql.user")
        return self


class PassiveSpec(Spec):
    """Passive observation: connection errors seen by real traffic count against a server.

    After `error-limit` errors with no successful check in between, the server is marked down at
    once (HAProxy's `observe layer4 error-limit N on-error mark-down`); every error also brings
    the next check forward, so a server that is fine clears the count within one check.
    """

    error_limit: Annotated[int, pydantic.Field(ge=0, le=1000)] = 3  # 0: off


class ServerTimeouts(Spec):
    connect: Duration = 1.0  # TCP connect to a server, per attempt
    server: Duration = 60.0  # server silent while a response is awaited or streamed
    queue: Duration = 2.0  # waiting for a free slot (all servers at maxconn)
    # Waiting when no server is usable at all, e.g. between a writer stopping and the next one
    # being promoted; 0 answers 503 at once like HAProxy.
    no_server: Duration = 0.0

    @pydantic.model_validator(mode="after")
    def _positive(self) -> ServerTimeouts:
        if min(self.connect, self.server, self.queue) <= 0:
            raise ValueError("connect, server and queue timeouts must be positive")
        return self


class PoolSpec(Spec):
    """Idle keep-alive connections kept to each server (HTTP mode)."""

    max_idle: Annotated[int, pydantic.Field(ge=0, le=10000)] = 64
    # Below the usual server keep-alive timeouts (nginx 75 s, Apache 5 s), so a pooled
    # connection is rarely closed by the server at the moment it is reused.
    idle_timeout: Duration = 4.0


class ServerSpec(Spec):
    name: Name
    address: Address
    weight: Annotated[int, pydantic.Field(ge=0, le=MAX_WEIGHT)] = 1
    backup: bool = False
    maxconn: Annotated[int, pydantic.Field(ge=0)] = 0  # 0: no limit
    check: bool = True  # run the backend's check on this server (when it has one)


class ClusterPool(Spec):
    """Servers taken from cluster state: the nodes where a resource's instances run.

    A node is in the pool while it is a member (online) and its status report shows an instance
    of `resource` (`api`, or clone instances `api:0`, `api:1`...) in a matching role, not failed.
    The server is named after the node and reached at the node's first address (or the first
    inside `network`) and `port`.
    """

    resource: Name
    port: Annotated[int, pydantic.Field(ge=1, le=65535)]
    role: FollowRole = FollowRole.ANY
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    weight: Annotated[int, pydantic.Field(ge=0, le=MAX_WEIGHT)] = 1
    maxconn: Annotated[int, pydantic.Field(ge=0)] = 0


class BackendSpec(Spec):
    name: Name
    mode: Mode = Mode.HTTP
    balance: Balance = Balance.ROUNDROBIN
    servers: list[ServerSpec] = pydantic.Field(default_factory=list)
    cluster: ClusterPool | None = None
    check: CheckSpec | None = None  # no checks: servers are up unless the cluster says otherwise
    passive: PassiveSpec = PassiveSpec()
    # Keep one active server for every client (primaries first, then backups, in order) and
    # stay with it while it is up, even when an earlier server comes back: the one-writer
    # Galera pattern, where a write must never land on two nodes because one returned.
    sticky: bool = False
    all_backups: bool = False  # balance over every backup (default: the first one up)
    on_marked_down: OnMarkedDown = OnMarkedDown.NONE
    retries: Annotated[int, pydantic.Field(ge=0, le=20)] = 3
    redispatch: bool = True  # a retry goes to another server when there is one
    queue_size: Annotated[int, pydantic.Field(ge=0)] = 1024
    timeouts: ServerTimeouts = ServerTimeouts()
    pool: PoolSpec = PoolSpec()
    # Request bodies up to this size are kept so an idempotent request can be sent again.
    retry_buffer: Annotated[int, pydantic.Field(ge=0, le=16 * 1048576)] = 65536
    tls: ServerTlsSpec | None = None


class AdminSpec(Spec):
    """The stats page, JSON, Prometheus metrics and run-time commands (HTTP, keep it private).

    Run-time commands need an operator's `write` token from the tokens file (hastack.auth,
    docs/security.md); without a tokens file none is accepted. Reads need a token too unless
    `open-reads`; `/health` is always open (monitors ask it)."""

    bind: Address = "127.0.0.1:8404"
    tokens: str | None = None
    open_reads: bool = False

    @pydantic.field_validator("bind")
    @classmethod
    def _not_everywhere(cls, value: str) -> str:
        host = value.rpartition(":")[0].strip("[]")
        if host in ("0.0.0.0", "::", "*", ""):
            raise ValueError(
                f"{value}: the admin endpoint binds one address of this host, not every one "
                "(anyone who reaches it may read the servers, and with a token drain them)"
            )
        return value


class ClusterLink(Spec):
    """Where the cluster's state is, for backends that follow a resource."""

    name: Name
    etcd: EtcdSpec
    timeout: Duration = 1.5  # per store call


class HaproxySpec(Spec):
    """Where and how the haproxy data plane runs (`data-plane: haproxy`)."""

    binary: str = "haproxy"
    # Its configuration, stats socket and combined certificates; default a private temporary
    # directory (a unix socket path must stay short).
    run_dir: str | None = None


class ProxyConfig(Spec):
    # Who moves the bytes; hastack keeps the control plane either way (docs/proxy.md).
    data_plane: DataPlane = DataPlane.BUILTIN
    workers: Annotated[int, pydantic.Field(ge=1, le=64)] = 1  # haproxy: its threads
    haproxy: HaproxySpec = HaproxySpec()
    # After a reload, how long the previous data plane may take to finish its sessions
    # (HAProxy's `hard-stop-after`); what is still open then is cut.
    hard_stop_after: Duration = 30.0
    admin: AdminSpec | None = AdminSpec()
    cluster: ClusterLink | None = None
    frontends: Annotated[list[FrontendSpec], pydantic.Field(min_length=1)]
    backends: Annotated[list[BackendSpec], pydantic.Field(min_length=1)]

    def backend(self, name: str) -> BackendSpec:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def to_json(self) -> str:
        """The exact configuration, for a worker process to validate again."""
        return self.model_dump_json(by_alias=True)


def _duplicates(names: list[str]) -> set[str]:
    return {n for n, count in Counter(names).items() if count > 1}


def check_config(config: ProxyConfig, *, standalone: bool = True) -> list[tuple[Loc, str]]:
    """What spans several fields: references, modes, unique names, a cluster link when needed."""
    problems: list[tuple[Loc, str]] = []
    backends = {b.name: b for b in config.backends}
    for i, name in enumerate(f.name for f in config.frontends):
        if name in _duplicates([f.name for f in config.frontends]):
            problems.append((("frontends", i, "name"), f"frontend {name!r} is defined twice"))
    for i, name in enumerate(b.name for b in config.backends):
        if name in _duplicates([b.name for b in config.backends]):
            problems.append((("backends", i, "name"), f"backend {name!r} is defined twice"))
    binds: dict[str, int] = {}
    for i, frontend in enumerate(config.frontends):
        backend = backends.get(frontend.backend)
        if backend is None:
            known = ", ".join(sorted(backends)) or "none"
            problems.append(
                (("frontends", i, "backend"), f"no backend {frontend.backend!r} (known: {known})")
            )
        elif backend.mode is not frontend.mode:
            problems.append(
                (
                    ("frontends", i, "mode"),
                    f"frontend is {frontend.mode.value} but backend {backend.name!r} is "
                    f"{backend.mode.value}",
                )
            )
        alpn = frontend.tls.alpn if frontend.tls is not None else None
        if alpn and "h2" in alpn and config.data_plane == DataPlane.BUILTIN:
            problems.append(
                (
                    ("frontends", i, "tls", "alpn"),
                    "the built-in data plane speaks HTTP/1.1 only: offer h2 with "
                    "`data-plane: haproxy`",
                )
            )
        for j, address in enumerate(frontend.bind):
            if address in binds:
                problems.append(
                    (("frontends", i, "bind", j), f"{address} is already bound by another frontend")
                )
            binds[address] = i
    if config.admin is not None and config.admin.bind in binds:
        problems.append((("admin", "bind"), f"{config.admin.bind} is bound by a frontend"))
    for i, backend in enumerate(config.backends):
        for name in _duplicates([s.name for s in backend.servers]):
            j = [s.name for s in backend.servers].index(name)
            problems.append((("backends", i, "servers", j, "name"), f"server {name!r} twice"))
        if not backend.servers and backend.cluster is None:
            problems.append(
                (("backends", i), "no servers: give `servers`, or `cluster` to follow a resource")
            )
        if backend.cluster is not None and standalone and config.cluster is None:
            problems.append(
                (
                    ("backends", i, "cluster"),
                    "follows a cluster resource, so the top-level `cluster` (name and etcd "
                    "endpoints) is needed",
                )
            )
    return problems


def parse_config(
    text: str,
    source: str,
    *,
    standalone: bool = True,
    files: Callable[[ProxyConfig], list[tuple[Loc, str]]] | None = None,
) -> ProxyConfig:
    """Validate a proxy configuration; every problem at once, each with file:line: path.

    `files` checks what the configuration names on this host (certificate files: see
    `hastack.proxy.tls.certificate_problems`); reading them is I/O, so the caller asks for it.
    """
    doc = load_yaml(text, source)

    def checks(config: ProxyConfig) -> list[tuple[Loc, str]]:
        problems = check_config(config, standalone=standalone)
        if files is not None and not problems:
            problems = files(config)
        return problems

    return validate(doc, ProxyConfig, checks=checks)
