"""What `hastack status` shows, collected from one snapshot: DC and epoch, quorum, the alerts
the DC raised that still stand, nodes (online, offline, standby, maintenance), resources with
role and node, failed actions, fail counts, store health, and values the store holds that
hastack cannot read."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hastack.compute.evacuation import EvacuationRecord, RecordState
from hastack.controller import build_state
from hastack.errors import StoreError
from hastack.executor.agents.base import OcfRc
from hastack.membership.quorum import QuorumView, quorum_view
from hastack.model.agent_config import ClientConfig
from hastack.model.config import Clone, ClusterConfig, Group, Primitive, Role
from hastack.model.events import current_alerts
from hastack.model.members import ClusterSnapshot
from hastack.model.scores import INFINITY
from hastack.model.state import base_id
from hastack.ops.assign import assignment_views, render
from hastack.scheduler import schedule
from hastack.scheduler.explain import why_stopped
from hastack.scheduler.plan import Assignment
from hastack.scheduler.render import render_resources
from hastack.store import EndpointStatus, EtcdStore, Keys, endpoint_status, member_quorum
from hastack.store.snapshot import read_snapshot
from hastack.store.tls import load_credentials

__all__ = ["NodeLine", "StatusReport", "build_report", "collect_status"]

STATUS_TIMEOUT = 2.0


@dataclass(frozen=True)
class NodeLine:
    name: str
    kind: str
    online: bool
    addresses: list[str] = field(default_factory=list)
    # Transient attributes (set by agents in this life; the agent file's static ones too)
    # and permanent ones (the configuration's nodes[].attributes): docs/attributes.md.
    attributes: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)
    # From the configuration (`hastack node standby|maintenance`): shown apart from the
    # plain online nodes, as `pcs status` shows them.
    standby: bool = False
    maintenance: bool = False
    active: int = 0  # instances it reports running (a node in standby still emptying)


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
    # What the DC is waiting for: operations under way and targets not yet taken, each with
    # since when (docs/control-plane.md).
    pending: list[str] = field(default_factory=list)
    config_revision: int = 0
    # Work assignment (docs/assign.md): per assignment, its entities and who serves them;
    # `assignment_lines` is the same as text (`hastack assign show`).
    assignments: list[dict[str, Any]] = field(default_factory=list)
    assignment_lines: list[str] = field(default_factory=list)
    # Configured primitives that run nowhere, with what keeps each from running.
    stopped: dict[str, list[str]] = field(default_factory=dict)
    # Alerts the DC raised that still stand (hastack.model.events.current_alerts), shown
    # first as `pcs status` shows its warnings.
    alerts: list[str] = field(default_factory=list)

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
    config = snapshot.config
    flags = {n.node: n for n in config.nodes} if config is not None else {}
    lines = []
    for name in snapshot.known_nodes:
        member = snapshot.members.get(name)
        record = snapshot.nodes.get(name)
        spec = flags.get(name)
        report = snapshot.statuses.get(name)
        kind = member.kind if member else record.kind if record else None
        if kind is None:
            continue
        transient = dict(member.attributes) if member else {}
        if snapshot.has_reported(name) and report is not None:
            transient.update(report.attributes)
        lines.append(
            NodeLine(
                name,
                kind.value,
                member is not None,
                list(member.addresses if member else record.addresses if record else ()),
                dict(sorted(transient.items())),
                {k: str(v) for k, v in sorted(spec.attributes.items())} if spec else {},
                standby=spec is not None and spec.standby,
                maintenance=spec is not None and spec.maintenance,
                active=len(report.active()) if report is not None and member else 0,
            )
        )
    return lines


async def collect_status(client: ClientConfig, *, timeout: float = STATUS_TIMEOUT) -> StatusReport:
    keys = Keys(client.cluster, client.etcd.root)
    credentials = load_credentials(client.etcd)
    endpoints = await asyncio.gather(
        *(endpoint_status(e, timeout, credentials) for e in client.etcd.endpoints)
    )
    quorum = quorum_view(*member_quorum(endpoints))
    now = time.time()
    store = EtcdStore(
        [e.endpoint for e in endpoints if e.healthy] or client.etcd.endpoints,
        timeout,
        credentials=credentials,
    )
    try:
        snapshot = await read_snapshot(store, keys)
    except StoreError as exc:
        return StatusReport(client.cluster, now, list(endpoints), quorum, error=str(exc))
    finally:
        await store.close()
    return build_report(client.cluster, snapshot, list(endpoints), now)


def build_report(
    cluster: str,
    snapshot: ClusterSnapshot,
    endpoints: list[EndpointStatus],
    now: float,
    *,
    explain: bool = True,
) -> StatusReport:
    """What `hastack status` shows, from one snapshot and the store members' health. With
    `explain`, the scheduler runs on the DC's view of the snapshot to say why each stopped
    resource does not run (hastack.scheduler.explain)."""
    quorum = quorum_view(*member_quorum(endpoints))
    dc = snapshot.dc
    lines, resources, failed, counts = _resources(snapshot)
    views = assignment_views(snapshot)
    pending = _pending(snapshot, now)
    return StatusReport(
        cluster=cluster,
        collected_at=now,
        store=endpoints,
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
        pending=pending,
        fail_counts=counts,
        config_revision=snapshot.config_revision,
        assignments=[v.to_json() for v in views],
        assignment_lines=render(views),
        stopped=_stopped(snapshot, now) if explain else {},
        alerts=current_alerts(snapshot),
    )


def _stopped(snapshot: ClusterSnapshot, now: float) -> dict[str, list[str]]:
    config = snapshot.config
    if config is None:
        return {}
    state = build_state(snapshot, config, now=now)
    return why_stopped(config, state, schedule(config, state))


def _pending(snapshot: ClusterSnapshot, now: float) -> list[str]:
    """Operations under way on online nodes, and targets a node has not taken yet."""
    out = []
    for node in sorted(snapshot.members):
        report = snapshot.statuses.get(node)
        target = snapshot.current_target(node)
        revision = snapshot.target_revisions.get(node, 0)
        if report is None:
            out.append(f"{node}: has not reported since it joined")
            continue
        for instance, op in sorted(report.pending.items()):
            took = max(0.0, now - op.since)
            out.append(
                f"{op.op} {instance} on {node}: running {took:.0f}s of its {op.timeout:g}s "
                f"timeout (since {_when(op.since)})"
            )
        if target is not None and report.working < revision:
            since = f" (written {_when(target.at)}, {max(0.0, now - target.at):.0f}s ago)"
            out.append(f"{node}: has not taken its target yet" + (since if target.at else ""))
        elif target is not None and report.acked < revision and not report.pending:
            out.append(f"{node}: finishing its target (notifications or steps queued)")
    return out + _evacuations(snapshot, now)


def _evacuations(snapshot: ClusterSnapshot, now: float) -> list[str]:
    """Fenced computes whose evacuation record is still there (docs/compute.md): pending
    ones with what is left and why they wait, done ones waiting for their host."""
    out = []
    for name, key in sorted(snapshot.other.items()):
        if not name.startswith("evacuate/"):
            continue
        try:
            record = EvacuationRecord.decode(key.value)
        except ValueError as exc:
            out.append(f"evacuation record {name}: {exc}")
            continue
        age = max(0.0, now - record.fenced_at)
        if record.state is RecordState.DONE:
            out.append(
                f"evacuation of {record.node}: done; the host stays disabled until it is back "
                f"(fenced {age:.0f}s ago)"
            )
            continue
        left = record.pending_instances
        line = f"evacuation of {record.node}: pending, fenced {age:.0f}s ago, " + (
            f"{len(left)} instance(s) left" if record.listed else "instances not read yet"
        )
        if record.last_error:
            line += f"; Nova: {record.last_error} (try {record.attempts}, next in "
            line += f"{max(0.0, record.next_try - now):.0f}s)"
        out.append(line)
    return out


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
        # Online in this life: a report from before the node (re)joined says what ran before
        # its crash, not what runs now, and one made while it probes says nothing yet.
        online = snapshot.has_reported(node)
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
