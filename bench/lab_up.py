"""How long the lab takes to come up and go down, and what its processes cost.

    flock /tmp/hastack-lab.lock .venv/bin/python bench/lab_up.py [--trials 3] [--nodes 3]
        [--computes 100] [--idle 30] [--start-wave 10]

Root only; hold the machine's lab lock (it measures). Prints per trial: network built, etcd
healthy, agents joined with a DC (all from the start of `Lab.up`), teardown time, and whether
anything was left behind. On the last trial, before the teardown, it lets the lab settle
(`--settle`, 10 s), then waits `--idle` seconds with nothing to do and prints, per role and
kind of process (etcd, the agent's supervisor, the agent, its process watchdog): resident
memory (RSS, and PSS — shared pages divided among
the processes that map them), CPU used over that idle time as a percentage of one core (from
/proc/PID/stat utime + stime), the machine's busy fraction and load average; then the disk
used by the lab directory. With 100 computes one trial takes about 2 minutes.
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

import labstats
from hastack.lab.net import Lab


def idle_costs(lab: Lab, seconds: float, settle: float) -> str:
    time.sleep(settle)  # the last agents to join may still be busy
    procs = labstats.inventory(lab)
    machine0 = labstats.machine_ticks()
    before = labstats.cpu_sample(procs)
    started = time.monotonic()
    time.sleep(seconds)
    after = labstats.cpu_sample(procs)
    took = time.monotonic() - started
    machine = labstats.machine_busy(machine0, labstats.machine_ticks())
    cpu = labstats.cpu_percent(before, after, took)
    memory = {p: labstats.memory_kib(p.pid) for p in procs}
    rows = labstats.summarize(procs, cpu, memory)
    total_pss = sum(r.pss_total for r in rows)
    total_cpu = sum(r.cpu_total for r in rows)
    load = labstats.loadavg()
    return "\n".join(
        [
            labstats.render(rows, round(took)),
            f"  whole lab: {len(procs)} processes, PSS {total_pss:.0f} MiB, "
            f"{total_cpu:.1f} % of one core while idle; machine busy {100 * machine:.1f} % of "
            f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--computes", type=int, default=0)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measured")
    parser.add_argument(
        "--start-wave", type=int, default=0, help="computes started together (default: the lab's)"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before the idle")
    parser.add_argument(
        "--wait", type=float, default=0.0, help="bound on the start (default: the lab's own)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    ups, downs = [], []
    costs = ""
    disk_kib = 0
    for trial in range(1, args.trials + 1):
        with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
            marks: list[str] = []
            started = time.monotonic()
            extra = {"wait": args.wait} if args.wait else {}
            if args.start_wave:
                extra["start_wave"] = args.start_wave
            lab = Lab.up(
                Path(tmp) / "lab",
                nodes=args.nodes,
                computes=args.computes,
                on_progress=marks.append,
                **extra,
            )
            ups.append(time.monotonic() - started)
            lost = len(labstats.events(lab, ["membership-lost"]))
            elected = len(labstats.events(lab, ["dc-elected"]))
            late = len(labstats.events(lab, ["lease-renewal-late"]))
            marks.append(
                f"{lost} membership(s) lost, {elected} DC election(s) and {late} late lease "
                "renewal(s) while starting"
            )
            try:
                if trial == args.trials:
                    costs = idle_costs(lab, args.idle, args.settle)
                    lost = len(labstats.events(lab, ["membership-lost"])) - lost
                    costs += f"\n  memberships lost while idle: {lost} (must be 0)"
                    du = subprocess.run(
                        ["du", "-sk", tmp], capture_output=True, text=True, check=True
                    )
                    disk_kib = int(du.stdout.split()[0])
            finally:
                started = time.monotonic()
                lab.down()
                downs.append(time.monotonic() - started)
            left = lab.leftovers()
            print(
                f"trial {trial}: up {ups[-1]:.2f}s ({'; '.join(marks)}); down {downs[-1]:.2f}s"
                f"; left behind: {', '.join(left) if left else 'nothing'}",
                flush=True,
            )
    print()
    size = f"{args.nodes} controllers (etcd + agent) + {args.computes} computes (agent)"
    print(f"lab up, {size}: median {statistics.median(ups):.2f}s, "
          f"max {max(ups):.2f}s over {args.trials} trials")  # fmt: skip
    print(f"lab down: median {statistics.median(downs):.2f}s")
    print("processes of the last trial, idle:")
    print(costs)
    print(f"disk (lab directory, last trial): {disk_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
