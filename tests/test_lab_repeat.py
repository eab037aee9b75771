"""Recovering from the tenth fault as from the first (docs/control-plane.md): the partition and
the pause of the VIP holder, each eight times in a row on one lab, every run valid. Before the
fix of the wedge after a lost membership, runs 4 to 8 of the partition never recovered."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hastack.lab.net import Lab
from hastack.lab.scenario import load_scenario, run_scenario

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

SCENARIOS = Path(__file__).parent.parent / "scenarios"
RUNS = 8


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab.up(tmp_path_factory.mktemp("repeat") / "lab", nodes=3)
    try:
        yield lab
    finally:
        lab.down()
        assert lab.leftovers() == []


@pytest.mark.parametrize("name", ["vip-partition-holder", "vip-pause-holder"])
def test_every_one_of_eight_runs_on_one_lab_is_valid(lab: Lab, tmp_path: Path, name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    verdicts = []
    for run in range(1, RUNS + 1):
        result = run_scenario(scenario, tmp_path / f"run{run}", lab=lab)
        summary = (result.results / "summary.txt").read_text()
        verdicts.append((run, result.valid, summary if not result.valid else ""))
    failed = [(run, summary) for run, valid, summary in verdicts if not valid]
    assert not failed, "\n\n".join(f"run {run}:\n{summary}" for run, summary in failed)
