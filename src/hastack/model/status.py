"""What a node reports about its resources: the value of `<prefix>/status/<node>`.

Each agent's executor writes one JSON document for its node, replacing it whenever something
changes (an operation finished, a monitor failed, a fail count moved):

    {
      "node": "n1",
      "epoch": 42,                       the DC epoch of the target this node last accepted
      "updated": 1700000000.5,           wall clock, for display
      "resources": {
        "vip":      {"role": "Started"},
        "galera:0": {"role": "Promoted"},
        "web":      {"role": "Stopped", "failed": true, "fail-count": 1000000,
                     "last-failure": 1699999999.0,
                     "last-op": {"op": "start", "rc": 1, "reason": "exited with 1: ...",
                                 "at": 1699999999.0, "duration": 0.4}}
      }
    }

Readers (the DC's scheduler, the proxy, `hastack status`) decode it with `decode_status`;
a value that does not decode is a problem to report, never an exception.

Stored in parts (docs/control-plane.md, section 6, "Reports in parts"). Written whole, a
node's report costs its whole size at every change (15.5 KiB at 1,000 resources: every name
probed), for every node, at every configuration change. So the executor writes it as
`status/<node>`, the *head* (everything above but `resources`, `probed` and `unprobed`), and
up to `PARTS` keys `status/<node>/<part>`, each holding those three for the names that fall
into it (`part_of`: a hash of the primitive's name, so an instance and its primitive's probe
share a part; as many parts as there are `PER_PART` primitives named, in a power of two: few
keys for the DC to go through at a hundred nodes with a small configuration):

    status/n1      {"node": "n1", "epoch": 42, "working": ..., "attributes": {...}, ...}
    status/n1/3a   {"probed": ["vip", ...], "resources": {"vip": {"role": "Started"}}}

`split_status` cuts a report into those values, `assemble_status` puts it back together
(the report is the head with every part's names added; a name in two places is an error),
and `decode_status` still reads a whole document at `status/<node>` (a head with its own
`resources`), so a report written whole (older agents, the tests' fixtures) reads as before.
The head is written in every publish, in the same transaction as the parts that changed: its
mod_revision is the revision of the node's last report (ClusterSnapshot.status_revisions).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hastack.model.assign import AssignRole, decode_grants, encode_grants
from hastack.model.config import Role
from hastack.model.jsontext import json_object

__all__ = [
    "PARTS",
    "LastOp",
    "NodeReport",
    "PendingOp",
    "ResourceReport",
    "StatusPart",
    "assemble_status",
    "decode_status",
    "decode_status_keys",
    "decode_status_part",
    "part_count",
    "part_of",
    "split_status",
]

# How many parts a report is written in, at most. Each publish is one transaction of the head
# and at most one operation per part, plus the deletion of the parts of another count
# (after the number of primitives crossed a power of two: at most PARTS / 2 of them):
# etcd refuses a transaction of more than 128 operations (--max-txn-ops).
PARTS = 64
# Primitives per part, about: at 1,000 resources 32 parts of ~500 bytes.
PER_PART = 32


@dataclass(frozen=True, slots=True)
class LastOp:
    op: str  # start, stop, monitor, promote, demote, probe
    rc: int  # OCF exit code (0 success, 7 not running, 8 running promoted, ...)
    reason: str = ""
    at: float = 0.0
    duration: float = 0.0
    interval: float = 0.0

    def to_json(self) -> dict[str, Any]:
        # An empty reason and a zero interval (every start, stop and probe) are left out, as
        # the decoder assumes them: a node's report lists an operation for each instance it
        # runs, and is written whole at every change (docs/control-plane.md, section 6).
        out: dict[str, Any] = {"op": self.op, "rc": self.rc}
        if self.reason:
            out["reason"] = self.reason
        out["at"] = self.at
        out["duration"] = self.duration
        if self.interval:
            out["interval"] = self.interval
        return out


@dataclass(frozen=True, slots=True)
class PendingOp:
    """An operation under way on a node: what, since when (wall clock), and its timeout."""

    op: str
    since: float
    timeout: float

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "since": self.since, "timeout": self.timeout}


@dataclass(frozen=True, slots=True)
class ResourceReport:
    role: Role = Role.STOPPED
    failed: bool = False
    blocked: bool = False
    fail_count: int = 0
    last_failure: float | None = None
    last_op: LastOp | None = None
    # The operation that failed last: kept (for `hastack status`) until a cleanup.
    failed_op: LastOp | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role.value}
        if self.failed:
            out["failed"] = True
        if self.blocked:
            out["blocked"] = True
        if self.fail_count:
            out["fail-count"] = self.fail_count
        if self.last_failure is not None:
            out["last-failure"] = self.last_failure
        if self.last_op is not None:
            out["last-op"] = self.last_op.to_json()
        if self.failed_op is not None:
            out["failed-op"] = self.failed_op.to_json()
        return out


@dataclass(frozen=True, slots=True)
class NodeReport:
    node: str
    epoch: int = 0
    updated: float = 0.0
    resources: Mapping[str, ResourceReport] = field(default_factory=dict)
    # Transient node attributes published by resource agents (promotion scores
    # `master-<rsc>`), gone with the report.
    attributes: Mapping[str, str] = field(default_factory=dict)
    # Primitives this node has probed since its agent started: the DC starts a resource
    # nowhere until every online node has probed it (it might already run somewhere).
    probed: frozenset[str] = frozenset()
    # Primitives this node does not probe at all, by rule: resource-discovery `never` here,
    # or `exclusive` to other nodes (hastack.executor.transitions.unprobed). The DC waits
    # for no probe of them from this node.
    unprobed: frozenset[str] = frozenset()
    # The store revision of the last target whose work this node has finished (every step
    # done or failed). The DC releases nothing new until every online node has caught up,
    # so it never plans around an operation that may still be under way.
    acked: int = 0
    # Keys of the clone notifications this node has run, most recent last (bounded): the DC
    # counts a NOTIFY action done when its key is here.
    notified: tuple[str, ...] = ()
    # The store revision of the target this node accepted and is working on (in this life),
    # and the operations under way for it: the DC's deadline for a node is built from them
    # (docs/control-plane.md), `hastack status` shows them.
    working: int = 0
    pending: Mapping[str, PendingOp] = field(default_factory=dict)
    # Work assignment: the entities this node's instances were told to serve and confirmed,
    # name -> entity -> role (docs/assign.md). While a change is unconfirmed, both the old
    # and the new ones: the DC must assume the worst.
    served: Mapping[str, Mapping[str, AssignRole]] = field(default_factory=dict)
    # The revision of the last target this node refused (written under an older DC epoch
    # than one it has seen): it will never work on it, so the DC must not wait for it.
    refused: int = 0
    # Its agent has not yet probed the configuration in this life: the report does not yet
    # say what runs here (`pending` lists the probes under way), and the node does not count
    # as online until it has (ClusterSnapshot.has_reported).
    probing: bool = False

    def serves_any(self) -> bool:
        return any(self.served.values())

    def encode(self) -> bytes:
        """The whole report as one document (what `decode_status` reads)."""
        return _dumps(self._head(whole=True))

    def _head(self, *, whole: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "node": self.node,
            "epoch": self.epoch,
            "acked": self.acked,
            "working": self.working,
            "refused": self.refused,
            "pending": {k: v.to_json() for k, v in sorted(self.pending.items())},
            "notified": list(self.notified),
            "updated": self.updated,
            **({"probing": True} if self.probing else {}),
            "attributes": dict(sorted(self.attributes.items())),
        }
        if whole:
            doc["probed"] = sorted(self.probed)
            if self.unprobed:
                doc["unprobed"] = sorted(self.unprobed)
            doc["resources"] = {k: v.to_json() for k, v in sorted(self.resources.items())}
        served = encode_grants(self.served)
        if served:
            doc["served"] = served
        return doc

    def active(self) -> dict[str, Role]:
        """Instances running here (Started, Unpromoted or Promoted)."""
        return {k: v.role for k, v in self.resources.items() if v.role is not Role.STOPPED}


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class StatusPart:
    """What one key `status/<node>/<part>` holds: the per-name fields of some names."""

    resources: Mapping[str, ResourceReport] = field(default_factory=dict)
    probed: frozenset[str] = frozenset()
    unprobed: frozenset[str] = frozenset()

    def encode(self) -> bytes:
        doc: dict[str, Any] = {}
        if self.probed:
            doc["probed"] = sorted(self.probed)
        if self.unprobed:
            doc["unprobed"] = sorted(self.unprobed)
        if self.resources:
            doc["resources"] = {k: v.to_json() for k, v in sorted(self.resources.items())}
        return _dumps(doc)


def part_count(report: NodeReport) -> int:
    """How many parts `report` is written in: a power of two, one per PER_PART primitives
    it names (at least 1, at most PARTS)."""
    names = {n.partition(":")[0] for n in report.resources} | report.probed | report.unprobed
    count = 1
    while count < PARTS and count * PER_PART < len(names):
        count *= 2
    return count


def part_of(name: str, count: int = PARTS) -> str:
    """The part of `count` that a primitive's or instance's name is written in (a clone
    instance `web:2` with its primitive `web`): a stable hash, so every writer agrees.
    Readers take any part name: nothing but the writer depends on this."""
    return f"{zlib.crc32(name.partition(':')[0].encode()) % count:02x}"


def split_status(report: NodeReport) -> tuple[bytes, dict[str, bytes]]:
    """The report as its head's value and each non-empty part's (part name -> value)."""
    count = part_count(report)
    resources: dict[str, dict[str, ResourceReport]] = {}
    probed: dict[str, set[str]] = {}
    unprobed: dict[str, set[str]] = {}
    for name, item in report.resources.items():
        resources.setdefault(part_of(name, count), {})[name] = item
    for name in report.probed:
        probed.setdefault(part_of(name, count), set()).add(name)
    for name in report.unprobed:
        unprobed.setdefault(part_of(name, count), set()).add(name)
    parts = {
        part: StatusPart(
            resources.get(part, {}),
            frozenset(probed.get(part, ())),
            frozenset(unprobed.get(part, ())),
        ).encode()
        for part in sorted(set(resources) | set(probed) | set(unprobed))
    }
    return _dumps(report._head(whole=False)), parts


def assemble_status(head: NodeReport, parts: Mapping[str, StatusPart]) -> NodeReport:
    """The report of a head and its parts (part name -> part): the head's own names (a
    report written whole has them) and each part's. ValueError when a name is in two places
    (no writer does that: which one would be right?)."""
    if not parts:
        return head
    resources = dict(head.resources)
    probed, unprobed = set(head.probed), set(head.unprobed)
    for name, part in sorted(parts.items()):
        for kind, held, new in (
            ("resource", resources, part.resources),
            ("probed name", probed, part.probed),
            ("unprobed name", unprobed, part.unprobed),
        ):
            twice = sorted(set(new) & set(held))
            if twice:
                raise ValueError(f"part {name!r}: {kind} {twice[0]!r} is also elsewhere")
        resources.update(part.resources)
        probed |= part.probed
        unprobed |= part.unprobed
    return replace(
        head,
        resources=dict(sorted(resources.items())),
        probed=frozenset(probed),
        unprobed=frozenset(unprobed),
    )


class _Bad(ValueError):
    pass


def _number(data: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = data.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{name!r} must be a number, found {value!r}")
    return float(value)


def _role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise _Bad(f"unknown role {value!r}") from None


def _op(name: str, field: str, raw_op: object) -> LastOp | None:
    if raw_op is None:
        return None
    if not isinstance(raw_op, dict) or not isinstance(raw_op.get("op"), str):
        raise _Bad(f"resource {name!r}: {field!r} must be an object with 'op'")
    rc = raw_op.get("rc")
    if isinstance(rc, bool) or not isinstance(rc, int):
        raise _Bad(f"resource {name!r}: '{field}.rc' must be an integer")
    return LastOp(
        op=raw_op["op"],
        rc=rc,
        reason=str(raw_op.get("reason", "")),
        at=_number(raw_op, "at", 0.0) or 0.0,
        duration=_number(raw_op, "duration", 0.0) or 0.0,
        interval=_number(raw_op, "interval", 0.0) or 0.0,
    )


def _resource(name: str, data: object) -> ResourceReport:
    if not isinstance(data, dict):
        raise _Bad(f"resource {name!r}: expected an object")
    fail_count = data.get("fail-count", 0)
    if isinstance(fail_count, bool) or not isinstance(fail_count, int) or fail_count < 0:
        raise _Bad(f"resource {name!r}: 'fail-count' must be a non-negative integer")
    return ResourceReport(
        role=_role(data.get("role", "Stopped")),
        failed=bool(data.get("failed", False)),
        blocked=bool(data.get("blocked", False)),
        fail_count=fail_count,
        last_failure=_number(data, "last-failure", None),
        last_op=_op(name, "last-op", data.get("last-op")),
        failed_op=_op(name, "failed-op", data.get("failed-op")),
    )


def _pending(raw: object) -> dict[str, PendingOp]:
    if not isinstance(raw, dict):
        raise _Bad("'pending' must be an object")
    out = {}
    for name, item in raw.items():
        if not isinstance(item, dict) or not isinstance(item.get("op"), str):
            raise _Bad(f"pending {name!r}: must be an object with 'op'")
        out[str(name)] = PendingOp(
            item["op"], _number(item, "since", 0.0) or 0.0, _number(item, "timeout", 0.0) or 0.0
        )
    return out


def _integer(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{name!r} must be an integer")
    return value


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise _Bad(f"{name!r} must be true or false")
    return value


def _strings(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"{field!r} must be a list of strings")
    return tuple(value)


def _names(value: object, field: str) -> frozenset[str]:
    return frozenset(_strings(value, field))


def decode_status(node: str, raw: bytes) -> NodeReport:
    """Decode `status/<node>`; ValueError names what is wrong."""
    data = json_object(raw)
    if data.get("node", node) != node:
        raise ValueError(f"report names node {data.get('node')!r} but sits under {node!r}")
    resources = data.get("resources", {})
    if not isinstance(resources, dict):
        raise ValueError("'resources' must be an object")
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise ValueError("'attributes' must map strings to strings")
    try:
        epoch = data.get("epoch", 0)
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise _Bad("'epoch' must be an integer")
        return NodeReport(
            node=node,
            epoch=epoch,
            updated=_number(data, "updated", 0.0) or 0.0,
            resources={str(k): _resource(str(k), v) for k, v in resources.items()},
            attributes=attributes,
            probed=_names(data.get("probed", []), "probed"),
            unprobed=_names(data.get("unprobed", []), "unprobed"),
            acked=_integer(data, "acked"),
            notified=_strings(data.get("notified", []), "notified"),
            working=_integer(data, "working"),
            refused=_integer(data, "refused"),
            pending=_pending(data.get("pending", {})),
            served=decode_grants(data.get("served", {}), "served"),
            probing=_flag(data, "probing"),
        )
    except _Bad as exc:
        raise ValueError(str(exc)) from None


def decode_status_part(raw: bytes) -> StatusPart:
    """Decode `status/<node>/<part>`; ValueError names what is wrong."""
    data = json_object(raw)
    unknown = sorted(set(data) - {"resources", "probed", "unprobed"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (a part holds resources, probed, unprobed)")
    resources = data.get("resources", {})
    if not isinstance(resources, dict):
        raise ValueError("'resources' must be an object")
    try:
        return StatusPart(
            resources={str(k): _resource(str(k), v) for k, v in resources.items()},
            probed=_names(data.get("probed", []), "probed"),
            unprobed=_names(data.get("unprobed", []), "unprobed"),
        )
    except _Bad as exc:
        raise ValueError(str(exc)) from None


def decode_status_keys(node: str, head: bytes, parts: Mapping[str, bytes]) -> NodeReport:
    """A node's report from the values of `status/<node>` and of its parts (part name ->
    value); ValueError names the key that is wrong (`status/<node>/<part>: ...`)."""
    try:
        report = decode_status(node, head)
    except ValueError as exc:
        raise ValueError(f"status/{node}: {exc}") from None
    decoded = {}
    for name, raw in parts.items():
        try:
            decoded[name] = decode_status_part(raw)
        except ValueError as exc:
            raise ValueError(f"status/{node}/{name}: {exc}") from None
    try:
        return assemble_status(report, decoded)
    except ValueError as exc:
        raise ValueError(f"status/{node}: {exc}") from None
