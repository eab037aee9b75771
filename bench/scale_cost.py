"""Where a big lab's CPU and etcd requests go, second by second: while it starts and while
it idles (docs/control-plane.md, "Where a hundred computes' cost goes").

    flock /tmp/hastack-lab.lock timeout 900 .venv/bin/python bench/scale_cost.py \\
        [--computes 100] [--idle 30] [--every 5] [--etcd-data memory|disk] [--start-wave N]

Root only; hold the machine's lab lock (it measures). It brings a lab of 3 controllers and
N computes up and, from the moment etcd is healthy until the end of `--idle` seconds after
every agent joined, samples every `--every` seconds:

* CPU by role and process kind (etcd, agent's supervisor, agent, process watchdog, other),
  summed over the processes of that kind, as % of one core, from /proc/PID/stat; the
  machine's busy fraction and load average;
* etcd's own counters, summed over the three members (`bench/etcd_probe.py`, scraped from
  the client host): gRPC messages received per second by method (Range, Txn, Put,
  LeaseGrant, LeaseKeepAlive, Watch, ...), WAL fdatasync count and mean latency, the
  fsyncs over 128 ms and over 1 s, backend commits, slow applies, slow read indexes, leader
  changes;
* memberships lost, DC elections and late renewals so far (the agents' events).

At the end: the idle window's per-process figures (median compute agent) and etcd requests
per second per compute. Figures only: it passes or fails on nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import labstats
from hastack.lab.net import Lab, links
from scale import EtcdProbe

FSYNC = "etcd_disk_wal_fsync_duration_seconds"
COMMIT = "etcd_disk_backend_commit_duration_seconds"


def inventory(lab: Lab) -> list[labstats.Proc]:
    """Every process of the lab's hosts, classified, in one pass over /proc."""
    hosts = {h.namespace: h for h in lab.hosts()}
    out = []
    for namespace, records in links.pids_by_netns(list(hosts)).items():
        h = hosts[namespace]
        for r in records:
            kind = labstats.classify(labstats.cmdline(r.pid))
            out.append(labstats.Proc(h.name, h.role.value, kind, r.pid, r.start_ticks))
    return out


def etcd_totals(metrics: dict[str, Any]) -> dict[str, float]:
    """Counters summed over the members; gRPC messages received by method as `rx:METHOD`."""
    out: dict[str, float] = defaultdict(float)
    for m in metrics["members"].values():
        for k, v in m.get("totals", {}).items():
            out[k] += v
        for method, v in m.get("by_method", {}).get("grpc_server_msg_received_total", {}).items():
            out[f"rx:{method}"] += v
    return dict(out)


class Sampler(threading.Thread):
    def __init__(self, directory: Path, every: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.directory = directory
        self.every = every
        self.stop = threading.Event()
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        # Each process's CPU ticks since its start, at the last sample.
        self.last_ticks: dict[labstats.Proc, int] = {}

    def run(self) -> None:
        lab = Lab.load(self.directory)
        probe = EtcdProbe(lab)
        try:
            prev_cpu: dict[labstats.Proc, int] = {}
            prev_machine = labstats.machine_ticks()
            prev_etcd = etcd_totals(probe.ask(op="metrics"))
            prev_t = time.monotonic()
            while not self.stop.wait(self.every):
                procs = inventory(lab)
                cpu_now = labstats.cpu_sample(procs)
                machine = labstats.machine_ticks()
                etcd = etcd_totals(probe.ask(op="metrics"))
                now = time.monotonic()
                dt = now - prev_t
                by_kind: dict[str, float] = defaultdict(float)
                per_proc: dict[labstats.Proc, float] = {}
                for p, t in cpu_now.items():
                    if p in prev_cpu:
                        pct = 100.0 * (t - prev_cpu[p]) / labstats.TICKS / dt
                    else:  # started in this interval: all its CPU so far
                        pct = 100.0 * t / labstats.TICKS / dt
                    per_proc[p] = pct
                    by_kind[f"{p.role}/{p.kind}"] += pct
                rates = {k: (v - prev_etcd.get(k, 0.0)) / dt for k, v in etcd.items()}
                fsyncs = etcd.get(f"{FSYNC}_count", 0) - prev_etcd.get(f"{FSYNC}_count", 0)
                fsync_s = etcd.get(f"{FSYNC}_sum", 0) - prev_etcd.get(f"{FSYNC}_sum", 0)
                count = etcd.get(f"{FSYNC}_count", 0) - prev_etcd.get(f"{FSYNC}_count", 0)
                slow = {
                    le: count
                    - (
                        etcd.get(f"{FSYNC}_bucket<={le}", 0)
                        - prev_etcd.get(f"{FSYNC}_bucket<={le}", 0)
                    )
                    for le in ("0.128", "1.024")
                }
                events = labstats.events(
                    lab, ["membership-lost", "dc-elected", "lease-renewal-late"]
                )
                self.rows.append(
                    {
                        "t": now - self.t0,
                        "dt": dt,
                        "busy": labstats.machine_busy(prev_machine, machine),
                        "load": labstats.loadavg()[0],
                        "cpu": dict(by_kind),
                        "per_proc": per_proc,
                        "agents": sum(1 for p in procs if p.kind == "agent"),
                        "rx": {k[3:]: v for k, v in rates.items() if k.startswith("rx:")},
                        "fsync_per_s": fsyncs / dt,
                        "fsync_mean_ms": 1000 * fsync_s / fsyncs if fsyncs else 0.0,
                        "fsync_slow": slow,
                        "proposals_per_s": rates.get("etcd_server_proposals_committed_total", 0),
                        "slow_apply": rates.get("etcd_server_slow_apply_total", 0) * dt,
                        "slow_read": rates.get("etcd_server_slow_read_indexes_total", 0) * dt,
                        "leader_changes": rates.get("etcd_server_leader_changes_seen_total", 0)
                        * dt,
                        "lost": sum(1 for e in events if e.get("event") == "membership-lost"),
                        "elected": sum(1 for e in events if e.get("event") == "dc-elected"),
                        "late": sum(1 for e in events if e.get("event") == "lease-renewal-late"),
                    }
                )
                print(render_row(self.rows[-1]), flush=True)
                prev_cpu, prev_machine, prev_etcd, prev_t = cpu_now, machine, etcd, now
                self.last_ticks = cpu_now
        except Exception as exc:
            print(f"sampler stopped: {exc!r}", flush=True)
        finally:
            probe.close()


def render_row(r: dict[str, Any]) -> str:
    cpu = r["cpu"]
    top_rx = sorted(r["rx"].items(), key=lambda kv: -kv[1])[:5]
    return (
        f"[{r['t']:6.1f}s] agents {r['agents']:3d}  busy {100 * r['busy']:3.0f}% load "
        f"{r['load']:5.1f} | CPU % core: etcd {cpu.get('controller/etcd', 0):5.1f} "
        f"ctl-agents {cpu.get('controller/agent', 0):5.1f} cmp-agents "
        f"{cpu.get('compute/agent', 0):5.1f} cmp-sup {cpu.get('compute/supervisor', 0):4.1f} "
        f"cmp-wd {cpu.get('compute/watchdog', 0):4.1f} boot "
        f"{cpu.get('compute/boot', 0) + cpu.get('controller/boot', 0):4.1f} client "
        f"{sum(v for k, v in cpu.items() if k.startswith('client/')):4.1f} other "
        f"{sum(v for k, v in cpu.items() if k.endswith('/other') and 'client' not in k):4.1f}"
        f" | etcd rx/s {', '.join(f'{k} {v:.0f}' for k, v in top_rx)}"
        f" | fsync {r['fsync_per_s']:.0f}/s mean {r['fsync_mean_ms']:.1f}ms "
        f">128ms {r['fsync_slow']['0.128']:.0f} >1s {r['fsync_slow']['1.024']:.0f}"
        f" | slow-apply {r['slow_apply']:.0f} slow-read {r['slow_read']:.0f} "
        f"leader-chg {r['leader_changes']:.0f} | lost {r['lost']} elected {r['elected']} "
        f"late {r['late']}"
    )


def summary(rows: list[dict[str, Any]], since: float, computes: int) -> str:
    idle = [r for r in rows if r["t"] >= since]
    if not idle:
        return "no idle samples"
    n = len(idle)
    per_proc: dict[labstats.Proc, list[float]] = defaultdict(list)
    for r in idle:
        for p, v in r["per_proc"].items():
            per_proc[p].append(v)
    kinds: dict[str, list[float]] = defaultdict(list)
    for p, vs in per_proc.items():
        kinds[f"{p.role}/{p.kind}"].append(sum(vs) / len(vs))
    lines = [f"idle window: {n} samples from {since:.0f}s"]
    for k, vs in sorted(kinds.items()):
        vs.sort()
        lines.append(
            f"  {k:<22} n {len(vs):3d}  each median {vs[len(vs) // 2]:6.2f}  max {vs[-1]:6.2f}"
            f"  all {sum(vs):6.1f} % of a core"
        )
    busy = sum(r["busy"] for r in idle) / n
    lines.append(f"  machine busy {100 * busy:.0f} % of 2 cores, load {idle[-1]['load']:.1f}")
    rx: dict[str, float] = defaultdict(float)
    for r in idle:
        for k, v in r["rx"].items():
            rx[k] += v / n
    total = sum(rx.values())
    lines.append(
        f"  etcd messages received {total:.0f}/s ("
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(rx.items(), key=lambda kv: -kv[1]) if v)
        + ")"
        + (f"; {total / computes:.1f}/s per compute" if computes else "")
    )
    fs = sum(r["fsync_per_s"] for r in idle) / n
    mean = sum(r["fsync_mean_ms"] for r in idle) / n
    lines.append(f"  fsync {fs:.0f}/s, mean {mean:.1f} ms")
    return "\n".join(lines)


def profile(lab: Lab, prefix: str, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy over the idle window, without pausing them, of a compute agent, a controller
    agent (the DC or not) and the client host's processes: collapsed stacks in PREFIX-*."""
    procs = inventory(lab)
    chosen = [p for p in procs if p.kind == "agent" and p.host in ("n1", "n2", "c1", "c50")]
    chosen += [p for p in procs if p.role == "client"]
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print(f"no {spy}: not profiled", flush=True)
        return []
    out = []
    for p in chosen:
        argv = [
            str(spy), "record", "--nonblocking", "--rate", "50", "--duration",
            str(int(seconds)), "--format", "raw", "-o", f"{prefix}-{p.host}-{p.pid}.txt",
            "--pid", str(p.pid),
        ]  # fmt: skip
        out.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return out


def lifetime(ticks: dict[labstats.Proc, int]) -> str:
    """CPU-seconds each kind of process used since it started (its start and whatever came
    after), median and max, at the last sample."""
    kinds: dict[str, list[float]] = defaultdict(list)
    for p, t in ticks.items():
        kinds[f"{p.role}/{p.kind}"].append(t / labstats.TICKS)
    lines = ["CPU-seconds since each process started (at the last sample):"]
    for k, vs in sorted(kinds.items()):
        vs.sort()
        lines.append(f"  {k:<22} n {len(vs):3d}  median {vs[len(vs) // 2]:6.2f}  max {vs[-1]:6.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computes", type=int, default=100)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--start-wave", type=int, default=0)
    parser.add_argument("--etcd-data", choices=("memory", "disk"), default=None)
    parser.add_argument(
        "--profile", metavar="PREFIX", help="py-spy some agents while idle: PREFIX-HOST-PID.txt"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="hastack-cost-") as tmp:
        directory = Path(tmp) / "lab"
        sampler = Sampler(directory, args.every)
        started = time.monotonic()

        def progress(message: str) -> None:
            print(f"[{time.monotonic() - sampler.t0:6.1f}s] {message}", flush=True)
            if message.startswith("etcd:") and not sampler.is_alive():
                sampler.start()

        extra: dict[str, Any] = {}
        if args.start_wave:
            extra["start_wave"] = args.start_wave
        if args.etcd_data is not None:
            extra["etcd_data"] = args.etcd_data
        lab: Lab | None = None
        since = float("inf")
        try:
            lab = Lab.up(directory, nodes=3, computes=args.computes, on_progress=progress, **extra)
            up = time.monotonic() - started
            print(f"lab up in {up:.1f}s", flush=True)
            since = time.monotonic() - sampler.t0 + 5
            time.sleep(5)
            spies = profile(lab, args.profile, args.idle) if args.profile else []
            time.sleep(args.idle)
            for spy in spies:
                spy.wait(timeout=30)
        finally:
            sampler.stop.set()
            if sampler.is_alive():
                sampler.join(30)
            if lab is not None:
                lab.down()
        print(summary(sampler.rows, since, args.computes))
        print(lifetime(sampler.last_ticks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
