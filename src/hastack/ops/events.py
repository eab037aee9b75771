"""The cluster's event history, as front ends read it (`hastack events`, the API)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection

from hastack.model.events import ClusterEvent, EventKind
from hastack.ops.cluster import Cluster
from hastack.store.history import History, follow_events, read_events

__all__ = ["follow", "recent"]


async def recent(
    cluster: Cluster,
    *,
    after: int = 0,
    limit: int | None = None,
    kinds: Collection[EventKind] = (),
) -> History:
    """The stored events after revision `after` (oldest first), the newest `limit` of them."""
    return await read_events(cluster.store, cluster.keys, after=after, limit=limit, kinds=kinds)


def follow(
    cluster: Cluster, after: int, kinds: Collection[EventKind] = ()
) -> AsyncIterator[ClusterEvent]:
    """Every event stored after revision `after`, as it comes."""
    return follow_events(cluster.store, cluster.keys, after, kinds)
