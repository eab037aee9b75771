"""Declaring a node gone: `hastack node remove NODE`.

Removal is the operator's word that a node will not come back as it was (its disk replaced,
the machine retired). It is accepted only for a node that is offline **and** fenced since it
last joined, so that nothing it ran can still be running; it records `removed/<node>` and
deletes `nodes/<node>` (the node no longer shows as OFFLINE) in one transaction that also
checks the node did not join meanwhile. Components act on it: the RabbitMQ agent forgets the
node and moves its queue replicas (docs/rabbitmq.md). A node that joins again later is a new
member; its old removal says nothing about its new life.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from hastack.errors import HastackError
from hastack.ops.cluster import Cluster
from hastack.store import Compare, DeleteOp, PutOp
from hastack.store.snapshot import read_snapshot

__all__ = ["Removed", "remove_node"]


@dataclass(frozen=True, slots=True)
class Removed:
    node: str
    revision: int
    fenced_at: float


async def remove_node(cluster: Cluster, node: str, *, by: str = "cli") -> Removed:
    """Declare `node` gone (see the module docstring); HastackError says why not."""
    keys = cluster.keys
    snapshot = await read_snapshot(cluster.store, keys)
    known = set(snapshot.nodes) | set(snapshot.members) | set(snapshot.fencing)
    if node not in known:
        raise HastackError(
            f"no node {node!r} in this cluster (nodes: {', '.join(sorted(known)) or 'none'})"
        )
    if node in snapshot.members:
        raise HastackError(f"{node} is online: stop or fence it before removing it")
    history = snapshot.fencing.get(node, [])
    if not snapshot.fenced_since_join(node) or not history:
        raise HastackError(
            f"{node} was not fenced since it last joined: fence it first "
            f"(`hastack fence {node}`), so that nothing it ran can still be running"
        )
    record = snapshot.nodes.get(node)
    value = json.dumps(
        {"at": time.time(), "by": by, "fenced": history[-1].finished}, sort_keys=True
    ).encode()
    result = await cluster.store.txn(
        [
            Compare.absent(keys.member(node)),
            Compare.unchanged(keys.node(node), record.revision if record else 0),
        ],
        success=[PutOp(keys.removed(node), value), DeleteOp(keys.node(node))],
    )
    if not result.succeeded:
        raise HastackError(f"{node} changed while being removed (did it join?); try again")
    return Removed(node, result.revision, history[-1].finished)
