"""The availability timeline: when did clients get answers, and how long did each fault
keep them from getting any?

For every fault in the nemesis log, the outage is the longest gap between two consecutive
successful operations (by completion time) that overlaps the window from just before the
fault until the next fault (or the end of the run): *last success before* → *first success
after*, with the operations that failed in between. Measuring the longest gap in the window,
rather than the first success after the fault time, keeps a request that was already in
flight when the node died from hiding the outage that follows it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from hastack.checkers.history import CheckResult, Op, pair_ops

__all__ = ["FAULTS", "Outage", "check_availability", "outages"]

# Nemesis operations that can make a service unavailable (repairs are not faults).
FAULTS = ("crash", "kill", "pause", "partition", "netem", "link-down")
# A success this long before the fault still counts as "the last one before it".
_BEFORE = 0.5
# Faults struck within this of one another are one outage (every node's power cut "at once"
# is a crash after a crash, some milliseconds apart): each one's window runs to the next
# fault struck later than that.
_TOGETHER = 1.0


@dataclass(frozen=True, slots=True)
class Outage:
    fault: str  # e.g. "crash n1"
    fault_time: float
    last_ok_before: float | None
    first_ok_after: float | None  # None: never recovered within the run
    failed: int  # operations that completed as fail or info within the gap
    attempted: int  # operations invoked within the gap

    @property
    def seconds(self) -> float | None:
        if self.last_ok_before is None or self.first_ok_after is None:
            return None
        return self.first_ok_after - self.last_ok_before

    @property
    def recovered_after_fault(self) -> float | None:
        """Fault time to first success after the gap."""
        return None if self.first_ok_after is None else self.first_ok_after - self.fault_time


def _describe(e: Mapping[str, Any]) -> str:
    parts = [str(e.get("f"))]
    if e.get("host"):
        parts.append(str(e["host"]))
    if e.get("process"):
        parts.append(str(e["process"]))
    if e.get("groups"):
        parts.append(" | ".join(",".join(g) for g in e["groups"]))
    return " ".join(parts)


def outages(ops: list[Op], nemesis: Iterable[Mapping[str, Any]], end: float) -> list[Outage]:
    oks = sorted(o.completed for o in ops if o.ok and o.completed is not None)
    faults = sorted((e for e in nemesis if e.get("f") in FAULTS), key=lambda e: float(e["time"]))
    out = []
    for n, fault in enumerate(faults):
        t = float(fault["time"])
        later = (float(f["time"]) for f in faults[n + 1 :] if float(f["time"]) > t + _TOGETHER)
        until = next(later, end)
        lo = bisect.bisect_right(oks, t - _BEFORE)
        hi = bisect.bisect_right(oks, until)
        window = oks[max(0, lo - 1) : hi]
        # Candidate gaps: between consecutive successes ending after the fault, and the tail
        # from the last success to the last failed attempt after it (never recovered): a
        # failure completed after the next fault is that fault's (a soak strikes again soon).
        candidates: list[tuple[float, float | None, float | None]] = []
        for a, b in itertools.pairwise(window):
            if b > t:
                candidates.append((b - a, a, b))
        last_ok = window[-1] if window else None
        after = [
            o.completed or o.invoked
            for o in ops
            if not o.ok and (last_ok is None or o.invoked >= last_ok) and o.invoked <= until
            and t <= (o.completed or o.invoked) <= until
        ]  # fmt: skip
        if after:
            tail_from = last_ok if last_ok is not None else t
            candidates.append((max(after) - tail_from, last_ok, None))
        if not candidates:
            if window and window[0] > t and lo == 0:
                candidates.append((0.0, None, window[0]))  # no success before: nothing lost
            else:
                candidates.append((0.0, last_ok, last_ok))
        _, first, second = max(candidates, key=lambda c: c[0])
        start = first if first is not None else t
        stop = second if second is not None else until
        failed = sum(
            1 for o in ops if not o.ok and o.completed is not None and start <= o.completed <= stop
        )
        attempted = sum(1 for o in ops if start <= o.invoked <= stop)
        out.append(Outage(_describe(fault), t, first, second, failed, attempted))
    return out


def check_availability(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    end_of_run: float | None = None,
    max_outage: float | None = None,
) -> CheckResult:
    """Outages around each fault; valid when every fault was recovered from within
    `max_outage` seconds (None: report only, valid unless the service never came back)."""
    ops = pair_ops(history)
    nemesis = list(nemesis)
    if not ops:
        return CheckResult("availability", None, "no operations in the history")
    end = end_of_run if end_of_run is not None else max(o.completed or o.invoked for o in ops)
    found = outages(ops, nemesis, end)
    ok = sum(1 for o in ops if o.ok)
    never = [x for x in found if x.first_ok_after is None]
    too_long = [
        x
        for x in found
        if max_outage is not None and x.seconds is not None and x.seconds > max_outage
    ]
    valid = not never and not too_long
    worst = max((x.seconds for x in found if x.seconds is not None), default=None)
    summary = f"{ok} of {len(ops)} operations ok; {len(found)} fault(s)"
    if worst is not None:
        summary += f", longest outage {worst:.2f}s"
    if never:
        summary += f"; NOT RECOVERED after {', '.join(x.fault for x in never)}"
    if too_long:
        summary += f"; {len(too_long)} outage(s) over {max_outage:g}s"
    return CheckResult(
        "availability",
        valid,
        summary,
        {
            "ops": len(ops),
            "ok": ok,
            "failed": sum(1 for o in ops if o.type == "fail"),
            "unknown": sum(1 for o in ops if o.type == "info"),
            "outages": [asdict(x) | {"seconds": x.seconds} for x in found],
        },
    )
