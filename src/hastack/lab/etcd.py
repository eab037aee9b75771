"""Running etcd members for local clusters, the lab and tests (Debian's etcd-server 3.4)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hastack.model.deploy import interleave_endpoints

__all__ = [
    "EtcdMember",
    "MemberTls",
    "etcd_argv",
    "etcd_binary",
    "interleaved_endpoints",
    "tls_flags",
]


@dataclass(frozen=True, slots=True)
class EtcdMember:
    name: str
    host: str
    client_port: int = 2379
    peer_port: int = 2380
    # https with client certificates (docs/security.md), or plaintext when asked for.
    secure: bool = True
    # Its addresses on further links (docs/connectivity.md): it listens on and advertises
    # every one, and its peers' transport moves to the next URL when one fails.
    more_hosts: tuple[str, ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host, *self.more_hosts)

    @property
    def client_urls(self) -> list[str]:
        return [f"{self.scheme}://{h}:{self.client_port}" for h in self.hosts]

    @property
    def peer_urls(self) -> list[str]:
        return [f"{self.scheme}://{h}:{self.peer_port}" for h in self.hosts]

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.peer_port}"


@dataclass(frozen=True, slots=True)
class MemberTls:
    """A member's certificate (for clients and peers alike) and the cluster's CA."""

    ca: str
    cert: str
    key: str


def tls_flags(tls: MemberTls) -> list[str]:
    """etcd's flags for mutual TLS: only clients and peers with a certificate from our CA."""
    return [
        "--cert-file", tls.cert, "--key-file", tls.key,
        "--trusted-ca-file", tls.ca, "--client-cert-auth",
        "--peer-cert-file", tls.cert, "--peer-key-file", tls.key,
        "--peer-trusted-ca-file", tls.ca, "--peer-client-cert-auth",
    ]  # fmt: skip


# etcd ahead of the rest of the machine, CPU and disk, as etcd's own tuning guide asks of a
# shared host (Corosync runs real-time for the same reason): the lab packs three members,
# a dozen agents and their resources onto two cores, and a leader starved for a second or two
# costs every node its lease at once. Raising a priority needs root; without it, none.
ETCD_PRIORITY = ("nice", "-n", "-10", "ionice", "-c2", "-n0")


def etcd_binary() -> str:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        raise FileNotFoundError(
            "etcd is not installed: install Debian's etcd-server (apt-get install etcd-server)"
        )
    return found


def etcd_argv(
    member: EtcdMember,
    cluster: Sequence[EtcdMember],
    data_dir: Path,
    *,
    token: str,
    election_ms: int = 1000,
    tls: MemberTls | None = None,
) -> list[str]:
    heartbeat_ms = max(10, election_ms // 10)
    initial = ",".join(f"{m.name}={url}" for m in cluster for url in m.peer_urls)
    clients, peers = ",".join(member.client_urls), ",".join(member.peer_urls)
    return [
        *(ETCD_PRIORITY if os.geteuid() == 0 else ()),
        etcd_binary(),
        "--name", member.name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", clients,
        "--advertise-client-urls", clients,
        "--listen-peer-urls", peers,
        "--initial-advertise-peer-urls", peers,
        "--initial-cluster", initial,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", token,
        # Without pre-vote a member that rejoins after a pause forces a needless election.
        "--pre-vote",
        "--heartbeat-interval", str(heartbeat_ms),
        "--election-timeout", str(election_ms),
        # Small clusters of small values: keep disk and memory modest.
        "--quota-backend-bytes", str(256 * 1024 * 1024),
        "--auto-compaction-mode", "revision",
        "--auto-compaction-retention", "10000",
        "--snapshot-count", "10000",
        "--log-level", "warn",
        "--logger", "zap",
        *(tls_flags(tls) if tls is not None else []),
    ]  # fmt: skip


def interleaved_endpoints(members: Sequence[EtcdMember], first: int = 0) -> list[str]:
    """Every client URL of every member, the next one after any one another member on
    another link (`hastack.model.deploy.interleave_endpoints`, as `hastack init` writes
    them). Starts at member `first` on its first link (an agent's own)."""
    return interleave_endpoints([m.client_urls for m in members], first)
