"""EtcdStore against a real 3-member etcd: what only a real cluster shows (timing of lease
expiry, members dying, pausing, failover). The semantics every store shares are checked
against both EtcdStore and MemoryStore in test_store_contract.py."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from conftest import ClusterFactory
from hastack.errors import (
    IndeterminateStoreError,
    StoreTimeout,
    StoreUnavailable,
)
from hastack.lab.local import LocalCluster
from hastack.store import EventKind, Store
from helpers import async_wait_until


@pytest.fixture
def etcd(local_cluster: ClusterFactory) -> LocalCluster:
    return local_cluster(3, agents=False)


async def test_lease_expires_not_before_its_ttl_after_the_last_renewal(etcd: LocalCluster) -> None:
    """The server expiry bound the lease keeper relies on, measured on real time."""
    async with etcd.store(2.0) as store:
        lease = await store.grant_lease(2)
        await store.put("/lease/k", b"v", lease=lease.id)
        assert await store.keep_alive(lease.id) == 2
        renewed_at = time.monotonic()
        await async_wait_until(lambda: _absent(store, "/lease/k"), timeout=6)
        elapsed = time.monotonic() - renewed_at
        # not before the TTL from the last renewal, and not much after (etcd checks every 0.5 s)
        assert 2.0 <= elapsed < 4.5


async def _absent(store: Store, key: str) -> bool:
    return await store.get(key) is None


async def test_watch_resumes_after_member_restart(etcd: LocalCluster) -> None:
    """Watch through member n1 only; kill and restart n1; no event is lost or repeated."""
    n1 = etcd.endpoints[0]
    async with etcd.store(1.0) as writer, etcd.store(1.0, [n1]) as watcher:
        start = await writer.put("/w/0", b"0")
        seen: list[tuple[str, int]] = []
        reconnects: list[str] = []

        async def consume() -> None:
            async for batch in watcher.watch_prefix("/w/", start, on_reconnect=reconnects.append):
                seen.extend(
                    (e.kv.key, e.kv.mod_revision) for e in batch.events if e.kind is EventKind.PUT
                )

        task = asyncio.create_task(consume())
        try:
            for i in range(1, 4):
                await writer.put(f"/w/{i}", b"x")
            await async_wait_until(lambda: _have(seen, 4), timeout=5)
            etcd.kill("n1", ["etcd"])
            # written while the watched member is down: must arrive after it is back
            for i in range(4, 8):
                await _put_retrying(writer, f"/w/{i}")
            etcd.start("n1", ["etcd"])
            await async_wait_until(lambda: _have(seen, 8), timeout=20)
        finally:
            task.cancel()
        keys = [k for k, _ in seen]
        assert keys == [f"/w/{i}" for i in range(8)]
        revisions = [r for _, r in seen]
        assert revisions == sorted(set(revisions))
        assert reconnects, "the watch should have noticed the member going away"


async def _have(seen: list[tuple[str, int]], count: int) -> bool:
    return len(seen) >= count


async def _put_retrying(store: Store, key: str) -> None:
    for _ in range(20):
        try:
            await store.put(key, b"x")
            return
        except IndeterminateStoreError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"could not write {key}")


async def test_failover_to_next_endpoint(etcd: LocalCluster) -> None:
    async with etcd.store(1.0) as store:
        await store.put("/f/a", b"1")
        victim = store.endpoint
        node = etcd.node_names[etcd.endpoints.index("https://" + victim)]
        etcd.kill(node, ["etcd"])
        with pytest.raises(IndeterminateStoreError):
            await store.put("/f/a", b"2")
        # the next calls go to the other members (if the victim led, after an election)
        await async_wait_until(lambda: _put_ok(store, "/f/a"), timeout=10, interval=0.1)
        assert store.endpoint != victim
        kv = await store.get("/f/a")
        assert kv is not None
        assert kv.value == b"3"


async def test_no_reachable_member_is_indeterminate(etcd: LocalCluster) -> None:
    for node in etcd.node_names:
        etcd.kill(node, ["etcd"])
    async with etcd.store(0.5) as store:
        with pytest.raises((StoreUnavailable, StoreTimeout)) as caught:
            await store.put("/x", b"1")
        assert isinstance(caught.value, IndeterminateStoreError)


async def test_paused_member_times_out_then_fails_over(etcd: LocalCluster) -> None:
    """A SIGSTOPped member keeps its connections open: only a deadline notices it."""
    async with etcd.store(0.5) as store:
        await store.put("/p/a", b"1")
        victim = store.endpoint
        node = etcd.node_names[etcd.endpoints.index("https://" + victim)]
        etcd.pause(node, ["etcd"])
        try:
            started = time.monotonic()
            with pytest.raises(StoreTimeout):
                await store.put("/p/a", b"2")
            assert time.monotonic() - started < 1.0
            # the next call goes elsewhere and succeeds (after the cluster elects a leader
            # if the paused member was it)
            await async_wait_until(lambda: _put_ok(store, "/p/a"), timeout=10, interval=0.1)
            assert store.endpoint != victim
        finally:
            etcd.resume(node, ["etcd"])


async def test_leaving_a_silent_host_resumes_its_watch_elsewhere_at_once(
    etcd: LocalCluster,
) -> None:
    """A paused member keeps its watch streams open and says nothing. Leaving its host (what
    an agent does when that host's heartbeats stop) resumes the watch on another member at
    once, from where it was: nothing missed, nothing repeated."""
    async with etcd.store(1.0) as writer, etcd.store(1.0) as watcher:
        start = await writer.put("/s/0", b"0")
        seen: list[str] = []

        async def consume() -> None:
            async for batch in watcher.watch_prefix("/s/", start):
                seen.extend(e.kv.key for e in batch.events if e.kind is EventKind.PUT)

        task = asyncio.create_task(consume())
        victim = watcher.endpoint
        node = etcd.node_names[etcd.endpoints.index("https://" + victim)]
        try:
            await async_wait_until(lambda: _count(seen, 1), timeout=5)
            assert not watcher.leave_hosts(["192.0.2.1"]), "not the host in use"
            etcd.pause(node, ["etcd"])
            await _put_retrying(writer, "/s/1")
            await asyncio.sleep(1.5)
            assert seen == ["/s/0"], "a paused member's watch delivered something"
            assert watcher.leave_hosts([victim.rpartition(":")[0]])
            await async_wait_until(lambda: _count(seen, 2), timeout=3, interval=0.05)
            assert watcher.endpoint != victim
        finally:
            task.cancel()
            etcd.resume(node, ["etcd"])
        assert seen == ["/s/0", "/s/1"]


async def _count(seen: list[str], count: int) -> bool:
    return len(seen) >= count


async def _put_ok(store: Store, key: str) -> bool:
    try:
        await store.put(key, b"3")
    except IndeterminateStoreError:
        return False
    return True


async def test_a_quiet_watch_reports_how_far_the_store_has_gone(
    etcd: LocalCluster,
) -> None:
    """With progress_every, a watch on a range nothing changes in still says how far the
    store has gone: an empty batch whose revision follows the writes elsewhere — how the
    agent tells a quiet range from a stale watch (docs/control-plane.md)."""
    async with etcd.store(0.5) as watcher, etcd.store(2.0) as writer:
        start = (await writer.get_prefix("/quiet/")).revision + 1
        batches: list[int] = []

        async def follow() -> None:
            async for batch in watcher.watch_prefix("/quiet/", start, progress_every=0.2):
                assert batch.events == ()
                batches.append(batch.revision)

        task = asyncio.create_task(follow())
        try:
            written = await writer.put("/elsewhere/a", b"1")
            await async_wait_until(
                lambda: asyncio.sleep(0, bool(batches) and batches[-1] >= written), 3.0
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_busy_watch_ends_when_its_task_is_cancelled(etcd: LocalCluster) -> None:
    """Cancelling the task that follows a watch ends it, however busy the stream. (On Python
    3.11 `asyncio.wait_for` returned a response that arrived as the task was cancelled and
    dropped the cancellation: the watch went on, and the DC that replaced its lagging watch
    waited on the old one until its self-check ended the agent.)"""
    async with etcd.store(2.0) as watcher, etcd.store(2.0) as writer:
        value = b"x" * 2000

        async def write(n: int) -> None:
            i = 0
            while True:
                await writer.put(f"/busy/{n}.{i % 50}", value)
                i += 1

        async def follow(start: int, seen: asyncio.Event) -> None:
            async for _batch in watcher.watch_prefix("/busy/", start, progress_every=0.5):
                seen.set()

        writers = [asyncio.create_task(write(n)) for n in range(6)]
        not_ended = 0
        try:
            for _ in range(15):
                start = (await writer.get_prefix("/busy/")).revision + 1
                seen = asyncio.Event()

                task = asyncio.create_task(follow(start, seen))
                async with asyncio.timeout(10):
                    await seen.wait()
                await asyncio.sleep(0.2)  # responses keep arriving
                task.cancel()
                done, _ = await asyncio.wait([task], timeout=3.0)
                not_ended += not done
        finally:
            for w in writers:
                w.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
        assert not_ended == 0, f"{not_ended} of 15 watches went on after their task was cancelled"
