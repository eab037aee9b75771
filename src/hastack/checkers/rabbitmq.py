"""Checkers for RabbitMQ runs: publishing resumes quickly after a fault, and a node that boots
again rejoins with every quorum queue back at full size. Pure.

* `check_publish_resume` — for every fault, the longest gap between two confirmed publishes
  **of one producer** (the one whose broker died must find another within the bound; the
  others never stopped, and would hide it in a merged timeline).
* `check_rabbitmq_rejoin` — for every boot (`start` in the nemesis log), the time until the status
  timeline (`status.jsonl` lines carrying the RabbitMQ agents' reports) shows the booted
  node's broker running again and every quorum queue with `size` members, one of them on
  that node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hastack.checkers.availability import outages
from hastack.checkers.history import CheckResult, pair_ops

__all__ = ["check_publish_resume", "check_rabbitmq_rejoin", "check_rpc", "rejoin_times"]


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


def _rejoined(line: Mapping[str, Any], node: str | None, since: float, size: int) -> bool:
    """Does this status line show `node` (None: every node, after a heal) running again with
    no partition, and every quorum queue (as listed by a report written after `since`) with
    `size` members, one on `node`?"""
    for entry in line.get("rabbitmq") or []:
        reports = entry.get("reports") or {}
        fresh = {n: r for n, r in reports.items() if float(r.get("at", 0)) >= since}
        judged = [node] if node is not None else sorted(fresh)
        if node is None and len(fresh) < size:
            return False
        for n in judged:
            r = fresh.get(n)
            if not r or r.get("health") != "running":
                return False
            if (r.get("status") or {}).get("partitions"):
                return False
        listing = sorted((r for r in fresh.values() if r.get("queues")), key=lambda r: r["at"])
        if not listing:
            return False
        for q in listing[-1]["queues"]:
            if q.get("type") != "quorum":
                continue
            members = [_host(m) for m in q.get("members") or []]
            if len(members) < size or (node is not None and node not in members):
                return False
        return True
    return False


def rejoin_times(
    statuses: Iterable[Mapping[str, Any]], nemesis: Iterable[Mapping[str, Any]], *, size: int
) -> dict[str, float | None]:
    """`start NODE` (or `heal`) at time t -> seconds from t to the first status line that
    shows NODE (every node) rejoined (None: never within the run)."""
    lines = sorted(
        (s for s in statuses if "rabbitmq" in s), key=lambda s: float(s.get("collected_at", 0))
    )
    out: dict[str, float | None] = {}
    for e in nemesis:
        if e.get("f") == "start" and e.get("host"):
            node: str | None = str(e["host"])
        elif e.get("f") == "heal":
            node = None
        else:
            continue
        t = float(e["time"])
        found = next(
            (float(s["collected_at"]) for s in lines
             if float(s.get("collected_at", 0)) >= t and _rejoined(s, node, t, size)),
            None,
        )  # fmt: skip
        label = f"start {node}" if node else "heal"
        out[f"{label} at {t:.1f}"] = None if found is None else found - t
    return out


def check_rabbitmq_rejoin(
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


def check_rpc(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    max_timeouts: int | None = 1,
    recover_within: float | None = None,
) -> CheckResult:
    """oslo.messaging `call()`s through each fault: how many ended in MessagingTimeout (or any
    other error) from the fault until the first successful call after it, and how long after
    the fault calls succeeded again."""
    calls = sorted((o for o in pair_ops(history) if o.f == "call"), key=lambda o: o.invoked)
    faults = sorted(
        (e for e in nemesis if e.get("f") in ("crash", "kill", "partition", "pause")),
        key=lambda e: float(e["time"]),
    )
    if not calls:
        return CheckResult("rpc", None, "no call in the history")
    if not faults:
        failed = [o for o in calls if not o.ok]
        return CheckResult("rpc", not failed, f"{len(calls)} calls, {len(failed)} failed, no fault")
    per_fault: dict[str, dict[str, Any]] = {}
    bad = []
    for n, e in enumerate(faults):
        t = float(e["time"])
        until = float(faults[n + 1]["time"]) if n + 1 < len(faults) else float("inf")
        window = [o for o in calls if o.completed is not None and t <= o.completed < until]
        failures = [o for o in window if not o.ok]
        last_failure = max((o.completed or 0.0 for o in failures), default=t)
        first_ok = next((o for o in window if o.ok and (o.completed or 0.0) > last_failure), None)
        timeouts = sum(1 for o in failures if o.error == "MessagingTimeout")
        back = None if first_ok is None else (first_ok.completed or 0.0) - t
        label = f"{e.get('f')} {e.get('host') or ''}".strip() + f" at {t:.1f}"
        per_fault[label] = {"timeouts": timeouts, "errors": len(failures), "succeeded_after": back,
                            "kinds": sorted({str(o.error) for o in failures})}  # fmt: skip
        if (
            back is None
            or (max_timeouts is not None and timeouts > max_timeouts)
            or (recover_within is not None and back > recover_within)
        ):
            bad.append(label)
    ok = sum(1 for o in calls if o.ok)
    summary = f"{ok} of {len(calls)} calls ok; " + "; ".join(
        f"{k}: {v['timeouts']} MessagingTimeout, {v['errors']} error(s), calls ok again "
        + ("never" if v["succeeded_after"] is None else f"{v['succeeded_after']:.1f}s later")
        for k, v in per_fault.items()
    )
    return CheckResult("rpc", not bad, summary, {"faults": per_fault})
