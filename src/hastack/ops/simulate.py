"""What-if runs of the scheduler (`hastack simulate`, the API's simulation).

The live state is built by `hastack.controller.build_state` from one snapshot — the very
function the DC uses — so a what-if on the live cluster starts from what the DC sees: the
resources every node reports, unclean nodes, fencing done. The what-if changes themselves are
pure (`what_if`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from hastack.controller import build_state
from hastack.errors import HastackError
from hastack.model.config import ClusterConfig
from hastack.model.state import ClusterState, NodeStatus, base_id
from hastack.ops.cluster import Cluster
from hastack.store.snapshot import read_snapshot

__all__ = ["WhatIf", "live_state", "what_if"]


async def live_state(cluster: Cluster) -> tuple[ClusterConfig, ClusterState]:
    """The stored configuration and the DC's view of the cluster right now."""
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    if snapshot.config is None:
        bad = [p for p in snapshot.problems if p.startswith("config")]
        if bad:
            raise HastackError(f"the stored configuration is unreadable: {bad[0]}")
    config = snapshot.config or ClusterConfig()
    return config, build_state(snapshot, config, now=time.time())


@dataclass(frozen=True, slots=True)
class WhatIf:
    node_down: Sequence[str] = ()  # went down cleanly
    node_fail: Sequence[str] = ()  # lost: unclean, must be fenced
    node_up: Sequence[str] = ()
    standby: Sequence[str] = ()
    fail: Sequence[tuple[str, str]] = ()  # (resource, node): its monitor failed there
    quorum: bool | None = None  # None: as it is


def what_if(state: ClusterState, changes: WhatIf) -> ClusterState:
    """The state with the what-if changes applied; HastackError names an unknown node or a
    resource that is not running where a failure is asked for."""
    nodes = dict(state.nodes)

    def node(name: str) -> NodeStatus:
        if name not in nodes:
            known = ", ".join(sorted(nodes)) or "none"
            raise HastackError(f"no node {name!r} in this cluster (nodes: {known})")
        return nodes[name]

    for name in changes.node_down:
        nodes[name] = replace(node(name), online=False, unclean=False)
    for name in changes.node_fail:
        nodes[name] = replace(node(name), online=False, unclean=True)
    for name in changes.node_up:
        nodes[name] = replace(node(name), online=True, unclean=False)
    for name in changes.standby:
        nodes[name] = replace(node(name), standby=True)
    resources = list(state.resources)
    for rsc, where in changes.fail:
        node(where)
        found = False
        for i, r in enumerate(resources):
            if r.node == where and rsc in (r.resource, base_id(r.resource)):
                resources[i] = replace(
                    r, failed=True, fail_count=r.fail_count + 1, last_failure=state.now
                )
                found = True
        if not found:
            running = sorted({r.resource for r in resources if r.node == where})
            raise HastackError(
                f"{rsc} is not running on {where} "
                f"(running there: {', '.join(running) or 'nothing'})"
            )
    quorum = state.has_quorum if changes.quorum is None else changes.quorum
    return replace(state, nodes=nodes, resources=tuple(resources), has_quorum=quorum)
