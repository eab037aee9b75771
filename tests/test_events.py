"""The event history: derived from what changed (pure), written in batches and kept bounded
(in-memory store), and on a real cluster: elections, transitions, failures and changes with who
made them, read by `hastack events` and followed as they come."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from conftest import ClusterFactory
from hastack.model.events import (
    ClusterEvent,
    EventKind,
    decode_event,
    failed_action_events,
    kinds,
    snapshot_events,
)
from hastack.model.fencing import FenceRecord, encode_history
from hastack.model.members import MemberRecord, NodeKind, NodeRecord, StoredKey, decode_snapshot
from hastack.model.status import LastOp, NodeReport, ResourceReport
from hastack.store.history import EventRecorder, HistoryTrimmer, follow_events, read_events
from hastack.store.keys import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from helpers import async_wait_until, hastack_cli, wait_until

KEYS = Keys("c")


def member(name: str, revision: int) -> StoredKey:
    record = MemberRecord(name, NodeKind.FULL, ("10.0.0.1",))
    return StoredKey(f"members/{name}", record.encode(), revision, revision, 7)


def node(name: str, revision: int) -> StoredKey:
    return StoredKey(f"nodes/{name}", NodeRecord(name, NodeKind.FULL).encode(), 2, revision, 0)


def fence(target: str, result: str) -> FenceRecord:
    return FenceRecord(target, "reboot", result, 1, ("power",), "done", 1.0, 2.0, "n1", 9)


# ---- pure -----------------------------------------------------------------------------------


def test_the_dc_records_members_joining_leaving_and_fencing() -> None:
    before = decode_snapshot(
        10, [member("n1", 3), member("n2", 4), node("n1", 3), node("n2", 4), node("n3", 5)]
    )
    history = StoredKey("fencing/n2", encode_history([fence("n2", "success")]), 11, 11, 0)
    after = decode_snapshot(
        12,
        [member("n1", 3), member("n3", 12), node("n1", 3), node("n2", 4), node("n3", 12), history],
    )
    out = snapshot_events(before, after, writer="n1", now=5.0)
    texts = [e.text for e in out]
    assert texts[0] == "n3 joined again"
    assert texts[1] == "n2 went offline: fenced"
    assert texts[2].startswith("fencing (reboot) of n2 by n1 succeeded")
    assert [e.kind for e in out] == [EventKind.NODE, EventKind.NODE, EventKind.FENCING]
    assert out[2].data["result"] == "success"
    # a new DC's first view records nothing (its predecessor recorded what happened before)
    assert snapshot_events(None, after, writer="n1", now=5.0) == []
    # the same view again: nothing new
    assert snapshot_events(after, after, writer="n1", now=6.0) == []


def test_a_node_records_each_new_failure_once() -> None:
    failed = LastOp("monitor", 7, "not running", at=100.0, interval=10.0)
    calm = NodeReport("n2", resources={"app": ResourceReport()})
    broken = NodeReport("n2", resources={"app": ResourceReport(fail_count=1, failed_op=failed)})
    [event] = failed_action_events("n2", calm, broken, now=101.0)
    assert event.kind is EventKind.FAILED_ACTION
    assert event.text == (
        "monitor of app on n2 failed: rc 7 (not running): not running; fail count 1"
    )
    assert failed_action_events("n2", broken, broken, now=102.0) == []
    again = LastOp("monitor", 7, "not running", at=130.0, interval=10.0)
    twice = NodeReport("n2", resources={"app": ResourceReport(fail_count=2, failed_op=again)})
    assert len(failed_action_events("n2", broken, twice, now=131.0)) == 1


def test_verbose_lines_show_a_transitions_actions_and_a_changes_difference() -> None:
    from hastack.cli.events_cmd import details

    transition = ClusterEvent(
        EventKind.TRANSITION, "planned 2 action(s)", 1.0, "n1",
        {"actions": [{"kind": "start", "resource": "app", "node": "n2", "reason": "placed"},
                     {"kind": "fence", "resource": None, "node": "n3", "reason": "unclean"}],
         "more": 0},
    )  # fmt: skip
    assert details(transition) == ["    start app on n2: placed", "    fence on n3: unclean"]
    change = ClusterEvent(EventKind.CONFIG, "x", 1.0, "cli", {"diff": ["-a", "+b"]})
    assert details(change) == ["    -a", "    +b"]


def test_stored_events_decode_or_say_why_not() -> None:
    event = ClusterEvent(EventKind.CONFIG, "moved web to n2", 1.5, "cli", {"by": "root@h"})
    back = decode_event(event.encode(), 42)
    assert back.to_json() == {**event.to_json(), "revision": 42}
    for raw, problem in [
        (b"[]", "object"),
        (b'{"kind": "gossip", "text": "x", "node": "n", "at": 1}', "unknown event kind"),
        (b'{"kind": "node", "text": "x", "node": "n", "at": "soon"}', "'at' must be a number"),
    ]:
        with pytest.raises(ValueError, match=problem):
            decode_event(raw, 1)
    with pytest.raises(ValueError, match="unknown event kind 'x'"):
        kinds(["node", "x"])


# ---- on a store -----------------------------------------------------------------------------


async def test_recorder_writes_batches_in_order_and_counts_what_it_drops() -> None:
    store = MemoryStore(MemoryBackend())
    recorder = EventRecorder(store, KEYS, "n1")
    for i in range(300):
        recorder.record(ClusterEvent(EventKind.NODE, f"event {i}", float(i), "n1"))
    assert recorder.dropped == 300 - 256
    task = asyncio.create_task(recorder.run())
    await recorder.flush(5.0)
    history = await read_events(store, KEYS)
    assert [e.text for e in history.events][:2] == [
        "event 0 (44 earlier event(s) not recorded: queue full)",
        "event 1",
    ]
    assert len(history.events) == 256
    assert [e.revision for e in history.events] == sorted(e.revision for e in history.events)
    # 256 events in batches of 64: four transactions, not 256
    assert store.backend.revision <= 1 + 4
    # a store that refuses for a while loses nothing
    from hastack.errors import StoreUnavailable
    from hastack.store.memory import Fault

    store.fail(Fault(StoreUnavailable), calls=3)
    recorder.record(ClusterEvent(EventKind.NODE, "after the outage", 1.0, "n1"))
    await recorder.flush(5.0)
    assert (await read_events(store, KEYS, limit=1)).events[0].text == "after the outage"
    task.cancel()


async def test_the_trimmer_keeps_the_newest_and_follow_sees_each_once() -> None:
    backend = MemoryBackend()
    store = MemoryStore(backend)
    trimmer = HistoryTrimmer(store, KEYS, limit=10, slack=2)
    task = asyncio.create_task(trimmer.run())
    recorder = EventRecorder(store, KEYS, "n1")
    writer = asyncio.create_task(recorder.run())
    followed: list[str] = []

    async def follow() -> None:
        async for event in follow_events(store, KEYS, 0):
            followed.append(event.text)

    follower = asyncio.create_task(follow())
    for i in range(40):
        recorder.record(ClusterEvent(EventKind.NODE, f"event {i}", float(i), "n1"))
        await recorder.flush(2.0)

    async def settled() -> bool:
        history = await read_events(store, KEYS)
        return history.stored <= 12 and history.events[-1].text == "event 39"

    await async_wait_until(settled, timeout=5)
    history = await read_events(store, KEYS)
    texts = [e.text for e in history.events]
    assert texts == [f"event {i}" for i in range(40 - len(texts), 40)]
    assert len(texts) >= 10
    await async_wait_until(lambda: _ready(len(followed) == 40), timeout=5)
    assert followed == [f"event {i}" for i in range(40)]
    # reading after a revision gives only what came later
    later = await read_events(store, KEYS, after=history.events[-3].revision)
    assert [e.text for e in later.events] == ["event 38", "event 39"]
    for t in (task, writer, follower):
        t.cancel()


async def _ready(value: bool) -> bool:
    return value


# ---- on a real cluster ----------------------------------------------------------------------


def test_a_cluster_records_elections_transitions_failures_and_who_changed_what(
    local_cluster: ClusterFactory,
) -> None:
    lc = local_cluster(3)

    def events_of(kind: str) -> list[dict[str, object]]:
        result = hastack_cli(lc, "events", "--json", "--kind", kind, "--limit", "100")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    [election] = wait_until(lambda: events_of("election"), timeout=20)
    assert "became DC at epoch" in str(election["text"])
    config = (
        "properties: {stonith-enabled: false}\n"
        "resources:\n"
        "  - {primitive: flaky, agent: 'hastack:service', "
        "params: {command: 'exec sleep 3600'}, ops: [{name: monitor, interval: 1s}]}\n"
    )
    applied = hastack_cli(lc, "config", "apply", "-", "--yes", stdin=config)
    assert applied.returncode == 0, applied.stderr
    [change] = wait_until(lambda: events_of("config"), timeout=10)
    assert str(change["text"]).startswith("configuration applied (by ")
    assert "via cli" in str(change["text"])
    assert "+- primitive: flaky" in change["data"]["diff"]  # type: ignore[index]
    wait_until(lambda: events_of("transition"), timeout=20)

    # a failure is recorded by the node where it happened
    def holder() -> str | None:
        from test_executor import running

        now = running(lc, "flaky")
        return next(iter(now), None)

    where = wait_until(holder, timeout=20)
    [pidfile] = (lc.agent_state_dir(where) / "services").glob("flaky-*/pid")
    pid = json.loads(pidfile.read_text())["pid"]
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    [failure] = wait_until(lambda: events_of("failed-action"), timeout=20)
    assert failure["node"] == where
    assert f"monitor of flaky on {where} failed" in str(failure["text"])

    moved = hastack_cli(lc, "resource", "ban", "flaky", where)
    assert moved.returncode == 0, moved.stderr
    wait_until(
        lambda: any("cli-ban-flaky-on" in str(e["text"]) for e in events_of("config")), timeout=10
    )

    # --follow prints what comes next
    follower = subprocess.Popen(
        [sys.executable, "-m", "hastack", "events", "--follow", "--limit", "0",
         "--config", str(lc.client_config)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        assert hastack_cli(lc, "resource", "cleanup", "flaky").returncode == 0
        assert follower.stdout is not None
        line = follower.stdout.readline()
        assert "request" in line
        assert "cleanup of flaky on every node requested by" in line
    finally:
        follower.terminate()
        follower.wait(10)
