"""Galera checkers over a lab run's records (pure: the records are passed in).

* **rejoin** — after each boot of a node in the nemesis log, and for the nodes cut off by a
  partition after its heal: how long until its Galera instance was Promoted and synced again
  (from the status timeline, counting only reports of the node's new life), and how its
  server got its state (the server's runs, `hastack.galera.serverlog`): by IST, or by a full
  SST, which means the node's own data went unused. Valid when every return was Promoted
  within `limit` and, with `want` IST, joined by IST (or bootstrapped).
* **recovery** — after the whole cluster lost power and booted: did it come back with no
  operator, bootstrapped from the node holding the highest of the positions the agents
  recovered after the boot (their own log lines, not the agents' decision), at that
  position's cluster UUID (so the others could join by IST), and writable within `limit` of
  the last boot? Rows lost on the way (from the set check) are reported with whether the
  bootstrap choice was right: a loss with the right choice is Galera's (the data was not on
  any node), with a wrong one it is hastack's.
* **bootstrap** — who formed the Primary after the boots, and when: `automatic` expects a
  bootstrap with no operator; `forced` expects none until the operator's `hastack galera
  bootstrap NODE --force` (the agents waiting for a node that may be ahead), then one on
  NODE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hastack.checkers.history import CheckResult
from hastack.galera.serverlog import Reported, ServerRun, Transfer

__all__ = ["check_bootstrap", "check_recovery", "check_rejoin", "promoted_since"]


def _is_instance(instance: str, resource: str) -> bool:
    return instance == resource or instance.startswith(resource + ":")


def promoted_since(
    statuses: Iterable[Mapping[str, Any]],
    node: str,
    resource: str,
    since: float,
    *,
    booted: bool = False,
) -> float | None:
    """When the status timeline first shows `resource` Promoted and serving on `node` after
    `since`, from reports of the node's present life (`node-online`): the instance not
    failed, and the node's `galera-<resource>-state` attribute synced (or donor) when the
    report carries it. `booted`: the node was powered on at `since`, and only an instance
    whose last operation (the promote) came after that counts — until the new agent writes
    its member key, the key of the life before the power loss is still there (its lease
    outlives it, renewed anew when etcd itself restarts) and with it that life's last
    report, Promoted."""
    for report in statuses:
        at = float(report.get("collected_at") or 0.0)
        if at <= since:
            continue
        attrs: Mapping[str, Any] = next(
            (n.get("attributes", {}) for n in report.get("nodes", []) if n.get("name") == node),
            {},
        )
        state = attrs.get(f"galera-{resource}-state")
        if state is not None and state not in ("synced", "donor"):
            continue
        for r in report.get("resources", []):
            if (
                r.get("node") == node
                and _is_instance(str(r.get("instance", "")), resource)
                and r.get("role") == "Promoted"
                and r.get("node-online")
                and not r.get("failed")
                and (not booted or float((r.get("last-op") or {}).get("at", 0.0)) > since)
            ):
                return at
    return None


def _returns(nemesis: Iterable[Mapping[str, Any]]) -> list[tuple[str, float, str]]:
    """(node, time, how) for every node that came back: booted (`start` of a powered-off
    host), or healed (a `heal` ending a partition in which it was outside the largest
    group)."""
    out: list[tuple[str, float, str]] = []
    minority: list[str] = []
    for e in sorted(nemesis, key=lambda e: float(e["time"])):
        if (
            e.get("f") == "start"
            and e.get("host")
            and any("booted" in d for d in e.get("done", []))
        ):
            out.append((str(e["host"]), float(e["time"]), "boot"))
        elif e.get("f") == "partition":
            groups = [list(g) for g in e.get("groups", [])]
            largest = max(groups, key=len, default=[])
            minority = [str(n) for g in groups if g is not largest for n in g]
        elif e.get("f") == "heal":
            out += [(n, float(e["time"]), "heal") for n in minority]
            minority = []
    return out


def _joined_by(node_runs: Sequence[ServerRun], at: float) -> str | None:
    """How the node got its state back after `at`: `bootstrap` (a new server run that formed
    the Primary), else the first transfer logged since (IST/SST), from a new run or from the
    running server rejoining by itself (the log's times have whole seconds: one of slack)."""
    for run in node_runs:
        if run.started is not None and run.started >= at and run.bootstrap:
            return "bootstrap"
        for when, kind in run.transfers:
            if when is not None and when >= at - 1.0:
                return kind.value
        if run.started is not None and run.started >= at and run.transfer is not None:
            return run.transfer.value
    return None


def check_rejoin(
    nemesis: Iterable[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
    runs: Mapping[str, Sequence[ServerRun]],
    *,
    resource: str,
    limit: float | None,
    want: Transfer | None = Transfer.IST,
) -> CheckResult:
    returns = _returns(nemesis)
    if not returns:
        return CheckResult("rejoin", None, "no node was booted or healed in this run")
    found: list[dict[str, Any]] = []
    bad: list[str] = []
    for node, at, how_back in returns:
        promoted = promoted_since(statuses, node, resource, at, booted=how_back == "boot")
        seconds = None if promoted is None else promoted - at
        how = _joined_by(runs.get(node, ()), at)
        found.append(
            {"node": node, "after": how_back, "at": at, "promoted_after": seconds,
             "joined_by": how}
        )  # fmt: skip
        if seconds is None:
            bad.append(f"{node} never Promoted and synced after its {how_back}")
        elif limit is not None and seconds > limit:
            bad.append(f"{node} Promoted {seconds:.1f}s after its {how_back} (limit {limit:g}s)")
        if want is not None and how not in (want.value, "bootstrap"):
            bad.append(f"{node} rejoined by {how or 'nothing the log shows'}, not {want.value}")
    parts = [
        f"{f['node']} Promoted "
        + ("never" if f["promoted_after"] is None else f"{f['promoted_after']:.1f}s")
        + f" after its {f['after']}, by {f['joined_by'] or '?'}"
        for f in found
    ]
    summary = "; ".join(parts) + (f" — {'; '.join(bad)}" if bad else "")
    return CheckResult("rejoin", not bad, summary, {"returns": found, "problems": bad})


def check_recovery(
    nemesis: Iterable[Mapping[str, Any]],
    runs: Mapping[str, Sequence[ServerRun]],
    reported: Sequence[Reported],
    first_write_after: Callable[[float], float | None],
    *,
    limit: float | None,
    lost: int = 0,
) -> CheckResult:
    """`first_write_after(t)`: when the first write acknowledged after t completed."""
    boots = [
        float(e["time"])
        for e in nemesis
        if e.get("f") == "start" and any("booted" in d for d in e.get("done", []))
    ]
    if not boots:
        return CheckResult("recovery", None, "no node was booted in this run")
    last_boot = max(boots)
    first_boot = min(boots)
    bootstraps = [
        (node, r)
        for node, node_runs in runs.items()
        for r in node_runs
        if r.bootstrap and r.started is not None and r.started >= first_boot
    ]
    problems: list[str] = []
    details: dict[str, Any] = {"last_boot": last_boot, "lost": lost}
    # The last position each node recovered after the boots and before the bootstrap.
    boot_at = min((r.started or 0.0 for _, r in bootstraps), default=float("inf"))
    latest: dict[str, Reported] = {}
    for p in reported:
        if first_boot <= p.at <= boot_at:
            latest[p.node] = p
    details["recovered"] = {
        n: f"{p.uuid}:{p.seqno} ({p.source})" for n, p in sorted(latest.items())
    }
    right: bool | None = None
    if not bootstraps:
        problems.append("no bootstrap after the boot")
    else:
        node, run = bootstraps[0]
        details["bootstrap"] = {"node": node, "at": run.started, "position": run.start_position}
        if len(bootstraps) > 1:
            problems.append(f"{len(bootstraps)} bootstraps after the boot (one expected)")
        known = [p for p in latest.values() if p.uuid is not None and p.seqno >= 0]
        best = max((p.seqno for p in known), default=None)
        chosen = latest.get(node)
        uuids = {str(p.uuid) for p in known}
        if best is None or chosen is None:
            problems.append("the recovered positions are not in the agents' logs")
        else:
            right = chosen.seqno == best
            details["right_choice"] = right
            if not right:
                ahead = [f"{p.node} {p.seqno}" for p in known if p.seqno > chosen.seqno]
                problems.append(
                    f"bootstrapped {node} at seqno {chosen.seqno} while {', '.join(ahead)} "
                    "was ahead"
                )
            if run.start_position != f"{chosen.uuid}:{chosen.seqno}":
                problems.append(
                    f"{node} started from {run.start_position}, not its recovered position "
                    f"{chosen.uuid}:{chosen.seqno}"
                )
            if len(uuids) > 1:
                problems.append(f"the nodes recovered different cluster UUIDs: {sorted(uuids)}")
    first = first_write_after(last_boot)
    writable = None if first is None else first - last_boot
    details["writable_after"] = writable
    if writable is None:
        problems.append("no write acknowledged after the last boot")
    elif limit is not None and writable > limit:
        problems.append(f"writable {writable:.1f}s after the last boot (limit {limit:g}s)")
    if lost:
        whose = (
            "with the right bootstrap choice: a Galera loss"
            if right
            else "with a wrong bootstrap choice: a hastack bug"
            if right is False
            else "(the bootstrap choice could not be judged)"
        )
        problems.append(f"{lost} acknowledged row(s) lost {whose}")
    chosen_text = (
        f"bootstrapped {details['bootstrap']['node']} at {details['bootstrap']['position']}"
        if "bootstrap" in details
        else "no bootstrap"
    )
    summary = (
        f"{chosen_text}"
        + (" (the highest recovered position)" if right else "")
        + (f", writable {writable:.1f}s after the last boot" if writable is not None else "")
        + (f" — {'; '.join(problems)}" if problems else "")
    )
    details["problems"] = problems
    return CheckResult("recovery", not problems, summary, details)


def check_bootstrap(
    nemesis: Iterable[Mapping[str, Any]],
    runs: Mapping[str, Sequence[ServerRun]],
    *,
    want: str,
) -> CheckResult:
    """`want`: automatic | forced (see the module's docstring)."""
    events = sorted(nemesis, key=lambda e: float(e["time"]))
    boots = [float(e["time"]) for e in events if e.get("f") == "start"
             and any("booted" in d for d in e.get("done", []))]  # fmt: skip
    if not boots:
        return CheckResult("bootstrap", None, "no node was booted in this run")
    since = min(boots)
    # The operator's `galera bootstrap NODE --force` as the lab logs it (its command line).
    forced = [
        (float(e["time"]), words[2])
        for e in events
        if e.get("f") == "operator"
        and (words := str(e.get("command", "")).split())[:2] == ["galera", "bootstrap"]
        and len(words) > 2
        and e.get("rc") == 0
        and float(e["time"]) >= since
    ]
    found = sorted(
        (r.started, node)
        for node, node_runs in runs.items()
        for r in node_runs
        if r.bootstrap and r.started is not None and r.started >= since
    )
    problems: list[str] = []
    if want == "forced":
        if not forced:
            problems.append("the operator's forced bootstrap did not succeed")
        else:
            at, node = forced[0]
            early = [f"{n} at +{t - since:.1f}s" for t, n in found if t < at]
            if early:
                problems.append(f"bootstrapped before the operator forced it: {', '.join(early)}")
            if not any(n == node and t >= at for t, n in found):
                problems.append(f"{node} did not bootstrap after the operator forced it")
    else:
        if forced:
            problems.append("an operator forced the bootstrap")
        if not found:
            problems.append("no automatic bootstrap after the boots")
    summary = (
        ", ".join(f"{n} bootstrapped {t - since:.1f}s after the first boot" for t, n in found)
        or "no bootstrap"
    )
    if forced:
        summary += f"; forced by the operator at +{forced[0][0] - since:.1f}s on {forced[0][1]}"
    if problems:
        summary += f" — {'; '.join(problems)}"
    return CheckResult(
        "bootstrap",
        not problems,
        summary,
        {"bootstraps": [{"node": n, "at": t} for t, n in found],
         "forced": [{"node": n, "at": t} for t, n in forced], "problems": problems},
    )  # fmt: skip
