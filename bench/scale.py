"""The control plane under load and at scale (docs/control-plane.md): 3 controllers + M
computes × R resources on one machine's network-namespace lab.

    flock /tmp/hastack-lab.lock .venv/bin/python bench/scale.py \\
        [--computes 9,30] [--resources 150] [--idle 20] [--changes 5] [--monitor 30] \\
        [--keep DIR] [--in-memory] [--etcd-data memory|disk] [--fencing] \\
        [--heartbeat-interval 0.2] [--suspect-after 0.6]

Root only; hold the machine's lab lock for the whole run (it measures). For each M a lab is
brought up (compute agents started in waves), then:

    idle        `--idle` seconds with no resources
    for each R:
      apply     R `ocf:heartbeat:Dummy` primitives and a clone on every node, applied at
                once (every node probes every primitive first, as Pacemaker's do): the time
                from the apply command until all R + (3 + M) instances run, bounded by
                `--apply-timeout`
      idle      `--idle` seconds with them running, each monitored every `--monitor` s
      changes   `--changes` single changes (one primitive added), each waited for
      clear     the configuration emptied and waited for (not measured; bounded)

For every phase it prints: etcd requests (gRPC messages the members received: unary
requests, lease keep-alives, watch requests) and client bytes (in + out), read from etcd's
own Prometheus counters before and after (`http://MEMBER:2379/metrics`, scraped from the
client host by `bench/etcd_probe.py`, whose own reads are subtracted), watch messages sent,
store writes (revisions), per second or per change; memberships lost, watchdog resets and
DC elections (from the nodes' events.jsonl, where the process watchdog records its resets:
a reset agent records nothing; lost and resets must be 0); CPU of the DC's agent, of the other
controllers', of the compute agents (median and max), of etcd and of the whole machine
(/proc/PID/stat, /proc/stat, /proc/loadavg), and the agents' memory (RSS, PSS). At the end
one table over every size, then Pacemaker's documented limits and throttling defaults.

`--fencing` turns fencing on (every host powered off through the lab's power registry, as
the scenarios do): nothing crashes in this benchmark, so every member suspected and every
fence confirmed is false, and both are printed beside the silences (must be 0).

`--etcd-data` says where the etcd members keep their data: in memory (/dev/shm, the lab's
default since the disk stalled them: docs/lab.md, "etcd's data in memory") or on disk, in
the lab's directory, where the three members share this machine's one virtual disk (each
would have its own on three hosts) and its fdatasync stalls (etcd's `slow fdatasync`) are a
property of the lab, not of the design. `--in-memory` puts the whole lab directory on
/dev/shm (the agents' logs and records too). Nothing else changes.

Time: the default run (9 and 30 computes × 150 resources) takes about 6 minutes on a
2-core machine; `--computes 9,30,100 --resources 150,1000` about 50 minutes. Nothing here
passes or fails on a time; the counts that must be 0 are printed as such.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import labstats
from hastack.lab.net import Lab
from hastack.lab.net.lab import LabError
from hastack.lab.net.topology import CLIENT

PROBE = Path(__file__).resolve().parent / "etcd_probe.py"
CLEAR_TIMEOUT = 180.0
CHANGE_TIMEOUT = 60.0
# What a node's process watchdog records when it resets the node or kills its agent.
WATCHDOG_EVENTS = ("watchdog-reset", "watchdog-killed-agent")

PACEMAKER = """\
Pacemaker's documented limits and defaults, for comparison (not measured here):
  full cluster nodes (Corosync + all daemons)  at most 32 supported (RHEL 7.7+/8.1+; 16 before)
      - Red Hat, "Support Policies for RHEL High Availability Clusters - Membership and
        cluster size" (access.redhat.com/articles/3069031); Pacemaker Remote guide, "Scaling
        a Pacemaker Cluster": the full stack "limits scalability to around 32 nodes"
  the rest                                     pacemaker_remote nodes: no quorum vote, never
      DC, no fencing execution; "dozens or even hundreds" (Pacemaker Remote guide, 1.1)
  Corosync token timeout                       token + (nodes - 2) x token_coefficient
      = 3 s + (nodes - 2) x 650 ms by default (corosync.conf(5)): 22.5 s at 32 nodes
  node-action-limit                            0 = 2 x cores operations at once per node
  load-threshold                               80 % CPU, above it fewer actions at once
  batch-limit                                  0 = dynamic, lowered when a node is loaded
  cluster-delay                                60 s (hastack: 20 s)
      - pacemaker-controld(7), pacemaker-schedulerd(7), "Pacemaker Explained" cluster options
hastack's equivalents: node-action-limit and load-threshold as above, batch-limit 30
(docs/control-plane.md, section 5); computes are remote nodes (no etcd member, never DC,
heartbeats to the full nodes only)."""


# ---- measuring ---------------------------------------------------------------------------------


class EtcdProbe:
    """`bench/etcd_probe.py` in the client host, one JSON request and answer per line."""

    def __init__(self, lab: Lab) -> None:
        argv = [
            "ip", "netns", "exec", lab.host(CLIENT).namespace, sys.executable, str(PROBE),
            "--config", str(lab.client_config),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
        )

    def ask(self, **request: Any) -> dict[str, Any]:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the etcd probe ended (code {self._proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@dataclass
class Mark:
    """Everything sampled at one moment."""

    mono: float
    wall: float
    metrics: dict[str, Any]
    cpu: dict[labstats.Proc, int]
    machine: tuple[int, int]


@dataclass
class Window:
    """What happened between two marks."""

    name: str
    seconds: float
    requests: float  # gRPC messages received by the members, the probe's taken out
    by_method: dict[str, float]
    watch_sent: float
    client_bytes: float  # in + out, the probe's taken out
    peer_bytes: float
    writes: int  # store revisions
    cpu: dict[labstats.Proc, float]
    machine_busy: float
    load: tuple[float, float, float]
    lost: int
    elections: int
    late: int  # lease renewals that used over half of their margin
    worst_gap: float  # the longest time between two good renewals among them (0: none late)
    silent: int  # a controller's agent found a member silent (nothing crashed: all false)
    suspected: int  # with --fencing: a member suspected (all false: nothing crashed)
    fenced: int  # with --fencing: fences confirmed (all false)
    # A node's watchdog reset it or killed its agent (nothing crashed: all false). A reset
    # agent dies before it can record its membership lost: only the watchdog's event says.
    resets: int
    why_lost: dict[str, int] = field(default_factory=dict)  # each reason given, how often
    extra: dict[str, Any] = field(default_factory=dict)

    def per(self, n: float) -> tuple[float, float, float]:
        """(requests, client bytes, writes) per `n` (seconds, changes, resources)."""
        return self.requests / n, self.client_bytes / n, self.writes / n

    def beyond(self, idle: Window, n: float) -> tuple[float, float]:
        """(requests, client bytes) per `n` beyond what the idle rate would have cost in
        the same time (lease renewals, mostly): what the work itself cost."""
        return (
            (self.requests - idle.requests / idle.seconds * self.seconds) / n,
            (self.client_bytes - idle.client_bytes / idle.seconds * self.seconds) / n,
        )


def _total(metrics: dict[str, Any], name: str) -> float:
    return sum(
        float(m.get("totals", {}).get(name, 0.0))
        for m in metrics["members"].values()
        if "error" not in m
    )


def _by_method(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in metrics["members"].values():
        for method, value in (
            m.get("by_method", {}).get("grpc_server_msg_received_total", {}).items()
        ):
            out[method] = out.get(method, 0.0) + float(value)
    return out


class Meter:
    def __init__(self, lab: Lab, probe: EtcdProbe) -> None:
        self.lab = lab
        self.probe = probe
        self.procs = labstats.inventory(lab)

    def mark(self) -> Mark:
        # Found again each time: an agent restarted by its supervisor is a new process.
        self.procs = labstats.inventory(self.lab)
        metrics = self.probe.ask(op="metrics")
        errors = [e for e, m in metrics["members"].items() if "error" in m]
        if errors:
            print(f"  (metrics unreadable from {', '.join(errors)})", flush=True)
        return Mark(
            time.monotonic(),
            time.time(),
            metrics,
            labstats.cpu_sample(self.procs),
            labstats.machine_ticks(),
        )

    def window(self, name: str, a: Mark, b: Mark, **extra: Any) -> Window:
        own_requests = b.metrics["own"]["requests"] - a.metrics["own"]["requests"]
        own_bytes = b.metrics["own"]["bytes"] - a.metrics["own"]["bytes"]
        received = "grpc_server_msg_received_total"
        client = (
            "etcd_network_client_grpc_received_bytes_total",
            "etcd_network_client_grpc_sent_bytes_total",
        )
        methods_a, methods_b = _by_method(a.metrics), _by_method(b.metrics)
        by_method = {k: v - methods_a.get(k, 0.0) for k, v in methods_b.items()}
        by_method["Range"] = by_method.get("Range", 0.0) - own_requests
        sent_a = sum(
            float(m.get("by_method", {}).get("grpc_server_msg_sent_total", {}).get("Watch", 0.0))
            for m in a.metrics["members"].values()
        )
        sent_b = sum(
            float(m.get("by_method", {}).get("grpc_server_msg_sent_total", {}).get("Watch", 0.0))
            for m in b.metrics["members"].values()
        )
        seconds = b.mono - a.mono
        events = labstats.events(
            self.lab,
            [
                "membership-lost",
                "dc-elected",
                "lease-renewal-late",
                "node-silent",
                "node-suspected",
                "fence-recorded",
                *WATCHDOG_EVENTS,
            ],
        )
        inside = [e for e in events if a.wall <= float(e.get("t", 0.0)) <= b.wall]
        return Window(
            name=name,
            seconds=seconds,
            requests=_total(b.metrics, received) - _total(a.metrics, received) - own_requests,
            by_method={k: v for k, v in by_method.items() if v > 0},
            watch_sent=sent_b - sent_a,
            client_bytes=sum(_total(b.metrics, c) - _total(a.metrics, c) for c in client)
            - own_bytes,
            peer_bytes=_total(b.metrics, "etcd_network_peer_sent_bytes_total")
            - _total(a.metrics, "etcd_network_peer_sent_bytes_total"),
            writes=int(b.metrics["revision"]) - int(a.metrics["revision"]),
            cpu=labstats.cpu_percent(a.cpu, b.cpu, seconds),
            machine_busy=labstats.machine_busy(a.machine, b.machine),
            load=labstats.loadavg(),
            lost=sum(1 for e in inside if e.get("event") == "membership-lost"),
            why_lost=dict(
                Counter(
                    str(e.get("reason", "?")) for e in inside if e.get("event") == "membership-lost"
                )
            ),
            elections=sum(1 for e in inside if e.get("event") == "dc-elected"),
            late=sum(1 for e in inside if e.get("event") == "lease-renewal-late"),
            silent=sum(1 for e in inside if e.get("event") == "node-silent"),
            suspected=sum(1 for e in inside if e.get("event") == "node-suspected"),
            fenced=sum(1 for e in inside if e.get("event") == "fence-recorded"),
            resets=sum(1 for e in inside if e.get("event") in WATCHDOG_EVENTS),
            worst_gap=max(
                (float(e["gap"]) for e in inside if e.get("event") == "lease-renewal-late"),
                default=0.0,
            ),
            extra=extra,
        )


# ---- the workload ------------------------------------------------------------------------------


def head(fencing: str | None, detection: str = "") -> list[str]:
    """The configuration's properties and fencing: none, or (`--fencing`) every node fenced
    by powering its host off through the lab's power registry at `fencing`. `detection`:
    more properties (`--heartbeat-interval`, `--suspect-after`), `, name: value` each."""
    if fencing is None:
        return [f"properties: {{stonith-enabled: false{detection}}}"]
    return [
        f"properties: {{stonith-enabled: true, stonith-action: 'off'{detection}}}",
        "fencing:",
        "  devices:",
        f"    - {{device: power, agent: fence_hastack_local, params: {{registry: '{fencing}'}}}}",
    ]


def config_text(
    resources: int,
    monitor: int,
    added: int = 0,
    fencing: str | None = None,
    detection: str = "",
) -> str:
    op = f"ops: [{{name: monitor, interval: {monitor}s}}]"
    lines = [*head(fencing, detection), "resources:"]
    lines += [
        f"  - {{primitive: r{i}, agent: 'ocf:heartbeat:Dummy', {op}}}" for i in range(resources)
    ]
    lines += [f"  - {{primitive: x{i}, agent: 'ocf:heartbeat:Dummy', {op}}}" for i in range(added)]
    lines += [
        "  - clone: all-clone",
        f"    resource: {{primitive: everywhere, agent: 'ocf:heartbeat:Dummy', {op}}}",
    ]
    return "\n".join(lines) + "\n"


def empty(fencing: str | None, detection: str = "") -> str:
    return "\n".join([*head(fencing, detection), "resources: []"]) + "\n"


def fencing_of(lab: Lab, args: argparse.Namespace) -> str | None:
    """The power registry the configuration fences through (`--fencing`), or None."""
    return str(lab.power_registry) if args.fencing else None


def detection(args: argparse.Namespace) -> str:
    """The heartbeat timings asked for, as properties to add (none: the defaults)."""
    text = ""
    if args.heartbeat_interval is not None:
        text += f", heartbeat-interval: {args.heartbeat_interval * 1000:g}ms"
    if args.suspect_after is not None:
        text += f", suspect-after: {args.suspect_after * 1000:g}ms"
    return text


def apply(lab: Lab, text: str, work: Path) -> float:
    """Store a configuration from the client host; the seconds the command took."""
    path = work / "cluster.yaml"
    path.write_text(text)
    started = time.monotonic()
    lab.apply_config(path)
    return time.monotonic() - started


def names(resources: int, added: int = 0) -> list[str]:
    return [f"r{i}" for i in range(resources)] + [f"x{i}" for i in range(added)] + ["everywhere"]


# ---- reporting ---------------------------------------------------------------------------------


def cpu_summary(lab: Lab, w: Window) -> str:
    elected = labstats.events(lab, ["dc-elected"])
    dc = str(elected[-1].get("node")) if elected else None
    dc_cpu = [v for p, v in w.cpu.items() if p.kind == "agent" and p.host == dc]
    ctl = [
        v for p, v in w.cpu.items() if p.kind == "agent" and p.role == "controller" and p.host != dc
    ]
    cmp_ = [v for p, v in w.cpu.items() if p.kind == "agent" and p.role == "compute"]
    etcd = [v for p, v in w.cpu.items() if p.kind == "etcd"]
    total = sum(w.cpu.values())
    parts = [f"DC agent {dc_cpu[0] if dc_cpu else 0:.1f}"]
    if ctl:
        parts.append(f"other controllers {statistics.median(ctl):.1f}")
    if cmp_:
        parts.append(f"compute agents {statistics.median(cmp_):.2f} (max {max(cmp_):.1f})")
    parts.append(f"etcd {statistics.median(etcd):.1f}" if etcd else "etcd -")
    parts.append(f"agents and etcd in all {total:.0f}")
    return (
        "CPU % of a core: " + ", ".join(parts) + f"; machine {100 * w.machine_busy:.0f} % of "
        f"{os.cpu_count()} cores busy, load {w.load[0]:.1f}"
    )


def say_window(
    lab: Lab,
    w: Window,
    per: float,
    unit: str,
    idle: Window | None = None,
    out: TextIO = sys.stdout,
) -> None:
    req, byt, wr = w.per(per)
    top = sorted(w.by_method.items(), key=lambda kv: -kv[1])[:4]
    methods = ", ".join(f"{k} {v / per:.1f}" for k, v in top)
    beyond = ""
    if idle is not None:
        extra_req, extra_bytes = w.beyond(idle, per)
        beyond = f" — beyond the idle rate {extra_req:.1f} requests, {extra_bytes / 1024:.1f} KiB"
    print(
        f"  {w.name}: {w.seconds:.1f} s; per {unit}: {req:.1f} etcd requests ({methods}), "
        f"{byt / 1024:.1f} KiB client traffic, {w.watch_sent / per:.1f} watch messages sent, "
        f"{wr:.2f} writes; peer (raft) {w.peer_bytes / per / 1024:.1f} KiB{beyond}",
        file=out,
    )
    limit = f"{lab.timings.loss_after:g} or {lab.remote_timings.loss_after:g}"
    late = f" (longest gap {w.worst_gap:.2f} s of {limit})" if w.late else ""
    print(
        f"    memberships lost {w.lost} (must be 0), members found silent {w.silent} (must be "
        f"0), suspected {w.suspected} and fenced {w.fenced} (must be 0), watchdog resets "
        f"{w.resets} (must be 0), DC elections "
        f"{w.elections}, late lease renewals {w.late}{late}; " + cpu_summary(lab, w),
        file=out,
        flush=True,
    )
    for reason, count in sorted(w.why_lost.items(), key=lambda x: -x[1]):
        print(f"      membership lost ({count}×): {reason}", file=out, flush=True)


def memory_summary(meter: Meter) -> str:
    agents = [p for p in meter.procs if p.kind == "agent"]
    mem = {p: labstats.memory_kib(p.pid) for p in agents}
    comp = [mem[p] for p in agents if p.role == "compute"]
    ctl = [mem[p] for p in agents if p.role == "controller"]
    out = []
    if ctl:
        out.append(
            f"controller agents RSS {max(r for r, _ in ctl) / 1024:.0f} MiB max "
            f"(PSS {max(s for _, s in ctl) / 1024:.0f})"
        )
    if comp:
        out.append(
            f"compute agents RSS {statistics.median(r for r, _ in comp) / 1024:.0f} MiB median, "
            f"{max(r for r, _ in comp) / 1024:.0f} max (PSS median "
            f"{statistics.median(s for _, s in comp) / 1024:.0f})"
        )
    return "memory: " + "; ".join(out)


@dataclass
class Row:
    computes: int
    resources: int
    up: float
    all_started: float | None
    idle0: Window
    apply_w: Window | None = None
    idle: Window | None = None
    change: Window | None = None
    change_times: list[float] = field(default_factory=list)
    rss: str = ""


# ---- the run -----------------------------------------------------------------------------------


def run_size(computes: int, resources: list[int], args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    root = "/dev/shm" if args.in_memory else None
    with tempfile.TemporaryDirectory(prefix="hastack-scale-", dir=root) as tmp:
        work = Path(tmp)
        started = time.monotonic()
        memory = args.in_memory or args.etcd_data == "memory"
        where = "etcd data in memory (/dev/shm)" if memory else "etcd data on disk"
        if args.in_memory:
            where += ", the whole lab directory too"
        print(f"\n== 3 controllers + {computes} computes, {where}", flush=True)
        lab = Lab.up(
            work / "lab",
            nodes=3,
            computes=computes,
            on_progress=lambda m: print(f"  {m}"),
            etcd_data=args.etcd_data,
        )
        rt = lab.remote_timings
        print(
            f"  timings: controllers {lab.timings.loss_after:g} s to lose a membership, "
            f"computes {rt.loss_after:g} s (TTL {rt.lease_ttl:g} s, renew {rt.renew_interval:g}"
            f" s, store timeout {rt.store_timeout:g} s); heartbeats: "
            + (detection(args).lstrip(", ") or "the configuration's defaults")
        )
        up = time.monotonic() - started
        probe = EtcdProbe(lab)
        try:
            meter = Meter(lab, probe)
            lost_at_start = len(labstats.events(lab, ["membership-lost"]))
            print(f"  lab up in {up:.1f} s ({lost_at_start} membership(s) lost while starting)")
            if args.fencing or detection(args):
                # The idle window too runs with fencing and the heartbeat timings asked for.
                apply(lab, empty(fencing_of(lab, args), detection(args)), work)
            time.sleep(args.settle)
            a = meter.mark()
            time.sleep(args.idle)
            idle0 = meter.window("idle, no resources", a, meter.mark())
            say_window(lab, idle0, idle0.seconds, "second")
            for r in resources:
                rows.append(run_resources(lab, meter, probe, computes, r, up, idle0, args, work))
                print("  " + rows[-1].rss, flush=True)
        finally:
            probe.close()
            if args.keep:
                keep_records(lab, Path(args.keep) / f"computes-{computes}")
            # A SIGTERM now (the hold's `timeout`) would stop the lab's removal half-way and
            # leave a hundred namespaces and watchdogs behind (2026-12-07 15:18): finish it.
            on_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            lab.down()
            signal.signal(signal.SIGTERM, on_term)
            left = lab.leftovers()
            if left:
                print(f"  left behind: {', '.join(left)}")
    return rows


def keep_records(lab: Lab, to: Path) -> None:
    """Each node's agent and etcd logs and its event records, for reading afterwards."""
    for h in lab.nodes():
        src, dst = lab.node_dir(h.name), to / h.name
        dst.mkdir(parents=True, exist_ok=True)
        for rel in ("agent.log", "etcd.log", "agent/events.jsonl"):
            if (src / rel).exists():
                shutil.copy(src / rel, dst / Path(rel).name)
    print(f"  records kept in {to}")


def run_resources(
    lab: Lab,
    meter: Meter,
    probe: EtcdProbe,
    computes: int,
    r: int,
    up: float,
    idle0: Window,
    args: argparse.Namespace,
    work: Path,
) -> Row:
    instances = r + 3 + computes
    row = Row(computes, r, up, None, idle0)
    print(
        f"  -- {r} resources + a clone on {3 + computes} nodes ({instances} instances)", flush=True
    )
    a = meter.mark()
    fencing = fencing_of(lab, args)
    text = config_text(r, args.monitor, fencing=fencing, detection=detection(args))
    took = apply(lab, text, work)
    done = probe.ask(
        op="wait", names=names(r), count=instances, timeout=args.apply_timeout, interval=1.0
    )
    row.apply_w = meter.window(f"apply {r}", a, meter.mark(), **done)
    if done["ok"]:
        row.all_started = took + done["seconds"]
        print(f"  all {instances} running {row.all_started:.1f} s after the apply command")
    else:
        print(f"  NOT all running after {args.apply_timeout:g} s: {done}")
    say_window(lab, row.apply_w, r, "resource", idle0)
    if not done["ok"]:
        clear(lab, probe, names(r), work, fencing, detection(args))
        return row
    time.sleep(args.settle)
    a = meter.mark()
    time.sleep(args.idle)
    row.idle = meter.window(f"idle, {r} resources", a, meter.mark())
    say_window(lab, row.idle, row.idle.seconds, "second")
    a = meter.mark()
    for k in range(1, args.changes + 1):
        took = apply(
            lab,
            config_text(r, args.monitor, added=k, fencing=fencing, detection=detection(args)),
            work,
        )
        one = probe.ask(
            op="wait", names=[f"x{k - 1}"], count=1, timeout=CHANGE_TIMEOUT, interval=0.25
        )
        row.change_times.append(took + one["seconds"] if one["ok"] else float("nan"))
    row.change = meter.window(f"{args.changes} single changes at {r}", a, meter.mark())
    times = ", ".join(f"{t:.1f}" for t in row.change_times)
    print(f"  one resource added, running after (s): {times}", flush=True)
    say_window(lab, row.change, args.changes, "change", row.idle)
    row.rss = memory_summary(meter)
    clear(lab, probe, names(r, args.changes), work, fencing, detection(args))
    return row


def clear(
    lab: Lab, probe: EtcdProbe, gone: list[str], work: Path, fencing: str | None, detect: str
) -> None:
    apply(lab, empty(fencing, detect), work)
    done = probe.ask(op="wait", names=[], count=0, gone=gone, timeout=CLEAR_TIMEOUT, interval=1.0)
    if not done["ok"]:
        print(f"  (resources still running {CLEAR_TIMEOUT:g} s after the clear: {done})")


def summary(rows: list[Row], args: argparse.Namespace) -> str:
    head = (
        f"{'computes':>8} {'rsc':>5} {'up s':>6} {'all started s':>13} "
        f"{'per change: s':>13} {'req':>6} {'KiB':>6} "
        f"{'idle/s: req':>11} {'KiB':>6} {'lost':>5} {'silent':>6} {'susp':>4} {'fenced':>6} "
        f"{'reset':>5} {'elect':>5} {'late':>5} "
        f"{'compute agent %':>15} {'machine %':>9}"
    )
    lines = [head]
    for row in rows:
        idle = row.idle or row.idle0
        windows = [w for w in (row.apply_w, row.idle, row.change) if w is not None]
        lost = sum(w.lost for w in windows)
        silent = sum(w.silent for w in windows)
        suspected = sum(w.suspected for w in windows)
        fenced = sum(w.fenced for w in windows)
        resets = sum(w.resets for w in windows)
        elect = sum(w.elections for w in windows)
        late = sum(w.late for w in windows)
        comp = [v for p, v in idle.cpu.items() if p.kind == "agent" and p.role == "compute"]
        change = (
            row.change.beyond(row.idle, args.changes)
            if row.change is not None and row.idle is not None
            else (float("nan"), float("nan"))
        )
        times = [t for t in row.change_times if not math.isnan(t)]
        lines.append(
            f"{row.computes:>8} {row.resources:>5} {row.up:>6.1f} "
            f"{row.all_started if row.all_started is not None else float('nan'):>13.1f} "
            f"{statistics.median(times) if times else float('nan'):>13.1f} "
            f"{change[0]:>6.0f} {change[1] / 1024:>6.1f} "
            f"{idle.requests / idle.seconds:>11.1f} "
            f"{idle.client_bytes / idle.seconds / 1024:>6.1f} "
            f"{lost:>5} {silent:>6} {suspected:>4} {fenced:>6} {resets:>5} {elect:>5} {late:>5} "
            f"{statistics.median(comp) if comp else 0.0:>15.2f} {100 * idle.machine_busy:>9.0f}"
        )
    lines += [
        "  all started: from the apply command until every instance runs",
        "  per change: one primitive added; time: median; requests and KiB: means, beyond what "
        "the idle rate costs in the same time",
        f"  idle/s: with the R resources running, each monitored every {args.monitor} s",
        "  lost: memberships lost while applying, idle and changing (must be 0); silent: "
        "members a controller heard no heartbeat from for suspect-after, nothing having "
        "crashed (must be 0); susp, fenced: with --fencing, members suspected and fences "
        "confirmed (false, must be 0; without it none can be); reset: nodes their own "
        "watchdog reset, or agents it killed (must be 0); elect: DC elections then; "
        "late: lease renewals that used over half of their margin",
        "  compute agent %: median CPU of a compute agent while idle, % of one core; machine %: "
        "of all cores, idle",
    ]
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--computes", default="9,30", help="lab sizes, comma-separated")
    parser.add_argument("--resources", default="150", help="resource counts, comma-separated")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of each idle window")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before an idle window")
    parser.add_argument("--changes", type=int, default=5, help="single changes per size")
    parser.add_argument("--monitor", type=int, default=30, help="monitor interval, seconds")
    parser.add_argument("--apply-timeout", type=float, default=600.0)
    parser.add_argument("--keep", default=None, help="keep the agents' and etcd's logs here")
    parser.add_argument(
        "--fencing",
        action="store_true",
        help="fencing on (every host powered off through the lab's registry when suspected): "
        "suspicions and fences are counted, and each is false",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=None,
        help="seconds between heartbeats (default: the configuration's, 0.2)",
    )
    parser.add_argument(
        "--suspect-after",
        type=float,
        default=None,
        help="seconds of silence before a full node is suspected (default: the "
        "configuration's, 1.0; bench/vip_failover.py measures failover at 0.6)",
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="the whole lab directory (the agents' files too) on /dev/shm instead of the disk",
    )
    parser.add_argument(
        "--etcd-data",
        choices=("memory", "disk"),
        default="memory",
        help="where the etcd members keep their data (default: memory, the lab's default)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    # Stopped from outside (`timeout`, a hold's end): end as an exception does, so that the
    # lab is brought down (run_size's `finally`) instead of left up with its hundred agents.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    rows: list[Row] = []
    for computes in _sizes(args.computes):
        try:
            rows += run_size(computes, sorted(_sizes(args.resources)), args)
        except LabError as exc:  # the lab is down again (run_size's `finally`)
            print(f"scale: {computes} computes: the run ended: {exc}", file=sys.stderr)
            if rows:
                print("\n" + summary(rows, args))
            return 1
    print("\n" + summary(rows, args))
    print()
    print(PACEMAKER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
