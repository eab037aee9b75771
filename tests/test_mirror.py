"""The watch-fed state equals a fresh full read at every revision (pure: a model store here;
the same against real etcd in the store's contract suite)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.model.members import StoredKey, decode_snapshot
from hastack.store import Store
from hastack.store.keys import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.mirror import Mirror, follow_all, is_prefix
from hastack.store.types import Event, EventKind, KeyValue, RangeResult, WatchBatch
from helpers import snapshot_fields

KEYS = Keys("c")
NAMES = ["dc", "config", "members/n1", "members/n2", "status/n1", "status/n2", "target/n1"]


class ModelStore:
    """etcd's key-value semantics, enough for the mirror: revisions and change events."""

    def __init__(self) -> None:
        self.revision = 1
        self.kvs: dict[str, KeyValue] = {}
        self.log: list[Event] = []

    def put(self, key: str, value: bytes) -> None:
        self.revision += 1
        old = self.kvs.get(key)
        kv = KeyValue(
            key,
            value,
            old.create_revision if old else self.revision,
            self.revision,
            (old.version if old else 0) + 1,
            0,
        )
        self.kvs[key] = kv
        self.log.append(Event(EventKind.PUT, kv))

    def delete(self, key: str) -> None:
        if key not in self.kvs:
            return
        self.revision += 1
        del self.kvs[key]
        self.log.append(Event(EventKind.DELETE, KeyValue(key, b"", 0, self.revision, 0, 0)))

    def read(self, prefix: str) -> list[KeyValue]:
        return [kv for k, kv in sorted(self.kvs.items()) if k.startswith(prefix)]

    def events_since(self, prefix: str, revision: int) -> list[Event]:
        return [e for e in self.log if e.kv.key.startswith(prefix) and e.kv.mod_revision > revision]


op = st.tuples(
    st.sampled_from(["put", "delete", "reload"]), st.sampled_from(NAMES), st.binary(max_size=4)
)


def carry_out(store: ModelStore, kind: str, key: str, value: bytes) -> bool:
    """Carry out a `put` or `delete` op on the model store; False for any other kind."""
    if kind == "put":
        store.put(key, value)
    elif kind == "delete":
        store.delete(key)
    else:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(
    st.lists(op, max_size=40),
    st.sampled_from([[""], ["dc", "members/", "target/n1"]]),
    st.integers(1, 3),
)
def test_the_mirror_equals_a_full_read_at_every_revision(
    ops: list[tuple[str, str, bytes]], ranges: list[str], chunk: int
) -> None:
    store = ModelStore()
    prefixes = [KEYS.prefix + r for r in ranges]
    mirror = Mirror(KEYS, prefixes)
    delivered = dict.fromkeys(prefixes, 0)
    for p in prefixes:
        mirror.load(p, store.read(p), store.revision)
        delivered[p] = store.revision
    assert mirror.loaded

    def deliver() -> None:
        for p in prefixes:
            events = store.events_since(p, delivered[p])
            # etcd may split what is pending over several responses, each carrying the
            # store's current revision in its header, ahead of the events it holds.
            for i in range(0, len(events), chunk):
                mirror.apply(p, WatchBatch(tuple(events[i : i + chunk]), store.revision))
            delivered[p] = store.revision

    for kind, name, value in ops:
        key = KEYS.prefix + name
        if carry_out(store, kind, key, value):
            continue
        if kind == "reload":
            # a compaction: the range is read afresh, the watch resumed after that read
            deliver()
            p = next((p for p in prefixes if key.startswith(p)), prefixes[0])
            mirror.load(p, store.read(p), store.revision)
        else:
            deliver()  # the watch delivers what happened since, in revision order
            expected = sorted((kv for p in prefixes for kv in store.read(p)), key=lambda kv: kv.key)
            assert mirror.items() == expected
    deliver()
    expected = sorted((kv for p in prefixes for kv in store.read(p)), key=lambda kv: kv.key)
    assert mirror.items() == expected


def test_the_snapshot_decodes_only_what_changed() -> None:
    store = ModelStore()
    mirror = Mirror(KEYS, [KEYS.prefix])
    store.put(KEYS.prefix + "nodes/n1", b'{"name": "n1", "kind": "full"}')
    store.put(KEYS.prefix + "status/n1", b"not json")
    mirror.load(KEYS.prefix, store.read(KEYS.prefix), store.revision)
    first = mirror.snapshot()
    assert set(first.nodes) == {"n1"}
    assert first.problems == (
        "status/n1: not valid JSON (Expecting value: line 1 column 1 (char 0)); ignored",
    )
    store.put(KEYS.prefix + "nodes/n2", b'{"name": "n2", "kind": "remote"}')
    store.delete(KEYS.prefix + "status/n1")
    mirror.apply(KEYS.prefix, WatchBatch(tuple(store.log[-2:]), store.revision))
    second = mirror.snapshot()
    assert set(second.nodes) == {"n1", "n2"}
    assert second.nodes["n1"] is first.nodes["n1"]  # reused, not decoded again
    assert second.problems == ()
    assert second.revision == store.revision


def test_a_range_behind_the_cluster_is_named() -> None:
    mirror = Mirror(KEYS, [KEYS.prefix + "dc", KEYS.prefix + "members/"])
    mirror.load(KEYS.prefix + "dc", [], 10)
    mirror.load(KEYS.prefix + "members/", [], 10)
    mirror.apply(KEYS.prefix + "dc", WatchBatch((), 25))  # a progress notification
    assert mirror.is_behind(20) == [KEYS.prefix + "members/"]
    assert mirror.is_behind(10) == []


class CountingStore(MemoryStore):
    """A MemoryStore that counts its range reads."""

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__(backend)
        self.reads = 0

    async def range(self, key: str, *, prefix: bool = False) -> RangeResult:
        self.reads += 1
        return await super().range(key, prefix=prefix)


async def _read(store: Store, ranges: list[str]) -> list[KeyValue]:
    """What a fresh read of the ranges says, in key order."""
    out: list[KeyValue] = []
    for r in ranges:
        out += (await store.range(KEYS.prefix + r, prefix=is_prefix(KEYS.prefix + r))).kvs
    return sorted(out, key=lambda kv: kv.key)


async def _follow_until_equal(store: Store, mirror: Mirror, expected: list[KeyValue]) -> None:
    """Follow the mirror's ranges until it holds `expected`; then stop following."""
    reached = asyncio.Event()

    def changed() -> None:
        if mirror.loaded and mirror.items() == expected:
            reached.set()

    task = asyncio.create_task(follow_all(store, mirror, changed))
    try:
        async with asyncio.timeout(5):
            await reached.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _write(store: Store, names: list[str], value: bytes) -> None:
    for name in names:
        await store.put(KEYS.prefix + name, value)
    await store.delete(KEYS.prefix + "status/n2")


@pytest.mark.parametrize("ranges", [[""], ["dc", "members/", "target/n1"]])
async def test_a_replaced_watch_resumes_where_the_mirror_is_without_reading(
    ranges: list[str],
) -> None:
    """A watch replaced (the agent found it lagging, and follows through another member)
    continues from the revision the mirror holds each range at: no range is read again, and
    the mirror ends equal to a fresh read."""
    backend = MemoryBackend()
    store = CountingStore(backend)
    mirror = Mirror(KEYS, [KEYS.prefix + r for r in ranges])
    await _write(store, NAMES, b"1")
    expected = await _read(store, ranges)
    store.reads = 0
    await _follow_until_equal(store, mirror, expected)
    assert store.reads == len(ranges)  # each range read once, at the start
    await _write(store, NAMES[::2], b"2")  # while nothing follows
    expected = await _read(store, ranges)
    store.reads = 0
    await _follow_until_equal(store, mirror, expected)  # a new task, the same mirror
    assert store.reads == 0


async def test_a_range_whose_history_is_compacted_is_read_again() -> None:
    """Resuming needs the store's history from where the mirror is; once it is compacted
    past that, the range is read afresh (and only then)."""
    backend = MemoryBackend()
    store = CountingStore(backend)
    mirror = Mirror(KEYS, [KEYS.prefix])
    await _write(store, NAMES, b"1")
    await _follow_until_equal(store, mirror, await _read(store, [""]))
    await _write(store, NAMES[1:], b"2")
    backend.compact(backend.revision)
    expected = await _read(store, [""])
    store.reads = 0
    await _follow_until_equal(store, mirror, expected)
    assert store.reads == 1


VALUES = [
    b'{"name": "n1", "kind": "full"}',
    b'{"name": "n2", "kind": "remote"}',
    b'{"name": "n1", "kind": "remote", "addresses": ["10.0.0.1"]}',
    b"not json",
]
SNAPSHOT_NAMES = ["nodes/n1", "nodes/n2", "members/n1", "members/n2", "other/x", "status/n1"]
snapshot_op = st.tuples(
    st.sampled_from(["put", "delete", "progress", "snapshot"]),
    st.sampled_from(SNAPSHOT_NAMES),
    st.sampled_from(VALUES),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(snapshot_op, max_size=40))
def test_the_kept_snapshot_equals_a_fresh_decode(ops: list[tuple[str, str, bytes]]) -> None:
    """The mirror keeps what its last snapshot was made from (each key as decoded, their
    order, the snapshot itself while nothing changed): after any sequence of changes,
    progress notifications and snapshots, its snapshot is a fresh decode of what it holds."""
    store = ModelStore()
    mirror = Mirror(KEYS, [KEYS.prefix])
    mirror.load(KEYS.prefix, store.read(KEYS.prefix), store.revision)
    delivered = store.revision
    for kind, name, value in ops:
        key = KEYS.prefix + name
        if not carry_out(store, kind, key, value) and kind == "progress":
            store.revision += 1  # a write elsewhere: the watch reports only the revision
        events = store.events_since(KEYS.prefix, delivered)
        mirror.apply(KEYS.prefix, WatchBatch(tuple(events), store.revision))
        delivered = store.revision
        stored = [
            StoredKey(KEYS.relative(kv.key), kv.value, kv.create_revision, kv.mod_revision, 0)
            for kv in mirror.items()
        ]
        assert snapshot_fields(mirror.snapshot()) == snapshot_fields(
            decode_snapshot(mirror.revision, stored)
        )
