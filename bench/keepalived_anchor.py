"""The keepalived anchor, measured in the same lab: a VIP held by VRRP (Debian's keepalived)
in front of the same HTTP API on three lab hosts; the master loses power under client load;
the time from the crash to the first answer from another host. Two settings: Debian's
defaults (VRRPv2, advert_int 1 s) and VRRPv3 at hastack's heartbeat interval (advert_int
0.2 s). And a partition trial: the master cut off from the other two, the client still
reaching all three; an ARP probe counts the moments two hosts answer for the VIP.

    .venv/bin/python bench/keepalived_anchor.py [--trials 10]

Imported by bench/vip_failover.py so every figure comes from one run. Root only. keepalived
runs inside the lab's namespaces only (VRRP on the lab bridge), never in the root namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from debs import ensure_programs
from hastack.lab.net import Lab
from hastack.processes import ProcessRecord, spawn, stop

# A new connection to the VIP every 20 ms, each in a thread of its own (0.3 s timeout): an
# attempt lost to a dead holder does not hold up the next, so the first answer after the
# move is seen within 20 ms. Prints [[time sent, node], ...] of the answers, oldest first.
PROBE = textwrap.dedent(
    """
    import json, socket, sys, threading, time
    host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    ok = []
    def attempt(t):
        try:
            with socket.create_connection((host, port), timeout=0.3) as s:
                s.settimeout(0.3)
                s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            head, _, body = data.partition(b"\\r\\n\\r\\n")
            if head.startswith(b"HTTP/1.0 200"):
                ok.append([t, json.loads(body)["node"]])
        except (OSError, ValueError, KeyError):
            pass
    threads, end = [], time.time() + duration
    while time.time() < end:
        t = time.time()
        thread = threading.Thread(target=attempt, args=(t,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(max(0.0, t + 0.02 - time.time()))
    for thread in threads:
        thread.join(2.0)
    print(json.dumps(sorted(ok)))
    """
)


# Who answers ARP for the VIP, every 50 ms: a who-has from the client, and every reply
# (from any host) within 30 ms. A moment with two senders is a moment the VIP is on two hosts
# that both answer: clients split between them. Prints [[time, [sender MACs]], ...].
ARP_PROBE = textwrap.dedent(
    """
    import json, select, socket, struct, sys, time
    vip, mine, mac, duration = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    target, src = socket.inet_aton(vip), socket.inet_aton(mine)
    raw_mac = bytes.fromhex(mac.replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind(("eth0", 0))
    frame = (b"\\xff" * 6 + raw_mac + struct.pack("!H", 0x0806)
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + raw_mac + src + b"\\x00" * 6 + target)
    rounds, end = [], time.time() + duration
    while time.time() < end:
        t = time.time()
        s.send(frame)
        seen = set()
        while (left := t + 0.03 - time.time()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data = s.recv(128)
            if len(data) >= 42 and data[20:22] == b"\\x00\\x02" and data[28:32] == target:
                seen.add(data[22:28].hex(":"))
        rounds.append([t, sorted(seen)])
        time.sleep(max(0.0, t + 0.05 - time.time()))
    print(json.dumps(rounds))
    """
)


@dataclass(frozen=True, slots=True)
class Vrrp:
    """keepalived's timers: Debian's defaults, or VRRPv3 at a sub-second interval."""

    version: int = 2
    advert_int: float = 1.0

    @property
    def label(self) -> str:
        return f"VRRPv{self.version}, advert_int {self.advert_int:g} s"


DEBIAN = Vrrp()
TUNED = Vrrp(3, 0.2)


def first_answer_after(ok: list[list[object]], crashed_at: float, old: str) -> float | None:
    """Seconds from the crash to the first answer from another host than the crashed one."""
    for t, node in ok:
        if float(str(t)) > crashed_at and node != old:
            return float(str(t)) - crashed_at
    return None


def _config(vip: str, state: str, priority: int, vrrp: Vrrp) -> str:
    return textwrap.dedent(
        f"""
        global_defs {{
            enable_script_security
            vrrp_version {vrrp.version}
        }}
        vrrp_instance lab {{
            state {state}
            interface eth0
            virtual_router_id 51
            priority {priority}
            advert_int {vrrp.advert_int:g}
            virtual_ipaddress {{
                {vip}/24 dev eth0
            }}
        }}
        """
    )


def _start(lab: Lab, name: str, argv: list[str], log: Path) -> ProcessRecord:
    """Start a process as the host, as the lab starts its own: in its network namespace and a
    UTS namespace of its own with the host's name (the demo API answers with it)."""
    ns = lab.host(name).namespace
    wrapped = [
        "ip", "netns", "exec", ns, "unshare", "--uts", "--",
        sys.executable, "-m", "hastack.lab.net.boot", name, *argv,
    ]  # fmt: skip
    record, _ = spawn(wrapped, log_path=log)
    return record


def _start_vrrp(lab: Lab, work: Path, vrrp: Vrrp, *, api: bool) -> list[ProcessRecord]:
    """keepalived on every controller (the first one MASTER, highest priority), and the demo
    API beside it when `api`."""
    vip = f"{lab.topology.net_prefix(0)}.100"
    records: list[ProcessRecord] = []
    for rank, name in enumerate(h.name for h in lab.controllers()):
        d = work / name
        d.mkdir(parents=True)
        conf = d / "keepalived.conf"
        state = "MASTER" if rank == 0 else "BACKUP"
        conf.write_text(_config(vip, state, 150 - 10 * rank, vrrp))
        keepalived = [
            "keepalived", "-n", "-l", "-D", "-f", str(conf), "-p", str(d / "k.pid"),
            "-r", str(d / "v.pid"), "-c", str(d / "c.pid"),
        ]  # fmt: skip
        records.append(_start(lab, name, keepalived, d / "keepalived.log"))
        if api:
            command = [sys.executable, "-m", "hastack.lab.net.demo_api", "--port", "8080"]
            records.append(_start(lab, name, command, d / "api.log"))
    return records


def crash_and_probe(lab: Lab, victim: str, seconds: float) -> tuple[float, list[list[object]]]:
    """Probe the VIP for `seconds`, crash `victim` one second in; (the crash's moment, the
    probe's answers). The moment is taken just before the NICs go down (the first thing
    `crash` does; killing the processes after takes a while, and counts)."""
    vip = f"{lab.topology.net_prefix(0)}.100"
    client = lab.host("client").namespace
    probe = subprocess.Popen(
        ["ip", "netns", "exec", client, sys.executable, "-c", PROBE, vip, "8080", f"{seconds:g}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    crashed_at = time.time()
    lab.crash(victim)
    out, _ = probe.communicate(timeout=seconds + 30)
    return crashed_at, json.loads(out)


def trial(lab: Lab, work: Path, vrrp: Vrrp) -> float | None:
    """One crash of the VRRP master; crash -> first answer from another host, or None."""
    names = [h.name for h in lab.controllers()]
    records = _start_vrrp(lab, work, vrrp, api=True)
    try:
        time.sleep(5)  # elections settle, the master holds the VIP, answers flow
        crashed_at, answers = crash_and_probe(lab, names[0], 9)
        return first_answer_after(answers, crashed_at, names[0])
    finally:
        for record in records:
            stop(record, grace=1.0, group=True)
        lab.start(names[0])


def run_trials(lab: Lab, trials: int, vrrp: Vrrp = DEBIAN) -> list[float]:
    ensure_programs("keepalived")
    out = []
    with tempfile.TemporaryDirectory(prefix="hastack-keepalived-") as tmp:
        for i in range(trials):
            outage = trial(lab, Path(tmp) / f"t{i}", vrrp)
            if outage is not None:
                out.append(outage)
                print(f"  keepalived ({vrrp.label}) trial {i + 1}: {outage:.2f}s", flush=True)
            else:
                print(f"  keepalived ({vrrp.label}) trial {i + 1}: no answer", flush=True)
    return out


def macs(lab: Lab) -> dict[str, str]:
    """eth0's MAC address -> host name, for every host of the lab."""
    out = {}
    for h in lab.hosts():
        proc = subprocess.run(
            ["ip", "-n", h.namespace, "-j", "link", "show", "eth0"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        out[json.loads(proc.stdout)[0]["address"]] = h.name
    return out


@dataclass(frozen=True, slots=True)
class Partition:
    """What the ARP probe saw while the VIP's holder was cut off from its peers."""

    rounds: int  # ARP probes sent during the partition
    double: int  # of them, answered by two hosts or more
    first_double: float | None  # seconds from the cut to the first double answer
    holders: tuple[str, ...]  # every host that answered during the partition


def partition_probe(lab: Lab, victim: str, seconds: float) -> Partition:
    """Cut `victim` off from the other controllers (the client still reaches every host) for
    `seconds`, ARP-probing the VIP all along; heal."""
    client = lab.host("client")
    others = [h.name for h in lab.controllers() if h.name != victim]
    names = macs(lab)
    mine = next(mac for mac, name in names.items() if name == client.name)
    vip = f"{lab.topology.net_prefix(0)}.100"
    probe = subprocess.Popen(
        ["ip", "netns", "exec", client.namespace, sys.executable, "-c", ARP_PROBE,
         vip, client.address, mine, f"{seconds + 1.5:g}"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(0.5)
    cut = time.time()
    lab.partition(f"{victim} | {','.join(others)}")
    try:
        time.sleep(seconds)
    finally:
        healed = time.time()
        lab.heal()
    out, _ = probe.communicate(timeout=seconds + 30)
    during = [(float(t), [names.get(m, m) for m in seen]) for t, seen in json.loads(out)]
    during = [(t, seen) for t, seen in during if cut <= t < healed]
    doubles = [t for t, seen in during if len(seen) >= 2]
    return Partition(
        len(during),
        len(doubles),
        doubles[0] - cut if doubles else None,
        tuple(sorted({h for _, seen in during for h in seen})),
    )


def partition_trial(lab: Lab, vrrp: Vrrp, seconds: float) -> Partition:
    """keepalived on the three controllers; the master cut off from the two backups."""
    ensure_programs("keepalived")
    with tempfile.TemporaryDirectory(prefix="hastack-keepalived-") as tmp:
        records = _start_vrrp(lab, Path(tmp), vrrp, api=False)
        try:
            time.sleep(5)
            return partition_probe(lab, lab.controllers()[0].name, seconds)
        finally:
            for record in records:
                stop(record, grace=1.0, group=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        lab = Lab.up(Path(tmp) / "lab", nodes=3)
        try:
            outages = run_trials(lab, args.trials, DEBIAN)
        finally:
            lab.down()
    if outages:
        print(
            f"keepalived (advert_int 1 s): median {statistics.median(outages):.2f}s, "
            f"max {max(outages):.2f}s over {len(outages)} trials"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
