"""Scenarios end to end on the lab: real namespaces, etcd, agents, a VIP and an HTTP API,
client load from the client host, faults, and the checkers over what was recorded.

The VIP-holder crash (about 30 s), the two-link cable cut (net-link-cut, about 95 s), the
RabbitMQ leader's crash (R1) and the memcached kill (M1) (under a minute each) run in the
default test command; the others are marked `lab` (`scripts/test -m lab`, see docs/lab.md).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from hastack.lab.scenario import ScenarioResult, load_scenario, run_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def run(name: str, tmp_path: Path) -> ScenarioResult:
    return run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), tmp_path / "results")


def assert_vip_safe_and_recovered(result: ScenarioResult) -> None:
    summary = (result.results / "summary.txt").read_text()
    observed = result.check("exclusive-observed")
    assert observed.valid is True, summary  # the lab saw the VIP move, never on two nodes
    assert result.check("exclusive").valid is not False, summary  # the agents' own records
    availability = result.check("availability")
    assert availability.valid is True, summary  # answered again, within expect.max-outage
    (outage,) = availability.details["outages"]
    assert outage["first_ok_after"] is not None
    for name in ("history.jsonl", "nemesis.jsonl", "status.jsonl", "availability.png",
                 "checks.json", "agents/n1/agent.log"):  # fmt: skip
        assert (result.results / name).exists(), name


def test_crash_of_the_vip_holder_moves_the_vip_once_and_the_service_recovers(
    tmp_path: Path,
) -> None:
    result = run("vip-crash-holder", tmp_path)
    assert_vip_safe_and_recovered(result)
    assert result.valid
    # The crashed holder's interval was closed by the crash, the new holder's began later.
    intervals = result.check("exclusive-observed").details["intervals"]
    assert len({i["node"] for i in intervals}) >= 2


def starts_after(result: ScenarioResult, op: str) -> list[str]:
    """Every successful `start` an agent logged after the nemesis' first `op`."""
    nemesis = [json.loads(x) for x in (result.results / "nemesis.jsonl").read_text().splitlines()]
    since = next(e["time"] for e in nemesis if e["f"] == op)
    found = []
    for log in sorted((result.results / "agents").glob("*/agent.log")):
        for line in log.read_text().splitlines():
            if " start " not in line or ": success" not in line:
                continue
            stamp = datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            if stamp >= since:
                found.append(f"{log.parent.name}: {line.split(' INFO: ')[-1]}")
    return found


@pytest.mark.lab
def test_partitioned_vip_holder_gives_way(tmp_path: Path) -> None:
    result = run("vip-partition-holder", tmp_path)
    assert_vip_safe_and_recovered(result)
    # The isolated holder stopped the VIP itself (no fencing in this scenario).
    summary = (result.results / "summary.txt").read_text()
    logs = "".join(p.read_text() for p in (result.results / "agents").glob("*/agent.log"))
    assert "self-fencing: stop vip: success" in logs, summary
    # Healing brings the old holder back without a restart storm: the VIP does not move
    # back, and nothing starts more than once.
    after = starts_after(result, "heal")
    assert not any("start vip" in x for x in after), after
    assert len(after) == len(set(after)), after


@pytest.mark.lab
def test_paused_vip_holder_never_shares_the_vip(tmp_path: Path) -> None:
    result = run("vip-pause-holder", tmp_path)
    assert_vip_safe_and_recovered(result)


@pytest.mark.lab
def test_etcd_keeps_every_acknowledged_write_across_a_controller_crash(tmp_path: Path) -> None:
    result = run("etcd-set-crash", tmp_path)
    check = result.check("set")
    assert check.valid is True, check.summary
    assert check.details["acknowledged"] > 100


@pytest.mark.lab
def test_lab_demo_runs_and_cleans_up() -> None:
    from hastack.lab.demo_lab import run_lab_demo

    assert run_lab_demo(keep_results=False) == 0


@pytest.mark.lab
def test_proxy_clone_behind_the_vip_survives_the_holder_crash(tmp_path: Path) -> None:
    result = run("proxy-crash-holder", tmp_path)
    assert_vip_safe_and_recovered(result)
    # every controller ran a proxy instance listening on the VIP (freebind) before the crash
    logs = "".join(p.read_text() for p in (result.results / "agents").glob("*/agent.log"))
    assert logs.count("start proxy:") >= 3, logs[-2000:]


def test_rabbitmq_leader_crash_loses_nothing_and_the_node_rejoins_by_itself(
    tmp_path: Path,
) -> None:
    """R1, under the hastack:rabbitmq agent (docs/rabbitmq.md): in the default run."""
    result = run("rabbitmq-queue-crash", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    check = result.check("total-queue")
    assert check.valid is True, summary
    assert check.details["confirmed"] > 300
    assert check.details["lost"] == []
    assert result.check("rabbitmq-rejoin").valid is True, summary
    logs = "".join(p.read_text() for p in (result.results / "agents").glob("*/agent.log"))
    assert "found the cluster" in logs, summary
    assert "restart from its own data" in logs, summary  # the crashed node kept its data
    # A time, so measured and printed, never a pass or fail here: issue 15 asks for 2 s
    # (1.5-1.9 s measured since the survivors cut the node off at its fence; docs/rabbitmq.md).
    print(f"publish resume: {result.check('publish-resume').summary}")
    # Likewise the rejoin's time (issue 15: within 15 s of the boot; judged above only as
    # "within the run", 60 s).
    print(f"rejoin: {result.check('rabbitmq-rejoin').summary}")


def test_memcached_killed_is_restarted_and_costs_no_error(tmp_path: Path) -> None:
    """M1 (docs/memcached.md): in the default run."""
    result = run("memcached-kill", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("cache-service").valid is True, summary
    assert result.check("cache-service").details["failed"] == 0, summary
    assert result.check("stale-read").valid is True, summary


@pytest.mark.lab
def test_memcached_back_from_a_partition_serves_no_stale_value(tmp_path: Path) -> None:
    result = run("memcached-partition", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("stale-read").valid is True, summary
    assert result.check("cache-service").details["failed"] == 0, summary
    logs = (result.results / "agents" / "n2" / "agent.log").read_text()
    assert "isolated: stopped memcached" in logs, summary


@pytest.mark.lab
def test_without_the_flush_a_partitioned_memcached_serves_stale_values(tmp_path: Path) -> None:
    """The negative control: the stale-read checker can fail."""
    result = run("memcached-partition-noflush", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("stale-read").valid is False, summary


def _logs(result: ScenarioResult) -> str:
    return "".join(p.read_text() for p in (result.results / "agents").glob("*/agent.log"))


@pytest.mark.lab
def test_rabbitmq_whole_cluster_power_loss_reforms_by_itself(tmp_path: Path) -> None:
    """R2: boots in random order; every node restarts from its own data."""
    result = run("rabbitmq-full-crash", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("total-queue").valid is True, summary
    assert result.check("rabbitmq-rejoin").valid is True, summary
    logs = _logs(result)
    assert "set its data aside" not in logs, summary
    assert logs.count("restart from its own data") >= 3, summary


@pytest.mark.lab
def test_rabbitmq_partitioned_node_pauses_and_comes_back(tmp_path: Path) -> None:
    """R3: pause_minority, clients on the majority, no partition left after the heal."""
    result = run("rabbitmq-partition", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("total-queue").valid is True, summary
    assert result.check("rabbitmq-rejoin").valid is True, summary  # includes: no partition


@pytest.mark.lab
def test_rabbitmq_removed_node_is_forgotten_once_and_replaced(tmp_path: Path) -> None:
    """R4: forgotten exactly once, no dead queue member, grown back to three."""
    result = run("rabbitmq-node-remove", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("total-queue").valid is True, summary
    assert result.check("rabbitmq-rejoin").valid is True, summary
    logs = _logs(result)
    assert logs.count("forgot rabbit@n3") == 1, summary
    assert "set its data aside" in logs, summary
    nemesis = [json.loads(x) for x in (result.results / "nemesis.jsonl").read_text().splitlines()]
    booted = next(e["time"] for e in nemesis if e["f"] == "start")
    # Every queue listed by a broker after the forget (a report written later: the one
    # written just before it may still be the latest for a few seconds) lacks n3.
    (forgot,) = [
        datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
        for line in logs.splitlines()
        if "forgot rabbit@n3" in line
    ]
    seen = 0
    for line in (result.results / "status.jsonl").read_text().splitlines():
        for entry in json.loads(line).get("rabbitmq") or []:
            for report in (entry.get("reports") or {}).values():
                if not forgot < report["at"] < booted:
                    continue
                for q in report.get("queues") or []:
                    assert "rabbit@n3" not in q["members"], q
                    seen += 1
    assert seen > 0, "no queue listed between the forget and the boot"


@pytest.mark.lab
def test_oslo_messaging_rpc_survives_its_brokers_crash(tmp_path: Path) -> None:
    """R5: ≤ 1 MessagingTimeout, calls back within 15 s, notifications all consumed."""
    result = run("rabbitmq-rpc-crash", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("rpc").valid is True, summary
    assert result.check("total-queue").valid is True, summary


def test_cutting_one_link_of_a_node_changes_nothing(tmp_path: Path) -> None:
    """docs/connectivity.md: two links, link 0 of the etcd leader's node cut for 60 s — it
    stays a member, no lease lost, no move, no fence; its pingd drops from 2000 to 1000."""
    result = run("net-link-cut", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("steady").valid is True, summary
    assert result.check("availability").valid is True, summary
    assert result.valid, summary
    pingd = set()
    for line in (result.results / "status.jsonl").read_text().splitlines():
        try:
            nodes = json.loads(line).get("nodes", [])
        except ValueError:
            continue
        pingd |= {(n["name"], n.get("attributes", {}).get("pingd")) for n in nodes}
    nemesis = [json.loads(x) for x in (result.results / "nemesis.jsonl").read_text().splitlines()]
    cut = next(e["host"] for e in nemesis if e["f"] == "link-down")
    assert (cut, "1000") in pingd, sorted(pingd)  # the cut was seen, and held no consequence
    assert (cut, "2000") in pingd, sorted(pingd)


@pytest.mark.lab
def test_the_vip_follows_connectivity_when_its_holder_loses_the_link(tmp_path: Path) -> None:
    result = run("net-vip-ping", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("availability").valid is True, summary  # moved within 10 s
    assert result.check("no-fence").valid is True, summary
    assert result.check("exclusive-observed").valid is True, summary
    intervals = result.check("exclusive-observed").details["intervals"]
    assert len({i["node"] for i in intervals}) >= 2, summary  # it did move


@pytest.mark.lab
def test_when_every_node_loses_the_target_the_vip_stays_and_an_alert_is_raised(
    tmp_path: Path,
) -> None:
    result = run("net-all-lose-target", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("steady").valid is True, summary  # the VIP stayed, nobody fenced
    assert result.check("alert").valid is True, summary
    assert result.valid, summary
