"""Reading and writing the cluster configuration in the store, by compare-and-swap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hastack.errors import CompareFailed
from hastack.model.config import ClusterConfig
from hastack.model.config_text import config_from_json, config_to_json
from hastack.store import Compare, Keys, PutOp, Store

__all__ = ["StoredConfig", "decode_stored_config", "read_config", "write_config"]


@dataclass(frozen=True, slots=True)
class StoredConfig:
    config: ClusterConfig | None  # None: nothing stored, or unreadable (see problem)
    revision: int  # mod_revision of the key; 0 when absent
    problem: str | None = None


def decode_stored_config(raw: bytes | None, revision: int) -> StoredConfig:
    if raw is None:
        return StoredConfig(None, 0)
    try:
        return StoredConfig(config_from_json(raw), revision)
    except ValueError as exc:
        return StoredConfig(None, revision, f"config: {exc}")


async def read_config(store: Store, keys: Keys) -> StoredConfig:
    kv = await store.get(keys.config)
    return decode_stored_config(kv.value if kv else None, kv.mod_revision if kv else 0)


async def write_config(
    store: Store,
    keys: Keys,
    config: ClusterConfig,
    *,
    expected: int,
    also: Sequence[PutOp] = (),
) -> int:
    """Store `config` if the stored one is still at revision `expected` (0: none yet), with
    the writes `also` in the same transaction (the change's record in the event history)."""
    result = await store.txn(
        [Compare.unchanged(keys.config, expected)],
        success=[PutOp(keys.config, config_to_json(config)), *also],
    )
    if not result.succeeded:
        raise CompareFailed(f"configuration is no longer at revision {expected}")
    return result.revision
