"""The shape of a lab, as data: hosts, namespaces, interface names, addresses, and the
nftables ruleset that expresses the network faults. Pure — nothing here touches the machine,
so the names and rules the lab will create can be tested and shown before they exist.

Hosts: controllers `n1..nN` (etcd member + full agent), computes `c1..cM` (remote agent),
and `client` (workloads). Every host is a namespace `<prefix>-<host>`; the switches (one
bridge per link, `br0`, `br1`) live in `<prefix>-hub`. Host `h`'s interface on link `k` is
`eth<k>` inside its namespace; its other end, the switch port, is `<h>-<k>` in the hub.

Link `k` is the network `10.<251+k>.<X>.0/23` (X even), chosen per run so that two labs on
one machine never share addresses. In its first half, `10.<251+k>.<X>`: controllers are
`.11, .12, ...`, the client `.200`; `.100` is free for a VIP and `.150`-`.199` for addresses
that scenarios hand out (routers). Computes fill the second half, `10.<251+k>.<X+1>.1` to
`.254`: up to 254 of them.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "FIRST_LINK_OCTET",
    "MAX_LINKS",
    "NFT_CHAIN",
    "NFT_TABLE",
    "Host",
    "HostRole",
    "NetFaults",
    "Topology",
    "parse_partition",
    "render_ruleset",
]

FIRST_LINK_OCTET = 251  # link k is 10.(251+k).X.0/23
MAX_COMPUTES = 254
MAX_LINKS = 2
NFT_TABLE = "hastack_lab"
NFT_CHAIN = "forward_filter"  # never `fwd`: that is an nft keyword
CLIENT = "client"
_HOST_RE = re.compile(r"^n[1-9]$|^c[1-9][0-9]{0,2}$|^client$")


class HostRole(enum.StrEnum):
    CONTROLLER = "controller"  # etcd member + full agent (may be DC)
    COMPUTE = "compute"  # remote agent, never DC
    CLIENT = "client"  # workloads only


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    role: HostRole
    namespace: str
    addresses: tuple[str, ...]  # one per link, link 0 first

    @property
    def address(self) -> str:
        """The address on link 0: etcd and the agent use it."""
        return self.addresses[0]

    def ports(self) -> tuple[str, ...]:
        """Switch ports (hub side of the veth pairs) of this host, one per link."""
        return tuple(port_name(self.name, k) for k in range(len(self.addresses)))


def port_name(host: str, link: int) -> str:
    name = f"{host}-{link}"
    assert len(name) <= 15, name  # IFNAMSIZ
    return name


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str  # per run, e.g. hl3fa9
    subnet: int  # X in 10.(251+k).X.0/23, even
    controllers: int
    computes: int
    links: int

    def __post_init__(self) -> None:
        if not 1 <= self.controllers <= 9:
            raise ValueError(f"--nodes must be between 1 and 9, got {self.controllers}")
        if not 0 <= self.computes <= MAX_COMPUTES:
            raise ValueError(
                f"--computes must be between 0 and {MAX_COMPUTES} (the addresses of the second "
                f"half of the lab's /23), got {self.computes}"
            )
        if not 1 <= self.links <= MAX_LINKS:
            raise ValueError(f"--links must be 1 or {MAX_LINKS}, got {self.links}")
        if not 0 <= self.subnet <= 254 or self.subnet % 2:
            raise ValueError(f"subnet octet must be even, 0..254, got {self.subnet}")

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    def network(self, link: int) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{FIRST_LINK_OCTET + link}.{self.subnet}.0/23")

    def networks(self) -> list[ipaddress.IPv4Network]:
        return [self.network(k) for k in range(self.links)]

    def net_prefix(self, link: int, half: int = 0) -> str:
        """`10.251.X` — scenarios write `${net0}.100` for the VIP; half 1 is the computes'."""
        base = self.network(link).network_address
        return str(base + 256 * half).rsplit(".", 1)[0]

    def _host(self, name: str, role: HostRole, last_octet: int, half: int = 0) -> Host:
        addresses = tuple(f"{self.net_prefix(k, half)}.{last_octet}" for k in range(self.links))
        return Host(name, role, f"{self.prefix}-{name}", addresses)

    def hosts(self) -> list[Host]:
        out = [
            self._host(f"n{i}", HostRole.CONTROLLER, 10 + i) for i in range(1, 1 + self.controllers)
        ]
        out += [
            self._host(f"c{i}", HostRole.COMPUTE, i, half=1) for i in range(1, 1 + self.computes)
        ]
        out.append(self._host(CLIENT, HostRole.CLIENT, 200))
        return out

    def host(self, name: str) -> Host:
        for h in self.hosts():
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts())
        raise KeyError(f"no host {name!r} in this lab (hosts: {known})")

    def namespaces(self) -> list[str]:
        return [self.hub, *(h.namespace for h in self.hosts())]

    def hosts_file(self, own: str) -> str:
        """/etc/hosts for one host: itself, then every lab host by name on link 0."""
        lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{own}"]
        lines += [f"{h.address}\t{h.name}" for h in self.hosts()]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class NetFaults:
    """The network faults in force; the hub's ruleset is a function of this alone."""

    partition: tuple[tuple[str, ...], ...] = ()  # groups cut from each other
    loss: tuple[tuple[str, int], ...] = ()  # (host, percent) of packets dropped to and from it

    def to_json(self) -> dict[str, object]:
        return {"partition": [list(g) for g in self.partition], "loss": dict(self.loss)}

    @staticmethod
    def from_json(data: Mapping[str, object]) -> NetFaults:
        groups = data.get("partition") or []
        loss = data.get("loss") or {}
        assert isinstance(groups, list)
        assert isinstance(loss, dict)
        return NetFaults(
            tuple(tuple(str(h) for h in g) for g in groups),
            tuple(sorted((str(h), int(p)) for h, p in loss.items())),
        )


def parse_partition(text: str, known: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """`'n1 | n2,n3'` -> (("n1",), ("n2", "n3")). Hosts not named stay connected to all."""
    names = set(known)
    groups = []
    seen: set[str] = set()
    for part in text.split("|"):
        group = tuple(h for h in re.split(r"[,\s]+", part.strip()) if h)
        if not group:
            raise ValueError(f"empty group in partition {text!r} (write e.g. 'n1 | n2,n3')")
        for h in group:
            if h not in names:
                raise ValueError(f"no host {h!r} in this lab (hosts: {', '.join(sorted(names))})")
            if h in seen:
                raise ValueError(f"host {h!r} is in two groups of {text!r}")
            seen.add(h)
        groups.append(group)
    if len(groups) < 2:
        raise ValueError(f"a partition needs at least two groups separated by '|': {text!r}")
    return tuple(groups)


def _set(ports: Iterable[str]) -> str:
    return "{ " + ", ".join(f'"{p}"' for p in ports) + " }"


def render_ruleset(faults: NetFaults, ports: Mapping[str, Sequence[str]]) -> str:
    """The whole bridge table for the hub, replacing what was there in one nft transaction.

    Drops are silent (no reject): a partitioned peer looks exactly like a dead one until
    timeouts say otherwise, which is the hard case for a cluster manager.
    """
    rules: list[str] = []
    groups = faults.partition
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            pa = [p for h in a for p in ports[h]]
            pb = [p for h in b for p in ports[h]]
            side_a, side_b = ",".join(a), ",".join(b)
            rules.append(f'iifname {_set(pa)} oifname {_set(pb)} drop comment "{side_a}|{side_b}"')
            rules.append(f'iifname {_set(pb)} oifname {_set(pa)} drop comment "{side_b}|{side_a}"')
    for host, percent in faults.loss:
        if percent <= 0:
            continue
        p = _set(ports[host])
        # numgen random: tc netem is not in this kernel; the drop decision is per packet.
        chance = f"numgen random mod 100 < {percent} " if percent < 100 else ""
        rules.append(f'iifname {p} {chance}drop comment "loss {host}"')
        rules.append(f'oifname {p} {chance}drop comment "loss {host}"')
    body = "\n".join(f"    {r}" for r in rules)
    return (
        f"table bridge {NFT_TABLE}\n"
        f"delete table bridge {NFT_TABLE}\n"
        f"table bridge {NFT_TABLE} {{\n"
        f"  chain {NFT_CHAIN} {{\n"
        f"    type filter hook forward priority 0; policy accept;\n"
        f"{body}\n"
        f"  }}\n"
        f"}}\n"
    )


def is_host_name(name: str) -> bool:
    return bool(_HOST_RE.match(name))
