"""The Heat-style jobs checker (docs/assign.md, acceptance H2): from the final state of
every job (the `heat-jobs` workload's last read) and the nemesis log —

* every job submitted ends DONE or FAILED (FAILED only with a reason); none is left PENDING
  or IN_PROGRESS (stuck);
* a job whose engine's node crashed while it was IN_PROGRESS is taken over — resumed to
  DONE by another engine, or marked FAILED — within the lock's TTL plus one check interval
  (plus `slack`: etcd expires a lease up to ~0.5 s late, and the engines poll) of the crash.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from hastack.checkers.history import CheckResult

__all__ = ["check_jobs"]


def check_jobs(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    lock_ttl: float,
    check_interval: float,
    slack: float = 1.0,
) -> CheckResult:
    entries = list(history)
    submitted = {e["value"] for e in entries if e.get("f") == "submit" and e.get("type") == "ok"}
    finals = [e for e in entries if e.get("f") == "final" and e.get("type") == "ok"]
    if not finals:
        return CheckResult("jobs", None, "no final read of the jobs")
    jobs = {str(j["id"]): j for j in finals[-1]["value"] if isinstance(j, dict) and "id" in j}
    crashes = {
        str(e["host"]): float(e["time"]) for e in nemesis if e.get("f") == "crash" and e.get("host")
    }
    problems: list[str] = []
    states: dict[str, int] = {}
    takeovers: list[dict[str, Any]] = []
    bound = lock_ttl + check_interval + slack
    for jid in sorted(submitted - set(jobs)):
        problems.append(f"{jid} was submitted but is not in the queue")
    for jid, job in sorted(jobs.items()):
        state = str(job.get("state"))
        states[state] = states.get(state, 0) + 1
        if state in ("PENDING", "IN_PROGRESS"):
            problems.append(f"{jid} stuck {state} (engine {job.get('engine')})")
        if state == "FAILED" and not job.get("reason"):
            problems.append(f"{jid} FAILED without a reason")
        owner = job.get("taken_over_from")
        if owner is not None:
            at = float(job.get("taken_over_at", 0.0))
            crashed = crashes.get(str(owner))
            latency = at - crashed if crashed is not None else None
            takeovers.append(
                {
                    "job": jid,
                    "from": owner,
                    "by": job.get("engine"),
                    "state": state,
                    "seconds": None if latency is None else round(latency, 3),
                }
            )
            if latency is not None and latency > bound:
                problems.append(
                    f"{jid} taken over from {owner} {latency:.2f}s after its crash "
                    f"(> lock TTL {lock_ttl:g}s + check {check_interval:g}s + {slack:g}s)"
                )
    latencies = [t["seconds"] for t in takeovers if t["seconds"] is not None]
    summary = f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    if latencies:
        summary += (
            f"; {len(takeovers)} taken over, median {statistics.median(latencies):.2f}s "
            f"max {max(latencies):.2f}s after the crash (bound {bound:g}s)"
        )
    if problems:
        summary += f"; {len(problems)} problem(s): {problems[0]}"
    details = {"states": states, "takeovers": takeovers, "problems": problems, "bound": bound}
    if crashes and not takeovers:
        # Nothing to judge about takeovers, but the end states still count.
        details["note"] = "no job was in progress on a crashed node"
    return CheckResult("jobs", not problems, summary, details)
