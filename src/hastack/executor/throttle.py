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

And while a node's load is high, nodes take turns to start probes (`cluster_share`,
`probe_turn`): Pacemaker's DC bounds the whole cluster's jobs to half its nodes while one
node's load is high and a quarter while it is extreme, each node then running what its own
limit allows. Here each node probes by itself (no DC hands the probes out), so a busy node
starts new probes only in one load period of two (high) or four (extreme), its turn fixed by
its name: whatever the phases of the nodes' clocks, about that share of the nodes is in its
turn at any moment. At 100 computes on 2 cores, one probe per node at once was still 103
probes beside 103 agents parsing the configuration (procs_running 100-340), and the
controllers' leases and etcd starved (docs/control-plane.md, section 8).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = [
    "CpuSample",
    "cluster_share",
    "cpu_load",
    "effective_limit",
    "node_limit",
    "parse_proc_stat",
    "probe_turn",
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


def _busy_step(load: float, threshold_percent: int) -> int:
    """How far above load-threshold the load is: 0 at or below it, 1 up to 1.2 × it, 2 up
    to 1.5 ×, 3 above."""
    threshold = threshold_percent / 100.0
    if load <= threshold:
        return 0
    if load <= 1.2 * threshold:
        return 1
    if load <= 1.5 * threshold:
        return 2
    return 3


def effective_limit(limit: int, load: float, threshold_percent: int) -> int:
    """The limit, lowered while the node is busier than the threshold: a half, a quarter,
    then one."""
    lowered = (limit, max(1, limit // 2), max(1, limit // 4), 1)
    return lowered[_busy_step(load, threshold_percent)]


def ramp_limit(elapsed: float, period: float, ceiling: int) -> int:
    """How many probes of a burst may run at once `elapsed` seconds after it began: one,
    doubling after each `period`, never above `ceiling` (at least one)."""
    ceiling = max(1, ceiling)
    if elapsed <= 0 or period <= 0:
        return 1 if period > 0 else ceiling
    steps = int(elapsed / period)
    return ceiling if steps >= ceiling.bit_length() else min(ceiling, 1 << steps)


def cluster_share(load: float, threshold_percent: int) -> int:
    """One node in how many may start probes at a time: 1 up to 1.2 × load-threshold, 2
    above it, 4 above 1.5 × (the steps where `effective_limit` goes to a quarter and to
    one)."""
    return (1, 1, 2, 4)[_busy_step(load, threshold_percent)]


def probe_turn(node: str, now: float, period: float, share: int) -> bool:
    """Whether `node` may start probes in the `period` that `now` falls in when one node in
    `share` may: consecutive periods go round the nodes by a CRC-32 of their names (stable
    across processes and machines), so each node has one period in `share`."""
    if share <= 1 or period <= 0:
        return True
    return (int(now // period) + zlib.crc32(node.encode())) % share == 0
