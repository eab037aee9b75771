"""The event history in the store (docs/api.md §4): writing off the agent's cycle, reading,
following, and keeping it bounded.

    <root>/.events/<cluster>/<wall time µs, hex>-<writer>-<counter>

One event per key, ordered by the key's create revision. Agents write through an
`EventRecorder` (a bounded queue and a task that writes batches, so a decision never waits for
an event to be stored); the operations layer attaches its events to the transaction of the
change itself (`event_put`). The DC runs a `HistoryTrimmer` that keeps the newest
`HISTORY_LIMIT` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

from hastack.errors import Compacted, StoreError
from hastack.model.events import ClusterEvent, EventKind, decode_event
from hastack.store.keys import Keys
from hastack.store.mirror import Mirror, follow
from hastack.store.protocol import Store
from hastack.store.types import DeleteOp, KeyValue, PutOp
from hastack.store.types import EventKind as ChangeKind

__all__ = [
    "HISTORY_LIMIT",
    "EventRecorder",
    "History",
    "HistoryTrimmer",
    "event_put",
    "follow_events",
    "read_events",
]

log = logging.getLogger(__name__)

# The DC keeps this many events: a few days of an eventful cluster, ~400 kB in etcd.
HISTORY_LIMIT = 1000
# Trimming starts a tenth above the limit, so that it runs once per hundred events, not per event.
TRIM_SLACK = HISTORY_LIMIT // 10
# etcd refuses transactions of more than 128 operations (--max-txn-ops).
DELETE_BATCH = 100
# An agent queues at most this many events; more are dropped and counted (a storm must cost
# memory and store requests that stay bounded).
QUEUE_SIZE = 256
WRITE_BATCH = 64
_RETRY = 0.5

_counter = itertools.count()


def event_put(keys: Keys, event: ClusterEvent) -> PutOp:
    """The write that stores `event` (for a transaction of the caller's)."""
    # Sortable: one transaction stores a batch at one revision, and the key keeps its order.
    writer = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in event.node)[:40]
    event_id = f"{int(event.at * 1e6):014x}-{writer}-{next(_counter):010x}"
    return PutOp(keys.event(event_id), event.encode())


@dataclass(frozen=True, slots=True)
class History:
    events: list[ClusterEvent]  # oldest first
    revision: int  # the store's revision when read: follow from the next one
    problems: list[str]  # stored values that are not events
    stored: int  # how many events the store holds in all


def _decoded(kvs: Collection[KeyValue], keys: Keys) -> tuple[list[ClusterEvent], list[str]]:
    events, problems = [], []
    for kv in sorted(kvs, key=lambda kv: (kv.create_revision, kv.key)):
        try:
            events.append(decode_event(kv.value, kv.create_revision))
        except ValueError as exc:
            problems.append(f"{kv.key[len(keys.events) :]}: {exc}; ignored")
    return events, problems


async def read_events(
    store: Store,
    keys: Keys,
    *,
    after: int = 0,
    limit: int | None = None,
    kinds: Collection[EventKind] = (),
) -> History:
    """The events stored after revision `after`, oldest first; the newest `limit` of them."""
    result = await store.range(keys.events, prefix=True)
    events, problems = _decoded(result.kvs, keys)
    chosen = [e for e in events if e.revision > after and (not kinds or e.kind in kinds)]
    if limit is not None:
        chosen = chosen[-limit:] if limit > 0 else []
    return History(chosen, result.revision, problems, len(result.kvs))


async def follow_events(
    store: Store, keys: Keys, after: int, kinds: Collection[EventKind] = ()
) -> AsyncIterator[ClusterEvent]:
    """Every event stored after revision `after`, as it comes, for ever. When the watch's
    history was compacted away, what is still stored is read again (nothing is repeated)."""
    last = after
    while True:
        try:
            async for batch in store.watch_prefix(keys.events, last + 1):
                for change in batch.events:
                    if change.kind is not ChangeKind.PUT:
                        continue
                    last = max(last, change.kv.mod_revision)
                    try:
                        event = decode_event(change.kv.value, change.kv.create_revision)
                    except ValueError as exc:
                        log.warning("event %s: %s; ignored", change.kv.key, exc)
                        continue
                    if not kinds or event.kind in kinds:
                        yield event
                last = max(last, batch.revision)
        except Compacted:
            history = await read_events(store, keys, after=last, kinds=kinds)
            for event in history.events:
                yield event
            last = history.revision


class EventRecorder:
    """An agent's events on their way to the store: `record` never blocks and never fails;
    `run` (a task of the agent's loop) writes what is queued, a batch per transaction, and
    retries while the store is away."""

    def __init__(self, store: Store, keys: Keys, node: str) -> None:
        self._store = store
        self._keys = keys
        self._node = node
        self._queue: asyncio.Queue[ClusterEvent] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0  # events that found the queue full, since start
        self._dropped_unsaid = 0
        self.written = 0

    def record(self, event: ClusterEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            self._dropped_unsaid += 1

    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if self._dropped_unsaid:
                first = batch[0]
                note = f" ({self._dropped_unsaid} earlier event(s) not recorded: queue full)"
                batch[0] = ClusterEvent(
                    first.kind, first.text + note, first.at, first.node,
                    {**first.data, "dropped-before": self._dropped_unsaid},
                )  # fmt: skip
                self._dropped_unsaid = 0
            ops = [event_put(self._keys, e) for e in batch]
            while True:
                try:
                    await self._store.txn([], success=ops)
                    break
                except StoreError as exc:
                    # Indeterminate: it may have been written; writing it again costs a
                    # duplicate line in a history, never a wrong decision.
                    log.debug("events: write failed (%s); retrying", exc)
                    await asyncio.sleep(_RETRY)
            self.written += len(batch)
            for _ in batch:
                self._queue.task_done()

    async def flush(self, timeout: float) -> None:
        """Wait (at most `timeout`) until everything queued so far has been written."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()


class HistoryTrimmer:
    """The DC's duty: keep the newest `limit` events. It follows the events prefix (a watch
    on the DC only) and deletes the oldest when there are `slack` too many."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        *,
        limit: int = HISTORY_LIMIT,
        slack: int = TRIM_SLACK,
    ) -> None:
        self._store = store
        self._keys = keys
        self._limit = limit
        self._slack = slack
        self._mirror = Mirror(keys, (keys.events,))
        self._changed = asyncio.Event()
        self.trimmed = 0

    @property
    def stored(self) -> int:
        return len(self._mirror.items())

    async def run(self) -> None:
        follower = asyncio.create_task(
            follow(self._store, self._mirror, self._keys.events, self._changed.set),
            name="events follower",
        )
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                await self._trim()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _trim(self) -> None:
        items = self._mirror.items()
        if len(items) <= self._limit + self._slack:
            return
        ordered = sorted(items, key=lambda kv: (kv.create_revision, kv.key))
        oldest = ordered[: len(items) - self._limit]
        for start in range(0, len(oldest), DELETE_BATCH):
            chunk = oldest[start : start + DELETE_BATCH]
            try:
                await self._store.txn([], success=[DeleteOp(kv.key) for kv in chunk])
            except StoreError as exc:
                log.info("events: trimming failed (%s); the next change tries again", exc)
                return
            self.trimmed += len(chunk)
