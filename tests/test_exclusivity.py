"""The exclusivity checker and the watchdog, on their own."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from hastack.eventlog import read_events
from hastack.executor.exclusive import ExclusiveGuard
from hastack.fencing.watchdog import ProcessWatchdogClient
from hastack.model.exclusivity import find_overlaps, intervals_from_events, parse_events
from hastack.processes import is_alive, spawn, start_ticks, stop
from helpers import wait_until


def ev(node: str, event: str, wall: float, resource: str = "vip", error: float = 0.0) -> str:
    return json.dumps(
        {"node": node, "event": event, "resource": resource, "wall": wall, "offset_error": error}
    )


def test_clean_handover_has_no_overlap() -> None:
    lines = [
        ev("n1", "acquire", 10),
        ev("n1", "release", 20),
        ev("n2", "acquire", 20.5),
        ev("n2", "release", 30),
    ]
    intervals = intervals_from_events(parse_events(lines), end_of_run=40)
    assert find_overlaps(intervals) == []


def test_planted_overlap_is_found() -> None:
    lines = [
        ev("n1", "acquire", 10),
        ev("n2", "acquire", 15),
        ev("n1", "release", 16),
        ev("n2", "release", 30),
    ]
    [overlap] = find_overlaps(intervals_from_events(parse_events(lines), end_of_run=40))
    assert overlap.resource == "vip"
    assert round(overlap.seconds, 3) == 1.0
    assert "vip active on n1" in overlap.describe()


def test_dead_node_interval_ends_at_its_death_and_open_ones_at_end_of_run() -> None:
    lines = [
        ev("n1", "acquire", 10),
        json.dumps({"node": "n1", "event": "dead", "wall": 12.0}),
        ev("n2", "acquire", 12.5),
        ev("n3", "acquire", 50, resource="app"),
    ]
    intervals = intervals_from_events(parse_events(lines), end_of_run=60)
    assert find_overlaps(intervals) == []
    closed = {(i.node, i.closed_by) for i in intervals}
    assert closed == {("n1", "dead"), ("n2", "end-of-run"), ("n3", "end-of-run")}
    # the same death written a second later would overlap n2's start
    late = [*lines[:1], json.dumps({"node": "n1", "event": "dead", "wall": 13.0}), *lines[2:]]
    assert len(find_overlaps(intervals_from_events(parse_events(late), end_of_run=60))) == 1


def test_overlap_within_clock_error_is_not_reported_and_garbage_is_skipped() -> None:
    lines = [
        ev("n1", "acquire", 10, error=0.01),
        ev("n1", "release", 20, error=0.01),
        ev("n2", "acquire", 19.99, error=0.01),
        "not json",
        "[1]",
    ]
    assert find_overlaps(intervals_from_events(parse_events(lines), end_of_run=30)) == []


def test_process_watchdog_resets_after_the_deadline_unless_safe(tmp_path: Path) -> None:
    victim, _ = spawn(["sleep", "3600"], log_path=tmp_path / "victim.log")
    log = tmp_path / "exclusive.jsonl"
    registry = tmp_path / "power.json"
    registry.write_text(
        json.dumps({"nodes": {"n1": {"processes": [victim.to_json()], "exclusive_log": str(log)}}})
    )
    sock = tmp_path / "wd.sock"
    # The reset a local cluster names: its power switch, by the registry.
    reset = [sys.executable, "-m", "hastack.lab.power", str(registry)]
    argv = [sys.executable, "-m", "hastack.fencing.watchdog", str(sock), "n1", str(tmp_path)]
    dog, _ = spawn([*argv, "--", *reset], log_path=tmp_path / "wd.log")
    try:
        wait_until(sock.exists, 10)
        client = ProcessWatchdogClient(sock)
        # Armed, then told it is safe: nothing happens.
        client.arm(time.monotonic() + 0.3)
        client.safe()
        time.sleep(0.6)
        assert is_alive(victim)
        assert not read_events(tmp_path / "events.jsonl")
        # Armed and left alone: the node is reset at the deadline, and it says so in the
        # node's event log (the agent, reset, could not have written membership-lost).
        armed_at = time.monotonic()
        client.arm(armed_at + 0.3)
        wait_until(lambda: not is_alive(victim), 5, 0.01)
        took = time.monotonic() - armed_at
        assert 0.3 <= took < 1.0, took
        wait_until(log.exists, 5, 0.01)
        dead = [json.loads(x) for x in log.read_text().splitlines()]
        assert dead[-1]["event"] == "dead"
        resets = read_events(tmp_path / "events.jsonl")
        assert [(e["event"], e["node"]) for e in resets] == [("watchdog-reset", "n1")]
        wait_until(lambda: not is_alive(dog), 5)
    finally:
        stop(victim)
        stop(dog)


AGENT = """
import socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.sendto(f"arm {time.monotonic() + 0.3:.6f}".encode(), sys.argv[1])
time.sleep(3600)
"""


def test_default_reset_kills_the_agents_group_and_its_services(tmp_path: Path) -> None:
    """Without a reset command, the watchdog kills the process group of whoever armed it (the
    agent, known from the kernel's credentials) and the services it started."""
    sock = tmp_path / "wd.sock"
    service, _ = spawn(["sleep", "3600"], log_path=tmp_path / "service.log")
    pidfile = tmp_path / "services" / "app-12345678" / "pid"
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text(json.dumps(service.to_json()))
    bystander, _ = spawn(["sleep", "3600"], log_path=tmp_path / "bystander.log")
    dog, _ = spawn(
        [sys.executable, "-m", "hastack.fencing.watchdog", str(sock), "n1", str(tmp_path)],
        log_path=tmp_path / "wd.log",
    )
    agent = None
    try:
        wait_until(sock.exists, 10)
        # The "agent" arms the watchdog with a child in its process group, then hangs.
        agent, _ = spawn(
            ["sh", "-c", f'sleep 3600 & exec {sys.executable} -c "$0" "$1"', AGENT, str(sock)],
            log_path=tmp_path / "agent.log",
        )
        wait_until(lambda: not is_alive(service), 10, 0.01)
        # Killed first, but a SIGKILLed process dies when it next runs: it may outlive the
        # service by a moment (CI, 2026-12-07 17:10: still alive when the service was gone).
        wait_until(lambda: not is_alive(agent), 5, 0.01)

        def group_left() -> list[int]:
            out = []
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    pid = int(entry.name)
                    if os.getpgid(pid) == agent.pid and start_ticks(pid) is not None:
                        out.append(pid)  # alive, not a zombie
            return out

        wait_until(lambda: not group_left(), 5, 0.01)  # the whole group, child included
        assert is_alive(bystander)
        wait_until(lambda: not is_alive(dog), 5)  # it fired once, and is done
        dead = [json.loads(x) for x in (tmp_path / "exclusive.jsonl").read_text().splitlines()]
        assert dead[-1]["event"] == "dead"
        resets = read_events(tmp_path / "events.jsonl")
        assert [(e["event"], e["node"]) for e in resets] == [("watchdog-reset", "n1")]
        assert "default reset done" in (tmp_path / "wd.log").read_text()
    finally:
        for record in (service, bystander, dog, *([agent] if agent else [])):
            stop(record, group=record is agent)


def test_a_power_cut_empties_the_nodes_volatile_state(tmp_path: Path) -> None:
    """What OCF agents keep in HA_RSCTMP is gone after a power cut, as a host's /run is: a
    Dummy's state file left there made the next boot's probe adopt a resource that had
    started elsewhere meanwhile (an overlap the lab invented, seen by bench/soak.py)."""
    from hastack.lab.power import power_off

    rsctmp = tmp_path / "n1" / "agent" / "rsctmp"
    rsctmp.mkdir(parents=True)
    (rsctmp / "Dummy-d1.state").touch()
    keep = tmp_path / "n1" / "agent" / "events.jsonl"
    keep.touch()
    log = tmp_path / "n1" / "agent" / "exclusive.jsonl"
    power_off({"volatile": [str(rsctmp)], "exclusive_log": str(log)}, "n1")
    assert not rsctmp.exists()
    assert keep.exists()
    assert '"event": "dead"' in log.read_text()


class FakeWatchdog:
    def __init__(self) -> None:
        self.said: list[tuple[str, float | None]] = []

    def arm(self, deadline: float) -> bool:
        self.said.append(("arm", deadline))
        return True

    def alive(self, deadline: float) -> bool:
        self.said.append(("alive", deadline))
        return True

    def safe(self) -> bool:
        self.said.append(("safe", None))
        return True


def test_a_renewal_rearms_the_watchdog_while_the_loop_is_busy() -> None:
    """The renewal thread arms the watchdog with each new lease-safe deadline while something
    exclusive is held and the agent's loop counts as alive: a loop busy with a large plan
    does not leave the watchdog with the deadline of the renewal before (a DC at load 100
    was reset that way with every renewal good)."""
    now = [100.0]
    dog = FakeWatchdog()
    guard = ExclusiveGuard("n1", None, dog, clock=lambda: now[0])
    guard.set_deadline(102.7, alive_until=106.0)  # the loop's pass: nothing held
    assert dog.said == [("alive", 106.0)]
    guard.renewed(103.2)  # nothing exclusive held: the loop's next pass says what holds
    assert dog.said == [("alive", 106.0)]
    guard.acquire("vip")
    assert dog.said[-1] == ("arm", 102.7)
    now[0] = 101.0
    guard.renewed(103.7)  # the loop has not passed since: armed all the same
    assert dog.said[-1] == ("arm", 103.7)
    guard.renewed(103.5)  # never moved back
    assert dog.said[-1] == ("arm", 103.7)
    # A loop that has not passed within its alive window is wedged: renewals no longer arm,
    # so the watchdog resets the node at the last deadline.
    now[0] = 106.0
    guard.renewed(108.7)
    assert dog.said[-1] == ("arm", 103.7)
    # Released: `safe`, and a renewal after it arms nothing.
    guard.set_deadline(108.7, alive_until=112.0)
    guard.release("vip")
    assert dog.said[-1] == ("safe", None)
    guard.renewed(109.7)
    assert dog.said[-1] == ("safe", None)
