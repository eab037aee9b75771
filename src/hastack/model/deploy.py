"""What `hastack init` writes for a real cluster, decided without touching anything: the host
list checked, and for each host its agent configuration, its etcd member's configuration and
its systemd units (docs/deploy.md). Pure: the files are written by `hastack.deploy`."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hastack.model.base import is_valid_name

__all__ = [
    "CLIENT_PORT",
    "ETC",
    "PEER_PORT",
    "Host",
    "HostListError",
    "agent_config",
    "agent_unit",
    "client_config",
    "etcd_config",
    "etcd_unit",
    "parse_hosts",
]

ETC = "/etc/hastack"
PKI = f"{ETC}/pki"
STATE = "/var/lib/hastack"
ETCD_DATA = "/var/lib/hastack/etcd"
CLIENT_PORT = 2379
PEER_PORT = 2380


class HostListError(ValueError):
    """The host list cannot make a cluster; `problems` names each host at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    address: str
    controller: bool  # an etcd member and a full node; otherwise a compute (remote) node

    @property
    def url_host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address

    def client_url(self) -> str:
        return f"https://{self.url_host}:{CLIENT_PORT}"

    def peer_url(self) -> str:
        return f"https://{self.url_host}:{PEER_PORT}"


def _host(text: str, controller: bool, problems: list[str]) -> Host | None:
    name, sep, address = text.partition("=")
    if not sep:
        problems.append(f"{text}: want NAME=ADDRESS (e.g. ctl-1=10.0.0.11)")
        return None
    if not is_valid_name(name):
        problems.append(f"{text}: {name!r} is not a valid node name (letters, digits, - _ .)")
        return None
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        problems.append(f"{name}: {address!r} is not an IP address")
        return None
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local:
        problems.append(
            f"{name}: {ip} cannot be a host's address (unspecified, multicast or link-local)"
        )
        return None
    return Host(name, str(ip), controller)


def parse_hosts(controllers: Sequence[str], computes: Sequence[str] = ()) -> list[Host]:
    """`NAME=ADDRESS` for each controller and compute host; HostListError naming every host
    at fault: a malformed entry, a name or an address given twice, loopback mixed with real
    addresses, a controller count etcd cannot tolerate a failure with."""
    problems: list[str] = []
    hosts = [h for t in controllers if (h := _host(t, True, problems)) is not None]
    hosts += [h for t in computes if (h := _host(t, False, problems)) is not None]
    names: dict[str, Host] = {}
    addresses: dict[str, Host] = {}
    for host in hosts:
        if host.name in names:
            problems.append(f"{host.name}: the name is given twice")
        elif host.address in addresses:
            problems.append(
                f"{host.name}: address {host.address} is already {addresses[host.address].name}'s"
            )
        names.setdefault(host.name, host)
        addresses.setdefault(host.address, host)
    loopback = [h for h in hosts if ipaddress.ip_address(h.address).is_loopback]
    if loopback and len(loopback) != len(hosts):
        problems += [
            f"{h.name}: {h.address} is a loopback address: other hosts could never reach it"
            for h in loopback
        ]
    count = sum(1 for h in hosts if h.controller)
    if not controllers:
        problems.append("no controllers: give 1, 3 or 5 (each runs an etcd member)")
    elif count and count % 2 == 0:
        problems.append(
            f"{count} controllers: etcd needs a majority, so {count} tolerate no more failures "
            f"than {count - 1}; give an odd number (3 or 5)"
        )
    if problems:
        raise HostListError(problems)
    return hosts


def _tls(name: str) -> dict[str, str]:
    return {"ca": f"{PKI}/ca.crt", "cert": f"{PKI}/{name}.crt", "key": f"{PKI}/{name}.key"}


def _endpoints(hosts: Sequence[Host], first: Host | None) -> list[str]:
    members = [h for h in hosts if h.controller]
    if first is not None and first in members:
        i = members.index(first)
        members = members[i:] + members[:i]  # its own member first, as on every controller
    return [m.client_url() for m in members]


def agent_config(cluster: str, host: Host, hosts: Sequence[Host]) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "node": host.name,
        "kind": "full" if host.controller else "remote",
        "addresses": [host.address],
        "etcd": {"endpoints": _endpoints(hosts, host), "tls": _tls("node")},
        "state-dir": STATE,
    }


def client_config(cluster: str, hosts: Sequence[Host]) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "etcd": {"endpoints": _endpoints(hosts, None), "tls": _tls("operator")},
    }


def etcd_config(cluster: str, host: Host, hosts: Sequence[Host], token: str) -> dict[str, Any]:
    """The member's `--config-file` (etcd 3.4's YAML keys)."""
    members = [h for h in hosts if h.controller]
    security = {
        "cert-file": f"{PKI}/etcd.crt",
        "key-file": f"{PKI}/etcd.key",
        "trusted-ca-file": f"{PKI}/ca.crt",
        "client-cert-auth": True,
    }
    local = "https://127.0.0.1:2379" if not ipaddress.ip_address(host.address).is_loopback else ""
    return {
        "name": host.name,
        "data-dir": ETCD_DATA,
        "listen-client-urls": ",".join(u for u in (host.client_url(), local) if u),
        "advertise-client-urls": host.client_url(),
        "listen-peer-urls": host.peer_url(),
        "initial-advertise-peer-urls": host.peer_url(),
        "initial-cluster": ",".join(f"{m.name}={m.peer_url()}" for m in members),
        "initial-cluster-state": "new",
        "initial-cluster-token": token,
        # Without pre-vote a member that rejoins after a pause forces a needless election.
        "pre-vote": True,
        "heartbeat-interval": 100,
        "election-timeout": 1000,
        "auto-compaction-mode": "revision",
        "auto-compaction-retention": "10000",
        "quota-backend-bytes": 2 * 1024**3,
        "client-transport-security": security,
        "peer-transport-security": dict(security),
        "logger": "zap",
        "log-level": "warn",
    }


def etcd_unit(cluster: str, etcd: str = "/usr/bin/etcd") -> str:
    return f"""\
[Unit]
Description=etcd member of the hastack cluster {cluster}
Documentation=https://etcd.io/docs/
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={etcd} --config-file {ETC}/etcd.conf.yml
Restart=always
RestartSec=1
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def agent_unit(cluster: str, hastack: str, controller: bool) -> str:
    after = "network-online.target" + (" hastack-etcd.service" if controller else "")
    return f"""\
[Unit]
Description=hastack agent of the cluster {cluster}
After={after}
Wants=network-online.target

[Service]
ExecStart={hastack} agent --config {ETC}/agent.yaml
# The agent ends itself when its own loop stalls (docs/control-plane.md): start it again.
Restart=always
RestartSec=1
# Resources the agent started (hastack:service) keep running across an agent restart;
# the agent finds them again by their pidfiles.
KillMode=process

[Install]
WantedBy=multi-user.target
"""
