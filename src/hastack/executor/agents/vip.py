"""`hastack:vip`: a virtual IP address on this node, moved by adding and removing it.

Start adds the address through netlink (pyroute2) and announces it with gratuitous ARP so
neighbours update their caches at once (measured: a client follows in about 60 ms with it,
about 35 s without). Stop removes it. Monitor checks it is present. An address must never be
on two nodes at once, so the agent is exclusive.

The netmask is the configuration's, as IPaddr2's is; but one longer than that of the node's
own address on the interface (a /24 VIP on a /23 network) makes the kernel add a route for
that part of the network with the VIP as its source address, so the holder's new connections
to its peers there come *from the VIP*. etcd refuses such peer connections (the address is
not in the member's certificate): the holder's member can no longer forward a lease renewal
to the raft leader, and nodes lose their memberships on the next leader change. Start says so
in the log (`source_takeover`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from pyroute2 import IPRoute

from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult
from hastack.nsthread import in_netns

__all__ = ["VipAgent", "source_takeover"]

log = logging.getLogger("hastack.executor")

ETH_P_ARP = 0x0806

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def source_takeover(vip: Interface, existing: Iterable[Interface]) -> Network | None:
    """The network of an address already on the interface of which adding `vip` makes the
    VIP the source address for a part (its own, longer-prefix network), or None.

    The kernel adds a prefix route for every (network, prefix) that gets its first address,
    with that address as the route's preferred source; a longer prefix wins the route lookup.
    No route is added for a host prefix (/32, /128), nor when an address already has the
    VIP's exact network (the VIP is then a secondary address there)."""
    if vip.network.prefixlen == vip.max_prefixlen:
        return None
    others = [e for e in existing if e.version == vip.version and e.ip != vip.ip]
    if any(e.network == vip.network for e in others):
        return None
    # Networks are aligned: a shorter one holding the VIP holds the VIP's whole network.
    covering = [
        e.network
        for e in others
        if e.network.prefixlen < vip.network.prefixlen and vip.ip in e.network
    ]
    return min(covering, key=lambda n: n.prefixlen, default=None)


def _garp_frame(mac: bytes, ip: bytes, op: int) -> bytes:
    ethernet = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    target_mac = b"\xff" * 6 if op == 2 else b"\x00" * 6
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ip + target_mac + ip
    return ethernet + arp


class VipAgent(NativeAgent):
    name: ClassVar[str] = "vip"
    exclusive: ClassVar[bool] = True
    parameters: ClassVar[dict[str, bool]] = {
        "ip": True,
        "cidr_netmask": False,
        "nic": False,
        "arp_count": False,
    }

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        try:
            ip = ipaddress.ip_address(request.params.get("ip", ""))
        except ValueError:
            return OpResult(
                OcfRc.ERR_CONFIGURED, f"ip {request.params.get('ip')!r} is not an address"
            )
        try:
            prefix = int(request.params.get("cidr_netmask", "32" if ip.version == 4 else "128"))
            arp_count = int(request.params.get("arp_count", "3"))
        except ValueError:
            return OpResult(OcfRc.ERR_CONFIGURED, "cidr_netmask and arp_count must be integers")
        nic = request.params.get("nic")
        op = request.op
        try:
            if op == "start":
                marks: dict[str, float] = {}
                rc, reason = await in_netns(
                    request.netns, lambda: self._start(ip, prefix, nic, arp_count, marks)
                )
                return OpResult(rc, reason, time.monotonic() - started, marks=marks)
            elif op == "stop":
                rc, reason = await in_netns(request.netns, lambda: self._stop(ip))
            elif op in ("monitor", "status"):
                present = await in_netns(request.netns, lambda: self._find(ip) is not None)
                rc, reason = (OcfRc.SUCCESS, "") if present else (OcfRc.NOT_RUNNING, "")
            elif op in ("validate-all", "meta-data"):
                rc, reason = OcfRc.SUCCESS, ""
            else:
                rc, reason = OcfRc.ERR_UNIMPLEMENTED, f"{op} is not implemented by hastack:vip"
        except OSError as exc:
            rc, reason = OcfRc.ERR_GENERIC, f"{op} failed: {exc}"
        return OpResult(rc, reason, time.monotonic() - started)

    @staticmethod
    def _find(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int] | None:
        """(interface index, prefix length) where the address is configured, if anywhere."""
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        with IPRoute() as ipr:
            for addr in ipr.get_addr(family=family):
                if addr.get_attr("IFA_ADDRESS") == str(ip):
                    return int(addr["index"]), int(addr["prefixlen"])
        return None

    @staticmethod
    def _interface_for(
        ipr: IPRoute,
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
        nic: str | None,
        addrs: list[Any],
    ) -> int:
        if nic:
            found = ipr.link_lookup(ifname=nic)
            if not found:
                raise OSError(f"no interface named {nic!r}")
            return int(found[0])
        # The interface whose network contains the address, like IPaddr2's findif.
        for addr in addrs:
            network = ipaddress.ip_network(
                f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False
            )
            if ip in network and network.prefixlen > 0:
                return int(addr["index"])
        raise OSError(f"no interface has a network containing {ip}; give nic=")

    def _start(
        self,
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
        prefix: int,
        nic: str | None,
        arp_count: int,
        marks: dict[str, float],
    ) -> tuple[int, str]:
        """Add the address and announce it; `marks` gets the moments of both (wall time).

        On a failover's path: one netlink socket and one address dump for everything, and
        the announcing socket open before the address is added, so the first gratuitous ARP
        leaves right after it."""
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        with contextlib.ExitStack() as stack:
            ipr = stack.enter_context(IPRoute())
            addrs = list(ipr.get_addr(family=family))
            present = [a for a in addrs if a.get_attr("IFA_ADDRESS") == str(ip)]
            if present:
                index = int(present[0]["index"])
            else:
                index = self._interface_for(ipr, ip, nic, addrs)
            link = ipr.get_links(index)[0]
            name = str(link.get_attr("IFLA_IFNAME"))
            sock = None
            if ip.version == 4 and arp_count > 0:
                # Protocol 0: for sending only. A packet socket bound to a protocol also
                # receives it, and registering that took 10-13 ms here (2026-12-07), all of
                # it before the address was added.
                sock = stack.enter_context(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
                sock.bind((name, 0))
            if not present:
                existing = [
                    ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                    for a in addrs
                    if a["index"] == index
                ]
                vip = ipaddress.ip_interface(f"{ip}/{prefix}")
                taken = source_takeover(vip, existing)
                if taken is not None:
                    log.warning(
                        "vip %s on %s: a longer prefix than the node's %s, so it becomes the "
                        "source address of this node's connections to %s (etcd peers refuse "
                        "them: it is not in the member's certificate); cidr_netmask=%d keeps "
                        "the node's own address as the source",
                        vip, name, taken, vip.network, taken.prefixlen,
                    )  # fmt: skip
                ipr.addr("add", index=index, address=str(ip), prefixlen=prefix)
                marks["address-added"] = time.time()
            if sock is not None:
                mac = bytes.fromhex(str(link.get_attr("IFLA_ADDRESS")).replace(":", ""))
                self._announce(sock, mac, ip.packed, arp_count, marks)
        return OcfRc.SUCCESS, ""

    @staticmethod
    def _announce(
        sock: socket.socket, mac: bytes, ip: bytes, count: int, marks: dict[str, float]
    ) -> None:
        """Gratuitous ARP: a request and a reply per round, so every kind of neighbour updates."""
        for round_ in range(count):
            sock.send(_garp_frame(mac, ip, 1))
            sock.send(_garp_frame(mac, ip, 2))
            marks.setdefault("arp-sent", time.time())
            if round_ + 1 < count:
                time.sleep(0.02)

    def _stop(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, str]:
        found = self._find(ip)
        if found is None:
            return OcfRc.SUCCESS, ""
        index, prefix = found
        with IPRoute() as ipr:
            ipr.addr("del", index=index, address=str(ip), prefixlen=prefix)
        return OcfRc.SUCCESS, ""
