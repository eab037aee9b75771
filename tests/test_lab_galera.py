"""Galera in the lab, end to end (docs/galera.md, components.md §1 G1–G4): three real
MariaDB Galera servers under the hastack:galera agents of a lab's controllers, behind the VIP
and the one-writer proxy, under a `mysql-set` insert load from the client host.

The writer crash (G1) runs in the default test command; the others are marked `lab`
(`scripts/test -m lab tests/test_lab_galera.py`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hastack.lab.scenario import ScenarioResult, load_scenario, run_scenario

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        shutil.which("mariadbd") is None or not Path("/usr/lib/galera/libgalera_smm.so").exists(),
        reason="mariadb-server and galera-4 are not installed (scripts/debian-packages)",
    ),
    pytest.mark.timeout(900),
]

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def run(name: str, tmp_path: Path) -> ScenarioResult:
    return run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), tmp_path / "results")


def test_crash_of_the_galera_writer_loses_nothing_and_it_rejoins_by_ist(tmp_path: Path) -> None:
    result = run("galera-writer-crash", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    lost = result.check("set")
    assert lost.valid is True, summary  # every acknowledged row read back
    assert lost.details["acknowledged"] > 500, summary  # 4 clients × 20/s for 30 s, less the outage
    writers = result.check("writers")
    assert writers.valid is True, summary  # never two nodes taking writes at once
    assert writers.details["changes"] >= 1, summary  # and the writer did move
    availability = result.check("availability")
    assert availability.valid is True, summary  # writes through the VIP back (within 15 s)
    rejoin = result.check("rejoin")
    assert rejoin.valid is True, summary  # Promoted again (within 60 s of its boot), by IST
    assert result.valid, summary
    crashed = rejoin.details["returns"][0]["node"]
    tenures = writers.details["tenures"]
    assert tenures[0]["node"] == crashed  # the writer was the node that crashed
    assert all(t["node"] != crashed for t in tenures[1:])  # and it never took writes back


def _assert_no_loss(result: ScenarioResult, name: str = "set") -> str:
    summary = (result.results / "summary.txt").read_text()
    found = result.check(name)
    assert found.valid is True, summary
    assert found.details["acknowledged"] > 0, summary
    return summary


@pytest.mark.lab
def test_power_loss_of_the_whole_cluster_recovers_from_the_most_advanced_node(
    tmp_path: Path,
) -> None:
    result = run("galera-crash-all", tmp_path)
    summary = _assert_no_loss(result)
    recovery = result.check("recovery")
    # no operator; the highest recovered position; its own UUID; writable within 60 s
    assert recovery.valid is True, summary
    assert recovery.details["right_choice"] is True, summary
    assert result.check("rejoin").valid is True, summary  # the others joined by IST
    assert result.check("writers").valid is True, summary
    assert result.valid, summary


@pytest.mark.lab
def test_partitioned_writer_leaves_refuses_writes_and_rejoins_after_the_heal(
    tmp_path: Path,
) -> None:
    result = run("galera-partition-writer", tmp_path)
    summary = _assert_no_loss(result, "set vip")
    assert result.check("set minority").valid is True, summary
    moved = result.check("writer-moved vip")
    assert moved.valid is True, summary  # left the minority within 10 s, nothing on it after
    # the partition cut the writer off (the node the minority client writes to), so there
    # was a move to judge
    assert len(moved.details["moves"]) == 1, summary
    minority = result.check("minority")
    assert minority.valid is True, summary  # refused (1047), acknowledged nothing
    assert result.check("writers vip").valid is True, summary
    rejoin = result.check("rejoin")
    assert rejoin.valid is True, summary  # synced again within 30 s of the heal, by IST
    assert result.valid, summary


@pytest.mark.lab
def test_a_node_gone_for_maintenance_blocks_the_bootstrap_until_it_is_forced(
    tmp_path: Path,
) -> None:
    result = run("galera-maintenance-force", tmp_path)
    summary = _assert_no_loss(result)
    bootstrap = result.check("bootstrap")
    assert bootstrap.valid is True, summary  # nothing before the operator, then the forced node
    assert result.check("rejoin").valid is True, summary
    # while waiting, the agents said for whom
    statuses = (result.results / "status.jsonl").read_text()
    assert "waiting for n3" in statuses, summary
    assert result.valid, summary


@pytest.mark.lab
def test_a_node_gone_and_fenced_lets_the_others_bootstrap_by_themselves(
    tmp_path: Path,
) -> None:
    result = run("galera-maintenance-fenced", tmp_path)
    summary = _assert_no_loss(result)
    assert result.check("bootstrap").valid is True, summary  # automatic, no operator
    recovery = result.check("recovery")
    assert recovery.valid is True, summary
    assert recovery.details["bootstrap"]["node"] in ("n1", "n2"), summary
    assert result.valid, summary
