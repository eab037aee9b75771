"""Reading one consistent snapshot of a cluster from the store."""

from __future__ import annotations

from hastack.model.members import ClusterSnapshot, StoredKey, decode_snapshot
from hastack.store import Keys, Store

__all__ = ["read_snapshot"]


async def read_snapshot(store: Store, keys: Keys) -> ClusterSnapshot:
    """One linearizable range read of the whole cluster prefix, decoded."""
    result = await store.get_prefix(keys.prefix)
    stored = (
        StoredKey(keys.relative(kv.key), kv.value, kv.create_revision, kv.mod_revision, kv.lease)
        for kv in result.kvs
    )
    return decode_snapshot(result.revision, stored)
