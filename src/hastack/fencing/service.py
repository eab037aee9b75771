"""The DC's fencing duty: fence the nodes the plan says must be fenced, one attempt at a time
per node, and record every result in the node's fencing history (by CAS on the leader key, so
only the DC that fenced can say so)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from hastack.compute.fence_step import evacuate_steps
from hastack.errors import StoreError
from hastack.fencing.fencer import FenceOutcome, fence_node
from hastack.fencing.protocol import WarmAgents, find_agent
from hastack.membership.hedge import hedged
from hastack.model.config import ClusterConfig
from hastack.model.fencing import FenceRecord, decode_history, encode_history, with_record
from hastack.store import Compare, GetOp, Keys, PutOp, Store

__all__ = ["FencingService", "record_fencing", "still_leads"]

log = logging.getLogger("hastack.fencing")

# After a failed attempt, wait this long before trying the same node again.
_RETRY_AFTER = 2.0
# How long the fence programs found for a configuration are trusted (FencingService._programs).
_FIND_AGAIN = 10.0
# How long a DC keeps asking the store's quorum whether it still leads before it fences
# (through an etcd election: about one election timeout); then it gives up this attempt.
_CONFIRM_WITHIN = 3.0


async def still_leads(store: Store, keys: Keys, epoch: int, *, within: float) -> bool | None:
    """Does the DC of `epoch` still lead, by the store's quorum? A transaction that compares
    the leader key's create revision with the epoch and reads the key (both branches): etcd
    serves a read-only transaction with a linearizable read, which a member cut off from its
    majority cannot make. Not a compare alone: a transaction with no operation counts as
    serializable and is answered from the local member (a cut-off DC passed that check in
    the soak). True: it leads; False: another DC (or none) holds the key; None: no answer
    within `within`."""
    deadline = time.monotonic() + within
    read = [GetOp(keys.dc)]
    while True:
        try:
            # Re-sent while unanswered (hastack.membership.hedge): asked while etcd elects a
            # new leader, a question forwarded to the dead one would wait a store timeout.
            result = await hedged(
                lambda: store.txn([Compare.created_at(keys.dc, epoch)], read, read),
                within=max(0.0, deadline - time.monotonic()),
            )
        except StoreError:
            if time.monotonic() + 0.1 >= deadline:
                return None
            await asyncio.sleep(0.1)
            continue
        return result.succeeded


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
            if record not in history:
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
# The DC's confirmation of a success (record, epoch): the record written with the targets
# that follow from it, in one transaction (`Agent._confirm_fencing`). True: written; False:
# no longer DC; None: not written, record it alone.
ConfirmFencing = Callable[[FenceRecord, int], Awaitable[bool | None]]


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
        self.warm = WarmAgents()
        self._warming: asyncio.Task[None] | None = None
        # The fence programs of the configuration last prepared for, where they were found
        # and when: the DC prepares at every cycle, hundreds a second while a hundred nodes
        # report, and the search (a few stat calls, PATH walked) was 5 % of its loop's time
        # at an apply at 100 computes (docs/control-plane.md, section 7).
        self._found: tuple[object, float, tuple[Path, ...]] | None = None
        self.confirm: ConfirmFencing | None = None

    def prepare(self, config: ClusterConfig) -> None:
        """Keep one process of each fence program of `config` started and waiting
        (`WarmAgents`): called by every node that is or may become DC, each cycle."""
        if self._warming is not None and not self._warming.done():
            return
        paths = self._programs(config)
        if any(not self.warm.fresh(p) for p in paths):
            self._warming = asyncio.create_task(self._warm(paths), name="warm fence agents")

    def _programs(self, config: ClusterConfig) -> tuple[Path, ...]:
        """The fence programs of `config`'s devices (those installed), looked for again when
        the configuration changes and every _FIND_AGAIN seconds (a program installed since)."""
        now = time.monotonic()
        if self._found is not None:
            fencing, at, paths = self._found
            if fencing is config.fencing and now - at < _FIND_AGAIN:
                return paths
        found: list[Path] = []
        for device in config.fencing.devices:
            if device.is_evacuate_step:
                continue
            path = find_agent(device.agent, self._dirs)
            if path is not None and path not in found:
                found.append(path)
        self._found = (config.fencing, now, tuple(found))
        return self._found[2]

    async def _warm(self, paths: Sequence[Path]) -> None:
        for path in paths:
            try:
                await self.warm.warm(path)
            except OSError as exc:
                log.warning("could not start %s ahead of need: %s", path, exc)

    def ensure(self, target: str, config: ClusterConfig, epoch: int) -> None:
        """Fence `target` unless an attempt is under way or one just failed."""
        if target in self._running and not self._running[target].done():
            return
        if time.monotonic() - self._failed_at.get(target, -1e9) < _RETRY_AFTER:
            return
        self._running[target] = asyncio.create_task(
            self._fence(target, config, epoch), name=f"fence {target}"
        )

    async def _fence(self, target: str, config: ClusterConfig, epoch: int) -> None:
        props = config.properties
        # Only a DC that the store's majority still knows as DC fences. Heartbeats fall
        # silent on both sides of a partition, and a DC cut off from its peers keeps its
        # lease for seconds: it would fence a node of the majority (the side that goes on),
        # which in turn deposes it and fences it — both sides lose a node. Its peers go
        # silent a few milliseconds apart, so "every peer silent: suspect none" does not
        # catch it. Costs one quorum read; through an etcd election, until it is over.
        leads = await still_leads(self._store, self._keys, epoch, within=_CONFIRM_WITHIN)
        if not leads:
            why = "no answer from the store's quorum" if leads is None else "no longer DC"
            log.warning("not fencing %s: %s (epoch %d)", target, why, epoch)
            self._events("fence-withheld", peer=target, epoch=epoch, reason=why)
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
                    warm=self.warm,
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
        if record.succeeded and self.confirm is not None:
            # With the targets that follow from it, in one write: the replacement starts at
            # the confirmation (docs/fencing.md). It says "fence-recorded" itself.
            confirmed = await self.confirm(record, epoch)
            if confirmed is not None:
                if not confirmed:
                    log.error("fencing of %s not recorded: no longer DC", target)
                return
        try:
            # Re-sent while unanswered, as the quorum check: a copy that finds the record
            # written by another changes nothing (`with_record`).
            recorded = await hedged(
                lambda: record_fencing(self._store, self._keys, record, epoch=epoch),
                within=_CONFIRM_WITHIN,
            )
            if not recorded:
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

    async def close(self) -> None:
        """Cancel what runs and end the waiting fence agents (the agent is stopping)."""
        self.cancel()
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming
        await self.warm.close()
