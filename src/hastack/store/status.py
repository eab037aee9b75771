"""Writing a node's report in parts (model/status.py): each publish costs what changed.

Each publish is one transaction: the head `status/<node>` always (so its mod_revision is the
revision of the node's last report, which the fencing rule `fenced_since_report` compares
with), the parts whose value changed, and the deletion of the parts no longer written. What
the store holds is read once (the head's revision and every part, in one transaction) and
then known from what was written; the transaction holds only while the head is still at the
revision this writer last read or wrote. Anything else that wrote or deleted the head
meanwhile, or a write whose outcome is unknown (a timeout), makes the next publish read
again.
"""

from __future__ import annotations

from hastack.errors import StoreRejected
from hastack.model.status import NodeReport, split_status
from hastack.store.keys import Keys
from hastack.store.protocol import Store
from hastack.store.types import Compare, DeleteOp, GetOp, PutOp

__all__ = ["StatusWriter", "delete_status"]

# etcd's default --max-txn-ops.
_MAX_OPS = 128


class StatusWriter:
    """Publishes one node's reports; not shared between tasks."""

    def __init__(self, store: Store, keys: Keys, node: str) -> None:
        self._store = store
        self._keys = keys
        self._node = node
        # part key -> value, as the store holds them after the head's revision `_revision`;
        # None: not known (read before writing).
        self._held: dict[str, bytes] | None = None
        self._revision = 0

    async def _read(self) -> None:
        head, prefix = self._keys.status(self._node), self._keys.status_parts(self._node)
        result = await self._store.txn([], [GetOp(head), GetOp(prefix, prefix=True)])
        heads, parts = result.reads
        self._revision = heads[0].mod_revision if heads else 0
        self._held = {kv.key: kv.value for kv in parts}

    async def publish(self, report: NodeReport) -> int:
        """Write `report`; the revision it was written at."""
        head, parts = split_status(report)
        prefix = self._keys.status_parts(self._node)
        wanted = {prefix + name: value for name, value in parts.items()}
        for _ in range(3):
            if self._held is None:
                await self._read()
            held = self._held
            assert held is not None
            ops: list[PutOp | DeleteOp] = [PutOp(self._keys.status(self._node), head)]
            ops += [PutOp(k, v) for k, v in sorted(wanted.items()) if held.get(k) != v]
            ops += [DeleteOp(k) for k in sorted(set(held) - set(wanted))]
            if len(ops) > _MAX_OPS:
                raise StoreRejected(
                    f"status/{self._node}: {len(ops)} operations, more than a transaction "
                    f"takes ({_MAX_OPS}): delete the keys under {prefix} that are not parts"
                )
            self._held = None  # unknown until the answer says
            result = await self._store.txn(
                [Compare.unchanged(self._keys.status(self._node), self._revision)], ops
            )
            if result.succeeded:
                self._held, self._revision = wanted, result.revision
                return result.revision
            # Someone else wrote or deleted the head: read what the store holds now.
        raise StoreRejected(f"status/{self._node} kept changing under its writer")


def delete_status(keys: Keys, node: str) -> list[DeleteOp]:
    """The operations that delete a node's report: its head and every part."""
    return [DeleteOp(keys.status(node)), DeleteOp(keys.status_parts(node), prefix=True)]
