"""The heartbeat failure detector on a simulated clock (pure timing logic, no sockets): a
crash on a clean link is seen at suspect-after; a link losing 30 % of its datagrams never
gets its node suspected (docs/control-plane.md, "never a false fence")."""

from __future__ import annotations

import random

from hastack.membership.heartbeat import Heartbeat

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
