"""Did the cluster stay put through a fault it should have absorbed (docs/connectivity.md)?

* **steady** — from the first fault to the end of the run: every node online at the fault
  stays online in every status sample, no agent lost its membership or fenced itself, no
  node was powered off (fenced, or reset by its watchdog), and no resource instance moved
  or stopped (compared with the last sample before the fault).
* **no-fence** — the same without the moves: for a fault that should move a resource but
  cost nobody their membership.
* **alert** — the DC raised the connectivity alert (every node lost its ping targets).

Inputs are the run's records as parsed JSON: status samples (`hastack status --json` with
`collected_at`), the agents' own event lines (`t`, `event`, `node`), the power switch's
`dead` lines from the exclusivity records (`wall`), the nemesis log (`time`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hastack.checkers.history import CheckResult

__all__ = ["check_alert", "check_steady"]

LOST = ("membership-lost", "self-fenced", "self-fence-incomplete")


def _placement(sample: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(r["instance"]): str(r["node"])
        for r in sample.get("resources", [])
        if r.get("role") not in (None, "Stopped") and r.get("node")
    }


def _online(sample: Mapping[str, Any]) -> set[str]:
    return {str(n["name"]) for n in sample.get("nodes", []) if n.get("online")}


def check_steady(
    statuses: Sequence[Mapping[str, Any]],
    agent_events: Iterable[Mapping[str, Any]],
    deaths: Iterable[Mapping[str, Any]],
    nemesis: Sequence[Mapping[str, Any]],
    *,
    end_of_run: float,
    moves: bool = False,
    name: str | None = None,
) -> CheckResult:
    """`moves` False: resources must not move either (steady); True: only memberships and
    power are judged (no-fence)."""
    checker = name or ("no-fence" if moves else "steady")
    faults = [float(e["time"]) for e in nemesis if "time" in e]
    good = [s for s in statuses if not s.get("error") and "collected_at" in s]
    if not faults or not good:
        return CheckResult(checker, None, "no fault or no status sample to judge")
    start = min(faults)
    before = [s for s in good if float(s["collected_at"]) < start]
    after = [s for s in good if start <= float(s["collected_at"]) <= end_of_run]
    if not before or not after:
        return CheckResult(checker, None, "no status sample before or after the fault")
    baseline = before[-1]
    members = _online(baseline)
    where = _placement(baseline)
    problems: list[str] = []
    for s in after:
        at = float(s["collected_at"]) - start
        gone = sorted(members - _online(s))
        if gone:
            problems.append(f"+{at:.1f}s: {', '.join(gone)} not online")
        if not moves:
            now = _placement(s)
            for instance, node in sorted(where.items()):
                if now.get(instance) != node:
                    problems.append(
                        f"+{at:.1f}s: {instance} on {now.get(instance, 'no node')}, was on {node}"
                    )
    for e in agent_events:
        if e.get("event") in LOST and start <= float(e.get("t", 0)) <= end_of_run:
            problems.append(f"+{float(e['t']) - start:.1f}s: {e.get('node')} {e['event']}")
    for d in deaths:
        if d.get("event") == "dead" and start <= float(d.get("wall", 0)) <= end_of_run:
            by = f" by {d['by']}" if d.get("by") else ""
            problems.append(f"+{float(d['wall']) - start:.1f}s: {d.get('node')} powered off{by}")
    # One line per kind of problem at its first moment is enough to read; keep them all
    # in the details.
    first: dict[str, str] = {}
    for p in problems:
        first.setdefault(p.split(": ", 1)[1], p)
    judged = f"{len(after)} samples over {end_of_run - start:.0f}s, {len(members)} nodes"
    if problems:
        shown = "; ".join(list(first.values())[:4])
        return CheckResult(
            checker, False, f"{len(problems)} problem(s): {shown}", {"problems": problems}
        )
    what = "no membership lost, no fence" + ("" if moves else ", no move")
    return CheckResult(checker, True, f"{what} ({judged})", {"resources": sorted(where)})


def check_alert(
    agent_events: Iterable[Mapping[str, Any]], *, start: float, end_of_run: float
) -> CheckResult:
    """The connectivity alert was raised between `start` and the end of the run."""
    alerts = [
        e
        for e in agent_events
        if e.get("event") == "connectivity"
        and (e.get("data") or {}).get("alert")
        and start <= float(e.get("t", 0)) <= end_of_run
    ]
    if not alerts:
        return CheckResult("alert", False, "no connectivity alert was raised")
    first = alerts[0]
    return CheckResult(
        "alert",
        True,
        f"+{float(first['t']) - start:.1f}s by {first.get('node')}: {first.get('text')}",
        {"alerts": [a.get("text") for a in alerts]},
    )
