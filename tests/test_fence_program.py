"""fence_hastack_local and the watchdog's reset as programs: they leave without the
interpreter's teardown (os._exit), and nothing they print or log is lost by it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hastack.lab.power import write_registry
from hastack.processes import ProcessRecord, start_ticks

FENCE = [sys.executable, "-m", "hastack.lab.fence_hastack_local"]


def _node(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    log = tmp_path / "exclusive.jsonl"
    registry = tmp_path / "power.json"
    ticks = start_ticks(victim.pid)
    assert ticks is not None
    record = ProcessRecord(pid=victim.pid, start_ticks=ticks)
    write_registry(registry, {"n1": {"processes": [record.to_json()], "exclusive_log": str(log)}})
    return victim, registry, log


def test_off_from_stdin_answers_and_logs_before_leaving(tmp_path: Path) -> None:
    victim, registry, log = _node(tmp_path)
    try:
        done = subprocess.run(
            FENCE, input=f"action=off\nplug=n1\nregistry={registry}\n",
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "Success: n1 powered off"
        assert victim.wait(timeout=5) == -9
        entry = json.loads(log.read_text().splitlines()[-1])
        assert (entry["node"], entry["event"], entry["by"]) == ("n1", "dead", "fence_hastack_local")
        status = subprocess.run(
            [*FENCE, "-o", "status", "-n", "n1", f"--registry={registry}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert (status.returncode, status.stdout.strip()) == (2, "Status: OFF")
    finally:
        victim.kill()
        victim.wait()


def test_an_unknown_node_is_a_clear_failure(tmp_path: Path) -> None:
    victim, registry, _ = _node(tmp_path)
    try:
        done = subprocess.run(
            FENCE, input=f"action=off\nplug=n9\nregistry={registry}\n",
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 1
        assert "unknown node 'n9' (known: n1)" in done.stderr
        assert victim.poll() is None  # nothing of another node was touched
    finally:
        victim.kill()
        victim.wait()


def test_the_watchdog_reset_reports_and_spares_its_caller(tmp_path: Path) -> None:
    victim, registry, log = _node(tmp_path)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hastack.lab.power", str(registry), "n1"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "n1: powered off"
        assert victim.wait(timeout=5) == -9
        assert json.loads(log.read_text().splitlines()[-1])["by"] == "watchdog"
    finally:
        victim.kill()
        victim.wait()
