"""`systemd:` resources against a real systemd: PID 1 of its own namespaces (tests/systemd_ns.py),
driven by SystemdDriver over D-Bus from inside them. Where this machine cannot run systemd
that way, the test skips and says exactly why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hastack.executor.agents import driver_for
from hastack.executor.agents.systemd import SystemdDriver
from hastack.executor.check import agent_problems
from hastack.model.config import AgentRef, parse_cluster_config
from systemd_ns import systemd_namespace

ROOT = Path(__file__).resolve().parent.parent

# Run inside the namespace: every step's (rc, reason) as JSON lines.
DRIVE = """
import asyncio, json, sys
from hastack.executor.agents.systemd import SystemdDriver
from hastack.model.operations import OpRequest

async def main() -> None:
    for step in sys.argv[1:]:
        unit, op = step.split(":")
        request = OpRequest(unit, unit, op, {}, {}, timeout=10.0)
        result = await SystemdDriver(unit).execute(request)
        print(json.dumps([step, result.rc, result.reason]), flush=True)

asyncio.run(main())
"""


def test_systemd_units_are_valid_agents() -> None:
    config = parse_cluster_config(
        "resources:\n  - {primitive: api, agent: 'systemd:openstack-nova-api'}\n", "c.yaml"
    )
    assert agent_problems(config) == []
    driver = driver_for(AgentRef.parse("systemd:openstack-nova-api"))
    assert isinstance(driver, SystemdDriver)
    assert driver.unit == "openstack-nova-api.service"
    assert SystemdDriver("web.socket").unit == "web.socket"


def test_start_monitor_stop_through_dbus(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    units = {
        "web.service": (
            "[Unit]\nDescription=a service like an OpenStack API\n"
            "[Service]\n"
            f"ExecStart=/bin/sh -c 'echo $$$$ > {marks}/web.pid; exec sleep 1000'\n"
            f"ExecStopPost=/bin/sh -c 'echo stopped > {marks}/web.stopped'\n"
        ),
        "broken.service": "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    }
    with systemd_namespace(tmp_path, units) as ns:

        def drive(*steps: str) -> list[tuple[str, int, str]]:
            result = ns.run(
                [sys.executable, "-c", DRIVE, *steps],
                env={"PYTHONPATH": str(ROOT / "src")},
            )
            assert result.returncode == 0, result.stderr
            return [tuple(json.loads(line)) for line in result.stdout.splitlines()]  # type: ignore[misc]

        # A probe finds it stopped; start runs it; monitor sees it; stop ends it.
        steps = drive("web:monitor", "web:start", "web:monitor")
        assert [(s, rc) for s, rc, _ in steps] == [
            ("web:monitor", 7),
            ("web:start", 0),
            ("web:monitor", 0),
        ]
        main_pid = int((marks / "web.pid").read_text())
        # It crashes: monitor reports it not running, as a failure to recover from.
        killed = ns.run(["kill", "-9", str(main_pid)])
        assert killed.returncode == 0, killed.stderr
        [(_, rc, reason)] = drive("web:monitor")
        assert rc == 7
        assert "failed" in reason
        # Start again (the failed state is reset first), then stop.
        steps = drive("web:start", "web:monitor", "web:stop", "web:monitor", "web:stop")
        assert [rc for _, rc, _ in steps] == [0, 0, 0, 7, 0]
        assert (marks / "web.stopped").read_text().strip() == "stopped"
        # A unit that cannot start, and one that does not exist.
        [(_, start_rc, start_reason), (_, mon_rc, _)] = drive("broken:start", "broken:monitor")
        assert start_rc == 1
        assert "result: exit-code" in start_reason
        assert mon_rc == 7
        [(_, missing_rc, missing_reason)] = drive("nowhere:monitor")
        assert missing_rc == 5
        assert "systemd has no such unit" in missing_reason
