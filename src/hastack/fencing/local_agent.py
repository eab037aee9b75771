"""fence_hastack_local: a fence agent for local clusters and the lab.

It powers a node off by killing every process that belongs to it and removing the addresses
it added (what a power cut does to a host), and reports status truthfully. It speaks the
fence-agents protocol, so hastack runs it exactly like fence_ipmilan:

    printf 'action=off\\nplug=n1\\nregistry=/path/power.json\\n' | fence_hastack_local

The registry (written by `hastack cluster up` and `hastack lab up`) says, per node, what
belongs to it:

    {"nodes": {"n1": {"netns": "hs3fa9-n1",            every process inside it
                      "processes": [{"pid": 4242, "start_ticks": 998}],
                      "service_pidfiles": "/d/n1/agent/services/*/pid",
                      "keep_addresses": ["192.168.250.1"],  addresses a fresh boot has
                      "exclusive_log": "/d/n1/agent/exclusive.jsonl",
                      "on": ["python3", "-m", "hastack", "cluster", "--dir", "/d", "start", "n1"]}}}

Actions: off, on, reboot, status (exit 0 on, 2 off), monitor, list, metadata.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hastack.nsthread import call_in_netns
from hastack.processes import ProcessRecord, is_alive

__all__ = ["main", "power_off", "power_status"]

METADATA = """<?xml version="1.0" ?>
<resource-agent name="fence_hastack_local" shortdesc="Power off a hastack local or lab node">
<longdesc>Kills every process of a node of a hastack local cluster or lab and removes the
addresses it added, as a power cut would.</longdesc>
<parameters>
  <parameter name="action" unique="0" required="1">
    <getopt mixed="-o, --action=[action]" />
    <content type="string" default="reboot" />
    <shortdesc lang="en">Fencing action</shortdesc>
  </parameter>
  <parameter name="plug" unique="0" required="1">
    <getopt mixed="-n, --plug=[node]" />
    <content type="string" />
    <shortdesc lang="en">The node to fence</shortdesc>
  </parameter>
  <parameter name="registry" unique="0" required="1">
    <getopt mixed="--registry=[file]" />
    <content type="string" />
    <shortdesc lang="en">power.json of the local cluster or lab</shortdesc>
  </parameter>
</parameters>
<actions>
  <action name="on" /><action name="off" /><action name="reboot" /><action name="status" />
  <action name="monitor" /><action name="list" /><action name="metadata" />
</actions>
</resource-agent>
"""


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def _pids_in(netns: str) -> list[int]:
    inode = _netns_inode(netns)
    if inode is None:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                out.append(int(entry))
        except OSError:
            continue
    return out


def _records(node: dict[str, Any]) -> list[ProcessRecord]:
    out = []
    for raw in node.get("processes", []):
        try:
            out.append(ProcessRecord.from_json(raw))
        except (KeyError, TypeError, ValueError):
            continue
    pattern = node.get("service_pidfiles")
    pidfiles = list(glob.glob(pattern)) if pattern else []
    pidfiles += [p for p in node.get("other_pidfiles", []) if Path(p).exists()]
    if pidfiles:
        for pidfile in pidfiles:
            try:
                out.append(ProcessRecord.from_json(json.loads(Path(pidfile).read_text())))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return out


def power_status(node: dict[str, Any], *, exclude: set[int] | None = None) -> bool:
    """Is anything of the node still running (apart from `exclude`)?"""
    if any(is_alive(r) for r in _records(node) if not exclude or r.pid not in exclude):
        return True
    netns = node.get("netns")
    return bool(netns and [p for p in _pids_in(str(netns)) if not exclude or p not in exclude])


def _flush_addresses(netns: str, keep: set[str]) -> None:
    # pyroute2 is imported here: the agent must start fast, and most calls never need it.
    from pyroute2 import IPRoute  # noqa: PLC0415

    def flush() -> None:
        with IPRoute() as ipr:
            for addr in ipr.get_addr():
                address = addr.get_attr("IFA_ADDRESS")
                if addr["index"] == 1 or address in keep or addr["scope"] != 0:
                    continue
                family = socket.AF_INET if ":" not in address else socket.AF_INET6
                if family == socket.AF_INET6 and address.startswith("fe80"):
                    continue
                ipr.addr("del", index=addr["index"], address=address, prefixlen=addr["prefixlen"])

    if _netns_inode(netns) is not None:
        call_in_netns(netns, flush)


def power_off(node: dict[str, Any], name: str, *, exclude: set[int] | None = None) -> None:
    """SIGKILL everything of the node, remove the addresses it added, and record the moment
    for the exclusivity checker. Fast on purpose: a watchdog reset must be over before the
    DC may recover what the node ran (the self-fence margin)."""
    skip = exclude or set()
    netns = node.get("netns")
    for round_ in range(5):
        for record in _records(node):
            if record.pid in skip or not is_alive(record):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
        if netns:
            for pid in _pids_in(str(netns)):
                if pid not in skip:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if not power_status(node, exclude=skip):
            break
        time.sleep(0.01 * (round_ + 1))  # children forked meanwhile die in the next round
    if netns:
        _flush_addresses(str(netns), set(node.get("keep_addresses", [])))
    log = node.get("exclusive_log")
    if log:
        entry = {"node": name, "event": "dead", "wall": time.time(), "by": "fence_hastack_local"}
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _read_args(argv: list[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    # Command-line form (-o ACTION, --plug=, -n) as fence-agents accept it.
    it = iter(argv)
    for item in it:
        if item in ("-o", "--action"):
            args["action"] = next(it, "")
        elif item in ("-n", "--plug"):
            args["plug"] = next(it, "")
        elif item.startswith("--") and "=" in item:
            key, _, value = item[2:].partition("=")
            args[key.replace("-", "_")] = value
    if not argv:
        for line in sys.stdin.read().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                args[key.strip()] = value.strip()
    return args


def main(argv: list[str] | None = None) -> int:
    args = _read_args(sys.argv[1:] if argv is None else argv)
    action = args.get("action", "reboot")
    if action == "metadata":
        print(METADATA)
        return 0
    registry_path = args.get("registry")
    if not registry_path:
        print("registry= is required", file=sys.stderr)
        return 1
    try:
        registry = json.loads(Path(registry_path).read_text())
        nodes: dict[str, dict[str, Any]] = registry["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot read registry {registry_path}: {exc}", file=sys.stderr)
        return 1
    if action == "monitor":
        return 0
    if action == "list":
        for name in sorted(nodes):
            print(f"{name},{name}")
        return 0
    plug = args.get("plug") or args.get("port") or args.get("nodename")
    if not plug or plug not in nodes:
        print(f"unknown node {plug!r} (known: {', '.join(sorted(nodes))})", file=sys.stderr)
        return 1
    node = nodes[plug]
    if action == "status":
        on = power_status(node)
        print(f"Status: {'ON' if on else 'OFF'}")
        return 0 if on else 2
    if action in ("off", "reboot"):
        power_off(node, plug)
        if power_status(node):
            print(f"Failed: {plug} still has processes", file=sys.stderr)
            return 1
        print(f"Success: {plug} powered off")
        if action == "off":
            return 0
    if action in ("on", "reboot"):
        command = node.get("on")
        if not command:
            print(f"Success: {plug} has no power-on command; it stays off")
            return 0 if action == "reboot" else 1
        subprocess.Popen(  # argv from the registry our own tooling wrote
            command, start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        print(f"Success: {plug} powering on")
        return 0
    print(f"unknown action {action!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
