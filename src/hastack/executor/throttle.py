"""How many operations a node runs at once: Pacemaker's node-action-limit and load-threshold.
Pure: the executor feeds it samples of /proc/stat and asks for the limit.

A node runs at most `node-action-limit` operations at a time (0: twice its cores). When its CPU
is busier than `load-threshold`, it lowers that limit step by step — half above the
threshold, a quarter above 1.2 × the threshold, one at a time above 1.5 × — so a burst of work
on a saturated machine slows down instead of starving the agent and etcd. Load here is the
larger of the CPU busy fraction over the last sample period and the runnable processes per
core, so a long queue of runnable work counts even when every core reads 100 %.

A burst of probes (a configuration that adds many primitives at once) also starts slowly:
one probe at a time, twice as many after each sample period, up to the node's limit
(`ramp_limit`). The load is sampled once a period, so without it every node of a large
cluster started its first `node-action-limit` probes in the same instant — 412 processes on
a 2-core machine with 103 nodes — before any sample could see the load, and the DC's
heartbeats went silent for a second (bench/scale.py --computes 100, 2026-12-07 15:34).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CpuSample",
    "cpu_load",
    "effective_limit",
    "node_limit",
    "parse_proc_stat",
    "ramp_limit",
]


@dataclass(frozen=True, slots=True)
class CpuSample:
    busy: int  # jiffies spent not idle, all CPUs
    total: int  # all jiffies, all CPUs
    running: int  # runnable tasks at the moment of the sample (procs_running)


def parse_proc_stat(text: str) -> CpuSample:
    """The aggregate `cpu` line and `procs_running` of /proc/stat."""
    busy = total = running = 0
    found = False
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "cpu":
            values = [int(v) for v in fields[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            total = sum(values[:8])  # guest time is already counted in user/nice
            busy = total - idle
            found = True
        elif fields[0] == "procs_running":
            running = int(fields[1])
    if not found:
        raise ValueError("no aggregate 'cpu' line")
    return CpuSample(busy, total, running)


def cpu_load(before: CpuSample, after: CpuSample, cores: int) -> float:
    """Load as a fraction of the machine (1.0 = every core busy)."""
    elapsed = after.total - before.total
    busy = (after.busy - before.busy) / elapsed if elapsed > 0 else 0.0
    # procs_running counts the sampling process itself.
    queue = max(0, after.running - 1) / max(1, cores)
    return max(busy, queue)


def node_limit(configured: int, cores: int) -> int:
    """node-action-limit with its default (0: twice the cores)."""
    return configured if configured > 0 else 2 * max(1, cores)


def effective_limit(limit: int, load: float, threshold_percent: int) -> int:
    """The limit, lowered while the node is busier than the threshold."""
    threshold = threshold_percent / 100.0
    if load <= threshold:
        return limit
    if load <= 1.2 * threshold:
        return max(1, limit // 2)
    if load <= 1.5 * threshold:
        return max(1, limit // 4)
    return 1


def ramp_limit(elapsed: float, period: float, ceiling: int) -> int:
    """How many probes of a burst may run at once `elapsed` seconds after it began: one,
    doubling after each `period`, never above `ceiling` (at least one)."""
    ceiling = max(1, ceiling)
    if elapsed <= 0 or period <= 0:
        return 1 if period > 0 else ceiling
    steps = int(elapsed / period)
    return ceiling if steps >= ceiling.bit_length() else min(ceiling, 1 << steps)
