"""Direct heartbeats between agents, for detecting a dead or silent node faster than a lease.

Every agent sends a small UDP datagram to every other member every heartbeat-interval and
notes when it last heard from each. The DC suspects a member it has not heard from for
suspect-after, and with fencing configured fences it at once instead of waiting for the
member's lease to expire. A wrong suspicion costs a fence, never a double-active resource:
suspicion only ever leads to fencing, and recovery still waits for the fence to succeed.

Sending and receiving run in a thread of their own (docs/control-plane.md): a main event
loop busy with a burst of resource operations must not make its node look dead, nor make it
think its peers are. The main loop sets the peers and the lease, and asks who is silent.
The agent's beats themselves go out from a process of their own (`own_process`,
hastack.membership.beater), which this thread vouches for at each beat: a thread needs the
interpreter, and a busy agent's main thread can hold it while it waits for a CPU.

**Probes before suspicion.** Three beats are little evidence: a link that suddenly loses
30 % of its datagrams loses three in a row every few seconds, before any hole is in the
peer's history (the history is what lengthens a lossy peer's threshold). So a peer silent
for its threshold less a probe window is *probed*: PROBES datagrams spread over the window,
each answered at once by the peer's heartbeat thread. Any answer is a sign of life that
resets the silence; a crashed peer answers none and is found silent at its threshold
exactly as before — detection costs nothing. Thirty percent loss on one end fails a probe's
round trip half the time; twenty failing in a row is one chance in a million.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from hastack.membership.priority import favour_this_thread

if TYPE_CHECKING:
    from hastack.membership.beater import BeaterProcess

__all__ = [
    "BEATER_AGAIN",
    "GAP_HISTORY",
    "HOLE",
    "LOSS_FACTOR",
    "PROBES",
    "RECEIVE_BUFFER",
    "Heartbeat",
    "arrived_ago",
    "encode_message",
    "probe_window",
    "receive_batch",
]

# Beats remembered per peer (a minute at the default 200 ms interval), and how many times its
# longest recent hole a peer must be silent before it is suspected.
GAP_HISTORY = 300
LOSS_FACTOR = 3.0
# A gap counts as a hole (at least one beat missing) from this many intervals on; a shorter
# one is a beat a little late (scheduling on a busy host), which says nothing about loss.
HOLE = 1.5
# Probes sent to a peer over its probe window (the last part of its silence before it would
# be suspected): at most one every window / PROBES.
PROBES = 20
# A heartbeat sender process that could not start or died is tried again this much later.
BEATER_AGAIN = 10.0


def receive_batch(interval: float) -> float:
    """After reading what arrived, the thread waits this long (or less, when a beat or a
    probe is due sooner) before reading again. A controller hears a hundred computes five
    times a second each: woken for each datagram, its heartbeat thread — at a raised
    priority — took the interpreter from the agent's event loop up to 500 times a second,
    and on a saturated machine each time cost the loop a wait for the CPU to get it back
    (at 100 computes the DC's loop stopped for 7 s, its watchdog killed it and the others
    fenced its host; docs/control-plane.md). A datagram is then seen up to this much later:
    a silence is judged at most this much late, a beat never early. Where the kernel stamps
    each datagram as it arrives (SO_TIMESTAMPNS, `arrived_ago`), the beat is dated by that
    stamp, not by when it was read."""
    return min(0.02, interval / 10)


# SO_TIMESTAMPNS's control message: a struct timespec (two native longs) of CLOCK_REALTIME.
# Python's socket module names the option only from 3.14; 35 is Linux's generic value (the
# architectures this runs on; `SO_TIMESTAMPNS_OLD`, the same layout as the new one there).
_TIMESPEC = struct.Struct("@ll")
_SO_TIMESTAMPNS: int | None = getattr(
    socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None
)
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


# What a heartbeat socket may hold unread: a controller hears a hundred computes five times
# a second (~1 KiB of kernel memory each), and its reader may be held up for seconds on a
# saturated machine (`catch_up`). With the default (208 KiB) a 4 s stall filled it in half a
# second and the datagrams after were dropped — those of the other controllers among them.
RECEIVE_BUFFER = 8 * 1024 * 1024
# SO_RCVBUFFORCE (Linux): above net.core.rmem_max, for a process with CAP_NET_ADMIN.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform == "linux" else None)


def _enlarge_receive_buffer(sock: socket.socket) -> None:
    """RECEIVE_BUFFER, past the system's maximum where allowed, else as much as it allows."""
    if _SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
            return
        except OSError:
            pass
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def arrived_ago(stamp_ns: int | None, now_ns: int, interval: float) -> float:
    """How long before `now_ns` (CLOCK_REALTIME, ns) a datagram the kernel stamped
    `stamp_ns` arrived: 0 without a stamp, and never more than one heartbeat interval
    earlier than it was read (the stamp is wall-clock time: a clock stepped meanwhile must
    not date a beat long before it came and so lengthen a silence — at worst it is dated as
    if read at once, as without the stamp)."""
    if stamp_ns is None:
        return 0.0
    return min(max(0.0, (now_ns - stamp_ns) / 1e9), interval)


def probe_window(threshold: float, interval: float) -> float:
    """How long before a silence reaches `threshold` its peer is probed: a third of the
    threshold, at least one interval, never the whole threshold (a peer whose next beat is
    merely due is not probed)."""
    return min(max(threshold / 3, interval), threshold - interval)


log = logging.getLogger("hastack.heartbeat")


def encode_message(node: str, lease: int, kind: str, *, member: bool = True) -> bytes:
    """One datagram: who sends it, under which lease, what it is (beat, probe, answer), and
    `member: false` once the sender declared its membership lost."""
    message: dict[str, object] = {"node": node, "lease": lease, "kind": kind}
    if not member:
        message["member"] = False
    return json.dumps(message).encode()


class Heartbeat:
    def __init__(
        self,
        node: str,
        address: str | Sequence[str],
        port: int,
        *,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        own_process: bool = False,
    ) -> None:
        self.node = node
        # Beats sent by a process of their own (hastack.membership.beater), vouched for by
        # this thread until `alive_window` ahead at each beat; the thread sends them itself
        # only while that process cannot.
        self.own_process = own_process
        self.alive_window = 5.0
        self._beater: BeaterProcess | None = None
        self._beater_again = -math.inf  # when to try starting it again
        # One socket per address (one per link, docs/connectivity.md): a beat goes to every
        # address of a peer, from this node's address of the same index, and either counts.
        self.addresses = (address,) if isinstance(address, str) else tuple(address)
        self.address = self.addresses[0]
        self.port = port
        self.interval = interval
        self._clock = clock
        self.last_seen: dict[str, float] = {}  # the last datagram (a beat or a probe's answer)
        self._last_beat: dict[str, float] = {}  # the last beat: the gaps are between beats
        self._lives: dict[str, int] = {}  # the lease each peer's last beat carried
        # The recent gaps between beats from each peer: a peer whose beats already arrive
        # with holes (a lossy link) must be silent longer before it is suspected.
        self.gaps: dict[str, collections.deque[float]] = {}
        self.lease = 0  # 0: never a member yet: nothing is sent
        # False once the agent declared its membership lost: it goes on beating (under the
        # lease it lost) until it has joined again, saying so. It is alive and self-fencing,
        # so not suspected (recovery waits for its lease's expiry, the rule without fencing);
        # a DC that says it lost its membership is deposed at once.
        self.member = True
        self._gave_up: dict[str, int] = {}  # node -> the lease its last datagram gave up
        # Set by the agent: the silence that gets a peer suspected (probes start before it),
        # and a longer one for some peers (computes: remote-suspect-after).
        self.suspect_after = 1.0
        self.floors: Mapping[str, float] = {}
        self._probed_at: dict[str, float] = {}
        self._encoded: dict[str, tuple[tuple[str, int, bool], bytes]] = {}
        self.probes_sent = 0
        self.probes_answered = 0
        self._peers: Mapping[str, tuple[tuple[str, ...], int]] = {}
        self._watched: Mapping[str, tuple[tuple[str, ...], int]] = {}
        # False on a node that judges no silence (a compute): it probes nobody.
        self.probing = True
        self._longest: dict[str, float] = {}  # the longest of each peer's recent gaps
        # When the watched members must be looked at again for probes (probe_step).
        self._probe_due = -math.inf
        self._sock: socket.socket | None = None
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._reading = threading.Lock()  # one reader of the sockets at a time (`catch_up`)
        self._thread: threading.Thread | None = None
        self.started = clock()

    def set_peers(
        self,
        peers: Mapping[str, tuple[tuple[str, ...], int]],
        watched: Mapping[str, tuple[tuple[str, ...], int]] | None = None,
    ) -> None:
        """node -> (its addresses, port): the peers beaten to, and those whose silence is
        judged here (probed near their threshold; by default the same); replaced whole,
        read by the thread."""
        self._peers = dict(peers)
        watched = dict(watched) if watched is not None else self._peers
        if watched != self._watched:
            self._probe_due = -math.inf  # looked at again at once
        self._watched = watched

    def start(self) -> None:
        for address in self.addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            if _SO_TIMESTAMPNS is not None:
                with contextlib.suppress(OSError):  # then dated as read (receive_batch)
                    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            _enlarge_receive_buffer(sock)
            try:
                sock.bind((address, self.port))
            except OSError:
                sock.close()
                for s in self._socks:
                    s.close()
                self._socks = []
                raise
            self._socks.append(sock)
        self._sock = self._socks[0]
        self.started = self._clock()
        if self.own_process:
            self._start_beater()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval + 1.0)
            self._thread = None
        if self._beater is not None:
            self._beater.close()
            self._beater = None
        for sock in self._socks:
            sock.close()
        self._socks = []
        self._sock = None

    def _run(self) -> None:
        favour_this_thread()
        socks = list(self._socks)
        assert socks
        next_send = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_send:
                self._beat()
                next_send = now + self.interval
                self._probe_due = now  # looked at again with every beat sent
            wake = next_send
            probing = self.probe_step(now)
            if probing is not None:
                wake = min(wake, probing)
            with contextlib.suppress(OSError, ValueError):
                ready, _, _ = select.select(socks, [], [], max(0.0, wake - self._clock()))
                with self._reading:
                    for sock in ready:
                        self._drain(sock)
                if ready:
                    # What arrives meanwhile waits in the socket, read together next time.
                    self._stop.wait(
                        max(0.0, min(receive_batch(self.interval), wake - self._clock()))
                    )

    @property
    def beater_pid(self) -> int | None:
        """The process sending this node's beats, None while this thread sends them."""
        return self._beater.pid if self._beater is not None else None

    def _start_beater(self) -> None:
        from hastack.membership.beater import BeaterProcess  # noqa: PLC0415 (it imports us)

        try:
            self._beater = BeaterProcess.start(self.node, self.addresses)
        except OSError as exc:
            log.warning("heartbeats sent by the agent itself (no sender process: %s)", exc)
            self._beater_again = time.monotonic() + BEATER_AGAIN

    def _beat(self) -> None:
        """One beat: the sender process vouched for until an alive window ahead, or, while
        there is none, the beat sent from here."""
        beater = self._beater
        if beater is not None:
            if beater.feed(
                until=time.monotonic() + self.alive_window,
                lease=self.lease,
                member=self.member,
                interval=self.interval,
                peers=self._peers,
            ):
                if not beater.ready:
                    self.send(self._peers)  # not beating yet: this thread does
                return
            log.warning("heartbeat sender (pid %d) %s; the agent sends them", beater.pid,
                        beater.gone)  # fmt: skip
            beater.close()
            self._beater = None
            self._beater_again = time.monotonic() + BEATER_AGAIN
        elif self.own_process and time.monotonic() >= self._beater_again:
            self._start_beater()
            if self._beater is not None:
                log.info("heartbeat sender started again (pid %d)", self._beater.pid)
                self._beat()
                return
        self.send(self._peers)

    def probe_step(self, now: float) -> float | None:
        """Probe the watched members that are due, and return when the next probe is due
        (None: nobody is near their threshold). The members are looked at only when a
        probe is due, with each beat sent, and when the watched members change — not after
        every datagram: a controller hears a hundred computes five times a second each, and
        going over all of them after each datagram (to_probe and next_probe: 500 times a
        second × 103 members) kept its heartbeat thread busy, at its raised priority, while
        the agent's event loop waited for the interpreter (py-spy on the DC at 100
        computes: the heartbeat thread in two of every five samples; docs/control-plane.md).
        Nothing is probed later than before: a datagram only ends or shortens a silence
        (its sender's probes come later, never sooner), and a threshold that shrinks does so
        on a beat, whose probe window starts at least an interval after it — by when the
        next beat sent has looked again."""
        if now < self._probe_due:
            return self._probe_due if self._probe_due != math.inf else None
        watched = self._watched if self.probing else {}
        for node in self.to_probe(list(watched)):
            self._probe(node, watched[node])
        probing = self.next_probe(list(watched))
        self._probe_due = probing if probing is not None else math.inf
        return probing

    def catch_up(self) -> None:
        """Read what has arrived and this thread has not read yet, before a silence is
        judged. A thread that judges silence (the agent's loop) may have held the
        interpreter through a long call while beats arrived: judged on what the heartbeat
        thread had read before then, every peer looked silent for as long as the call
        lasted. At 100 computes a DC stalled 4 s planning 253 actions, then suspected both
        other controllers and fenced them — and the store's quorum with them
        (docs/control-plane.md, section 8, run 25). What is read now is dated by the
        kernel's arrival stamps, as the thread dates it."""
        with self._reading:
            for sock in self._socks:
                with contextlib.suppress(OSError, ValueError):
                    self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data, ancillary, _flags, sender = sock.recvmsg(512, _CMSG_SPACE)
            except BlockingIOError:
                return
            stamp: int | None = None
            for level, cmsg_type, raw in ancillary:
                if level == socket.SOL_SOCKET and cmsg_type == _SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack(raw[: _TIMESPEC.size])
                    stamp = seconds * 1_000_000_000 + nanoseconds
            ago = arrived_ago(stamp, time.time_ns(), self.interval)
            try:
                message = json.loads(data)
                node = str(message["node"])
                lease = int(message["lease"])
                kind = str(message.get("kind", "beat"))
                member = bool(message.get("member", True))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not ours; say nothing, it is a datagram from anywhere
            if node == self.node:
                continue
            if kind == "probe":
                self._answer(sock, sender)
            # A probe is a sign of life too (its sender is beating): only beats make gaps.
            self.heard(node, lease, beat=kind == "beat", member=member, ago=ago)
            if kind == "answer":
                self.probes_answered += 1

    def _message(self, kind: str) -> bytes:
        """The datagram of `kind` for the current lease and membership (encoded once per
        change of either: a beat goes out five times a second, to every full node)."""
        key = (kind, self.lease, self.member)
        cached = self._encoded.get(kind)
        if cached is not None and cached[0] == key:
            return cached[1]
        data = encode_message(self.node, self.lease, kind, member=self.member)
        self._encoded[kind] = (key, data)
        return data

    def gave_up(self, node: str) -> int:
        """The lease `node` said (in its last datagram) it had lost, 0 if it did not."""
        return self._gave_up.get(node, 0)

    def _answer(self, sock: socket.socket, sender: tuple[str, int]) -> None:
        """Answer a probe at once, from the socket it came to (the same link), if this node
        would beat at all."""
        if not self.lease:
            return
        with contextlib.suppress(OSError):
            sock.sendto(self._message("answer"), sender)

    def _probe(self, node: str, peer: tuple[tuple[str, ...], int]) -> None:
        """One probe to every address of `node`."""
        addresses, port = peer
        self.probed(node)  # even when nothing can be sent: the next is not due at once
        if not self._socks or not self.lease or not port:
            return
        self.probes_sent += 1
        data = self._message("probe")
        for index, address in enumerate(addresses):
            sock = self._socks[index] if index < len(self._socks) else self._socks[0]
            with contextlib.suppress(OSError):
                sock.sendto(data, (address, port))

    def probed(self, node: str) -> None:
        """A probe went to `node` now (the next is due window / PROBES later)."""
        self._probed_at[node] = self._clock()

    def to_probe(self, members: Sequence[str]) -> list[str]:
        """The members to probe now: silent for more than their threshold less its probe
        window (and not yet for the whole threshold plus a window: a peer found dead is
        not probed for ever), and not probed within the last window / PROBES."""
        now = self._clock()
        out = []
        for m in members:
            if m == self.node or m not in self.last_seen:
                continue  # never heard: nothing to confirm (its grace is the agent's)
            threshold = self.threshold(m, self.suspect_after)
            window = probe_window(threshold, self.interval)
            quiet = now - self.last_seen[m]
            if not threshold - window < quiet <= threshold + window:
                continue
            if now - self._probed_at.get(m, -1e9) >= window / PROBES:
                out.append(m)
        return out

    def next_probe(self, members: Sequence[str]) -> float | None:
        """When the thread must wake next to probe (monotonic), None when nobody is near
        their threshold."""
        now = self._clock()
        soonest: float | None = None
        for m in members:
            if m == self.node or m not in self.last_seen:
                continue
            threshold = self.threshold(m, self.suspect_after)
            window = probe_window(threshold, self.interval)
            start = self.last_seen[m] + threshold - window
            if now > self.last_seen[m] + threshold + window:
                continue
            when = max(start, self._probed_at.get(m, -1e9) + window / PROBES)
            soonest = when if soonest is None else min(soonest, when)
        return soonest

    def send(self, peers: Mapping[str, tuple[tuple[str, ...], int]]) -> None:
        """One heartbeat to every address of every peer: node -> (addresses, port)."""
        if not self._socks or not self.lease:
            return
        data = self._message("beat")
        for node, (addresses, port) in peers.items():
            if node == self.node or not port:
                continue
            for index, address in enumerate(addresses):
                # Link k's address from ours on link k: the datagram crosses that link.
                sock = self._socks[index] if index < len(self._socks) else self._socks[0]
                with contextlib.suppress(OSError):
                    sock.sendto(data, (address, port))

    def heard(
        self,
        node: str,
        lease: int = 0,
        *,
        beat: bool = True,
        member: bool = True,
        ago: float = 0.0,
    ) -> None:
        """A datagram from `node` (sent under `lease`) arrived `ago` seconds ago (the
        kernel's stamp; 0: now): a beat, or (`beat`
        false) a probe or a probe's answer, which ends a silence but makes no gap (the gaps
        are the beats' own: the loss they show is what lengthens the threshold). The first
        datagram of a new life (another lease) starts the gaps afresh: the silence between
        two lives was a restart, not a lossy link, and counted as a hole it would slow the
        next crash's detection threefold for a minute (measured: 3.2 s instead of 1 s).
        `member` false: the sender said it lost its membership (the lease it names)."""
        now = self._clock() - ago
        if member:
            self._gave_up.pop(node, None)
        else:
            self._gave_up[node] = lease
        previous = self._last_beat.get(node)
        if lease and self._lives.get(node, lease) != lease:
            self.gaps.pop(node, None)
            self._longest.pop(node, None)
            self._last_beat.pop(node, None)
            previous = None
        if lease:
            self._lives[node] = lease
        # Dated by the kernel, a datagram read from a second link's socket after the first's
        # may have arrived before what was just heard: a silence never moves back in time.
        if beat:
            if previous is not None and now >= previous:
                self._add_gap(node, now - previous)
            self._last_beat[node] = max(now, previous) if previous is not None else now
        self.last_seen[node] = max(now, self.last_seen.get(node, now))

    def _add_gap(self, node: str, gap: float) -> None:
        """Remember a gap, and keep the longest of them at hand (`threshold` is asked for
        every peer many times a second: with a hundred computes, a max over 300 gaps each
        time cost a tenth of a core)."""
        gaps = self.gaps.setdefault(node, collections.deque(maxlen=GAP_HISTORY))
        evicted = gaps[0] if len(gaps) == gaps.maxlen else None
        gaps.append(gap)
        longest = self._longest.get(node, 0.0)
        if gap >= longest:
            self._longest[node] = gap
        elif evicted is not None and evicted >= longest:
            self._longest[node] = max(gaps)

    def silent_for(self, node: str) -> float:
        """Seconds since the last beat from `node` (since listening began if none came)."""
        self.catch_up()
        return self._clock() - self.last_seen.get(node, self.started)

    def threshold(self, node: str, after: float) -> float:
        """How long `node` must be silent to be suspected: `after` (at least its floor: a
        compute's remote-suspect-after), or — when its recent beats
        already came with holes (a gap of HOLE intervals or more) — LOSS_FACTOR × the longest
        recent hole, whichever is longer. A crash on a clean link is seen at `after` (a beat
        a little late is no hole: counted as one, it put a clean link's threshold above
        `after` = 3 intervals); a link that loses 30 % of its datagrams (holes of 4-5
        intervals within a minute) does not get its node fenced: a false suspicion would
        need a hole three times the longest it has shown."""
        after = max(after, self.floors.get(node, 0.0))
        gaps = self.gaps.get(node)
        if not gaps or len(gaps) < 3:
            return after
        longest = self._longest[node]
        if longest < HOLE * self.interval:
            return after
        return max(after, LOSS_FACTOR * longest)

    def next_silence(
        self, members: list[str], after: float, *, since: Mapping[str, float] | float
    ) -> float:
        """Seconds until the first of `members` not silent yet would be (as `silent` judges),
        if no beat comes from it meanwhile; a long time when there is none."""
        now = self._clock()
        waits = [
            self._quiet_from(m, since) + self.threshold(m, after) - now
            for m in members
            if m != self.node
        ]
        ahead = [w for w in waits if w >= 0]
        return min(ahead, default=3600.0)

    def silent(
        self, members: list[str], after: float, *, since: Mapping[str, float] | float
    ) -> list[str]:
        """Members not heard from for their threshold (`after`, longer for a lossy peer: see
        `threshold`). Silence counts at the earliest from
        `since` (one moment, or one per member): from when this agent started listening, or
        from when it first saw that member's current life, so a member that has just
        (re)joined gets its grace before anything is held against it. What has arrived is
        read first (`catch_up`)."""
        self.catch_up()
        now = self._clock()
        return [
            m
            for m in members
            if m != self.node and now - self._quiet_from(m, since) > self.threshold(m, after)
        ]

    def silence(self, node: str, *, since: Mapping[str, float] | float) -> float:
        """How long `node` has been silent as `silent` counts it (from its last beat, from
        `since`, or from when this agent began listening: the latest), in seconds."""
        return self._clock() - self._quiet_from(node, since)

    def _quiet_from(self, node: str, since: Mapping[str, float] | float) -> float:
        start = since.get(node, self.started) if isinstance(since, Mapping) else since
        return max(self.last_seen.get(node, start), start, self.started)
