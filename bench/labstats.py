"""What the lab's processes cost, read from /proc: the benchmarks' shared instruments.

Each process of a lab host (found through its network namespace, as the lab's power switch
finds them) is classified by its command line — `etcd`, `supervisor` (the lab's Restart=
role), `agent`, `watchdog` (the agent's process watchdog), `boot` (not yet exec'd), or
`other` (resource agents, services) — and measured:

* CPU: utime + stime from /proc/PID/stat, sampled twice (same PID *and* start time), as a
  percentage of one core over the interval;
* memory: VmRSS (counts shared pages — libpython, grpc's .so — in every process) and PSS
  from /proc/PID/smaps_rollup (shared pages divided among the processes that map them: what
  the processes really cost together).

The machine's own figures come from /proc/stat (busy fraction of all cores) and
/proc/loadavg.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hastack.lab.net.lab import Lab
from hastack.lab.net.links import netns_pids
from hastack.processes import start_ticks

TICKS = os.sysconf("SC_CLK_TCK")
KINDS = ("etcd", "supervisor", "agent", "watchdog", "boot", "other")


@dataclass(frozen=True, slots=True)
class Proc:
    host: str
    role: str  # controller, compute, client
    kind: str
    pid: int
    start: int  # start ticks: identifies the process, not only the PID


def classify(argv: list[str]) -> str:
    if not argv:
        return "other"
    joined = " ".join(argv)
    if argv[0].endswith("/etcd") or argv[0] == "etcd":
        return "etcd"
    if "hastack.lab.supervise" in joined:
        return "supervisor"
    if "hastack.fencing.watchdog" in joined:
        return "watchdog"
    if "hastack.lab.net.boot" in joined:
        return "boot"
    if "-m hastack agent" in joined:
        return "agent"
    return "other"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def inventory(lab: Lab, hosts: Iterable[str] | None = None) -> list[Proc]:
    """Every process of the lab's hosts (or of `hosts`), classified."""
    wanted = set(hosts) if hosts is not None else None
    out = []
    for h in lab.hosts():
        if wanted is not None and h.name not in wanted:
            continue
        for rec in netns_pids(h.namespace):
            out.append(
                Proc(h.name, h.role.value, classify(cmdline(rec.pid)), rec.pid, rec.start_ticks)
            )
    return out


def cpu_ticks(proc: Proc) -> int | None:
    """utime + stime of the process, None if it is gone (or another process has its PID)."""
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if int(fields[19]) != proc.start:
        return None
    return int(fields[11]) + int(fields[12])


def cpu_sample(procs: Iterable[Proc]) -> dict[Proc, int]:
    return {p: t for p in procs if (t := cpu_ticks(p)) is not None}


def cpu_percent(
    before: Mapping[Proc, int], after: Mapping[Proc, int], seconds: float
) -> dict[Proc, float]:
    """% of one core each process used between two samples (processes in both only)."""
    return {p: 100.0 * (after[p] - before[p]) / TICKS / seconds for p in before if p in after}


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB; zeros if the process is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def machine_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Fraction (0..1) of all cores busy between two machine_ticks() samples."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total else 0.0


def loadavg() -> tuple[float, float, float]:
    a, b, c = Path("/proc/loadavg").read_text().split()[:3]
    return float(a), float(b), float(c)


def events(lab: Lab, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The agents' events (events.jsonl of every node), oldest first; only `kinds` if given."""
    wanted = set(kinds) if kinds is not None else None
    out: list[dict[str, Any]] = []
    for h in lab.nodes():
        path = lab.agent_state_dir(h.name) / "events.jsonl"
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if wanted is None or entry.get("event") in wanted:
                out.append(entry)
    out.sort(key=lambda e: float(e.get("t", 0.0)))
    return out


def alive(proc: Proc) -> bool:
    return start_ticks(proc.pid) == proc.start


@dataclass(frozen=True, slots=True)
class Row:
    role: str
    kind: str
    count: int
    rss_median: float  # MiB
    pss_median: float  # MiB
    pss_total: float  # MiB
    cpu_median: float  # % of one core
    cpu_max: float
    cpu_total: float


def summarize(
    procs: Iterable[Proc], cpu: Mapping[Proc, float], memory: Mapping[Proc, tuple[int, int]]
) -> list[Row]:
    """One row per (role, kind): memory per process and in all, CPU per process and in all."""
    groups: dict[tuple[str, str], list[Proc]] = {}
    for p in procs:
        groups.setdefault((p.role, p.kind), []).append(p)
    rows = []
    for (role, kind), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]))
    ):
        rss = [memory.get(p, (0, 0))[0] / 1024 for p in members]
        pss = [memory.get(p, (0, 0))[1] / 1024 for p in members]
        cpus = [cpu[p] for p in members if p in cpu]
        rows.append(
            Row(
                role,
                kind,
                len(members),
                statistics.median(rss),
                statistics.median(pss),
                sum(pss),
                statistics.median(cpus) if cpus else 0.0,
                max(cpus, default=0.0),
                sum(cpus),
            )
        )
    return rows


def render(rows: list[Row], seconds: float) -> str:
    """The rows as a table; CPU is % of one core over the `seconds` sampled."""
    lines = [
        f"  {'':<22}{'':>4}{'memory (MiB)':^27}{f'CPU over {seconds:g} s (% of a core)':^30}",
        f"  {'role':<11}{'process':<11}{'n':>4}{'RSS each':>9}{'PSS each':>9}{'PSS all':>9}"
        f"{'each':>10}{'max':>10}{'all':>10}",
    ]
    for r in rows:
        lines.append(
            f"  {r.role:<11}{r.kind:<11}{r.count:>4}{r.rss_median:>9.1f}{r.pss_median:>9.1f}"
            f"{r.pss_total:>9.0f}{r.cpu_median:>10.2f}{r.cpu_max:>10.2f}{r.cpu_total:>10.1f}"
        )
    lines.append("  (each: median over the processes of that row)")
    return "\n".join(lines)
