"""The exclusivity checker and the watchdog, on their own."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hastack.fencing.watchdog import ProcessWatchdogClient
from hastack.model.exclusivity import find_overlaps, intervals_from_events, parse_events
from hastack.processes import is_alive, spawn, stop
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
    dog, _ = spawn(
        [sys.executable, "-m", "hastack.fencing.watchdog", str(sock), "n1", str(registry)],
        log_path=tmp_path / "wd.log",
    )
    try:
        wait_until(sock.exists, 10)
        client = ProcessWatchdogClient(sock)
        # Armed, then told it is safe: nothing happens.
        client.arm(time.monotonic() + 0.3)
        client.safe()
        time.sleep(0.6)
        assert is_alive(victim)
        # Armed and left alone: the node is reset at the deadline.
        armed_at = time.monotonic()
        client.arm(armed_at + 0.3)
        wait_until(lambda: not is_alive(victim), 5, 0.01)
        took = time.monotonic() - armed_at
        assert 0.3 <= took < 1.0, took
        wait_until(log.exists, 5, 0.01)
        dead = [json.loads(x) for x in log.read_text().splitlines()]
        assert dead[-1]["event"] == "dead"
        wait_until(lambda: not is_alive(dog), 5)
    finally:
        stop(victim)
        stop(dog)
