"""The heartbeat failure detector on a simulated clock (pure timing logic, no sockets): a
crash on a clean link is seen at suspect-after; a link losing 30 % of its datagrams never
gets its node suspected (docs/control-plane.md, "never a false fence")."""

from __future__ import annotations

import itertools
import json
import random
import socket
import time

import pytest

from hastack.membership import heartbeat
from hastack.membership.heartbeat import (
    GAP_HISTORY,
    PROBES,
    Heartbeat,
    encode_message,
    probe_window,
)
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


def onset(loss: float, seed: int, *, answer: bool = True, crash_at: float | None = None) -> int:
    """A clean link for 5 s that then loses `loss` of its datagrams (each way) for 30 s:
    beats every INTERVAL, and every probe the detector sends (`to_probe`, looked at every
    10 ms) answered unless the probe or its answer is lost — or never (`answer` false).
    How many times the peer is found silent (the start of each silent stretch)."""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    hb.suspect_after = AFTER
    rng = random.Random(seed)
    found, was_silent, next_beat = 0, False, 0.0
    while clock.now < 35.0:
        clock.now = round(clock.now + 0.01, 6)
        lossy = loss if clock.now >= 5.0 else 0.0
        alive = crash_at is None or clock.now < crash_at
        while next_beat <= clock.now:
            if alive and rng.random() >= lossy:
                hb.heard("b", 1)
            next_beat = round(next_beat + INTERVAL, 6)
        for node in hb.to_probe(["b"]):
            hb.probed(node)
            if answer and alive and rng.random() >= lossy and rng.random() >= lossy:
                hb.heard(node, 1, beat=False)
        silent = bool(hb.silent(["b"], AFTER, since=0.0))
        found += silent and not was_silent
        was_silent = silent
    return found


def test_a_link_turning_lossy_never_gets_its_node_suspected() -> None:
    """The onset: before the history shows a hole, three beats lost in a row (one chance in
    37 at 30 %: several times a minute) were silence enough. The probes find the peer alive."""
    found = [onset(0.3, seed) for seed in range(100)]
    assert sum(found) == 0, found


def test_unanswered_probes_leave_the_onset_suspected() -> None:
    """The negative control: the same links, probes never answered — suspicions."""
    assert sum(onset(0.3, seed, answer=False) for seed in range(100)) > 5


def test_a_crash_with_probes_is_found_at_suspect_after() -> None:
    """Probing costs detection nothing: a clean link's crash is found at its threshold."""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    hb.suspect_after = AFTER
    _beats(hb, clock, [i * INTERVAL for i in range(20)], lease=1)  # the last at 3.8 s
    probes = []
    while not hb.silent(["b"], AFTER, since=0.0):
        clock.now = round(clock.now + 0.005, 6)
        for node in hb.to_probe(["b"]):
            hb.probed(node)
            probes.append(clock.now)
    assert abs(clock.now - (3.8 + AFTER)) <= 0.006
    assert probes
    assert probes[0] >= 3.8 + AFTER - INTERVAL  # none while a beat was merely due
    assert len(probes) <= PROBES + 1


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


def test_the_longest_gap_kept_at_hand_is_the_longest_remembered() -> None:
    """The threshold reads a kept maximum; it must equal the maximum of the gaps remembered,
    old holes falling out of the history included."""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    rng = random.Random(7)
    for i in range(3000):
        clock.now = round(clock.now + rng.choice([0.2, 0.2, 0.2, 0.4, 0.6, 1.0]), 6)
        hb.heard("b", 1)
        if i < 4:
            continue
        longest = max(hb.gaps["b"])
        expected = AFTER if longest < 1.5 * INTERVAL else max(AFTER, 3.0 * longest)
        assert hb.threshold("b", AFTER) == expected, i
    for _ in range(GAP_HISTORY):  # a clean minute: every hole falls out of the history
        clock.now = round(clock.now + INTERVAL, 6)
        hb.heard("b", 1)
    assert hb.threshold("b", AFTER) == AFTER


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


def test_a_compute_is_judged_on_its_longer_silence() -> None:
    """A peer with a floor (a compute: remote-suspect-after) is not found silent at the
    controllers' suspect-after, only at its own; the others are, and `next_silence` agrees.
    (In the lab, two computes starved of CPU for 1.1 s were fenced at 1 s: docs/compute.md.)"""
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    hb.heard("c1")
    hb.heard("n2")
    hb.floors = {"c1": 3.0}
    clock.now = 1.5
    assert hb.silent(["c1", "n2"], AFTER, since=0.0) == ["n2"]
    assert abs(hb.next_silence(["c1"], AFTER, since=0.0) - 1.5) < 1e-9
    clock.now = 3.01
    assert hb.silent(["c1", "n2"], AFTER, since=0.0) == ["c1", "n2"]


def test_remote_suspect_after_is_never_shorter_than_suspect_after() -> None:
    ok = Properties.model_validate({"suspect-after": "1s"})
    assert ok.remote_suspect_after == 3.0
    with pytest.raises(ValueError, match="remote-suspect-after must be at least suspect-after"):
        Properties.model_validate({"suspect-after": "2s", "remote-suspect-after": "1s"})


# ---- over real sockets (loopback) ------------------------------------------------------------


def _pair() -> tuple[Heartbeat, Heartbeat, dict[str, tuple[tuple[str, ...], int]]]:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.5", 0))
    port = probe.getsockname()[1]
    probe.close()
    a = Heartbeat("a", "127.0.0.5", port, interval=0.1)
    b = Heartbeat("b", "127.0.0.6", port, interval=0.1)
    peers = {"a": (("127.0.0.5",), port), "b": (("127.0.0.6",), port)}
    return a, b, peers


def _start(a: Heartbeat, b: Heartbeat, peers: dict[str, tuple[tuple[str, ...], int]]) -> None:
    """Both members with leases, beating to each other."""
    a.lease, b.lease = 3, 9
    a.set_peers({"b": peers["b"]})
    b.set_peers({"a": peers["a"]})
    a.start()
    b.start()


def _watch(a: Heartbeat, seconds: float) -> bool:
    """Whether `a` found `b` silent (suspect-after 0.3 s) at any moment within `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if a.silent(["b"], 0.3, since=0.0):
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("answers", [True, False])
def test_a_peer_that_stopped_beating_but_answers_probes_is_not_silent(answers: bool) -> None:
    """`b` beats, then sends no more beats (its beats lost, as far as `a` can tell) while its
    heartbeat thread still runs: `a` probes it before its threshold and hears the answers.
    The negative control: a `b` that does not answer (no lease: it would not beat either)
    is found silent."""
    a, b, peers = _pair()
    a.suspect_after = 0.3
    _start(a, b, peers)
    try:
        deadline = time.monotonic() + 2.0
        while "b" not in a.last_seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "b" in a.last_seen
        b.set_peers({})  # no more beats from b
        if not answers:
            b.lease = 0
        silent = _watch(a, 1.5)
    finally:
        a.close()
        b.close()
    assert silent is not answers
    assert a.probes_sent > 0
    assert (a.probes_answered > 0) is answers


def test_a_peer_that_lost_its_membership_keeps_beating_and_says_so() -> None:
    a, b, peers = _pair()
    _start(a, b, peers)
    try:
        b.member = False
        deadline = time.monotonic() + 2.0
        while a.gave_up("b") != 9 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert a.gave_up("b") == 9
        assert not _watch(a, 0.5)  # alive all the same
        b.member = True
        deadline = time.monotonic() + 2.0
        while a.gave_up("b") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert a.gave_up("b") == 0
    finally:
        a.close()
        b.close()


def test_a_datagram_is_encoded_once_per_lease_and_membership() -> None:
    """Beats go out five times a second: encoded once, again when the lease or the
    membership changes (never a stale lease or a stale `member` in a datagram)."""
    hb = Heartbeat("c1", "127.0.0.1", 0)
    hb.lease = 7
    first = hb._message("beat")
    assert hb._message("beat") is first
    assert json.loads(first) == {"node": "c1", "lease": 7, "kind": "beat"}
    hb.member = False
    assert json.loads(hb._message("beat")) == {
        "node": "c1", "lease": 7, "kind": "beat", "member": False,
    }  # fmt: skip
    assert json.loads(hb._message("probe"))["kind"] == "probe"
    hb.lease, hb.member = 9, True
    assert hb._message("beat") == encode_message("c1", 9, "beat")
    assert json.loads(hb._message("answer")) == {"node": "c1", "lease": 9, "kind": "answer"}


def _watching(count: int) -> tuple[Clock, Heartbeat, list[str]]:
    clock = Clock()
    hb = Heartbeat("a", "127.0.0.1", 0, interval=INTERVAL, clock=clock)
    hb.suspect_after = AFTER
    peers = [f"c{i}" for i in range(count)]
    hb.set_peers({}, watched=dict.fromkeys(peers, (("127.0.0.9",), 9)))
    return clock, hb, peers


def test_datagrams_alone_do_not_make_the_prober_go_over_every_member() -> None:
    """A controller hears a hundred computes five times a second each; after each datagram
    its thread looked at every watched member (to_probe, next_probe). Now only when a probe
    is due, with each beat sent, or when the watched members change."""
    clock, hb, peers = _watching(100)
    looked = []
    to_probe = hb.to_probe
    hb.to_probe = lambda members: looked.append(clock.now) or to_probe(members)  # type: ignore[method-assign]
    hb.probe_step(clock.now)
    for step in range(1, 1001):  # 500 datagrams a second, for 2 s, no beat sent
        clock.now = round(step * 0.002, 6)
        hb.heard(peers[step % len(peers)], lease=1)
        hb.probe_step(clock.now)
    assert len(looked) == 1, looked  # the first look; nobody near their threshold since
    hb.set_peers({}, watched={"c1": (("127.0.0.9",), 9)})  # the watched members changed
    hb.probe_step(clock.now)
    assert looked == [0.0, clock.now]


def test_a_silent_peer_is_probed_when_due_as_when_every_datagram_looked() -> None:
    """The negative control's twin: one of a hundred stops beating while the others go on;
    its probes start at the start of its window and go out every window / PROBES, as the
    thread that looked after every datagram sent them."""
    clock, hb, peers = _watching(100)
    probes: list[float] = []
    probed = hb.probed
    hb.probed = lambda node: (probes.append(clock.now) if node == "c0" else None, probed(node))[1]  # type: ignore[method-assign,func-returns-value]
    next_send = 0.0
    for step in range(0, 4001):  # 1 ms steps: a datagram from someone every 2 ms
        clock.now = round(step * 0.001, 6)
        if step % 2 == 0:
            sender = peers[(step // 2) % len(peers)]
            if sender != "c0" or clock.now < 1.0:  # c0 stops beating at 1 s
                hb.heard(sender, lease=1)
        if clock.now >= next_send:  # as _run: a beat sent, the members looked at again
            next_send = clock.now + INTERVAL
            hb._probe_due = clock.now
        due = hb.probe_step(clock.now)
        assert due is None or due >= clock.now
    last = 0.8  # c0's last beat: every 200 ms (one datagram in a hundred), the last before 1 s
    threshold = hb.threshold("c0", AFTER)
    window = probe_window(threshold, INTERVAL)
    assert probes, "never probed"
    assert abs(probes[0] - (last + threshold - window)) <= 0.002
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert all(g >= window / PROBES - 0.0011 for g in gaps)
    assert len([p for p in probes if p <= last + threshold + window]) >= PROBES - 1


@pytest.mark.parametrize("batch", [True, False])
def test_a_flood_of_datagrams_is_read_in_batches(
    batch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """400 datagrams in 0.4 s from 100 senders: the thread reads them a batch at a time
    (about one read every 20 ms), and hears every sender. The negative control, without
    the wait: a read for nearly every datagram."""
    if not batch:
        monkeypatch.setattr(heartbeat, "receive_batch", lambda interval: 0.0)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.5", 0))
    port = probe.getsockname()[1]
    probe.close()
    a = Heartbeat("a", "127.0.0.5", port, interval=0.2)
    a.lease = 3
    reads = []
    drain = a._drain
    a._drain = lambda sock: (reads.append(time.monotonic()), drain(sock))[1]  # type: ignore[method-assign,func-returns-value]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.start()
    try:
        for i in range(400):
            message = encode_message(f"c{i % 100}", 1, "beat")
            sender.sendto(message, ("127.0.0.5", port))
            time.sleep(0.001)
        time.sleep(0.1)
        assert {f"c{i}" for i in range(100)} <= set(a.last_seen)
        if batch:
            assert len(reads) <= 40, len(reads)
        else:
            assert len(reads) > 100, len(reads)
    finally:
        a.close()
        sender.close()


def test_arrived_ago_is_the_stamps_age_within_one_interval() -> None:
    now = 1_000_000_000_000
    assert heartbeat.arrived_ago(None, now, 0.2) == 0.0
    assert heartbeat.arrived_ago(now - 30_000_000, now, 0.2) == pytest.approx(0.03)
    assert heartbeat.arrived_ago(now + 5_000_000, now, 0.2) == 0.0  # a clock stepped back
    assert heartbeat.arrived_ago(now - 9_000_000_000, now, 0.2) == 0.2  # ... or forward


@pytest.mark.parametrize("stamped", [True, False])
def test_a_beat_read_late_is_dated_when_it_arrived(
    stamped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread reads what arrived, then waits (receive_batch; 0.5 s here) before reading
    again: a beat that came meanwhile is dated by the kernel's stamp, not by the read. The
    negative control, without the stamp: dated as read, up to the wait later."""
    monkeypatch.setattr(heartbeat, "receive_batch", lambda interval: 0.5)
    if not stamped:
        monkeypatch.setattr(heartbeat, "_SO_TIMESTAMPNS", None)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.5", 0))
    port = probe.getsockname()[1]
    probe.close()
    a = Heartbeat("a", "127.0.0.5", port, interval=1.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.start()
    try:
        sender.sendto(encode_message("x", 1, "beat"), ("127.0.0.5", port))
        time.sleep(0.1)  # read, and the thread now waits before reading again
        assert "x" in a.last_seen
        sent = time.monotonic()
        sender.sendto(encode_message("y", 1, "beat"), ("127.0.0.5", port))
        time.sleep(0.7)
        late = a.last_seen["y"] - sent
        if stamped:
            assert -0.01 <= late < 0.05, late
        else:
            assert late > 0.2, late
    finally:
        a.close()
        sender.close()
