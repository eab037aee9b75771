"""What `hastack init` writes for a real cluster, decided without touching anything: the host
list checked, and for each host its agent configuration, its etcd member's configuration and
its systemd units (docs/deploy.md). Pure: the files are written by `hastack.deploy`.

A host gives one address per cluster network (`ctl-1=10.0.0.11,10.1.0.11`): with two, cluster
traffic runs on both links as `hastack lab up --links 2` runs it (docs/connectivity.md): etcd
members listen on and advertise both, store endpoints interleave members and links, and the
agents' heartbeats go to every address of each peer."""

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
    "interleave_endpoints",
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
    addresses: tuple[str, ...]  # one per cluster network (link), the first the main one
    controller: bool  # an etcd member and a full node; otherwise a compute (remote) node

    @property
    def address(self) -> str:
        return self.addresses[0]

    def client_urls(self) -> list[str]:
        return [f"https://{_url_host(a)}:{CLIENT_PORT}" for a in self.addresses]

    def peer_urls(self) -> list[str]:
        return [f"https://{_url_host(a)}:{PEER_PORT}" for a in self.addresses]


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _address(name: str, text: str, problems: list[str]) -> str | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        problems.append(f"{name}: {text!r} is not an IP address")
        return None
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local:
        problems.append(
            f"{name}: {ip} cannot be a host's address (unspecified, multicast or link-local)"
        )
        return None
    return str(ip)


def _host(text: str, controller: bool, problems: list[str]) -> Host | None:
    name, sep, rest = text.partition("=")
    if not sep:
        problems.append(f"{text}: want NAME=ADDRESS (e.g. ctl-1=10.0.0.11)")
        return None
    if not is_valid_name(name):
        problems.append(f"{text}: {name!r} is not a valid node name (letters, digits, - _ .)")
        return None
    given = rest.split(",")
    found = [_address(name, a, problems) for a in given]
    addresses = [a for a in found if a is not None]
    if len(addresses) != len(given):
        return None
    if len(set(addresses)) != len(addresses):
        problems.append(f"{name}: an address is given twice ({rest}): one per link")
        return None
    return Host(name, tuple(addresses), controller)


def parse_hosts(controllers: Sequence[str], computes: Sequence[str] = ()) -> list[Host]:
    """`NAME=ADDRESS[,ADDRESS]` (one address per cluster network) for each controller and
    compute host; HostListError naming every host at fault: a malformed entry, a name or an
    address given twice, hosts on different numbers of networks, loopback mixed with real
    addresses, a controller count etcd cannot tolerate a failure with."""
    problems: list[str] = []
    hosts = [h for t in controllers if (h := _host(t, True, problems)) is not None]
    hosts += [h for t in computes if (h := _host(t, False, problems)) is not None]
    names: dict[str, Host] = {}
    addresses: dict[str, Host] = {}
    for host in hosts:
        if host.name in names:
            problems.append(f"{host.name}: the name is given twice")
        else:
            for address in host.addresses:
                if address in addresses:
                    problems.append(
                        f"{host.name}: address {address} is already {addresses[address].name}'s"
                    )
                addresses.setdefault(address, host)
        names.setdefault(host.name, host)
    links = {len(h.addresses) for h in hosts}
    if len(links) > 1:
        most = max(links, key=lambda n: sum(1 for h in hosts if len(h.addresses) == n))
        problems += [
            f"{h.name}: {len(h.addresses)} address(es) where the others give {most}: every host "
            "needs one address on each cluster network"
            for h in hosts
            if len(h.addresses) != most
        ]
    loopback = [(h, a) for h in hosts for a in h.addresses if ipaddress.ip_address(a).is_loopback]
    if loopback and len(loopback) != sum(len(h.addresses) for h in hosts):
        problems += [
            f"{h.name}: {a} is a loopback address: other hosts could never reach it"
            for h, a in loopback
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


def interleave_endpoints(urls: Sequence[Sequence[str]], first: int = 0) -> list[str]:
    """Every client URL of every member (`urls[i]`: member i's, one per link), ordered so
    that the next endpoint after any one is another member, and on another link where there
    are two: a client leaving an endpoint after a failure leaves the member that died and the
    link that was cut at once (docs/connectivity.md). Starts at member `first` on its first
    link (an agent's own)."""
    n = len(urls)
    links = max((len(u) for u in urls), default=1)
    out = []
    for round_ in range(links):
        for j in range(n):
            mine = urls[(first + j) % n]
            out.append(mine[(j + round_) % len(mine)])
    return list(dict.fromkeys(out))


def _endpoints(hosts: Sequence[Host], first: Host | None) -> list[str]:
    members = [h for h in hosts if h.controller]
    # Its own member first, as on every controller.
    start = members.index(first) if first is not None and first in members else 0
    return interleave_endpoints([m.client_urls() for m in members], start)


def agent_config(cluster: str, host: Host, hosts: Sequence[Host]) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "node": host.name,
        "kind": "full" if host.controller else "remote",
        # Heartbeats go to every address of each peer, from this node's address on the same
        # link: a beat on either link counts.
        "addresses": list(host.addresses),
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
    local = [] if ipaddress.ip_address(host.address).is_loopback else ["https://127.0.0.1:2379"]
    # On every link: etcd's peer transport moves to a member's next URL when one fails.
    return {
        "name": host.name,
        "data-dir": ETCD_DATA,
        "listen-client-urls": ",".join([*host.client_urls(), *local]),
        "advertise-client-urls": ",".join(host.client_urls()),
        "listen-peer-urls": ",".join(host.peer_urls()),
        "initial-advertise-peer-urls": ",".join(host.peer_urls()),
        "initial-cluster": ",".join(f"{m.name}={u}" for m in members for u in m.peer_urls()),
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
# Every lease renewal of the cluster goes through etcd: its leader starved of CPU or of
# disk answers none (docs/control-plane.md, "Where a hundred computes' cost goes"). The
# kernel shares the CPU between cgroups first, so a weight is what counts, not a nice value
# alone; the disk priority is etcd's own advice (best-effort, highest).
CPUWeight=1000
Nice=-10
IOSchedulingClass=best-effort
IOSchedulingPriority=0

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
# The agent's liveness (renewals, heartbeats) above the work on the host; the resource
# agents it runs share its cgroup at their own lower priority (`resource-nice`).
CPUWeight=500
Nice=-5

[Install]
WantedBy=multi-user.target
"""
