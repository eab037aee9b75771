"""fence_hastack_local and the watchdog's reset as programs: they leave without the
interpreter's teardown (os._exit), and nothing they print or log is lost by it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hastack.lab.power import write_registry
from hastack.processes import ProcessRecord, start_ticks

FENCE = [sys.executable, "-m", "hastack.lab.fence_hastack_local"]


@dataclass
class Node:
    victim: subprocess.Popen[bytes]  # the node's one process
    registry: Path
    log: Path  # its exclusivity log

    def run(self, argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=30, check=False
        )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    log = tmp_path / "exclusive.jsonl"
    registry = tmp_path / "power.json"
    ticks = start_ticks(victim.pid)
    assert ticks is not None
    record = ProcessRecord(pid=victim.pid, start_ticks=ticks)
    write_registry(registry, {"n1": {"processes": [record.to_json()], "exclusive_log": str(log)}})
    yield Node(victim, registry, log)
    victim.kill()
    victim.wait()


def test_off_from_stdin_answers_and_logs_before_leaving(node: Node) -> None:
    done = node.run(FENCE, f"action=off\nplug=n1\nregistry={node.registry}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Success: n1 powered off"
    assert node.victim.wait(timeout=5) == -9
    entry = json.loads(node.log.read_text().splitlines()[-1])
    assert (entry["node"], entry["event"], entry["by"]) == ("n1", "dead", "fence_hastack_local")
    status = node.run([*FENCE, "-o", "status", "-n", "n1", f"--registry={node.registry}"])
    assert (status.returncode, status.stdout.strip()) == (2, "Status: OFF")


def test_an_unknown_node_is_a_clear_failure(node: Node) -> None:
    done = node.run(FENCE, f"action=off\nplug=n9\nregistry={node.registry}\n")
    assert done.returncode == 1
    assert "unknown node 'n9' (known: n1)" in done.stderr
    assert node.victim.poll() is None  # nothing of another node was touched


def test_the_watchdog_reset_reports_and_spares_its_caller(node: Node) -> None:
    done = node.run([sys.executable, "-m", "hastack.lab.power", str(node.registry), "n1"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "n1: powered off"
    assert node.victim.wait(timeout=5) == -9
    assert json.loads(node.log.read_text().splitlines()[-1])["by"] == "watchdog"
