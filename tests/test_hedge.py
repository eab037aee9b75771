"""Failover-path store calls re-sent while unanswered (hastack.membership.hedge): a request
lost in a member that forwards it to a dead etcd leader no longer costs a store timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from hastack.errors import StoreError, StoreTimeout
from hastack.membership.hedge import hedged


def test_the_copy_sent_after_the_election_answers() -> None:
    """The first two copies are lost (sent before the members elected a new leader); the
    third answers at once: the answer comes about two intervals in, not a timeout later."""
    sent: list[float] = []

    async def call() -> str:
        sent.append(time.monotonic())
        if len(sent) <= 2:
            await asyncio.sleep(1.0)  # forwarded to the dead leader: no answer for 1 s
            raise StoreTimeout("context deadline exceeded")
        return "done"

    async def main() -> tuple[str, float]:
        started = time.monotonic()
        answer = await hedged(call, within=1.0, every=0.05)
        return answer, time.monotonic() - started

    answer, took = asyncio.run(main())
    assert answer == "done"
    assert len(sent) == 3
    assert took < 0.5


def test_without_copies_the_same_loss_costs_the_timeout() -> None:
    """The negative control: one copy only (the interval past the deadline)."""
    sent: list[float] = []

    async def call() -> str:
        sent.append(time.monotonic())
        await asyncio.sleep(0.3)
        raise StoreTimeout("context deadline exceeded")

    with pytest.raises(StoreTimeout):
        asyncio.run(hedged(call, within=0.2, every=10.0))
    assert len(sent) == 1


def test_copies_that_fail_at_once_are_not_sent_faster_than_the_interval() -> None:
    sent: list[float] = []

    async def call() -> str:
        sent.append(time.monotonic())
        raise StoreError("no leader")

    with pytest.raises(StoreError):
        asyncio.run(hedged(call, within=0.3, every=0.1))
    assert 2 <= len(sent) <= 4


def test_the_slow_copies_are_cancelled_when_one_answers() -> None:
    cancelled: list[int] = []
    count = 0

    async def call() -> int:
        nonlocal count
        count += 1
        mine = count
        if mine == 1:
            try:
                await asyncio.sleep(5.0)
            except asyncio.CancelledError:
                cancelled.append(mine)
                raise
        return mine

    assert asyncio.run(hedged(call, within=1.0, every=0.05)) == 2
    assert cancelled == [1]


def test_a_campaign_sent_twice_finds_its_own_key_and_wins() -> None:
    """A copy of a campaign that arrives after an earlier copy created the key finds its
    compare false: it must still say won (at the key's create revision), not lost; another
    agent's campaign loses."""
    from hastack.membership.election import campaign
    from hastack.model.members import DcRecord
    from hastack.store import Keys
    from hastack.store.memory import MemoryStore

    async def main() -> tuple[DcRecord | None, DcRecord | None, DcRecord | None]:
        store, keys = MemoryStore(timeout=0.2), Keys("h")
        mine = (await store.grant_lease(5)).id
        theirs = (await store.grant_lease(5)).id
        first = await campaign(store, keys, DcRecord("n1", epoch=0, lease=mine))
        again = await campaign(store, keys, DcRecord("n1", epoch=0, lease=mine))
        other = await campaign(store, keys, DcRecord("n2", epoch=0, lease=theirs))
        return first, again, other

    first, again, other = asyncio.run(main())
    assert first is not None
    assert again is not None
    assert again.epoch == first.epoch
    assert other is None


def test_a_deposition_sent_twice_is_known_as_ours_by_its_copy() -> None:
    """A copy of a deposition that arrives after an earlier copy deleted the silent DC's key
    finds its compare false: it must still say deposed by us (the survivor then records the
    deposition), and another survivor's copy must say not by it."""
    from hastack.membership.election import campaign, depose
    from hastack.model.members import DcRecord
    from hastack.store import Keys
    from hastack.store.memory import MemoryStore

    async def main() -> tuple[bool, bool, bool, bool]:
        store, keys = MemoryStore(timeout=0.2), Keys("h")
        lease = (await store.grant_lease(5)).id
        dc = await campaign(store, keys, DcRecord("n1", epoch=0, lease=lease))
        assert dc is not None
        first = await depose(store, keys, dc.epoch, "n2")
        again = await depose(store, keys, dc.epoch, "n2")
        other = await depose(store, keys, dc.epoch, "n3")
        stale = await depose(store, keys, dc.epoch - 1, "n2")  # an older DC's epoch
        return first, again, other, stale

    assert asyncio.run(main()) == (True, True, False, False)
