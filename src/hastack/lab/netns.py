"""Network namespaces a run creates for itself, and only those.

Names carry a per-run prefix; a namespace that already exists is never reused or removed,
so another run (or anything else on the machine) is never touched.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterable

from pyroute2 import netns

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

    Made with iproute2's `ip` (fork and exec at once), not pyroute2's netns.create/NetNS,
    which fork a Python child that must answer within 2 s: forked from a process whose other
    threads hold locks (a gRPC client's), that child can hang, and the creation fails.
    """
    if namespace_exists(name):
        raise RuntimeError(f"network namespace {name} already exists; refusing to touch it")
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        for ifname in ("lo", "eth0", "eth1"):
            _ip("-n", name, "link", "set", ifname, "up")
        _ip("-n", name, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0")
    except Exception:
        _ip("netns", "delete", name)
        raise


def remove_namespaces(names: Iterable[str]) -> None:
    existing = set(netns.listnetns())
    for name in names:
        if name in existing:
            _ip("netns", "delete", name)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
