"""The stored scenarios (scenarios/*.yaml) without a lab: each one loads, and its cluster
part passes the validation `hastack config apply` makes (the lab applies it the same way),
so a scenario the cluster would refuse fails here in a second instead of after a lab boot;
the generated ones are what their generator writes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import pytest
import yaml

from hastack.lab.net import Lab
from hastack.lab.net.topology import Host, HostRole
from hastack.lab.scenario import is_down, load_scenario
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


class _Lab:
    """What `is_down` reads of a lab: the lab's own power flag, the processes alive, roles."""

    def __init__(self, powered: bool, alive: set[str], role: HostRole) -> None:
        self._powered, self._alive, self._role = powered, alive, role

    def powered(self, _name: str) -> bool:
        return self._powered

    def alive(self, _name: str, what: str) -> bool:
        return what in self._alive

    def host(self, name: str) -> Host:
        return Host(name, self._role, f"ns-{name}", ("10.0.0.1",))


@pytest.mark.parametrize(
    ("powered", "alive", "role", "down"),
    [
        (True, {"agent", "etcd"}, HostRole.CONTROLLER, False),
        (False, set(), HostRole.CONTROLLER, True),  # crashed by the lab
        # Powered off by its fencing or its watchdog: the lab's flag still says powered.
        (True, set(), HostRole.CONTROLLER, True),
        (True, {"agent"}, HostRole.CONTROLLER, True),  # a controller without its etcd
        (True, {"agent"}, HostRole.COMPUTE, False),  # a compute runs no etcd
        (True, set(), HostRole.COMPUTE, True),
    ],
)
def test_a_host_fenced_off_is_down_for_the_soak_to_boot(
    powered: bool, alive: set[str], role: HostRole, down: bool
) -> None:
    # A soak's repair boots `@down`: before, only hosts the lab itself crashed, and a host
    # fenced during a partition stayed off for the rest of the run.
    assert is_down(cast(Lab, _Lab(powered, alive, role)), "n1") is down
