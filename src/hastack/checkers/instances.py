"""Checkers for instance HA (docs/compute.md, section 3): from the instances' logs (each line
`HOST SEQ WALLTIME`, appended by the instance while it runs), the time the failed host was
powered off (its fence), and the fake Nova's event log.

    check_instances(logs, host=, fault_at=, fenced_at=, evacuable=, within=, nova_events=)

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hastack.checkers.history import CheckResult

__all__ = ["LogLine", "check_instances", "parse_log"]


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
    on_host = {name for name, lines in logs.items() if lines and lines[0].host == host}
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
        + ("; " + "; ".join(f"{k}: {v[0]}" for k, v in bad.items()) if bad else "")
    )  # fmt: skip
    return CheckResult(
        "instances",
        not bad,
        summary,
        {"problems": problems, "moved_after_fence": after_fence, "enabled": bool(enabled)},
    )
