"""The node's side of work assignment, with a real `hastack:service` instance that follows its
file through hastack.executor.assignfile.watch: the file, the confirmation, the `served`
report, the exclusivity record, release on a new grant, on stop and when self-fencing — and
an instance that never confirms keeps its entities counted as served."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hastack.executor.assignfile import read_assigned
from hastack.executor.exclusive import ExclusiveGuard
from hastack.executor.lrm import LocalResourceManager
from hastack.model.assign import AssignRole
from hastack.model.config import ClusterConfig, Role, parse_cluster_config
from hastack.model.status import NodeReport
from hastack.model.targets import NodeTarget
from hastack.processes import ProcessRecord, is_alive, send, wait_gone

pytestmark = pytest.mark.timeout(60)

A, S = AssignRole.ACTIVE, AssignRole.STANDBY


def _config(tmp: Path, extra: str = "") -> ClusterConfig:
    script = Path(__file__).parent / "assign_instance.py"
    return parse_cluster_config(
        f"""\
op-defaults: {{timeout: 5s}}
resources:
  - clone: router-clone
    resource:
      primitive: router
      agent: "hastack:service"
      params:
        command: "exec {sys.executable} {script} routers {tmp / "applied.jsonl"} {extra}"
        assign-ack: "true"
assignments:
  - {{assignment: routers, clone: router-clone, entities: [r1, r2, r3]}}
""",
        "t.yaml",
    )


class Node:
    def __init__(self, tmp: Path, config: ClusterConfig) -> None:
        self.tmp = tmp
        self.reports: list[NodeReport] = []
        self.published = asyncio.Event()
        self.guard = ExclusiveGuard("n1", tmp / "exclusive.jsonl")
        self.lrm = LocalResourceManager(
            "n1", state_dir=str(tmp), publish=self._publish, guard=self.guard
        )
        self.lrm.set_config(config, 1)
        self.revision = 10

    async def _publish(self, report: NodeReport) -> None:
        self.reports.append(report)
        self.published.set()

    def target(self, assigned: dict[str, AssignRole] | None, running: bool = True) -> None:
        self.revision += 1
        resources = {"router:0": Role.STARTED} if running else {}
        grants = {"routers": assigned} if assigned else {}
        t = NodeTarget(1, 1, resources, assigned=grants)
        self.lrm.set_target(t, dc_epoch=1, revision=self.revision)

    async def until(self, check: Callable[[NodeReport], bool], timeout: float = 15.0) -> NodeReport:
        async with asyncio.timeout(timeout):
            while True:
                if self.reports and check(self.reports[-1]):
                    return self.reports[-1]
                self.published.clear()
                await self.published.wait()

    def applied(self) -> list[dict[str, object]]:
        path = self.tmp / "applied.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def exclusive(self) -> list[tuple[str, str]]:
        lines = (self.tmp / "exclusive.jsonl").read_text().splitlines()
        return [(json.loads(x)["resource"], json.loads(x)["event"]) for x in lines]


def r_active(node: Node) -> dict[str, Role]:
    return node.reports[-1].active()


def _served(report: NodeReport) -> dict[str, AssignRole]:
    return dict(report.served.get("routers", {}))


async def _run(node: Node) -> asyncio.Task[None]:
    return asyncio.create_task(node.lrm.run())


async def _stop(task: asyncio.Task[None], node: Node) -> None:
    """End the executor, then the service it started (services outlive their executor)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for pidfile in node.tmp.glob("services/*/pid"):
        record = ProcessRecord.from_json(json.loads(pidfile.read_text()))
        if is_alive(record):
            send(record, signal.SIGKILL, group=True)
            wait_gone(record)


async def test_grant_confirm_release_and_stop(tmp_path: Path) -> None:
    node = Node(tmp_path, _config(tmp_path))
    task = await _run(node)
    try:
        node.target({"r1": A, "r2": S})
        report = await node.until(
            lambda r: _served(r) == {"r1": A, "r2": S} and r.acked == node.revision
        )
        assert report.resources["router:0"].role is Role.STARTED
        # The instance applied that generation before it was reported as served.
        file = read_assigned(tmp_path / "assign", "routers")
        assert file is not None
        assert (file.active, file.standby) == (("r1",), ("r2",))
        assert node.applied()[-1] == {
            "generation": file.generation,
            "active": ["r1"],
            "standby": ["r2"],
        }
        # A new grant: r1 released, r3 taken.
        node.target({"r3": A})
        await node.until(lambda r: _served(r) == {"r3": A} and r.acked == node.revision)
        assert node.applied()[-1]["active"] == ["r3"]
        assert node.exclusive() == [
            ("routers/r1", "acquire"),
            ("routers/r3", "acquire"),
            ("routers/r1", "release"),
        ]
        # Stopped: it serves nothing, and the file says so.
        node.target(None, running=False)
        await node.until(lambda r: not r.served and r.acked == node.revision)
        assert "router:0" not in r_active(node)
        assert node.exclusive()[-1] == ("routers/r3", "release")
        empty = read_assigned(tmp_path / "assign", "routers")
        assert empty is not None
        assert empty.active == ()
    finally:
        await _stop(task, node)


async def test_self_fencing_releases_every_entity(tmp_path: Path) -> None:
    node = Node(tmp_path, _config(tmp_path))
    task = await _run(node)
    try:
        node.target({"r1": A, "r2": A})
        await node.until(lambda r: _served(r) == {"r1": A, "r2": A} and r.acked == node.revision)
        loop = asyncio.get_running_loop()
        assert await node.lrm.release_exclusive(loop.time() + 5.0)
        assert node.guard.held == set()
        assert node.applied()[-1]["active"] == []
        assert node.lrm.served() == {}
    finally:
        await _stop(task, node)


async def test_an_instance_that_never_confirms_keeps_its_entities_counted(tmp_path: Path) -> None:
    node = Node(tmp_path, _config(tmp_path, "--never-ack"))
    task = await _run(node)
    try:
        node.target({"r1": A})
        # The notification times out: the DC must assume r1 may be served here.
        report = await node.until(lambda r: r.acked == node.revision and "router:0" in r.resources)
        assert _served(report) == {"r1": A}
        node.target({})
        await asyncio.sleep(0.2)
        report = await node.until(lambda r: r.acked == node.revision)
        # Never confirmed released: still counted as served (both sets), so never granted
        # elsewhere while this instance might serve it.
        assert _served(report) == {"r1": A}
        assert ("routers/r1", "release") not in node.exclusive()
    finally:
        await _stop(task, node)


async def test_an_ocf_agent_hears_its_entities_in_its_environment(tmp_path: Path) -> None:
    """OCF agents get the entities as notification variables, as Pacemaker passes them:
    OCF_RESKEY_CRM_meta_notify_assign_{name,active,standby,released,generation}."""
    log = tmp_path / "notified.jsonl"
    config = parse_cluster_config(
        f"""\
op-defaults: {{timeout: 5s}}
resources:
  - clone: dhcp-clone
    resource: {{primitive: dhcp, agent: "ocf:hastack-test:assignee", params: {{log: "{log}"}}}}
assignments:
  - {{assignment: networks, clone: dhcp-clone, replicas: 2, entities: [net1, net2]}}
""",
        "t.yaml",
    )
    node = Node(tmp_path, config)
    node.lrm = LocalResourceManager(
        "n1",
        state_dir=str(tmp_path),
        publish=node._publish,
        guard=node.guard,
        ocf_dirs=(str(Path(__file__).parent / "ocf" / "resource.d"),),
    )
    node.lrm.set_config(config, 1)
    task = await _run(node)
    try:

        def target(assigned: dict[str, AssignRole]) -> None:
            node.revision += 1
            t = NodeTarget(1, 1, {"dhcp:0": Role.STARTED}, assigned={"networks": assigned})
            node.lrm.set_target(t, dc_epoch=1, revision=node.revision)

        def served(r: NodeReport) -> dict[str, AssignRole]:
            return dict(r.served.get("networks", {}))

        target({"net1": A, "net2": S})
        await node.until(lambda r: served(r) == {"net1": A, "net2": S})
        target({"net2": A})
        await node.until(lambda r: served(r) == {"net2": A})
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        assert [(x["name"], x["active"], x["standby"], x["released"]) for x in lines] == [
            ("networks", "net1", "net2", ""),
            ("networks", "net2", "", "net1"),
        ]
        assert int(lines[1]["generation"]) == int(lines[0]["generation"]) + 1
    finally:
        await _stop(task, node)
