"""Direct heartbeats between agents, for detecting a dead or silent node faster than a lease.

Every agent sends a small UDP datagram to every other member every heartbeat-interval and
notes when it last heard from each. The DC suspects a member it has not heard from for
suspect-after, and with fencing configured fences it at once instead of waiting for the
member's lease to expire. A wrong suspicion costs a fence, never a double-active resource:
suspicion only ever leads to fencing, and recovery still waits for the fence to succeed.

Sending and receiving run in a thread of their own (docs/control-plane.md): a main event
loop busy with a burst of resource operations must not make its node look dead, nor make it
think its peers are. The main loop sets the peers and the lease, and asks who is silent.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from hastack.membership.priority import favour_this_thread

__all__ = ["GAP_HISTORY", "HOLE", "LOSS_FACTOR", "Heartbeat"]

# Beats remembered per peer (a minute at the default 200 ms interval), and how many times its
# longest recent hole a peer must be silent before it is suspected.
GAP_HISTORY = 300
LOSS_FACTOR = 3.0
# A gap counts as a hole (at least one beat missing) from this many intervals on; a shorter
# one is a beat a little late (scheduling on a busy host), which says nothing about loss.
HOLE = 1.5

log = logging.getLogger("hastack.heartbeat")


class Heartbeat:
    def __init__(
        self,
        node: str,
        address: str | Sequence[str],
        port: int,
        *,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        # One socket per address (one per link, docs/connectivity.md): a beat goes to every
        # address of a peer, from this node's address of the same index, and either counts.
        self.addresses = (address,) if isinstance(address, str) else tuple(address)
        self.address = self.addresses[0]
        self.port = port
        self.interval = interval
        self._clock = clock
        self.last_seen: dict[str, float] = {}
        self._lives: dict[str, int] = {}  # the lease each peer's last beat carried
        # The recent gaps between beats from each peer: a peer whose beats already arrive
        # with holes (a lossy link) must be silent longer before it is suspected.
        self.gaps: dict[str, collections.deque[float]] = {}
        self.lease = 0  # 0: not a member: nothing is sent
        self._peers: Mapping[str, tuple[tuple[str, ...], int]] = {}
        self._sock: socket.socket | None = None
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = clock()

    def set_peers(self, peers: Mapping[str, tuple[tuple[str, ...], int]]) -> None:
        """node -> (its addresses, port); replaced whole, read by the thread."""
        self._peers = dict(peers)

    def start(self) -> None:
        for address in self.addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
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
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval + 1.0)
            self._thread = None
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
                self.send(self._peers)
                next_send = now + self.interval
            with contextlib.suppress(OSError, ValueError):
                ready, _, _ = select.select(socks, [], [], max(0.0, next_send - self._clock()))
                for sock in ready:
                    self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(512)
            except BlockingIOError:
                return
            try:
                message = json.loads(data)
                node = str(message["node"])
                int(message["lease"])
            except (ValueError, KeyError, TypeError):
                continue  # not ours; say nothing, it is a datagram from anywhere
            if node != self.node:
                self.heard(node, int(message["lease"]))

    def send(self, peers: Mapping[str, tuple[tuple[str, ...], int]]) -> None:
        """One heartbeat to every address of every peer: node -> (addresses, port)."""
        if not self._socks or not self.lease:
            return
        data = json.dumps({"node": self.node, "lease": self.lease}).encode()
        for node, (addresses, port) in peers.items():
            if node == self.node or not port:
                continue
            for index, address in enumerate(addresses):
                # Link k's address from ours on link k: the datagram crosses that link.
                sock = self._socks[index] if index < len(self._socks) else self._socks[0]
                with contextlib.suppress(OSError):
                    sock.sendto(data, (address, port))

    def heard(self, node: str, lease: int = 0) -> None:
        """A beat from `node` (sent under `lease`) arrived now. The first beat of a new life
        (another lease) starts its gaps afresh: the silence between two lives was a restart,
        not a lossy link, and counted as a hole it would slow the next crash's detection
        threefold for a minute (measured: 3.2 s instead of 1 s)."""
        now = self._clock()
        previous = self.last_seen.get(node)
        if lease and self._lives.get(node, lease) != lease:
            self.gaps.pop(node, None)
            previous = None
        if lease:
            self._lives[node] = lease
        if previous is not None:
            self.gaps.setdefault(node, collections.deque(maxlen=GAP_HISTORY)).append(now - previous)
        self.last_seen[node] = now

    def silent_for(self, node: str) -> float:
        """Seconds since the last beat from `node` (since listening began if none came)."""
        return self._clock() - self.last_seen.get(node, self.started)

    def threshold(self, node: str, after: float) -> float:
        """How long `node` must be silent to be suspected: `after`, or — when its recent beats
        already came with holes (a gap of HOLE intervals or more) — LOSS_FACTOR × the longest
        recent hole, whichever is longer. A crash on a clean link is seen at `after` (a beat
        a little late is no hole: counted as one, it put a clean link's threshold above
        `after` = 3 intervals); a link that loses 30 % of its datagrams (holes of 4-5
        intervals within a minute) does not get its node fenced: a false suspicion would
        need a hole three times the longest it has shown."""
        gaps = self.gaps.get(node)
        if not gaps or len(gaps) < 3:
            return after
        longest = max(gaps)
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
            max(self.last_seen.get(m, start), start, self.started) + self.threshold(m, after) - now
            for m in members
            if m != self.node
            for start in (since.get(m, self.started) if isinstance(since, Mapping) else since,)
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
        (re)joined gets its grace before anything is held against it."""
        now = self._clock()

        def start(m: str) -> float:
            return since.get(m, self.started) if isinstance(since, Mapping) else since

        return [
            m
            for m in members
            if m != self.node
            and now - max(self.last_seen.get(m, start(m)), start(m), self.started)
            > self.threshold(m, after)
        ]
