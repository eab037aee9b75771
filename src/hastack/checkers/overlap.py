"""The exclusive-interval checker: was an exclusive resource (a VIP, a promoted role) ever
active on two nodes at once?

Agents record when each exclusive resource may have become active (`acquire`, before the
start) and when it certainly stopped (`release`, after the stop) in `exclusive.jsonl`
(`hastack.model.exclusivity`). A node that crashes never writes its release: the lab's
nemesis log knows when the host lost power, and that moment closes its intervals (`dead`).
The same check runs on the lab's own observation of where a VIP address was configured,
which does not depend on the agents' honesty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hastack.checkers.history import CheckResult
from hastack.model.exclusivity import find_overlaps, intervals_from_events

__all__ = ["check_exclusive", "dead_events"]

# Nemesis operations after which nothing on the host can be active: power is gone.
_DEATHS = ("crash",)


def dead_events(nemesis: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`dead` exclusivity events for every host the nemesis crashed, at the crash time."""
    return [
        {"node": str(e["host"]), "event": "dead", "wall": float(e["time"]), "source": "nemesis"}
        for e in nemesis
        if e.get("f") in _DEATHS and e.get("host")
    ]


def check_exclusive(
    events: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    end_of_run: float,
    name: str = "exclusive",
) -> CheckResult:
    records = list(events)
    if not any(e.get("event") in ("acquire", "release") for e in records):
        return CheckResult(
            name, None, "no exclusivity records (no exclusive resource ran, or nothing wrote them)"
        )
    all_events = records + dead_events(nemesis)
    intervals = intervals_from_events(all_events, end_of_run=end_of_run)
    overlaps = find_overlaps(intervals)
    resources = sorted({i.resource for i in intervals})
    summary = f"{len(intervals)} active interval(s) of {', '.join(resources)}: " + (
        f"{len(overlaps)} OVERLAP(S)" if overlaps else "never active on two nodes at once"
    )
    return CheckResult(
        name,
        not overlaps,
        summary,
        {
            "intervals": [
                {
                    "node": i.node,
                    "resource": i.resource,
                    "start": i.start,
                    "end": i.end,
                    "closed_by": i.closed_by,
                }
                for i in intervals
            ],
            "overlaps": [o.describe() for o in overlaps],
        },
    )
