"""A local copy of some ranges of the cluster's keys, kept current from etcd's watch stream.

An agent that re-read the whole cluster prefix at every change and every renew interval made
the store's traffic grow with nodes × cluster size (65 MB for one configuration change on
twelve nodes). The mirror reads each range once, then applies the changes the watch delivers
in revision order; it reads a range again only when the watch cannot resume (its history was
compacted). A watch that broke, or that the agent replaced because it lagged (a member cut off
from its cluster), resumes from the revision the mirror holds the range at, on whichever member
the store client uses then: at a hundred computes a re-read of the DC's whole prefix is
hundreds of keys to read and decode while the cluster is busiest. `Mirror` itself is plain data
and pure; `follow` is the task that feeds it.

A range ending in `/` is a prefix; any other is one exact key. Each range is consistent on its
own (one watch stream, revision order). One range is special: `<prefix>/config-delta` (what
each configuration change changed, written with it: model/config_delta.py) stands for the
configuration. Whoever follows it reads the configuration once and then applies each delta
to its copy, so a change costs it what changed rather than the whole configuration; a delta
that does not apply to the copy (a write that bypassed `write_config`, a history compacted)
makes it read the configuration again. Which ranges an agent follows depends on its role
(docs/control-plane.md): the DC follows the whole prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence

from hastack.errors import Compacted, StoreError
from hastack.model.config_delta import apply_delta, delta_revision
from hastack.model.members import ClusterSnapshot, SnapshotDecoder, StoredKey
from hastack.store.keys import Keys
from hastack.store.protocol import Store
from hastack.store.types import EventKind, KeyValue, WatchBatch

__all__ = ["Mirror", "follow", "follow_all"]

log = logging.getLogger(__name__)

# After a failed read of a range, wait this long before trying again (the watch itself
# resumes on its own; only a compaction or a failed first read comes back here).
_RETRY = 0.5


def is_prefix(range_: str) -> bool:
    """A range that ends in `/` is every key under it; any other is that one key."""
    return range_.endswith("/")


def in_range(key: str, range_: str) -> bool:
    return key.startswith(range_) if is_prefix(range_) else key == range_


class Mirror:
    """The keys under some prefixes, as of the revision each range was last brought to."""

    def __init__(self, keys: Keys, ranges: Sequence[str]) -> None:
        self.keys = keys
        self.ranges = tuple(ranges)
        self._kvs: dict[str, KeyValue] = {}
        self._revisions: dict[str, int] = {}  # range -> revision it is current at
        self._loaded: dict[str, int] = {}  # range -> revision of its last full read
        self._decoder = SnapshotDecoder()
        # What the last snapshot was made from, so that the next pays for what changed: each
        # key as the decoder takes it (made again only for a new KeyValue), the keys in order
        # (sorted again only when one comes or goes), and the snapshot itself (returned again
        # while nothing changed: the DC's cycle also wakes for progress notifications).
        self._stored: dict[str, tuple[KeyValue, StoredKey]] = {}
        self._order: list[str] | None = None
        self._last: ClusterSnapshot | None = None

    @property
    def loaded(self) -> bool:
        """Has every range been read at least once?"""
        return all(r in self._revisions for r in self.ranges)

    @property
    def revision(self) -> int:
        return max(self._revisions.values(), default=0)

    def range_revision(self, prefix: str) -> int:
        return self._revisions.get(prefix, 0)

    def resumes_at(self, prefix: str) -> int | None:
        """The revision a watch of range `prefix` continues from (every change up to it is
        in the mirror); None when the range must be read first."""
        return self._revisions.get(prefix)

    def forget(self, prefix: str) -> None:
        """The range can no longer be brought up to date from its watch (the store's history
        no longer goes back to where it is): not loaded until it is read again. Its keys stay
        until that read replaces them."""
        self._revisions.pop(prefix, None)

    def load(self, prefix: str, kvs: Iterable[KeyValue], revision: int) -> None:
        """Replace everything in range `prefix` by a fresh read made at `revision`."""
        self._replace(prefix, lambda key: in_range(key, prefix), kvs, revision)

    def load_config(self, kvs: Iterable[KeyValue], revision: int) -> None:
        """The configuration as read at `revision` (none: `kvs` empty), for the delta range:
        its deltas apply from there."""
        config = self.keys.config
        held = [kv for kv in kvs if kv.key == config]
        self._replace(self.keys.config_delta, lambda key: key == config, held, revision)

    def _replace(
        self, prefix: str, held: Callable[[str], bool], kvs: Iterable[KeyValue], revision: int
    ) -> None:
        """The keys `held` selects replaced by `kvs`, read at `revision`: range `prefix` is
        current there (its events up to it are in the read)."""
        for key in [k for k in self._kvs if held(k)]:
            del self._kvs[key]
        for kv in kvs:
            self._kvs[kv.key] = kv
        self._order, self._last = None, None
        self._revisions[prefix] = revision
        self._loaded[prefix] = revision

    def apply_delta(self, batch: WatchBatch) -> bool | None:
        """Apply one batch of configuration deltas to the configuration held: whether it
        changed; None when a delta does not apply to it (read the configuration again)."""
        prefix = self.keys.config_delta
        changed = False
        for event in batch.events:
            if event.kv.mod_revision <= self._loaded.get(prefix, 0):
                continue
            if event.kind is EventKind.DELETE:
                return None
            held = self._kvs.get(self.keys.config)
            value = apply_delta(
                held.value if held is not None else None,
                held.mod_revision if held is not None else 0,
                event.kv.value,
            )
            if value is None:
                return None
            if held is None:
                self._order = None
            stored_at = delta_revision(event.kv.value, event.kv.mod_revision)
            self._kvs[self.keys.config] = KeyValue(
                self.keys.config,
                value,
                held.create_revision if held is not None else stored_at,
                stored_at,
                held.version + 1 if held is not None else 1,
                0,
            )
            changed = True
        if changed:
            self._last = None
        self._revisions[prefix] = max(self._revisions.get(prefix, 0), batch.revision)
        return changed

    def unpaired_config(self) -> tuple[KeyValue, int] | None:
        """The configuration, when it was written after its last delta (around
        `write_config`: etcdctl), with the revision of that delta (0: none); None when they
        go together, and on a mirror that does not follow the whole prefix (the DC's does):
        one that follows the deltas holds the configuration without them."""
        if self.ranges != (self.keys.prefix,):
            return None
        config = self._kvs.get(self.keys.config)
        delta = self._kvs.get(self.keys.config_delta)
        paired = delta.mod_revision if delta is not None else 0
        if config is None or config.mod_revision <= paired:
            return None
        return config, paired

    def apply(self, prefix: str, batch: WatchBatch) -> bool:
        """Apply one batch of changes under `prefix`; whether anything changed."""
        changed = False
        for event in batch.events:
            key = event.kv.key
            if event.kv.mod_revision <= self._loaded.get(prefix, 0):
                continue  # already in the read this range was loaded from
            if event.kind is EventKind.DELETE:
                if self._kvs.pop(key, None) is not None:
                    changed = True
                    self._order = None
            else:
                if key not in self._kvs:
                    self._order = None
                self._kvs[key] = event.kv
                changed = True
        if changed:
            self._last = None
        self._revisions[prefix] = max(self._revisions.get(prefix, 0), batch.revision)
        return changed

    def is_behind(self, revision: int) -> list[str]:
        """The ranges not yet brought up to `revision` (by their events or a progress
        notification): when the cluster was at `revision` long enough ago, their watch is
        stale — e.g. held open and silent by a member cut off from its cluster."""
        return [r for r in self.ranges if self._revisions.get(r, 0) < revision]

    def items(self) -> list[KeyValue]:
        return [self._kvs[k] for k in sorted(self._kvs)]

    def snapshot(self) -> ClusterSnapshot:
        """The mirrored keys, decoded (only keys that changed since the last call)."""
        revision = self.revision
        last = self._last
        if last is not None:
            return (
                last if last.revision == revision else dataclasses.replace(last, revision=revision)
            )
        if self._order is None:
            self._order = sorted(self._kvs)
            self._stored = {k: v for k, v in self._stored.items() if k in self._kvs}
        stored = []
        for key in self._order:
            kv = self._kvs[key]
            cached = self._stored.get(key)
            if cached is None or cached[0] is not kv:
                name = self.keys.relative(kv.key)
                cached = (
                    kv,
                    StoredKey(name, kv.value, kv.create_revision, kv.mod_revision, kv.lease),
                )
                self._stored[key] = cached
            stored.append(cached[1])
        self._last = self._decoder.decode(revision, stored)
        return self._last


async def follow(
    store: Store,
    mirror: Mirror,
    prefix: str,
    on_change: Callable[[], None],
    progress_every: float | None = None,
) -> None:
    """Keep `prefix` of the mirror current for ever: read it if the mirror does not hold it
    yet, then follow its watch from the revision the mirror holds it at — also when this task
    replaces one that was cancelled (a lagging watch moved to another member) or when the
    watch breaks. Read again only when the store's history no longer goes back that far.
    Calls `on_change` after every change."""
    deltas = prefix == mirror.keys.config_delta
    while True:
        start = mirror.resumes_at(prefix)
        if start is None:
            try:
                if deltas:  # the configuration itself, then its deltas from there
                    result = await store.range(mirror.keys.config)
                else:
                    result = await store.range(prefix, prefix=is_prefix(prefix))
            except StoreError as exc:
                log.debug("mirror: reading %s failed (%s); retrying", prefix, exc)
                await asyncio.sleep(_RETRY)
                continue
            if deltas:
                mirror.load_config(result.kvs, result.revision)
            else:
                mirror.load(prefix, result.kvs, result.revision)
            on_change()
            start = result.revision
        try:
            async for batch in store.watch_prefix(
                prefix,
                start + 1,
                exact=not is_prefix(prefix),
                progress_every=progress_every,
            ):
                if not deltas:
                    if mirror.apply(prefix, batch):
                        on_change()
                    continue
                applied = mirror.apply_delta(batch)
                if applied is None:
                    log.info("mirror: a configuration delta does not apply; reading it again")
                    mirror.forget(prefix)
                    break
                if applied:
                    on_change()
        except Compacted:
            log.info("mirror: the history of %s was compacted; reading it again", prefix)
            mirror.forget(prefix)
        except StoreError as exc:
            log.debug(
                "mirror: watch on %s ended (%s); resuming at %d",
                prefix,
                exc,
                mirror.range_revision(prefix) + 1,
            )
            await asyncio.sleep(_RETRY)
        except Exception:
            # Whatever went wrong, a range that stops being followed would leave its node
            # acting on what it last saw, for ever: say so, and read it again.
            log.exception("mirror: following %s failed; reading it again", prefix)
            mirror.forget(prefix)
            await asyncio.sleep(_RETRY)


async def follow_all(
    store: Store,
    mirror: Mirror,
    on_change: Callable[[], None],
    progress_every: float | None = None,
) -> None:
    """Follow every range of the mirror until cancelled; with `progress_every`, every quiet
    range still reports the store's revision that often (see `is_behind`)."""
    tasks = [
        asyncio.create_task(
            follow(store, mirror, prefix, on_change, progress_every), name=f"mirror {prefix}"
        )
        for prefix in mirror.ranges
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
