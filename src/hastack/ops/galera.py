"""`hastack galera status` and `hastack galera bootstrap NODE --force` (docs/galera.md).

Both read one snapshot and the records of a `hastack:galera` resource through the same
reader the agents use (`hastack.galera.record.read_cluster`), so the operator sees exactly
what the agents decide from. The forced bootstrap runs the pure chooser with `force=NODE`,
shows what may be lost, and — confirmed — writes the bootstrap key by the same
compare-and-swap an agent's bootstrap uses; NODE's agent then bootstraps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hastack.errors import CompareFailed, HastackError
from hastack.galera import Decision, Verdict, choose
from hastack.galera.record import BootstrapRecord, ClusterView, read_cluster
from hastack.model.config import Clone, ClusterConfig, Primitive
from hastack.model.members import ClusterSnapshot
from hastack.ops.cluster import Cluster
from hastack.store import Compare, PutOp
from hastack.store.snapshot import read_snapshot

__all__ = [
    "ForceOutcome",
    "GaleraNode",
    "GaleraStatus",
    "force_bootstrap",
    "galera_resources",
    "galera_status",
]


def galera_resources(config: ClusterConfig | None) -> dict[str, Primitive]:
    """Every `hastack:galera` primitive of the configuration, by id."""
    if config is None:
        return {}
    return {
        p.id: p
        for p in config.primitives()
        if p.agent.cls == "hastack" and p.agent.type == "galera"
    }


def _pick(snapshot: ClusterSnapshot, resource: str | None) -> Primitive:
    found = galera_resources(snapshot.config)
    if not found:
        raise HastackError("no hastack:galera resource in the configuration")
    if resource is None:
        if len(found) > 1:
            raise HastackError(f"several Galera resources ({', '.join(sorted(found))}): name one")
        return next(iter(found.values()))
    if resource not in found:
        # accept the clone's id too
        for top in snapshot.config.resources if snapshot.config else ():
            if isinstance(top, Clone) and top.id == resource and top.resource.id in found:
                return found[top.resource.id]
        raise HastackError(
            f"{resource} is not a hastack:galera resource (there is: {', '.join(sorted(found))})"
        )
    return found[resource]


def _nodes(primitive: Primitive) -> tuple[str, ...]:
    return tuple(primitive.params.get("nodes", "").replace(",", " ").split())


@dataclass(frozen=True)
class GaleraNode:
    name: str
    online: bool
    role: str  # Promoted (mysqld in the cluster), Unpromoted (stopped, position reported), ...
    position: str | None
    state: str | None  # the agent's word: synced, donor, recovered, to join, waiting ...
    progress: str | None
    score: str | None
    record: str | None  # what etcd records: starting/primary/stopped and the seqno
    failed: str | None


@dataclass(frozen=True)
class GaleraStatus:
    resource: str
    revision: int
    nodes: list[GaleraNode]
    cluster_uuid: str | None
    primary: list[str]  # nodes whose agent reports them Synced (or Donor) in the Primary
    bootstrap: dict[str, Any] | None
    decision: str  # what the chooser says now, for a cluster with no Primary
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict  # noqa: PLC0415

        return asdict(self)


def _view(snapshot: ClusterSnapshot, primitive: Primitive) -> ClusterView:
    nodes = _nodes(primitive)
    if not nodes:
        raise HastackError(f"{primitive.id} has no 'nodes' parameter")
    return read_cluster(primitive.id, nodes, snapshot)


def galera_status(snapshot: ClusterSnapshot, resource: str | None = None) -> GaleraStatus:
    """What `hastack galera status` shows, from one snapshot."""
    primitive = _pick(snapshot, resource)
    rsc = primitive.id
    view = _view(snapshot, primitive)
    out: list[GaleraNode] = []
    uuids: set[str] = set()
    primary: list[str] = []
    for node in view.record.nodes:
        attrs = view.attributes.get(node, {})
        report = snapshot.statuses.get(node)
        role, failed = "Stopped", None
        if report is not None:
            for name, r in report.resources.items():
                if name.split(":")[0] == rsc:
                    role = r.role.value if node in view.online else f"{r.role.value} (last report)"
                    if r.failed_op is not None:
                        failed = f"{r.failed_op.op}: {r.failed_op.reason}"
        rec = view.records.get(node)
        recorded = None
        if rec is not None:
            seqno = f" seqno {rec[0].seqno}" if rec[0].seqno is not None else ""
            recorded = f"{rec[0].state.value}{seqno} (revision {rec[1]})"
        position = attrs.get(f"galera-{rsc}-position")
        state = attrs.get(f"galera-{rsc}-state")
        if node in view.promoted and state in ("synced", "donor"):
            primary.append(node)
            if position and ":" in position:
                uuids.add(position.split(":")[0])
        out.append(
            GaleraNode(
                name=node,
                online=node in view.online,
                role=role,
                position=position,
                state=state,
                progress=attrs.get(f"galera-{rsc}-progress"),
                score=attrs.get(f"master-{rsc}"),
                record=recorded,
                failed=failed,
            )
        )
    if not uuids:
        uuids = {p.uuid for p in view.positions.values() if p.is_known and p.uuid is not None}
    boot = None
    if view.bootstrap is not None:
        b = view.bootstrap
        boot = {
            "node": b.node,
            "position": f"{b.uuid}:{b.seqno}" if b.uuid is not None else "new cluster",
            "forced": b.forced,
            "may-lose": [str(loss) for loss in b.may_lose],
            "generation": view.bootstrap_revision,
            "at": b.at,
        }
    decision = choose(view.record, view.positions)
    return GaleraStatus(
        resource=rsc,
        revision=snapshot.revision,
        nodes=out,
        cluster_uuid=next(iter(uuids)) if len(uuids) == 1 else None,
        primary=primary,
        bootstrap=boot,
        decision=f"{decision.verdict.value}: {decision.reason}",
        problems=list(view.problems),
    )


@dataclass(frozen=True)
class ForceOutcome:
    decision: Decision
    written: bool
    generation: int = 0


async def force_bootstrap(
    cluster: Cluster, node: str, *, resource: str | None = None, confirm: bool = False
) -> ForceOutcome:
    """The forced decision for `node`; with `confirm` and a BOOTSTRAP verdict, the bootstrap
    key written (forced, with what may be lost) by CAS on everything the decision read."""
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    primitive = _pick(snapshot, resource)
    view = _view(snapshot, primitive)
    decision = choose(view.record, view.positions, force=node)
    if decision.verdict is not Verdict.BOOTSTRAP or not confirm:
        return ForceOutcome(decision, False)
    position = decision.position
    record = BootstrapRecord(
        node=node,
        uuid=position.uuid if position is not None and position.is_known else None,
        seqno=position.seqno if position is not None and position.is_known else None,
        forced=True,
        may_lose=decision.may_lose,
        at=time.time(),
    )
    keys = cluster.keys
    compares = [Compare.unchanged(keys.galera_bootstrap(primitive.id), view.bootstrap_revision)]
    for name in view.record.nodes:
        key = keys.galera_node(primitive.id, name)
        compares.append(Compare.unchanged(key, view.revisions.get(keys.relative(key), 0)))
    result = await cluster.store.txn(
        compares, success=[PutOp(keys.galera_bootstrap(primitive.id), record.encode())]
    )
    if not result.succeeded:
        raise CompareFailed(
            "the Galera records changed while deciding (a node reported or started): "
            "nothing written; look again"
        )
    return ForceOutcome(decision, True, result.revision)
