"""The DC's fencing duty: fence the nodes the plan says must be fenced, one attempt at a time
per node, and record every result in the node's fencing history (by CAS on the leader key, so
only the DC that fenced can say so)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from hastack.compute.fence_step import evacuate_steps
from hastack.errors import StoreError
from hastack.fencing.fencer import FenceOutcome, fence_node
from hastack.model.config import ClusterConfig
from hastack.model.fencing import FenceRecord, decode_history, encode_history, with_record
from hastack.store import Compare, Keys, PutOp, Store

__all__ = ["FencingService", "record_fencing"]

log = logging.getLogger("hastack.fencing")

# After a failed attempt, wait this long before trying the same node again.
_RETRY_AFTER = 2.0


async def record_fencing(
    store: Store,
    keys: Keys,
    record: FenceRecord,
    *,
    epoch: int | None,
    also: Sequence[PutOp] = (),
    absent: str | None = None,
) -> bool:
    """Append to the node's history; with an epoch, only while that DC still leads; with
    `absent`, only while that key does not exist. `also` is written in the same transaction."""
    key = keys.fence_history(record.node)
    for _ in range(5):
        current = await store.get(key)
        try:
            history = decode_history(current.value) if current else []
        except ValueError:
            history = []  # unreadable history is replaced rather than blocking fencing
        compares = [Compare.unchanged(key, current.mod_revision if current else 0)]
        if epoch is not None:
            compares.append(Compare.created_at(keys.dc, epoch))
        if absent is not None:
            compares.append(Compare.unchanged(absent, 0))
        updated = with_record(history, record)
        if updated is None:
            log.info("not recorded (%s fenced meanwhile): %s", record.node, record.reason)
            return True
        put = PutOp(key, encode_history(updated))
        result = await store.txn(compares, success=[put, *also])
        if result.succeeded:
            return True
        if epoch is not None and (await store.get(keys.dc)) is None:
            return False
        if absent is not None and (await store.get(absent)) is not None:
            return False
    return False


# The DC's own record of a fencing's steps (the agent's event log): event name, fields.
FencingEvents = Callable[..., None]


class FencingService:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        node: str,
        agent_dirs: Sequence[str],
        *,
        events: FencingEvents | None = None,
    ) -> None:
        self._store = store
        self._events = events or (lambda _event, **_fields: None)
        self._keys = keys
        self._node = node
        self._dirs = tuple(agent_dirs)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._failed_at: dict[str, float] = {}

    def ensure(self, target: str, config: ClusterConfig, epoch: int) -> None:
        """Fence `target` unless an attempt is under way or one just failed."""
        if target in self._running and not self._running[target].done():
            return
        if time.monotonic() - self._failed_at.get(target, -1e9) < _RETRY_AFTER:
            return
        self._running[target] = asyncio.create_task(
            self._fence(target, config, epoch), name=f"fence {target}"
        )

    async def _still_dc(self, epoch: int) -> bool:
        """Is this node still DC at `epoch`, by a linearizable read of the DC key? Only a
        quorum of the store can answer it. A DC cut off with a minority suspects the others
        after suspect-after just as they suspect it, and the fence device may answer either
        side (a power switch on its own network): without this, the side that fires first
        wins: the Galera soak saw a cut-off DC power off a node of the majority at the
        moment the majority deposed it."""
        try:
            current = await self._store.get(self._keys.dc)
        except StoreError:
            return False
        return current is not None and current.create_revision == epoch

    async def _fence(self, target: str, config: ClusterConfig, epoch: int) -> None:
        props = config.properties
        if not await self._still_dc(epoch):
            log.warning("not fencing %s: no quorum of the store confirms this node as DC at "
                        "epoch %d", target, epoch)  # fmt: skip
            self._events("fence-skipped", peer=target, epoch=epoch)
            return
        log.warning("fencing %s (%s)", target, props.stonith_action)
        # Steps of the failover pipeline, timed by bench/vip_failover.py: requested (here),
        # the device answered, the result recorded in the store (the fence is confirmed).
        self._events("fence-started", peer=target, epoch=epoch)
        try:
            async with asyncio.timeout(props.stonith_timeout):
                outcome = await fence_node(
                    config.fencing,
                    target,
                    action=props.stonith_action,
                    by=self._node,
                    epoch=epoch,
                    agent_dirs=self._dirs,
                    steps=evacuate_steps(self._store, self._keys, epoch=epoch, by=self._node),
                )
        except TimeoutError:
            outcome = FenceOutcome(
                FenceRecord(
                    target, props.stonith_action, "failed", 0, (),
                    f"stonith-timeout {props.stonith_timeout:g}s passed", time.time(), time.time(),
                    self._node, epoch,
                ),
                (),
            )  # fmt: skip
        record = outcome.record
        self._events("fence-done", peer=target, result=record.result)
        if record.succeeded:
            log.warning("fenced %s: %s", target, record.reason)
        else:
            self._failed_at[target] = time.monotonic()
            log.error("fencing %s failed: %s", target, record.reason)
        try:
            if not await record_fencing(self._store, self._keys, record, epoch=epoch):
                log.error("fencing of %s not recorded: no longer DC", target)
            else:
                self._events("fence-recorded", peer=target, result=record.result)
        except StoreError as exc:
            log.error("fencing of %s not recorded (%s); it will be retried", target, exc)
            self._failed_at[target] = time.monotonic()

    def cancel(self) -> None:
        for task in self._running.values():
            task.cancel()
        self._running.clear()
