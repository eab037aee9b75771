"""The exclusivity record and its checker: was an exclusive resource ever active on two nodes?

Every agent appends one JSON line per change to `exclusive.jsonl` in its state directory:

    {"node": "n1", "resource": "vip", "event": "acquire", "mono": 812.5, "wall": 1700000812.51,
     "offset": 1699999999.998, "offset_error": 0.0004}
    {"node": "n1", "resource": "vip", "event": "release", ...}

`acquire` is written *before* the start (or promote) is invoked — from then on the resource
may be active; `release` *after* the stop (or demote) succeeded. `mono` is the agent's
monotonic clock; `offset` maps it to wall time (wall = mono + offset), measured by reading
both clocks back to back, with `offset_error` the measurement's uncertainty (the time between
the two reads). A node that dies leaves an acquire without a release: the interval then ends
when the node was fenced or reset (`{"event": "dead", ...}` lines from the fencer or the
watchdog, in wall time), or at the end of the run.

`find_overlaps` is pure: give it every line of a run and it reports each pair of intervals of
one resource on two nodes that overlap by more than the clocks' combined uncertainty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hastack.model.jsontext import json_lines

__all__ = ["Interval", "Overlap", "find_overlaps", "intervals_from_events", "parse_events"]


@dataclass(frozen=True, slots=True)
class Interval:
    node: str
    resource: str
    start: float  # wall time
    end: float  # wall time (the end of the run for an interval still open)
    error: float  # uncertainty of the mapping to wall time
    closed_by: str  # release, dead, end-of-run


@dataclass(frozen=True, slots=True)
class Overlap:
    resource: str
    first: Interval
    second: Interval
    seconds: float

    def describe(self) -> str:
        a, b = self.first, self.second
        return (
            f"{self.resource} active on {a.node} [{a.start:.3f}, {a.end:.3f}] ({a.closed_by}) and "
            f"on {b.node} [{b.start:.3f}, {b.end:.3f}] ({b.closed_by}): "
            f"{self.seconds * 1000:.1f} ms"
        )


def parse_events(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Whole JSON lines; a torn or foreign line is skipped."""
    out = []
    for entry in json_lines(lines):
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("node"), str)
            and isinstance(entry.get("event"), str)
        ):
            out.append(entry)
    return out


def _wall(entry: Mapping[str, Any]) -> float:
    if "mono" in entry and "offset" in entry:
        return float(entry["mono"]) + float(entry["offset"])
    return float(entry["wall"])


def intervals_from_events(
    events: Iterable[Mapping[str, Any]], *, end_of_run: float
) -> list[Interval]:
    """Pair acquires with releases per (node, resource); `dead` closes everything open on a node."""
    ordered = sorted(events, key=_wall)
    open_: dict[tuple[str, str], tuple[float, float]] = {}
    out: list[Interval] = []
    for e in ordered:
        node, event = e["node"], e["event"]
        at = _wall(e)
        error = float(e.get("offset_error", 0.0))
        if event == "acquire":
            key = (node, str(e["resource"]))
            if key not in open_:
                open_[key] = (at, error)
        elif event == "release":
            key = (node, str(e["resource"]))
            if key in open_:
                start, err = open_.pop(key)
                out.append(Interval(node, key[1], start, at, max(err, error), "release"))
        elif event == "dead":
            for key in [k for k in open_ if k[0] == node]:
                start, err = open_.pop(key)
                out.append(Interval(node, key[1], start, at, max(err, error), "dead"))
    for (node, resource), (start, err) in open_.items():
        out.append(Interval(node, resource, start, end_of_run, err, "end-of-run"))
    return out


def find_overlaps(intervals: Iterable[Interval]) -> list[Overlap]:
    by_resource: dict[str, list[Interval]] = defaultdict(list)
    for interval in intervals:
        by_resource[interval.resource].append(interval)
    found = []
    for resource, items in sorted(by_resource.items()):
        items.sort(key=lambda i: i.start)
        for i, a in enumerate(items):
            for b in items[i + 1 :]:
                if b.start >= a.end:
                    break
                if a.node == b.node:
                    continue
                overlap = min(a.end, b.end) - b.start
                if overlap > a.error + b.error:
                    found.append(Overlap(resource, a, b, overlap))
    return found
