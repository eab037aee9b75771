"""Fence agents started ahead of need (hastack.fencing.protocol.WarmAgents): a fencing hands
its arguments to a process that has already started, and a waiting process whose parent
goes away does nothing."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from hastack.fencing import service
from hastack.fencing.protocol import WarmAgents, run_agent
from hastack.fencing.protocol import find_agent as protocol_find
from hastack.model.config import parse_cluster_config
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore

# A fence agent that takes a while to start (an interpreter and its imports), then reads its
# arguments; it records its pid at start, and acts (a line in `acted`) only when told a plug.
SLOW_AGENT = """#!/bin/sh
echo $$ >> "{dir}/started"
sleep 0.3
args=$(cat)
case "$args" in
  *plug=*) echo "$$ $args" | tr '\\n' ' ' >> "{dir}/acted"; echo >> "{dir}/acted" ;;
  *) exit 1 ;;
esac
echo "pid $$"
"""


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    path = tmp_path / "fence_slow"
    path.write_text(SLOW_AGENT.format(dir=tmp_path))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _wait_for(path: Path, lines: int, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path.read_text().splitlines() if path.exists() else []
        if len(found) >= lines:
            return found
        time.sleep(0.01)
    raise AssertionError(f"{path}: fewer than {lines} lines")


def test_a_fencing_uses_the_waiting_process_and_skips_its_start(agent: Path) -> None:
    async def main() -> tuple[str, float, str, float]:
        warm = WarmAgents()
        await warm.warm(agent)
        await asyncio.sleep(0.5)  # it has started, and waits for its arguments
        waited = await run_agent(agent, {"action": "off", "plug": "n1"}, 5.0, warm=warm)
        cold = await run_agent(agent, {"action": "off", "plug": "n2"}, 5.0, warm=warm)
        await warm.close()
        return waited.output, waited.duration, cold.output, cold.duration

    out, took, cold_out, cold_took = asyncio.run(main())
    started = _wait_for(agent.parent / "started", 2)
    assert out.strip() == f"pid {started[0]}"  # the process started ahead
    assert took < 0.2
    # The negative control: nothing waiting any more, so the next call starts its own.
    assert cold_out.strip() == f"pid {started[1]}"
    assert cold_took >= 0.3


def test_a_waiting_process_whose_parent_goes_away_does_nothing(agent: Path) -> None:
    async def main() -> int:
        warm = WarmAgents()
        await warm.warm(agent)
        proc = warm.take(agent)
        assert proc is not None
        assert proc.stdin is not None
        proc.stdin.close()  # what the parent's death does to the pipe
        return await proc.wait()

    rc = asyncio.run(main())
    assert rc != 0
    assert not (agent.parent / "acted").exists()


def test_close_ends_the_waiting_processes(agent: Path) -> None:
    async def main() -> int:
        warm = WarmAgents()
        await warm.warm(agent)
        pid = int(_wait_for(agent.parent / "started", 1)[0])
        await warm.close()
        return pid

    pid = asyncio.run(main())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_waiting_process_runs_at_the_liveness_priority_its_session_too(agent: Path) -> None:
    """Started in a session of its own, its nice value would count only within that session
    (kernel autogroups): the session gets the same priority."""
    from hastack.membership.priority import LIVENESS_NICE

    async def main() -> tuple[int, str | None]:
        warm = WarmAgents()
        await warm.warm(agent)
        pid = int(_wait_for(agent.parent / "started", 1)[0])
        group = Path(f"/proc/{pid}/autogroup")
        session = group.read_text().split()[-1] if group.exists() else None
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        await warm.close()
        return nice, session

    nice, session = asyncio.run(main())
    if os.geteuid() != 0:
        pytest.skip("a negative priority needs root")
    assert nice == LIVENESS_NICE
    if session is not None:
        assert session == str(LIVENESS_NICE)


def test_preparing_at_every_cycle_looks_for_the_programs_once_per_configuration(
    agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DC prepares at every cycle (hundreds a second at an apply at 100 computes): the
    fence programs are looked for again only when the configuration changes or after a
    while, and one process waits, however many cycles ask."""
    looked: list[str] = []

    def find(name: str, dirs: tuple[str, ...] = ()) -> Path | None:
        looked.append(name)
        return protocol_find(name, dirs)

    monkeypatch.setattr(service, "find_agent", find)
    text = (
        "properties: {stonith-enabled: true}\n"
        "fencing: {devices: [{device: d, agent: fence_slow, params: {plug: x}}]}\n"
    )
    first = parse_cluster_config(text, "a.yaml")
    second = parse_cluster_config(text, "b.yaml")

    async def main() -> None:
        fencing = service.FencingService(
            MemoryStore(MemoryBackend()), Keys("c"), "n1", [str(agent.parent)]
        )
        for _ in range(200):
            fencing.prepare(first)
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        assert looked == ["fence_slow"]
        fencing.prepare(second)  # a new configuration: looked for again
        assert looked == ["fence_slow"] * 2
        await asyncio.sleep(0.1)
        assert fencing.warm.fresh(agent)
        await fencing.warm.close()

    asyncio.run(main())
    assert len(_wait_for(agent.parent / "started", 1)) == 1
