"""The heartbeat sender process (hastack.membership.beater): an agent whose interpreter is held
keeps beating; a dead agent's sender stops at once, a stuck one's one alive window later."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import hastack
from hastack.agent import Agent
from hastack.membership import heartbeat as heartbeat_module
from hastack.membership.beater import BeaterProcess, BeatState, is_stopped
from hastack.membership.heartbeat import Heartbeat
from hastack.model.agent_config import AgentConfig, EtcdSpec
from hastack.model.members import NodeKind
from hastack.processes import ProcessRecord, is_alive, start_ticks, wait_gone
from hastack.store.memory import MemoryBackend, MemoryStore
from helpers import MEMORY_TIMINGS

T = TypeVar("T")
SO_TIMESTAMPNS = 35  # Linux's generic value (socket.SO_TIMESTAMPNS only from Python 3.14)
TIMESPEC = struct.Struct("@ll")


# ---- what the sender makes of the agent's lines (no I/O) ------------------------------------


def test_a_line_updates_only_the_fields_it_carries() -> None:
    state = BeatState("n1")
    peers = {"n2": [["10.0.0.2", "10.1.0.2"], 5405]}
    assert state.apply(
        json.dumps({"until": 12.5, "lease": 7, "interval": 0.1, "peers": peers}).encode()
    )
    assert (state.until, state.lease, state.member, state.interval) == (12.5, 7, True, 0.1)
    assert state.peers == {"n2": (("10.0.0.2", "10.1.0.2"), 5405)}
    assert state.apply(b'{"until": 13.0, "member": false}')
    assert (state.until, state.lease, state.member, state.interval) == (13.0, 7, False, 0.1)
    assert state.peers == {"n2": (("10.0.0.2", "10.1.0.2"), 5405)}


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'{"until": "soon"}',
        b'{"interval": 0}',
        b'{"interval": -1}',
        b'{"peers": {"n2": 5}}',
        b'{"peers": {"n2": [["10.0.0.2"], "x"]}}',
        b'{"lease": "seven"}',
    ],
)
def test_a_line_not_understood_changes_nothing(line: bytes) -> None:
    state = BeatState("n1")
    assert state.apply(b'{"until": 5, "lease": 3, "peers": {"n2": [["10.0.0.2"], 1]}}')
    assert not state.apply(line)
    assert (state.until, state.lease, state.member, state.interval) == (5.0, 3, True, 0.2)
    assert state.peers == {"n2": (("10.0.0.2",), 1)}


def test_a_beat_is_due_only_with_a_lease_and_before_the_vouched_moment() -> None:
    state = BeatState("n1")
    assert not state.beat_due(0.0)  # never a member: nothing is sent
    state.apply(b'{"lease": 4}')
    assert not state.beat_due(0.0)  # nobody vouched yet
    state.apply(b'{"until": 10}')
    assert state.beat_due(9.99)
    assert not state.beat_due(10.0)
    state.apply(b'{"member": false}')
    assert state.beat_due(9.0)  # a lost membership is said by beating, not by silence


# ---- the process ----------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def arrivals(sock: socket.socket) -> list[tuple[float, dict[str, object]]]:
    """Every datagram waiting: (the kernel's arrival stamp in seconds, its message)."""
    out = []
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(512, socket.CMSG_SPACE(TIMESPEC.size))
        except BlockingIOError:
            return out
        stamp = 0.0
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = TIMESPEC.unpack(raw[: TIMESPEC.size])
                stamp = seconds + nanoseconds / 1e9
        out.append((stamp, json.loads(data)))


def longest_gap(stamps: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] with no datagram."""
    points = [start, *sorted(s for s in stamps if start < s < end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def test_the_sender_beats_as_fed_and_stops_at_the_vouched_moment(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    beater = BeaterProcess.start("n1", ["127.0.0.1"])
    try:
        peers = {"n2": (("127.0.0.1",), port), "n1": (("127.0.0.1",), port)}
        assert beater.feed(until=time.monotonic() + 0.6, lease=9, member=False, interval=0.05,
                           peers=peers)  # fmt: skip
        time.sleep(1.2)
        got = arrivals(receiver)
        wall_now = time.time()
        assert len(got) >= 4, got
        assert {json.dumps(m, sort_keys=True) for _, m in got} == {
            json.dumps({"node": "n1", "lease": 9, "kind": "beat", "member": False}, sort_keys=True)
        }  # to n2 only: never to itself
        # Nothing in the last half second: it stopped when the agent stopped vouching.
        assert max(s for s, _ in got) < wall_now - 0.45
        assert is_alive(ProcessRecord(beater.pid, start_ticks(beater.pid) or 0))
    finally:
        beater.close()


def test_a_dead_agents_sender_exits_at_once(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    beater = BeaterProcess.start("n1", ["127.0.0.1"])
    record = ProcessRecord(beater.pid, start_ticks(beater.pid) or 0)
    beater.feed(until=time.monotonic() + 60, lease=1, member=True, interval=0.05,
                peers={"n2": (("127.0.0.1",), port)})  # fmt: skip
    time.sleep(0.5)
    assert arrivals(receiver)
    assert beater._proc.stdin is not None
    beater._proc.stdin.close()  # as the kernel does when the agent dies
    ended = time.monotonic()
    while is_alive(record) and time.monotonic() - ended < 2:
        beater._proc.poll()
        time.sleep(0.01)
    assert not is_alive(record)
    quiet_from = time.time()
    time.sleep(0.3)
    assert not [s for s, _ in arrivals(receiver) if s > quiet_from]
    beater.close()


def hold_the_interpreter(seconds: float, then: Callable[[], T] | None = None) -> T | None:
    """Keep the interpreter from every other thread of this process for `seconds`: what an
    agent's main thread does when it is taken off the CPU in a long call. `then` runs at
    the end, still holding it; what it returns is returned."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds + 5)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return then() if then is not None else None
    finally:
        sys.setswitchinterval(before)


@pytest.mark.parametrize("own_process", [True, False])
def test_an_agent_holding_its_interpreter_keeps_beating_only_with_the_sender(
    receiver: socket.socket, own_process: bool
) -> None:
    """The negative control (own_process False, the thread beats alone) goes silent for the
    whole hold: the false suspicion of docs/control-plane.md, section 8, run 18."""
    hb = Heartbeat("n1", "127.0.0.1", 0, interval=0.05, own_process=own_process)
    hb.lease = 3
    hb.set_peers({"n2": (("127.0.0.1",), receiver.getsockname()[1])})
    hb.start()
    try:
        assert (hb.beater_pid is not None) is own_process
        time.sleep(0.5)  # the sender is running and fed
        arrivals(receiver)
        start = time.time()
        hold_the_interpreter(1.5)
        end = time.time()
        time.sleep(0.2)
        gap = longest_gap([s for s, _ in arrivals(receiver)], start, end)
        if own_process:
            assert gap < 0.6, f"silent {gap:.2f}s while the interpreter was held"
        else:
            assert gap > 1.2
    finally:
        hb.close()


def test_the_thread_beats_itself_while_the_sender_is_gone_and_starts_it_again(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeat_module, "BEATER_AGAIN", 0.5)
    hb = Heartbeat("n1", "127.0.0.1", 0, interval=0.05, own_process=True)
    hb.lease = 3
    hb.set_peers({"n2": (("127.0.0.1",), receiver.getsockname()[1])})
    hb.start()
    try:
        first = hb.beater_pid
        assert first is not None
        time.sleep(0.3)
        arrivals(receiver)
        start = time.time()
        os.kill(first, signal.SIGKILL)
        time.sleep(1.5)
        gap = longest_gap([s for s, _ in arrivals(receiver)], start, time.time())
        assert gap < 0.5, f"silent {gap:.2f}s after the sender died"
        assert hb.beater_pid not in (None, first)  # started again
    finally:
        hb.close()


AGENT = """
import sys, time
from hastack.membership.beater import BeaterProcess
beater = BeaterProcess.start("n1", ["127.0.0.1"])
print(beater.pid, flush=True)
peers = {"n2": (("127.0.0.1",), int(sys.argv[1]))}
while True:
    beater.feed(until=time.monotonic() + 30, lease=1, member=True, interval=0.05, peers=peers)
    time.sleep(0.05)
"""


def test_a_stopped_agent_does_not_beat_and_a_killed_one_ends_its_sender(
    receiver: socket.socket,
) -> None:
    """The sender runs in a session of its own (a signal to the agent's group does not reach
    it), so it looks at its agent before each beat: stopped (SIGSTOP), no beat; killed, the
    pipe ends and so does the sender."""
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(receiver.getsockname()[1])],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(hastack.__file__).parent.parent)},
    )
    try:
        assert agent.stdout is not None
        beater = int(agent.stdout.readline())
        record = ProcessRecord(beater, start_ticks(beater) or 0)
        assert os.getsid(beater) != os.getsid(agent.pid)
        time.sleep(0.5)
        assert arrivals(receiver)
        os.kill(agent.pid, signal.SIGSTOP)
        time.sleep(0.2)
        stopped_at = time.time()
        time.sleep(0.5)
        assert not [s for s, _ in arrivals(receiver) if s > stopped_at]
        assert is_stopped(agent.pid)
        os.kill(agent.pid, signal.SIGCONT)
        time.sleep(0.3)
        assert not is_stopped(agent.pid)
        assert arrivals(receiver)  # beating again
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        assert wait_gone(record, 2.0)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def test_the_thread_beats_until_the_sender_says_it_is_ready(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender started at a load of 40 took seconds to begin: a node that joined meanwhile
    must not be silent. Here the sender never gets there."""

    def slow(cls: type[BeaterProcess], node: str, addresses: list[str]) -> BeaterProcess:
        proc = subprocess.Popen(
            ["sleep", "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        return cls(proc)

    monkeypatch.setattr(BeaterProcess, "start", classmethod(slow))
    hb = Heartbeat("n1", "127.0.0.1", 0, interval=0.05, own_process=True)
    hb.lease = 3
    hb.set_peers({"n2": (("127.0.0.1",), receiver.getsockname()[1])})
    hb.start()
    try:
        assert hb.beater_pid is not None
        start = time.time()
        time.sleep(1.0)
        gap = longest_gap([s for s, _ in arrivals(receiver)], start, time.time())
        assert gap < 0.5, f"silent {gap:.2f}s while the sender was starting"
    finally:
        hb.close()


@pytest.mark.parametrize(("kind", "own"), [(NodeKind.FULL, True), (NodeKind.REMOTE, False)])
def test_a_full_nodes_beats_leave_from_a_sender_a_computes_from_its_thread(
    tmp_path: Path, kind: NodeKind, own: bool
) -> None:
    """Controllers are judged on suspect-after (0.6 s in the failover benchmark), which a
    held interpreter reaches; computes on remote-suspect-after (3 s)."""
    config = AgentConfig(
        cluster="c",
        node="n1",
        kind=kind,
        addresses=["127.0.0.1"],
        etcd=EtcdSpec(endpoints=["127.0.0.1:1"], election_timeout=0.2, insecure=True),
        timings=MEMORY_TIMINGS,
        heartbeat_port=7941,
    )
    agent = Agent(config, state_dir=tmp_path, store=MemoryStore(MemoryBackend()))
    assert agent.heartbeat is not None
    assert agent.heartbeat.own_process is own


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("catch_up", [True, False])
def test_a_judge_that_held_the_interpreter_judges_on_what_arrived(
    monkeypatch: pytest.MonkeyPatch, catch_up: bool
) -> None:
    """The agent's loop asks who is silent right after a long call that kept the heartbeat
    thread from reading: it reads what arrived first (the negative control, judging on what
    the thread had read, finds a beating peer silent: a DC stalled 4 s this way fenced both
    other controllers, run 25)."""
    if not catch_up:
        monkeypatch.setattr(Heartbeat, "catch_up", lambda self: None)
    port = free_udp_port()
    judge = Heartbeat("n1", "127.0.0.1", port, interval=0.05)
    judge.lease = 1
    judge.start()
    peer = BeaterProcess.start("n2", ["127.0.0.1"])
    try:
        peer.feed(until=time.monotonic() + 30, lease=2, member=True, interval=0.05,
                  peers={"n1": (("127.0.0.1",), port)})  # fmt: skip
        time.sleep(0.6)  # beating, and heard
        if os.geteuid() == 0:  # room for seconds of a hundred computes' beats, unread
            got = judge._socks[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert got >= heartbeat_module.RECEIVE_BUFFER
        assert judge.silent(["n2"], 0.3, since=0.0) == []
        silent = hold_the_interpreter(1.2, lambda: judge.silent(["n2"], 0.3, since=0.0))
        assert silent == ([] if catch_up else ["n2"])
    finally:
        peer.close()
        judge.close()
