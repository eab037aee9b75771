"""Where servers come from besides the configuration: the BackendSource interface.

A source yields, whenever something changes, the complete server list of every backend it
feeds (level-triggered, like the agent's cycle: a lost update is repaired by the next one).

    StaticSource   nothing beyond the configuration's own `servers`
    PushSource     lists set by the caller — the executor running the proxy in-process, or tests
    ClusterSource  etcd: `members/` and `status/` under the cluster prefix, read once, then
                   watched; a node whose instance stops, fails or whose lease expires leaves
                   its pool with the watch event, with no health-check delay

When etcd cannot be reached the cluster source keeps the last lists it had (the proxy keeps
serving, its own checks still guard each server) and retries with a capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from hastack.errors import Compacted, StoreError
from hastack.model.members import MemberRecord, StoredKey, decode_snapshot
from hastack.model.status import (
    NodeReport,
    StatusPart,
    assemble_status,
    decode_status,
    decode_status_part,
)
from hastack.proxy.config import ClusterPool
from hastack.proxy.follow import follow
from hastack.proxy.view import Endpoint
from hastack.store import EventKind, Keys, KeyValue, Store

__all__ = ["BackendSource", "ClusterSource", "PushSource", "ServerLists", "StaticSource"]

log = logging.getLogger("hastack.proxy")

ServerLists = Mapping[str, tuple[Endpoint, ...]]  # backend name -> its servers from the source


class BackendSource(Protocol):
    def updates(self) -> AsyncIterator[ServerLists]:
        """Complete server lists per backend, each time they change; runs until cancelled."""
        ...


class StaticSource:
    """Only the servers written in the configuration."""

    async def updates(self) -> AsyncIterator[ServerLists]:
        yield {}
        await asyncio.Event().wait()


class PushSource:
    """Server lists set from outside: `set('api', [Endpoint(...)])`."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[Endpoint, ...]] = {}
        self._changed = asyncio.Event()

    def set(self, backend: str, endpoints: list[Endpoint] | tuple[Endpoint, ...]) -> None:
        self._lists[backend] = tuple(endpoints)
        self._changed.set()

    async def updates(self) -> AsyncIterator[ServerLists]:
        while True:
            self._changed.clear()
            yield dict(self._lists)
            await self._changed.wait()


def _member(keys: Keys, kv: KeyValue) -> MemberRecord | None:
    name = keys.relative(kv.key)
    stored = StoredKey(name, kv.value, kv.create_revision, kv.mod_revision, kv.lease)
    snapshot = decode_snapshot(kv.mod_revision, [stored])
    for problem in snapshot.problems:
        log.warning("proxy: %s", problem)
    return next(iter(snapshot.members.values()), None)


def _head(node: str, kv: KeyValue) -> NodeReport | None:
    try:
        return decode_status(node, kv.value)
    except ValueError as exc:
        log.warning("proxy: status/%s: %s; ignored", node, exc)
        return None


def _part(node: str, part: str, kv: KeyValue) -> StatusPart | None:
    try:
        return decode_status_part(kv.value)
    except ValueError as exc:
        log.warning("proxy: status/%s/%s: %s; the report of %s ignored", node, part, exc, node)
        return None


class ClusterSource:
    """Backends that follow cluster resources, fed from the store by read + watch."""

    def __init__(self, store: Store, keys: Keys, pools: Mapping[str, ClusterPool]) -> None:
        self.store = store
        self.keys = keys
        self.pools = dict(pools)
        self.members: dict[str, MemberRecord] = {}
        self.reports: dict[str, NodeReport] = {}
        self.revision = 0
        # Each node's report as stored (model/status.py): its head (None: it does not decode)
        # and its parts (None: one that does not decode); assembled into `reports` by
        # `_settle` once a batch of changes is applied.
        self._heads: dict[str, NodeReport | None] = {}
        self._parts: dict[str, dict[str, StatusPart | None]] = {}
        self._unsettled: set[str] = set()

    def _settle(self) -> None:
        """Assemble the report of every node whose keys changed: none while its head is
        missing or a key does not decode (a report without a part could say that a server
        serving there does not run)."""
        for node in sorted(self._unsettled):
            head, parts = self._heads.get(node), self._parts.get(node, {})
            report = None
            if head is not None and all(p is not None for p in parts.values()):
                try:
                    report = assemble_status(
                        head, {k: v for k, v in parts.items() if v is not None}
                    )
                except ValueError as exc:
                    log.warning("proxy: status/%s: %s; ignored", node, exc)
            if report is None:
                self.reports.pop(node, None)
            else:
                self.reports[node] = report
        self._unsettled.clear()

    def _lists(self) -> dict[str, tuple[Endpoint, ...]]:
        return {name: follow(pool, self.members, self.reports) for name, pool in self.pools.items()}

    def _apply(self, kind: EventKind, kv: KeyValue) -> bool:
        """Fold one key into the state; True when it was a key this source cares about."""
        section, _, node = self.keys.relative(kv.key).partition("/")
        if section == "members":
            member = _member(self.keys, kv) if kind is EventKind.PUT else None
            if member is None:
                self.members.pop(node, None)
            else:
                self.members[node] = member
            return True
        if section == "status":
            node, _, part = node.partition("/")
            if part:
                parts = self._parts.setdefault(node, {})
                if kind is EventKind.PUT:
                    parts[part] = _part(node, part, kv)
                else:
                    parts.pop(part, None)
            elif kind is EventKind.PUT:
                self._heads[node] = _head(node, kv)
            else:
                self._heads.pop(node, None)
            self._unsettled.add(node)
            return True
        return False

    async def _read(self) -> None:
        delay = 0.1
        while True:
            try:
                result = await self.store.get_prefix(self.keys.prefix)
                break
            except StoreError as exc:
                log.warning("proxy: cannot read cluster state (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.members.clear()
        self.reports.clear()
        self._heads.clear()
        self._parts.clear()
        for kv in result.kvs:
            self._apply(EventKind.PUT, kv)
        self._settle()
        self.revision = result.revision

    async def updates(self) -> AsyncIterator[ServerLists]:
        last: dict[str, tuple[Endpoint, ...]] | None = None
        while True:
            await self._read()
            lists = self._lists()
            if lists != last:
                last = lists
                yield lists
            try:
                async for batch in self.store.watch_prefix(
                    self.keys.prefix, self.revision + 1, on_reconnect=_log_reconnect
                ):
                    touched = False
                    for event in batch.events:
                        touched = self._apply(event.kind, event.kv) or touched
                    self._settle()
                    self.revision = batch.revision
                    if touched:
                        lists = self._lists()
                        if lists != last:
                            last = lists
                            yield lists
            except Compacted:
                log.info("proxy: watch history compacted; reading cluster state afresh")
            except StoreError as exc:
                log.warning("proxy: cluster watch failed (%s); reading afresh", exc)
                await asyncio.sleep(0.5)


def _log_reconnect(reason: str) -> None:
    log.info("proxy: %s", reason)
