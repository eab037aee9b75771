"""The RabbitMQ soak (issue 15): 100 random faults under oslo.messaging load, bounded in time.

The scenario is built by bench/rabbitmq_soak.py (from scenarios/rabbitmq-rpc-crash.yaml); the
lab run is `lab` and `slow` (about 12 minutes; under `flock /tmp/hastack-lab.lock`):

    scripts/test -m 'lab and slow' tests/test_rabbitmq_soak.py -s
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from hastack.lab.scenario import run_scenario
from hastack.model.config import parse_cluster_config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import rabbitmq_soak  # noqa: E402


def test_the_soak_is_a_valid_bounded_scenario_of_110_faults() -> None:
    scenario = rabbitmq_soak.soak_scenario()
    parse_cluster_config(yaml.safe_dump(scenario.cluster), "rabbitmq-soak: cluster")
    faults = [s for s in scenario.nemesis if s.op in rabbitmq_soak.FAULTS]
    assert len(faults) == rabbitmq_soak.SCHEDULED == 110
    assert {s.op for s in faults} == set(rabbitmq_soak.FAULTS)
    assert scenario.workloads[0].duration <= rabbitmq_soak.BOUND
    # One node at a time: every fault is repaired before the next one strikes.
    repairs = {"crash": "start", "partition": "heal", "pause": "resume"}
    steps = sorted(scenario.nemesis, key=lambda s: s.at)
    for i, step in enumerate(steps):
        if step.op in repairs:
            after = [s for s in steps[i + 1 :] if s.op in (*rabbitmq_soak.FAULTS, repairs[step.op])]
            assert after[0].op == repairs[step.op], (step, after[:1])
    with pytest.raises(ValueError, match="660 s bound"):
        rabbitmq_soak.soak_scenario(faults=120)


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_rabbitmq_soak_loses_no_confirmed_notification(tmp_path: Path) -> None:
    scenario = rabbitmq_soak.soak_scenario()
    result = run_scenario(scenario, tmp_path / "results")
    figures = rabbitmq_soak.figures(scenario, result)
    print("\n".join(figures.lines()))
    summary = (result.results / "summary.txt").read_text()
    # Every crash, partition and pause was carried out (a kill finds no broker on a node
    # that is down at that moment: counted only when done).
    scheduled = [s for s in scenario.nemesis if s.op in ("crash", "partition", "pause")]
    assert sum(v for k, v in figures.faults.items() if k != "kill") == len(scheduled), summary
    assert sum(figures.faults.values()) >= rabbitmq_soak.AT_LEAST, figures.lines()
    assert figures.drained, summary  # the servers' consumption was read back
    assert figures.confirmed > 0, summary
    assert figures.lost == 0, summary
    assert result.check("total-queue").valid is True, summary
