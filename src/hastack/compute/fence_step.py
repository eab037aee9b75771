"""The fencing step that marks a fenced compute for evacuation (`hastack:evacuate`).

It is the last device of the compute's fencing level, after the power device: the fencer
runs it only once the power device succeeded, so a record exists only for a host that is
off. It writes `<prefix>/evacuate/<node>` by CAS — on the DC's leader key too when the DC
fences, so a deposed DC cannot start an evacuation. A record still pending from an earlier
fence keeps its progress. Actions other than off and reboot record nothing.
"""

from __future__ import annotations

import contextlib
import time

from hastack.compute.evacuation import EvacuationRecord, new_record, refenced
from hastack.errors import StoreError
from hastack.fencing.fencer import Step
from hastack.model.config import EVACUATE_STEP, FenceDevice
from hastack.store import Compare, Keys, PutOp, Store

__all__ = ["evacuate_steps"]

_TRIES = 5


def evacuate_steps(store: Store, keys: Keys, *, epoch: int | None, by: str) -> dict[str, Step]:
    """The steps the fencer runs itself, by agent name."""

    async def record_evacuation(device: FenceDevice, node: str, action: str) -> tuple[bool, str]:
        if action not in ("off", "reboot"):
            return True, f"{device.device}: {action}: nothing to record"
        key = keys.evacuation(node)
        try:
            for _ in range(_TRIES):
                current = await store.get(key)
                now = time.time()
                record = new_record(node, now, epoch or 0, by)
                if current is not None:
                    # An unreadable record is replaced rather than blocking fencing.
                    with contextlib.suppress(ValueError):
                        record = refenced(
                            EvacuationRecord.decode(current.value), now, epoch or 0, by
                        )
                compares = [Compare.unchanged(key, current.mod_revision if current else 0)]
                if epoch is not None:
                    compares.append(Compare.created_at(keys.dc, epoch))
                result = await store.txn(compares, success=[PutOp(key, record.encode())])
                if result.succeeded:
                    return True, f"{device.device}: evacuation of {node} recorded"
                if epoch is not None and await store.get(keys.dc) is None:
                    break
        except StoreError as exc:
            return False, f"{device.device}: could not record the evacuation of {node}: {exc}"
        return False, (
            f"{device.device}: could not record the evacuation of {node} "
            "(the record kept changing, or this node is no longer DC)"
        )

    return {EVACUATE_STEP: record_evacuation}
