"""An active-backup bond under the cluster's traffic (docs/connectivity.md, "Bonds"): where
the kernel has the bonding module, two namespaces cabled by two veth pairs — one bonded
pair of cables, miimon 100 — and a cut of the active cable loses at most 200 ms of a
UDP probe stream sent every 10 ms. Skipped where there is no bonding module (this
machine's kernel: CONFIG_BONDING is not set), with that reason."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time

import pytest

from hastack.nsthread import call_in_netns


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _no_bond_reason(ns: str) -> str | None:
    """Try to make a bond in `ns` (the kernel loads the module if it has one): None if it
    could, else the kernel's answer."""
    made = subprocess.run(
        ["ip", "-n", ns, "link", "add", "bond0", "type", "bond", "mode", "active-backup",
         "miimon", "100"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode == 0:
        return None
    return (
        f"no bonding module in kernel {os.uname().release} (CONFIG_BONDING is not set "
        f"here): ip link add type bond: {made.stderr.strip()}"
    )


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bonds need root (namespaces)")


def test_active_backup_bond_loses_at_most_200ms_on_a_cut_of_the_active_cable() -> None:
    tag = secrets.token_hex(2)
    a, b = f"hb{tag}a", f"hb{tag}b"
    for ns in (a, b):
        ip("netns", "add", ns)
    try:
        for ns in (a, b):
            reason = _no_bond_reason(ns)
            if reason is not None:
                pytest.skip(reason)
        for k in (0, 1):
            ip("link", "add", f"v{tag}a{k}", "netns", a, "type", "veth",
               "peer", "name", f"v{tag}b{k}", "netns", b)  # fmt: skip
            ip("-n", a, "link", "set", f"v{tag}a{k}", "master", "bond0")
            ip("-n", b, "link", "set", f"v{tag}b{k}", "master", "bond0")
        for ns, address in ((a, "10.253.77.1/24"), (b, "10.253.77.2/24")):
            ip("-n", ns, "addr", "add", address, "dev", "bond0")
            ip("-n", ns, "link", "set", "bond0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        time.sleep(1.0)
        receiver = call_in_netns(b, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        receiver.bind(("10.253.77.2", 9999))
        receiver.settimeout(0.5)
        sender = call_in_netns(a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        got: list[int] = []

        def receive() -> None:
            while True:
                try:
                    got.append(int(receiver.recv(64)))
                except TimeoutError:
                    return

        thread = threading.Thread(target=receive)
        thread.start()
        # `ip netns exec` mounts the namespace's own /sys
        current = subprocess.run(
            ["ip", "netns", "exec", a, "cat", "/sys/class/net/bond0/bonding/active_slave"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        sent = 0
        for sent in range(300):  # 3 s, one every 10 ms; the cut at 1 s
            if sent == 100:
                ip("-n", a, "link", "set", current, "down")
            sender.sendto(str(sent).encode(), ("10.253.77.2", 9999))
            time.sleep(0.01)
        thread.join()
        lost = (sent + 1) - len(set(got))
        assert lost * 10 <= 200, f"{lost} of {sent + 1} probes lost ({lost * 10} ms)"
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
