"""fence_hastack_local: the fence agent of local clusters and the lab.

It drives their power switch (`hastack.lab.power`): `off` kills every process of a node and
removes the addresses it added, as a power cut would; `status` reports truthfully; `on` runs
the node's power-on command from the registry. It speaks the fence-agents protocol, so
hastack runs it exactly like fence_ipmilan:

    printf 'action=off\\nplug=n1\\nregistry=/path/power.json\\n' | fence_hastack_local

Actions: off, on, reboot, status (exit 0 on, 2 off), monitor, list, metadata.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hastack.lab.power import (
    RegistryError,
    leave,
    power_off,
    power_status,
    preload,
    read_registry,
)

__all__ = ["main"]

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
        # Started ahead of need (hastack.fencing.protocol.WarmAgents), the agent waits here
        # for its arguments: what a power-off needs is loaded before the wait, not after the kill.
        preload()
        for line in sys.stdin.read().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                args[key.strip()] = value.strip()
    return args


def main(argv: list[str] | None = None) -> int:
    """The program (`argv` None: from the command line and stdin, and out at once when done)
    or one call of it (`argv` given: returns the exit status). Out at once: the fencer's
    answer is this process's exit (`hastack.lab.power.leave`)."""
    code = _act(_read_args(sys.argv[1:] if argv is None else argv))
    if argv is None:
        leave(code)
    return code


def _act(args: dict[str, str]) -> int:
    action = args.get("action", "reboot")
    if action == "metadata":
        print(METADATA)
        return 0
    registry_path = args.get("registry")
    if not registry_path:
        print("registry= is required", file=sys.stderr)
        return 1
    try:
        nodes = read_registry(Path(registry_path))
    except RegistryError as exc:
        print(exc, file=sys.stderr)
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
