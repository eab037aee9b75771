"""Checkers for instance HA (docs/compute.md, section 3): from the instances' logs (each line
`HOST SEQ WALLTIME`, appended by the instance while it runs), the time the failed host was
powered off (its fence), and the fake Nova's event log.

    check_instances(logs, host=, fault_at=, fenced_at=, evacuable=, within=, nova_events=)
    check_in_place(logs, host=, service=, killed=, restarts=, fenced=, nova_events=)

Four verdicts in one result, each a list of violations:

* fenced-first: no instance of the failed host writes on another host before the fence;
* no-interleave: in every log, once a later host writes, an earlier one never writes again
  (two copies at once, or an old copy coming back, both break it);
* in-time: every evacuable instance of the host writes elsewhere within `within` of the
  fence, and every other instance of the host writes nothing after the host was powered off
  (the fence; the fault when there was none): a host cut off runs its instances until its
  fence, a crashed one stops them at the crash;
* enabled-after-done: the host's service is enabled again only after every evacuated
  instance was reported active on its new host (and not at all if one never was).

`check_in_place` judges the other case, a host whose compute service was killed (K3): the kill
hit a process, the service was started again on that same host after it, the host was never
fenced, Nova was never asked to force down or disable a service nor to evacuate an instance,
and the host's instances only ever wrote there, and wrote after the kill.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hastack.checkers.history import CheckResult

__all__ = ["LogLine", "check_in_place", "check_instances", "parse_log"]


@dataclass(frozen=True, slots=True)
class LogLine:
    host: str
    seq: int
    wall: float


def parse_log(lines: Iterable[str]) -> list[LogLine]:
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue  # a line cut by a power-off
        try:
            out.append(LogLine(parts[0], int(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return out


def _interleaving(lines: Sequence[LogLine]) -> str | None:
    finished: set[str] = set()
    current: str | None = None
    for line in lines:
        if line.host == current:
            continue
        if line.host in finished:
            return f"{line.host} wrote again at {line.wall:.3f} after {current} took over"
        if current is not None:
            finished.add(current)
        current = line.host
    return None


def _verdict(summary: str, bad: Mapping[str, list[str]], details: dict[str, Any]) -> CheckResult:
    """Valid when nothing is bad; the first problem of each kind said after the summary."""
    said = "; ".join(f"{k}: {v[0]}" for k, v in bad.items())
    return CheckResult("instances", not bad, summary + (f"; {said}" if said else ""), details)


def _started_on(logs: Mapping[str, Sequence[LogLine]], host: str) -> set[str]:
    """The instances whose first log line was written on `host`."""
    return {name for name, lines in logs.items() if lines and lines[0].host == host}


def check_instances(
    logs: Mapping[str, Sequence[LogLine]],
    *,
    host: str,
    fault_at: float,
    fenced_at: float | None,
    evacuable: Iterable[str],
    within: float = 10.0,
    nova_events: Sequence[Mapping[str, Any]] = (),
) -> CheckResult:
    """`logs` by instance name; `evacuable`: the names of the instances marked evacuable."""
    evacuable = set(evacuable)
    on_host = _started_on(logs, host)
    if not on_host:
        return CheckResult("instances", None, f"no instance ran on {host}")
    problems: dict[str, list[str]] = {
        "fenced-first": [],
        "no-interleave": [],
        "in-time": [],
        "enabled-after-done": [],
    }
    moved_at: dict[str, float] = {}
    for name, lines in sorted(logs.items()):
        why = _interleaving(lines)
        if why:
            problems["no-interleave"].append(f"{name}: {why}")
        if name not in on_host:
            continue
        elsewhere = next((x for x in lines if x.host != host), None)
        if elsewhere is not None:
            moved_at[name] = elsewhere.wall
            if fenced_at is None or elsewhere.wall <= fenced_at:
                problems["fenced-first"].append(
                    f"{name} ran on {elsewhere.host} at {elsewhere.wall:.3f}, "
                    + ("and the host was never fenced" if fenced_at is None else
                       f"{fenced_at - elsewhere.wall:.3f}s before {host}'s fence")
                )  # fmt: skip
        if name in evacuable:
            if elsewhere is None:
                problems["in-time"].append(f"{name} (evacuable) never ran elsewhere")
            elif fenced_at is not None and elsewhere.wall > fenced_at + within:
                problems["in-time"].append(
                    f"{name} ran elsewhere {elsewhere.wall - fenced_at:.1f}s after the fence "
                    f"(allowed {within:g}s)"
                )
        else:
            off = fault_at if fenced_at is None else fenced_at
            late = [x for x in lines if x.wall > off + 0.5]  # a line in flight may land
            if late:
                problems["in-time"].append(
                    f"{name} (not evacuable) ran on {late[0].host} at {late[0].wall:.3f}, "
                    + ("after the fault" if fenced_at is None else
                       f"{late[0].wall - fenced_at:.1f}s after {host}'s fence")
                )  # fmt: skip
    enabled = [e for e in nova_events if e.get("event") == "enable" and e.get("host") == host]
    active = {str(e.get("name")): float(e["t"]) for e in nova_events if e.get("event") == "active"}
    for e in enabled:
        early = [n for n in sorted(evacuable & on_host) if active.get(n, float("inf")) > e["t"]]
        if early:
            problems["enabled-after-done"].append(
                f"{host} enabled at {e['t']:.3f} before {', '.join(early)} ran elsewhere"
            )
    bad = {k: v for k, v in problems.items() if v}
    after_fence = {n: round(t - fenced_at, 2) for n, t in moved_at.items()} if fenced_at else {}
    summary = (
        f"{len(on_host)} instance(s) on {host}, {len(evacuable & on_host)} evacuable; "
        + (f"ran elsewhere {min(after_fence.values()):.1f}-{max(after_fence.values()):.1f}s "
           "after the fence" if after_fence else "none ran elsewhere")
        + (f"; {host} enabled again" if enabled else "")
    )  # fmt: skip
    return _verdict(
        summary,
        bad,
        {"problems": problems, "moved_after_fence": after_fence, "enabled": bool(enabled)},
    )


def check_in_place(
    logs: Mapping[str, Sequence[LogLine]],
    *,
    host: str,
    service: str,
    killed: Sequence[Mapping[str, Any]],
    restarts: Sequence[Mapping[str, Any]],
    fenced: Sequence[float],
    nova_events: Sequence[Mapping[str, Any]] = (),
) -> CheckResult:
    """`killed`: the nemesis' kill events of `service` on `host` (`time`, `pids`);
    `restarts`: the host's agent operation events (`op`, `rc`, `resource`, `t`); `fenced`:
    the host's fences after the fault."""
    on_host = _started_on(logs, host)
    if not on_host:
        return CheckResult("instances", None, f"no instance ran on {host}")
    checks = ("killed", "restarted-in-place", "no-fence", "no-evacuation", "stayed")
    problems: dict[str, list[str]] = {check: [] for check in checks}
    hits = [k for k in killed if k.get("pids")]
    if not hits:
        problems["killed"].append(f"no process of {service} on {host} was killed")
    killed_at = min((float(k["time"]) for k in hits), default=None)
    started = sorted(
        float(e["t"])
        for e in restarts
        if e.get("op") == "start"
        and e.get("rc") == 0
        and str(e.get("resource", "")).split(":")[0] == service
        and killed_at is not None
        and float(e["t"]) > killed_at
    )
    if killed_at is not None and not started:
        problems["restarted-in-place"].append(f"{service} was not started again on {host}")
    if fenced:
        problems["no-fence"].append(f"{host} fenced at {min(fenced):.3f}")
    changes = [e for e in nova_events if e.get("event") in ("evacuate", "force-down", "disable")]
    if changes:
        problems["no-evacuation"].append(
            f"Nova: {changes[0]['event']} at {float(changes[0]['t']):.3f}"
            + (f" (and {len(changes) - 1} more)" if len(changes) > 1 else "")
        )
    for name in sorted(on_host):
        away = next((x for x in logs[name] if x.host != host), None)
        if away is not None:
            problems["stayed"].append(f"{name} ran on {away.host} at {away.wall:.3f}")
        elif killed_at is not None and logs[name][-1].wall <= killed_at:
            problems["stayed"].append(f"{name} wrote nothing after the kill")
    gaps = [
        max((b.wall - a.wall for a, b in itertools.pairwise(x)), default=0.0) for x in logs.values()
    ]
    restart = started[0] - killed_at if started and killed_at is not None else None
    bad = {k: v for k, v in problems.items() if v}
    summary = (
        f"{len(on_host)} instance(s) on {host}; "
        + (f"{service} started again there {restart:.2f}s after the kill; "
           if restart is not None else "")
        + ("fenced; " if fenced else "no fence; ")
        + (f"{len(changes)} Nova change(s); " if changes else "no evacuation; ")
        + f"longest gap in any log {max(gaps, default=0.0):.2f}s"
    )  # fmt: skip
    return _verdict(
        summary, bad, {"problems": problems, "restarted_after": restart, "fenced": list(fenced)}
    )
