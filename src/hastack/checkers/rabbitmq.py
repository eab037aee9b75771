"""Checkers for RabbitMQ runs: publishing resumes quickly after a fault, and a node that boots
again rejoins with every quorum queue back at full size. Pure.

* `check_publish_resume` — for every fault, the longest gap between two confirmed publishes
  **of one producer** (the one whose broker died must find another within the bound; the
  others never stopped, and would hide it in a merged timeline).
* `check_rejoin` — for every boot (`start` in the nemesis log), the time until the status
  timeline (`status.jsonl` lines carrying the RabbitMQ agents' reports) shows the booted
  node's broker running again and every quorum queue with `size` members, one of them on
  that node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hastack.checkers.availability import outages
from hastack.checkers.history import CheckResult, pair_ops

__all__ = ["check_publish_resume", "check_rejoin", "rejoin_times"]


def check_publish_resume(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    end_of_run: float,
    max_outage: float | None,
) -> CheckResult:
    ops = [o for o in pair_ops(history) if o.f == "enqueue"]
    faults = list(nemesis)
    if not ops:
        return CheckResult("publish-resume", None, "no enqueue in the history")
    worst: dict[str, tuple[float, str]] = {}
    never: list[str] = []
    for process in sorted({o.process for o in ops}):
        mine = [o for o in ops if o.process == process]
        for outage in outages(mine, faults, end_of_run):
            if outage.first_ok_after is None:
                never.append(f"{process} after {outage.fault}")
                continue
            seconds = outage.seconds or 0.0
            if seconds > worst.get(outage.fault, (-1.0, ""))[0]:
                worst[outage.fault] = (seconds, process)
    if not worst and not never:
        return CheckResult("publish-resume", None, "no fault in the run")
    longest = max((s for s, _ in worst.values()), default=0.0)
    too_long = max_outage is not None and longest > max_outage
    valid = not never and not too_long
    parts = [f"{fault}: {s:.2f}s ({p})" for fault, (s, p) in sorted(worst.items())]
    summary = "longest gap between one producer's confirms: " + "; ".join(parts)
    if never:
        summary += f"; NEVER RESUMED: {', '.join(never)}"
    if too_long:
        summary += f"; over {max_outage:g}s"
    return CheckResult(
        "publish-resume",
        valid,
        summary,
        {"worst": {f: {"seconds": s, "process": p} for f, (s, p) in worst.items()},
         "never": never},
    )  # fmt: skip


def _host(erlang: str) -> str:
    return erlang.partition("@")[2] or erlang


def _rejoined(line: Mapping[str, Any], node: str, since: float, size: int) -> bool:
    """Does this status line show `node` running again, and every quorum queue (as listed by
    a report written after `since`) with `size` members, one on `node`?"""
    for entry in line.get("rabbitmq") or []:
        reports = entry.get("reports") or {}
        mine = reports.get(node)
        if not mine or mine.get("health") != "running" or float(mine.get("at", 0)) < since:
            return False
        fresh = sorted(
            (r for r in reports.values() if float(r.get("at", 0)) >= since and r.get("queues")),
            key=lambda r: float(r["at"]),
        )
        if not fresh:
            return False
        for q in fresh[-1]["queues"]:
            if q.get("type") != "quorum":
                continue
            members = [_host(m) for m in q.get("members") or []]
            if len(members) < size or node not in members:
                return False
        return True
    return False


def rejoin_times(
    statuses: Iterable[Mapping[str, Any]], nemesis: Iterable[Mapping[str, Any]], *, size: int
) -> dict[str, float | None]:
    """`start NODE` at time t -> seconds from t to the first status line that shows NODE
    rejoined (None: never within the run)."""
    lines = sorted(
        (s for s in statuses if "rabbitmq" in s), key=lambda s: float(s.get("collected_at", 0))
    )
    out: dict[str, float | None] = {}
    for e in nemesis:
        if e.get("f") != "start" or not e.get("host"):
            continue
        node, t = str(e["host"]), float(e["time"])
        found = next(
            (float(s["collected_at"]) for s in lines
             if float(s.get("collected_at", 0)) >= t and _rejoined(s, node, t, size)),
            None,
        )  # fmt: skip
        out[f"start {node} at {t:.1f}"] = None if found is None else found - t
    return out


def check_rejoin(
    statuses: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    size: int = 3,
    within: float | None = None,
) -> CheckResult:
    times = rejoin_times(statuses, nemesis, size=size)
    if not times:
        return CheckResult("rabbitmq-rejoin", None, "no node was booted in the run")
    never = [k for k, v in times.items() if v is None]
    slow = [k for k, v in times.items() if v is not None and within is not None and v > within]
    valid = not never and not slow
    parts = [f"{k}: {'never' if v is None else f'{v:.1f}s'}" for k, v in times.items()]
    summary = f"rejoined with every quorum queue at {size} members: " + "; ".join(parts)
    if slow:
        summary += f"; over {within:g}s"
    return CheckResult("rabbitmq-rejoin", valid, summary, {"times": times})
