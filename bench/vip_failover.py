"""Time from a hard crash of the VIP holder to the VIP answering on another node, with
fencing on — beside keepalived doing the same job, measured in the same lab, same probe —
with hastack's pipeline step by step, a partition trial for both, and hastack's false
suspicions under packet loss and CPU pressure.

    .venv/bin/python bench/vip_failover.py [--trials 10] [--keepalived-trials 10]
        [--heartbeat-interval 0.2] [--suspect-after 0.6] [--pressure-seconds 60]

One lab (3 controllers). hastack: a VIP (hastack:vip) with an HTTP API on every node,
fence_hastack_local as the fence device, heartbeats every --heartbeat-interval, suspect
after --suspect-after. Each trial: a probe in the client host connects to VIP:8080 every
20 ms (0.3 s timeout); the holder loses power (NICs down, every process killed); the figure
is crash → first answer from the new holder, the crash's moment taken just before its NICs
go down. The crashed host is booted again before the next trial. The agents' event logs
(events.jsonl) give each step of the pipeline:

    detection    crash → a survivor notices the silence (node-silent)
    reaction     noticed → the DC requests the fence (fence-started; a new DC first when the
                 crashed node was the DC)
    fence        requested → the fence device answered (fence-done)
    confirm      device answered → the result recorded in the store (fence-recorded)
    schedule     confirmed → the DC wrote the new holder's target (targets-written)
    take         target written → the new holder's VIP start began (operation)
    address      start began → the address added
    announce     address added → the first gratuitous ARP sent
    answer       ARP sent → the probe's first answer from the new holder

keepalived: the same hosts, the same probe, VRRP at Debian's defaults (VRRPv2, advert_int
1 s) and at hastack's interval (VRRPv3, advert_int 0.2 s). Partition trial, one each: the
VIP's holder cut off from the other controllers while the client still reaches all three;
an ARP probe from the client counts the moments two hosts answer for the VIP. False
suspicions: the same timings, --pressure-seconds with 30 % of one node's packets dropped
(the lab's random-drop rule on that host's ports; this kernel has no netem), then with one
node's agent sharing one core with a busy loop; silences noticed, suspicions, depositions and
fences of healthy nodes are counted (0 is the only pass for fences). Pacemaker is printed as
documented defaults, not measured. Figures, never a pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hastack.lab.net import Lab

sys.path.insert(0, str(Path(__file__).parent))

from keepalived_anchor import (
    DEBIAN,
    TUNED,
    Partition,
    crash_and_probe,
    first_answer_after,
    partition_probe,
    partition_trial,
    run_trials,
)
from labstats import events

# The pipeline's steps: (name, the mark it ends at), in order; each starts where the one
# before it ended, the first at the crash.
STEPS = (
    ("detection", "noticed"),
    ("reaction", "requested"),
    ("fence", "fenced"),
    ("confirm", "confirmed"),
    ("schedule", "targeted"),
    ("take", "began"),
    ("address", "added"),
    ("announce", "announced"),
    ("answer", "answered"),
)

# What counts as a healthy node held for dead, under pressure.
SUSPICION_EVENTS = ("node-silent", "node-suspected", "dc-deposed", "fence-started")
# Not suspicions: a membership lost (the lease), and what follows from it — a DC that said it
# lost its membership deposed, a self-fencing node's fence deferred (docs/fencing.md).
LIVENESS_EVENTS = ("membership-lost", "lease-renewal-late", "dc-deposed-gave-up", "fence-deferred")

BUSY = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n pass\n"


def cluster(lab: Lab, interval: float, suspect_after: float) -> dict[str, object]:
    vip = f"{lab.topology.net_prefix(0)}.100"
    # The link's own prefix: a longer one makes the VIP the source of the holder's etcd
    # peer connections, which the members refuse (hastack.executor.agents.vip).
    netmask = str(lab.topology.network(0).prefixlen)
    return {
        "properties": {
            "stonith-enabled": True,
            "heartbeat-interval": f"{interval * 1000:g}ms",
            "suspect-after": f"{suspect_after * 1000:g}ms",
        },
        "fencing": {
            "devices": [
                {
                    "device": "power",
                    "agent": "fence_hastack_local",
                    "params": {"registry": str(lab.power_registry)},
                }
            ]
        },
        "op-defaults": {"timeout": "10s"},
        "resources": [
            {
                "primitive": "vip",
                "agent": "hastack:vip",
                "params": {"ip": vip, "cidr_netmask": netmask, "nic": "eth0"},
                "ops": [{"name": "monitor", "interval": "1s"}],
            },
            {
                "clone": "api-clone",
                "resource": {
                    "primitive": "api",
                    "agent": "hastack:service",
                    "params": {
                        "command": f"exec {sys.executable} -m hastack.lab.net.demo_api --port 8080",
                        "health-port": "8080",
                    },
                    "ops": [{"name": "monitor", "interval": "1s"}],
                },
            },
        ],
        "constraints": [
            {"colocation": "vip-with-api", "resource": "vip", "with": "api-clone"},
            {"order": "api-then-vip", "first": "api-clone", "then": "vip"},
        ],
    }


def holder(report: Mapping[str, Any]) -> str | None:
    nodes = {n["name"] for n in report.get("nodes", []) if n.get("online")}
    found = [
        r["node"]
        for r in report.get("resources", [])
        if r["instance"] == "vip" and r.get("role") == "Started" and r["node"] in nodes
    ]
    return found[0] if len(found) == 1 else None


def wait_settled(lab: Lab, timeout: float = 60) -> tuple[str, str]:
    """(the VIP's holder, the DC), once every controller is online with its API running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = json.loads(lab.status())
        online = [n for n in report.get("nodes", []) if n.get("online")]
        apis = {
            r["node"]
            for r in report.get("resources", [])
            if r["instance"].startswith("api") and r.get("role") == "Started"
        }
        node, dc = holder(report), report.get("dc_node")
        if node and dc and len(online) == len(lab.controllers()) and len(apis) == len(online):
            return node, str(dc)
        time.sleep(0.3)
    raise RuntimeError("the cluster did not settle")


# ---- the pipeline, from the agents' events -------------------------------------------------


def _first(
    found: Iterable[Mapping[str, Any]], after: float, **match: object
) -> Mapping[str, Any] | None:
    for e in found:
        if float(e["t"]) >= after and all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def pipeline(
    found: Sequence[Mapping[str, Any]], victim: str, crashed_at: float, answered_at: float
) -> dict[str, float | None]:
    """The moments of one failover (wall time; None where an event is missing), from the
    events of every agent, oldest first: `crash`, `noticed`, `requested`, `fenced`,
    `confirmed`, `targeted`, `began`, `added`, `announced`, `answered`, and `last_beat` (the
    last beat the fencing DC heard from the victim), `suspected`, `elected` (a new DC,
    when the victim was the DC)."""
    marks: dict[str, float | None] = {"crash": crashed_at, "answered": answered_at}
    started = _first(found, crashed_at, event="fence-started", peer=victim)
    fencer = started["node"] if started else None  # `node`: the agent whose log it is
    by = [e for e in found if e.get("node") == fencer] if fencer else []
    noticed = _first(by, crashed_at, event="node-silent", peer=victim) or _first(
        found, crashed_at, event="node-silent", peer=victim
    )
    marks["noticed"] = float(noticed["t"]) if noticed else None
    marks["last_beat"] = float(noticed["t"]) - float(noticed["silent_for"]) if noticed else None
    suspected = _first(by, crashed_at, event="node-suspected", peer=victim)
    marks["suspected"] = float(suspected["t"]) if suspected else None
    elected = _first(by, crashed_at, event="dc-elected")
    marks["elected"] = float(elected["t"]) if elected else None
    marks["requested"] = float(started["t"]) if started else None
    done = _first(by, crashed_at, event="fence-done", peer=victim)
    marks["fenced"] = float(done["t"]) if done else None
    recorded = _first(by, crashed_at, event="fence-recorded", peer=victim)
    marks["confirmed"] = float(recorded["t"]) if recorded else None
    start = next(
        (
            e
            for e in found
            if e.get("event") == "operation"
            and e.get("resource") == "vip"
            and e.get("op") == "start"
            and float(e.get("began", 0)) > crashed_at
        ),
        None,
    )
    marks["began"] = float(start["began"]) if start else None
    marks["added"] = float(start["address-added"]) if start and "address-added" in start else None
    marks["announced"] = float(start["arp-sent"]) if start and "arp-sent" in start else None
    marks["targeted"] = None
    if start is not None and recorded is not None:
        key = f"target/{start['node']}"
        targeted = next(
            (
                e
                for e in by
                if e.get("event") == "targets-written"
                and float(e["t"]) >= float(recorded["t"])
                and key in e.get("keys", [])
            ),
            None,
        )
        marks["targeted"] = float(targeted["t"]) if targeted else None
    return marks


def steps(marks: Mapping[str, float | None]) -> dict[str, float | None]:
    """Each step's duration: from the mark before it (the crash for the first) to its own."""
    out: dict[str, float | None] = {}
    before: float | None = marks["crash"]
    for name, mark in STEPS:
        end = marks.get(mark)
        out[name] = end - before if end is not None and before is not None else None
        before = end
    return out


def agent_events(lab: Lab, since: float) -> list[dict[str, Any]]:
    """Every agent's events since `since`, oldest first: `node` is the agent that wrote one,
    `peer` the node it is about."""
    return [e for e in events(lab) if float(e.get("t", 0.0)) >= since]


# ---- hastack's trials ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trial:
    took: float
    victim: str
    new: str
    was_dc: bool
    marks: dict[str, float | None]
    false_silences: int  # survivors that noticed a silence of another survivor
    led_etcd: bool | None = None  # the victim's host led etcd (None: not looked at)


def trial(lab: Lab, *, verbose: bool = False, dc_holds: bool | None = None) -> Trial:
    """One crash of the VIP's holder; with `dc_holds` set, the holder made the DC first
    (and etcd's leader too when it is True)."""
    leader: str | None = None
    if dc_holds is not None:
        _, leader = make_dc_hold(lab, etcd_too=dc_holds)
    old, dc = wait_settled(lab)
    time.sleep(1.0)
    logs = {h.name: lab.agent_log(h.name) for h in lab.controllers() if h.name != old}
    offsets = {n: p.stat().st_size if p.exists() else 0 for n, p in logs.items()}
    crashed_at, answers = crash_and_probe(lab, old, 10)
    took = first_answer_after(answers, crashed_at, old)
    if took is None:
        lab.start(old)
        raise RuntimeError(f"no answer from another host within 9 s after crashing {old}")
    found = agent_events(lab, crashed_at)
    marks = pipeline(found, old, crashed_at, crashed_at + took)
    false = sum(
        1 for e in found if e.get("event") == "node-silent" and e.get("peer") not in (old, None)
    )
    new = holder(json.loads(lab.status())) or "?"
    lab.start(old)
    if verbose:
        print("    " + ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -"
                                  for k, v in steps(marks).items()))  # fmt: skip
        for name, path in logs.items():
            with path.open("rb") as f:
                f.seek(offsets[name])
                for line in f.read().decode(errors="replace").splitlines()[:40]:
                    print(f"    {name}| {line}")
    led = (leader == old) if dc_holds is not None else None
    return Trial(took, old, new, old == dc, marks, false, led)


# ---- the DC's crash: the holder made the DC (and etcd's leader) first ----------------------


def _etcdctl(lab: Lab, *args: str) -> str:
    """etcdctl as the operator, from the client host, with the lab's client certificate."""
    from hastack.model.agent_config import parse_client_config

    client = parse_client_config(lab.client_config.read_text(), str(lab.client_config))
    spec = client.etcd
    scheme = "https" if spec.tls is not None else "http"
    argv = ["ip", "netns", "exec", lab.host("client").namespace, "etcdctl",
            "--endpoints=" + ",".join(f"{scheme}://{e}" for e in spec.endpoints),
            "--dial-timeout=2s", "--command-timeout=5s"]  # fmt: skip
    if spec.tls is not None:
        argv += [f"--cacert={spec.tls.ca}", f"--cert={spec.tls.cert}", f"--key={spec.tls.key}"]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def etcd_leader(lab: Lab) -> tuple[str | None, dict[str, int]]:
    """(the lab host whose member leads etcd, member id by host)."""
    statuses = json.loads(_etcdctl(lab, "endpoint", "status", "-w", "json"))
    ids: dict[str, int] = {}
    leader = None
    by_address = {str(a): h.name for h in lab.controllers() for a in h.addresses}
    for s in statuses:
        address = str(s["Endpoint"]).partition("://")[2].rpartition(":")[0]
        host = by_address.get(address)
        if host is None:
            continue
        member = int(s["Status"]["header"]["member_id"])
        ids[host] = member
        if int(s["Status"]["leader"]) == member:
            leader = host
    return leader, ids


def make_dc_hold(lab: Lab, *, etcd_too: bool, timeout: float = 60) -> tuple[str, str | None]:
    """Move the VIP to the DC (`hastack resource move`), and etcd's leadership to the DC's
    host when `etcd_too` (else away from it); (the DC, etcd's leader) once settled so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node, dc = wait_settled(lab)
        if node != dc:
            done = lab.operator("resource", "move", "vip", dc)
            if done.returncode != 0:
                raise RuntimeError(f"resource move: {done.stderr.strip()}")
            time.sleep(1.0)
            continue
        leader, ids = etcd_leader(lab)
        if etcd_too and leader != dc and dc in ids:
            _etcdctl(lab, "move-leader", f"{ids[dc]:x}")
            time.sleep(0.5)
            continue
        if not etcd_too and leader == dc:
            other = next(h for h in sorted(ids) if h != dc)
            _etcdctl(lab, "move-leader", f"{ids[other]:x}")
            time.sleep(0.5)
            continue
        return dc, leader
    raise RuntimeError("could not make the DC hold the VIP")


def hastack_partition(lab: Lab, seconds: float) -> Partition:
    victim, _ = wait_settled(lab)
    time.sleep(1.0)
    seen = partition_probe(lab, victim, seconds)
    lab.start(victim)  # fenced while it was cut off
    return seen


# ---- pressure: false suspicions --------------------------------------------------------------


def count_suspicions(lab: Lab, since: float) -> Counter[str]:
    """Suspicion-like events of the agents since `since`, by kind (the lab's nodes are all
    healthy: every one of them is false), with memberships lost and late renewals; each
    suspicion is printed (who held whom for dead)."""
    kinds = (*SUSPICION_EVENTS, *LIVENESS_EVENTS)
    found = []
    for event in agent_events(lab, since):
        if event.get("event") == "dc-deposed" and event.get("reason") == "gave-up":
            event["event"] = "dc-deposed-gave-up"
        if event.get("event") in kinds:
            found.append(event)
    for e in found:
        if e["event"] in SUSPICION_EVENTS:
            why = f", {e['reason']}" if "reason" in e else ""
            print(f"    {e['node']}: {e['event']} {e.get('peer', '')} "
                  f"(silent for {e.get('silent_for', '-')}s{why})", flush=True)  # fmt: skip
    return Counter(str(e["event"]) for e in found)


def restart_all(lab: Lab) -> None:
    """Boot whatever a false fence powered off, and wait for the cluster."""
    for h in lab.controllers():
        lab.start(h.name)
    wait_settled(lab, 120)


def under_loss(lab: Lab, node: str, seconds: float, percent: int = 30) -> Counter[str]:
    since = time.time()
    lab.netem(node, percent)
    try:
        time.sleep(seconds)
    finally:
        lab.netem(node, 0)
    time.sleep(1.0)  # what the loss set going shows up
    return count_suspicions(lab, since)


def _agent_pid(lab: Lab, node: str) -> int:
    """The agent's process (the supervisor's child) on `node`."""
    supervisor = lab.record(node, "agent")
    if supervisor is None:
        raise RuntimeError(f"no agent on {node}")
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"{node}: the supervisor has {len(children)} children, not 1")
    return int(children[0])


def _pin(pid: int, cpus: set[int]) -> dict[int, set[int]]:
    """Pin every thread of `pid` to `cpus`; what each had before."""
    before = {}
    for tid in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
        except OSError:
            continue  # a thread that ended meanwhile
    return before


def under_cpu(lab: Lab, node: str, seconds: float) -> Counter[str]:
    """The node's agent and a busy loop pinned to one core for `seconds`: the agent gets
    half of it at most. The loop ends itself at `seconds`, and is killed by its PID."""
    agent = _agent_pid(lab, node)
    core = max(os.sched_getaffinity(0))
    since = time.time()
    before = _pin(agent, {core})
    ns = lab.host(node).namespace
    busy = subprocess.Popen(
        ["ip", "netns", "exec", ns, "taskset", "-c", str(core), sys.executable, "-c", BUSY,
         f"{seconds:g}"]
    )  # fmt: skip
    try:
        busy.wait(timeout=seconds + 5)
    except subprocess.TimeoutExpired:
        pass
    finally:
        busy.kill()  # by its PID (ip netns exec and taskset exec into the loop)
        busy.wait()
        for tid, cpus in before.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                continue
    time.sleep(1.0)
    return count_suspicions(lab, since)


# ---- printing -----------------------------------------------------------------------------


def _fmt(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>9}{'-':>9}{'-':>9}"
    return f"{statistics.median(values):9.2f}{max(values):9.2f}{min(values):9.2f}"


def print_breakdown(trials: Sequence[Trial], *, header: bool = True) -> None:
    if not trials:
        return
    if header:
        print()
        print("hastack's pipeline, crash -> first answer (seconds; medians do not add up exactly):")
    print(f"  {'step':44}{'median':>9}{'max':>9}{'min':>9}")
    explained = {
        "detection": "crash -> silence noticed",
        "reaction": "noticed -> fence requested (DC)",
        "fence": "fence requested -> device answered",
        "confirm": "device answered -> recorded in the store",
        "schedule": "recorded -> new holder's target written",
        "take": "target written -> VIP start began",
        "address": "start began -> address added",
        "announce": "address added -> gratuitous ARP sent",
        "answer": "ARP sent -> first answer (probe)",
    }
    per = [steps(t.marks) for t in trials]
    for name, _ in STEPS:
        values = [p[name] for p in per if p[name] is not None]
        print(f"  {name + ': ' + explained[name]:44}{_fmt([v for v in values if v is not None])}")
    print(f"  {'total: crash -> first answer':44}{_fmt([t.took for t in trials])}")
    extra = {
        "last beat heard -> silence noticed": ("last_beat", "noticed"),
        "noticed -> suspected (the DC's cycle ran)": ("noticed", "suspected"),
        "noticed -> a new DC elected (the DC crashed)": ("noticed", "elected"),
        "elected -> fence requested (the DC crashed)": ("elected", "requested"),
    }
    for label, (a, b) in extra.items():
        values = [
            float(m[b] or 0) - float(m[a] or 0)
            for m in (t.marks for t in trials)
            if m.get(a) is not None and m.get(b) is not None
        ]
        print(f"  ({label}){'':{max(0, 42 - len(label))}}{_fmt(values)}")
    for was_dc in (False, True):
        group = [t.took for t in trials if t.was_dc is was_dc]
        what = "the crashed holder was the DC" if was_dc else "the crashed holder was not the DC"
        print(f"  total, {what} ({len(group)}):{'':{max(0, 14 - len(str(len(group))))}}"
              f"{_fmt(group)}")  # fmt: skip


def print_partition(name: str, seen: Partition | None) -> None:
    if seen is None:
        return
    first = f", the first {seen.first_double:.2f}s after the cut" if seen.first_double else ""
    print(
        f"  {name}: {seen.double} of {seen.rounds} ARP probes answered by two hosts{first} "
        f"(answered by: {', '.join(seen.holders) or 'none'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--keepalived-trials", type=int, default=10)
    parser.add_argument("--heartbeat-interval", type=float, default=0.2)
    parser.add_argument("--suspect-after", type=float, default=0.6)
    parser.add_argument("--partition-seconds", type=float, default=6.0)
    parser.add_argument(
        "--pressure-seconds", type=float, default=60.0, help="each of loss and CPU; 0: skip"
    )
    parser.add_argument(
        "--dc-trials",
        type=int,
        default=0,
        help="crashes of the DC holding the VIP, etcd's leader elsewhere (then as many with "
        "etcd's leader on the DC's host too)",
    )
    parser.add_argument("--verbose", action="store_true", help="each trial's steps and logs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    ours: list[Trial] = []
    dcs: list[Trial] = []
    theirs: dict[str, list[float]] = {}
    partitions: dict[str, Partition] = {}
    pressure: dict[str, Counter[str]] = {}
    timing = (
        f"heartbeats {args.heartbeat_interval * 1000:g} ms, suspect after {args.suspect_after:g} s"
    )
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        lab = Lab.up(Path(tmp) / "lab", nodes=3)
        try:
            config = Path(tmp) / "cluster.yaml"
            config.write_text(
                yaml.safe_dump(cluster(lab, args.heartbeat_interval, args.suspect_after))
            )
            lab.apply_config(config)
            print(f"hastack, fencing on ({timing}, fence_hastack_local):", flush=True)
            for i in range(args.trials):
                t = trial(lab, verbose=args.verbose)
                ours.append(t)
                dc = " (the DC)" if t.was_dc else ""
                print(
                    f"  trial {i + 1:2d}: {t.victim}{dc} crashed -> VIP answers from {t.new} "
                    f"after {t.took:.2f}s; other nodes held silent: {t.false_silences}",
                    flush=True,
                )
            for etcd_too in (False, True) if args.dc_trials else ():
                where = "on the DC's host too" if etcd_too else "elsewhere"
                print(f"hastack, the DC holding the VIP crashed (etcd's leader {where}):",
                      flush=True)  # fmt: skip
                for i in range(args.dc_trials):
                    try:
                        t = trial(lab, verbose=args.verbose, dc_holds=etcd_too)
                    except (RuntimeError, subprocess.SubprocessError) as exc:
                        print(f"  trial {i + 1:2d}: not run ({exc})", flush=True)
                        continue
                    dcs.append(t)
                    print(
                        f"  trial {i + 1:2d}: {t.victim} (DC{', etcd leader' if t.led_etcd else ''}"
                        f") crashed -> VIP answers from {t.new} after {t.took:.2f}s",
                        flush=True,
                    )
            if args.dc_trials:
                lab.operator("resource", "clear", "vip")
            if args.partition_seconds:
                print(f"hastack partition ({args.partition_seconds:g} s):", flush=True)
                partitions["hastack"] = hastack_partition(lab, args.partition_seconds)
                print_partition("hastack", partitions["hastack"])
            if args.pressure_seconds:
                for role in ("the DC", "a non-DC node"):
                    # Read again: a false fence may have moved the DC meanwhile.
                    _, dc = wait_settled(lab)
                    others = [h.name for h in lab.controllers() if h.name != dc]
                    node = dc if role == "the DC" else others[0]
                    print(f"30 % packet loss on {role} ({node}), {args.pressure_seconds:g} s",
                          flush=True)  # fmt: skip
                    pressure[f"30 % loss on {role}"] = under_loss(lab, node, args.pressure_seconds)
                    restart_all(lab)
                    print(f"CPU: {role}'s agent ({node}) sharing one core with a busy loop, "
                          f"{args.pressure_seconds:g} s", flush=True)  # fmt: skip
                    pressure[f"CPU saturated on {role}"] = under_cpu(
                        lab, node, args.pressure_seconds
                    )
                    restart_all(lab)
            config.write_text(yaml.safe_dump({"properties": {"stonith-enabled": False}}))
            lab.apply_config(config)
            time.sleep(3)
            for vrrp in (DEBIAN, TUNED):
                if args.keepalived_trials:
                    print(f"keepalived, same lab, same probe ({vrrp.label}):", flush=True)
                    theirs[vrrp.label] = run_trials(lab, args.keepalived_trials, vrrp)
                if args.partition_seconds:
                    seen = partition_trial(lab, vrrp, args.partition_seconds)
                    partitions[f"keepalived ({vrrp.label})"] = seen
                    print_partition(f"keepalived ({vrrp.label})", seen)
        finally:
            lab.down()
    print()
    print(f"{'crash -> first answer (s)':44}{'median':>9}{'max':>9}{'min':>9}")
    print(f"{f'hastack ({timing})':44}{_fmt([t.took for t in ours])}")
    for label, values in theirs.items():
        print(f"{f'keepalived ({label})':44}{_fmt(values)}")
    for label, values in theirs.items():
        if ours and values:
            ratio = statistics.median(t.took for t in ours) / statistics.median(values)
            print(f"hastack median / keepalived ({label}) median = {ratio:.2f}")
    print_breakdown(ours)
    for etcd_too in (False, True):
        group = [t for t in dcs if bool(t.led_etcd) is etcd_too]
        if group:
            print()
            where = "on its host too" if etcd_too else "elsewhere"
            print(f"the DC holding the VIP crashed, etcd's leader {where} ({len(group)} trials):")
            print_breakdown(group, header=False)
    if partitions:
        print()
        print(f"partition ({args.partition_seconds:g} s; the holder cut off from its peers):")
        for name, seen in partitions.items():
            print_partition(name, seen)
    if pressure:
        print()
        print(f"false suspicions ({timing}; every node healthy, each {args.pressure_seconds:g} s):")
        for name, counts in pressure.items():
            said = ", ".join(f"{k} {counts.get(k, 0)}" for k in SUSPICION_EVENTS)
            more = ", ".join(f"{k} {counts.get(k, 0)}" for k in LIVENESS_EVENTS)
            print(f"  {name}: {said} ({more})")
        fences = sum(c.get("fence-started", 0) for c in pressure.values())
        print(f"  healthy nodes fenced: {fences} (0 is the only pass)")
    print(
        "Pacemaker (documented defaults, not measured here): corosync token 3 s + consensus "
        "3.6 s before the node is lost, then fencing (IPMI 5-15 s), then the start: 15-25 s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
