"""The stored scenarios (scenarios/*.yaml) without a lab: each one loads, and its cluster
part passes the validation `hastack config apply` makes (the lab applies it the same way),
so a scenario the cluster would refuse fails here in a second instead of after a lab boot;
the generated ones are what their generator writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from hastack.lab.scenario import load_scenario
from hastack.model.config import parse_cluster_config

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))

sys.path.insert(0, str(REPO / "bench"))

import compute_scenario  # noqa: E402


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_cluster_is_a_valid_configuration(path: Path) -> None:
    scenario = load_scenario(path)
    # Placeholders (${power}, ${nova}) stay as they are: they only fill parameter values.
    config = parse_cluster_config(yaml.safe_dump(scenario.cluster), f"{path.name}: cluster")
    missing = [r for r in scenario.ready if config.find(r) is None]
    assert not missing, f"ready names no resource of the cluster: {missing}"


@pytest.mark.parametrize("name", sorted(compute_scenario.SCENARIOS))
def test_generated_scenarios_are_up_to_date(name: str) -> None:
    stored = (REPO / "scenarios" / f"{name}.yaml").read_text()
    assert stored == compute_scenario.render(compute_scenario.SCENARIOS[name]), (
        f"scenarios/{name}.yaml differs from what bench/compute_scenario.py writes: run it"
    )


def test_compute_scenarios_fence_then_evacuate_every_compute() -> None:
    for name in compute_scenario.SCENARIOS:
        scenario = load_scenario(REPO / "scenarios" / f"{name}.yaml")
        config = parse_cluster_config(yaml.safe_dump(scenario.cluster), name)
        computes = {f"c{i}" for i in range(1, scenario.lab.computes + 1)}
        assert {n.node for n in config.nodes} == computes, name
        assert all(config.fencing.evacuates(c) for c in computes), name
