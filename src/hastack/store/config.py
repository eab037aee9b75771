"""Reading and writing the cluster configuration in the store, by compare-and-swap, each
change with its audit record in the same transaction (docs/security.md §5)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from hastack.errors import CompareFailed
from hastack.model.audit import AuditRecord, decode_audit_record
from hastack.model.config import ClusterConfig
from hastack.model.config_delta import make_delta
from hastack.model.config_text import config_from_json, config_to_json
from hastack.store import Compare, DeleteOp, Keys, PutOp, Store

__all__ = [
    "AUDIT_KEEP",
    "StoredConfig",
    "decode_stored_config",
    "read_audit",
    "read_config",
    "write_config",
    "write_config_value",
]

# The audit trail keeps the last this many changes: each change deletes the record this far
# behind it, in its own transaction, so nothing ever has to list the trail to bound it.
AUDIT_KEEP = 1000


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
    record: AuditRecord,
    also: Sequence[PutOp] = (),
) -> int:
    """Store `config` if the stored one is still at revision `expected` (0: none yet), and
    its audit record and its delta with it, atomically: a change without its record cannot
    exist; with the writes `also` in the same transaction (the change's record in the event
    history)."""
    return await write_config_value(
        store, keys, config_to_json(config), expected=expected, record=record, also=also
    )


async def write_config_value(
    store: Store,
    keys: Keys,
    value: bytes,
    *,
    expected: int,
    record: AuditRecord,
    also: Sequence[PutOp] = (),
) -> int:
    """`write_config` of a configuration already encoded (`value`, as stored), unchecked:
    the one writer of the configuration key."""
    head = await store.get(keys.audit_head)
    seq = _head_seq(head.value if head else None) + 1
    # What changed, for the agents that follow only that (model/config_delta.py): made from
    # the stored one at `expected`; if it is not that one, the compare below fails anyway.
    old = await store.get(keys.config) if expected else None
    delta = make_delta(old.value if old and old.mod_revision == expected else None, value, expected)
    result = await store.txn(
        [
            Compare.unchanged(keys.config, expected),
            Compare.unchanged(keys.audit_head, head.mod_revision if head else 0),
        ],
        success=[
            PutOp(keys.config, value),
            PutOp(keys.config_delta, delta),
            PutOp(keys.audit_record(seq), json.dumps(record.to_json()).encode()),
            PutOp(keys.audit_head, str(seq).encode()),
            *([DeleteOp(keys.audit_record(seq - AUDIT_KEEP))] if seq > AUDIT_KEEP else []),
            *also,
        ],
    )
    if not result.succeeded:
        raise CompareFailed(f"configuration is no longer at revision {expected}")
    return result.revision


def _head_seq(raw: bytes | None) -> int:
    try:
        return max(0, int(raw or b"0"))
    except ValueError:
        return 0  # an unreadable head: the trail starts again rather than the change failing


async def read_audit(store: Store, keys: Keys) -> list[tuple[int, int, AuditRecord | str]]:
    """The trail, oldest first: (sequence, configuration revision made, record — or what is
    wrong with it)."""
    result = await store.get_prefix(keys.audit_log)
    out: list[tuple[int, int, AuditRecord | str]] = []
    for kv in sorted(result.kvs, key=lambda kv: kv.key):
        seq_text = kv.key[len(keys.audit_log) :]
        try:
            entry: AuditRecord | str = decode_audit_record(kv.value)
        except ValueError as exc:
            entry = f"{kv.key}: {exc}"
        out.append((int(seq_text) if seq_text.isdigit() else 0, kv.create_revision, entry))
    return out
