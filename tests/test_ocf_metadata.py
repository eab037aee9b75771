"""An OCF agent's meta-data is read once per version of its script, however many primitives
and operations ask for it (Pacemaker's controller caches it per agent the same way). Each
primitive has a driver of its own; before the shared cache, a node taking on 150 Dummy
primitives ran `Dummy meta-data` 150 times beside its 150 probes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hastack.executor.agents import MetadataCache, driver_for
from hastack.executor.agents.ocf import OcfDriver
from hastack.executor.lrm import LocalResourceManager
from hastack.model.config import AgentRef, parse_cluster_config
from hastack.model.status import NodeReport

pytestmark = pytest.mark.timeout(30)

META = """<?xml version="1.0"?>
<resource-agent name="counted" version="1">
  <parameters><parameter name="state" required="0"/></parameters>
  <actions>
    <action name="start" timeout="20s"/><action name="stop" timeout="20s"/>
    <action name="monitor" timeout="20s"/><action name="meta-data" timeout="5s"/>
  </actions>
</resource-agent>"""


def counted_agent(root: Path, *, meta_rc: int = 0) -> Path:
    """`root/test/counted`: logs each action it is called with to `root/calls`; probes find
    nothing running. With `meta_rc`, its meta-data fails with that exit code."""
    script = root / "test" / "counted"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> "{root}/calls"\n'
        'case "$1" in\n'
        f"  meta-data) cat <<'EOF'\n{META}\nEOF\n  exit {meta_rc};;\n"
        "  monitor) exit 7;;\n"
        "esac\n"
        "exit 0\n"
    )
    script.chmod(0o755)
    return script


def calls(root: Path) -> list[str]:
    path = root / "calls"
    return path.read_text().split() if path.exists() else []


def drivers(root: Path, cache: MetadataCache | None, n: int) -> list[OcfDriver]:
    ref = AgentRef.parse("ocf:test:counted")
    found = [driver_for(ref, ocf_dirs=(str(root),), metadata_cache=cache) for _ in range(n)]
    assert all(isinstance(d, OcfDriver) for d in found)
    return [d for d in found if isinstance(d, OcfDriver)]


async def test_twenty_drivers_asking_at_once_read_it_once(tmp_path: Path) -> None:
    counted_agent(tmp_path)
    found = await asyncio.gather(*(d.metadata() for d in drivers(tmp_path, MetadataCache(), 20)))
    assert {m.name if m else None for m in found} == {"counted"}
    assert calls(tmp_path) == ["meta-data"]


async def test_without_a_shared_cache_each_driver_reads_it(tmp_path: Path) -> None:
    """The negative control: the count above can see more than one read."""
    counted_agent(tmp_path)
    await asyncio.gather(*(d.metadata() for d in drivers(tmp_path, None, 5)))
    assert calls(tmp_path) == ["meta-data"] * 5


async def test_a_changed_script_is_read_again_and_a_failed_read_is_not_kept(
    tmp_path: Path,
) -> None:
    cache = MetadataCache()
    script = counted_agent(tmp_path, meta_rc=1)
    driver = drivers(tmp_path, cache, 1)[0]
    assert await driver.metadata() is None
    assert "meta-data failed" in driver.metadata_problem
    assert await driver.metadata() is None
    assert calls(tmp_path) == ["meta-data"] * 2  # a failure is asked again
    counted_agent(tmp_path)  # the agent upgraded: same path, new contents
    stat = script.stat()
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    meta = await driver.metadata()
    assert meta is not None
    assert meta.name == "counted"
    assert driver.metadata_problem == ""
    await driver.metadata()
    assert calls(tmp_path) == ["meta-data"] * 3


async def test_a_missing_script_says_so(tmp_path: Path) -> None:
    driver = drivers(tmp_path, MetadataCache(), 1)[0]
    assert await driver.metadata() is None
    assert driver.metadata_problem == f"agent script {driver.path} is not installed"


async def test_an_executor_probing_twenty_primitives_reads_the_meta_data_once(
    tmp_path: Path,
) -> None:
    agents = tmp_path / "agents"
    counted_agent(agents)
    config = parse_cluster_config(
        "resources:\n"
        + "".join(f'  - {{primitive: p{i}, agent: "ocf:test:counted"}}\n' for i in range(20)),
        "test.yaml",
    )
    reports: list[NodeReport] = []
    done = asyncio.Event()

    async def publish(report: NodeReport) -> None:
        reports.append(report)
        if len(report.probed) == 20:
            done.set()

    lrm = LocalResourceManager(
        "n1", state_dir=str(tmp_path / "state"), publish=publish, ocf_dirs=(str(agents),)
    )
    lrm.set_config(config, revision=1)
    task = asyncio.create_task(lrm.run())
    try:
        await asyncio.wait_for(done.wait(), 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(calls(agents)) == ["meta-data"] + ["monitor"] * 20
