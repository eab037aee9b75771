"""What only the in-memory store does: time by an injected clock, compaction under a lagging
watch, and fault injection. Its etcd semantics are checked in test_store_contract.py."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.errors import (
    Compacted,
    DefiniteStoreError,
    IndeterminateStoreError,
    LeaseNotFound,
    StoreRejected,
    StoreTimeout,
    StoreUnavailable,
)
from hastack.store import Compare, DeleteOp, EventKind, PutOp, WatchBatch
from hastack.store.memory import (
    LOST_ANSWER,
    REJECTED,
    TIMEOUT,
    UNAVAILABLE,
    Fault,
    ManualClock,
    MemoryBackend,
    MemoryStore,
)
from hastack.store.types import Op

SRC = Path(__file__).parent.parent / "src" / "hastack" / "store"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def backend(clock: ManualClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


async def _next(watch: asyncio.Queue[WatchBatch], within: float = 1.0) -> WatchBatch:
    return await asyncio.wait_for(watch.get(), within)


@contextlib.asynccontextmanager
async def _watching(
    store: MemoryStore, prefix: str, start: int, reconnects: list[str] | None = None
) -> AsyncIterator[tuple[asyncio.Queue[WatchBatch], asyncio.Task[None]]]:
    """A watch running in a task, its batches in a queue."""
    batches: asyncio.Queue[WatchBatch] = asyncio.Queue()
    report = reconnects.append if reconnects is not None else None

    async def run() -> None:
        async for batch in store.watch_prefix(prefix, start, on_reconnect=report):
            batches.put_nowait(batch)

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    try:
        yield batches, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# ---- time ----------------------------------------------------------------------------------


async def test_expiry_follows_the_injected_clock_not_real_time(
    clock: ManualClock, backend: MemoryBackend
) -> None:
    store = MemoryStore(backend)
    lease = await store.grant_lease(10)
    await store.put("/k", b"v", lease=lease.id)
    clock.advance(9.5)
    assert await store.lease_ttl(lease.id) == 0  # whole seconds left, truncated
    assert await store.get("/k") is not None
    clock.advance(0.5)
    assert await store.get("/k") is None, "any call judges expiry by the clock"
    assert await store.lease_ttl(lease.id) == -1


async def test_expire_wakes_watchers_without_any_other_call(
    clock: ManualClock, backend: MemoryBackend
) -> None:
    store = MemoryStore(backend)
    lease = await store.grant_lease(5)
    start = await store.put("/m/node", b"up", lease=lease.id)
    async with _watching(store, "/m/", start + 1) as (batches, _):
        clock.advance(5)
        assert batches.empty()
        assert backend.expire() == (lease.id,)
        batch = await _next(batches)
    assert [(e.kind, e.kv.key) for e in batch.events] == [(EventKind.DELETE, "/m/node")]
    assert batch.revision == backend.revision == start + 1


async def test_with_the_real_clock_watchers_notice_expiry_by_themselves() -> None:
    backend = MemoryBackend(min_lease_ttl=1)
    store = MemoryStore(backend)
    lease = await store.grant_lease(1)
    start = await store.put("/m/node", b"up", lease=lease.id)
    async with _watching(store, "/m/", start + 1) as (batches, _):
        batch = await _next(batches, within=3.0)
    assert batch.events[0].kind is EventKind.DELETE


async def test_leases_end_in_the_order_they_were_due(
    clock: ManualClock, backend: MemoryBackend
) -> None:
    store = MemoryStore(backend)
    late = await store.grant_lease(5)
    early = await store.grant_lease(3)
    await store.put("/late", b"", lease=late.id)
    await store.put("/early", b"", lease=early.id)
    before = backend.revision
    clock.advance(6)
    assert backend.expire() == (early.id, late.id)
    assert backend.revision == before + 2, "each lease ends in its own revision"
    assert backend.expire() == ()


async def test_a_lease_without_keys_ends_without_a_revision(
    clock: ManualClock, backend: MemoryBackend
) -> None:
    store = MemoryStore(backend)
    lease = await store.grant_lease(2)
    before = backend.revision
    clock.advance(2)
    assert backend.expire() == (lease.id,)
    assert backend.revision == before


def test_the_manual_clock_never_goes_back(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)


# ---- compaction ----------------------------------------------------------------------------


async def test_a_watch_that_lags_behind_a_compaction_is_compacted(backend: MemoryBackend) -> None:
    store = MemoryStore(backend)
    start = await store.put("/c/a", b"1")
    watch = store.watch_prefix("/c/", start)
    first = await anext(watch)
    assert [e.kv.value for e in first.events] == [b"1"]
    await store.put("/c/a", b"2")
    latest = await store.put("/c/a", b"3")
    backend.compact(latest)
    with pytest.raises(Compacted) as caught:
        await anext(watch)
    assert caught.value.compact_revision == latest


async def test_compaction_refuses_the_future_and_ignores_the_past(backend: MemoryBackend) -> None:
    store = MemoryStore(backend)
    now = await store.put("/k", b"v")
    with pytest.raises(ValueError, match="future"):
        backend.compact(now + 1)
    backend.compact(now)
    backend.compact(now - 1)
    assert backend.compacted == now


# ---- faults --------------------------------------------------------------------------------


async def test_a_refusal_is_definite_and_changes_nothing(backend: MemoryBackend) -> None:
    store = MemoryStore(backend)
    before = backend.revision
    store.fail(REJECTED)
    with pytest.raises(StoreRejected) as caught:
        await store.put("/k", b"v")
    assert isinstance(caught.value, DefiniteStoreError)
    assert backend.revision == before
    assert await store.put("/k", b"v") == before + 1, "one call only"


async def test_unavailable_fails_at_once_and_changes_nothing(backend: MemoryBackend) -> None:
    store = MemoryStore(backend, timeout=10.0)
    store.fail(UNAVAILABLE, calls=2)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            async with asyncio.timeout(1):
                await store.txn([], success=[PutOp("/k", b"v")])
    assert await store.get("/k") is None


async def test_a_timeout_comes_after_the_store_timeout(backend: MemoryBackend) -> None:
    store = MemoryStore(backend, timeout=0.2)
    store.fail(TIMEOUT)
    started = time.monotonic()
    with pytest.raises(StoreTimeout) as caught:
        await store.put("/k", b"v")
    assert time.monotonic() - started >= 0.2
    assert isinstance(caught.value, IndeterminateStoreError)
    assert await store.get("/k") is None


async def test_a_lost_answer_hides_a_write_that_landed(backend: MemoryBackend) -> None:
    dc, other = MemoryStore(backend, timeout=0.05), MemoryStore(backend)
    dc.fail(LOST_ANSWER, methods={"txn"})
    with pytest.raises(StoreTimeout):
        await dc.txn([Compare.absent("/dc")], success=[PutOp("/dc", b"me")])
    kv = await other.get("/dc")
    assert kv is not None
    assert kv.value == b"me", "the write was applied though its answer was lost"
    # the caller learns it by reading, as it must after any indeterminate failure
    assert not (await dc.txn([Compare.absent("/dc")], success=[PutOp("/dc", b"me")])).succeeded


async def test_a_lost_answer_can_also_be_a_broken_connection(backend: MemoryBackend) -> None:
    store = MemoryStore(backend)
    lease = await store.grant_lease(10)
    store.fail(Fault(StoreUnavailable, applied=True), methods={"revoke_lease"})
    with pytest.raises(StoreUnavailable):
        await store.revoke_lease(lease.id)
    assert await store.lease_ttl(lease.id) == -1


async def test_faults_can_aim_at_some_methods_and_last_until_healed(
    backend: MemoryBackend,
) -> None:
    store = MemoryStore(backend)
    lease = await store.grant_lease(10)
    store.fail(UNAVAILABLE, calls=None, methods={"keep_alive"})
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            await store.keep_alive(lease.id)
    await store.put("/k", b"other calls work")
    store.heal()
    assert await store.keep_alive(lease.id) == 10


async def test_rules_are_used_in_order(backend: MemoryBackend) -> None:
    store = MemoryStore(backend, timeout=0.05)
    store.fail(UNAVAILABLE)
    store.fail(REJECTED)
    with pytest.raises(StoreUnavailable):
        await store.get("/k")
    with pytest.raises(StoreRejected):
        await store.get("/k")
    assert await store.get("/k") is None


async def test_faults_are_per_client(backend: MemoryBackend) -> None:
    sick, healthy = MemoryStore(backend), MemoryStore(backend)
    sick.fail(UNAVAILABLE, calls=None)
    await healthy.put("/k", b"v")
    with pytest.raises(StoreUnavailable):
        await sick.get("/k")


def test_fault_mistakes_are_refused(backend: MemoryBackend) -> None:
    store = MemoryStore(backend)
    with pytest.raises(ValueError, match="indeterminate"):
        Fault(StoreRejected, applied=True)
    with pytest.raises(ValueError, match="no such store method"):
        store.fail(UNAVAILABLE, methods={"renew"})
    with pytest.raises(ValueError, match="at least 1"):
        store.fail(UNAVAILABLE, calls=0)


async def test_a_partitioned_client_is_silent_until_the_store_timeout(
    backend: MemoryBackend,
) -> None:
    minority, majority = MemoryStore(backend, timeout=0.2), MemoryStore(backend)
    minority.partition()
    started = time.monotonic()
    with pytest.raises(StoreTimeout):
        await minority.put("/k", b"lost")
    assert time.monotonic() - started >= 0.2
    assert await majority.get("/k") is None, "nothing was applied"
    assert minority.partitioned


async def test_a_partitioned_watch_stays_open_and_silent_then_catches_up(
    backend: MemoryBackend,
) -> None:
    minority, majority = MemoryStore(backend, timeout=0.1), MemoryStore(backend)
    start = await majority.put("/w/0", b"0")
    async with _watching(minority, "/w/", start) as (batches, task):
        assert [e.kv.key for e in (await _next(batches)).events] == ["/w/0"]
        minority.partition()
        await majority.put("/w/1", b"1")
        await majority.put("/w/2", b"2")
        await asyncio.sleep(0.5)  # five store timeouts
        assert batches.empty()
        assert not task.done(), "no error: the watch stays open"
        minority.heal()
        caught_up = await _next(batches)
    assert [e.kv.key for e in caught_up.events] == ["/w/1", "/w/2"]


async def test_a_call_waiting_in_a_partition_goes_through_when_healed(
    backend: MemoryBackend,
) -> None:
    store = MemoryStore(backend, timeout=5.0)
    store.partition()
    call = asyncio.create_task(store.put("/k", b"v"))
    await asyncio.sleep(0.05)
    assert not call.done()
    store.heal()
    assert await asyncio.wait_for(call, 1) == backend.revision


async def test_a_partitioned_node_loses_its_lease_on_the_majority_side(
    clock: ManualClock, backend: MemoryBackend
) -> None:
    node, dc = MemoryStore(backend, timeout=0.05), MemoryStore(backend)
    lease = await node.grant_lease(3)
    await node.put("/members/n1", b"", lease=lease.id)
    node.partition()
    clock.advance(2)
    with pytest.raises(StoreTimeout):
        await node.keep_alive(lease.id)
    clock.advance(1)
    assert await dc.get("/members/n1") is None
    node.heal()
    with pytest.raises(LeaseNotFound):
        await node.keep_alive(lease.id)


async def test_an_interrupted_watch_resumes_without_loss_or_repeat(
    backend: MemoryBackend,
) -> None:
    store = MemoryStore(backend)
    reconnects: list[str] = []
    start = await store.put("/w/0", b"0")
    async with _watching(store, "/w/", start, reconnects) as (batches, _):
        await _next(batches)
        store.interrupt_watches()
        await store.put("/w/1", b"1")
        after = await _next(batches)
    assert [e.kv.key for e in after.events] == ["/w/1"]
    assert len(reconnects) == 1
    assert f"resuming at {start + 1}" in reconnects[0]


async def test_closing_ends_calls_and_watches(backend: MemoryBackend) -> None:
    store = MemoryStore(backend)
    start = await store.put("/w/0", b"0")
    async with _watching(store, "/w/", start + 1) as (_, task):
        await store.close()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(task, 1)
    with pytest.raises(StoreUnavailable):
        await store.get("/w/0")


# ---- invariants ----------------------------------------------------------------------------

_keys = st.sampled_from(["/p/a", "/p/b", "/p/c", "/q"])
_ops = st.one_of(
    st.builds(PutOp, _keys, st.binary(max_size=3)),
    st.builds(DeleteOp, st.sampled_from(["/p/a", "/p/", "/q"]), st.booleans()),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_ops, min_size=1, max_size=3), max_size=12))
def test_replaying_the_watch_gives_the_state(requests: list[list[Op]]) -> None:
    """Whatever is written, a watch from the beginning replays to what a read returns, and
    the revision grows by one exactly for each request that changed something."""

    async def scenario() -> None:
        backend = MemoryBackend(clock=ManualClock())
        store = MemoryStore(backend)
        for ops in requests:
            before = backend.revision
            try:
                result = await store.txn([], success=ops)
            except StoreRejected:
                assert backend.revision == before
                continue
            changed = result.revision != before
            assert result.revision in (before, before + 1)
            assert changed or all(isinstance(op, DeleteOp) for op in ops)
        state: dict[str, bytes] = {}
        revisions: list[int] = []
        if backend.revision > 1:
            watch = store.watch_prefix("/", 1)
            while not revisions or revisions[-1] < backend.revision:
                batch = await anext(watch)
                for event in batch.events:
                    revisions.append(event.kv.mod_revision)
                    if event.kind is EventKind.PUT:
                        state[event.kv.key] = event.kv.value
                    else:
                        state.pop(event.kv.key, None)
            await watch.aclose()
        assert revisions == sorted(revisions)
        now = await store.get_prefix("/")
        assert state == {kv.key: kv.value for kv in now.kvs}

    asyncio.run(scenario())


# ---- no I/O ---------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["memory.py", "protocol.py", "types.py"])
def test_the_fake_and_the_interface_do_no_io(module: str) -> None:
    allowed = {
        "__future__", "asyncio", "bisect", "collections.abc", "dataclasses", "enum",
        "itertools", "time", "typing", "hastack.errors", "hastack.store.types",
        "hastack.store.protocol",
    }  # fmt: skip
    imported = set()
    for node in ast.walk(ast.parse((SRC / module).read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= allowed, imported - allowed


def test_a_controller_talks_to_its_own_etcd_member_first() -> None:
    """Whatever the configuration's order, an agent's store clients start at the member on
    its own host (a survivor of a crash then has no watch on the dead host's member to move),
    and a node with no member of its own starts anywhere."""
    from hastack.agent import Agent
    from hastack.model.agent_config import AgentConfig
    from hastack.store.etcd import is_own_member, local_first

    elsewhere = ["203.0.113.1:2379", "203.0.113.2:2379"]  # TEST-NET-3: not this host's
    assert [is_own_member(e) for e in ["127.0.0.1:2379", "localhost:2379", "[::1]:2379"]] == [
        True, True, True,
    ]  # fmt: skip
    assert not any(is_own_member(e) for e in [*elsewhere, "etcd1.example:2379"])
    assert local_first([*elsewhere, "127.0.0.1:2379"]) == ["127.0.0.1:2379", *elsewhere]
    assert local_first(elsewhere) == elsewhere
    config = AgentConfig.model_validate(
        {
            "cluster": "c",
            "node": "n1",
            "etcd": {"endpoints": [*elsewhere, "127.0.0.1:2379"], "insecure": True},
        }
    )
    for _ in range(10):  # a random start would pick another of three within ten tries
        agent = Agent(config)
        assert agent._store.endpoint == "127.0.0.1:2379"  # type: ignore[attr-defined]
        assert agent._lease_client is not None
        assert agent._lease_client.endpoint == "127.0.0.1:2379"
