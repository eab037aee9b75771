"""Network namespaces a run creates for itself, and only those.

Names carry a per-run prefix; a namespace that already exists is never reused or removed,
so another run (or anything else on the machine) is never touched.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from pyroute2 import NetNS, netns

__all__ = ["create_node_namespace", "namespace_exists", "remove_namespaces", "run_prefix"]


def run_prefix(tag: str = "hs") -> str:
    """A short prefix unique to this run, e.g. `hs3fa9`."""
    return f"{tag}{secrets.token_hex(2)}"


def namespace_exists(name: str) -> bool:
    return name in netns.listnetns()


def create_node_namespace(name: str, address: str, prefixlen: int = 24) -> None:
    """A namespace with loopback up and one interface, eth0, holding `address`.

    eth0 is one end of a veth pair whose other end (eth1) stays inside the same namespace:
    the node has a real Ethernet interface (for addresses, ARP) and no path out at all.
    """
    if namespace_exists(name):
        raise RuntimeError(f"network namespace {name} already exists; refusing to touch it")
    netns.create(name)
    try:
        with NetNS(name) as ns:
            ns.link("add", ifname="eth0", kind="veth", peer="eth1")
            for ifname in ("lo", "eth0", "eth1"):
                ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")
            ns.addr(
                "add", index=ns.link_lookup(ifname="eth0")[0], address=address, prefixlen=prefixlen
            )
    except Exception:
        netns.remove(name)
        raise


def remove_namespaces(names: Iterable[str]) -> None:
    existing = set(netns.listnetns())
    for name in names:
        if name in existing:
            netns.remove(name)
