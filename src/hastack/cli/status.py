"""`hastack status`: the whole cluster at a glance, in the spirit of `pcs status`."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import StoreError
from hastack.executor.agents.base import OcfRc
from hastack.membership.quorum import QuorumView, quorum_view
from hastack.model.agent_config import ClientConfig
from hastack.model.config import Clone, ClusterConfig, Group, Primitive, Role
from hastack.model.members import ClusterSnapshot
from hastack.model.scores import INFINITY
from hastack.model.state import base_id
from hastack.scheduler.plan import Assignment
from hastack.scheduler.render import render_resources
from hastack.store import EndpointStatus, EtcdStore, Keys, endpoint_status
from hastack.store.snapshot import read_snapshot

__all__ = ["StatusReport", "collect_status", "register", "render_text"]

STATUS_TIMEOUT = 2.0


@dataclass(frozen=True)
class NodeLine:
    name: str
    kind: str
    online: bool
    addresses: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusReport:
    cluster: str
    collected_at: float
    store: list[EndpointStatus]
    quorum: QuorumView
    revision: int | None = None
    dc_node: str | None = None
    dc_epoch: int | None = None
    dc_since: float | None = None
    nodes: list[NodeLine] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    resource_lines: list[str] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    failed_actions: list[str] = field(default_factory=list)
    fail_counts: list[str] = field(default_factory=list)
    config_revision: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["quorum"] = {
            "quorate": self.quorum.is_quorate,
            "healthy": self.quorum.healthy,
            "total": self.quorum.total,
            "needed": self.quorum.needed,
        }
        return data


def _node_lines(snapshot: ClusterSnapshot) -> list[NodeLine]:
    lines = []
    for name in snapshot.known_nodes:
        member = snapshot.members.get(name)
        record = snapshot.nodes.get(name)
        if member is not None:
            lines.append(
                NodeLine(
                    name, member.kind.value, True, list(member.addresses), dict(member.attributes)
                )
            )
        elif record is not None:
            lines.append(NodeLine(name, record.kind.value, False, list(record.addresses)))
    return lines


async def collect_status(client: ClientConfig, *, timeout: float = STATUS_TIMEOUT) -> StatusReport:
    keys = Keys(client.cluster, client.etcd.root)
    endpoints = await asyncio.gather(*(endpoint_status(e, timeout) for e in client.etcd.endpoints))
    quorum = quorum_view(sum(1 for e in endpoints if e.healthy), len(endpoints))
    now = time.time()
    store = EtcdStore(
        [e.endpoint for e in endpoints if e.healthy] or client.etcd.endpoints, timeout
    )
    try:
        snapshot = await read_snapshot(store, keys)
    except StoreError as exc:
        return StatusReport(client.cluster, now, list(endpoints), quorum, error=str(exc))
    finally:
        await store.close()
    dc = snapshot.dc
    lines, resources, failed, counts = _resources(snapshot)
    return StatusReport(
        cluster=client.cluster,
        collected_at=now,
        store=list(endpoints),
        quorum=quorum,
        revision=snapshot.revision,
        dc_node=dc.node if dc else None,
        dc_epoch=dc.epoch if dc else None,
        dc_since=dc.since if dc else None,
        nodes=_node_lines(snapshot),
        problems=list(snapshot.problems),
        resource_lines=lines,
        resources=resources,
        failed_actions=failed,
        fail_counts=counts,
        config_revision=snapshot.config_revision,
    )


def _tops(config: ClusterConfig) -> dict[str, str]:
    out = {}
    for top in config.resources:
        stack: list[Primitive | Group | Clone] = [top]
        while stack:
            r = stack.pop()
            out[r.id] = top.id
            if isinstance(r, Group):
                stack += r.resources
            elif isinstance(r, Clone):
                stack.append(r.resource)
    return out


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "?"


def _resources(
    snapshot: ClusterSnapshot,
) -> tuple[list[str], list[dict[str, Any]], list[str], list[str]]:
    """What runs where, failed actions and fail counts, from the nodes' own reports."""
    config = snapshot.config
    if config is None:
        return ([], [], [], [])
    tops = _tops(config)
    assignments: list[Assignment] = []
    resources: list[dict[str, Any]] = []
    failed: list[str] = []
    counts: list[str] = []
    unmanaged = {name for node, target in snapshot.targets.items() for name in target.unmanaged}
    for node in sorted(snapshot.statuses):
        report = snapshot.statuses[node]
        online = node in snapshot.members
        for instance, r in sorted(report.resources.items()):
            primitive = base_id(instance) if base_id(instance) in tops else instance
            entry: dict[str, Any] = {"instance": instance, "node": node, **r.to_json()}
            entry["node-online"] = online
            resources.append(entry)
            if r.role is not Role.STOPPED and online:
                assignments.append(
                    Assignment(
                        instance,
                        primitive,
                        tops.get(primitive, instance),
                        node,
                        r.role,
                        managed=instance not in unmanaged,
                    )
                )
            op = r.failed_op
            if op is not None:
                what = OcfRc.describe(op.rc)
                reason = f": {op.reason}" if op.reason else ""
                failed.append(
                    f"{instance} {op.op} on {node} returned {op.rc} ({what}){reason} "
                    f"at {_when(op.at)}" + (", BLOCKED" if r.blocked else "")
                )
            if r.fail_count:
                shown = "INFINITY" if r.fail_count >= INFINITY else str(r.fail_count)
                counts.append(f"{instance} on {node}: {shown}")
    return render_resources(config, assignments), resources, failed, counts


def _ago(then: float | None, now: float) -> str:
    if not then:
        return ""
    seconds = max(0.0, now - then)
    if seconds < 120:
        return f", elected {seconds:.0f}s ago"
    return f", elected {seconds / 60:.0f}min ago"


def _bracket(names: list[str]) -> str:
    return "[ " + " ".join(names) + " ]" if names else "[ ]"


def render_text(report: StatusReport) -> str:
    out: list[str] = []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.collected_at))
    q = report.quorum
    out.append(f"Cluster name: {report.cluster}")
    out.append("Cluster Summary:")
    if report.error is not None:
        out.append(f"  * Store: UNREACHABLE ({report.error})")
    elif report.dc_node is not None:
        out.append(
            f"  * Current DC: {report.dc_node} (epoch {report.dc_epoch}"
            f"{_ago(report.dc_since, report.collected_at)}) - partition "
            + ("with quorum" if q.is_quorate else "WITHOUT quorum")
        )
    else:
        out.append("  * Current DC: NONE")
    out.append(
        f"  * Quorum: {'yes' if q.is_quorate else 'NO'} - etcd {q.healthy} of {q.total} members "
        f"healthy, {q.needed} needed"
    )
    rev = f" (store revision {report.revision})" if report.revision is not None else ""
    out.append(f"  * Last updated: {stamp}{rev}")
    if report.error is None:
        online = [n for n in report.nodes if n.online]
        out.append(f"  * {len(report.nodes)} nodes known, {len(online)} online")
        out.append("")
        out.append("Node List:")
        full_on = [n.name for n in report.nodes if n.online and n.kind == "full"]
        full_off = [n.name for n in report.nodes if not n.online and n.kind == "full"]
        remote_on = [n.name for n in report.nodes if n.online and n.kind == "remote"]
        remote_off = [n.name for n in report.nodes if not n.online and n.kind == "remote"]
        out.append(f"  * Online: {_bracket(full_on)}")
        if full_off:
            out.append(f"  * OFFLINE: {_bracket(full_off)}")
        if remote_on or remote_off:
            out.append(f"  * RemoteOnline: {_bracket(remote_on)}")
        if remote_off:
            out.append(f"  * RemoteOFFLINE: {_bracket(remote_off)}")
        out.append("")
        out.append("Full List of Resources:")
        if report.resource_lines:
            out.extend(line[2:] for line in report.resource_lines)
        else:
            out.append("  * No resources")
        if report.failed_actions:
            out.append("")
            out.append("Failed Resource Actions:")
            out.extend(f"  * {line}" for line in report.failed_actions)
        if report.fail_counts:
            out.append("")
            out.append("Fail Counts:")
            out.extend(f"  * {line}" for line in report.fail_counts)
    out.append("")
    out.append("Store:")
    for e in report.store:
        if e.healthy:
            out.append(f"  * {e.endpoint}: healthy" + (", leader" if e.is_leader else ""))
        else:
            out.append(f"  * {e.endpoint}: UNHEALTHY ({e.error})")
    if report.problems:
        out.append("")
        out.append("Problems:")
        out.extend(f"  * {p}" for p in report.problems)
    return "\n".join(out)


def run_status(args: argparse.Namespace) -> int:
    client = resolve_client(args)
    report = asyncio.run(collect_status(client))
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(render_text(report))
    return 0 if report.error is None else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        help="show the cluster: DC and epoch, quorum, nodes, resources, store health",
        description="Show the cluster: DC and epoch, quorum, online/offline nodes, resources, "
        "the health of every etcd member, and any value in the store hastack cannot read. "
        "Exits 1 when the store cannot be read.",
    )
    add_client_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_status)
