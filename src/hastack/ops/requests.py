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
from hastack.model.events import ClusterEvent, EventKind
from hastack.model.fencing import FenceRecord
from hastack.model.requests import CleanupRequest
from hastack.ops.cluster import Cluster
from hastack.ops.configure import read_stored
from hastack.store import PutOp
from hastack.store.history import event_put

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
