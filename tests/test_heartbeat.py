"""The heartbeat failure detector on a simulated clock (pure timing logic, no sockets): a
crash on a clean link is seen at suspect-after; a link losing 30 % of its datagrams never
gets its node suspected (docs/control-plane.md, "never a false fence")."""

from __future__ import annotations

import random

import pytest

from hastack.membership.heartbeat import Heartbeat
from hastack.model.config import Properties

INTERVAL = 0.2
AFTER = 0.6  # 3 × the interval: keepalived's own rule at the same advert interval


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(loss: float, seconds: float, seed: int, crash_at: float | None = None) -> list[float]:
    """Beats every INTERVAL from peer `b`, each lost with probability `loss` (until a crash);
    the moments (checked every 50 ms) at which `b` is found silent."""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, clock=clock)
    rng = random.Random(seed)
    suspected = []
    next_beat = 0.0
    step = 0.05
    while clock.now < seconds:
        clock.now = round(clock.now + step, 6)
        while next_beat <= clock.now:
            alive = crash_at is None or next_beat < crash_at
            if alive and rng.random() >= loss:
                hb.heard("b")
            next_beat = round(next_beat + INTERVAL, 6)
        if hb.silent(["b"], AFTER, since=0.0):
            suspected.append(clock.now)
    return suspected


def test_a_crash_on_a_clean_link_is_suspected_at_suspect_after() -> None:
    suspected = simulate(loss=0.0, seconds=30.0, seed=1, crash_at=20.0)
    assert suspected
    # the last beat before the crash came at 19.8 s: silent > 0.6 s from then
    assert 20.4 <= suspected[0] <= 20.5


def test_thirty_percent_loss_never_gets_a_node_suspected() -> None:
    for seed in range(5):
        assert simulate(loss=0.3, seconds=600.0, seed=seed) == [], seed


def test_without_the_loss_history_thirty_percent_loss_is_suspected() -> None:
    """The negative control: judged by suspect-after alone, the same lossy link is suspected
    again and again."""
    from hastack.membership import heartbeat

    saved = heartbeat.LOSS_FACTOR
    heartbeat.LOSS_FACTOR = 0.0
    try:
        assert len(simulate(loss=0.3, seconds=600.0, seed=0)) > 10
    finally:
        heartbeat.LOSS_FACTOR = saved


def test_a_lossy_node_that_crashes_is_still_suspected() -> None:
    suspected = simulate(loss=0.3, seconds=120.0, seed=3, crash_at=100.0)
    assert suspected
    assert suspected[0] > 100.0
    assert suspected[0] < 100.0 + 10 * AFTER  # later than a clean one, but surely


def _beats(hb: Heartbeat, clock: Clock, times: list[float], lease: int) -> None:
    for t in times:
        clock.now = t
        hb.heard("b", lease)


def test_a_restart_does_not_count_as_a_hole() -> None:
    """The silence between two lives of a peer (another lease) is no lossy link: the next
    crash is seen at suspect-after, not three times that restart's gap later."""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    _beats(hb, clock, [i * INTERVAL for i in range(10)], lease=1)
    _beats(hb, clock, [5.0 + i * INTERVAL for i in range(10)], lease=2)  # rebooted: 3.2 s
    assert hb.threshold("b", AFTER) == AFTER


def test_the_same_silence_in_one_life_is_a_hole() -> None:
    """The negative control: the same gap within one life does make the peer's threshold
    longer."""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    _beats(hb, clock, [i * INTERVAL for i in range(10)], lease=1)
    _beats(hb, clock, [5.0 + i * INTERVAL for i in range(10)], lease=1)
    assert hb.threshold("b", AFTER) > 3 * AFTER


def test_late_beats_are_not_holes() -> None:
    """Beats up to half an interval late (a busy host) leave the threshold at suspect-after;
    one missing beat does not."""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    late = [0.0]
    for i in range(1, 30):
        late.append(late[-1] + INTERVAL * (1.4 if i % 3 == 0 else 1.0))
    _beats(hb, clock, late, lease=1)
    assert hb.threshold("b", AFTER) == AFTER
    _beats(hb, clock, [late[-1] + 2 * INTERVAL], lease=1)  # one beat lost
    assert hb.threshold("b", AFTER) > AFTER


def test_next_silence_is_when_silent_first_says_so() -> None:
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    _beats(hb, clock, [i * INTERVAL for i in range(5)], lease=1)  # last beat at 0.8
    clock.now = 1.0
    due = hb.next_silence(["b"], AFTER, since=0.0)
    assert abs(due - (0.8 + AFTER - 1.0)) < 1e-9
    clock.now += due
    assert hb.silent(["b"], AFTER, since=0.0) == []  # not yet: silence must exceed it
    clock.now += 0.001
    assert hb.silent(["b"], AFTER, since=0.0) == ["b"]


def test_suspect_after_three_intervals_exactly_is_accepted() -> None:
    """3 × 0.2 s is 0.6000000000000001 in floating point: 600ms must still be accepted, and
    anything under three intervals refused."""
    ok = Properties.model_validate({"heartbeat-interval": "200ms", "suspect-after": "600ms"})
    assert ok.suspect_after == 0.6
    with pytest.raises(ValueError, match="at least 3"):
        Properties.model_validate({"heartbeat-interval": "200ms", "suspect-after": "599ms"})
