"""Work assignment in the lab (docs/assign.md): routers as addresses with responders inside
the hosts' namespaces, probed from the client host, real faults. The crash of a router node
runs in the default test command; the others are marked `lab`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hastack.lab.scenario import ScenarioResult, load_scenario, run_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def run(name: str, tmp_path: Path) -> ScenarioResult:
    return run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), tmp_path / "results")


def test_crash_of_a_router_node_moves_only_its_routers_once_fenced(tmp_path: Path) -> None:
    result = run("assign-crash-router", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    # No address on two hosts (the hub's own observation), nor in the agents' records.
    assert result.check("exclusive-observed").valid is True, summary
    assert result.check("exclusive").valid is True, summary
    check = result.check("assignment")
    assert check.valid is True, summary
    (fault,) = check.details["faults"]
    # About a third of the 30 routers were on the crashed node; they and only they moved.
    assert 5 <= len(fault["orphans"]) <= 15, fault
    assert fault["others_failed"] == {}
    assert fault["others_moved"] == []
    assert fault["moved_on_return"] == []
    assert check.details["unnecessary_moves"] == 0
    assert fault["fence_seconds"] is not None
    assert all(v is not None and v <= 2.0 for v in fault["after_fence"].values()), fault
    # The rebalance moved no more than the imbalance (the crashed node's share), each router
    # out for at most 2 s (the checker's bound), and only then.
    (rebalance,) = check.details["rebalances"]
    assert 1 <= len(rebalance["moved"]) <= len(fault["orphans"]), rebalance
    assert result.valid, summary


@pytest.mark.lab
def test_a_partitioned_router_node_stops_serving_before_the_survivors_take_over(
    tmp_path: Path,
) -> None:
    result = run("assign-partition-router", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("exclusive-observed").valid is True, summary
    assert result.check("exclusive").valid is True, summary
    check = result.check("assignment")
    assert check.valid is True, summary
    (fault,) = check.details["faults"]
    assert fault["orphans"], fault
    assert fault["moved_on_return"] == [], fault
    # The cut-off node released its routers itself (self-fencing), before the takeover.
    isolated = fault["fault"].split()[1].split("|")[0].strip()
    events = (result.results / "agents" / isolated / "events.jsonl").read_text()
    assert '"self-fenced"' in events or '"membership-lost"' in events, events[-2000:]


def _final_map(result: ScenarioResult) -> dict[str, list[str]]:
    lines = (result.results / "status.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    (view,) = [v for v in last["assignments"] if v["name"] == "routers"]
    return {e["entity"]: e["nodes"] for e in view["entities"]}


@pytest.mark.lab
def test_replicas_two_fail_over_to_the_standby_and_get_a_new_one(tmp_path: Path) -> None:
    result = run("assign-replicas-router", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("exclusive-observed").valid is True, summary
    check = result.check("assignment")
    assert check.valid is True, summary  # within 3 s, and 2 s of the fence
    (fault,) = check.details["faults"]
    crashed = fault["fault"].split()[1]
    final = _final_map(result)
    for entity in fault["orphans"]:
        assert len(final[entity]) == 2, final[entity]
        assert crashed not in final[entity], final[entity]


@pytest.mark.lab
def test_tooz_pollers_beside_hastack_pollers_through_a_crash(tmp_path: Path) -> None:
    result = run("assign-tooz-pollers", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    tooz, hastack = result.check("polls-tooz"), result.check("polls-hastack")
    print(summary)
    # Both judged; each within its own excused intervals after the crash.
    assert tooz.valid is True, summary
    assert hastack.valid is True, summary
    assert tooz.details["intervals"] >= 5
    # hastack's pollers moved the dead node's share once it was fenced: no duplicates.
    assert hastack.details["duplicate_polls"] == 0, summary


@pytest.mark.lab
def test_heat_engines_take_over_a_crashed_engines_jobs(tmp_path: Path) -> None:
    result = run("assign-heat-engines", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    jobs = result.check("jobs")
    assert jobs.valid is True, summary  # none stuck, FAILED only with a reason, in time
    assert jobs.details["takeovers"], summary  # the crash did catch a job mid-way
    assert jobs.details["states"].get("DONE", 0) > 0


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(1800)  # 100 faults 6 s apart: about 11 minutes, past the default 300 s
def test_soak_of_random_faults_over_the_routers(tmp_path: Path) -> None:
    result = run("assign-soak-router", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    print(summary)
    check = result.check("assignment")
    assert len(check.details["faults"]) >= 100, summary
    assert check.details["unnecessary_moves"] == 0, summary
    assert result.check("exclusive-observed").valid is True, summary  # 0 double-served
    assert check.valid is True, summary
