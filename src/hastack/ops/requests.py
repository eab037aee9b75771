"""Requests an operator makes that the cluster acts on: a cleanup (agents forget a resource's
failures and probe it again), and fencing a node by hand (run here, as the DC would, and
recorded so the cluster may recover what the node ran)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from hastack.compute.fence_step import evacuate_steps
from hastack.errors import HastackError
from hastack.fencing.fencer import fence_node
from hastack.fencing.service import record_fencing
from hastack.model.config import ClusterConfig
from hastack.model.events import ClusterEvent, EventKind
from hastack.model.fencing import FenceRecord
from hastack.model.requests import CleanupRequest
from hastack.ops.cluster import Cluster
from hastack.ops.configure import read_stored
from hastack.store import PutOp
from hastack.store.history import event_put
from hastack.store.snapshot import read_snapshot

__all__ = ["FenceResult", "fence_by_hand", "request_cleanup"]

# Cleanup requests vanish by themselves after this many seconds: every agent online acts on
# a request within one renew interval; one that joins later probes everything anyway.
REQUEST_TTL = 60


async def request_cleanup(cluster: Cluster, resource: str, node: str | None = None) -> str:
    """Ask the nodes (or only `node`) to forget `resource`'s failures; the request's key."""
    lease = await cluster.store.grant_lease(REQUEST_TTL)
    key = cluster.keys.cleanup_request(uuid.uuid4().hex)
    where = f"on {node}" if node else "on every node"
    event = ClusterEvent(
        EventKind.REQUEST,
        f"cleanup of {resource} {where} requested by {cluster.by}",
        time.time(),
        cluster.by.via,
        {"request": "cleanup", "resource": resource, "node": node, "by": cluster.by.who},
    )
    await cluster.store.txn(
        [],
        success=[
            PutOp(key, CleanupRequest(resource, node).encode(), lease=lease.id),
            event_put(cluster.keys, event),
        ],
    )
    return key


@dataclass(frozen=True, slots=True)
class FenceResult:
    record: FenceRecord
    attempts: tuple[str, ...]  # one line per device tried, for people
    recorded: bool


async def fence_by_hand(
    cluster: Cluster, node: str, *, action: str | None = None, agent_dirs: Sequence[str] = ()
) -> FenceResult:
    """Run `node`'s fencing levels from here, as the DC would, and record the result (a
    success lets the cluster recover what the node ran, like `stonith_admin --fence`)."""
    stored = await read_stored(cluster)
    if stored.config is None:
        raise HastackError("no configuration stored: no fence devices")
    config = stored.config
    if not config.fencing.levels_for(node):
        raise HastackError(f"no fencing device can fence {node}")
    outcome = await fence_node(
        config.fencing,
        node,
        action=action or config.properties.stonith_action,
        by="cli",
        epoch=0,
        agent_dirs=tuple(agent_dirs),
        steps=evacuate_steps(cluster.store, cluster.keys, epoch=None, by="cli"),
    )
    recorded = await record_fencing(cluster.store, cluster.keys, outcome.record, epoch=None)
    # The DC records the result as it sees the history change; this says who asked.
    event = ClusterEvent(
        EventKind.REQUEST,
        f"fencing ({outcome.record.action}) of {node} by hand by {cluster.by}: "
        f"{outcome.record.result}",
        time.time(),
        cluster.by.via,
        {"request": "fence", "node": node, "result": outcome.record.result, "by": cluster.by.who},
    )
    await cluster.store.txn([], success=[event_put(cluster.keys, event)])
    return FenceResult(outcome.record, tuple(outcome.attempts), recorded)


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    record: FenceRecord
    evacuation: tuple[str, ...]  # the evacuate step's lines, for a compute node


async def confirm_down(cluster: Cluster, node: str) -> ConfirmResult:
    """The operator's word that `node` is off (Pacemaker's `stonith_admin --confirm`): a
    successful fencing recorded with no device run, so the cluster recovers what the node ran
    and Galera stops counting it as a possible live Primary. Refused while the node holds a
    live membership (it is not down), and for a node the configuration does not know."""
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    config = snapshot.config
    if config is None:
        raise HastackError("no configuration stored: no nodes to confirm")
    # The nodes the configuration lists and every node that ever joined.
    known = {n.node for n in config.nodes} | set(snapshot.nodes)
    if node not in known:
        raise HastackError(f"{node} is not a node of this cluster (nodes: {sorted(known)})")
    live = (
        f"{node} is a member now (its lease is alive): it is not down; "
        f"`hastack fence {node}` fences a running node"
    )
    member_key = cluster.keys.member(node)
    if await cluster.store.get(member_key) is not None:
        raise HastackError(live)
    now = time.time()
    record = FenceRecord(
        node=node,
        action="off",
        result="success",
        level=0,
        devices=("confirmed-by-hand",),
        reason=f"confirmed down by hand by {cluster.by.who}: no device was run",
        started=now,
        finished=now,
        by="cli",
        epoch=0,
    )
    event = ClusterEvent(
        EventKind.REQUEST,
        f"{node} confirmed down by hand by {cluster.by}",
        now,
        cluster.by.via,
        {"request": "confirm-down", "node": node, "by": cluster.by.who},
    )
    # Written only while the node holds no membership (it may have joined since the read).
    recorded = await record_fencing(
        cluster.store,
        cluster.keys,
        record,
        epoch=None,
        also=[event_put(cluster.keys, event)],
        absent=member_key,
    )
    if not recorded:
        if await cluster.store.get(member_key) is not None:
            raise HastackError(live)
        raise HastackError(f"the confirmation of {node} could not be recorded (try again)")
    return ConfirmResult(record, tuple(await _evacuate(cluster, config, node)))


async def _evacuate(cluster: Cluster, config: ClusterConfig, node: str) -> list[str]:
    """A compute node marked for evacuation: its evacuate step runs as after a fencing (it
    only records the evacuation; the DC's evacuator does the rest)."""
    if not config.fencing.evacuates(node):
        return []
    steps = evacuate_steps(cluster.store, cluster.keys, epoch=None, by="cli")
    lines = []
    for level in config.fencing.levels_for(node):
        for device in level:
            step = steps.get(device.agent) if device.is_evacuate_step else None
            if step is not None:
                ok, line = await step(device, node, "off")
                lines.append(line if ok else f"FAILED: {line}")
    return lines
