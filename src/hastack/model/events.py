"""The cluster's event history: what happened, one record per event, and how an event is
derived from what changed. Pure: no I/O (the store side is `hastack.store.history`).

Who writes what (docs/api.md §4): the DC what it sees change (members joining and leaving,
fencing records, its own election and transitions), each node its own failed actions and lost
memberships, the operations layer every operator's change with who made it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hastack.model.connectivity import connectivity_alerts, connectivity_events
from hastack.model.jsontext import json_object
from hastack.model.members import ClusterSnapshot
from hastack.model.ocf import OcfRc
from hastack.model.status import NodeReport

__all__ = [
    "ClusterEvent",
    "EventKind",
    "current_alerts",
    "decode_event",
    "failed_action_events",
    "kinds",
    "snapshot_events",
]


class EventKind(enum.StrEnum):
    ELECTION = "election"
    DEPOSED = "deposed"
    NODE = "node"
    TRANSITION = "transition"
    OVERDUE = "overdue"
    FENCING = "fencing"
    FAILED_ACTION = "failed-action"
    MEMBERSHIP = "membership"
    CONFIG = "config"
    REQUEST = "request"
    CONNECTIVITY = "connectivity"


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    kind: EventKind
    text: str  # one line for people
    at: float  # wall clock of the writer
    node: str  # who wrote it
    data: Mapping[str, Any] = field(default_factory=dict)
    # Filled when read back from the store: the key's create revision (the store's order).
    revision: int = 0

    def encode(self) -> bytes:
        return json.dumps(
            {
                "kind": self.kind.value,
                "text": self.text,
                "at": self.at,
                "node": self.node,
                "data": dict(self.data),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "text": self.text,
            "at": self.at,
            "node": self.node,
            "data": dict(self.data),
            "revision": self.revision,
        }


def decode_event(raw: bytes, revision: int) -> ClusterEvent:
    """One stored event; ValueError names what is wrong with it."""
    data = json_object(raw)
    try:
        kind = EventKind(str(data.get("kind")))
    except ValueError:
        raise ValueError(f"unknown event kind {data.get('kind')!r}") from None
    text, node, at = data.get("text"), data.get("node"), data.get("at")
    if not isinstance(text, str) or not isinstance(node, str):
        raise ValueError("an event needs a text and a node")
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError(f"field 'at' must be a number, found {at!r}")
    details = data.get("data", {})
    if not isinstance(details, dict):
        raise ValueError("field 'data' must be an object")
    return ClusterEvent(kind, text, float(at), node, details, revision)


def snapshot_events(
    before: ClusterSnapshot | None, after: ClusterSnapshot, *, writer: str, now: float
) -> list[ClusterEvent]:
    """What the DC records when its view changes from `before` to `after`: members that
    joined or left, new fencing records, nodes that lost or regained their ping targets and
    the alert when every node lost them (docs/connectivity.md). Nothing for the first view
    (`before` None): what happened before this DC was recorded by the one before it."""
    if before is None:
        return []
    out: list[ClusterEvent] = []
    for name in sorted(set(after.members) - set(before.members)):
        again = name in before.nodes
        text = f"{name} joined" + (" again" if again else " the cluster")
        out.append(
            ClusterEvent(
                EventKind.NODE, text, now, writer, {"node": name, "state": "online", "again": again}
            )
        )
    for name in sorted(set(before.members) - set(after.members)):
        fenced = after.fenced_since_join(name)
        why = "fenced" if fenced else "its lease ended (it left, or was lost)"
        out.append(
            ClusterEvent(
                EventKind.NODE, f"{name} went offline: {why}", now, writer,
                {"node": name, "state": "offline", "fenced": fenced},
            )
        )  # fmt: skip
    for name in sorted(after.fencing):
        history = after.fencing[name]
        seen = len(before.fencing.get(name, []))
        if after.fencing_revisions.get(name) == before.fencing_revisions.get(name):
            continue
        # A history rewritten shorter (it was unreadable and replaced): its last record is new.
        fresh = history[seen:] if len(history) > seen else history[-1:]
        for record in fresh:
            verdict = "succeeded" if record.succeeded else "FAILED"
            out.append(
                ClusterEvent(
                    EventKind.FENCING,
                    f"fencing ({record.action}) of {record.node} by {record.by} {verdict}: "
                    f"{record.reason}",
                    now,
                    writer,
                    {
                        "target": record.node,
                        "action": record.action,
                        "result": record.result,
                        "by": record.by,
                        "epoch": record.epoch,
                        "devices": list(record.devices),
                    },
                )
            )
    for change in connectivity_events(
        after.config, _online_attributes(before), _online_attributes(after)
    ):
        data: dict[str, Any] = {"attribute": change.attribute, "state": change.kind}
        if change.node is not None:
            data["node"] = change.node
        if change.values is not None:
            data["values"] = dict(change.values)
        if change.kind == "lost-everywhere":
            data["alert"] = True
        out.append(ClusterEvent(EventKind.CONNECTIVITY, change.text, now, writer, data))
    return out


def current_alerts(snapshot: ClusterSnapshot) -> list[str]:
    """The alerts that stand in this snapshot: each raised by the DC as an event marked
    `alert` when it began (`snapshot_events`), and standing until what caused it is over.
    Derived from the same view as the DC's events, so `hastack status` shows what the DC
    raised without reading the history. Today: every node lost its ping targets."""
    return connectivity_alerts(snapshot.config, _online_attributes(snapshot))


def _online_attributes(snapshot: ClusterSnapshot) -> dict[str, Mapping[str, str]]:
    """The transient attributes online nodes report (what the scheduler reads, too)."""
    return {n: snapshot.statuses[n].attributes for n in snapshot.members if n in snapshot.statuses}


def failed_action_events(
    node: str, before: NodeReport | None, after: NodeReport, *, now: float
) -> list[ClusterEvent]:
    """A node's new failed operations: each instance whose failed operation is new (another
    operation, or the same one failing again later) since the report it last published."""
    out = []
    for instance in sorted(after.resources):
        op = after.resources[instance].failed_op
        if op is None:
            continue
        old = before.resources.get(instance) if before is not None else None
        previous = old.failed_op if old is not None else None
        if previous is not None and (previous.op, previous.at) == (op.op, op.at):
            continue
        reason = f": {op.reason}" if op.reason else ""
        r = after.resources[instance]
        out.append(
            ClusterEvent(
                EventKind.FAILED_ACTION,
                f"{op.op} of {instance} on {node} failed: rc {op.rc} ({OcfRc.describe(op.rc)})"
                f"{reason}; fail count {r.fail_count}",
                now,
                node,
                {
                    "resource": instance,
                    "op": op.op,
                    "rc": op.rc,
                    "reason": op.reason,
                    "fail-count": r.fail_count,
                    "blocked": r.blocked,
                },
            )
        )
    return out


def kinds(values: Iterable[str]) -> set[EventKind]:
    """Event kinds by name; ValueError names an unknown one."""
    out = set()
    for value in values:
        try:
            out.add(EventKind(value))
        except ValueError:
            known = ", ".join(k.value for k in EventKind)
            raise ValueError(f"unknown event kind {value!r} (kinds: {known})") from None
    return out
