"""What one compute (remote) agent costs, alone: its start's CPU, its idle CPU and its memory
(docs/compute.md, "A lighter compute agent").

    .venv/bin/python bench/agent_cost.py [--computes 3] [--idle 60] [--out FILE]

No namespaces, no root: `--controllers` etcd members and controller agents (one is the DC)
on loopback (`hastack cluster up`, mutual TLS as the lab; on 127.0.77.0/24), then `--computes`
remote agents started one after the other with the lab's compute timings (10 s / 2 s /
2.5 s) and a process watchdog, as `hastack lab up` starts them. For each compute agent,
from /proc/PID/stat:

* start: CPU-seconds (user + system) from its exec until it joined, and until 5 s later
  (its first cycles: the cluster read, its first report);
* idle: % of one core over `--idle` seconds once every compute joined;
* RSS (MiB) at the end, the agent's and its process watchdog's.

CPU time is the process's own, so it hardly depends on what else the machine runs; the
figures are per process, medians over the computes. Figures only: passes or fails on nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from hastack.lab.local import LocalCluster
from hastack.lab.net.lab import FAST_TIMINGS, REMOTE_TIMINGS

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def threads(pid: int) -> dict[str, float]:
    """CPU-seconds by thread name (threads of one name summed)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            out[name] = out.get(name, 0.0) + cpu_seconds_of(task / "stat")
        except OSError:
            continue
    return out


def wakeups(pid: int) -> dict[str, int]:
    """Context switches by thread id and name: how often each thread woke (or was preempted)."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text().splitlines()
        except OSError:
            continue
        switches = sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)
        out[f"{task.name} {name}"] = switches
    return out


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def joined(events: Path) -> bool:
    if not events.exists():
        return False
    return any(json.loads(line)["event"] == "joined" for line in events.read_text().splitlines())


def watchdog_pid(state_dir: Path) -> int | None:
    try:
        return int(json.loads((state_dir / "watchdog.pid").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def compute_config(template: dict[str, Any], name: str, address: str) -> dict[str, Any]:
    return {
        **template,
        "node": name,
        "kind": "remote",
        "addresses": [address],
        "timings": REMOTE_TIMINGS.model_dump(by_alias=True),
        "watchdog": {"kind": "process"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computes", type=int, default=3)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    parser.add_argument(
        "--profile", type=Path, help="run c1 under cProfile (its main thread), stats to this file"
    )
    parser.add_argument(
        "--controllers", type=int, default=1, help="etcd members and full agents (1-3)"
    )
    parser.add_argument(
        "--precompile",
        action="store_true",
        help="byte-compile hastack first, as `hastack lab up` does (hastack.lab.net.lab)",
    )
    parser.add_argument(
        "--net", default="127.0.77", help="the loopback /24 used (default 127.0.77)"
    )
    parser.add_argument(
        "--spy", type=Path, help="profile c1 while idle with py-spy (raw stacks to this file)"
    )
    args = parser.parse_args()
    if args.precompile:
        from hastack.lab.net.lab import precompile  # not in older trees

        print(f"byte-compiled {precompile()} modules")
    directory = Path(tempfile.mkdtemp(prefix="agent-cost-"))
    lc = LocalCluster.up(
        directory / "cluster",
        nodes=args.controllers,
        timings=FAST_TIMINGS,
        base_address=f"{args.net}.10",
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    rows: dict[str, dict[str, Any]] = {}
    try:
        template = yaml.safe_load(lc.agent_config_path("n1").read_text())
        for i in range(1, args.computes + 1):
            name = f"c{i}"
            node_dir = directory / name
            state = node_dir / "agent"
            state.mkdir(parents=True)
            config = node_dir / "agent.yaml"
            config.write_text(
                yaml.safe_dump(compute_config(template, name, f"{args.net}.{100 + i}"))
            )
            log = (node_dir / "agent.log").open("wb")
            argv = [sys.executable, "-m", "hastack", "agent", "--config", str(config)]
            if args.profile and name == "c1":
                argv[1:1] = ["-m", "cProfile", "-o", str(args.profile)]
            argv += ["--state-dir", str(state)]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
            procs[name] = proc
            started = time.monotonic()
            while not joined(state / "events.jsonl"):
                if proc.poll() is not None or time.monotonic() - started > 60:
                    raise SystemExit(f"{name} did not join; see {node_dir / 'agent.log'}")
                time.sleep(0.05)
            at_join = cpu_seconds(proc.pid)
            time.sleep(5.0)
            rows[name] = {
                "join_s": round(time.monotonic() - started - 5.0, 2),
                "cpu_to_join": at_join,
                "cpu_to_join_5s": cpu_seconds(proc.pid),
            }
            settled = rows[name]["cpu_to_join_5s"]
            print(f"{name}: joined, start CPU {at_join:.2f} s (+5 s: {settled:.2f} s)")
        before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        dogs = {n: watchdog_pid(directory / n / "agent") for n in procs}
        dog_before = {n: cpu_seconds(d) for n, d in dogs.items() if d}
        spy = None
        if args.spy:
            argv = ["py-spy", "record", "--nonblocking", "--threads", "--rate", "500"]
            argv += ["--format", "raw", "-o", str(args.spy), "--pid", str(procs["c1"].pid)]
            argv += ["--duration", str(int(args.idle))]
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c1_threads = threads(procs["c1"].pid)
        c1_wakes = wakeups(procs["c1"].pid)
        t0 = time.monotonic()
        time.sleep(args.idle)
        elapsed = time.monotonic() - t0
        after = threads(procs["c1"].pid)
        wakes_after = wakeups(procs["c1"].pid)
        wakes = {
            k: round((v - c1_wakes.get(k, 0)) / elapsed, 2)
            for k, v in wakes_after.items()
            if v - c1_wakes.get(k, 0) > 0
        }
        by_thread = {
            name: round(100 * (cpu - c1_threads.get(name, 0.0)) / elapsed, 3)
            for name, cpu in sorted(after.items())
        }
        for n, p in procs.items():
            rows[n]["idle_pct"] = 100 * (cpu_seconds(p.pid) - before[n]) / elapsed
            rows[n]["rss_mib"] = rss_mib(p.pid)
            dog = dogs[n]
            if dog:
                rows[n]["watchdog_idle_pct"] = 100 * (cpu_seconds(dog) - dog_before[n]) / elapsed
                rows[n]["watchdog_rss_mib"] = rss_mib(dog)
        if spy is not None:
            spy.wait(30)
        dc = lc.record("n1", "agent")
        summary = {
            key: round(statistics.median(r[key] for r in rows.values()), 3)
            for key in next(iter(rows.values()))
        }
        out = {"computes": rows, "median": summary, "idle_s": args.idle}
        out["c1_idle_pct_by_thread"] = {k: v for k, v in by_thread.items() if v}
        out["c1_context_switches_per_s"] = wakes
        if dc is not None:
            out["note"] = "n1's agent (the DC) is not counted"
        print(json.dumps(out, indent=2))
        if args.out:
            args.out.write_text(json.dumps(out, indent=2))
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for n in procs:
            dog = watchdog_pid(directory / n / "agent")
            if dog:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(dog, signal.SIGTERM)
        lc.down()
        shutil.rmtree(directory, ignore_errors=True)  # the computes' directories
    return 0


if __name__ == "__main__":
    sys.exit(main())
