"""Time from a hard crash of the VIP holder to the VIP answering on another node, with
fencing on — beside keepalived doing the same job, measured in the same lab, same probe.

    .venv/bin/python bench/vip_failover.py [--trials 10] [--keepalived-trials 10]

One lab (3 controllers). hastack: a VIP (hastack:vip) with an HTTP API on every node,
fence_hastack_local as the fence device, default detection timings (heartbeats every 200 ms,
suspect after 1 s). Each trial: a probe in the client host connects to VIP:8080 every 20 ms
(0.3 s timeout); the holder loses power (NICs down, every process killed); the figure is
crash → first answer from the new holder. The crashed host is booted again before the next
trial. keepalived: the same hosts, the same probe, VRRP with Debian's defaults (advert_int
1 s). Pacemaker is printed as documented defaults (corosync token 3 s + consensus 3.6 s,
then fencing), not measured: it does not run in this lab. A figure, never a pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hastack.lab.net import Lab

sys.path.insert(0, str(Path(__file__).parent))

from keepalived_anchor import PROBE, first_answer_after, run_trials


def cluster(lab: Lab) -> dict[str, object]:
    vip = f"{lab.topology.net_prefix(0)}.100"
    # The link's own prefix: a longer one makes the VIP the source of the holder's etcd
    # peer connections, which the members refuse (hastack.executor.agents.vip).
    netmask = str(lab.topology.network(0).prefixlen)
    return {
        "properties": {"stonith-enabled": True},
        "fencing": {
            "devices": [
                {
                    "device": "power",
                    "agent": "fence_hastack_local",
                    "params": {"registry": str(lab.power_registry)},
                }
            ]
        },
        "op-defaults": {"timeout": "10s"},
        "resources": [
            {
                "primitive": "vip",
                "agent": "hastack:vip",
                "params": {"ip": vip, "cidr_netmask": netmask, "nic": "eth0"},
                "ops": [{"name": "monitor", "interval": "1s"}],
            },
            {
                "clone": "api-clone",
                "resource": {
                    "primitive": "api",
                    "agent": "hastack:service",
                    "params": {
                        "command": f"exec {sys.executable} -m hastack.lab.net.demo_api --port 8080",
                        "health-port": "8080",
                    },
                    "ops": [{"name": "monitor", "interval": "1s"}],
                },
            },
        ],
        "constraints": [
            {"colocation": "vip-with-api", "resource": "vip", "with": "api-clone"},
            {"order": "api-then-vip", "first": "api-clone", "then": "vip"},
        ],
    }


def holder(lab: Lab) -> str | None:
    report = json.loads(lab.status())
    nodes = {n["name"] for n in report.get("nodes", []) if n.get("online")}
    found = [
        r["node"]
        for r in report.get("resources", [])
        if r["instance"] == "vip" and r.get("role") == "Started" and r["node"] in nodes
    ]
    return found[0] if len(found) == 1 else None


def wait_settled(lab: Lab, timeout: float = 60) -> str:
    """A VIP holder and every controller online with its API running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = json.loads(lab.status())
        online = [n for n in report.get("nodes", []) if n.get("online")]
        apis = {
            r["node"]
            for r in report.get("resources", [])
            if r["instance"].startswith("api") and r.get("role") == "Started"
        }
        node = holder(lab)
        if node and len(online) == len(lab.controllers()) and len(apis) == len(online):
            return node
        time.sleep(0.3)
    raise RuntimeError("the cluster did not settle")


def trial(lab: Lab) -> tuple[float, str, str]:
    old = wait_settled(lab)
    time.sleep(1.0)
    vip = f"{lab.topology.net_prefix(0)}.100"
    probe = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.host("client").namespace,
            sys.executable,
            "-c",
            PROBE,
            vip,
            "8080",
            "10",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    lab.crash(old)
    crashed_at = time.time()  # after the interfaces went down: nothing answers from it
    out, _ = probe.communicate(timeout=30)
    took = first_answer_after(json.loads(out), crashed_at, old)
    new = holder(lab) or "?"
    lab.start(old)
    if took is None:
        raise RuntimeError(f"no answer from another host within 9 s after crashing {old}")
    return took, old, new


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--keepalived-trials", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        lab = Lab.up(Path(tmp) / "lab", nodes=3)
        try:
            config = Path(tmp) / "cluster.yaml"
            config.write_text(yaml.safe_dump(cluster(lab)))
            lab.apply_config(config)
            print(
                "hastack, fencing on (heartbeats 200 ms, suspect after 1 s, fence_hastack_local):"
            )
            for i in range(args.trials):
                took, old, new = trial(lab)
                ours.append(took)
                print(
                    f"  trial {i + 1:2d}: {old} crashed -> VIP answers from {new} after {took:.2f}s"
                )
            config.write_text(yaml.safe_dump({"properties": {"stonith-enabled": False}}))
            lab.apply_config(config)
            time.sleep(3)
            if args.keepalived_trials:
                print("keepalived, same lab, same probe (VRRP advert_int 1 s):")
                theirs = run_trials(lab, args.keepalived_trials)
        finally:
            lab.down()
    print()

    def row(name: str, values: list[float]) -> str:
        med, hi, lo = statistics.median(values), max(values), min(values)
        return f"{name:34}{med:9.2f}{hi:9.2f}{lo:9.2f}"

    print(f"{'':34}{'median':>9}{'max':>9}{'min':>9}")
    print(row("hastack (s)", ours))
    if theirs:
        print(row("keepalived, measured (s)", theirs))
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"hastack median / keepalived median = {ratio:.2f}")
    print(
        "Pacemaker (documented defaults, not measured here): corosync token 3 s + consensus "
        "3.6 s before the node is lost, then fencing (IPMI 5-15 s), then the start: 15-25 s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
