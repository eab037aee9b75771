"""Scenarios end to end on the lab: real namespaces, etcd, agents, a VIP and an HTTP API,
client load from the client host, faults, and the checkers over what was recorded.

The VIP-holder crash (about 30 s) and the two-link cable cut (net-link-cut, about 95 s) run
in the default test command; the others are marked
`lab` (`scripts/test -m lab`, see docs/lab.md).
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


@pytest.mark.lab
def test_rabbitmq_quorum_queue_loses_no_confirmed_message_across_a_node_crash(
    tmp_path: Path,
) -> None:
    result = run("rabbitmq-queue-crash", tmp_path)
    check = result.check("total-queue")
    assert check.valid is True, check.summary
    assert check.details["confirmed"] > 500
    assert check.details["lost"] == []


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
