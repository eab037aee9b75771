"""The power switch of local clusters and the lab: what a power cut does to one of their nodes.

`power_off` kills every process that belongs to the node and removes the addresses it added;
`power_status` says whether anything of it still runs. What belongs to a node is read from the
*power registry* that `hastack cluster up` and `hastack lab up` write next to their state:

    {"nodes": {"n1": {"netns": "hs3fa9-n1",            every process inside it
                      "processes": [{"pid": 4242, "start_ticks": 998}],
                      "service_pidfiles": "/d/n1/agent/services/*/pid",
                      "other_pidfiles": ["/d/n1/agent/watchdog.pid"],
                      "keep_addresses": ["192.168.250.1"],  addresses a fresh boot has
                      "exclusive_log": "/d/n1/agent/exclusive.jsonl",
                      "volatile": ["/d/n1/agent/rsctmp"],    emptied: what /run loses
                      "on": ["python3", "-m", "hastack", "cluster", "--dir", "/d", "start", "n1"]}}}

Two programs drive the switch: the fence agent `fence_hastack_local`
(`hastack.lab.fence_hastack_local`), and the reset command that local clusters and the lab
give their agents' process watchdogs (`watchdog: {kind: process, reset: [...]}`):

    python -m hastack.lab.power REGISTRY NODE

which powers NODE off sparing itself and the process that ran it (the watchdog, so it can
report), and exits 0 once nothing else of the node runs.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from hastack.nsthread import call_in_netns
from hastack.processes import ProcessRecord, is_alive, pids_by_netns

__all__ = [
    "NodePower",
    "RegistryError",
    "clear_volatile",
    "leave",
    "main",
    "power_off",
    "power_status",
    "read_registry",
    "reset_command",
    "write_registry",
]

NodePower = dict[str, Any]  # one node's entry in the registry


class RegistryError(Exception):
    """The power registry cannot be read; the message says which file and why."""


def read_registry(path: Path) -> dict[str, NodePower]:
    """node name -> what belongs to it."""
    try:
        nodes: dict[str, NodePower] = json.loads(path.read_text())["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"cannot read registry {path}: {exc}") from None
    if not isinstance(nodes, dict):
        raise RegistryError(f"cannot read registry {path}: 'nodes' is not a mapping")
    return nodes


def write_registry(path: Path, nodes: dict[str, NodePower]) -> None:
    """Replace the registry at once: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"nodes": nodes}, indent=2, sort_keys=True))
    tmp.replace(path)


def reset_command(registry: Path) -> list[str]:
    """The process watchdog's reset for a node listed in `registry` (the watchdog appends the
    node's name)."""
    return [sys.executable, "-m", "hastack.lab.power", str(registry)]


def _pids_in(netns: str) -> list[int]:
    return [r.pid for r in pids_by_netns([netns]).get(netns, [])]


def _records(node: NodePower) -> list[ProcessRecord]:
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


def power_status(node: NodePower, *, exclude: set[int] | None = None) -> bool:
    """Is anything of the node still running (apart from `exclude`)?"""
    if any(is_alive(r) for r in _records(node) if not exclude or r.pid not in exclude):
        return True
    netns = node.get("netns")
    return bool(netns and [p for p in _pids_in(str(netns)) if not exclude or p not in exclude])


def preload() -> None:
    """Load now what a power-off needs later (pyroute2, ~0.1 s on idle cores, several times that
    on busy ones): for a fence agent started ahead of need, waiting for its arguments."""
    import pyroute2  # noqa: PLC0415
    import pyroute2.netlink.exceptions  # noqa: F401, PLC0415


def _flush_addresses(netns: str, keep: set[str]) -> None:
    # pyroute2 is imported here, after the killing: it takes ~0.1 s to load, and most
    # callers (status, local clusters without namespaces) never need it; a fence agent started
    # ahead of need has it loaded already (`preload`).
    from pyroute2 import IPRoute  # noqa: PLC0415
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    def flush() -> None:
        with IPRoute() as ipr:
            for addr in ipr.get_addr():
                address = addr.get_attr("IFA_ADDRESS")
                if addr["index"] == 1 or address in keep or addr["scope"] != 0:
                    continue
                family = socket.AF_INET if ":" not in address else socket.AF_INET6
                if family == socket.AF_INET6 and address.startswith("fe80"):
                    continue
                try:
                    ipr.addr(
                        "del", index=addr["index"], address=address, prefixlen=addr["prefixlen"]
                    )
                except NetlinkError as exc:
                    # Gone already: deleting a subnet's primary address takes its
                    # secondaries with it (a host with many added addresses, e.g. routers).
                    if exc.code != errno.EADDRNOTAVAIL:
                        raise

    if os.path.exists(f"/run/netns/{netns}"):
        call_in_netns(netns, flush)


def power_off(
    node: NodePower, name: str, *, exclude: set[int] | None = None, by: str = "fence_hastack_local"
) -> None:
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
    clear_volatile(node)
    log = node.get("exclusive_log")
    if log:
        entry = {"node": name, "event": "dead", "wall": time.time(), "by": by}
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")


def clear_volatile(node: NodePower) -> None:
    """Empty the node's volatile directories, as a power cut empties a host's /run: the
    state files OCF agents keep there (HA_RSCTMP) must not tell the next boot's probe that
    a resource still runs (`Dummy` would say it does)."""
    for directory in node.get("volatile", []):
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m hastack.lab.power REGISTRY NODE`: a process watchdog's reset (`argv` None:
    out at once when done, as `fence_hastack_local`, skipping the interpreter's teardown of
    pyroute2 — 0.1-0.4 s inside the self-fence margin)."""
    code = _reset(sys.argv[1:] if argv is None else argv)
    if argv is None:
        leave(code)
    return code


def leave(code: int) -> NoReturn:
    """End a power-switch program at once with `code`, its output flushed: without the
    interpreter's teardown, which with pyroute2 loaded took 0.1-0.4 s on this machine
    (2026-12-07), all of it after the node was off — on the failover's path (the fence
    agent) or inside the self-fence margin (the watchdog's reset). Open files are the
    caller's to have closed; the exclusivity log is closed after each write."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _reset(args: list[str]) -> int:
    if len(args) != 2:
        print("usage: python -m hastack.lab.power REGISTRY NODE", file=sys.stderr)
        return 2
    registry, name = Path(args[0]), args[1]
    try:
        node = read_registry(registry)[name]
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyError:
        print(f"no node {name!r} in registry {registry}", file=sys.stderr)
        return 2
    # Spared: this process, and the watchdog that runs it (it reports the reset, then exits).
    spare = {os.getpid(), os.getppid()}
    power_off(node, name, exclude=spare, by="watchdog")
    if power_status(node, exclude=spare):
        print(f"{name}: processes still running after the reset", file=sys.stderr)
        return 1
    print(f"{name}: powered off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
