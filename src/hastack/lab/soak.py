"""A soak: many random faults, one after another, against a running cluster under load.

A scenario with a `soak` section drives its nemesis from this loop instead of a fixed
schedule (scenarios/galera-soak.yaml):

    soak:
      faults: 100                    # how many to inject (the load's duration bounds the run)
      kinds: [crash, kill-galera, pause, partition]
      hold: [1s, 8s]                 # how long each fault lasts before its repair
      gap: 1s                        # after a repair, before the next fault
      recover: 30s                   # at most this long waiting for the node hit to serve
      settle: 3s                     # reports older than this after the repair do not count
      final-recover: 180s            # after the last fault: everything back within this
      tail: 15s                      # then this much more load, and the load ends
      seed: 7                        # omitted: random (the run records the one used)

Each fault hits one controller and is repaired before the next one: `crash` → `start`;
`kill-galera` SIGKILLs the node's mariadbd (nothing repairs it but the cluster: its agent's
monitor finds it gone and the instance is recovered); `pause` → `resume`; `partition` (the
node against the rest) → `heal`. A node the cluster fenced meanwhile (a frozen or cut-off
node misses its heartbeats and is powered off: about a second after the fault in the lab) is
booted as soon as the loop sees it down (`hastack.lab.scenario.is_down`), as an operator would
power it on.

At most one node is hit at a time, so the other two keep a majority (of etcd and of Galera):
the next fault waits until the node hit last is *back*, meaning its instance of `resource`
Promoted, not failed, its Galera state synced (or donor), in a report collected `settle`
after the repair (longer than a monitor interval: a frozen node's report is the one from
before the pause until its agent looks again) and, when the node was powered off or its
mariadbd killed, with an operation after that (the promote of its new life: until its new
agent writes, the report of the life before the power loss lingers, Promoted), and every
etcd member healthy. Should that take longer than `recover`, the next fault hits
the same node again (never another one, which could take the quorum) — the run counts those
(`hit_while_out`). After the last fault the loop waits up to `final-recover` for the whole
cluster to be back (`recovered`: a cluster that never comes back is a finding, not a pass),
then `tail` seconds of load show that it serves; the runner then ends the load.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from hastack.lab.net.lab import LabError
from hastack.model.base import Duration, Spec

__all__ = ["KINDS", "SoakSpec", "back", "run_soak"]

SoakKind = Literal["crash", "kill-galera", "pause", "partition"]
KINDS: tuple[SoakKind, ...] = ("crash", "kill-galera", "pause", "partition")
POLL = 0.25  # seconds between looks at the newest status report


class SoakSpec(Spec):
    faults: int = pydantic.Field(default=100, ge=1, le=1000)
    kinds: list[SoakKind] = pydantic.Field(default_factory=lambda: list(KINDS), min_length=1)
    hold: tuple[Duration, Duration] = (1.0, 8.0)
    gap: Duration = 1.0
    recover: Duration = 30.0
    settle: Duration = 3.0  # a report must be this much younger than the repair
    final_recover: Duration = 180.0
    tail: Duration = 15.0
    seed: int | None = None
    resource: str = "galera"

    @pydantic.model_validator(mode="after")
    def _sane(self) -> SoakSpec:
        if not 0 < self.hold[0] <= self.hold[1]:
            raise ValueError("hold is [shortest, longest], both positive")
        return self


# What the runner does for the loop: op (a nemesis op: crash, start, kill, pause, resume,
# partition, heal), node, and the process (kill) or groups (partition).
Act = Callable[[str, str | None, str | None], None]


@dataclass(frozen=True, slots=True)
class Since:
    """When a node may count as back: reports collected from `not_before` (wall clock), and
    with an operation on its instance after `op_after` (None: any)."""

    not_before: float = 0.0
    op_after: float | None = None


def back(report: Mapping[str, Any] | None, resource: str, node: str, since: Since) -> bool:
    """Is `node`'s instance of `resource` serving again in this report (see the module)?"""
    if not report or float(report.get("collected_at") or 0.0) < since.not_before:
        return False
    attrs: Mapping[str, Any] = next(
        (n.get("attributes") or {} for n in report.get("nodes", []) if n.get("name") == node),
        {},
    )
    if attrs.get(f"galera-{resource}-state") not in ("synced", "donor", None):
        return False
    for r in report.get("resources", []):
        instance = str(r.get("instance", ""))
        if r.get("node") != node or not (
            instance == resource or instance.startswith(resource + ":")
        ):
            continue
        if r.get("role") != "Promoted" or not r.get("node-online") or r.get("failed"):
            continue
        at = float((r.get("last-op") or {}).get("at") or 0.0)
        if since.op_after is None or at > since.op_after:
            return True
    return False


def store_healthy(report: Mapping[str, Any] | None) -> bool:
    store = (report or {}).get("store") or []
    return bool(store) and all(e.get("healthy") for e in store)


class _Loop:
    def __init__(
        self,
        spec: SoakSpec,
        nodes: list[str],
        latest: Callable[[], Mapping[str, Any] | None],
        act: Act,
        off: Callable[[str], bool],
        say: Callable[[str], None],
    ) -> None:
        self.spec, self.nodes, self.latest, self.act = spec, nodes, latest, act
        self.off, self.say = off, say
        self.since: dict[str, Since] = {}  # node -> when it may count as back
        self.boots = 0  # nodes found powered off (fenced) and booted by the loop

    def out(self) -> list[str]:
        """Nodes not back: those hit, judged by `since`; any other, by its report alone."""
        report = self.latest()
        return [
            n
            for n in self.nodes
            if not back(report, self.spec.resource, n, self.since.get(n, Since()))
        ]

    def whole(self) -> bool:
        """Every node back, and etcd healthy."""
        out = self.out()
        for n in [n for n in self.since if n not in out]:
            del self.since[n]  # back: nothing to wait for until it is hit again
        return not out and store_healthy(self.latest())

    def boot_fenced(self) -> None:
        for n in self.nodes:
            if self.off(n):
                self.act("start", n, None)
                self.boots += 1
                now = time.time()
                self.since[n] = Since(not_before=now + self.spec.settle, op_after=now)

    def wait_whole(self, limit: float, deadline: float) -> float | None:
        """Seconds until the cluster is whole (booting what fencing powered off), None if
        not within `limit` or by `deadline` (monotonic)."""
        start = time.monotonic()
        while True:
            self.boot_fenced()
            if self.whole():
                return time.monotonic() - start
            if time.monotonic() - start >= limit or time.monotonic() >= deadline:
                return None
            time.sleep(POLL)

    def strike(self, kind: str, node: str, hold: float) -> None:
        struck = time.time()
        if kind == "crash":
            self.act("crash", node, None)
        elif kind == "kill-galera":
            self.act("kill", node, self.spec.resource)
        elif kind == "pause":
            self.act("pause", node, None)
        else:
            self.act("partition", None, f"{node} | @rest")
        time.sleep(hold)
        if kind == "crash":
            self.act("start", node, None)
        elif kind == "pause":
            self.act("resume", node, None)
        elif kind == "partition":
            self.act("heal", None, None)
        repaired = time.time()
        # A crash, or fencing meanwhile, rebooted it; a kill needs the instance recovered.
        fresh: float | None = struck if kind in ("crash", "kill-galera") else None
        if self.off(node):
            fresh = repaired
        self.since[node] = Since(not_before=repaired + self.spec.settle, op_after=fresh)
        self.boot_fenced()


def run_soak(
    spec: SoakSpec,
    nodes: list[str],
    latest: Callable[[], Mapping[str, Any] | None],
    act: Act,
    off: Callable[[str], bool],
    *,
    deadline: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Inject faults until `spec.faults` or `deadline` (monotonic), wait for the cluster to
    be whole again; return what was done (JSON)."""
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    loop = _Loop(spec, nodes, latest, act, off, say)
    faults: list[dict[str, Any]] = []
    skipped: list[str] = []
    stalls = 0  # waits past `recover` with no single node to hit (more out at once)
    by_kind: Counter[str] = Counter()
    repaired = time.monotonic()
    while len(faults) < spec.faults and time.monotonic() < deadline:
        waited = loop.wait_whole(spec.recover, deadline)
        if waited is not None and faults and "back_after" not in faults[-1]:
            faults[-1]["back_after"] = round(time.monotonic() - repaired, 2)
        out = loop.out()
        if waited is None and len(out) != 1:
            # several nodes out (or etcd unhealthy): another fault could take the quorum
            stalls += 1
            say(f"  soak: not whole after {spec.recover:g}s "
                f"({', '.join(out) or 'etcd unhealthy'}): waiting")  # fmt: skip
            continue
        node = out[0] if waited is None else rng.choice(nodes)
        kind = rng.choice(spec.kinds)
        hold = round(rng.uniform(spec.hold[0], spec.hold[1]), 2)
        entry: dict[str, Any] = {"n": len(faults) + 1, "kind": kind, "node": node,
                                 "hold": hold, "at": time.time(),
                                 "node_was_out": waited is None}  # fmt: skip
        try:
            loop.strike(kind, node, hold)
        except (LabError, OSError, ValueError) as exc:
            skipped.append(f"{kind} {node}: {exc}")
            say(f"  soak: {kind} {node} not injected: {exc}")
            time.sleep(1.0)
            continue
        repaired = time.monotonic()
        faults.append(entry)
        by_kind[kind] += 1
        say(f"  soak fault {entry['n']}: {kind} {node} for {hold:g}s"
            + (" (while it was still out)" if waited is None else ""))  # fmt: skip
        time.sleep(spec.gap)
    recovered = loop.wait_whole(spec.final_recover, float("inf"))
    if recovered is not None and faults and "back_after" not in faults[-1]:
        faults[-1]["back_after"] = round(time.monotonic() - repaired, 2)
    still_out = [] if recovered is not None else loop.out()
    say(f"  soak: {len(faults)} faults; "
        + (f"cluster whole again {time.monotonic() - repaired:.1f}s after the last repair"
           if recovered is not None
           else f"cluster NOT whole {time.monotonic() - repaired:.0f}s after the last repair "
                f"({', '.join(still_out) or 'etcd unhealthy'})"))  # fmt: skip
    backs = [f["back_after"] for f in faults if "back_after" in f]
    return {
        "seed": seed,
        "injected": len(faults),
        "by_kind": dict(by_kind),
        "hit_while_out": sum(1 for f in faults if f["node_was_out"]),
        "booted_after_fencing": loop.boots,
        "recovered": recovered is not None,
        "longest_back": max(backs, default=None),  # repair -> the cluster whole again
        "stalls": stalls,
        "still_out": still_out,
        "faults": faults,
        "skipped": skipped,
    }
