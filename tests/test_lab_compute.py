"""Instance HA end to end on the lab (docs/compute.md): computes as remote agents, the fake
Nova in the client host, instances as processes writing to the shared directory, a compute
crashed or cut off, fenced (power, then the evacuate step), its evacuable instances evacuated
by the evacuator resource; the compute service killed and restarted in place.

The crash and the link cut with three computes run in the default test command; the
30-compute variants and the service kill are marked `lab` (docs/compute.md, "Scenarios and
scale", says why: time on this shared 2-core machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hastack.lab.scenario import ScenarioResult, load_scenario, run_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def run(name: str, tmp_path: Path) -> ScenarioResult:
    return run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), tmp_path / "results")


def assert_evacuated(result: ScenarioResult) -> None:
    summary = (result.results / "summary.txt").read_text()
    instances = result.check("instances")
    assert instances.valid is True, summary
    problems = instances.details["problems"]
    assert problems == {k: [] for k in problems}, summary
    # Every evacuable instance ran elsewhere after the fence (the checker's times are
    # measured from the fence: all positive and within 10 s).
    moved = instances.details["moved_after_fence"]
    assert len(moved) == 4, summary
    assert all(0 < t <= 10 for t in moved.values()), summary
    assert instances.details["enabled"], summary  # enabled again once done and back
    assert result.check("boots-disabled").valid is True, summary
    assert result.check("exclusive").valid is not False, summary


def test_crashed_compute_is_fenced_then_evacuated(tmp_path: Path) -> None:
    assert_evacuated(run("compute-crash", tmp_path))


def test_cut_off_compute_runs_its_instances_until_the_fence_then_they_move(
    tmp_path: Path,
) -> None:
    assert_evacuated(run("compute-partition", tmp_path))


@pytest.mark.lab
@pytest.mark.parametrize("name", ["compute-kill-service", "compute-kill-service-30"])
def test_killed_compute_service_is_restarted_in_place(name: str, tmp_path: Path) -> None:
    result = run(name, tmp_path)
    summary = (result.results / "summary.txt").read_text()
    assert result.check("instances").valid is True, summary


@pytest.mark.lab
@pytest.mark.parametrize("name", ["compute-crash-30", "compute-partition-30"])
def test_thirty_computes(name: str, tmp_path: Path) -> None:
    assert_evacuated(run(name, tmp_path))
