"""The lease keeper's clock: when a renewal counts as late (over half its margin used) and
when the membership is lost, on an injected clock (docs/architecture.md, membership)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator

import pytest

from hastack.errors import StoreTimeout
from hastack.membership.lease import LeaseKeeper
from hastack.model.agent_config import Timings
from hastack.store.memory import ManualClock, MemoryBackend, MemoryStore

# renew 0.5 s + 2 × 0.75 s = 2 s < 3 s TTL: lost 2 s after the last good send, late after 1.25 s.
TIMINGS = Timings(lease_ttl=3, renew_interval=0.5, store_timeout=0.75)


@pytest.fixture(autouse=True)
def _own_priority_back() -> Iterator[None]:
    """run_blocking favours the thread it runs in (here pytest's own): give it back its nice
    value, or every later test and what it starts would run favoured."""
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    yield
    os.setpriority(os.PRIO_PROCESS, tid, before)


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

    def renew(lease: int, timeout: float) -> float:
        sent = clock.now
        calls.append(sent)
        if len(calls) == 1:  # on time, but slow to answer
            clock.now += 1.0
        elif len(calls) == 2:  # sent 1.0 s after the previous good send: a timeout
            clock.now += 0.75
            raise StoreTimeout("no answer within the store timeout")
        elif len(calls) == 4:
            stop.set()
        return sent

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

    def renew(lease: int, timeout: float) -> float:
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


def test_the_deadline_runs_from_the_keep_alive_that_was_answered() -> None:
    """A renewal whose first keep-alive hung and whose re-sent one was answered: the
    deadline runs from the re-sent one's send time, not from the call's start, and never
    from a moment after the answer."""
    clock = ManualClock(100.0)
    keeper = keeper_at(clock)
    late: list[float] = []
    keeper.on_late = late.append
    stop = threading.Event()
    answers = [100.9, 250.0]  # the second claims a send after its own answer
    deadlines: list[float] = []

    def renew(lease: int, timeout: float) -> float:
        deadlines.append(keeper.deadline)
        clock.now += 0.4
        sent = answers.pop(0)
        if not answers:
            stop.set()
        return sent

    clock.now = 100.5
    keeper.run_blocking(renew, stop, pytest.fail)
    # 1st: called at 100.5, its re-sent keep-alive (sent at 100.9) answered at 100.9:
    # the 2nd call finds the deadline 100.9 + 2 s. (The manual clock stands still while
    # the keeper waits for the next renewal, so the 2nd call starts at 100.9.)
    # 2nd: answered at 101.3: counted from 101.3 at most, not from 250.
    assert deadlines == pytest.approx([100.0 + 2.0, 100.9 + 2.0])
    assert keeper.deadline == pytest.approx(101.3 + 2.0)
    assert late == []
