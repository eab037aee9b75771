"""The heartbeat sender: a small process of its own per agent, so that a busy agent still beats.

The agent's heartbeat thread needs the interpreter to send. On a machine at load 25–50 the
agent's main thread can be taken off the CPU while it holds the interpreter, and the thread,
ready at nice −10, waits with it: at 100 computes a controller's beats stopped for 0.63 s and
a live DC was deposed after 1.16 s of silence (docs/control-plane.md, section 4, "Where the
interpreter still binds them"). This process shares nothing with the agent but a pipe: it
beats to the peers the agent names, under the lease and membership the agent names, every
interval — **until the moment the agent last gave it** ("alive until T", its alive window
ahead, renewed by the heartbeat thread at a beat once a quarter of the window has passed, and
at once when anything else changes). So:

* an agent that is merely busy keeps beating: its thread renews T once it gets the
  interpreter back, long before T passes (T is its alive window ahead, seconds);
* an agent whose interpreter is stuck for good stops beating at most one alive window later
  (three quarters at least), when its self-check and process watchdog would have ended it
  anyway;
* an agent that dies closes the pipe, and this process exits at once (end of file), without
  another beat;
* an agent the kernel has stopped (SIGSTOP: a debugger, the lab's pause) does not beat: the
  sender looks at the agent's state before each beat;
* it runs in a session of its own at the liveness priority (nice −10, and its session's too,
  as the process watchdog does): the kernel shares the CPU between sessions first, and at
  100 computes a DC's session, busy with an apply, was starved as a whole — its beats, sent
  from its own session, stopped for 1.17 s and the DC was deposed (docs/control-plane.md,
  section 8).

Only beats are sent here. Probes and their answers, and everything heard, stay with the
agent's heartbeat thread (hastack.membership.heartbeat): the receiving side is dated by the
kernel's arrival stamps and is not what a busy interpreter delays. If this process cannot
start or dies, the thread sends the beats itself, as before, and tries this again later.

The protocol is lines of JSON on the pipe (standard input), each carrying any of `until`
(monotonic seconds; CLOCK_MONOTONIC is the same clock in every process of the machine),
`lease`, `member`, `interval`, and `peers` (node -> [[addresses], port]); fields absent keep
their value. A line that is not such an object is ignored and said once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from hastack.membership.heartbeat import encode_message
from hastack.membership.priority import LIVENESS_NICE, favour_this_thread
from hastack.processes import set_autogroup_nice
from hastack.processes import state as process_state

__all__ = ["PENDING_AT_MOST", "BeatState", "BeaterProcess", "main"]

log = logging.getLogger("hastack.beater")

# What the agent may have written and the sender not yet read before it is given up as stuck
# (a line is ~100 bytes plus the peers when they change: this is thousands of beats).
PENDING_AT_MOST = 64 * 1024

# The agent vouches again once a quarter of its window has passed since it last did (or at
# once when anything else changed): a stuck agent's beats stop between three quarters of its
# alive window and the whole of it, and the sender is woken by its own timer, not by a line
# at every beat.
VOUCH_EVERY = 0.25

Peers = Mapping[str, tuple[tuple[str, ...], int]]


class BeatState:
    """What the sender knows: updated from the agent's lines, read at each beat."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.until = -math.inf
        self.lease = 0
        self.member = True
        self.interval = 0.2
        self.peers: dict[str, tuple[tuple[str, ...], int]] = {}
        self._said_bad = False
        self._encoded: tuple[tuple[int, bool], bytes] | None = None

    def apply(self, line: bytes) -> bool:
        """Take one line from the agent; False (and said once) when it is not understood."""
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise TypeError("not an object")
            until = float(message.get("until", self.until))
            lease = int(message.get("lease", self.lease))
            member = bool(message.get("member", self.member))
            interval = float(message.get("interval", self.interval))
            peers = self.peers
            if "peers" in message:
                peers = {
                    str(name): (tuple(str(a) for a in addresses), int(port))
                    for name, (addresses, port) in dict(message["peers"]).items()
                }
            if not interval > 0:
                raise ValueError(f"interval {interval} is not positive")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if not self._said_bad:
                log.warning("ignoring a line the agent sent (%s): %.200r", exc, line)
                self._said_bad = True
            return False
        self.until, self.lease, self.member, self.interval = until, lease, member, interval
        self.peers = peers
        return True

    def message(self) -> bytes:
        """The beat's datagram, encoded once per lease and membership."""
        key = (self.lease, self.member)
        if self._encoded is None or self._encoded[0] != key:
            self._encoded = (key, encode_message(self.node, self.lease, "beat", member=self.member))
        return self._encoded[1]

    def beat_due(self, now: float) -> bool:
        """Whether a beat goes out now: a member (or one that lost its membership and says
        so: it beats until it joins again) that the agent vouched for until later than now."""
        return bool(self.lease) and now < self.until


def _send_beat(state: BeatState, socks: Sequence[socket.socket]) -> None:
    data = state.message()
    for node, (addresses, port) in state.peers.items():
        if node == state.node or not port:
            continue
        for index, address in enumerate(addresses):
            # Link k's address from ours on link k: the datagram crosses that link.
            sock = socks[index] if index < len(socks) else socks[0]
            with contextlib.suppress(OSError):
                sock.sendto(data, (address, port))


def _bind(addresses: Sequence[str]) -> list[socket.socket]:
    socks = []
    try:
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setblocking(False)
            sock.bind((address, 0))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def is_stopped(pid: int) -> bool:
    """Is the process `pid` stopped by a signal or a tracer (state T or t)? False when it
    is gone (the pipe's end of file says so)."""
    return process_state(pid) in ("T", "t")


def serve(node: str, addresses: Sequence[str], source: int, agent: int) -> int:
    """Beat as the lines read from `source` say, while the process `agent` is not stopped,
    until `source` ends; the exit code."""
    state = BeatState(node)
    socks = _bind(addresses)
    os.set_blocking(source, False)
    # Said once, on standard output: until then the agent's thread beats itself (a process
    # started at a load of 40 took seconds to get here, and a node that joined meanwhile
    # would have been silent).
    with contextlib.suppress(OSError):
        os.write(sys.stdout.fileno(), b"ready\n")
    buffered = b""
    next_beat = -math.inf
    try:
        while True:
            now = time.monotonic()
            if state.beat_due(now) and now >= next_beat:
                if not is_stopped(agent):
                    _send_beat(state, socks)
                # Never a burst to catch up: the next beat one interval after this one.
                next_beat = now + state.interval
            wait: float | None = None
            if state.beat_due(now):
                wait = max(0.0, min(next_beat, state.until) - time.monotonic())
            ready, _, _ = select.select([source], [], [], wait)
            if not ready:
                continue
            try:
                chunk = os.read(source, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return 0  # the agent is gone: not one beat more
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                if line.strip():
                    state.apply(line)
            if len(buffered) > PENDING_AT_MOST:
                log.warning("dropping %d bytes with no end of line from the agent", len(buffered))
                buffered = b""
    finally:
        for sock in socks:
            sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hastack.membership.beater",
        description="Send an agent's heartbeats while it vouches for itself (standard input).",
    )
    parser.add_argument("node")
    parser.add_argument("addresses", nargs="+", help="this node's address on each link")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s beater %(message)s")
    # The agent stops in its own time, and this process with it (end of file), not first
    # with a traceback should an interrupt reach it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    favour_this_thread(LIVENESS_NICE)
    set_autogroup_nice(os.getpid(), LIVENESS_NICE)
    try:
        return serve(args.node, args.addresses, sys.stdin.fileno(), os.getppid())
    except OSError as exc:
        log.error("cannot send heartbeats from %s: %s", ", ".join(args.addresses), exc)
        return 1


class BeaterProcess:
    """The agent's side: start the sender, feed it at each beat, close it."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        assert proc.stdin is not None
        self._fd = proc.stdin.fileno()
        os.set_blocking(self._fd, False)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self._ready = False
        self._pending = b""
        self._sent: tuple[int, bool, float, dict[str, tuple[tuple[str, ...], int]]] | None = None
        self.gone: str | None = None  # why it no longer sends, once it does not
        self._until = -math.inf  # the moment last vouched for

    @classmethod
    def start(cls, node: str, addresses: Sequence[str]) -> BeaterProcess:
        """Start the sender for `node`, beating from `addresses` (one per link), in a session
        of its own (see the module's docstring); OSError if it cannot."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "hastack.membership.beater", node, *addresses],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        return cls(proc)

    @property
    def ready(self) -> bool:
        """Has the sender said it is beating? Until then its agent beats itself too."""
        if not self._ready and self._proc.stdout is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                self._ready = os.read(self._proc.stdout.fileno(), 64).startswith(b"ready")
        return self._ready

    @property
    def pid(self) -> int:
        return self._proc.pid

    def feed(
        self, *, until: float, lease: int, member: bool, interval: float, peers: Peers
    ) -> bool:
        """Vouch for the agent until `until` (monotonic) with its current lease, membership,
        interval and peers (the peers only when they changed). False once the sender is gone
        or stuck: the caller then beats itself."""
        if self.gone is not None:
            return False
        code = self._proc.poll()
        if code is not None:
            self.gone = f"exited with code {code}"
            return False
        current = (lease, member, interval, dict(peers))
        if current == self._sent and until - self._until < VOUCH_EVERY * (until - time.monotonic()):
            return True  # vouched for long enough ahead already: one line fewer to read
        self._until = until
        message: dict[str, object] = {"until": round(until, 6)}
        if self._sent is None or current != self._sent:
            message.update(lease=lease, member=member, interval=interval)
            if self._sent is None or current[3] != self._sent[3]:
                message["peers"] = {n: [list(a), p] for n, (a, p) in current[3].items()}
            self._sent = current
        data = self._pending + json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:  # EPIPE: it died between poll() and now
            self.gone = f"its pipe failed ({exc.strerror})"
            return False
        self._pending = data[written:]
        if len(self._pending) > PENDING_AT_MOST:
            self.gone = f"it read nothing of the last {len(self._pending)} bytes"
            self.close()
            return False
        return True

    def close(self) -> None:
        """End the sender: end of file first (it exits at once), a kill if it does not."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
