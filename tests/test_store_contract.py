"""The store contract: one suite, run against every provider of hastack.store.Store.

`etcd` is EtcdStore on a real 3-member etcd cluster (one per module, with etcd's default
election timeout so its minimum lease TTL is the production one, 2 s); `memory` is MemoryStore
on a MemoryBackend with a manual clock. Where time must pass (lease expiry) the etcd run
sleeps and the memory run advances its clock. Each test works under its own key prefix, as
the etcd cluster is shared by the module.

What only etcd does (failover between members, member death) is in test_store.py; what only
the fake does (fault injection) is in test_store_memory.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aetcd import rpc

from conftest import start_local_cluster
from hastack.errors import (
    Compacted,
    DefiniteStoreError,
    IndeterminateStoreError,
    LeaseNotFound,
    StoreRejected,
    StoreUnavailable,
)
from hastack.lab.local import LocalCluster
from hastack.store import (
    Compare,
    CompareTarget,
    DeleteOp,
    Event,
    EventKind,
    GetOp,
    PutOp,
    Store,
    WatchBatch,
)
from hastack.store.etcd import make_channel, parse_endpoint
from hastack.store.memory import ManualClock, MemoryBackend, MemoryStore
from helpers import async_wait_until

_names = itertools.count()


@dataclass
class Subject:
    """One store under test: a first client, a way to open more, and control of time."""

    kind: str
    prefix: str  # every key of the test lives under it
    connect: Callable[[], Store]
    advance: Callable[[float], Awaitable[None]]  # let this much time pass for the store
    compact: Callable[[int], Awaitable[None]]
    clients: list[Store] = field(default_factory=list)

    @property
    def store(self) -> Store:
        if not self.clients:
            self.client()
        return self.clients[0]

    def client(self) -> Store:
        store = self.connect()
        self.clients.append(store)
        return store

    def key(self, name: str) -> str:
        return self.prefix + name


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    lc = start_local_cluster(
        Path(tmp_path_factory.mktemp("contract")) / "etcd",
        nodes=3,
        cluster="contract",
        agents=False,
        election_ms=1000,
    )
    yield lc
    lc.down()


@pytest.fixture(params=["etcd", "memory"])
def cluster(request: pytest.FixtureRequest) -> LocalCluster | None:
    """The etcd cluster, for the etcd run only (started outside any event loop)."""
    if request.param == "etcd":
        lc: LocalCluster = request.getfixturevalue("etcd_cluster")
        return lc
    return None


@pytest.fixture
async def subject(
    request: pytest.FixtureRequest, cluster: LocalCluster | None
) -> AsyncIterator[Subject]:
    prefix = f"/contract/{next(_names)}-{request.node.originalname}/"
    if cluster is not None:
        lc = cluster

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds)

        async def compact(revision: int) -> None:
            # Not part of the Store interface: asked of etcd directly, as an operator would.
            async with make_channel(parse_endpoint(lc.endpoints[0]), lc.credentials) as channel:
                compaction = rpc.CompactionRequest(revision=revision, physical=True)
                await rpc.KVStub(channel).Compact(compaction, timeout=5)

        subject = Subject("etcd", prefix, lambda: lc.store(2.0), sleep, compact)
    else:
        clock = ManualClock()
        backend = MemoryBackend(clock=clock)

        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.sleep(0)

        async def compact_memory(revision: int) -> None:
            backend.compact(revision)

        subject = Subject(
            "memory", prefix, lambda: MemoryStore(backend, timeout=2.0), advance, compact_memory
        )
    yield subject
    for store in subject.clients:
        await store.close()


# ---- reading and writing -------------------------------------------------------------------


async def test_put_and_get_carry_revisions_and_versions(subject: Subject) -> None:
    store, key = subject.store, subject.key("a")
    assert await store.get(key) is None
    first = await store.put(key, b"1")
    kv = await store.get(key)
    assert kv is not None
    assert (kv.key, kv.value, kv.lease) == (key, b"1", 0)
    assert kv.create_revision == kv.mod_revision == first
    assert kv.version == 1
    second = await store.put(key, b"2")
    assert second == first + 1, "each write is one revision"
    kv = await store.get(key)
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", first, second, 2)


async def test_range_reads_one_key_or_a_prefix_in_key_order(subject: Subject) -> None:
    store = subject.store
    for name in ("b", "a", "c/deep"):
        await store.put(subject.key(name), name.encode())
    last = await store.put(subject.prefix.rstrip("/") + "x", b"outside the prefix")
    found = await store.get_prefix(subject.prefix)
    assert [kv.key for kv in found.kvs] == [subject.key(n) for n in ("a", "b", "c/deep")]
    assert found.revision >= last, "a read is served at the store's current revision"
    same = await store.range(subject.prefix, prefix=True)
    assert same.kvs == found.kvs
    one = await store.range(subject.key("a"))
    assert [kv.value for kv in one.kvs] == [b"a"]
    assert (await store.range(subject.key("nothing"))).kvs == ()


async def test_delete_a_key_or_a_prefix(subject: Subject) -> None:
    store = subject.store
    for name in ("a", "b", "c"):
        await store.put(subject.key(name), b"x")
    outside = subject.prefix.rstrip("/") + "x"
    await store.put(outside, b"y")
    assert await store.delete(subject.key("a")) == 1
    assert await store.delete(subject.key("a")) == 0
    before = (await store.get_prefix(subject.prefix)).revision
    assert await store.delete(subject.prefix, prefix=True) == 2
    after = (await store.get_prefix(subject.prefix)).revision
    assert after == before + 1, "a prefix delete is one revision"
    assert (await store.get_prefix(subject.prefix)).kvs == ()
    assert await store.get(outside) is not None
    # a deleted key comes back as a new key: new create revision, version 1
    again = await store.put(subject.key("a"), b"new")
    kv = await store.get(subject.key("a"))
    assert kv is not None
    assert (kv.create_revision, kv.version) == (again, 1)


async def test_requests_that_change_nothing_take_no_revision(subject: Subject) -> None:
    store, key = subject.store, subject.key("k")
    now = await store.put(key, b"v")
    assert await store.delete(subject.key("missing")) == 0
    read_only = await store.txn([], success=[GetOp(key)])
    failed = await store.txn([Compare.absent(key)], success=[PutOp(key, b"w")])
    assert read_only.revision == failed.revision == now
    assert not failed.succeeded
    assert (await store.get_prefix(subject.prefix)).revision == now


async def test_clients_share_one_keyspace(subject: Subject) -> None:
    writer, reader = subject.store, subject.client()
    revision = await writer.put(subject.key("shared"), b"1")
    kv = await reader.get(subject.key("shared"))
    assert kv is not None
    assert kv.mod_revision == revision


# ---- transactions --------------------------------------------------------------------------


async def test_a_transaction_of_several_writes_is_one_revision(subject: Subject) -> None:
    store = subject.store
    await store.put(subject.key("gone"), b"x")
    result = await store.txn(
        [],
        success=[
            PutOp(subject.key("a"), b"1"),
            PutOp(subject.key("b"), b"2"),
            DeleteOp(subject.key("gone")),
        ],
    )
    assert result.succeeded
    kvs = (await store.get_prefix(subject.prefix)).kvs
    assert [kv.key for kv in kvs] == [subject.key("a"), subject.key("b")]
    assert {kv.mod_revision for kv in kvs} == {result.revision}
    assert result.reads == ((), (), ())


async def test_compare_and_swap(subject: Subject) -> None:
    store, key = subject.store, subject.key("cas")
    # create only if absent: the first wins, the second sees the winner
    first = await store.txn([Compare.absent(key)], success=[PutOp(key, b"a")])
    second = await store.txn(
        [Compare.absent(key)], success=[PutOp(key, b"b")], failure=[GetOp(key)]
    )
    assert first.succeeded
    assert not second.succeeded
    assert second.reads[0][0].value == b"a"
    kv = await store.get(key)
    assert kv is not None
    # update only if unchanged since we read it
    ok = await store.txn([Compare.unchanged(key, kv.mod_revision)], success=[PutOp(key, b"c")])
    stale = await store.txn([Compare.unchanged(key, kv.mod_revision)], success=[PutOp(key, b"d")])
    assert ok.succeeded
    assert not stale.succeeded
    after = await store.get(key)
    assert after is not None
    assert after.value == b"c"
    assert after.create_revision == kv.create_revision
    # compare on create revision: the key's identity, not its content
    assert (await store.txn([Compare.value_is(key, b"c")], success=[])).succeeded
    gone = await store.txn([Compare.created_at(key, kv.create_revision)], success=[DeleteOp(key)])
    assert gone.succeeded
    assert await store.get(key) is None


async def test_every_compare_target_and_operator(subject: Subject) -> None:
    store, key = subject.store, subject.key("k")
    create = await store.put(key, b"m")
    mod = await store.put(key, b"m")
    actual: dict[CompareTarget, int | bytes] = {
        CompareTarget.CREATE: create,
        CompareTarget.MOD: mod,
        CompareTarget.VERSION: 2,
        CompareTarget.VALUE: b"m",
    }
    operands: dict[CompareTarget, tuple[int | bytes, ...]] = {
        CompareTarget.CREATE: (create - 1, create, create + 1),
        CompareTarget.MOD: (mod - 1, mod, mod + 1),
        CompareTarget.VERSION: (1, 2, 3),
        CompareTarget.VALUE: (b"l", b"m", b"mm"),
    }
    wrong = []
    for target, values in operands.items():
        for operand, op in itertools.product(values, ("=", "!=", "<", ">")):
            # below / equal / above: what etcd's compare means, spelt out
            index = values.index(operand)
            expected = {"=": index == 1, "!=": index != 1, "<": index == 2, ">": index == 0}[op]
            result = await store.txn([Compare(key, target, op, operand)])
            if result.succeeded != expected:
                wrong.append(f"{target.name} {actual[target]!r} {op} {operand!r}")
    assert wrong == []


async def test_compares_on_a_missing_key(subject: Subject) -> None:
    store, key = subject.store, subject.key("missing")
    for target in (CompareTarget.CREATE, CompareTarget.MOD, CompareTarget.VERSION):
        assert (await store.txn([Compare(key, target, "=", 0)])).succeeded, target
        assert not (await store.txn([Compare(key, target, ">", 0)])).succeeded, target
    # a missing key has no value: no value compare holds, not even "!="
    for op in ("=", "!=", "<", ">"):
        assert not (await store.txn([Compare(key, CompareTarget.VALUE, op, b"x")])).succeeded, op


async def test_all_compares_must_hold(subject: Subject) -> None:
    store = subject.store
    rev = await store.put(subject.key("a"), b"1")
    both = [Compare.unchanged(subject.key("a"), rev), Compare.absent(subject.key("b"))]
    assert (await store.txn(both)).succeeded
    await store.put(subject.key("b"), b"2")
    assert not (await store.txn(both)).succeeded


async def test_reads_in_a_branch_see_its_earlier_writes(subject: Subject) -> None:
    store = subject.store
    await store.put(subject.key("a"), b"old")
    await store.put(subject.key("c"), b"doomed")
    result = await store.txn(
        [Compare.value_is(subject.key("a"), b"old")],
        success=[
            GetOp(subject.key("a")),
            PutOp(subject.key("a"), b"new"),
            PutOp(subject.key("b"), b"b"),
            DeleteOp(subject.key("c")),
            GetOp(subject.key("a")),
            GetOp(subject.prefix, prefix=True),
            GetOp(subject.key("c")),
        ],
    )
    assert result.succeeded
    before, _, _, _, after, everything, deleted = result.reads
    assert [kv.value for kv in before] == [b"old"]
    assert [kv.value for kv in after] == [b"new"]
    assert after[0].mod_revision == result.revision
    assert [(kv.key, kv.value) for kv in everything] == [
        (subject.key("a"), b"new"),
        (subject.key("b"), b"b"),
    ]
    assert deleted == ()
    failed = await store.txn(
        [Compare.absent(subject.key("a"))], failure=[GetOp(subject.prefix, prefix=True)]
    )
    assert not failed.succeeded
    assert [kv.key for kv in failed.reads[0]] == [subject.key("a"), subject.key("b")]


# ---- refusals ------------------------------------------------------------------------------


async def test_malformed_requests_are_refused_definitely(subject: Subject) -> None:
    store, key = subject.store, subject.key("k")
    before = await store.put(key, b"v")
    refused: dict[str, Callable[[], Awaitable[object]]] = {
        "empty key": lambda: store.put("", b"no key"),
        "empty prefix": lambda: store.get_prefix(""),
        "one key twice": lambda: store.txn([], success=[PutOp(key, b"1"), PutOp(key, b"2")]),
        # refused whichever branch would run
        "a put into a deleted range": lambda: store.txn(
            [], failure=[DeleteOp(subject.prefix, prefix=True), PutOp(key, b"3")]
        ),
        "over 1.5 MiB": lambda: store.put(key, b"x" * (1600 * 1024)),
        "a TTL too large": lambda: store.grant_lease(10**10),
    }
    for what, call in refused.items():
        with pytest.raises(StoreRejected) as caught:
            await call()
        assert isinstance(caught.value, DefiniteStoreError), what
    assert (await store.get_prefix(subject.prefix)).revision == before, "nothing was applied"


async def test_a_write_on_an_unknown_lease_is_lease_not_found(subject: Subject) -> None:
    store, key = subject.store, subject.key("k")
    with pytest.raises(LeaseNotFound):
        await store.put(key, b"v", lease=0x1234_5678)
    with pytest.raises(LeaseNotFound):
        await store.txn([], success=[PutOp(key, b"v", lease=0x1234_5678)])
    assert await store.get(key) is None


async def test_a_closed_client_is_unavailable(subject: Subject) -> None:
    store = subject.store
    await store.put(subject.key("k"), b"v")
    await store.close()
    with pytest.raises(StoreUnavailable) as caught:
        await store.get(subject.key("k"))
    assert isinstance(caught.value, IndeterminateStoreError)


# ---- leases --------------------------------------------------------------------------------


async def test_grant_keep_alive_and_time_to_live(subject: Subject) -> None:
    store = subject.store
    small = await store.grant_lease(1)
    assert small.ttl == 2, "the store raises a TTL below its minimum (2 s)"
    lease = await store.grant_lease(30)
    assert lease.ttl == 30
    assert lease.id not in (0, small.id)
    assert 0 < await store.lease_ttl(lease.id) <= 30
    assert await store.keep_alive(lease.id) == 30
    assert await store.lease_ttl(0x1234_5678) == -1
    with pytest.raises(LeaseNotFound):
        await store.keep_alive(0x1234_5678)


async def test_revoking_a_lease_deletes_its_keys_at_once(subject: Subject) -> None:
    store = subject.store
    lease = await store.grant_lease(30)
    await store.put(subject.key("a"), b"1", lease=lease.id)
    await store.put(subject.key("b"), b"2", lease=lease.id)
    await store.put(subject.key("c"), b"3")
    kv = await store.get(subject.key("a"))
    assert kv is not None
    assert kv.lease == lease.id
    before = (await store.get_prefix(subject.prefix)).revision
    await store.revoke_lease(lease.id)
    left = await store.get_prefix(subject.prefix)
    assert [kv.key for kv in left.kvs] == [subject.key("c")]
    assert left.revision == before + 1, "every key of the lease goes in one revision"
    assert await store.lease_ttl(lease.id) == -1
    with pytest.raises(LeaseNotFound):
        await store.keep_alive(lease.id)
    with pytest.raises(LeaseNotFound):
        await store.revoke_lease(lease.id)


async def test_expiry_deletes_the_keys_still_on_the_lease(subject: Subject) -> None:
    store, watcher = subject.store, subject.client()
    lease = await store.grant_lease(2)
    start = await store.put(subject.key("a"), b"1", lease=lease.id)
    await store.put(subject.key("b"), b"2", lease=lease.id)
    await store.put(subject.key("moved"), b"3", lease=lease.id)
    await store.put(subject.key("moved"), b"4")  # written again without the lease: off it
    events = _collect(watcher, subject.prefix, start)
    try:
        await subject.advance(1.2)
        assert await store.keep_alive(lease.id) == 2
        await subject.advance(1.2)
        # 2.4 s after the grant, 1.2 s after the renewal: still alive
        assert await store.get(subject.key("a")) is not None
        await subject.advance(1.5)
        await async_wait_until(lambda: _absent(store, subject.key("a")), timeout=5)
        assert await store.get(subject.key("b")) is None
        assert await store.get(subject.key("moved")) is not None
        assert await store.lease_ttl(lease.id) == -1
        with pytest.raises(LeaseNotFound):
            await store.keep_alive(lease.id)
        await async_wait_until(lambda: _count(events.seen, 6), timeout=5)
    finally:
        await events.stop()
    deletes = [e for e in events.seen if e.kind is EventKind.DELETE]
    assert [e.kv.key for e in deletes] == [subject.key("a"), subject.key("b")]
    assert len({e.kv.mod_revision for e in deletes}) == 1, "one revision for the whole lease"
    assert all(e.kv.value == b"" and e.kv.create_revision == 0 for e in deletes)


# ---- watches -------------------------------------------------------------------------------


async def test_a_watch_delivers_every_change_in_order_and_resumes(subject: Subject) -> None:
    store, watcher = subject.store, subject.client()
    start = await store.put(subject.key("a"), b"1")
    events = _collect(watcher, subject.prefix, start)
    try:
        await store.put(subject.prefix.rstrip("/") + "x", b"not under the prefix")
        await store.put(subject.key("b"), b"2")
        pair = await store.txn(
            [], success=[PutOp(subject.key("c"), b"3"), DeleteOp(subject.key("a"))]
        )
        last = await store.put(subject.key("b"), b"5")
        await async_wait_until(lambda: _count(events.seen, 5), timeout=5)
    finally:
        await events.stop()
    assert [(e.kind, e.kv.key, e.kv.value) for e in events.seen] == [
        (EventKind.PUT, subject.key("a"), b"1"),
        (EventKind.PUT, subject.key("b"), b"2"),
        (EventKind.PUT, subject.key("c"), b"3"),
        (EventKind.DELETE, subject.key("a"), b""),
        (EventKind.PUT, subject.key("b"), b"5"),
    ]
    revisions = [e.kv.mod_revision for e in events.seen]
    assert revisions == sorted(revisions)
    assert (revisions[0], revisions[-1]) == (start, last)
    assert revisions[2] == revisions[3] == pair.revision
    assert events.seen[4].kv.version == 2
    assert all(b.revision >= b.events[-1].kv.mod_revision for b in events.batches)
    # resuming from any revision still in history gives exactly what came after it
    again = _collect(subject.client(), subject.prefix, pair.revision)
    try:
        await async_wait_until(lambda: _count(again.seen, 3), timeout=5)
    finally:
        await again.stop()
    assert again.seen == events.seen[2:]


async def test_a_watch_from_the_future_waits_for_it(subject: Subject) -> None:
    store = subject.store
    now = await store.put(subject.key("a"), b"1")
    events = _collect(subject.client(), subject.prefix, now + 2)
    try:
        await store.put(subject.key("b"), b"2")
        await store.put(subject.key("c"), b"3")
        await async_wait_until(lambda: _count(events.seen, 1), timeout=5)
        await asyncio.sleep(0.2)
    finally:
        await events.stop()
    assert [e.kv.key for e in events.seen] == [subject.key("c")]


async def test_a_watch_before_the_compaction_is_compacted(subject: Subject) -> None:
    store = subject.store
    first = await store.put(subject.key("k"), b"0")
    for i in range(1, 5):
        await store.put(subject.key("k"), str(i).encode())
    latest = await store.put(subject.key("k"), b"last")
    await subject.compact(latest)
    with pytest.raises(Compacted) as caught:
        await asyncio.wait_for(_drain(store.watch_prefix(subject.prefix, first)), 5)
    assert caught.value.compact_revision == latest
    assert isinstance(caught.value, DefiniteStoreError)
    # the compacted revision itself is still there
    async with asyncio.timeout(5):
        async for batch in store.watch_prefix(subject.prefix, latest):
            assert [e.kv.value for e in batch.events] == [b"last"]
            break


# ---- helpers -------------------------------------------------------------------------------


@dataclass
class _Collector:
    task: asyncio.Task[None]
    batches: list[WatchBatch]

    @property
    def seen(self) -> list[Event]:
        return [e for b in self.batches for e in b.events]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _collect(store: Store, prefix: str, start: int) -> _Collector:
    batches: list[WatchBatch] = []

    async def run() -> None:
        async for batch in store.watch_prefix(prefix, start):
            batches.append(batch)

    return _Collector(asyncio.create_task(run()), batches)


async def _count(seen: list[Event], count: int) -> bool:
    assert len(seen) <= count, f"more events than expected: {seen}"
    return len(seen) == count


async def _drain(watch: AsyncIterator[WatchBatch]) -> None:
    async for _ in watch:
        pass


async def _absent(store: Store, key: str) -> bool:
    return await store.get(key) is None
