"""Work assignment in the lab (docs/assign.md): routers as addresses with responders inside
the hosts' namespaces, probed from the client host, real faults. The crash of a router node
runs in the default test command; the others are marked `lab`."""

from __future__ import annotations

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
    assert result.valid, summary
