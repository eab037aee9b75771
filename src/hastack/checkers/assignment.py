"""The work-assignment checker: from the probes of every entity (which node answered for it,
or that nothing did) and the nemesis log, what each fault did to each entity.

The probe workload (`assign-probe`) records one operation per request, its value the entity
and its completion's value `{"node": N}` for an answer. For each crash of a node:

* its **orphans** are the entities it answered for last before the crash; each one's outage
  is the gap from the last answer before the crash to the first answer after it from
  another node, or from its own once that is back (a node the DC learns is dead only after
  it booted again may be given its entities again), bounded by `max_outage`; with `fenced`
  (when each host was powered off by its fencing, from the `dead` records) and `after_fence`,
  each orphan must also answer again within `after_fence` of the fence that followed the
  crash;
* every **other** entity must see no failure and no change of node between the crash and
  the next start of a crashed node (the window the fault owns);
* after a crashed node is **started** again, no entity may move (sticky: nothing moves back);
  an orphan taken over only after the return may make that one move, none after it.

A partition counts like a crash of the smaller side (until the heal): its entities must be
answered again, from the other side once taken over or from their own node after the heal if
the cut was too short to declare it lost (the longest gap between answers is the outage),
and nothing else moves.

Across the whole run it counts every change of answering node per entity (moves), flagging
those that were not needed (an entity whose node had not failed), and the longest outage.
Two nodes answering for one entity at once is judged by the exclusivity checkers on the
addresses, not here (a probe sees one answer at a time).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hastack.checkers.history import CheckResult, Op, pair_ops

__all__ = ["EntityFault", "check_assignment"]


@dataclass(frozen=True, slots=True)
class EntityFault:
    fault: str
    time: float
    orphans: tuple[str, ...]
    outages: Mapping[str, float | None]  # orphan -> seconds (None: never answered again)
    answered: Mapping[str, float | None]  # orphan -> first answer after the crash (wall)
    fenced_at: float | None  # when the crashed node's fence completed
    others_failed: Mapping[str, int]  # non-orphan entity -> failed probes in the window
    others_moved: tuple[str, ...]  # non-orphan entities that changed node in the window
    moved_on_return: tuple[str, ...]  # entities that changed node after the node came back

    def to_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "time": self.time,
            "orphans": list(self.orphans),
            "outages": {
                k: (round(v, 3) if v is not None else None) for k, v in self.outages.items()
            },
            "fence_seconds": None
            if self.fenced_at is None
            else round(self.fenced_at - self.time, 3),
            "after_fence": {
                k: (round(v - self.fenced_at, 3) if v is not None and self.fenced_at else None)
                for k, v in self.answered.items()
            },
            "others_failed": dict(self.others_failed),
            "others_moved": list(self.others_moved),
            "moved_on_return": list(self.moved_on_return),
        }


def _node(op: Op) -> str | None:
    if op.ok and isinstance(op.result, dict) and isinstance(op.result.get("node"), str):
        return str(op.result["node"])
    return None


def _by_entity(ops: Iterable[Op]) -> dict[str, list[Op]]:
    out: dict[str, list[Op]] = {}
    for op in ops:
        if op.f == "probe" and isinstance(op.value, str):
            out.setdefault(op.value, []).append(op)
    for entity_ops in out.values():
        entity_ops.sort(key=lambda o: o.completed if o.completed is not None else o.invoked)
    return out


def _moves(ops: list[Op], start: float, end: float) -> int:
    """Changes of answering node among answers completed in [start, end)."""
    moves, last = 0, None
    for op in ops:
        node = _node(op)
        if node is None or op.completed is None:
            continue
        if op.completed >= start and last is not None and node != last and op.completed < end:
            moves += 1
        last = node
    return moves


def _at(e: Mapping[str, Any]) -> float:
    return float(e.get("wall", e.get("time", 0.0)))


def _fault(
    events: list[Mapping[str, Any]], i: int, end_of_run: float
) -> tuple[str, frozenset[str], float, float | None] | None:
    """(label, the hosts it cut off, when, when they came back) for a crash, or a partition
    that isolates a smaller group of hosts (hosts not in any group are not cut off)."""
    e = events[i]
    if e.get("f") == "crash":
        host = str(e.get("host"))
        later = [x for x in events[i + 1 :] if x.get("f") == "start" and x.get("host") == host]
        return f"crash {host}", frozenset([host]), _at(e), _at(later[0]) if later else None
    if e.get("f") == "partition":
        groups = [frozenset(map(str, g)) for g in e.get("groups", []) if g]
        if len(groups) < 2:
            return None
        smallest = min(groups, key=lambda g: (len(g), sorted(g)))
        later = [x for x in events[i + 1 :] if x.get("f") in ("heal", "partition")]
        return (
            f"partition {' | '.join(','.join(sorted(g)) for g in groups)}",
            smallest,
            _at(e),
            _at(later[0]) if later else None,
        )
    return None


def _longest_gap(ops: list[Op], since: float, until: float) -> float:
    """The longest time between two answers (any node) from `since` until `until`."""
    times = sorted(
        o.completed
        for o in ops
        if o.completed is not None and since <= o.completed <= until and _node(o)
    )
    points = [since, *times, until]
    return max(b - a for a, b in itertools.pairwise(points))


def _rebalances(
    entities: Mapping[str, list[Op]],
    events: list[Mapping[str, Any]],
    end_of_run: float,
    bound: float | None,
) -> tuple[list[dict[str, Any]], set[str]]:
    """Each `rebalance` asked for: the entities it moved (until the next event), each one's
    outage around its move, and no more moves than it allowed."""
    out: list[dict[str, Any]] = []
    moved_all: set[str] = set()
    for i, e in enumerate(events):
        if e.get("f") != "rebalance":
            continue
        t = _at(e)
        until = min([_at(x) for x in events[i + 1 :]] or [end_of_run])
        moved: dict[str, float] = {}
        for entity, ops in entities.items():
            if _moves(ops, t, until):
                answers = [
                    o.completed
                    for o in ops
                    if o.completed is not None and _node(o) and o.completed >= t
                ]
                before = [
                    o.completed
                    for o in ops
                    if o.completed is not None and _node(o) and o.completed < t
                ]
                since = before[-1] if before else t
                moved[entity] = _longest_gap(ops, since, answers[-1] if answers else until)
        problems = []
        allowed = int(e.get("max_moves", 1 << 30))
        if len(moved) > allowed:
            problems.append(f"rebalance moved {len(moved)} entities, more than the {allowed} asked")
        if bound is not None:
            problems += [
                f"{x} out for {s:.2f}s while rebalanced (> {bound:g}s)"
                for x, s in sorted(moved.items())
                if s > bound
            ]
        out.append(
            {
                "time": t,
                "moved": sorted(moved),
                "outages": {k: round(v, 3) for k, v in sorted(moved.items())},
                "problems": problems,
            }
        )
        moved_all |= set(moved)
    return out, moved_all


def check_assignment(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    end_of_run: float,
    max_outage: float | None = None,
    fenced: Mapping[str, Iterable[float]] | None = None,
    after_fence: float | None = None,
    rebalance_outage: float | None = None,
) -> CheckResult:
    entities = _by_entity(pair_ops(history))
    if not entities:
        return CheckResult("assignment", None, "no probes recorded")
    events = sorted(nemesis, key=_at)
    faults: list[EntityFault] = []
    problems: list[str] = []
    for i in range(len(events)):
        fault_of = _fault(events, i, end_of_run)
        if fault_of is None:
            continue
        label, hosts, t, returned = fault_of
        host = ",".join(sorted(hosts))
        window_end = returned if returned is not None else end_of_run
        # After the return, until the next fault: nothing may move (back or anywhere).
        later_faults = [
            _at(x)
            for x in events[i + 1 :]
            if x.get("f") == "rebalance" or _fault(events, events.index(x), end_of_run)
        ]
        calm_end = min(
            [x for x in later_faults if returned is None or x > returned] or [end_of_run]
        )
        fence_times = sorted(x for h in hosts for x in (fenced or {}).get(h, ()) if x >= t)
        fenced_at = fence_times[0] if fence_times and fence_times[0] <= window_end else None
        orphans, outages, failed, moved, back = [], {}, {}, [], []
        answered: dict[str, float | None] = {}
        for entity, ops in sorted(entities.items()):
            before = [o for o in ops if o.completed is not None and o.completed <= t and _node(o)]
            last_node = _node(before[-1]) if before else None
            first: float | None = None
            if last_node in hosts:
                orphans.append(entity)
                # Served again: the first answer from a node outside the fault, or from its
                # own node once that is back (booted, or the partition healed) — a node whose
                # death the DC learnt only after its reboot may be given its entity again,
                # and a node cut off for less than it takes to declare it lost keeps them.
                after = [
                    o
                    for o in ops
                    if o.completed is not None
                    and o.completed > t
                    and (n := _node(o)) is not None
                    and (n not in hosts or (returned is not None and o.completed >= returned))
                ]
                first = after[0].completed if after else None
                answered[entity] = first
                outages[entity] = (
                    _longest_gap(ops, before[-1].completed or t, first)
                    if first is not None
                    else None
                )
                if (
                    first is not None
                    and after_fence is not None
                    and fenced_at is not None
                    and first - fenced_at > after_fence
                ):
                    problems.append(
                        f"{entity} (on {host}) answered {first - fenced_at:.2f}s after the fence "
                        f"(> {after_fence:g}s)"
                    )
            else:
                bad = [o for o in ops if t <= o.invoked < window_end and not o.ok]
                if bad:
                    failed[entity] = len(bad)
                if _moves(ops, t, window_end):
                    moved.append(entity)
            # After the return nothing moves: for an orphan, nothing after the answer that
            # took it over (which may come after the return: the soak boots a crashed node
            # 3 s after the crash, before a slow fence and takeover are over).
            since = returned
            if since is not None and first is not None and first >= since:
                since = first + 1e-6
            if since is not None and _moves(ops, since, calm_end):
                back.append(entity)
        fault = EntityFault(
            label,
            t,
            tuple(orphans),
            outages,
            answered,
            fenced_at,
            failed,
            tuple(moved),
            tuple(back),
        )
        if after_fence is not None and fenced_at is None and orphans and label.startswith("crash"):
            problems.append(f"{host} was crashed but no fence of it was recorded")
        faults.append(fault)
        for entity, seconds in outages.items():
            if seconds is None:
                problems.append(f"{entity} (on {host}) never answered again")
            elif max_outage is not None and seconds > max_outage:
                problems.append(f"{entity} (on {host}) out for {seconds:.2f}s > {max_outage:g}s")
        problems += [f"{x} (not on {host}) failed {n} probe(s)" for x, n in failed.items()]
        problems += [f"{x} (not on {host}) changed node" for x in moved]
        problems += [f"{x} moved after {host} came back" for x in back]
    rebalances, rebalanced = _rebalances(entities, events, end_of_run, rebalance_outage)
    for r in rebalances:
        problems += r["problems"]
    total_moves = {e: _moves(ops, 0.0, float("inf")) for e, ops in entities.items()}
    orphaned = {o for f in faults for o in f.orphans} | rebalanced
    unnecessary = sum(n for e, n in total_moves.items() if e not in orphaned)
    known = [s for f in faults for s in f.outages.values() if s is not None]
    summary_parts = [
        f"{len(entities)} entities",
        f"{len(faults)} fault(s)",
        f"{sum(len(f.orphans) for f in faults)} orphan(s)",
        f"moves {sum(total_moves.values())} (unnecessary {unnecessary})",
    ]
    if known:
        summary_parts.append(
            f"orphan outage median {statistics.median(known):.2f}s max {max(known):.2f}s"
        )
    details: dict[str, Any] = {
        "faults": [f.to_json() for f in faults],
        "moves": total_moves,
        "unnecessary_moves": unnecessary,
        "rebalances": rebalances,
        "longest_outage": max(known) if known else None,
        "problems": problems,
    }
    if not faults:
        return CheckResult(
            "assignment", None, "; ".join(summary_parts) + "; no crash to judge", details
        )
    valid = not problems
    text = "; ".join(summary_parts) + (
        "" if valid else f"; {len(problems)} problem(s): {problems[0]}"
    )
    return CheckResult("assignment", valid, text, details)
