"""The control plane under a burst of work (docs/control-plane.md): 3 controllers and 9
computes sharing this machine's two cores, 150 resources and a clone applied at once. Before
the watch-fed state, the liveness thread and throttling, every one of the twelve agents lost
its membership a few seconds after such an apply; now none may, and everything starts."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hastack.lab.net import Lab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

PRIMITIVES = 150


def burst_config() -> str:
    lines = ["properties: {stonith-enabled: false}", "resources:"]
    monitor = "ops: [{name: monitor, interval: 10s}]"
    lines += [
        f"  - {{primitive: d{i}, agent: 'ocf:heartbeat:Dummy', {monitor}}}"
        for i in range(PRIMITIVES)
    ]
    lines += [
        "  - clone: all-clone",
        f"    resource: {{primitive: everywhere, agent: 'ocf:heartbeat:Dummy', {monitor}}}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab.up(tmp_path_factory.mktemp("load") / "lab", nodes=3, computes=9)
    try:
        yield lab
    finally:
        lab.down()
        assert lab.leftovers() == []


def started(report: dict[str, Any]) -> tuple[int, int]:
    """(primitives started, clone instances started), by the nodes' own reports."""
    running = [
        r
        for r in report.get("resources", [])
        if r.get("role") == "Started" and r.get("node-online") and not r.get("failed")
    ]
    clones = sum(1 for r in running if r["instance"].partition(":")[0] == "everywhere")
    return len(running) - clones, clones


def events(lab: Lab, kind: str) -> list[dict[str, Any]]:
    out = []
    for host in lab.nodes():
        path = lab.agent_state_dir(host.name) / "events.jsonl"
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("event") == kind:
                out.append(entry)
    return out


def test_a_burst_of_150_resources_on_12_nodes_loses_no_membership(lab: Lab, tmp_path: Path) -> None:
    lab.wait_for(lab.is_settled, 60.0, "every node online with a DC")
    before = json.loads(lab.status())
    epoch = before["dc_epoch"]
    lost_before = len(events(lab, "membership-lost"))
    config = tmp_path / "burst.yaml"
    config.write_text(burst_config())
    applied, applied_at = time.monotonic(), time.time()
    lab.apply_config(config)
    report = lab.wait_for(lambda r: started(r) == (PRIMITIVES, 12), 240.0, "every resource started")
    took = time.monotonic() - applied
    print(f"{PRIMITIVES} primitives and a clone on 12 nodes: all started {took:.1f}s after apply")
    # Correctness, not timing: no member lost its membership, none was found silent (with
    # fencing on, a suspicion is a fence: nothing crashed, so any would be false), no new DC
    # was elected, nothing failed on the way.
    assert len(events(lab, "membership-lost")) == lost_before
    silent = [e for e in events(lab, "node-silent") if float(e["t"]) >= applied_at]
    assert silent == [], silent
    assert report["dc_epoch"] == epoch
    assert report["failed_actions"] == []
    assert len(report["nodes"]) == 12
    assert all(n["online"] for n in report["nodes"])
