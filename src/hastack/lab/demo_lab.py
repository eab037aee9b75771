"""The main job on the lab: three controllers in network namespaces, a VIP in front of
hastack's proxy (a clone on every controller) balancing an HTTP API cloned on every
controller, client load through the VIP, the VIP holder loses power, the failover measured.

It is the `proxy-crash-holder` scenario (`scenarios/proxy-crash-holder.yaml`) with a narration:
the same runner records the history, the nemesis log and the agents' logs and runs the
checkers, and this module reads those records to break the failover down into detection
(the crashed node is seen gone), recovery (the VIP starts on another node) and the first
answer after it. Fencing is on (fence_hastack_local powers lab hosts off): the silent node is
suspected by heartbeats and fenced, so nothing waits for its lease to expire.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hastack.checkers import pair_ops, parse_history
from hastack.eventlog import read_events
from hastack.lab.net.lab import FAST_ELECTION_MS, FAST_TIMINGS, Lab, require_root
from hastack.lab.scenario import Runner, Scenario, ScenarioResult
from hastack.model.document import load_yaml, validate

__all__ = ["DEMO_SCENARIO", "Failover", "failover_figures", "run_lab_demo"]

DEMO_SCENARIO = """\
name: demo
description: crash the node holding the VIP, in front of the proxy and the API, under HTTP load
lab: {nodes: 3}
cluster:
  properties: {stonith-enabled: true}
  fencing:
    devices:
      - {device: power, agent: fence_hastack_local, params: {registry: "${power}"}}
  op-defaults: {timeout: 10s}
  resources:
    - primitive: vip
      agent: hastack:vip
      params: {ip: "${vip}", cidr_netmask: "23", nic: eth0}
      ops: [{name: monitor, interval: 1s}]
    - clone: api-clone
      resource:
        primitive: api
        agent: hastack:service
        params:
          command: "exec ${python} -m hastack.lab.net.demo_api --port 8081"
          health-port: "8081"
        ops: [{name: monitor, interval: 1s}]
    - clone: proxy-clone
      resource:
        primitive: proxy
        agent: hastack:proxy
        params:
          config: |
            frontends:
              - {name: api, bind: ["${vip}:8080"], backend: api, freebind: true}
            backends:
              - name: api
                cluster: {resource: api, port: 8081}
                timeouts: {connect: 200ms}
                check: {type: http, interval: 1s, fall: 2}
        ops: [{name: monitor, interval: 1s}]
  constraints:
    - {colocation: vip-with-proxy, resource: vip, with: proxy-clone, score: INFINITY}
    - {order: api-then-proxy, first: api-clone, then: proxy-clone}
    - {order: proxy-then-vip, first: proxy-clone, then: vip}
ready: [vip, api, proxy]
workloads:
  - {kind: http, url: "http://${vip}:8080/", clients: 4, rate: 20, duration: 14s, timeout: 0.5s}
nemesis:
  - {at: 3s, op: crash, node: "@holder:vip"}
settle: 0.5s
expect: {max-outage: 10s}
"""


@dataclass(frozen=True)
class Failover:
    victim: str
    crash: float
    last_ok_before: float | None
    first_ok_after: float | None
    failed: int
    total: int
    offline_seen: float | None  # first status report showing the victim offline
    vip_start_began: float | None  # the new holder's start operation, by its own clock
    vip_start_done: float | None
    new_holder: str | None

    @property
    def outage(self) -> float | None:
        if self.last_ok_before is None or self.first_ok_after is None:
            return None
        return self.first_ok_after - self.last_ok_before


def failover_figures(results: Path) -> Failover | None:
    """The failover of the first crash in a run's results folder, from its records."""
    nemesis = [e for e in read_events(results / "nemesis.jsonl") if e.get("f") == "crash"]
    if not nemesis:
        return None
    crash, victim = float(nemesis[0]["time"]), str(nemesis[0]["host"])
    ops = pair_ops(parse_history((results / "history.jsonl").read_text().splitlines()))
    # The first success of a request *sent* after the crash (one already in flight proves
    # nothing), and the last success before it of a request sent before the crash.
    gap_end = min((o.completed for o in ops if o.ok and o.completed and o.invoked > crash),
                  default=None)  # fmt: skip
    last_before = max(
        (o.completed for o in ops if o.ok and o.completed and o.invoked <= crash
         and (gap_end is None or o.completed < gap_end)),
        default=None,
    )  # fmt: skip
    lo = last_before if last_before is not None else crash
    hi = gap_end if gap_end is not None else float("inf")
    failed = sum(1 for o in ops if not o.ok and o.completed is not None and lo <= o.completed <= hi)
    offline_seen = None
    vip_began = vip_done = None
    new_holder = None
    for report in read_events(results / "status.jsonl"):
        at = float(report.get("collected_at", 0))
        if at <= crash:
            continue
        if offline_seen is None and any(
            n["name"] == victim and not n.get("online") for n in report.get("nodes", [])
        ):
            offline_seen = at
        for r in report.get("resources", []):
            last = r.get("last-op") or {}
            if (
                r.get("instance") == "vip"
                and r.get("node") != victim
                and last.get("op") == "start"
                and float(last.get("at", 0)) > crash
                and vip_done is None
            ):
                vip_done = float(last["at"])
                vip_began = vip_done - float(last.get("duration", 0))
                new_holder = str(r["node"])
    return Failover(
        victim, crash, last_before, gap_end, failed, len(ops), offline_seen, vip_began, vip_done,
        new_holder,
    )  # fmt: skip


def _clock(t: float | None) -> str:
    if t is None:
        return "never"
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def _banner(text: str) -> None:
    print()
    print(f"=== {text}")


def _describe(f: Failover, ttl: float) -> list[str]:
    lines = []
    if f.outage is not None:
        lines.append(
            f"  failover: {f.outage:.2f}s without an answer through the VIP "
            f"(last success {_clock(f.last_ok_before)}, first success {_clock(f.first_ok_after)})"
        )
    else:
        lines.append("  failover: the service did NOT answer again within the run")
    lines.append(f"  requests: {f.failed} failed during the failover, of {f.total} sent")

    def rel(t: float | None) -> str:
        return "?" if t is None else f"+{t - f.crash:.2f}s"

    lines.append(f"  breakdown from the crash of {f.victim} at {_clock(f.crash)}:")
    lines.append(
        f"    offline    {rel(f.offline_seen):>8}  {f.victim} shown offline in status (fenced, "
        f"or its {ttl:g}s lease expired; sampled every 0.25s) — recovery does not wait for it"
    )
    if f.vip_start_began is not None:
        lines.append(
            f"    recovery   {rel(f.vip_start_began):>8}  VIP start began on {f.new_holder} "
            f"(took {(f.vip_start_done or 0) - f.vip_start_began:.3f}s, gratuitous ARP included)"
        )
    lines.append(
        f"    answered   {rel(f.first_ok_after):>8}  first successful request through the VIP"
    )
    return lines


def run_lab_demo(*, keep_results: bool = True) -> int:
    require_root()
    scenario = validate(load_yaml(DEMO_SCENARIO, "demo scenario"), Scenario)
    results_root = Path.home() / ".hastack" / "results"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = results_root / f"demo-{stamp}"
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hastack-lab-demo-") as tmp:
        _banner("starting three controllers, each its own network namespace and hostname")
        started = time.monotonic()
        lab = Lab.up(
            Path(tmp) / "lab",
            nodes=3,
            timings=FAST_TIMINGS,
            election_ms=FAST_ELECTION_MS,
            on_progress=lambda m: print(f"  {m}"),
        )
        try:
            up_seconds = time.monotonic() - started
            t = lab.timings
            print(
                f"  lab up in {up_seconds:.1f}s; timings: lease TTL {t.lease_ttl:g}s, renew "
                f"{t.renew_interval:g}s, store timeout {t.store_timeout:g}s; fencing on "
                "(heartbeats every 200 ms, suspect after 1 s, fence_hastack_local)"
            )
            vip = f"{lab.topology.net_prefix(0)}.100"
            _banner(
                f"a VIP {vip} in front of hastack's proxy (a clone on every controller), "
                "balancing an HTTP API cloned on every controller"
            )
            runner = Runner(scenario, lab, results, print)
            shown = yaml.safe_dump(runner.config["resources"], sort_keys=False).strip()
            print("  " + shown.replace("\n", "\n  "))
            result = runner.run()
            print()
            print(lab.status(text=True).rstrip())
            figures = failover_figures(results)
            _banner("result")
            if figures is None:
                print("  no crash happened (see the nemesis note above)")
                return 1
            served = _served_by(results, figures)
            for line in _describe(figures, t.lease_ttl):
                print(line)
            if served:
                print(f"  served by: {served}")
            _print_checks(result)
            print(f"  availability plot: {results / 'availability.png'}")
            _banner(f"booting {figures.victim} again")
            lab.start(figures.victim)
            lab.wait_for(lab.is_settled, 30.0, f"{figures.victim} back online")
            print(f"  {figures.victim} rejoined; the VIP stays where it is (stickiness)")
        finally:
            lab.down()
        print("  cleaned up: namespaces, interfaces, routes and processes of the lab removed")
    if not keep_results:
        shutil.rmtree(results, ignore_errors=True)
    else:
        print(f"  records of the run kept in {results}")
    return 0 if result.valid else 1


def _served_by(results: Path, f: Failover) -> str | None:
    """Which node answered before the crash and after the failover (the API says)."""
    entries = [e for e in parse_history((results / "history.jsonl").read_text().splitlines())
               if e["type"] == "ok" and e.get("node")]  # fmt: skip
    before = [e for e in entries if e["time"] <= f.crash]
    after = [e for e in entries if f.first_ok_after is not None and e["time"] >= f.first_ok_after]
    if not before or not after:
        return None
    return f"{before[-1]['node']} before the crash, {after[0]['node']} after"


def _print_checks(result: ScenarioResult) -> None:
    names = {
        "exclusive": "VIP never on two nodes (agents' records)",
        "exclusive-observed": "VIP never on two nodes (lab's own observation)",
        "availability": "service answered again after the crash",
    }
    print("  checks:")
    for c in result.checks:
        print(f"    {c.verdict:<8} {names.get(c.checker, c.checker)}: {c.summary}")
