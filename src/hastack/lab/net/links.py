"""The machine side of the lab: namespaces, bridges, veth pairs, routes, hosts files, nft.

Every function acts on one named object that the caller's run recorded as its own before
creating it; nothing here lists and removes by pattern. Bridges are only ever created inside
the hub namespace, and the only change to the root namespace is a blackhole route per lab
network (so a client started outside the lab by mistake fails locally instead of sending
lab traffic out of the machine's default route).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import shutil
import subprocess
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns

from hastack.nsthread import call_in_netns
from hastack.processes import ProcessRecord, pids_by_netns

__all__ = [
    "NETNS_ETC",
    "NETNS_RUN",
    "add_blackhole",
    "add_bridge",
    "add_veth",
    "apply_nft",
    "blackholes",
    "create_namespace",
    "delay_names",
    "flush_extra_addresses",
    "ignore_linkdown_routes",
    "namespace_exists",
    "netns_pids",
    "plumb_delay",
    "remove_blackhole",
    "remove_namespace",
    "remove_netns_etc",
    "root_routes_within",
    "set_link",
    "unplumb_delay",
    "write_hosts_file",
]

NETNS_RUN = Path("/var/run/netns")
NETNS_ETC = Path("/etc/netns")
RTN_BLACKHOLE = 6


def namespace_exists(name: str) -> bool:
    return name in netns.listnetns()


def create_namespace(name: str) -> None:
    """Create `name` with loopback up; refuse if anything of that name exists already."""
    if namespace_exists(name) or (NETNS_RUN / name).exists():
        raise FileExistsError(f"network namespace {name} already exists; refusing to touch it")
    netns.create(name)
    with NetNS(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def ignore_linkdown_routes(name: str) -> None:
    """A route whose interface lost its carrier is not used (net.ipv4 and net.ipv6
    `ignore_routes_with_linkdown`): with a cable cut, connections over it fail at once
    instead of timing out, and what has another link moves to it (docs/connectivity.md)."""

    def write() -> None:
        for family in ("ipv4", "ipv6"):
            for scope in ("all", "default"):
                path = Path(f"/proc/sys/net/{family}/conf/{scope}/ignore_routes_with_linkdown")
                path.write_text("1\n")

    call_in_netns(name, write)


def remove_namespace(name: str) -> bool:
    if not namespace_exists(name):
        return False
    netns.remove(name)
    return True


def add_bridge(hub: str, name: str) -> None:
    with NetNS(hub) as ns:
        ns.link("add", ifname=name, kind="bridge")
        # STP off (the default) puts ports into forwarding at once; no 15 s learning delay.
        ns.link("set", index=ns.link_lookup(ifname=name)[0], state="up")


def add_veth(
    hub: str, bridge: str, port: str, host_ns: str, ifname: str, address: str, prefixlen: int
) -> None:
    """A cable: `port` on `bridge` in the hub, `ifname` with `address` in the host."""
    with NetNS(hub) as ns:
        ns.link("add", ifname=port, kind="veth", peer={"ifname": ifname, "net_ns_fd": host_ns})
        index = ns.link_lookup(ifname=port)[0]
        ns.link("set", index=index, master=ns.link_lookup(ifname=bridge)[0], state="up")
    with NetNS(host_ns) as ns:
        index = ns.link_lookup(ifname=ifname)[0]
        ns.addr("add", index=index, address=address, prefixlen=prefixlen)
        ns.link("set", index=index, state="up")


def set_link(namespace: str, ifname: str, up: bool) -> None:
    with NetNS(namespace) as ns:
        found = ns.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface {ifname} in {namespace}")
        ns.link("set", index=found[0], state="up" if up else "down")


def flush_extra_addresses(namespace: str, keep: dict[str, str]) -> list[str]:
    """Remove every IPv4 address on the host's lab interfaces but its own — what a reboot
    does to addresses that were added at run time (a VIP the crashed node held)."""
    removed = []
    with NetNS(namespace) as ns:
        for ifname, own in keep.items():
            found = ns.link_lookup(ifname=ifname)
            if not found:
                continue
            for addr in ns.get_addr(family=2, index=found[0]):
                value = addr.get_attr("IFA_ADDRESS")
                if value != own:
                    ns.addr("del", index=found[0], address=value, prefixlen=addr["prefixlen"])
                    removed.append(f"{value}/{addr['prefixlen']} on {ifname}")
    return removed


def has_address(namespace: str, address: str) -> bool:
    with NetNS(namespace) as ns:
        return any(a.get_attr("IFA_ADDRESS") == address for a in ns.get_addr(family=2))


# ---- the root namespace: blackhole routes only ------------------------------------------------


def root_routes_within(network: ipaddress.IPv4Network) -> list[str]:
    """Routes of the root namespace's main table that overlap `network` (default excluded)."""
    found = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=2, table=254):
            dst = route.get_attr("RTA_DST")
            if dst is None:
                continue
            net = ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False)
            if net.prefixlen > 0 and net.overlaps(network):
                found.append(f"{net} (type {route['type']})")
    return found


def blackholes() -> set[str]:
    with IPRoute() as ipr:
        return {
            f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
            for r in ipr.get_routes(family=2, table=254)
            if r["type"] == RTN_BLACKHOLE and r.get_attr("RTA_DST") is not None
        }


def add_blackhole(network: str) -> None:
    with IPRoute() as ipr:
        ipr.route("add", dst=network, type="blackhole")


def remove_blackhole(network: str) -> bool:
    if network not in blackholes():
        return False
    with IPRoute() as ipr:
        ipr.route("del", dst=network, type="blackhole")
    return True


# ---- per-namespace /etc ------------------------------------------------------------------------


def write_hosts_file(namespace: str, text: str, hostname: str) -> None:
    """`ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*: the host's own names."""
    directory = NETNS_ETC / namespace
    directory.mkdir(parents=True, exist_ok=False)
    (directory / "hosts").write_text(text)
    (directory / "hostname").write_text(hostname + "\n")


def remove_netns_etc(namespace: str) -> bool:
    directory = NETNS_ETC / namespace
    if not directory.exists():
        return False
    shutil.rmtree(directory)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only if empty: we may have been the first to make it
    return True


# ---- processes and nft -------------------------------------------------------------------------


def netns_pids(namespace: str) -> list[ProcessRecord]:
    """Every process whose network namespace is `namespace` (what `ip netns pids` lists),
    each with its start time so a later signal cannot hit a reused PID."""
    return pids_by_netns([namespace]).get(namespace, [])


def apply_nft(hub: str, ruleset: str) -> None:
    """Load a ruleset into the hub namespace's nftables in one transaction."""
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", hub, "nft", "-f", "-"],
            input=ruleset.encode(),
            capture_output=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError:
        raise OSError(errno.ENOENT, "nft not found: apt-get install nftables") from None
    if proc.returncode != 0:
        raise OSError(f"nft refused the lab ruleset: {proc.stderr.decode().strip()}")


# ---- the delayer's re-cabling (hastack.lab.net.delayer) ----------------------------------


def delay_names(port: str) -> tuple[str, str]:
    return port + "x", port + "y"


def _index_of(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise OSError(f"no interface {name}")
    return int(found[0])


def plumb_delay(ipr: IPRoute, port: str, bridge: str) -> None:
    """Put a delayer's two interfaces between a host's cable and its switch port, keeping the
    port's name on the bridge (hastack.lab.net.delayer has the picture)."""
    outer, inner = delay_names(port)
    old = _index_of(ipr, port)
    ipr.link("set", index=old, state="down")
    ipr.link("set", index=old, master=0)
    ipr.link("set", index=old, ifname=outer)
    ipr.link("add", ifname=port, kind="veth", peer={"ifname": inner})
    ipr.link("set", index=_index_of(ipr, port), master=_index_of(ipr, bridge))
    for name in (port, inner, outer):
        ipr.link("set", index=_index_of(ipr, name), state="up")


def unplumb_delay(ipr: IPRoute, port: str, bridge: str) -> bool:
    """Cable the host back to the switch directly; False if it was not re-cabled."""
    outer, _ = delay_names(port)
    if not ipr.link_lookup(ifname=outer):
        return False
    with contextlib.suppress(OSError):
        ipr.link("del", index=_index_of(ipr, port))  # and its peer
    old = _index_of(ipr, outer)
    ipr.link("set", index=old, state="down")
    ipr.link("set", index=old, ifname=port)
    ipr.link("set", index=old, master=_index_of(ipr, bridge))
    ipr.link("set", index=old, state="up")
    return True
