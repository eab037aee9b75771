"""The lease keeper's clock: when a renewal counts as late (over half its margin used) and
when the membership is lost, on an injected clock (docs/architecture.md, membership)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hastack.errors import StoreTimeout
from hastack.membership.lease import LeaseKeeper
from hastack.model.agent_config import Timings
from hastack.store.memory import ManualClock, MemoryBackend, MemoryStore

# renew 0.5 s + 2 × 0.75 s = 2 s < 3 s TTL: lost 2 s after the last good send, late after 1.25 s.
TIMINGS = Timings(lease_ttl=3, renew_interval=0.5, store_timeout=0.75)


def keeper_at(clock: ManualClock) -> LeaseKeeper:
    keeper = LeaseKeeper(MemoryStore(MemoryBackend(clock=clock)), TIMINGS, clock=clock)
    asyncio.run(keeper.acquire())
    return keeper


def test_a_renewal_that_used_over_half_its_margin_is_reported_late() -> None:
    clock = ManualClock(100.0)
    keeper = keeper_at(clock)
    assert keeper.late_after == pytest.approx(1.25)
    late: list[float] = []
    keeper.on_late = late.append
    stop = threading.Event()
    calls: list[float] = []

    def renew(lease: int, timeout: float) -> int:
        calls.append(clock.now)
        if len(calls) == 1:  # on time, but slow to answer
            clock.now += 1.0
        elif len(calls) == 2:  # sent 1.0 s after the previous good send: a timeout
            clock.now += 0.75
            raise StoreTimeout("no answer within the store timeout")
        elif len(calls) == 4:
            stop.set()
        return 3

    clock.now = 100.6  # the first renewal is due: no waiting
    keeper.run_blocking(renew, stop, pytest.fail)
    # Sends at 100.6 (good), 101.6 (timed out), 102.35 (good: 1.75 s after 100.6), 102.35.
    assert calls == pytest.approx([100.6, 101.6, 102.35, 102.35])
    assert late == pytest.approx([1.75])
    assert keeper.is_held()


def test_past_the_deadline_the_membership_is_lost_not_late() -> None:
    clock = ManualClock(100.0)
    keeper = keeper_at(clock)
    late: list[float] = []
    lost: list[str] = []
    keeper.on_late = late.append

    timeouts: list[float] = []

    def renew(lease: int, timeout: float) -> int:
        timeouts.append(timeout)
        clock.now += timeout  # nothing answers in time
        raise StoreTimeout("no answer within the store timeout")

    clock.now = 100.5
    keeper.run_blocking(renew, threading.Event(), lost.append)
    # Two attempts of a store timeout each (the second on the next member), not one that
    # waits out the whole budget on a member that will never answer.
    assert timeouts == pytest.approx([0.75, 0.75])
    assert late == []
    assert lost == ["no lease renewal succeeded for 2s (renew-interval + 2 × store-timeout)"]
    assert not keeper.is_held()
