"""How long the lab takes to come up and go down, and what it costs in memory and disk.

    .venv/bin/python bench/lab_up.py [--trials 3] [--nodes 3]

Root only. Prints per trial: network built, etcd healthy, agents joined with a DC (all from
the start of `Lab.up`), teardown time; then the resident memory of every lab process (by
namespace) and the disk used by the lab directory, measured on the last trial.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hastack.lab.net import Lab
from hastack.lab.net.links import netns_pids


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    ups, downs = [], []
    for trial in range(1, args.trials + 1):
        with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
            marks: list[str] = []
            started = time.monotonic()
            lab = Lab.up(Path(tmp) / "lab", nodes=args.nodes, on_progress=marks.append)
            ups.append(time.monotonic() - started)
            memory: dict[str, int] = {}
            for h in lab.hosts():
                for rec in netns_pids(h.namespace):
                    comm = Path(f"/proc/{rec.pid}/comm").read_text().strip()
                    memory[comm] = memory.get(comm, 0) + rss_kib(rec.pid)
            du = subprocess.run(["du", "-sk", tmp], capture_output=True, text=True, check=True)
            disk_kib = int(du.stdout.split()[0])
            started = time.monotonic()
            lab.down()
            downs.append(time.monotonic() - started)
            print(f"trial {trial}: up {ups[-1]:.2f}s ({'; '.join(marks)}); down {downs[-1]:.2f}s")
    print()
    print(f"lab up ({args.nodes} controllers, etcd + agent each): "
          f"median {statistics.median(ups):.2f}s, "
          f"max {max(ups):.2f}s over {args.trials} trials")  # fmt: skip
    print(f"lab down: median {statistics.median(downs):.2f}s")
    total = sum(memory.values())
    print(f"memory (RSS, last trial): {total / 1024:.0f} MiB in all: "
          + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in sorted(memory.items())))  # fmt: skip
    print(f"disk (lab directory, last trial): {disk_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
