"""`hastack status` as text, in the spirit of `pcs status` (the CLI and the lab print it)."""

from __future__ import annotations

import time

from hastack.ops.status import StatusReport

__all__ = ["render_text"]


def _ago(then: float | None, now: float) -> str:
    if not then:
        return ""
    seconds = max(0.0, now - then)
    if seconds < 120:
        return f", elected {seconds:.0f}s ago"
    return f", elected {seconds / 60:.0f}min ago"


def _bracket(names: list[str]) -> str:
    return "[ " + " ".join(names) + " ]" if names else "[ ]"


def render_text(report: StatusReport) -> str:
    out: list[str] = []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.collected_at))
    q = report.quorum
    out.append(f"Cluster name: {report.cluster}")
    if report.alerts:
        out.append("ALERTS:")
        out.extend(f"  * {alert}" for alert in report.alerts)
        out.append("")
    out.append("Cluster Summary:")
    if report.error is not None:
        out.append(f"  * Store: UNREACHABLE ({report.error})")
    elif report.dc_node is not None:
        out.append(
            f"  * Current DC: {report.dc_node} (epoch {report.dc_epoch}"
            f"{_ago(report.dc_since, report.collected_at)}) - partition "
            + ("with quorum" if q.is_quorate else "WITHOUT quorum")
        )
    else:
        out.append("  * Current DC: NONE")
    out.append(
        f"  * Quorum: {'yes' if q.is_quorate else 'NO'} - etcd {q.healthy} of {q.total} members "
        f"healthy, {q.needed} needed"
    )
    rev = f" (store revision {report.revision})" if report.revision is not None else ""
    out.append(f"  * Last updated: {stamp}{rev}")
    if report.error is None:
        online = [n for n in report.nodes if n.online]
        out.append(f"  * {len(report.nodes)} nodes known, {len(online)} online")
        out.append("")
        out.append("Node List:")
        plain = [n for n in report.nodes if not (n.online and (n.standby or n.maintenance))]
        for n in report.nodes:
            if n.online and n.maintenance:
                out.append(f"  * Node {n.name}: maintenance")
            elif n.online and n.standby:
                busy = " (with active resources)" if n.active else ""
                out.append(f"  * Node {n.name}: standby{busy}")
        full_on = [n.name for n in plain if n.online and n.kind == "full"]
        full_off = [n.name for n in plain if not n.online and n.kind == "full"]
        remote_on = [n.name for n in plain if n.online and n.kind == "remote"]
        remote_off = [n.name for n in plain if not n.online and n.kind == "remote"]
        out.append(f"  * Online: {_bracket(full_on)}")
        if full_off:
            out.append(f"  * OFFLINE: {_bracket(full_off)}")
        if remote_on or remote_off:
            out.append(f"  * RemoteOnline: {_bracket(remote_on)}")
        if remote_off:
            out.append(f"  * RemoteOFFLINE: {_bracket(remote_off)}")
        out.append("")
        out.append("Full List of Resources:")
        if report.resource_lines:
            out.extend(line[2:] for line in report.resource_lines)
        else:
            out.append("  * No resources")
        if report.assignment_lines:
            out.append("")
            out.append("Assignments:")
            out.extend(f"  {line}" for line in report.assignment_lines)
        attributed = [n for n in report.nodes if n.attributes or n.permanent]
        if attributed:
            out.append("")
            out.append("Node Attributes:")
            for n in attributed:
                out.append(f"  * Node: {n.name}:")
                width = max(len(k) for k in (*n.attributes, *n.permanent))
                for k, v in sorted(n.permanent.items()):
                    if k not in n.attributes:
                        out.append(f"    * {k:<{width}} : {v} (permanent)")
                for k, v in sorted(n.attributes.items()):
                    out.append(f"    * {k:<{width}} : {v}")
        if report.failed_actions:
            out.append("")
            out.append("Failed Resource Actions:")
            out.extend(f"  * {line}" for line in report.failed_actions)
        if report.stopped:
            out.append("")
            out.append("Not Running:")
            for rid, reasons in sorted(report.stopped.items()):
                out.append(f"  * {rid}: {'; '.join(reasons)}")
        if report.pending:
            out.append("")
            out.append("Pending Actions:")
            out.extend(f"  * {line}" for line in report.pending)
        if report.fail_counts:
            out.append("")
            out.append("Fail Counts:")
            out.extend(f"  * {line}" for line in report.fail_counts)
    out.append("")
    out.append("Store:")
    for e in report.store:
        if e.healthy:
            out.append(f"  * {e.endpoint}: healthy" + (", leader" if e.is_leader else ""))
        else:
            out.append(f"  * {e.endpoint}: UNHEALTHY ({e.error})")
    if report.problems:
        out.append("")
        out.append("Problems:")
        out.extend(f"  * {p}" for p in report.problems)
    return "\n".join(out)
