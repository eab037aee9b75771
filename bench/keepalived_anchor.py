"""The keepalived anchor, measured in the same lab: a VIP held by VRRP (Debian's keepalived,
default timers: advert_int 1 s) in front of the same HTTP API on three lab hosts; the master
loses power under client load; the gap between the last answer before and the first after.

    .venv/bin/python bench/keepalived_anchor.py [--trials 10]

Imported by bench/lab_failover.py so both figures come from one run. Root only. keepalived
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
from pathlib import Path

from debs import ensure_programs
from hastack.lab.net import Lab
from hastack.processes import ProcessRecord, spawn, stop

PROBE = textwrap.dedent(
    """
    import json, socket, sys, time
    host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    end = time.time() + duration
    ok = []
    while time.time() < end:
        t = time.time()
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
        time.sleep(max(0.0, 0.02 - (time.time() - t)))
    print(json.dumps(ok))
    """
)


def first_answer_after(ok: list[list[object]], crashed_at: float, old: str) -> float | None:
    """Seconds from the crash to the first answer from another host than the crashed one."""
    for t, node in ok:
        if float(str(t)) > crashed_at and node != old:
            return float(str(t)) - crashed_at
    return None


def _config(vip: str, state: str, priority: int) -> str:
    return textwrap.dedent(
        f"""
        global_defs {{
            enable_script_security
        }}
        vrrp_instance lab {{
            state {state}
            interface eth0
            virtual_router_id 51
            priority {priority}
            advert_int 1
            virtual_ipaddress {{
                {vip}/24 dev eth0
            }}
        }}
        """
    )


def _start(lab: Lab, name: str, argv: list[str], log: Path) -> ProcessRecord:
    ns = lab.host(name).namespace
    record, _ = spawn(["ip", "netns", "exec", ns, *argv], log_path=log)
    return record


def trial(lab: Lab, work: Path, index: int) -> float | None:
    """One crash of the VRRP master; the outage seen by the client, or None."""
    vip = f"{lab.topology.net_prefix(0)}.100"
    records: list[ProcessRecord] = []
    names = [h.name for h in lab.controllers()]
    try:
        for rank, name in enumerate(names):
            d = work / f"t{index}-{name}"
            d.mkdir(parents=True)
            conf = d / "keepalived.conf"
            state = "MASTER" if rank == 0 else "BACKUP"
            conf.write_text(_config(vip, state, 150 - 10 * rank))
            keepalived = [
                "keepalived", "-n", "-l", "-D", "-f", str(conf), "-p", str(d / "k.pid"),
                "-r", str(d / "v.pid"), "-c", str(d / "c.pid"),
            ]  # fmt: skip
            api = [sys.executable, "-m", "hastack.lab.net.demo_api", "--port", "8080"]
            records.append(_start(lab, name, keepalived, d / "keepalived.log"))
            records.append(_start(lab, name, api, d / "api.log"))
        client = lab.host("client").namespace
        probe = subprocess.Popen(
            ["ip", "netns", "exec", client, sys.executable, "-c", PROBE, vip, "8080", "14"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(6)  # elections settle, the master holds the VIP, answers flow
        lab.crash(names[0])
        crashed_at = time.time()  # after the interfaces went down: nothing answers from it
        out, _ = probe.communicate(timeout=30)
        return first_answer_after(json.loads(out), crashed_at, names[0])
    finally:
        for record in records:
            stop(record, grace=1.0, group=True)
        lab.start(names[0])


def run_trials(lab: Lab, trials: int) -> list[float]:
    ensure_programs("keepalived")
    out = []
    with tempfile.TemporaryDirectory(prefix="hastack-keepalived-") as tmp:
        for i in range(trials):
            outage = trial(lab, Path(tmp), i)
            if outage is not None:
                out.append(outage)
                print(f"  keepalived trial {i + 1}: {outage:.2f}s")
    return out


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
            outages = run_trials(lab, args.trials)
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
