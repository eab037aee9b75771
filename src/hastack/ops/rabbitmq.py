"""`hastack rabbitmq status`: the RabbitMQ cluster as its nodes last reported it.

Read from etcd (the agents' records and reports, docs/rabbitmq.md), not from the brokers: it
works from any machine with the client configuration, and shows what each node saw and when.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from hastack.ops.cluster import Cluster
from hastack.rabbitmq import BrokerReport, MemberRecord, QueueInfo

__all__ = ["RabbitStatus", "rabbitmq_status", "render_rabbitmq_status"]


@dataclass
class RabbitStatus:
    resource: str
    founder: str | None = None
    members: dict[str, MemberRecord] = field(default_factory=dict)
    reports: dict[str, BrokerReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def queues(self) -> list[QueueInfo]:
        """The queues of the freshest report that lists any."""
        fresh = sorted(self.reports.values(), key=lambda r: r.at, reverse=True)
        return list(next((r.queues for r in fresh if r.queues), ()))

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "founder": self.founder,
            "members": {
                n: {"state": m.state, "at": m.at, "by": m.by} for n, m in self.members.items()
            },
            "reports": {n: json.loads(r.encode()) for n, r in self.reports.items()},
            "queues": [
                {
                    "name": q.name,
                    "vhost": q.vhost,
                    "type": q.type,
                    "members": list(q.members),
                    "leader": q.leader,
                    "online": list(q.online),
                }
                for q in self.queues()
            ],
            "problems": self.problems,
        }


async def rabbitmq_status(cluster: Cluster) -> list[RabbitStatus]:
    """One entry per hastack:rabbitmq resource that has records."""
    prefix = cluster.keys.prefix + "rabbitmq/"
    result = await cluster.store.get_prefix(prefix)
    out: dict[str, RabbitStatus] = {}
    for kv in result.kvs:
        rest = kv.key.removeprefix(prefix)
        resource, _, tail = rest.partition("/")
        entry = out.setdefault(resource, RabbitStatus(resource))
        try:
            if tail == "cluster":
                entry.founder = str(json.loads(kv.value)["founder"])
            elif tail.startswith("nodes/"):
                entry.members[tail.removeprefix("nodes/")] = MemberRecord.decode(kv.value)
            elif tail.startswith("report/"):
                entry.reports[tail.removeprefix("report/")] = BrokerReport.decode(kv.value)
        except (ValueError, KeyError, TypeError) as exc:
            entry.problems.append(f"{rest}: {exc}")
    return [out[k] for k in sorted(out)]


def render_rabbitmq_status(entries: list[RabbitStatus], now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not entries:
        return "no hastack:rabbitmq resource has reported yet"
    lines: list[str] = []
    for e in entries:
        lines.append(f"RabbitMQ {e.resource} (founded by {e.founder or '?'})")
        lines.append("  members:")
        for node in sorted(set(e.members) | set(e.reports)):
            m = e.members.get(node)
            r = e.reports.get(node)
            state = m.state + (f" by {m.by}" if m and m.state == "forgotten" else "") if m else "-"
            seen = ""
            if r is not None:
                age = max(0.0, now - r.at)
                seen = f"  {r.health}{': ' + r.reason if r.reason else ''} ({age:.0f}s ago)"
                if r.status is not None:
                    running = ", ".join(r.status.running_nodes)
                    seen += f"\n      sees running: {running or 'none'}"
                    if r.status.partitions:
                        seen += f"\n      PARTITIONED from: {', '.join(r.status.partitions)}"
            lines.append(f"    {node}: {state}{seen}")
        queues = e.queues()
        lines.append(f"  queues ({len(queues)}):" if queues else "  queues: none reported")
        for q in queues:
            members = ", ".join(q.members) or "-"
            lines.append(
                f"    {q.vhost}{q.name} [{q.type}] leader {q.leader or '-'}; members {members}"
            )
        lines += [f"  problem: {p}" for p in e.problems]
    return "\n".join(lines)
