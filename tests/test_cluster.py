"""Three real agents on a real 3-member etcd: DC failover, store faults, bad input."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import FAST, ClusterFactory
from hastack.eventlog import read_events
from hastack.lab.local import LocalCluster
from hastack.ops.status import StatusReport, collect_status
from hastack.processes import send, spawn, stop
from hastack.store import Keys
from helpers import wait_until


def status(lc: LocalCluster) -> StatusReport:
    client = lc.client()
    return asyncio.run(collect_status(client, timeout=1.0))


def ready(lc: LocalCluster) -> StatusReport:
    """Wait for a DC and every node online."""

    def check() -> StatusReport | None:
        report = status(lc)
        online = [n for n in report.nodes if n.online]
        if report.dc_node is not None and len(online) == len(lc.node_names):
            return report
        return None

    return wait_until(check, timeout=15, interval=0.1)


def events(lc: LocalCluster, node: str, kind: str) -> list[dict[str, object]]:
    return [e for e in read_events(lc.agent_state_dir(node) / "events.jsonl") if e["event"] == kind]


def test_dc_sigkill_moves_dc_within_bound(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(3)
    before = ready(lc)
    assert before.dc_node is not None
    assert before.dc_epoch is not None
    killed_at = time.monotonic()
    assert lc.kill(before.dc_node, ["agent"])

    def new_dc() -> StatusReport | None:
        report = status(lc)
        return report if report.dc_node not in (None, before.dc_node) else None

    after = wait_until(new_dc, timeout=10, interval=0.02)
    elapsed = time.monotonic() - killed_at
    assert after.dc_epoch is not None
    assert after.dc_epoch > before.dc_epoch
    # The bound: the old lease lasts at most one TTL after the crash (it was renewed before),
    # the successor campaigns on the deletion event or within one renew interval; etcd
    # checks for expired leases every 0.5 s.
    bound = FAST.lease_ttl + FAST.renew_interval + 0.5
    assert elapsed <= bound, f"new DC after {elapsed:.2f}s, bound {bound:.2f}s"
    offline = [n.name for n in after.nodes if not n.online]
    assert offline == [before.dc_node]


def test_losing_one_etcd_member_changes_nothing(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(3)
    before = ready(lc)
    leader = next(i for i, e in enumerate(before.store) if e.is_leader)
    # the worst member to lose: the raft leader
    lc.kill(lc.node_names[leader], ["etcd"])
    watch_until = time.monotonic() + 2 * FAST.lease_ttl
    while time.monotonic() < watch_until:
        report = status(lc)
        if report.error is None:
            assert report.dc_node == before.dc_node
            assert report.dc_epoch == before.dc_epoch
            assert all(n.online for n in report.nodes), report.nodes
        time.sleep(0.2)
    for node in lc.node_names:
        assert events(lc, node, "membership-lost") == []
    assert status(lc).quorum.healthy == 2


def test_cut_off_agent_knows_before_its_lease_expires(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(3)
    ready(lc)
    # n1's agent talks only to n1's etcd member; freeze that member.
    config_path = lc.agent_config_path("n1")
    config = yaml.safe_load(config_path.read_text())
    config["etcd"]["endpoints"] = [lc.endpoints[0]]
    config_path.write_text(yaml.safe_dump(config))
    lc.kill("n1", ["agent"])
    lc.start("n1", ["agent"])
    wait_until(lambda: len(events(lc, "n1", "joined")) >= 2, timeout=10)
    ready(lc)

    expired_at: list[float] = []
    paused_at: list[float] = []

    async def pause_and_watch_member_key() -> None:
        keys = Keys(lc.name)
        async with lc.store(1.0, lc.endpoints[1:]) as store:
            start = (await store.get_prefix(keys.member("n1"))).revision + 1
            paused_at.append(time.time())
            lc.pause("n1", ["etcd"])
            async for batch in store.watch_prefix(keys.member("n1"), start):
                if any(e.kind.value == "delete" for e in batch.events):
                    expired_at.append(time.time())
                    return

    try:
        asyncio.run(asyncio.wait_for(pause_and_watch_member_key(), timeout=20))
    finally:
        lc.resume("n1", ["etcd"])
    [lost] = events(lc, "n1", "membership-lost")[:1]
    lost_at = float(lost["t"])  # type: ignore[arg-type]
    assert paused_at[0] < lost_at < expired_at[0], (paused_at, lost_at, expired_at)
    # reported within the promised time after the freeze (renew + 2 × store timeout, plus
    # up to one renew interval since the last renewal happened before the pause)
    assert lost_at - paused_at[0] <= FAST.loss_after + 0.2
    # and it comes back by itself once its member answers again
    wait_until(lambda: len(events(lc, "n1", "joined")) >= 3, timeout=15)


def hastack(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hastack", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_malformed_agent_config_is_refused_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("cluster: c\nnode: n1\netcd:\n  endpoints: []\ntimings:\n  lease-ttl: 2s\n")
    result = hastack("agent", "--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}:4: etcd.endpoints: List should have at least 1 item" in result.stderr
    assert f"{bad}:5: timings: unsafe timings" in result.stderr
    missing = hastack("agent", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert "cannot read the agent configuration" in missing.stderr


def test_unreachable_etcd_at_start_retries_then_joins(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(1, agents=False)
    lc.kill("n1", ["etcd"])
    record, _ = spawn(
        [sys.executable, "-m", "hastack", "agent", "--config", str(lc.agent_config_path("n1")),
         "--state-dir", str(lc.agent_state_dir("n1"))],
        log_path=lc.agent_log("n1"),
    )  # fmt: skip
    try:
        wait_until(
            lambda: lc.agent_log("n1").read_text().count("cannot reach etcd") >= 2, timeout=10
        )
        log = lc.agent_log("n1").read_text()
        assert "retrying in" in log
        assert "Traceback" not in log
        lc.start("n1", ["etcd"])
        wait_until(lambda: events(lc, "n1", "dc-elected"), timeout=20)
    finally:
        stop(record)
    assert "Traceback" not in lc.agent_log("n1").read_text()


def test_garbage_in_the_store_is_reported_and_survived(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(3)
    before = ready(lc)
    keys = Keys(lc.name)

    async def plant() -> None:
        async with lc.store(2.0) as store:
            await store.put(keys.member("zz"), b"\x00garbage")
            await store.put(keys.node("yy"), b'{"kind": 7}')

    asyncio.run(plant())
    wait_until(lambda: all(events(lc, n, "store-problem") for n in lc.node_names), timeout=10)
    problems = [e["problem"] for e in events(lc, "n1", "store-problem")]
    assert any("members/zz: not valid JSON" in str(p) for p in problems)
    time.sleep(2 * FAST.renew_interval)
    after = ready(lc)
    assert (after.dc_node, after.dc_epoch) == (before.dc_node, before.dc_epoch)
    assert lc.running() == {n: {"etcd": True, "agent": True} for n in lc.node_names}
    result = hastack("status", "--json", "--config", str(lc.client_config))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert len(shown["problems"]) == 2
    assert {n["name"] for n in shown["nodes"]} == {"n1", "n2", "n3"}


def test_status_shows_offline_nodes_and_graceful_stop_is_fast(
    local_cluster: ClusterFactory,
) -> None:
    lc = local_cluster(3)
    before = ready(lc)
    other = next(n for n in lc.node_names if n != before.dc_node)
    procs = lc.processes(other)
    assert procs.agent is not None
    started = time.monotonic()
    # SIGTERM: the agent revokes its lease, no TTL to wait for (measured to the moment the
    # cluster sees it gone, not to the end of the process, which a busy machine may slow)
    send(procs.agent, signal.SIGTERM, group=True)
    wait_until(lambda: [n.name for n in status(lc).nodes if not n.online] == [other], timeout=5)
    assert time.monotonic() - started < FAST.lease_ttl
    result = hastack("status", "--config", str(lc.client_config))
    assert result.returncode == 0
    assert f"OFFLINE: [ {other} ]" in result.stdout
    assert f"Current DC: {before.dc_node} (epoch {before.dc_epoch}" in result.stdout
    assert "Quorum: yes - etcd 3 of 3 members healthy, 2 needed" in result.stdout
    # a DC stopping gracefully hands over at once, too
    dc = lc.processes(before.dc_node or "")
    assert dc.agent is not None
    started = time.monotonic()
    send(dc.agent, signal.SIGTERM, group=True)
    wait_until(lambda: status(lc).dc_node not in (None, before.dc_node), timeout=5)
    assert time.monotonic() - started < FAST.lease_ttl


def test_status_without_a_store_says_so(tmp_path: Path) -> None:
    result = hastack("status", "--etcd", "127.0.0.1:1", "--cluster", "x", "--insecure")
    assert result.returncode == 1
    assert "UNREACHABLE" in result.stdout
    assert "Traceback" not in result.stderr
    none = subprocess.run(
        [sys.executable, "-m", "hastack", "status"],
        capture_output=True, text=True, timeout=30, check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert none.returncode == 1
    assert "no cluster to talk to" in none.stderr


def test_sigterm_leaves_no_process_behind(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(3)
    ready(lc)
    records = [lc.processes(n) for n in lc.node_names]
    lc.down()
    from hastack.processes import is_alive

    for procs in records:
        assert procs.agent is not None
        assert procs.etcd is not None
        assert not is_alive(procs.agent)
        assert not is_alive(procs.etcd)
    assert not lc.directory.exists()
    _ = signal  # imported for readers: SIGTERM then SIGKILL is processes.stop's contract
