"""The configuration of one agent (one node): who it is, where the store is, its timings."""

from __future__ import annotations

import ipaddress
import math
from typing import Annotated, Literal

import pydantic

from hastack.model.base import Duration, Name, Spec
from hastack.model.document import load_yaml, validate
from hastack.model.members import NodeKind

__all__ = [
    "AgentConfig",
    "ApiSpec",
    "ClientConfig",
    "EtcdSpec",
    "NodeKind",
    "Timings",
    "TlsFiles",
    "WatchdogSpec",
    "leader_change_problem",
    "parse_agent_config",
    "parse_client_config",
    "parse_endpoint",
]

# etcd grants leases in whole seconds and raises anything below 1.5 × its election timeout
# (1 s by default) to 2 s: a shorter TTL would silently not be what the inequality assumed.
MIN_LEASE_TTL = 2.0

# Riding out an etcd leader change (docs/architecture.md, "Membership and its timing"). When
# the raft leader dies, every renewal sent from then on fails — the followers forward it to a
# leader that no longer answers — until a new leader is elected and has taken the leases over:
# up to 2.5 election timeouts (bench/etcd_renewal_stall.py; the followers' randomized election
# timers alone take up to 2). The keeper re-sends an unanswered renewal every RENEW_RETRY,
# each time to the next member (hastack.store.blocking), so the first renewal sent after the
# stall is at most RENEW_RETRY late; LEADER_CHANGE_MARGIN leaves room for its answer on a busy
# machine.
LEADER_CHANGE_STALL = 2.5
RENEW_RETRY = 0.25
LEADER_CHANGE_MARGIN = 0.25


def parse_endpoint(endpoint: str) -> str:
    """`http://127.0.0.1:2379` or `127.0.0.1:2379` -> `127.0.0.1:2379` (host:port for gRPC)."""
    text = endpoint.strip()
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not an etcd endpoint (want host:port or http://host:port): {endpoint!r}")
    return f"{host}:{port}"


def _endpoint(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not an etcd endpoint: {value!r}")
    return parse_endpoint(value)


Endpoint = Annotated[str, pydantic.BeforeValidator(_endpoint)]


class Timings(Spec):
    """How the agent keeps its membership.

    The agent renews its lease every `renew-interval`; each store call may take up to
    `store-timeout`. It declares its membership lost when no renewal has succeeded for
    `renew-interval + 2 × store-timeout` after the send time of the last one that did, which
    leaves room for two failed attempts. That moment must come before the server can expire
    the lease (`lease-ttl` after that same send time, at the earliest), so

        renew-interval + 2 × store-timeout < lease-ttl

    and the difference is the budget the node has to stop its exclusive resources itself
    before anyone else may start them.
    """

    lease_ttl: Duration = 5.0
    renew_interval: Duration = 1.0
    store_timeout: Duration = 1.5

    @pydantic.model_validator(mode="after")
    def _safe(self) -> Timings:
        if self.lease_ttl < MIN_LEASE_TTL or self.lease_ttl != math.floor(self.lease_ttl):
            raise ValueError(
                f"lease-ttl must be a whole number of seconds, at least {MIN_LEASE_TTL:g}s "
                f"(etcd grants whole seconds, minimum 2): got {self.lease_ttl:g}s"
            )
        if self.renew_interval <= 0 or self.store_timeout <= 0:
            raise ValueError("renew-interval and store-timeout must be positive")
        if self.loss_after >= self.lease_ttl:
            raise ValueError(
                "unsafe timings: renew-interval + 2 × store-timeout must be less than lease-ttl, "
                "so that two failed renewals are noticed before the lease can expire on the "
                f"server; got {self.renew_interval:g}s + 2 × {self.store_timeout:g}s = "
                f"{self.loss_after:g}s, lease-ttl {self.lease_ttl:g}s"
            )
        return self

    @property
    def loss_after(self) -> float:
        """Seconds after the last good renewal's send time when membership counts as lost."""
        return self.renew_interval + 2 * self.store_timeout

    @property
    def self_fence_budget(self) -> float:
        """Seconds between declaring membership lost and the earliest server-side expiry."""
        return self.lease_ttl - self.loss_after


def leader_change_problem(timings: Timings, election_timeout: float) -> str | None:
    """Why these timings cannot keep a membership through an etcd leader change, or None.

    The worst moment for the leader to die is just as a renewal is sent, `renew-interval`
    after the last good one: that renewal fails, and so does every one sent during the stall
    that follows. The membership survives if a renewal sent after the stall (at most
    RENEW_RETRY later) is answered before the verdict, which comes `loss-after` =
    renew-interval + 2 × store-timeout after the last good renewal:

        renew-interval + 2 × store-timeout
            ≥ renew-interval + LEADER_CHANGE_STALL × election-timeout + RENEW_RETRY + margin

    that is, 2 × store-timeout ≥ 2.5 × election-timeout + 0.5 s.
    """
    stall = LEADER_CHANGE_STALL * election_timeout
    needed = timings.renew_interval + stall + RENEW_RETRY + LEADER_CHANGE_MARGIN
    if timings.loss_after >= needed - 1e-9:
        return None
    spare = 2 * timings.store_timeout - RENEW_RETRY - LEADER_CHANGE_MARGIN
    longest = max(0.0, spare / LEADER_CHANGE_STALL)
    shortest = (stall + RENEW_RETRY + LEADER_CHANGE_MARGIN) / 2
    return (
        "timings cannot ride out an etcd leader change: a membership is lost "
        f"{timings.loss_after:g}s after its last good renewal (renew-interval "
        f"{timings.renew_interval:g}s + 2 × store-timeout {timings.store_timeout:g}s), but "
        f"when the etcd leader dies renewals fail for up to {LEADER_CHANGE_STALL:g} × "
        f"election-timeout {election_timeout:g}s = {stall:g}s, so it must be at least "
        f"{timings.renew_interval:g}s + {stall:g}s + {RENEW_RETRY:g}s (re-send) + "
        f"{LEADER_CHANGE_MARGIN:g}s (margin) = {needed:g}s: give store-timeout ≥ "
        f"{shortest:g}s (and lease-ttl above the new loss time), or election-timeout ≤ "
        f"{longest:.3g}s"
    )


class TlsFiles(Spec):
    """PEM files of a store client (docs/security.md): the cluster's CA, this client's
    certificate and its key. Their contents are checked when a client is made
    (hastack.store.tls), not here: this module reads no files."""

    ca: Annotated[str, pydantic.Field(min_length=1)]
    cert: Annotated[str, pydantic.Field(min_length=1)]
    key: Annotated[str, pydantic.Field(min_length=1)]


class EtcdSpec(Spec):
    endpoints: Annotated[list[Endpoint], pydantic.Field(min_length=1)]
    root: str = "/hastack"
    # The members' --election-timeout: after the etcd leader dies, a lease renewal stalls
    # for up to ~2.5 × this (measured: 1.0-1.4 s at 500 ms, 2.0-2.5 s at 1 s).
    election_timeout: Duration = 1.0
    # Mutual TLS to the members; without it the connection is plaintext, which must be
    # asked for with `insecure: true` (anyone who reaches etcd then commands the cluster).
    tls: TlsFiles | None = None
    insecure: bool = False
    # etcd's own authentication, where the members have it enabled; the password is read
    # from a file of its own (this YAML is copied around and shown).
    username: str | None = None
    password_file: str | None = None

    @pydantic.field_validator("root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or "//" in value:
            raise ValueError(f"not a key prefix (want e.g. /hastack): {value!r}")
        return value

    @pydantic.model_validator(mode="before")
    @classmethod
    def _schemes(cls, data: object) -> object:
        # The endpoints lose their scheme when parsed (gRPC wants host:port): what the
        # scheme says about plaintext is checked here, before that.
        if not isinstance(data, dict):
            return data
        insecure = data.get("insecure") is True
        endpoints = data.get("endpoints")
        for endpoint in endpoints if isinstance(endpoints, list) else []:
            if not isinstance(endpoint, str):
                continue
            text = endpoint.strip()
            if text.startswith("http://") and not insecure:
                raise ValueError(
                    f"{endpoint} is a plaintext endpoint: use https:// with tls, or say "
                    "insecure: true to accept a connection anyone on the network can use"
                )
            if text.startswith("https://") and insecure:
                raise ValueError(f"{endpoint} is a TLS endpoint, but insecure: true is set")
        return data

    @pydantic.model_validator(mode="after")
    def _secured(self) -> EtcdSpec:
        if self.insecure and self.tls is not None:
            raise ValueError("tls and insecure: true contradict each other: give one")
        if not self.insecure and self.tls is None:
            raise ValueError(
                "the store connection needs tls: {ca, cert, key} (docs/security.md); a "
                "plaintext one needs insecure: true, said explicitly"
            )
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password-file go together: give both or neither")
        return self

    @property
    def urls(self) -> list[str]:
        """The endpoints as URLs with the scheme the connection uses."""
        scheme = "http" if self.insecure else "https"
        return [f"{scheme}://{e}" for e in self.endpoints]


class ClientConfig(Spec):
    """What a command-line client needs: which cluster, and where its store is."""

    cluster: Name
    etcd: EtcdSpec


class WatchdogSpec(Spec):
    """What resets this node if its agent cannot make it safe in time (docs/fencing.md)."""

    kind: Literal["none", "process", "device"] = "none"
    # process: the command run when the deadline passes, with the node's name appended (one
    # that powers the host off, say). Empty: the agent's process group and the processes of
    # the hastack:service resources it started are killed.
    reset: list[Annotated[str, pydantic.Field(min_length=1)]] = pydantic.Field(default_factory=list)
    # device: the kernel watchdog and its timeout in whole seconds
    device: str = "/dev/watchdog"
    timeout: int = 5

    @pydantic.model_validator(mode="after")
    def _complete(self) -> WatchdogSpec:
        if self.reset and self.kind != "process":
            raise ValueError(
                f"reset: is what a process watchdog runs; a {self.kind} watchdog has none"
            )
        return self


def _listen(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not host:port: {value!r}")
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"not host:port (the address to listen on, e.g. 10.0.0.11:7480): {value!r}"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"listen on an IP address, not a name: {value!r}") from None
    return value


class ApiSpec(Spec):
    """The REST API and dashboard this agent serves (docs/api.md). Absent: none."""

    # host:port, an address of this host (no default: it binds only where written).
    listen: Annotated[str, pydantic.BeforeValidator(_listen)]
    # The operator tokens file (`hastack token new`); without it no write is accepted.
    tokens: str | None = None
    # Reads (status, events, metrics) without a token. Writes always need one.
    open_reads: bool = False


class AgentConfig(Spec):
    cluster: Name
    node: Name
    kind: NodeKind = NodeKind.FULL
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = pydantic.Field(
        default_factory=list
    )
    attributes: dict[Name, str] = pydantic.Field(default_factory=dict)
    etcd: EtcdSpec
    timings: Timings = Timings()
    state_dir: str | None = None
    # Run every resource operation of this node inside this network namespace (local
    # clusters and tests give each node its own interfaces this way).
    netns: str | None = None
    # OCF_ROOT for agents (default /usr/lib/ocf): their libraries and resource.d live there.
    ocf_root: str | None = None
    # More resource.d-style directories (PROVIDER/TYPE inside), searched first.
    ocf_agent_dirs: list[str] = pydantic.Field(default_factory=list)
    # Directories searched first for fence agents (fence_*), before PATH and /usr/sbin.
    fence_agent_dirs: list[str] = pydantic.Field(default_factory=list)
    # UDP port for direct heartbeats on the first address (0: none; detection by lease only).
    heartbeat_port: int = pydantic.Field(default=7941, ge=0, le=65535)
    watchdog: WatchdogSpec = WatchdogSpec()
    api: ApiSpec | None = None

    @pydantic.model_validator(mode="after")
    def _rides_out_leader_change(self) -> AgentConfig:
        # Losing the etcd leader must not drop every node's membership.
        problem = leader_change_problem(self.timings, self.etcd.election_timeout)
        if problem is not None:
            raise ValueError(problem)
        return self


def parse_client_config(text: str, source: str) -> ClientConfig:
    """A client configuration, or the cluster and store named in an agent configuration."""
    doc = load_yaml(text, source)
    if isinstance(doc.data, dict) and "node" in doc.data:
        agent = validate(doc, AgentConfig)
        return ClientConfig(cluster=agent.cluster, etcd=agent.etcd)
    return validate(doc, ClientConfig)


def parse_agent_config(text: str, source: str) -> AgentConfig:
    """Validate an agent configuration; ConfigError lists every problem with its line."""
    return validate(load_yaml(text, source), AgentConfig)
