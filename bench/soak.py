"""A soak that mixes load and faults (docs/control-plane.md): for a bounded time, random
configuration changes — dozens of resources added, removed and moved at a time, VIPs among
them — while nodes crash, freeze and are cut off; then every fault is undone and the
records are judged.

    flock /tmp/hastack-lab.lock .venv/bin/python bench/soak.py [--computes 6] \\
        [--duration 180] [--faults 12] [--seed N]

Root only; hold the machine's lab lock. A lab of 3 controllers and `--computes` computes,
fencing on (`fence_hastack_local`, the lab's power switch), `--vips` VIPs (exclusive) and
`--resources` Dummy primitives to start with. Then, for `--duration` seconds:

* a configuration change every `--change-every` seconds (± half): add 1–24 primitives,
  remove 1–24, or move 1–24 (a location preference of 100 to a random node, or none);
  VIPs are moved too. Changes are stored by compare-and-swap; one refused while etcd is
  unreachable is counted, not retried.
* a fault every `--fault-every` seconds (± half), at most `--faults` in all, each lasting
  3–12 s: crash (power loss), pause (SIGSTOP of every process) or partition (the node cut
  off from every other). At most `--concurrent` at once, at most one on a controller (two
  lost etcd members would lose the store's quorum, and every node its membership, rightly)
  and one partition (the lab has one partition table). With `--leader-share` (default 0.25)
  a fault is, when no controller is down, a crash of the host whose etcd member leads raft:
  every renewal in the cluster then stalls through an etcd election, which the timings must
  ride out (agent_config.leader_change_problem).

At the end every fault is undone (heal, resume, boot what is off or was fenced), the
cluster is waited for (bounded), and the run prints the faults and changes, then the counts
that must be 0:

* memberships lost by a healthy node: a `membership-lost` event of a node that was neither
  crashed, paused nor cut off at that moment, nor within one lease TTL after such a fault
  on it ended;
* healthy nodes fenced: a power-off by the fence agent (`dead` in the node's exclusivity
  record, `by: fence_hastack_local`) of a node that was healthy by the same rule; and
  healthy nodes reset by their own watchdog;
* exclusive overlaps: the exclusivity checker over the agents' records (with every crash
  and power-off closing the dead node's intervals) and over the lab's own observation of
  where each VIP address was configured, sampled every 50 ms.

Records (nemesis log, events, exclusivity records, status timeline, checks) are kept in
`--results` (default ~/.hastack/results/soak-TIME). The default run takes about 6 minutes
(2 to start, 3 of soak, 1 to settle and judge). Nothing here passes or fails on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import labstats
from hastack.checkers import check_exclusive
from hastack.lab.net import Lab, LabError, StatusFeed
from hastack.lab.net.topology import HostRole
from hastack.lab.scenario import VipObserver, prepare_lab
from hastack.model.exclusivity import parse_events

FAULT_KINDS = ("crash", "pause", "partition")
MIN_FAULT, MAX_FAULT = 3.0, 12.0
MIN_POOL, MAX_POOL = 5, 120
END_WAIT = 180.0


@dataclass
class Fault:
    kind: str
    node: str
    start: float  # wall
    until: float  # monotonic: when to undo it
    end: float | None = None  # wall, once undone
    etcd_leader: bool = False  # a crash of the host whose etcd member led raft


@dataclass
class Pool:
    """The soak's cluster configuration, changed at random."""

    nodes: list[str]
    vips: dict[str, str]  # name -> address
    registry: str
    # The link's own prefix: a longer one makes a VIP the source of its holder's etcd peer
    # connections, which the members refuse (hastack.executor.agents.vip).
    netmask: int
    dummies: dict[str, str | None] = field(default_factory=dict)  # name -> preferred node
    vip_home: dict[str, str | None] = field(default_factory=dict)
    next_id: int = 0

    def add(self, count: int) -> None:
        for _ in range(count):
            self.dummies[f"d{self.next_id}"] = None
            self.next_id += 1

    def render(self) -> str:
        op = "ops: [{name: monitor, interval: 10s}]"
        doc: list[str] = [
            "properties: {stonith-enabled: true}",
            "fencing:",
            "  devices:",
            f"    - {{device: power, agent: fence_hastack_local, params: {{registry: "
            f"'{self.registry}'}}}}",
            "op-defaults: {timeout: 10s}",
            "nodes:",
            *(f"  - {{node: {n}}}" for n in self.nodes),
            "resources:",
        ]
        doc += [
            f"  - {{primitive: {name}, agent: 'hastack:vip', params: {{ip: '{ip}', "
            f"cidr_netmask: '{self.netmask}', nic: eth0}}, ops: [{{name: monitor, interval: 2s}}]}}"
            for name, ip in self.vips.items()
        ]
        doc += [
            f"  - {{primitive: {name}, agent: 'ocf:heartbeat:Dummy', {op}}}"
            for name in self.dummies
        ]
        homes = {**self.vip_home, **self.dummies}
        placed = [(name, node) for name, node in homes.items() if node is not None]
        if placed:
            doc.append("constraints:")
            doc += [
                f"  - {{location: {name}-home, resource: {name}, node: {node}, score: 100}}"
                for name, node in placed
            ]
        return "\n".join(doc) + "\n"

    def names(self) -> list[str]:
        return [*self.vips, *self.dummies]


class Soak:
    def __init__(self, lab: Lab, args: argparse.Namespace, results: Path) -> None:
        self.lab = lab
        self.args = args
        self.rng = random.Random(args.seed)
        self.results = results
        net = lab.topology.net_prefix(0)
        self.pool = Pool(
            nodes=[h.name for h in lab.nodes()],
            vips={f"vip{i}": f"{net}.{150 + i}" for i in range(args.vips)},
            registry=str(lab.power_registry),
            netmask=lab.topology.network(0).prefixlen,
        )
        self.pool.vip_home = dict.fromkeys(self.pool.vips)
        self.pool.add(args.resources)
        self.faults: list[Fault] = []
        self.changes: Counter[str] = Counter()
        self.moved = Counter[str]()
        self.notes: list[str] = []
        self.feed: StatusFeed | None = None

    # ---- configuration changes ------------------------------------------------------------

    def store(self) -> bool:
        path = self.results / "cluster.yaml"
        path.write_text(self.pool.render())
        try:
            self.lab.apply_config(path)
        except LabError as exc:
            self.changes["refused"] += 1
            why = str(exc).strip().splitlines()[-1][:200]
            self.notes.append(f"{_clock()} change refused: {why}")
            return False
        self.changes["applied"] += 1
        return True

    def change(self) -> str:
        pool, rng = self.pool, self.rng
        count = rng.randint(1, 24)
        kinds = ["add", "remove", "move"]
        if len(pool.dummies) - count < MIN_POOL:
            kinds.remove("remove")
        if len(pool.dummies) + count > MAX_POOL:
            kinds.remove("add")
        kind = rng.choice(kinds)
        if kind == "add":
            pool.add(count)
        elif kind == "remove":
            for name in rng.sample(sorted(pool.dummies), count):
                del pool.dummies[name]
        else:
            movable = sorted(pool.dummies) + sorted(pool.vips)
            for name in rng.sample(movable, min(count, len(movable))):
                home = rng.choice([*pool.nodes, None])
                (pool.vip_home if name in pool.vips else pool.dummies)[name] = home
        if self.store():
            self.moved[kind] += count
        return f"{kind} {count}"

    # ---- faults ---------------------------------------------------------------------------

    def active(self) -> list[Fault]:
        return [f for f in self.faults if f.end is None]

    def inject(self) -> str | None:
        active = self.active()
        if len(active) >= self.args.concurrent:
            return None
        busy = {f.node for f in active}
        controller_down = any(self.role(f.node) is HostRole.CONTROLLER for f in active)
        candidates = [
            n
            for n in self.pool.nodes
            if n not in busy and not (controller_down and self.role(n) is HostRole.CONTROLLER)
        ]
        kinds = list(FAULT_KINDS)
        if any(f.kind == "partition" for f in active):
            kinds.remove("partition")
        if not candidates:
            return None
        node, kind = self.rng.choice(candidates), self.rng.choice(kinds)
        leader = None
        if not controller_down and self.rng.random() < self.args.leader_share:
            leader = self.etcd_leader()
            if leader is not None and leader not in busy:
                node, kind = leader, "crash"
        lasts = self.rng.uniform(MIN_FAULT, MAX_FAULT)
        fault = Fault(kind, node, time.time(), time.monotonic() + lasts, None, node == leader)
        self.faults.append(fault)
        if kind == "crash":
            self.lab.crash(node)
        elif kind == "pause":
            self.lab.pause(node)
        else:
            others = [n for n in self.pool.nodes if n != node]
            self.lab.partition(f"{node} | {','.join(others)}")
        return f"{kind} {node}{' (etcd leader)' if fault.etcd_leader else ''} for {lasts:.1f}s"

    def undo(self, fault: Fault) -> None:
        lab = self.lab
        if fault.kind == "pause":
            lab.resume(fault.node)
        elif fault.kind == "partition":
            lab.heal()
        # Crashed, or fenced meanwhile (powered off by the DC): boot what is not running.
        done = lab.start(fault.node)
        fault.end = time.time()
        extra = f": {', '.join(done)}" if done else ""
        print(f"  {_clock()} undo {fault.kind} {fault.node}{extra}", flush=True)

    def etcd_leader(self) -> str | None:
        """The host whose etcd member leads raft, from the status feed's latest report."""
        report = (self.feed.latest or {}) if self.feed is not None else {}
        led = {str(e["endpoint"]).rsplit(":", 1)[0]
               for e in report.get("store", []) if e.get("is_leader")}  # fmt: skip
        leaders = [h.name for h in self.lab.controllers() if led & set(h.addresses)]
        return leaders[0] if leaders else None

    def role(self, node: str) -> HostRole:
        return self.lab.host(node).role

    # ---- the run --------------------------------------------------------------------------

    def running(self, report: dict[str, Any]) -> bool:
        want = set(self.pool.names())
        seen = {
            str(r["instance"]).partition(":")[0]
            for r in report.get("resources", [])
            if r.get("role") == "Started" and r.get("node-online") and not r.get("failed")
        }
        return self.lab.is_settled(report) and want <= seen

    def run(self) -> dict[str, Any]:
        args, lab = self.args, self.lab
        self.store()
        bound = args.duration + 2 * END_WAIT + 120.0
        with StatusFeed(lab, bound, 0.5, record_to=self.results / "status.jsonl") as feed:
            self.feed = feed
            feed.wait_for(self.running, END_WAIT, "every resource running before the soak")
            print(
                f"  {_clock()} {len(self.pool.names())} resources running; "
                f"soak for {args.duration:g}s",
                flush=True,
            )
            observer = VipObserver(lab, self.pool.vips, self.results / "observed-exclusive.jsonl")
            observer.start()
            started = time.monotonic()
            deadline = started + args.duration
            next_change = started + self._every(args.change_every)
            next_fault = started + self._every(args.fault_every)
            injected = 0
            try:
                while time.monotonic() < deadline:
                    now = time.monotonic()
                    for fault in self.active():
                        if now >= fault.until:
                            self.undo(fault)
                    if now >= next_fault and injected < args.faults:
                        what = self.inject()
                        if what:
                            injected += 1
                            print(f"  {_clock()} fault {injected}: {what}", flush=True)
                        next_fault = now + self._every(args.fault_every)
                    if now >= next_change:
                        what = self.change()
                        print(
                            f"  {_clock()} change: {what} ({len(self.pool.dummies)} Dummy)",
                            flush=True,
                        )
                        next_change = time.monotonic() + self._every(args.change_every)
                    time.sleep(0.2)
            finally:
                for fault in self.active():
                    self.undo(fault)
                fixed = prepare_lab(lab)
                if fixed:
                    self.notes.append(f"at the end the lab also needed: {', '.join(fixed)}")
            print(
                f"  {_clock()} soak over; every fault undone; waiting for the cluster", flush=True
            )
            settle_start = time.monotonic()
            try:
                feed.wait_for(
                    self.running, END_WAIT, "every node online and every resource running"
                )
                settled: float | None = time.monotonic() - settle_start
            except LabError as exc:
                settled = None
                self.notes.append(str(exc))
            time.sleep(2.0)
            observer.stop()
        return {"settled": settled, "end": time.time()}

    def _every(self, seconds: float) -> float:
        return self.rng.uniform(0.5 * seconds, 1.5 * seconds)

    # ---- judging --------------------------------------------------------------------------

    def unhealthy(self, node: str, wall: float, margin: float) -> bool:
        return any(
            f.node == node and f.start <= wall <= (f.end if f.end is not None else wall) + margin
            for f in self.faults
        )

    def judge(self, end: float) -> dict[str, Any]:
        lab = self.lab
        margin = float(max(lab.timings.lease_ttl, lab.remote_timings.lease_ttl))
        events = labstats.events(lab)
        lost = [e for e in events if e.get("event") == "membership-lost"]
        late = [e for e in events if e.get("event") == "lease-renewal-late"]
        exclusive: list[dict[str, Any]] = []
        for h in lab.nodes():
            path = lab.agent_state_dir(h.name) / "exclusive.jsonl"
            exclusive += parse_events(path.read_text().splitlines() if path.exists() else [])
        deaths = [e for e in exclusive if e.get("event") == "dead"]
        fenced = [e for e in deaths if e.get("by") == "fence_hastack_local"]
        resets = [e for e in deaths if e.get("by") == "watchdog"]

        def healthy(entries: list[dict[str, Any]], when: str) -> list[dict[str, Any]]:
            return [
                e for e in entries if not self.unhealthy(str(e["node"]), float(e[when]), margin)
            ]

        nemesis = [json.loads(x) for x in _lines(lab.nemesis_path)]
        observed = parse_events(_lines(self.results / "observed-exclusive.jsonl"))
        checks = [
            check_exclusive(exclusive, nemesis, end_of_run=end),
            check_exclusive(observed, nemesis, end_of_run=end, name="exclusive-observed"),
        ]
        (self.results / "checks.json").write_text(
            json.dumps([c.to_json() for c in checks], indent=2, default=str)
        )
        return {
            "lost": lost,
            "healthy_lost": healthy(lost, "t"),
            "late": late,
            "healthy_late": healthy(late, "t"),
            "fenced": fenced,
            "healthy_fenced": healthy(fenced, "wall"),
            "resets": resets,
            "healthy_resets": healthy(resets, "wall"),
            "elections": sum(1 for e in events if e.get("event") == "dc-elected"),
            "checks": checks,
        }

    def collect(self) -> None:
        for h in self.lab.nodes():
            src = self.lab.node_dir(h.name)
            dst = self.results / "agents" / h.name
            dst.mkdir(parents=True, exist_ok=True)
            for rel in ("agent.log", "etcd.log", "agent/events.jsonl", "agent/exclusive.jsonl"):
                if (src / rel).exists():
                    shutil.copy(src / rel, dst / Path(rel).name)
        if self.lab.nemesis_path.exists():
            shutil.copy(self.lab.nemesis_path, self.results / "nemesis.jsonl")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def report(soak: Soak, verdict: dict[str, Any], outcome: dict[str, Any]) -> str:
    kinds = Counter(f.kind for f in soak.faults)
    undone = all(f.end is not None for f in soak.faults)
    checks = {c.checker: c for c in verdict["checks"]}

    def overlaps(name: str) -> str:
        c = checks[name]
        if c.valid is None:
            return "- (nothing to judge)"
        return str(len(c.details.get("overlaps", [])))

    settled = outcome["settled"]
    lines = [
        f"soak: 3 controllers + {soak.args.computes} computes, {soak.args.duration:g} s, "
        f"seed {soak.args.seed}",
        f"  faults: {len(soak.faults)} ("
        + ", ".join(f"{k} {kinds[k]}" for k in FAULT_KINDS)
        + f"; {sum(f.etcd_leader for f in soak.faults)} crashes of the etcd leader's host), "
        + ("every one undone" if undone else "NOT ALL UNDONE"),
        f"  configuration changes: {soak.changes['applied']} stored, {soak.changes['refused']} "
        f"refused; resources added {soak.moved['add']}, removed {soak.moved['remove']}, moved "
        f"{soak.moved['move']} (up to 24 at a time); {len(soak.pool.names())} at the end",
        f"  DC elections: {verdict['elections']}; memberships lost: {len(verdict['lost'])} in "
        f"all; fencings: {len(verdict['fenced'])}; watchdog resets: {len(verdict['resets'])}",
        f"  late lease renewals (over half the margin used): {len(verdict['late'])} in all, "
        f"{len(verdict['healthy_late'])} on healthy nodes"
        + (
            f" (longest gap {max(float(e['gap']) for e in verdict['late']):.2f} s of "
            f"{soak.lab.timings.loss_after:g})"
            if verdict["late"]
            else ""
        ),
        "  at the end: "
        + (
            f"every node online and every resource running {settled:.1f} s after the last undo"
            if settled is not None
            else "NOT every resource running within the bound"
        ),
        "  must be 0:",
        f"    memberships lost by a healthy node     {len(verdict['healthy_lost'])}",
        f"    healthy nodes fenced                   {len(verdict['healthy_fenced'])}",
        f"    healthy nodes reset by their watchdog  {len(verdict['healthy_resets'])}",
        f"    exclusive overlaps (agents' records)   {overlaps('exclusive')}",
        f"    exclusive overlaps (observed VIPs)     {overlaps('exclusive-observed')}",
    ]
    for key, what in (
        ("healthy_lost", "membership lost by a healthy node"),
        ("healthy_fenced", "healthy node fenced"),
        ("healthy_resets", "healthy node reset"),
    ):
        for e in verdict[key]:
            lines.append(f"      {what}: {json.dumps(e, sort_keys=True)[:300]}")
    for c in verdict["checks"]:
        lines += [f"      {o}" for o in c.details.get("overlaps", [])]
    lines += [f"  note: {n}" for n in soak.notes]
    lines.append(f"  records: {soak.results}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--computes", type=int, default=6)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of soak")
    parser.add_argument("--faults", type=int, default=12, help="at most this many faults")
    parser.add_argument("--fault-every", type=float, default=14.0)
    parser.add_argument("--change-every", type=float, default=5.0)
    parser.add_argument("--concurrent", type=int, default=2, help="faults at once, at most")
    parser.add_argument(
        "--leader-share",
        type=float,
        default=0.25,
        help="share of faults that crash the etcd leader's host (when no controller is down)",
    )
    parser.add_argument("--vips", type=int, default=3)
    parser.add_argument("--resources", type=int, default=30, help="Dummy primitives at first")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    if not 0 < args.duration <= 3600 or not 0 <= args.faults <= 200:
        parser.error("--duration is 1..3600 s and --faults 0..200")
    if not 0 <= args.leader_share <= 1:
        parser.error("--leader-share is a share: 0..1")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = Path(args.results or Path.home() / ".hastack" / "results" / f"soak-{stamp}")
    results.mkdir(parents=True, exist_ok=True)
    print(f"soak: seed {args.seed}; records in {results}", flush=True)
    lab = Lab.up(
        results / "lab",
        nodes=3,
        computes=args.computes,
        on_progress=lambda m: print(f"  {m}", flush=True),
    )
    collected = False
    try:
        soak = Soak(lab, args, results)
        outcome = soak.run()
        soak.collect()
        collected = True
        verdict = soak.judge(outcome["end"])
        text = report(soak, verdict, outcome)
        (results / "summary.txt").write_text(yaml.safe_dump({"args": vars(args)}) + text + "\n")
        print()
        print(text)
    finally:
        lab.down(keep_logs=True)
        if collected:  # else the lab's own logs are what is left to read
            shutil.rmtree(results / "lab", ignore_errors=True)
        left = lab.leftovers()
        if left:
            print(f"left behind: {', '.join(left)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
