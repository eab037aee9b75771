"""What a RabbitMQ node says about its cluster and queues, parsed from `rabbitmqctl ...
--formatter json` or from the same JSON printed by the broker itself (through `erl_call`, no
CLI VM); and the records the agent keeps in etcd. Pure.

Parsers are total on what RabbitMQ 3.10 prints (checked against real output in
tests/golden/rabbitmq/) and raise ValueError on anything else, naming what was wrong.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "BrokerReport",
    "BrokerStatus",
    "MemberRecord",
    "QueueInfo",
    "host_of",
    "parse_cluster_status",
    "parse_node_status",
    "parse_queues",
    "tables_wait_since",
]


def host_of(erlang_node: str) -> str:
    """`rabbit@n1` -> `n1`: the hastack node a broker node belongs to (the host part)."""
    return erlang_node.partition("@")[2] or erlang_node


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """One node's view of the cluster (Erlang node names: `rabbit@n1`)."""

    node: str
    app_running: bool
    disc_nodes: tuple[str, ...] = ()
    running_nodes: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()  # nodes this one is partitioned from
    alarms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    vhost: str
    type: str  # quorum, classic, stream
    members: tuple[str, ...] = ()
    leader: str | None = None
    online: tuple[str, ...] = ()


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if value is None or value == "":
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a list of node names, found {value!r}")
    return tuple(value)


def parse_cluster_status(text: str, node: str, *, app_running: bool) -> BrokerStatus:
    """`rabbitmqctl -q cluster_status --formatter json` of `node`."""
    # The CLI may print other lines around the document (seen while a peer was dying): take
    # the first JSON object in the output.
    start = text.find("{")
    try:
        if start < 0:
            raise json.JSONDecodeError("no object", text, 0)
        data, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as exc:
        first = text.strip().splitlines()[:1]
        raise ValueError(f"cluster_status is not JSON ({exc}): {first}") from None
    if not isinstance(data, dict):
        raise ValueError("cluster_status must be a JSON object")
    partitions_raw = data.get("partitions", {}) or {}
    partitioned: set[str] = set()
    if isinstance(partitions_raw, dict):
        # {"rabbit@n1": ["rabbit@n2"]}: as seen by each running node.
        for seen_by, others in partitions_raw.items():
            if not isinstance(others, list):
                raise ValueError("'partitions' must map nodes to lists")
            if seen_by == node:
                partitioned.update(str(o) for o in others)
    else:
        raise ValueError(f"'partitions' must be an object, found {partitions_raw!r}")
    alarms = data.get("alarms", []) or []
    if not isinstance(alarms, list):
        raise ValueError("'alarms' must be a list")
    return BrokerStatus(
        node=node,
        app_running=app_running,
        disc_nodes=tuple(sorted(_strings(data, "disk_nodes"))),
        running_nodes=tuple(sorted(_strings(data, "running_nodes"))),
        partitions=tuple(sorted(partitioned)),
        alarms=tuple(json.dumps(a, sort_keys=True) for a in alarms),
    )


def parse_node_status(text: str, node: str, *, serves: bool) -> BrokerStatus:
    """The agent's own status document, printed by the broker itself through `erl_call`
    (hastack.executor.agents.rabbitmq.STATUS_ERL): the keys of `cluster_status
    --formatter json` that matter here, plus `app_running` (the rabbit application runs).
    `serves`: the node answered an AMQP handshake, which says the application runs whatever
    the document does. Partitions are the node's own view only."""
    status = parse_cluster_status(text, node, app_running=serves)
    data, _ = json.JSONDecoder().raw_decode(text, text.find("{"))
    running = data.get("app_running")
    if not isinstance(running, bool):
        raise ValueError(f"'app_running' must be true or false, found {running!r}")
    if data.get("node") != node:
        raise ValueError(f"the status is {data.get('node')!r}'s, not {node!r}'s")
    return BrokerStatus(
        node=status.node,
        app_running=serves or running,
        disc_nodes=status.disc_nodes,
        running_nodes=status.running_nodes,
        partitions=status.partitions,
        alarms=status.alarms,
    )


def parse_queues(text: str, *, vhost: str = "/") -> list[QueueInfo]:
    """`rabbitmqctl -q list_queues -p VHOST name type members leader online --formatter json`
    (3.10 has no vhost column: one call per vhost)."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ValueError(f"list_queues is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError("list_queues must be a JSON list")
    out = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"a queue must be an object with a name, found {item!r}")
        leader = item.get("leader")
        out.append(
            QueueInfo(
                name=item["name"],
                vhost=str(item.get("vhost", vhost)),
                type=str(item.get("type", "classic")),
                members=tuple(sorted(_strings(item, "members"))),
                leader=leader if isinstance(leader, str) and leader else None,
                online=tuple(sorted(_strings(item, "online"))),
            )
        )
    return sorted(out, key=lambda q: (q.vhost, q.name))


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """`rabbitmq/<rsc>/nodes/<node>`: joined, or forgotten (by whom)."""

    state: str  # joined, forgotten
    at: float
    by: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def decode(raw: bytes) -> MemberRecord:
        try:
            data = json.loads(raw)
            record = MemberRecord(str(data["state"]), float(data["at"]), str(data.get("by", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a member record: {exc}") from None
        if record.state not in ("joined", "forgotten"):
            raise ValueError(f"unknown member state {record.state!r}")
        return record


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


# The broker's console (3.10): each line starts with its time, e.g.
# `2026-12-07 07:00:08.469828+00:00 [info] <0.223.0> Waiting for Mnesia tables for 30000 ms`.
_BANNER = "Starting broker"
_WAITING = "Waiting for Mnesia tables"
_SYNCED = "Successfully synced tables"
_BOOTED = "Server startup complete"
_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?)")


def tables_wait_since(console: str) -> float | None:
    """Since when (a POSIX time, from the console's own stamps) the broker's current boot has
    waited for its peers' Mnesia tables: the first "Waiting for Mnesia tables" line after the
    last boot banner and after the last "Successfully synced tables" — None when the boot is
    not waiting (not begun, synced, finished) or the line has no readable time."""
    boot = console.rfind(_BANNER)
    if boot < 0:
        return None
    tail = console[boot:]
    if _BOOTED in tail:
        return None
    synced = tail.rfind(_SYNCED)
    at = tail.find(_WAITING, max(0, synced))
    if at < 0:
        return None
    line_start = tail.rfind("\n", 0, at) + 1
    found = _STAMP.search(tail[line_start:at])
    if found is None:
        return None
    stamp = found.group(1).replace("Z", "+00:00")
    try:
        when = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class BrokerReport:
    """`rabbitmq/<rsc>/report/<node>`: what the node's monitor last saw."""

    node: str
    at: float
    health: str
    reason: str = ""
    status: BrokerStatus | None = None
    queues: Sequence[QueueInfo] = field(default_factory=tuple)
    # The last time a monitor saw this broker serve (carried from report to report), and
    # since when its boot waits for its peers' Mnesia tables (its console's clock): what
    # `decide_force_boot` compares.
    served_at: float | None = None
    waiting_since: float | None = None

    def encode(self) -> bytes:
        return json.dumps(
            {
                "node": self.node,
                "at": self.at,
                "health": self.health,
                "reason": self.reason,
                "status": asdict(self.status) if self.status else None,
                "queues": [asdict(q) for q in self.queues],
                "served_at": self.served_at,
                "waiting_since": self.waiting_since,
            },
            sort_keys=True,
        ).encode()

    @staticmethod
    def decode(raw: bytes) -> BrokerReport:
        try:
            data = json.loads(raw)
            status = data.get("status")
            return BrokerReport(
                node=str(data["node"]),
                at=float(data["at"]),
                health=str(data["health"]),
                reason=str(data.get("reason", "")),
                status=None
                if status is None
                else BrokerStatus(
                    node=str(status["node"]),
                    app_running=bool(status["app_running"]),
                    disc_nodes=tuple(status.get("disc_nodes", ())),
                    running_nodes=tuple(status.get("running_nodes", ())),
                    partitions=tuple(status.get("partitions", ())),
                    alarms=tuple(status.get("alarms", ())),
                ),
                queues=tuple(
                    QueueInfo(
                        name=str(q["name"]),
                        vhost=str(q.get("vhost", "/")),
                        type=str(q.get("type", "classic")),
                        members=tuple(q.get("members", ())),
                        leader=q.get("leader"),
                        online=tuple(q.get("online", ())),
                    )
                    for q in data.get("queues", [])
                ),
                served_at=_time(data.get("served_at")),
                waiting_since=_time(data.get("waiting_since")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a broker report: {exc}") from None
