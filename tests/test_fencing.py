"""Fencing and split-brain safety on real agents, real etcd and real fence agents.

The promise under test: an exclusive resource (a VIP, a singleton service) is never active on
two nodes. Every agent records when it held each exclusive resource; the checker
(hastack.model.exclusivity) reads those records after each fault and must find no overlap.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from conftest import ClusterFactory
from hastack.fencing.fencer import fence_node
from hastack.lab.local import LocalCluster
from hastack.model.config import FencingSpec, Role
from hastack.model.exclusivity import find_overlaps, intervals_from_events, parse_events
from hastack.processes import is_alive, spawn, stop
from helpers import hastack_cli, wait_until
from test_executor import apply, has_address, running, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

TEST_FENCE_AGENTS = str(Path(__file__).parent / "fence")


def config_text(lc: LocalCluster, *, fencing: bool) -> str:
    config = {
        "properties": {
            "stonith-enabled": fencing,
            "heartbeat-interval": "200ms",
            "suspect-after": "1s",
        },
        "nodes": [{"node": n} for n in lc.node_names],
        "resources": [
            {
                "group": "web",
                "resources": [
                    {
                        "primitive": "vip",
                        "agent": "hastack:vip",
                        "params": {"ip": "192.168.250.100", "cidr_netmask": "24", "nic": "eth0"},
                        "ops": [{"name": "monitor", "interval": "1s"}],
                    },
                    {
                        "primitive": "app",
                        "agent": "hastack:service",
                        "params": {"command": "exec sleep 3600"},
                        "ops": [{"name": "monitor", "interval": "1s"}],
                    },
                ],
            }
        ],
    }
    if fencing:
        config["fencing"] = {
            "devices": [
                {
                    "device": "power",
                    "agent": "fence_hastack_local",
                    "params": {"registry": str(lc.power_registry)},
                }
            ]
        }
    return yaml.safe_dump(config)


def overlaps(lc: LocalCluster) -> list[str]:
    lines: list[str] = []
    for node in lc.node_names:
        path = lc.agent_state_dir(node) / "exclusive.jsonl"
        if path.exists():
            lines += path.read_text().splitlines()
    events = parse_events(lines)
    assert any(e["event"] == "acquire" for e in events), "the recorder wrote nothing"
    intervals = intervals_from_events(events, end_of_run=time.time())
    return [o.describe() for o in find_overlaps(intervals)]


def _agent_events(lc: LocalCluster, node: str) -> list[dict[str, object]]:
    path = lc.agent_state_dir(node) / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def holder(lc: LocalCluster) -> str:
    def one() -> list[str] | None:
        now = list(running(lc, "app"))
        return now if len(now) == 1 else None

    return wait_until(one, 20, 0.1)[0]


def moved_from(lc: LocalCluster, old: str, timeout: float = 20) -> str:
    def check() -> str | None:
        now = running(lc, "app")
        vip = running(lc, "vip")
        new = [n for n in now if n != old]
        if len(new) == 1 and vip.keys() == {new[0]} and now.get(new[0]) is Role.STARTED:
            return new[0]
        return None

    node = wait_until(check, timeout, 0.05)
    wait_until(lambda: has_address(lc, node, "192.168.250.100"), 5, 0.05)
    return node


@pytest.fixture
def cluster(local_cluster: ClusterFactory) -> LocalCluster:
    return local_cluster(3, namespaces=True)


def test_hard_crash_of_the_holder_is_fenced_then_recovered(cluster: LocalCluster) -> None:
    lc = cluster
    apply(lc, config_text(lc, fencing=True))
    old = holder(lc)
    crashed = time.monotonic()
    lc.crash(old)
    new = moved_from(lc, old)
    elapsed = time.monotonic() - crashed
    assert new != old
    print(f"\nrecovered on {new} {elapsed:.2f}s after the crash")  # a time is never a pass
    # Detection by heartbeats, not by the lease: the DC heard the holder fall silent, then
    # fenced it (the lease path would fence only once the lease is gone, which etcd extends
    # by a TTL when its leader died with the node).
    dc_events = [
        e for n in lc.node_names if n != old for e in _agent_events(lc, n) if e.get("peer") == old
    ]
    kinds = [e["event"] for e in sorted(dc_events, key=lambda e: float(e["t"]))]
    assert "node-silent" in kinds, kinds
    assert "fence-started" in kinds, kinds
    assert kinds.index("node-silent") < kinds.index("fence-started"), kinds
    history = _fence_history(lc)
    assert any(r["node"] == old and r["result"] == "success" for r in history), history
    assert overlaps(lc) == []


def test_frozen_agent_is_fenced_or_reset(cluster: LocalCluster) -> None:
    """A frozen holder is powered off by whichever comes first: the DC's fencing (silence
    detected) or its own watchdog's reset (its lease-safe deadline passed with exclusive
    resources held; the reset reboots the node). Under load the reset can win — most of all
    when the frozen agent is the DC and a new one must be elected first — and the rebooted
    node may then take its group back. Either way the frozen life is gone, the group runs
    on exactly one node with its address, and it never ran twice."""
    lc = cluster
    apply(lc, config_text(lc, fencing=True))
    old = holder(lc)
    procs = lc.processes(old)
    assert procs.agent is not None
    lc.pause(old, ["agent"])
    try:

        def recovered() -> str | None:
            if is_alive(procs.agent):  # type: ignore[arg-type]
                return None
            now = running(lc, "app")
            if len(now) != 1 or running(lc, "vip").keys() != now.keys():
                return None
            node = next(iter(now))
            # a fenced node's last report may still say Started: its address is gone
            return node if has_address(lc, node, "192.168.250.100") else None

        wait_until(recovered, 30, 0.1)
    finally:
        lc.resume(old, ["agent"])
    assert overlaps(lc) == []


def test_frozen_agent_without_fencing_is_reset_by_its_watchdog(cluster: LocalCluster) -> None:
    lc = cluster
    apply(lc, config_text(lc, fencing=False))
    old = holder(lc)
    procs = lc.processes(old)
    assert procs.agent is not None
    frozen = time.monotonic()
    lc.pause(old, ["agent"])
    try:
        new = moved_from(lc, old, timeout=30)
    finally:
        lc.resume(old, ["agent"])
    elapsed = time.monotonic() - frozen
    assert new != old
    # The watchdog fired at the lease-safe deadline; the DC waited for the lease to expire.
    assert not is_alive(procs.agent)
    assert elapsed >= 2.0, f"recovered after {elapsed:.2f}s: sooner than the lease allows"
    assert overlaps(lc) == []
    log = (lc.agent_state_dir(old) / "watchdog.log").read_text()
    assert "resetting" in log


def test_cut_off_holder_stops_its_resources_itself(cluster: LocalCluster) -> None:
    """The holder loses the store (its etcd member frozen, the others alive): it must stop the
    VIP and the service before its lease can expire, and the rest take over."""
    lc = cluster
    apply(lc, config_text(lc, fencing=False))
    old = holder(lc)
    config_path = lc.agent_config_path(old)
    agent_config = yaml.safe_load(config_path.read_text())
    agent_config["etcd"]["endpoints"] = [lc.endpoints[lc.node_names.index(old)]]
    config_path.write_text(yaml.safe_dump(agent_config))
    events_path = lc.agent_state_dir(old) / "events.jsonl"
    lc.kill(old, ["agent"])
    lc.start(old, ["agent"])
    # The restarted agent has joined (a second "joined") and adopted the group again.
    wait_until(lambda: events_path.read_text().count('"joined"') >= 2, 20, 0.1)
    wait_until(lambda: running(lc, "app").keys() == {old}, 20, 0.1)
    time.sleep(1.0)
    lc.pause(old, ["etcd"])
    try:
        new = moved_from(lc, old, timeout=30)
        assert new != old
        events = [
            json.loads(x)
            for x in (lc.agent_state_dir(old) / "events.jsonl").read_text().splitlines()
        ]
        assert any(e["event"] == "self-fenced" for e in events), (
            "the holder stopped its own resources"
        )
        assert not has_address(lc, old, "192.168.250.100")
        assert lc.running()[old]["agent"], "self-fencing left the agent alive (no reset needed)"
    finally:
        lc.resume(old, ["etcd"])
    assert overlaps(lc) == []


def _fence_history(lc: LocalCluster) -> list[dict[str, object]]:
    result = hastack_cli(lc, "fence", "history", "-v")
    out = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[3] in ("reboot", "off", "on"):
            out.append({"node": parts[2], "result": parts[4].lower().rstrip(",")})
    return out


def test_fence_levels_fall_through_and_hanging_devices_time_out(tmp_path: Path) -> None:
    victim, _ = spawn(["sleep", "3600"], log_path=tmp_path / "victim.log")
    registry = tmp_path / "power.json"
    registry.write_text(json.dumps({"nodes": {"v1": {"processes": [victim.to_json()]}}}))
    spec = FencingSpec.model_validate(
        {
            "devices": [
                {"device": "broken", "agent": "fence_test_fail"},
                {"device": "stuck", "agent": "fence_test_hang", "timeout": "1s"},
                {
                    "device": "power",
                    "agent": "fence_hastack_local",
                    "params": {"registry": str(registry)},
                },
            ],
            "levels": {"v1": [["broken"], ["stuck"], ["power"]]},
        }
    )
    try:
        started = time.monotonic()
        outcome = asyncio.run(
            fence_node(
                spec, "v1", action="off", by="test", epoch=1, agent_dirs=(TEST_FENCE_AGENTS,)
            )
        )
        took = time.monotonic() - started
    finally:
        stop(victim)
    record = outcome.record
    assert record.succeeded
    assert record.level == 3
    assert record.devices == ("power",)
    assert "level 1: broken: off failed" in record.reason
    assert "level 2: stuck: off failed: timed out after 1.0s (killed)" in record.reason
    assert "level 3: power: off succeeded" in record.reason
    assert 1.0 <= took < 5.0
    assert not is_alive(victim)


def test_fence_device_config_is_checked_before_storing(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(1, agents=False)
    base = {"properties": {"stonith-enabled": True}, "nodes": [{"node": "n1"}]}
    missing_agent = dict(
        base, fencing={"devices": [{"device": "d1", "agent": "fence_nonexistent"}]}
    )
    missing_param = dict(
        base, fencing={"devices": [{"device": "d1", "agent": "fence_apc", "params": {"ip": "x"}}]}
    )
    for name, doc, why in (
        (
            "agent",
            missing_agent,
            "fencing.devices[0].agent: fence agent fence_nonexistent is not installed",
        ),
        ("param", missing_param, "fencing.devices[0].params: fence_apc requires username"),
    ):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        result = hastack_cli(lc, "config", "apply", str(path), "--yes", timeout=60)
        assert result.returncode == 2, result.stderr
        assert why in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_an_operator_confirms_a_node_down_when_its_fence_device_cannot(
    local_cluster: ClusterFactory,
) -> None:
    """The holder crashes and its only fence device fails. `hastack fence confirm` — refused
    while the node is a member, and for a node the cluster does not know — records the
    operator's word as the node's newest fencing, and the group runs elsewhere. (A group
    would move anyway once the crashed node's lease expired past its self-fencing margin:
    its watchdog makes that safe. What needs the confirmation is what the lease cannot
    clear — a Galera node that may run a Primary, a compute's evacuation: G4 in the lab.)"""
    lc = local_cluster(3, namespaces=True, agent_settings={"fence-agent-dirs": [TEST_FENCE_AGENTS]})
    config = yaml.safe_load(config_text(lc, fencing=True))
    config["fencing"]["devices"] = [{"device": "broken", "agent": "fence_test_fail"}]
    apply(lc, yaml.safe_dump(config))
    old = holder(lc)

    done = hastack_cli(lc, "fence", "confirm", old, "--yes")
    assert done.returncode != 0
    assert f"{old} is a member now (its lease is alive): it is not down" in done.stderr
    done = hastack_cli(lc, "fence", "confirm", "n9", "--yes")
    assert done.returncode != 0
    assert "n9 is not a node of this cluster" in done.stderr

    lc.crash(old)

    # The device fails every time.
    def failed_once() -> bool:
        return any(h["node"] == old and h["result"] == "failed" for h in _fence_history(lc))

    wait_until(failed_once, 30, 0.2)
    # Confirmed once its membership is gone (its lease expired): before, it is refused.
    wait_until(lambda: old not in snapshot(lc).members, 30, 0.2)

    done = hastack_cli(lc, "fence", "confirm", old, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{old} recorded as fenced (confirmed down by hand)" in done.stdout
    new = moved_from(lc, old, timeout=30)
    assert new != old
    history = hastack_cli(lc, "fence", "history", old, "-v").stdout
    assert "confirmed-by-hand" in history
    assert "no device was run" in history
    # the newest entry stays the confirmation: failed attempts still under way are not added
    assert [h["result"] for h in _fence_history(lc) if h["node"] == old][-1] == "success"
    assert overlaps(lc) == []
