"""The polling checker (docs/assign.md, acceptance H1): Ceilometer-style pollers each poll
the resources they own once per interval, on the wall clock's multiples of it. From every
poll (resource, node, time) and the nemesis log: for each whole interval of the run, which
resources nobody polled (a gap) and which were polled by two or more pollers (a duplicate).

Gaps are allowed only in the intervals a crash excuses: from the interval it happens in,
for `excused` intervals (what the ownership mechanism needs to notice — for tooz its
membership timeout plus one interval). Duplicates are counted and shown; they pass.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hastack.checkers.history import CheckResult

__all__ = ["check_polls"]


def check_polls(
    polls: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    resources: Sequence[str],
    interval: float,
    start: float,
    end: float,
    excused: int,
    name: str = "polls",
) -> CheckResult:
    first = math.ceil(start / interval)
    last = math.floor(end / interval) - 1  # the last whole interval
    counts: Counter[tuple[int, str]] = Counter()
    for p in polls:
        t = float(p["time"])
        k = math.floor(t / interval)
        if first <= k <= last:
            counts[(k, str(p["poll"]))] += 1
    if last < first or not counts:
        return CheckResult(name, None, "no whole interval with polls")
    crash_intervals = [
        math.floor(float(e.get("time", 0.0)) / interval)
        for e in nemesis
        if e.get("f") in ("crash", "kill", "partition")
    ]
    allowed = {k for c in crash_intervals for k in range(c, c + excused + 1)}
    gaps: dict[int, list[str]] = {}
    duplicates: dict[int, int] = {}
    for k in range(first, last + 1):
        missing = [r for r in resources if counts[(k, r)] == 0]
        if missing:
            gaps[k] = missing
        extra = sum(max(0, counts[(k, r)] - 1) for r in resources)
        if extra:
            duplicates[k] = extra
    bad = {k: v for k, v in gaps.items() if k not in allowed}
    gap_intervals = sorted(gaps)
    details: dict[str, Any] = {
        "intervals": last - first + 1,
        "interval_seconds": interval,
        "excused_after_crash": excused,
        "gaps": {str(k - first): len(v) for k, v in sorted(gaps.items())},
        "gap_examples": {str(k - first): v[:5] for k, v in sorted(gaps.items())},
        "duplicates": {str(k - first): n for k, n in sorted(duplicates.items())},
        "missed_polls": sum(len(v) for v in gaps.values()),
        "duplicate_polls": sum(duplicates.values()),
        "crash_intervals": [k - first for k in crash_intervals],
    }
    summary = (
        f"{len(resources)} resources, {last - first + 1} intervals of {interval:g}s: "
        f"{details['missed_polls']} missed polls in {len(gap_intervals)} interval(s), "
        f"{details['duplicate_polls']} duplicate polls"
    )
    if bad:
        k = min(bad)
        summary += (
            f"; {len(bad)} interval(s) with gaps outside the {excused} excused after a crash "
            f"(interval {k - first}: {len(bad[k])} unpolled, e.g. {', '.join(bad[k][:3])})"
        )
    return CheckResult(name, not bad, summary, details)
