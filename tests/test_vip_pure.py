"""hastack:vip's netmask check, as data: when adding the address makes it the source of the
node's own connections to part of a network it is already on (no privileges needed)."""

from __future__ import annotations

from ipaddress import ip_interface, ip_network

from hastack.executor.agents.vip import source_takeover

NODE = ip_interface("10.251.118.11/23")


def test_a_longer_prefix_than_the_nodes_network_takes_over_the_source_address() -> None:
    # The G1 failure: a /24 VIP on a /23 link became the source of the holder's etcd peer
    # connections to 10.251.118.12 and .13.
    assert source_takeover(ip_interface("10.251.118.100/24"), [NODE]) == ip_network(
        "10.251.118.0/23"
    )
    assert source_takeover(ip_interface("10.251.119.100/25"), [NODE]) == ip_network(
        "10.251.118.0/23"
    )


def test_the_networks_own_prefix_a_host_prefix_or_another_network_do_not() -> None:
    assert source_takeover(ip_interface("10.251.118.100/23"), [NODE]) is None  # a secondary
    assert source_takeover(ip_interface("10.251.118.100/32"), [NODE]) is None  # no route
    assert source_takeover(ip_interface("192.168.7.10/24"), [NODE]) is None  # its own network
    assert source_takeover(ip_interface("10.251.120.100/24"), [NODE]) is None  # outside /23
    assert source_takeover(ip_interface("10.251.118.100/22"), [NODE]) is None  # shorter


def test_an_address_already_on_the_vips_network_keeps_the_source() -> None:
    # Another address already has 10.251.118.0/24: the kernel made its route then, and the
    # VIP joins it as a secondary address.
    on_24 = ip_interface("10.251.118.50/24")
    assert source_takeover(ip_interface("10.251.118.100/24"), [NODE, on_24]) is None


def test_the_vip_itself_and_other_families_are_ignored() -> None:
    vip = ip_interface("10.251.118.100/24")
    assert source_takeover(vip, [vip]) is None  # already there (a repeated start)
    assert source_takeover(vip, [vip, NODE]) == ip_network("10.251.118.0/23")
    v6 = ip_interface("fd00::11/64")
    assert source_takeover(vip, [v6]) is None
    assert source_takeover(ip_interface("fd00::100/80"), [v6, NODE]) == ip_network("fd00::/64")
