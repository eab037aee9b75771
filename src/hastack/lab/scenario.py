"""Scenarios in the Jepsen shape: a cluster configuration, bounded workload clients, a
nemesis schedule, and checkers over what was recorded.

A scenario is a YAML file (`scenarios/*.yaml`):

    name: vip-crash-holder
    lab: {nodes: 3}
    cluster:                       # the cluster configuration, as `hastack config apply` takes
      properties: {stonith-enabled: false}
      resources: [...]             # ${net0} is the lab's first network (10.251.X), ${vip}
    ready: [vip, api]              #   is ${net0}.100, ${python} this Python, ${power} the
                                   #   power registry (for fence_hastack_local); the resources
                                   #   that must run before the load starts
    workloads:
      - {kind: http, url: "http://${vip}:8080/", clients: 4, rate: 20, duration: 30s}
    nemesis:                       # times from the start of the load
      - {at: 5s, op: crash, node: "@holder:vip"}
      - {at: 20s, op: start, node: "@crashed"}
    expect: {max-outage: 15s}

Node selectors: a host name, `@holder:RESOURCE` (where it runs now), `@writer:BACKEND` (the
active server of a sticky proxy backend — the Galera writer — as the proxy on the VIP's
holder last recorded it), `@leader:QUEUE` (the node of a RabbitMQ quorum queue's leader,
from the agents' reports), `@dc`, `@random` (a random controller that is up), `@crashed`
(every host crashed by this run), `@one-crashed` (one of them at random), `@paused`, `@cut`
(every host with a link down), `@etcd-leader` (the host of the raft leader), and in
partitions `@rest` (every node not named in another group).

A run writes one results folder: `history.jsonl` (the clients' operations), `nemesis.jsonl`
(faults, with times), `status.jsonl` (cluster status every 250 ms), `observed-exclusive.jsonl`
(where each VIP address was actually configured, sampled every 50 ms), `agents/<host>/`
(agent and etcd logs, the agents' events and exclusivity records), `checks.json`,
`availability.png` and `summary.txt`.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pyroute2 import NetNS

from hastack.checkers import (
    CheckResult,
    check_alert,
    check_assignment,
    check_availability,
    check_bootstrap,
    check_cache_service,
    check_exclusive,
    check_jobs,
    check_minority,
    check_polls,
    check_publish_resume,
    check_rabbitmq_rejoin,
    check_recovery,
    check_rejoin,
    check_rpc,
    check_set,
    check_stale_reads,
    check_steady,
    check_total_queue,
    check_writer_moved,
    check_writers,
    pair_ops,
    parse_history,
    promoted_since,
)
from hastack.eventlog import read_events
from hastack.galera.serverlog import ServerRun, Transfer, reported_positions, server_runs
from hastack.lab.galera import (
    collect_galera_logs,
    galera_primitives,
    prepare_datadirs,
    primitives_of,
)
from hastack.lab.net.lab import (
    FAST_ELECTION_MS,
    FAST_TIMINGS,
    REMOTE_TIMINGS,
    Lab,
    LabError,
    StatusFeed,
)
from hastack.lab.net.topology import CLIENT, HostRole
from hastack.lab.nova.run import NovaRun, NovaSpec
from hastack.lab.plot import plot_availability
from hastack.lab.soak import SoakSpec, run_soak
from hastack.model.agent_config import Timings, leader_change_problem
from hastack.model.base import Duration, Name, Spec
from hastack.model.config import Location, parse_cluster_config
from hastack.model.document import load_yaml, validate
from hastack.model.exclusivity import parse_events
from hastack.model.members import NodeKind
from hastack.model.scores import INFINITY
from hastack.model.state import base_id
from hastack.processes import ProcessRecord, is_alive, send, spawn, wait_gone
from hastack.scheduler.rules import node_attributes, rule_score

__all__ = [
    "EntitiesSpec",
    "NemesisStep",
    "PollsSpec",
    "RandomNemesis",
    "Scenario",
    "ScenarioResult",
    "ServeAgain",
    "WorkloadSpec",
    "brokers_running",
    "load_scenario",
    "run_scenario",
]

# How long a nemesis step naming a queue's leader waits for a report that names it.
LEADER_WAIT = 10.0

OBSERVE_INTERVAL = 0.05
READY_TIMEOUT = 60.0


class LabSpec(Spec):
    nodes: int = 3
    computes: int = 0
    links: int = 1


class EntitiesSpec(Spec):
    """The entities of a work assignment served as addresses (docs/assign.md): entity
    `r07` is `${net0}.<first + 7>`, answering on `port`. The runner lists them in the
    assignment's configuration, gives them to `assign-probe` workloads as targets, and the
    lab's observer watches each address like a VIP (resource `<assignment>/<entity>`)."""

    assignment: Name
    count: int = pydantic.Field(ge=1, le=90)
    first: int = pydantic.Field(default=150, ge=2, le=254)
    port: int = 8080
    prefix: str = "r"

    def names(self) -> list[str]:
        width = len(str(self.count - 1))
        return [f"{self.prefix}{i:0{max(2, width)}d}" for i in range(self.count)]


class PollsSpec(Spec):
    """Pollers (hastack.lab.net.poller) log each poll in their service log; the `polls`
    checker judges each mode apart: every resource polled in every interval, but for
    `excused` intervals after a crash (per mode)."""

    resources: int = pydantic.Field(default=100, ge=1, le=10_000)
    prefix: str = "res"
    interval: Duration = 5.0
    excused: dict[str, int] = pydantic.Field(default_factory=dict)  # mode -> intervals
    warmup: Duration = 10.0  # not judged: the pollers find each other

    def names(self) -> list[str]:
        return [f"{self.prefix}{i:03d}" for i in range(self.resources)]


class WorkloadSpec(Spec):
    kind: Literal[
        "http",
        "etcd-set",
        "amqp-queue",
        "cache-kv",
        "rpc",
        "mysql-set",
        "assign-probe",
        "heat-jobs",
    ]
    name: Name | None = None
    clients: int = pydantic.Field(default=2, ge=1, le=64)
    rate: float = pydantic.Field(default=10.0, gt=0, le=1000)  # per client, ops per second
    duration: Duration = pydantic.Field(default=30.0, gt=0, le=1200)  # 20 min: a soak
    max_ops: int = pydantic.Field(default=10_000, ge=1, le=100_000)  # per client
    timeout: Duration = 1.0
    url: str | None = None  # http; mysql-set: mysql://USER:PASSWORD@ADDRESS:PORT/DB
    # A node selector resolved when the load starts (e.g. `@writer:galera`): `${target}` in
    # the url is that node's address, for clients that must talk to one node on purpose.
    target: str | None = None
    final_timeout: Duration = 30.0  # etcd-set, amqp-queue, mysql-set: bound on the final read
    urls: list[str] = pydantic.Field(default_factory=list)  # amqp-queue: the brokers
    queue: Name = "hastack-lab"  # amqp-queue
    consumers: int = pydantic.Field(default=1, ge=0, le=16)  # amqp-queue
    keys: int = pydantic.Field(default=10, ge=1, le=1000)  # cache-kv: keys per client
    write_every: int = pydantic.Field(default=5, ge=2, le=1000)  # cache-kv
    transport_url: str | None = None  # rpc: oslo.messaging's, every broker listed
    consumed: str | None = None  # rpc: where the servers record consumed notifications
    notify_rate: float = pydantic.Field(default=5.0, ge=0, le=100)  # rpc
    recommended: bool = False  # rpc: the README's oslo.messaging settings
    options: dict[str, Any] = pydantic.Field(default_factory=dict)  # rpc: [oslo_messaging_rabbit]
    prefix: str | None = None  # heat-jobs: where the jobs live in etcd
    job_seconds: Duration = 3.0  # heat-jobs: how long each job works
    lock_ttl: Duration = 5.0  # heat-jobs: the engines' lock TTL (for the checker)
    check_interval: Duration = 1.0  # heat-jobs: the engines' takeover check
    # mysql-set: judge "one node takes the writes at a time" on this workload's writes (false
    # for clients that write to one node's own address on purpose, e.g. a minority's)
    one_writer: bool = True

    @pydantic.model_validator(mode="after")
    def _target(self) -> WorkloadSpec:
        if self.kind in ("http", "cache-kv", "mysql-set") and not self.url:
            raise ValueError(f"a {self.kind} workload needs url")
        if self.kind == "rpc" and not (self.transport_url and self.consumed):
            raise ValueError("an rpc workload needs transport-url and consumed")
        if self.kind == "amqp-queue" and not self.urls:
            raise ValueError("an amqp-queue workload needs urls")
        return self


NemesisOp = Literal[
    "crash", "start", "kill", "pause", "resume", "partition", "heal", "netem", "link-down",
    "link-up", "remove", "galera-bootstrap", "fence-confirm", "rebalance",
]  # fmt: skip


class NemesisStep(Spec):
    at: Duration  # seconds after the load started
    op: NemesisOp
    node: str | None = None
    process: str | None = None  # kill: agent, etcd, or a service instance
    groups: str | None = None  # partition: 'n1 | n2,n3' or '@holder:vip | @rest'
    loss: int | None = None  # netem: percent dropped (0 clears)
    delay: Duration | None = None  # netem: added each way (0 clears), e.g. 100ms
    jitter: Duration = 0.0  # netem: ± around the delay
    link: int = 0  # link-down / link-up
    # galera-bootstrap: the operator's `hastack galera bootstrap NODE --force --yes`, run
    # from the client host (node: a name, or @most-advanced:RESOURCE); fence-confirm: the
    # operator's `hastack fence confirm NODE --yes` (their word that NODE is off)
    assignment: Name | None = None  # rebalance: `hastack assign rebalance ASSIGNMENT`
    max_moves: int = 1000  # rebalance


RandomOp = Literal["crash", "partition"]
_RANDOM_OPS: tuple[RandomOp, ...] = ("crash", "partition")


class RandomNemesis(Spec):
    """Many faults drawn at random (a soak): every `every` seconds from `start`, one of `ops`
    on a random controller, repaired `repair-after` seconds later (crash -> start; partition
    -> heal, then every powered-off node started: fencing may have powered the cut-off node
    off). One fault at a time; `seed` makes the schedule repeatable."""

    count: int = pydantic.Field(ge=1, le=500)
    every: Duration = pydantic.Field(default=6.0, gt=0)
    repair_after: Duration = pydantic.Field(default=3.0, gt=0)
    start: Duration = 3.0
    ops: list[RandomOp] = pydantic.Field(default_factory=lambda: list(_RANDOM_OPS))
    seed: int = 1

    @pydantic.model_validator(mode="after")
    def _repair_first(self) -> RandomNemesis:
        if self.repair_after >= self.every:
            raise ValueError("repair-after must be shorter than every (one fault at a time)")
        return self

    def steps(self, nodes: list[str]) -> list[NemesisStep]:
        rng = random.Random(self.seed)
        out: list[NemesisStep] = []
        for k in range(self.count):
            at = self.start + k * self.every
            op, node = rng.choice(self.ops), rng.choice(nodes)
            if op == "crash":
                out.append(NemesisStep(at=at, op="crash", node=node))
            else:
                out.append(NemesisStep(at=at, op="partition", groups=f"{node} | @rest"))
                out.append(NemesisStep(at=at + self.repair_after, op="heal"))
            out.append(NemesisStep(at=at + self.repair_after + 0.01, op="start", node="@down"))
        return out


class Expect(Spec):
    max_outage: Duration | None = None  # every fault recovered from within this
    # Work assignment: each entity a rebalance moves is out at most this long.
    rebalance_outage: Duration | None = None
    # Work assignment: a crashed node's entities answer again within this of its fence.
    after_fence: Duration | None = None
    recovered: bool = True  # the service answers again after every fault
    publish_resume: Duration | None = None  # amqp-queue: each producer confirms again within
    # A booted node back within this: hastack:rabbitmq, with every quorum queue at
    # quorum-size members again; Galera, its instance Promoted again, having joined by
    # rejoin-by ("any": not judged).
    rejoin: Duration | None = None
    rejoin_by: Literal["IST", "SST", "any"] = "IST"
    quorum_size: int = 3  # members every quorum queue must have again
    p99_allowance: Duration = 0.5  # cache-kv: p99 may grow by this much (one socket timeout)
    hit_ratio_within: Duration | None = None  # cache-kv: hit ratio ≥ 90 % again within
    # cache-kv: the nemesis operations after which the hit ratio is judged (None: all); a
    # server cut off is a miss for its keys until it is back, so a partition judges the heal.
    hit_ratio_after: list[str] | None = None
    rpc_timeouts: int | None = 1  # rpc: MessagingTimeouts allowed per fault
    rpc_recover: Duration | None = None  # rpc: calls succeed again within this of a fault
    # Galera after a whole-cluster power loss: bootstrapped from the highest recovered
    # position, with its cluster UUID, and writable within this of the last boot.
    recovery: Duration | None = None
    # Galera: after a fault that takes the writer away, the first write on another node
    # within this (none on the old writer meanwhile).
    writer_moved: Duration | None = None
    # Galera after the boots: formed with no operator, or only once the operator forced it
    bootstrap: Literal["automatic", "forced"] | None = None
    # From the first fault on: nobody lost their membership or was fenced, and (steady)
    # nothing moved either; alert: the DC raised the connectivity alert (docs/connectivity.md).
    steady: bool = False
    no_fence: bool = False
    alert: bool = False


class ServeAgain(Spec):
    """After the nemesis' last step, the load goes on until the cluster serves again — every
    `ready` resource runs and, with hastack:rabbitmq, every controller's broker reports
    `running` (BROKER_FRESH) — at most `within`, then `tail` more seconds (its clients seen
    succeeding), and ends (SIGUSR1). The run records when in `serve-again.json`; the load's
    duration must leave room for `within` + `tail` after the last step."""

    within: Duration = pydantic.Field(default=120.0, gt=0)
    tail: Duration = pydantic.Field(default=15.0, ge=0)


# A broker's report counts for "serving again" when its agent wrote it this recently (its
# monitor runs every few seconds; a frozen agent's last report must not count).
BROKER_FRESH = 10.0


def brokers_running(report: Mapping[str, Any], nodes: list[str]) -> bool:
    """Every one of `nodes` runs a broker of every hastack:rabbitmq resource, by its agent's
    report no older than BROKER_FRESH when the status was collected."""
    entries = report.get("rabbitmq") or []
    collected = float(report.get("collected_at") or 0.0)
    for entry in entries:
        reports = entry.get("reports") or {}
        for node in nodes:
            r = reports.get(node) or {}
            if r.get("health") != "running" or collected - float(r.get("at") or 0) > BROKER_FRESH:
                return False
    return bool(entries)


class Scenario(Spec):
    name: Name
    description: str = ""
    lab: LabSpec = LabSpec()
    timings: Timings | None = None  # agent timings (default: the lab's fast timings)
    # the compute hosts' agents' timings: "same" as the controllers', or their own (default:
    # the lab's, hastack.lab.net.REMOTE_TIMINGS; `hastack lab up --compute-timings`)
    compute_timings: Timings | Literal["same"] | None = None
    election_ms: int = FAST_ELECTION_MS
    cluster: dict[str, Any]
    ready: list[Name] = pydantic.Field(default_factory=list)
    workloads: list[WorkloadSpec] = pydantic.Field(default_factory=list)
    duration: Duration | None = pydantic.Field(default=None, gt=0, le=600)  # without workloads
    nemesis: list[NemesisStep] = pydantic.Field(default_factory=list)
    settle: Duration = 2.0  # after the load, before collecting
    expect: Expect = Expect()
    ready_timeout: Duration = READY_TIMEOUT  # for the `ready` resources to run
    entities: EntitiesSpec | None = None  # work assignment entities served as addresses
    polls: PollsSpec | None = None  # Ceilometer-style pollers to check
    random_nemesis: RandomNemesis | None = None  # a soak: faults drawn at random
    nova: NovaSpec | None = None  # the lab's fake Nova and instances (docs/compute.md)
    # Random faults, each once the cluster is whole again, instead of `nemesis`; the load
    # ends `tail` after the last (hastack.lab.soak)
    soak: SoakSpec | None = None
    serve_again: ServeAgain | None = None

    @pydantic.model_validator(mode="after")
    def _serve_again_room(self) -> Scenario:
        if self.serve_again is None:
            return self
        if not self.workloads or not self.nemesis or self.soak is not None:
            raise ValueError("serve-again needs workloads and a nemesis (not a soak)")
        room = self.serve_again.within + self.serve_again.tail
        last = max(st.at for st in self.nemesis)
        if min(w.duration for w in self.workloads) < last + room:
            raise ValueError(f"serve-again: the load must last until {last + room:g}s "
                             f"(the last step at {last:g}s + within + tail)")  # fmt: skip
        return self

    @pydantic.model_validator(mode="after")
    def _soak_alone(self) -> Scenario:
        if self.soak is not None and (self.nemesis or self.random_nemesis is not None):
            raise ValueError("a soak draws its own faults: no nemesis or random-nemesis beside")
        if self.soak is not None and not any(w.kind == "mysql-set" for w in self.workloads):
            raise ValueError("a soak needs a mysql-set workload (it judges a Galera cluster)")
        return self

    @pydantic.model_validator(mode="after")
    def _load_or_duration(self) -> Scenario:
        if not self.workloads and self.duration is None:
            raise ValueError("give workloads, or a duration for a run without client load")
        return self

    @pydantic.model_validator(mode="after")
    def _rides_out_leader_change(self) -> Scenario:
        if self.election_ms <= 0:
            raise ValueError(f"election-ms must be positive, not {self.election_ms}")
        problem = leader_change_problem(self.timings or FAST_TIMINGS, self.election_ms / 1000)
        if problem is not None:
            raise ValueError(f"timings with election-ms {self.election_ms}: {problem}")
        if isinstance(self.compute_timings, Timings):
            problem = leader_change_problem(self.compute_timings, self.election_ms / 1000)
            if problem is not None:
                raise ValueError(f"compute-timings with election-ms {self.election_ms}: {problem}")
        return self

    def remote_timings(self) -> Timings | None:
        """What Lab.up takes as `remote_timings` (None: the controllers' own)."""
        if self.compute_timings == "same":
            return None
        return self.compute_timings or REMOTE_TIMINGS


def load_scenario(path: Path) -> Scenario:
    return validate(load_yaml(path.read_text(), str(path)), Scenario)


@dataclass
class ScenarioResult:
    scenario: str
    results: Path
    checks: list[CheckResult]
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """No check found a violation and at least one could judge. A check with nothing to
        judge (valid None — e.g. agents that do not write exclusivity records yet) is shown
        as UNKNOWN in the summary, never counted as a pass."""
        return not any(c.valid is False for c in self.checks) and any(
            c.valid is True for c in self.checks
        )

    @property
    def unjudged(self) -> list[str]:
        return [c.checker for c in self.checks if c.valid is None]

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.checker == name)


def _substitute(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return string.Template(value).safe_substitute(names)
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    return value


def _vips(config: Mapping[str, Any]) -> dict[str, str]:
    """resource id -> address of every hastack:vip primitive in a configuration mapping."""
    return {
        str(p["primitive"]): str(p.get("params", {}).get("ip"))
        for p in primitives_of(config, "hastack:vip")
    }


class VipObserver:
    """Samples every node's addresses and records where each VIP is configured, in the
    exclusivity record format — an outside view that does not rely on the agents."""

    def __init__(self, lab: Lab, vips: Mapping[str, str], path: Path) -> None:
        self._lab = lab
        self._vips = dict(vips)
        self._path = path
        self._stop = threading.Event()
        self.holders: dict[str, set[str]] = {r: set() for r in vips}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vip-observer", daemon=True)

    def start(self) -> None:
        if self._vips:
            self._thread.start()

    def holder(self, resource: str) -> str | None:
        with self._lock:
            held = sorted(self.holders.get(resource, ()))
        return held[0] if held else None

    def _run(self) -> None:
        nodes = self._lab.nodes()
        handles = {h.name: NetNS(h.namespace) for h in nodes}
        try:
            with self._path.open("a") as out:
                while not self._stop.is_set():
                    for name, ns in handles.items():
                        try:
                            present = {a.get_attr("IFA_ADDRESS") for a in ns.get_addr(family=2)}
                        except Exception:  # a namespace going away at the end of the run
                            continue
                        for resource, ip in self._vips.items():
                            with self._lock:
                                was = name in self.holders[resource]
                                now = ip in present and self._lab.powered(name)
                                if now != was:
                                    (self.holders[resource].add if now else
                                     self.holders[resource].discard)(name)  # fmt: skip
                            if now != was:
                                event = "acquire" if now else "release"
                                out.write(json.dumps({
                                    "node": name, "resource": resource, "event": event,
                                    "wall": time.time(), "offset_error": OBSERVE_INTERVAL,
                                    "source": "observer",
                                }) + "\n")  # fmt: skip
                                out.flush()
                    self._stop.wait(OBSERVE_INTERVAL)
        finally:
            for ns in handles.values():
                ns.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


class Runner:
    """One run of one scenario on a lab (brought up for it, or shared between runs)."""

    def __init__(self, scenario: Scenario, lab: Lab, results: Path, say: Callable[[str], None]):
        self.scenario = scenario
        self.lab = lab
        self.results = results
        self.say = say
        t = lab.topology
        self.names = {f"net{k}": t.net_prefix(k) for k in range(t.links)}
        self.names["vip"] = f"{t.net_prefix(0)}.100"
        self.names["python"] = sys.executable
        self.names["power"] = str(lab.power_registry)
        self.names["labdir"] = str(lab.directory)
        self.names["controllers"] = ",".join(h.name for h in lab.controllers())
        self.names["etcd"] = ",".join(lab.endpoints())
        self.names["client"] = str(lab.client_config)  # cluster + etcd block, TLS files and all
        self.names["results"] = str(results)
        self.names["run"] = results.name
        self.nova = NovaRun(scenario.nova, lab, results) if scenario.nova else None
        if self.nova is not None:
            self.names.update(self.nova.names())
        self.config = _substitute(scenario.cluster, self.names)
        self.vips = _vips(self.config)
        self.entity_addresses: dict[str, str] = {}
        if scenario.entities is not None:
            e = scenario.entities
            if e.first + e.count - 1 > 254:
                raise LabError(f"entities: {e.count} from .{e.first} do not fit in ${{net0}}")
            for i, name in enumerate(e.names()):
                self.entity_addresses[name] = f"{t.net_prefix(0)}.{e.first + i}"
                self.vips[f"{e.assignment}/{name}"] = self.entity_addresses[name]
            for a in self.config.get("assignments", []):
                if a.get("assignment") == e.assignment and not a.get("entities"):
                    a["entities"] = e.names()
        # Parsed once its assignments list their entities (what the cluster is given).
        self.cluster_config = parse_cluster_config(
            yaml.safe_dump(self.config, sort_keys=False), f"{scenario.name}: cluster"
        )
        self.feed: StatusFeed | None = None
        self.observer = VipObserver(lab, self.vips, results / "observed-exclusive.jsonl")
        self.crashed: set[str] = set()
        # Seconds the nemesis schedule slipped: waits for a selector to resolve (@leader:).
        self.slip = 0.0
        self.soak: dict[str, Any] | None = None  # the soak's figures, once it ran
        self.booted: dict[str, float] = {}  # node -> wall time of its last boot
        self.notes: list[str] = []

    @property
    def has_rabbitmq(self) -> bool:
        return '"hastack:rabbitmq"' in json.dumps(self.config)

    # ---- selectors ------------------------------------------------------------------------

    def leader(self, queue: str) -> str | None:
        """The node of a quorum queue's leader, from the RabbitMQ agents' latest reports."""
        for entry in ((self.feed.latest or {}).get("rabbitmq") or []) if self.feed else []:
            for q in entry.get("queues") or []:
                if q.get("name") == queue and q.get("leader"):
                    return str(q["leader"]).partition("@")[2] or None
        return None

    def holder(self, resource: str) -> str | None:
        if resource in self.vips:
            found = self.observer.holder(resource)
            if found:
                return found
        report = self.feed.latest if self.feed else None
        for r in (report or {}).get("resources", []):
            if base_id(str(r["instance"])) == resource and r.get("role") != "Stopped":
                return str(r["node"])
        return None

    def writer(self, backend: str) -> str | None:
        """The active server of a sticky proxy backend, from the proxies' `writer-changed`
        events: the proxy on the VIP's holder when there is one VIP, else the latest."""
        holder = self.holder(next(iter(self.vips))) if len(self.vips) == 1 else None
        latest: tuple[float, str | None] | None = None
        for h in self.lab.controllers():
            if holder is not None and h.name != holder:
                continue
            for e in read_events(self.lab.agent_state_dir(h.name) / "events.jsonl"):
                if e.get("event") == "writer-changed" and e.get("backend") == backend:
                    t = float(e.get("t", 0.0))
                    if latest is None or t >= latest[0]:
                        latest = (t, e.get("active"))
        return str(latest[1]) if latest is not None and latest[1] else None

    def most_advanced(self, resource: str) -> str | None:
        """The online node whose published Galera position has the highest seqno (what an
        operator reads in `hastack galera status` before forcing a bootstrap)."""
        report = self.feed.latest if self.feed else None
        best: tuple[int, str] | None = None
        for n in (report or {}).get("nodes", []):
            text = str(n.get("attributes", {}).get(f"galera-{resource}-position", ""))
            _, _, seqno = text.rpartition(":")
            if n.get("online") and seqno.lstrip("-").isdigit():
                candidate = (int(seqno), str(n["name"]))
                if best is None or candidate[0] > best[0]:
                    best = candidate
        return best[1] if best is not None else None

    def _resolve_one(self, selector: str, wait: float = 15.0) -> str:
        """One node for `selector`, waiting a little for it to exist (a proxy records its
        writer at its first check after the resources started)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                found = self.select(selector)
            except LabError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)
                continue
            if len(found) != 1:
                raise LabError(f"{selector}: selects {len(found)} nodes, a target needs one")
            return found[0]

    def select(self, selector: str, taken: set[str] | None = None) -> list[str]:
        nodes = [h.name for h in self.lab.nodes()]
        if not selector.startswith("@"):
            self.lab.host(selector)
            return [selector]
        if selector.startswith("@writer:"):
            found = self.writer(selector.removeprefix("@writer:"))
            if found is None:
                raise LabError(f"{selector}: no proxy has recorded a writer yet")
            return [found]
        if selector.startswith("@most-advanced:"):
            found = self.most_advanced(selector.removeprefix("@most-advanced:"))
            if found is None:
                raise LabError(f"{selector}: no node has published a position")
            return [found]
        if selector.startswith("@holder:"):
            found = self.holder(selector.removeprefix("@holder:"))
            if found is None:
                raise LabError(f"{selector}: the resource runs nowhere right now")
            return [found]
        if selector.startswith("@leader:"):
            # The queue's leader is reported by one member's monitor (list_queues, about a
            # third of a CPU-second); on a loaded machine the first report naming it can
            # come after the step's time (a CI run: none 6 s into the load): wait for it.
            queue = selector.removeprefix("@leader:")
            asked = time.monotonic()
            deadline = asked + LEADER_WAIT
            while (found := self.leader(queue)) is None and time.monotonic() < deadline:
                time.sleep(0.25)
            # The steps after this one keep their distance from it (R1: a boot at a fixed
            # time came 0.6 s after a crash delayed 5.4 s, before that crash's fence).
            self.slip += time.monotonic() - asked
            if found is None:
                raise LabError(f"{selector}: no report names that queue's leader "
                               f"(waited {LEADER_WAIT:g}s)")  # fmt: skip
            return [found]
        if selector == "@dc":
            dc = (self.feed.latest or {}).get("dc_node") if self.feed else None
            if not dc:
                raise LabError("@dc: no DC right now")
            return [str(dc)]
        if selector == "@random":
            up = [h.name for h in self.lab.controllers() if self.lab.powered(h.name)]
            return [random.choice(up)]
        if selector == "@crashed":
            return sorted(self.crashed)
        if selector == "@one-crashed":  # one of them, at random: boots in random order
            return [random.choice(sorted(self.crashed))] if self.crashed else []
        if selector == "@down":
            return [h.name for h in self.lab.nodes() if is_down(self.lab, h.name)]
        if selector == "@etcd-leader":  # the host of the etcd member that leads raft
            report = (self.feed.latest or {}) if self.feed else {}
            led = {str(e["endpoint"]).rsplit(":", 1)[0]
                   for e in report.get("store", []) if e.get("is_leader")}  # fmt: skip
            leaders = [h.name for h in self.lab.controllers() if led & set(h.addresses)]
            if not leaders:
                raise LabError("@etcd-leader: no member says it leads right now")
            return leaders[:1]
        if selector == "@cut":  # hosts with a link down (link-up mends them)
            return [h.name for h in self.lab.hosts()
                    if self.lab.state["hosts"].get(h.name, {}).get("links_down")]  # fmt: skip
        if selector == "@paused":
            return list(self.lab.state.get("paused", []))
        if selector == "@rest":
            return [n for n in nodes if n not in (taken or set())]
        raise LabError(f"unknown node selector {selector!r}")

    def _partition_spec(self, groups: str) -> str:
        parts = [re.split(r"[,\s]+", g.strip()) for g in groups.split("|")]
        named: set[str] = set()
        resolved: list[list[str] | None] = []
        for part in parts:
            if any(t == "@rest" for t in part):
                resolved.append(None)
                continue
            hosts = [h for t in part if t for h in self.select(t)]
            named.update(hosts)
            resolved.append(hosts)
        out = [g if g is not None else self.select("@rest", named) for g in resolved]
        return " | ".join(",".join(g) for g in out)

    # ---- the nemesis ------------------------------------------------------------------------

    def apply(self, step: NemesisStep) -> None:
        lab = self.lab
        targets = self.select(step.node) if step.node else []
        if step.op == "start" and step.node == "@down" and not targets:
            return  # a soak's repair with nothing left to boot
        if step.op in ("crash", "start", "kill", "pause", "resume", "netem", "link-down",
                       "link-up", "remove", "galera-bootstrap",
                       "fence-confirm") and not targets:  # fmt: skip
            self.say(f"  nemesis: {step.op}: no node matches {step.node!r}, skipped")
            return
        for node in targets:
            if step.op == "crash":
                lab.crash(node)
                self.crashed.add(node)
            elif step.op == "start":
                self.booted[node] = time.time()
                # @down: hosts fenced or reset are off, not merely without their agent.
                lab.start(node, boot_if_off=step.node == "@down")
                self.crashed.discard(node)
            elif step.op == "kill":
                lab.kill(node, step.process or "agent")
            elif step.op == "pause":
                lab.pause(node)
            elif step.op == "resume":
                lab.resume(node)
            elif step.op == "netem":
                if step.loss is not None or step.delay is None:
                    lab.netem(node, step.loss or 0)
                if step.delay is not None:
                    lab.delay(node, step.delay * 1000.0, step.jitter * 1000.0)
            elif step.op in ("link-down", "link-up"):
                lab.link(node, step.link, up=step.op == "link-up")
            elif step.op == "remove":
                lab.remove_node(node)
            elif step.op == "galera-bootstrap":
                self._operator("galera", "bootstrap", node, "--force", "--yes")
            elif step.op == "fence-confirm":
                self._operator("fence", "confirm", node, "--yes")
        groups = ""
        if step.op == "partition":
            groups = self._partition_spec(step.groups or "")
            lab.partition(groups)
        elif step.op == "heal":
            lab.heal()
        elif step.op == "rebalance":
            groups = lab.rebalance(step.assignment or "", step.max_moves)
        what = " ".join(x for x in (step.op, ",".join(targets), step.process or "", groups) if x)
        self.say(f"  nemesis: {what}")

    def _operator(self, *words: str) -> None:
        """An operator's command, run from the client host; its failure ends the scenario."""
        done = self.lab.operator(*words)
        said = (done.stdout + done.stderr).strip().splitlines()
        command = " ".join(w for w in words if w != "--yes")
        self.say(f"  operator: {command}: rc {done.returncode}"
                 + (f": {said[-1]}" if said else ""))  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"{command} failed: {said[-1:]}")

    # ---- the run ----------------------------------------------------------------------------

    def is_ready(self, report: dict[str, Any]) -> bool:
        """Every `ready` resource runs: a primitive somewhere, a clone on as many nodes as the
        cluster can give it (clone-max, or every online node its locations do not ban)."""
        running: Counter[str] = Counter(
            base_id(str(r["instance"]))
            for r in report.get("resources", [])
            if r.get("role") not in (None, "Stopped") and r.get("node-online")
        )
        promoted: Counter[str] = Counter(
            base_id(str(r["instance"]))
            for r in report.get("resources", [])
            if r.get("role") == "Promoted" and r.get("node-online")
        )
        online = [n for n in report.get("nodes", []) if n.get("online")]
        ready = all(
            running[r] >= self._instances_wanted(r, online)
            and promoted[r] >= self._promoted_wanted(r, len(online))
            for r in self.scenario.ready
        )
        return self.lab.is_settled(report) and ready and self._entities_served(report)

    def _entities_served(self, report: dict[str, Any]) -> bool:
        """Every entity of the scenario's assignment is served by its node."""
        e = self.scenario.entities
        if e is None:
            return True
        for view in report.get("assignments", []):
            if view.get("name") == e.assignment:
                states = [x.get("state") for x in view.get("entities", [])]
                return len(states) == e.count and all(s == "serving" for s in states)
        return False

    def _promoted_wanted(self, primitive: str, online: int) -> int:
        """A promotable clone is ready when as many instances are Promoted as it may have."""
        for top in self.config.get("resources", []):
            inner = top.get("resource") if "clone" in top else None
            if (
                isinstance(inner, dict)
                and inner.get("primitive") == primitive
                and top.get("promotable")
            ):
                return min(int((top.get("meta") or {}).get("promoted-max", 1)), online)
        return 0

    def _instances_wanted(self, primitive: str, online: list[dict[str, Any]]) -> int:
        for top in self.config.get("resources", []):
            inner = top.get("resource") if "clone" in top else None
            if not isinstance(inner, dict):
                continue
            members = inner.get("resources", [inner])
            if any(isinstance(m, dict) and m.get("primitive") == primitive for m in members):
                ids = {top["clone"], inner.get("primitive") or inner.get("group")} | {
                    m.get("primitive") for m in members if isinstance(m, dict)
                }
                usable = sum(1 for n in online if not self._banned(ids, n))
                clone_max = (top.get("meta") or {}).get("clone-max")
                return min(int(clone_max), usable) if clone_max is not None else usable
        return 1

    def _banned(self, ids: set[str | None], node: dict[str, Any]) -> bool:
        """Does a -INFINITY location of one of these resources keep them off this node (by
        name or by rule: `#kind ne remote` keeps a clone on the computes)?"""
        kind = NodeKind.REMOTE if node.get("kind") == NodeKind.REMOTE.value else NodeKind.FULL
        name = str(node.get("name"))
        attributes = node_attributes(
            name, kind, node.get("permanent") or {}, node.get("attributes") or {}
        )
        for c in self.cluster_config.constraints:
            if not isinstance(c, Location) or c.resource not in ids or c.role is not None:
                continue
            if c.node is not None:
                if c.node == name and c.score is not None and c.score <= -INFINITY:
                    return True
                continue
            for rule in c.rules:
                score = rule_score(rule, attributes)
                if score is not None and score <= -INFINITY:
                    return True
        return False

    def workload_specs(self) -> list[dict[str, Any]]:
        specs = []
        for i, w in enumerate(self.scenario.workloads):
            spec = w.model_dump(by_alias=True, exclude_none=True)
            names = dict(self.names)
            if spec.pop("target", None) is not None and w.target is not None:
                node = self._resolve_one(w.target)
                names["target"] = self.lab.topology.host(node).address
                self.say(f"  {w.name or w.kind}: target {w.target} = {node}")
            spec = _substitute(spec, names)
            spec.setdefault("name", f"{w.kind}{i}" if len(self.scenario.workloads) > 1 else w.kind)
            if w.kind == "assign-probe":
                port = self.scenario.entities.port if self.scenario.entities else 8080
                spec["targets"] = {n: f"{a}:{port}" for n, a in self.entity_addresses.items()}
            if w.kind == "mysql-set":
                spec.setdefault("table", _table_name(self.results.name, i))
            if w.kind in ("etcd-set", "heat-jobs"):
                spec["endpoints"] = self.lab.endpoints()
                # The operator's certificate files (docs/security.md).
                spec["etcd"] = self.lab.etcd_spec()
                if w.kind == "etcd-set" or w.prefix is None:
                    # heat-jobs keep theirs: the engines' command line names the same one.
                    spec["prefix"] = f"/lab-set/{self.results.name}/{i}"
            specs.append(spec)
        return specs

    def workload_names(self) -> list[str]:
        """Each workload's name (its clients' process names start with it)."""
        many = len(self.scenario.workloads) > 1
        return [
            w.name or (f"{w.kind}{i}" if many else w.kind)
            for i, w in enumerate(self.scenario.workloads)
        ]

    def run(self) -> ScenarioResult:
        s, lab, results = self.scenario, self.lab, self.results
        (results / "cluster.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        (results / "scenario.json").write_text(json.dumps(s.model_dump(mode="json"), indent=2))
        nemesis_offset = lab.nemesis_path.stat().st_size if lab.nemesis_path.exists() else 0
        longest = max([w.duration + w.final_timeout for w in s.workloads] + [s.duration or 0.0])
        longest_load = max([w.duration for w in s.workloads] + [s.duration or 0.0])
        bound = s.ready_timeout + longest + s.settle + 60.0
        self.feed = StatusFeed(
            lab, bound, 0.25, record_to=results / "status.jsonl", rabbitmq=self.has_rabbitmq
        )
        workers: ProcessRecord | None = None
        started_at = time.time()
        try:
            if self.nova is not None:
                self.nova.start(bound)
                self.say(f"  fake Nova API at {self.nova.url}")
            if galera_primitives(self.config):
                made = prepare_datadirs(
                    self.config,
                    [h.name for h in lab.controllers()],
                    [lab.agent_state_dir(h.name) for h in lab.controllers()],
                )
                if made:
                    self.say(f"  Galera datadirs made: {', '.join(str(p) for p in made)}")
            revision = lab.apply_config(results / "cluster.yaml")
            self.say(f"  configuration stored (revision {revision}); waiting for "
                     f"{', '.join(s.ready) or 'the cluster'}")  # fmt: skip
            self.feed.wait_for(self.is_ready, s.ready_timeout, f"{', '.join(s.ready)} running")
            if self.nova is not None:
                self.nova.boot()
                self.say(f"  {s.nova.instances if s.nova else 0} instances running on "
                         f"{s.nova.host if s.nova else ''}")  # fmt: skip
            self.observer.start()
            load_start = time.monotonic()
            started_at = time.time()
            proc: subprocess.Popen[bytes] | None = None
            if s.workloads:
                specs = self.workload_specs()
                (results / "workloads.json").write_text(json.dumps(specs, indent=2))
                allow = [str(n) for n in lab.topology.networks()]
                argv = [
                    "ip", "netns", "exec", lab.host(CLIENT).namespace,
                    sys.executable, "-m", "hastack.lab.workloads",
                    "--spec", str(results / "workloads.json"),
                    "--history", str(results / "history.jsonl"),
                    *[x for a in allow for x in ("--allow", a)],
                ]  # fmt: skip
                workers, proc = spawn(argv, log_path=results / "workloads.log")
                self.say(
                    f"  load: {', '.join(f'{w.kind} ×{w.clients}' for w in s.workloads)} "
                    f"for {max(w.duration for w in s.workloads):g}s from the client host"
                )
            else:
                self.say(f"  no client load; the run lasts {longest:g}s")
            steps = list(s.nemesis)
            if s.random_nemesis is not None:
                steps += s.random_nemesis.steps([h.name for h in lab.controllers()])
            if s.soak is not None:
                self.run_soak(s.soak, load_start, load_start + longest_load, workers)
            for step in sorted(steps, key=lambda x: x.at):
                delay = load_start + self.slip + step.at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    self.apply(step)
                except (LabError, ValueError, OSError) as exc:
                    self.notes.append(f"nemesis {step.op} at {step.at:g}s failed: {exc}")
                    self.say(f"  nemesis: {step.op} FAILED: {exc}")
            if s.serve_again is not None and workers is not None:
                self.wait_serving_again(s.serve_again, load_start, workers)
            if proc is None:
                time.sleep(max(0.0, load_start + longest - time.monotonic()))
            else:
                try:
                    proc.wait(timeout=max(1.0, load_start + longest + 30.0 - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.notes.append("workload clients overran their bound and were killed")
                if proc.returncode not in (0, None):
                    self.notes.append(f"workload clients exited with {proc.returncode}: see "
                                      "workloads.log")  # fmt: skip
            time.sleep(s.settle)
            self.wait_rejoined(load_start)
        except BaseException:
            # A run that ends early (the `ready` resources never ran) keeps what says why: a
            # lab brought up for the run is removed with its logs right after.
            with contextlib.suppress(Exception):
                self.collect_logs()
                self.say(f"  logs kept in {results / 'agents'}")
            raise
        finally:
            if workers is not None and is_alive(workers):
                send(workers, signal.SIGKILL)
                wait_gone(workers)
            self.observer.stop()
            self.feed.close()
            if self.nova is not None:
                self.nova.stop()
        ended_at = time.time()
        run_nemesis = ""
        if lab.nemesis_path.exists():  # nothing is logged when every nemesis step failed
            with lab.nemesis_path.open() as f:
                f.seek(nemesis_offset)
                run_nemesis = f.read()
        (results / "nemesis.jsonl").write_text(run_nemesis)
        self.collect_logs()
        checks = self.check(started_at, ended_at)
        result = ScenarioResult(s.name, results, checks, self.notes)
        self.report(result)
        return result

    def run_soak(
        self, spec: SoakSpec, load_start: float, load_end: float, workers: ProcessRecord | None
    ) -> None:
        """The soak's faults, until its count or `tail` before the load's end; then `tail`
        more seconds of load, and the clients are told to finish (SIGUSR1: their final
        read follows)."""
        feed = self.feed
        assert feed is not None

        def act(op: str, node: str | None, extra: str | None) -> None:
            at = round(time.monotonic() - load_start, 3)
            process = extra if op == "kill" else None
            groups = extra if op == "partition" else None
            step = {"at": at, "op": op, "node": node, "process": process, "groups": groups}
            self.apply(NemesisStep.model_validate(step))

        self.soak = run_soak(
            spec,
            [h.name for h in self.lab.controllers()],
            lambda: feed.latest,
            act,
            lambda name: is_down(self.lab, name),
            deadline=load_end - spec.tail,
            say=self.say,
        )
        (self.results / "soak.json").write_text(json.dumps(self.soak, indent=2))
        if not self.soak["recovered"]:
            self.notes.append(f"soak: the cluster was not whole again within "
                              f"{spec.final_recover:g}s of the last fault "
                              f"({', '.join(self.soak['still_out']) or 'etcd'})")  # fmt: skip
        time.sleep(max(0.0, min(spec.tail, load_end - time.monotonic())))
        if workers is not None:
            send(workers, signal.SIGUSR1)

    def serves(self, report: dict[str, Any]) -> bool:
        """Every `ready` resource runs and, with hastack:rabbitmq, every broker runs."""
        nodes = [h.name for h in self.lab.controllers()]
        return self.is_ready(report) and (not self.has_rabbitmq or brokers_running(report, nodes))

    def wait_serving_again(
        self, spec: ServeAgain, load_start: float, workers: ProcessRecord
    ) -> None:
        """`serve-again` (ServeAgain): wait up to `within` after the nemesis' last step for the
        cluster to serve, keep the load `tail` more seconds, end it; record the moments."""
        assert self.feed is not None
        last = load_start + self.slip + max(st.at for st in self.scenario.nemesis)
        wall = time.time() - time.monotonic()  # monotonic -> wall clock
        record: dict[str, Any] = {"last_step": last + wall, "within": spec.within,
                                  "tail": spec.tail, "serving_at": None}  # fmt: skip
        try:
            report = self.feed.wait_for(
                self.serves, max(0.0, last + spec.within - time.monotonic()),
                "the cluster to serve again",
            )  # fmt: skip
            record["serving_at"] = float(report.get("collected_at") or time.time())
            self.say(f"  serving again {record['serving_at'] - record['last_step']:.1f}s "
                     "after the nemesis' last step")  # fmt: skip
        except LabError:
            self.notes.append(f"serve-again: the cluster did not serve within {spec.within:g}s "
                              "of the nemesis' last step")  # fmt: skip
            self.say(f"  NOT serving {spec.within:g}s after the nemesis' last step")
        time.sleep(spec.tail)
        record["load_ended"] = time.time()
        send(workers, signal.SIGUSR1)
        (self.results / "serve-again.json").write_text(json.dumps(record, indent=2))

    def wait_rejoined(self, load_start: float) -> None:
        """With `expect.rejoin`: keep recording until the booted nodes' instances run again
        (every `ready` resource), at most `rejoin` after the last boot, so the rejoin checker
        sees the outcome rather than the end of the load."""
        boots = [st.at for st in self.scenario.nemesis if st.op == "start"]
        if self.scenario.expect.rejoin is None or not boots or self.feed is None:
            return
        left = load_start + max(boots) + self.scenario.expect.rejoin + 2.0 - time.monotonic()
        if left <= 0:
            return
        galera = [str(p["primitive"]) for p in galera_primitives(self.config)]

        def back(report: dict[str, Any]) -> bool:
            # Promoted by a life begun after the boot: the old life's report lingers.
            return self.is_ready(report) and all(
                promoted_since([report], node, name, at - 1e-3, booted=True) is not None
                for node, at in self.booted.items()
                for name in galera
            )

        try:
            self.feed.wait_for(back, left, "the booted nodes to run everything again")
        except LabError as exc:
            self.notes.append(str(exc))

    def collect_logs(self) -> None:
        for h in self.lab.nodes():
            src = self.lab.host_dir(h.name)
            dst = self.results / "agents" / h.name
            dst.mkdir(parents=True, exist_ok=True)
            for name in ("agent.log", "etcd.log", "agent.yaml"):
                if (src / name).exists():
                    shutil.copy(src / name, dst / name)
            state = self.lab.agent_state_dir(h.name)
            for name in ("events.jsonl", "exclusive.jsonl"):
                if (state / name).exists():
                    shutil.copy(state / name, dst / name)
            for log in sorted((state / "services").glob("*/output.log")):
                shutil.copy(log, dst / f"service-{log.parent.name}.log")
            collect_galera_logs(state, dst)

    def check(self, started_at: float, ended_at: float) -> list[CheckResult]:
        results, s = self.results, self.scenario
        history = parse_history(_lines(results / "history.jsonl"))
        nemesis = [json.loads(x) for x in _lines(results / "nemesis.jsonl")]
        # Deaths of the whole lab's life close intervals that began in earlier runs.
        all_nemesis = [json.loads(x) for x in _lines(self.lab.nemesis_path)]
        agent_records = []
        for h in self.lab.nodes():
            agent_records += parse_events(_lines(results / "agents" / h.name / "exclusive.jsonl"))
        observed = parse_events(_lines(results / "observed-exclusive.jsonl"))
        checks = [
            check_exclusive(agent_records, all_nemesis, end_of_run=ended_at),
            check_exclusive(observed, all_nemesis, end_of_run=ended_at, name="exclusive-observed"),
        ]
        http = [e for e in history if str(e["process"]).startswith(("http",))]
        mysql = [n for n, w in zip(self.workload_names(), s.workloads, strict=True)
                 if w.kind == "mysql-set"]  # fmt: skip
        for name in mysql:
            spec = s.workloads[self.workload_names().index(name)]
            writes = [e for e in history if _of(e, [name])]
            tag = "" if len(mysql) == 1 else f" {name}"
            checks.append(_named(check_set(writes), tag))
            if spec.one_writer:
                checks.append(_named(check_writers(writes), tag))
                checks.append(
                    _named(check_writer_moved(writes, nemesis, limit=s.expect.writer_moved), tag)
                )
                adds = [e for e in writes if not str(e["process"]).endswith("-final")]
                if not any(w.kind == "http" for w in s.workloads):
                    checks.append(
                        _named(
                            check_availability(
                                adds, nemesis, end_of_run=ended_at, max_outage=s.expect.max_outage
                            ),
                            tag,
                        )
                    )
        if mysql and any(e.get("f") == "partition" for e in nemesis):
            checks.append(check_minority([e for e in history if _of(e, mysql)], nemesis))
        if any(w.kind == "http" for w in s.workloads):
            checks.append(
                check_availability(
                    http, nemesis, end_of_run=ended_at, max_outage=s.expect.max_outage
                )
            )
        etcd = [n for n, w in zip(self.workload_names(), s.workloads, strict=True)
                if w.kind == "etcd-set"]  # fmt: skip
        if etcd:
            checks.append(check_set([e for e in history if _of(e, etcd)]))
        if any(e.get("f") == "enqueue" for e in history):
            checks.append(check_total_queue(history))
            checks.append(
                check_publish_resume(
                    history, nemesis, end_of_run=ended_at, max_outage=s.expect.publish_resume
                )
            )
        if any(w.kind == "cache-kv" for w in s.workloads):
            kv = [e for e in history if e.get("f") in ("read", "write")]
            checks.append(check_stale_reads(kv))
            checks.append(
                check_cache_service(
                    kv, nemesis, p99_allowance=s.expect.p99_allowance,
                    recover_within=s.expect.hit_ratio_within, judged=s.expect.hit_ratio_after,
                )
            )  # fmt: skip
        if any(w.kind == "rpc" for w in s.workloads):
            checks.append(
                check_rpc(
                    history, nemesis, max_timeouts=s.expect.rpc_timeouts,
                    recover_within=s.expect.rpc_recover,
                )
            )  # fmt: skip
        if self.has_rabbitmq:
            statuses = [json.loads(x) for x in _lines(results / "status.jsonl")]
            checks.append(
                check_rabbitmq_rejoin(
                    statuses, nemesis, size=s.expect.quorum_size, within=s.expect.rejoin
                )
            )
        for w in s.workloads:
            if w.kind == "heat-jobs":
                checks.append(
                    check_jobs(
                        [e for e in history if str(e["process"]).startswith("heat-jobs")],
                        nemesis,
                        lock_ttl=w.lock_ttl,
                        check_interval=w.check_interval,
                    )
                )
        if s.polls is not None:
            checks += self._poll_checks(s.polls, nemesis, started_at, ended_at)
        if any(w.kind == "assign-probe" for w in s.workloads):
            checks.append(
                check_assignment(
                    [e for e in history if str(e["process"]).startswith("assign-probe")],
                    nemesis,
                    end_of_run=ended_at,
                    max_outage=s.expect.max_outage,
                    fenced=_deaths(agent_records),
                    after_fence=s.expect.after_fence,
                    rebalance_outage=s.expect.rebalance_outage,
                )
            )
        if self.nova is not None:
            checks += self.nova.check(nemesis, results / "agents")
        for primitive in galera_primitives(self.config):
            name = str(primitive["primitive"])
            statuses = [json.loads(x) for x in _lines(results / "status.jsonl")]
            if s.expect.recovery is not None:
                checks.append(self.check_recovery(name, nemesis, history))
            if s.expect.bootstrap is not None:
                checks.append(
                    check_bootstrap(nemesis, self.server_runs(name), want=s.expect.bootstrap)
                )
            checks.append(
                check_rejoin(
                    nemesis,
                    statuses,
                    self.server_runs(name),
                    resource=name,
                    limit=s.expect.rejoin,
                    want=None if s.expect.rejoin_by == "any" else Transfer(s.expect.rejoin_by),
                )
            )
        checks += self._connectivity_checks(nemesis, ended_at)
        try:
            plot_availability(
                http or history, nemesis, results / "availability.png",
                title=f"{s.name}: successful operations and faults",
                start=started_at, end=ended_at,
            )  # fmt: skip
        except ImportError:
            self.notes.append("matplotlib is not installed: no availability.png")
        (results / "checks.json").write_text(
            json.dumps([c.to_json() for c in checks], indent=2, default=str)
        )
        return checks

    def _poll_checks(
        self, spec: PollsSpec, nemesis: list[dict[str, Any]], start: float, end: float
    ) -> list[CheckResult]:
        polls: list[dict[str, Any]] = []
        for log in sorted((self.results / "agents").glob("*/service-*.log")):
            for line in _lines(log):
                if line.startswith('{"poll"'):
                    with contextlib.suppress(ValueError):
                        polls.append(json.loads(line))
        (self.results / "polls.jsonl").write_text("".join(json.dumps(p) + "\n" for p in polls))
        out = []
        for mode in sorted({str(p.get("mode")) for p in polls} | set(spec.excused)):
            out.append(
                check_polls(
                    [p for p in polls if p.get("mode") == mode],
                    nemesis,
                    resources=spec.names(),
                    interval=spec.interval,
                    start=start + spec.warmup,
                    end=end,
                    excused=spec.excused.get(mode, 0),
                    name=f"polls-{mode}",
                )
            )
        return out

    def check_recovery(
        self,
        resource: str,
        nemesis: list[dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> CheckResult:
        names = [
            n
            for n, w in zip(self.workload_names(), self.scenario.workloads, strict=True)
            if w.kind == "mysql-set" and w.one_writer
        ]
        oks = sorted(
            o.completed
            for o in pair_ops(e for e in history if _of(e, names))
            if o.f == "add" and o.ok and o.completed is not None
        )

        def first_write_after(t: float) -> float | None:
            return next((c for c in oks if c > t), None)

        lost = sum(
            len(check_set([e for e in history if _of(e, [n])]).details.get("lost", []))
            for n in names
        )
        reported = []
        for h in self.lab.controllers():
            log = self.results / "agents" / h.name / "agent.log"
            if log.exists():
                reported += reported_positions(log.read_text(errors="replace"), resource)
        return check_recovery(
            nemesis,
            self.server_runs(resource),
            sorted(reported, key=lambda p: p.at),
            first_write_after,
            limit=self.scenario.expect.recovery,
            lost=lost,
        )

    def server_runs(self, resource: str) -> dict[str, list[ServerRun]]:
        """Each controller's Galera server runs, from the logs collected with the results."""
        out = {}
        for h in self.lab.controllers():
            path = self.results / "agents" / h.name / f"galera-{resource}-error.log"
            if path.exists():
                out[h.name] = server_runs(path.read_text(errors="replace"))
        return out

    def _connectivity_checks(
        self, nemesis: list[dict[str, Any]], ended_at: float
    ) -> list[CheckResult]:
        expect = self.scenario.expect
        if not (expect.steady or expect.no_fence or expect.alert):
            return []
        agents = self.results / "agents"
        events = [json.loads(x) for h in self.lab.nodes()
                  for x in _lines(agents / h.name / "events.jsonl")]  # fmt: skip
        deaths = [json.loads(x) for h in self.lab.nodes()
                  for x in _lines(agents / h.name / "exclusive.jsonl")]  # fmt: skip
        statuses = []
        for line in _lines(self.results / "status.jsonl"):
            try:
                statuses.append(json.loads(line))
            except ValueError:
                continue  # a sample cut short at the end of the run
        out = []
        if expect.steady:
            out.append(check_steady(statuses, events, deaths, nemesis, end_of_run=ended_at))
        if expect.no_fence:
            out.append(
                check_steady(statuses, events, deaths, nemesis, end_of_run=ended_at, moves=True)
            )
        if expect.alert:
            start = min((float(e["time"]) for e in nemesis), default=ended_at)
            out.append(check_alert(events, start=start, end_of_run=ended_at))
        return out

    def report(self, result: ScenarioResult) -> None:
        verdict = "VALID" if result.valid else "NOT VALID"
        if result.unjudged:
            verdict += f" ({', '.join(result.unjudged)}: nothing to judge)"
        lines = [f"scenario {result.scenario}: {verdict}"]
        for c in result.checks:
            lines.append(f"  {c.checker:<20} {c.verdict:<8} {c.summary}")
            lines += [f"      {o}" for o in c.details.get("overlaps", [])]
            problems = c.details.get("problems", [])
            if isinstance(problems, dict):  # by kind (the instance checks)
                problems = [f"{kind}: {p}" for kind, ps in problems.items() for p in ps]
            lines += [f"      {p}" for p in list(problems)[:10]]
        if self.soak is not None:
            lines.append(soak_line(self.soak, result.checks))
        lines += [f"  note: {n}" for n in result.notes]
        lines.append(f"  results: {result.results}")
        text = "\n".join(lines)
        (result.results / "summary.txt").write_text(text + "\n")
        self.say(text)


def soak_line(soak: Mapping[str, Any], checks: list[CheckResult]) -> str:
    """The soak's figures: faults injected, acknowledged rows, rows lost, moments with two
    writers, longest write outage (the longest gap between two acknowledged writes around
    a fault, from the availability check)."""
    by_name = {c.checker: c for c in checks}
    found, writers = by_name.get("set"), by_name.get("writers")
    outages = by_name.get("availability")
    acknowledged = found.details.get("acknowledged", "?") if found else "?"
    lost = len(found.details.get("lost", [])) if found and "lost" in found.details else "?"
    two = len(writers.details.get("overlaps", [])) if writers else "?"
    gaps = [o["seconds"] for o in (outages.details.get("outages", []) if outages else [])
            if o.get("seconds") is not None]  # fmt: skip
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(soak.get("by_kind", {}).items()))
    back = soak.get("longest_back")
    return (
        f"  soak (seed {soak.get('seed')}): {soak.get('injected')} faults injected ({kinds}; "
        f"{soak.get('hit_while_out')} on a node still out, "
        f"{soak.get('booted_after_fencing')} fenced nodes booted); "
        f"{acknowledged} rows acknowledged, {lost} lost; {two} moment(s) with two writers; "
        "longest write outage " + (f"{max(gaps):.1f}s" if gaps else "unknown") + "; "
        + ("cluster whole again after the last fault" if soak.get("recovered")
           else f"cluster NOT whole at the end ({', '.join(soak.get('still_out', []))})")
        + (f"; longest repair to whole {back:.1f}s" if back is not None else "")
    )  # fmt: skip


def _deaths(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """host -> when it was powered off by fencing or a watchdog (`dead` records)."""
    out: dict[str, list[float]] = {}
    for r in records:
        if r.get("event") == "dead" and isinstance(r.get("wall"), int | float):
            out.setdefault(str(r["node"]), []).append(float(r["wall"]))
    return out


def _named(result: CheckResult, tag: str) -> CheckResult:
    """A check of one of several workloads, named after it (`set mysql-set1`)."""
    return replace(result, checker=result.checker + tag) if tag else result


def _of(entry: Mapping[str, Any], names: list[str]) -> bool:
    """Is this history entry from one of the named workloads' clients (`NAME-3`, `NAME-final`)?"""
    process = str(entry["process"])
    return any(process.rsplit("-", 1)[0] == n for n in names)


def _table_name(results: str, index: int) -> str:
    """A table of its own for each run's set (a shared lab keeps the rows of earlier runs)."""
    plain = re.sub(r"[^A-Za-z0-9_]", "_", results)
    return f"set_{plain}_{index}"[-64:]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def is_down(lab: Lab, name: str) -> bool:
    """A host to boot: crashed by the lab (not powered), or powered off by its fencing or its
    watchdog's reset (`hastack.lab.power` kills the host's processes but does not touch the
    lab's state: `powered` still says yes) — its agent, or a controller's etcd, is gone."""
    if not lab.powered(name) or not lab.alive(name, "agent"):
        return True
    return lab.host(name).role is HostRole.CONTROLLER and not lab.alive(name, "etcd")


def prepare_lab(lab: Lab) -> list[str]:
    """Bring a shared lab back to health before a run: heal, clear loss and delay, resume,
    boot."""
    done = []
    faults = lab.faults()
    if faults.partition:
        lab.heal()
        done.append("healed")
    for host, _ in faults.loss:
        lab.netem(host, 0)
        done.append(f"loss cleared on {host}")
    for host in lab.delays():
        lab.delay(host, 0)
        done.append(f"delay cleared on {host}")
    for name in list(lab.state.get("paused", [])):
        lab.resume(name)
        done.append(f"resumed {name}")
    for h in lab.hosts():
        for link in lab.state["hosts"].get(h.name, {}).get("links_down", []):
            lab.link(h.name, int(link), up=True)
    for h in lab.nodes():
        if is_down(lab, h.name):
            lab.start(h.name, boot_if_off=True)
            done.append(f"started {h.name}")
    return done


def run_scenario(
    scenario: Scenario,
    results_root: Path,
    *,
    lab: Lab | None = None,
    lab_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> ScenarioResult:
    """Run one scenario. With `lab`, on that (shared) lab; otherwise on a lab brought up for
    this run in `lab_dir` (default: inside the results folder) and removed afterwards."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = results_root / f"{scenario.name}-{stamp}"
    n = 1
    while results.exists():
        n += 1
        results = results_root / f"{scenario.name}-{stamp}-{n}"
    results.mkdir(parents=True)
    own = lab is None
    if lab is None:
        timings = scenario.timings or FAST_TIMINGS
        say(f"scenario {scenario.name}: bringing up a lab ({scenario.lab.nodes} controllers)")
        lab = Lab.up(
            lab_dir or results / "lab",
            nodes=scenario.lab.nodes,
            computes=scenario.lab.computes,
            links_count=scenario.lab.links,
            timings=timings,
            election_ms=scenario.election_ms,
            on_progress=lambda m: say(f"  {m}"),
            remote_timings=scenario.remote_timings(),
        )
    else:
        fixed = prepare_lab(lab)
        say(f"scenario {scenario.name} on lab {lab.topology.prefix}"
            + (f" ({'; '.join(fixed)})" if fixed else ""))  # fmt: skip
    try:
        return Runner(scenario, lab, results, say).run()
    finally:
        if own:
            lab.down(keep_logs=False)
