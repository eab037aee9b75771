"""Which nodes serve a resource, from cluster state: pure, so the cluster source stays thin.

Input is what the store holds — `members/<node>` records (online nodes and their addresses) and
`status/<node>` reports (the roles of the resource instances there) — and the output is the
backend's server list. A node is in it while it is a member *and* reports a matching instance
that has not failed: when its agent reports the instance Stopped or failed, or its lease
expires, the server leaves the pool with the next watch event, before any health check runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from hastack.model.config import Role
from hastack.model.members import MemberRecord
from hastack.model.status import NodeReport, ResourceReport
from hastack.proxy.config import ClusterPool, FollowRole
from hastack.proxy.view import Endpoint

__all__ = ["follow", "instances_of", "pick_address"]

_RUNNING = (Role.STARTED, Role.UNPROMOTED, Role.PROMOTED)


def instances_of(resource: str, report: NodeReport) -> list[ResourceReport]:
    """`api` matches the primitive `api` and the clone instances `api:0`, `api:1`, ..."""
    return [
        r
        for name, r in report.resources.items()
        if name == resource or (name.startswith(resource + ":") and name[len(resource) + 1 :])
    ]


def _matches(report: ResourceReport, role: FollowRole) -> bool:
    if report.failed:
        return False
    if role is FollowRole.PROMOTED:
        return report.role is Role.PROMOTED
    return report.role in _RUNNING


def pick_address(
    member: MemberRecord, network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
) -> str | None:
    for address in member.addresses:
        if network is None:
            return address
        try:
            if ipaddress.ip_address(address) in network:
                return address
        except ValueError:
            continue
    return None


def follow(
    pool: ClusterPool,
    members: Mapping[str, MemberRecord],
    reports: Mapping[str, NodeReport],
) -> tuple[Endpoint, ...]:
    """The servers of a backend that follows `pool.resource`, sorted by node name."""
    out: list[Endpoint] = []
    for node in sorted(reports):
        member = members.get(node)
        if member is None:
            continue  # offline: its report is stale
        if not any(_matches(r, pool.role) for r in instances_of(pool.resource, reports[node])):
            continue
        address = pick_address(member, pool.network)
        if address is None:
            continue
        out.append(Endpoint(node, address, pool.port, pool.weight, pool.maxconn))
    return tuple(out)
