"""The executor end to end: three real agents on a real etcd run what the DC decides.

Each node has its own network namespace (the agents stay on loopback for etcd and run every
resource operation inside their node's namespace), so VIPs really move between interfaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import ClusterFactory
from hastack.lab.local import LocalCluster
from hastack.model.audit import Actor, AuditRecord
from hastack.model.config import Role, parse_cluster_config
from hastack.model.members import ClusterSnapshot
from hastack.model.requests import CleanupRequest
from hastack.model.state import base_id
from hastack.model.status import ResourceReport
from hastack.nsthread import call_in_netns
from hastack.processes import ProcessRecord, is_alive
from hastack.store import Keys, PutOp
from hastack.store.config import read_config, write_config
from hastack.store.snapshot import read_snapshot
from helpers import wait_until

TEST_AGENTS = str(Path(__file__).parent / "ocf" / "resource.d")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def snapshot(lc: LocalCluster) -> ClusterSnapshot:
    async def read() -> ClusterSnapshot:
        async with lc.store(2.0) as store:
            return await read_snapshot(store, Keys(lc.name))

    return asyncio.run(read())


def apply(lc: LocalCluster, text: str) -> None:
    config = parse_cluster_config(text, "test.yaml")

    async def write() -> None:
        async with lc.store(2.0) as store:
            keys = Keys(lc.name)
            stored = await read_config(store, keys)
            record = AuditRecord.of_change(0.0, Actor("test", "test", "here"), "test", 0, [])
            await write_config(store, keys, config, expected=stored.revision, record=record)

    asyncio.run(write())


def reports(lc: LocalCluster, primitive: str) -> dict[str, tuple[str, ResourceReport]]:
    """node -> (instance, report) for every node reporting an instance of `primitive`: the
    members, less those fenced since they joined (their lease may outlive them; the DC
    counts them off, as Pacemaker does a fenced node)."""
    out = {}
    snap = snapshot(lc)
    for node, report in snap.statuses.items():
        if node not in snap.members or snap.fenced_since_join(node):
            continue
        for instance, r in report.resources.items():
            if base_id(instance) == primitive:
                out[node] = (instance, r)
    return out


def running(lc: LocalCluster, primitive: str) -> dict[str, Role]:
    return {n: r.role for n, (_, r) in reports(lc, primitive).items() if r.role is not Role.STOPPED}


def wait_running(
    lc: LocalCluster, primitive: str, check: Callable[[dict[str, Role]], bool], timeout: float = 20
) -> dict[str, Role]:
    def probe() -> tuple[dict[str, Role]] | None:
        now = running(lc, primitive)
        return (now,) if check(now) else None

    return wait_until(probe, timeout, 0.1)[0]


def has_address(lc: LocalCluster, node: str, address: str) -> bool:
    """Looked at from a thread inside the node's namespace: pyroute2's `NetNS` forks a child
    to open its socket there, and a fork of this threaded process (gRPC's threads) crashed
    with a segmentation fault in a CI run."""
    from pyroute2 import IPRoute

    def look() -> bool:
        with IPRoute() as ip:
            return any(a.get_attr("IFA_ADDRESS") == address for a in ip.get_addr())

    return call_in_netns(lc.netns(node) or "", look)


def service_record(lc: LocalCluster, node: str, instance: str) -> ProcessRecord:
    found = live_service(lc, node, instance)
    assert found is not None, f"no running process for {instance} on {node}"
    return found


def live_service(lc: LocalCluster, node: str, instance: str) -> ProcessRecord | None:
    """The process a hastack:service instance runs on a node, if it is running now."""
    for pidfile in sorted((lc.agent_state_dir(node) / "services").glob(f"{instance}-*/pid")):
        try:
            record = ProcessRecord.from_json(json.loads(pidfile.read_text()))
        except (OSError, ValueError):
            continue
        if is_alive(record):
            return record
    return None


BASE = """\
properties: {stonith-enabled: false}
op-defaults: {timeout: 10s}
resources:
  - group: web
    resources:
      - primitive: ip
        agent: hastack:vip
        params: {ip: 192.168.250.100, cidr_netmask: "24", nic: eth0}
        ops: [{name: monitor, interval: 1s}]
      - primitive: app
        agent: hastack:service
        params: {command: "exec sleep 3600"}
        ops: [{name: monitor, interval: 1s}]
  - clone: dummy-clone
    resource:
      primitive: dummy
      agent: ocf:heartbeat:Dummy
      ops: [{name: monitor, interval: 2s}]
"""


@pytest.fixture
def cluster(local_cluster: ClusterFactory) -> LocalCluster:
    return local_cluster(3, namespaces=True, agent_settings={"ocf-agent-dirs": [TEST_AGENTS]})


def test_group_and_clone_come_up_in_order_and_stop_in_reverse(cluster: LocalCluster) -> None:
    lc = cluster
    apply(lc, BASE)
    ip_nodes = wait_running(lc, "ip", lambda r: len(r) == 1)
    app_nodes = wait_running(lc, "app", lambda r: len(r) == 1)
    dummies = wait_running(lc, "dummy", lambda r: len(r) == 3)
    (node,) = ip_nodes
    assert app_nodes == {node: Role.STARTED}, "group members run together"
    assert set(dummies) == {"n1", "n2", "n3"}, "a clone instance on every node"
    assert has_address(lc, node, "192.168.250.100")
    assert not any(has_address(lc, n, "192.168.250.100") for n in lc.node_names if n != node)
    # Start order: app's start began after ip's start had finished.
    _, ip = reports(lc, "ip")[node]
    _, app = reports(lc, "app")[node]
    assert ip.last_op is not None
    assert app.last_op is not None
    assert ip.last_op.op == "start"
    assert app.last_op.op == "start"
    assert app.last_op.at - app.last_op.duration >= ip.last_op.at
    # Stop order: disabling the group stops app first, then ip.
    apply(
        lc, BASE.replace("  - group: web\n", "  - group: web\n    meta: {target-role: Stopped}\n")
    )
    wait_running(lc, "ip", lambda r: not r)
    _, ip = reports(lc, "ip")[node]
    _, app = reports(lc, "app")[node]
    assert ip.last_op is not None
    assert app.last_op is not None
    assert (ip.last_op.op, app.last_op.op) == ("stop", "stop")
    assert ip.last_op.at - ip.last_op.duration >= app.last_op.at
    assert not has_address(lc, node, "192.168.250.100")
    assert running(lc, "dummy").keys() == {"n1", "n2", "n3"}


def test_killed_service_is_recovered_then_moves_then_cleanup_lets_it_back(
    cluster: LocalCluster,
) -> None:
    lc = cluster
    config = """\
properties: {stonith-enabled: false}
resource-defaults: {migration-threshold: 2}
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - primitive: svc
    agent: hastack:service
    params: {command: "exec sleep 3600"}
    ops: [{name: monitor, interval: 1s}]
constraints:
  - {location: svc-likes-n1, resource: svc, node: n1, score: 100}
"""
    apply(lc, config)
    wait_running(lc, "svc", lambda r: r.keys() == {"n1"})
    first = service_record(lc, "n1", "svc")
    os.kill(first.pid, 9)

    # Recovered in place: a new process on the same node, fail count 1.
    def replaced() -> bool:
        now = live_service(lc, "n1", "svc")
        return now is not None and now.pid != first.pid

    wait_until(replaced, 15, 0.1)
    _, report = reports(lc, "svc")["n1"]
    assert report.fail_count == 1
    assert report.failed_op is not None
    assert report.failed_op.op == "monitor"
    # A second failure reaches migration-threshold: it moves away from n1.
    os.kill(service_record(lc, "n1", "svc").pid, 9)
    moved = wait_running(lc, "svc", lambda r: bool(r) and "n1" not in r)
    assert len(moved) == 1
    # Cleanup forgets the failures: its location preference brings it back to n1.
    request_cleanup(lc, "svc")
    wait_running(lc, "svc", lambda r: r.keys() == {"n1"})
    assert reports(lc, "svc")["n1"][1].fail_count == 0


def request_cleanup(lc: LocalCluster, resource: str) -> None:
    async def send() -> None:
        async with lc.store(2.0) as store:
            lease = await store.grant_lease(30)
            key = Keys(lc.name).prefix + f"requests/cleanup/{time.monotonic_ns()}"
            await store.txn(
                [], success=[PutOp(key, CleanupRequest(resource).encode(), lease=lease.id)]
            )

    asyncio.run(send())


def test_standby_empties_a_node_and_maintenance_leaves_things_alone(cluster: LocalCluster) -> None:
    lc = cluster
    config = yaml.safe_load(BASE)
    config["nodes"] = [{"node": "n1"}, {"node": "n2"}, {"node": "n3"}]
    apply(lc, yaml.safe_dump(config))
    (node,) = wait_running(lc, "app", lambda r: len(r) == 1)
    wait_running(lc, "dummy", lambda r: len(r) == 3)
    for entry in config["nodes"]:
        if entry["node"] == node:
            entry["standby"] = True
    apply(lc, yaml.safe_dump(config))
    moved = wait_running(lc, "app", lambda r: len(r) == 1 and node not in r)
    wait_running(lc, "dummy", lambda r: node not in r and len(r) == 2)
    # Maintenance on the node that now runs the group: its resources stay even when disabled.
    (holder,) = moved
    pid = service_record(lc, holder, "app").pid
    for entry in config["nodes"]:
        entry.pop("standby", None)
        if entry["node"] == holder:
            entry["maintenance"] = True
    config["resources"][0]["meta"] = {"target-role": "Stopped"}
    apply(lc, yaml.safe_dump(config))
    time.sleep(3)
    assert running(lc, "app") == {holder: Role.STARTED}
    assert service_record(lc, holder, "app").pid == pid
    target = snapshot(lc).targets[holder]
    assert "app" in target.unmanaged


def test_a_hanging_start_is_killed_at_its_timeout(cluster: LocalCluster) -> None:
    lc = cluster
    apply(
        lc,
        """\
properties: {stonith-enabled: false}
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - {primitive: stuck, agent: "ocf:hastack-test:hang"}
constraints:
  - {location: stuck-on-n2, resource: stuck, node: n2, score: 100}
""",
    )

    def failed_on_n2() -> ResourceReport | None:
        found = reports(lc, "stuck").get("n2")
        return found[1] if found and found[1].failed_op else None

    report = wait_until(failed_on_n2, 20, 0.1)
    assert report.failed_op is not None
    assert report.failed_op.op == "start"
    assert "timed out after 2s" in report.failed_op.reason  # the agent's meta-data timeout
    assert report.fail_count >= 1_000_000  # a failed start bans the node (start-failure-is-fatal)
    assert 1.9 <= report.failed_op.duration < 4
    # The hung process group is gone.
    assert not any("sleep 3600" in _cmdline(pid) and _in_ns(pid, lc.netns("n2")) for pid in _pids())


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _in_ns(pid: int, netns: str | None) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return False


def test_restarted_agent_adopts_running_resources(cluster: LocalCluster, tmp_path: Path) -> None:
    lc = cluster
    # With a clone whose probe takes half a second, as a real agent's may: the restarted
    # agent's probes are surely still under way when its first report is due.
    operations = tmp_path / "operations.log"
    slow = f"""\
  - clone: slow-clone
    resource:
      primitive: slow
      agent: ocf:hastack-test:slow-probe
      params: {{log: "{operations}"}}
"""
    apply(lc, BASE + slow)
    (node,) = wait_running(lc, "app", lambda r: len(r) == 1)
    wait_running(lc, "dummy", lambda r: len(r) == 3)
    wait_running(lc, "slow", lambda r: len(r) == 3)
    started = sorted(operations.read_text().splitlines())
    assert started == [f"start {n} slow" for n in ("n1", "n2", "n3")]
    pid = service_record(lc, node, "app").pid
    _, before = reports(lc, "app")[node]
    assert before.last_op is not None
    assert before.last_op.op == "start"
    life = snapshot(lc).members[node].revision
    # Killed as soon as its resources run, maybe before the DC has heard that its target is
    # done: the new agent must adopt them all the same.
    lc.kill(node, ["agent"])
    lc.start(node, ["agent"])

    def settled() -> bool:
        """The new life has reported, and has done the target the DC wrote for it."""
        snap = snapshot(lc)
        member, report = snap.members.get(node), snap.statuses.get(node)
        if member is None or member.revision == life or report is None:
            return False
        return (
            report.updated >= member.joined_at
            and snap.current_target(node) is not None
            and report.acked == snap.target_revisions[node]
        )

    wait_until(settled, 20, 0.1)
    time.sleep(2)
    assert settled()
    # Back online with the same process, adopted by its probe: no new start.
    assert running(lc, "app") == {node: Role.STARTED}
    assert service_record(lc, node, "app").pid == pid
    _, after = reports(lc, "app")[node]
    assert after.last_op is not None
    assert after.last_op.op == "probe"
    _, dummy = reports(lc, "dummy")[node]
    assert dummy.last_op is not None
    assert dummy.last_op.op == "probe"
    assert has_address(lc, node, "192.168.250.100")
    assert sorted(operations.read_text().splitlines()) == started  # no stop, no new start


def test_bad_agents_are_reported_clearly(cluster: LocalCluster) -> None:
    lc = cluster
    apply(
        lc,
        """\
properties: {stonith-enabled: false}
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - {primitive: noisy, agent: "ocf:hastack-test:garbage"}
  - {primitive: missing, agent: "ocf:hastack-test:no-such-agent"}
  - {primitive: unconfigured, agent: "ocf:hastack-test:needs-param"}
""",
    )

    def reasons(primitive: str) -> set[str]:
        return {
            r.failed_op.reason
            for _, (_, r) in reports(lc, primitive).items()
            if r.failed_op is not None
        }

    wait_until(lambda: reasons("noisy") and reasons("unconfigured"), 20, 0.2)
    assert any("unknown exit code 42" in why for why in reasons("noisy")), reasons("noisy")
    assert any("required parameter(s) missing: target" in why for why in reasons("unconfigured"))
    # A missing script is found by the probe on every node: not installed, never started.
    wait_until(lambda: len(reasons("missing")) >= 1 and len(reports(lc, "missing")) == 3, 20, 0.2)
    assert all("is not installed" in why for why in reasons("missing"))
    assert running(lc, "missing") == {}
    # Every node keeps running.
    assert lc.running() == {n: {"etcd": True, "agent": True} for n in lc.node_names}


def test_debian_ipaddr2_runs_unchanged_in_a_namespace(cluster: LocalCluster) -> None:
    lc = cluster
    apply(
        lc,
        """\
properties: {stonith-enabled: false}
resources:
  - primitive: vip2
    agent: ocf:heartbeat:IPaddr2
    params: {ip: 192.168.250.200, cidr_netmask: "24", nic: eth0}
    ops: [{name: monitor, interval: 2s}]
""",
    )
    (node,) = wait_running(lc, "vip2", lambda r: len(r) == 1)
    wait_until(lambda: has_address(lc, node, "192.168.250.200"), 10, 0.1)
    assert not any(has_address(lc, n, "192.168.250.200") for n in lc.node_names if n != node)


def test_exclusive_discovery_keeps_n3_from_probing_and_nothing_waits_for_it(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Controller-only resources and a compute node: n3 never looks for ctl (no probe ever
    reaches its agent), ctl starts on n1 or n2 although n3 would score highest, and the DC
    does not wait for a probe from n3."""
    lc = cluster
    calls = tmp_path / "recorder.log"
    calls.touch()

    def all_reported() -> bool:
        # Every node a member that has reported in this life: the DC counts it online and
        # would wait for its probes.
        snap = snapshot(lc)
        return all(
            n in snap.members
            and n in snap.statuses
            and snap.statuses[n].updated >= snap.members[n].joined_at
            for n in ("n1", "n2", "n3")
        )

    wait_until(all_reported, 20, 0.1)
    apply(
        lc,
        f"""\
properties: {{stonith-enabled: false}}
nodes: [{{node: n1}}, {{node: n2}}, {{node: n3}}]
resources:
  - primitive: ctl
    agent: ocf:hastack-test:recorder
    params: {{log: "{calls}"}}
    ops: [{{name: monitor, interval: 1s}}]
constraints:
  - {{location: ctl-n1, resource: ctl, node: n1, score: 0, resource-discovery: exclusive}}
  - {{location: ctl-n2, resource: ctl, node: n2, score: 0, resource-discovery: exclusive}}
  - {{location: ctl-likes-n3, resource: ctl, node: n3, score: INFINITY}}
""",
    )
    (node,) = wait_running(lc, "ctl", lambda r: len(r) == 1)
    assert node in ("n1", "n2")
    # Its monitor runs, so the agent log shows a working resource; give it a few turns.
    wait_until(lambda: f"{node} monitor 1000" in calls.read_text(), 10, 0.1)
    snap = snapshot(lc)
    assert set(snap.members) == {"n1", "n2", "n3"}, "n3 took part all along"
    n3 = snap.statuses["n3"]
    assert n3.unprobed == {"ctl"}
    assert "ctl" not in n3.probed
    assert all("ctl" in snap.statuses[n].probed for n in ("n1", "n2"))
    lines = calls.read_text().splitlines()
    assert {"n1 monitor 0", "n2 monitor 0"} <= set(lines), "n1 and n2 probed it"
    assert not [line for line in lines if line.startswith("n3 ")], "n3 never ran its agent"
    assert "not probing 1 resource(s) here (resource-discovery): ctl" in (
        lc.agent_log("n3").read_text()
    )


@pytest.mark.parametrize("nice", [10, 0])
def test_an_agent_action_runs_below_the_agent_in_its_own_session_too(nice: int) -> None:
    """resource-nice must hold where the kernel shares the CPU between sessions first
    (autogroups): each action runs in a session of its own, where `nice` alone counts only
    against that session's own processes. With 0 (the negative control) nothing is set."""
    from hastack.executor.agents.ocf import run_process

    if not Path("/proc/self/autogroup").exists():
        pytest.skip("this kernel has no autogroups")
    script = "sleep 0.3; cat /proc/self/autogroup"  # the session's priority, once set
    result, out = asyncio.run(run_process(["sh", "-c", script], {}, 10.0, nice=nice))
    assert result.rc == 0, result
    assert out.split()[-1] == str(nice), out
