"""The main job: a 3-node cluster on this machine, a node crash, and the failover shown.

Until the network-namespace lab lands this runs on loopback: three etcd members and three
agents; it crashes the DC's node (SIGKILL of its agent and its etcd member), measures how long
the cluster runs without a DC, shows the status before and after, brings the node back, and
removes everything.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from hastack.lab.local import LocalCluster
from hastack.ops.status import StatusReport, collect_status
from hastack.ops.status_text import render_text

__all__ = ["run_demo"]


def _status(lc: LocalCluster) -> StatusReport:
    return asyncio.run(collect_status(lc.client(), timeout=1.0))


def _wait(lc: LocalCluster, what: str, predicate: object, timeout: float = 30) -> StatusReport:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = _status(lc)
        if callable(predicate) and predicate(report):
            return report
        time.sleep(0.02)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:g}s")


def _banner(text: str) -> None:
    print()
    print(f"=== {text}")


def run_demo(nodes: int = 3) -> int:
    base = f"127.{random.randint(100, 254)}.{random.randint(1, 254)}.10"
    with tempfile.TemporaryDirectory(prefix="hastack-demo-") as tmp:
        _banner(f"starting a {nodes}-node cluster on loopback ({base[:-3]}.11 ...)")
        lc = LocalCluster.up(Path(tmp) / "cluster", nodes=nodes, base_address=base, cluster="demo")
        try:
            ttl = float(lc.state["timings"]["lease-ttl"])
            before = _wait(
                lc,
                "a DC and every node online",
                lambda r: (
                    r.dc_node is not None
                    and all(n.online for n in r.nodes)
                    and len(r.nodes) == nodes
                ),
            )
            print(render_text(before))
            victim = before.dc_node or ""
            _banner(f"crashing node {victim}, the DC (SIGKILL of its agent and etcd member)")
            crashed = time.monotonic()
            lc.kill(victim, ["agent", "etcd"])
            after = _wait(lc, "a new DC", lambda r: r.dc_node not in (None, victim))
            failover = time.monotonic() - crashed
            print(render_text(after))
            _banner(f"bringing {victim} back")
            lc.start(victim)
            back = _wait(
                lc,
                f"{victim} online",
                lambda r: any(n.name == victim and n.online for n in r.nodes),
            )
            print(render_text(back))
            _banner("result")
            print(f"  DC moved {victim} -> {after.dc_node} in {failover:.2f}s after the crash")
            print(f"  (lease TTL {ttl:g}s; epoch {before.dc_epoch} -> {after.dc_epoch})")
            print(f"  etcd kept quorum throughout: {after.quorum.healthy} of {after.quorum.total}")
        finally:
            lc.down()
        print("  cleaned up: every process stopped, every file removed")
    return 0
