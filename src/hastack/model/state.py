"""What the cluster looks like right now: the scheduler's second input.

A `ClusterState` is built either from the store (members, status keys written by agents) or
from a Pacemaker CIB's status section (for `hastack simulate` and the CTS comparison). It is
plain data: the scheduler never asks where it came from.

Resource instances are named as Pacemaker names them: a primitive's id, or for clones
`primitive:N`. For an anonymous clone the observed state may name the primitive without an
instance number (the node ran "memcached"); the scheduler numbers instances itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hastack.model.config import Role
from hastack.model.members import NodeKind

__all__ = ["ClusterState", "NodeStatus", "ResourceStatus", "base_id"]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    online: bool = True
    # Lost while it may still run resources: it must be fenced before they start elsewhere.
    unclean: bool = False
    # Shutting down cleanly: everything leaves it, nothing new starts there.
    shutdown: bool = False
    # Set at run time (`hastack node standby`); configuration can set it too.
    standby: bool = False
    maintenance: bool = False
    kind: NodeKind = NodeKind.FULL
    # Transient node attributes: health, ping counts, promotion scores (`master-<rsc>`).
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """One resource instance as seen on one node."""

    resource: str  # primitive id, or `id:N` for a clone instance
    node: str
    # Stopped entries only matter when they carry a failure (a start that failed leaves the
    # resource stopped with a fail count); otherwise they may be left out.
    role: Role = Role.STARTED
    # The last operation failed and the resource needs recovery (it may still be active).
    failed: bool = False
    # A stop failed and could not be resolved by fencing: nothing may touch it.
    blocked: bool = False
    fail_count: int = 0
    last_failure: float | None = None  # wall time, for failure-timeout
    # The agent has no definition of it any more (removed from the configuration).
    orphan: bool = False
    # Which operation failed last (for on-fail): name and interval in seconds.
    failed_op: str | None = None
    failed_interval: float = 0.0


@dataclass(frozen=True, slots=True)
class ClusterState:
    nodes: Mapping[str, NodeStatus]
    resources: tuple[ResourceStatus, ...] = ()
    has_quorum: bool = True
    now: float = 0.0  # wall time of the snapshot: failure-timeout is measured against it
    # Nodes whose fencing has been confirmed since they were lost: safe to recover from.
    fenced: frozenset[str] = frozenset()

    def on_node(self, node: str) -> list[ResourceStatus]:
        return [r for r in self.resources if r.node == node]


def base_id(instance: str) -> str:
    """`memcached:2` -> `memcached`; a primitive's own id is its own base."""
    head, sep, tail = instance.rpartition(":")
    return head if sep and tail.isdigit() else instance
