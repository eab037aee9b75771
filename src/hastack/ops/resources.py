"""Operations on resources that take more than one configuration change."""

from __future__ import annotations

import asyncio
import time

from hastack.model.config import Role
from hastack.model.state import base_id
from hastack.ops.cluster import Cluster
from hastack.ops.configure import change_config, read_stored
from hastack.ops.edits import resource_names, set_target_role
from hastack.store.snapshot import read_snapshot

__all__ = ["restart", "running_anywhere"]

_POLL = 0.2


async def running_anywhere(cluster: Cluster, rid: str) -> bool:
    """Does any node report an instance of `rid` (or of anything inside it) as active?"""
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    names = {rid}
    if snapshot.config is not None and snapshot.config.find(rid) is not None:
        names = resource_names(snapshot.config, rid)
    return any(
        base_id(instance) in names
        for report in snapshot.statuses.values()
        for instance in report.active()
    )


async def restart(cluster: Cluster, rid: str, *, timeout: float) -> list[str]:
    """Stop `rid` everywhere (target-role Stopped), wait until no node runs it (at most
    `timeout` seconds), then let it run again. What happened, one line per step."""
    stored = await read_stored(cluster)
    if stored.config is not None:
        resource_names(stored.config, rid)  # refuses an unknown resource before any change
    said = [(await change_config(cluster, set_target_role(rid, Role.STOPPED))).message]
    deadline = time.monotonic() + timeout
    while await running_anywhere(cluster, rid):
        if time.monotonic() > deadline:
            said.append(f"{rid} did not stop within {timeout:g}s; enabling it again")
            break
        await asyncio.sleep(_POLL)
    said.append((await change_config(cluster, set_target_role(rid, None))).message)
    return said
