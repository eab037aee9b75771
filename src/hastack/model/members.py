"""What the store says about nodes: membership records, the DC record, and one snapshot.

Decoding is pure and total: a value that does not decode becomes a problem in the snapshot
(reported by whoever reads it), never an exception that stops an agent.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hastack.model.assign import (
    AssignmentRecord,
    RebalanceRequest,
    decode_assignment,
    decode_rebalance_request,
)
from hastack.model.base import is_valid_name
from hastack.model.config import ClusterConfig
from hastack.model.config_text import config_from_json
from hastack.model.fencing import FenceRecord, decode_history
from hastack.model.jsontext import json_object
from hastack.model.status import (
    NodeReport,
    StatusPart,
    assemble_status,
    decode_status,
    decode_status_part,
)
from hastack.model.targets import NodeTarget, decode_target

__all__ = [
    "ClusterSnapshot",
    "DcRecord",
    "MemberRecord",
    "NodeKind",
    "NodeRecord",
    "SnapshotDecoder",
    "StoredKey",
    "decode_snapshot",
]


class NodeKind(enum.StrEnum):
    FULL = "full"  # a controller: may be DC, runs any resource
    REMOTE = "remote"  # a compute host, like pacemaker_remote: never DC


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key as read from the store, relative to the cluster prefix (`members/n1`)."""

    name: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node that has joined at least once; stays after it goes offline."""

    name: str
    kind: NodeKind
    addresses: tuple[str, ...] = ()
    revision: int = 0  # mod_revision of the key: rewritten each time the node (re)joins

    def encode(self) -> bytes:
        return _dump(
            {"name": self.name, "kind": self.kind.value, "addresses": list(self.addresses)}
        )


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """An online node: written on the node's lease, so it vanishes when the lease expires."""

    name: str
    kind: NodeKind
    addresses: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    joined_at: float = 0.0  # wall clock, for display only
    agent_pid: int = 0
    heartbeat_port: int = 0  # UDP port for direct heartbeats (0: this agent sends none)
    lease: int = 0  # filled from the key's lease when decoded
    # The key's mod_revision: when this life of the agent joined (or restored its key). Not
    # the create revision: an agent restarted before its old lease expired overwrites the
    # old life's key, which keeps its create revision — and would be taken for that life,
    # silent since the crash, and fenced again and again.
    revision: int = 0

    def encode(self) -> bytes:
        return _dump(
            {
                "name": self.name,
                "kind": self.kind.value,
                "addresses": list(self.addresses),
                "attributes": dict(self.attributes),
                "joined_at": self.joined_at,
                "agent_pid": self.agent_pid,
                "heartbeat_port": self.heartbeat_port,
            }
        )


@dataclass(frozen=True, slots=True)
class DcRecord:
    """The designated controller; `epoch` is the leader key's create_revision."""

    node: str
    epoch: int
    lease: int
    since: float = 0.0  # wall clock, for display only

    def encode(self) -> bytes:
        return _dump({"node": self.node, "since": self.since})


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything one decision may look at, read at one store revision."""

    revision: int
    dc: DcRecord | None
    members: Mapping[str, MemberRecord]
    nodes: Mapping[str, NodeRecord]
    other: Mapping[str, StoredKey]  # keys this version does not interpret (yet)
    problems: tuple[str, ...]
    config: ClusterConfig | None = None  # None: none stored, or unreadable (see problems)
    config_revision: int = 0
    statuses: Mapping[str, NodeReport] = field(default_factory=dict)
    targets: Mapping[str, NodeTarget] = field(default_factory=dict)
    target_revisions: Mapping[str, int] = field(default_factory=dict)
    fencing: Mapping[str, list[FenceRecord]] = field(default_factory=dict)
    fencing_revisions: Mapping[str, int] = field(default_factory=dict)
    # Work assignment (docs/assign.md): the DC's maps, the entities added at run time, and
    # pending rebalance requests, by assignment name.
    assignments: Mapping[str, AssignmentRecord] = field(default_factory=dict)
    assign_entities: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rebalance_requests: Mapping[str, RebalanceRequest] = field(default_factory=dict)
    status_revisions: Mapping[str, int] = field(default_factory=dict)

    def fenced_since_report(self, node: str) -> bool:
        """Was the node fenced successfully after its status report was written? Then
        nothing that report lists can still run (a node that rejoined since, before it
        reported again, has not yet said anything new)."""
        history = self.fencing.get(node, [])
        if not history or not history[-1].succeeded:
            return False
        return self.fencing_revisions.get(node, 0) > self.status_revisions.get(node, 0)

    def fenced_since_join(self, node: str) -> bool:
        """Was the node fenced successfully after it last joined (its current life)?"""
        history = self.fencing.get(node, [])
        if not history or not history[-1].succeeded:
            return False
        record = self.nodes.get(node)
        return self.fencing_revisions.get(node, 0) > (record.revision if record else 0)

    def last_fenced(self, node: str) -> float | None:
        """When the node's last successful fence finished (wall time), if it ever was."""
        for record in reversed(self.fencing.get(node, [])):
            if record.succeeded:
                return record.finished
        return None

    def fences(self) -> dict[str, int]:
        """Each node whose latest fence succeeded, with the revision of that record: a
        revision that grows is a new fence."""
        return {
            node: self.fencing_revisions.get(node, 0)
            for node, history in self.fencing.items()
            if history and history[-1].succeeded
        }

    def target_is_void(self, node: str) -> bool:
        """Was the node's target written before its current life (before its member key)?

        Such a target was computed from what the node ran before it lost its membership; the
        node ignores it, so the DC must not wait for it and must write a new one."""
        member = self.members.get(node)
        return (
            member is not None
            and node in self.targets
            and self.target_revisions.get(node, 0) <= member.revision
        )

    def current_target(self, node: str) -> NodeTarget | None:
        """The node's target, unless it is void or the node is not a member."""
        if node not in self.members or self.target_is_void(node):
            return None
        return self.targets.get(node)

    def is_online(self, node: str) -> bool:
        return node in self.members

    def has_reported(self, node: str) -> bool:
        """Is the node a member whose agent has said what runs there in its current life?

        A report from before the node (re)joined says what ran before its crash, and one
        made while its new agent still probes says nothing yet: taken for the truth, either
        would have the DC start again (and the node stop) what runs there."""
        member = self.members.get(node)
        report = self.statuses.get(node)
        return (
            member is not None
            and report is not None
            and report.updated >= member.joined_at
            and not report.probing
        )

    @property
    def known_nodes(self) -> list[str]:
        return sorted(set(self.nodes) | set(self.members))


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


class _Bad(Exception):
    pass


def _load(key: StoredKey) -> dict[str, Any]:
    try:
        return json_object(key.value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _text(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise _Bad(f"field {name!r} must be a string, found {value!r}")
    return value


def _kind(data: dict[str, Any]) -> NodeKind:
    value = _text(data, "kind", "full")
    try:
        return NodeKind(value)
    except ValueError:
        raise _Bad(f"unknown node kind {value!r}") from None


def _addresses(data: dict[str, Any]) -> tuple[str, ...]:
    value = data.get("addresses", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise _Bad("field 'addresses' must be a list of strings")
    return tuple(value)


def _number(data: dict[str, Any], name: str) -> float:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"field {name!r} must be a number, found {value!r}")
    return float(value)


def _decode_member(node: str, key: StoredKey) -> MemberRecord:
    data = _load(key)
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise _Bad("field 'attributes' must map strings to strings")
    name = _text(data, "name", node)
    if name != node:
        raise _Bad(f"record names node {name!r} but sits under {node!r}")
    return MemberRecord(
        name=node,
        kind=_kind(data),
        addresses=_addresses(data),
        attributes=attributes,
        joined_at=_number(data, "joined_at"),
        agent_pid=int(_number(data, "agent_pid")),
        heartbeat_port=int(_number(data, "heartbeat_port")),
        lease=key.lease,
        revision=key.mod_revision,
    )


def _decode_node(node: str, key: StoredKey) -> NodeRecord:
    data = _load(key)
    return NodeRecord(
        name=node, kind=_kind(data), addresses=_addresses(data), revision=key.mod_revision
    )


def _decode_dc(key: StoredKey) -> DcRecord:
    data = _load(key)
    node = _text(data, "node")
    if not is_valid_name(node):
        raise _Bad(f"names an invalid node {node!r}")
    if key.lease == 0:
        raise _Bad("is not attached to a lease, so it would never expire")
    return DcRecord(
        node=node, epoch=key.create_revision, lease=key.lease, since=_number(data, "since")
    )


_SECTIONS = ("members", "nodes", "status", "target", "fencing")


def _decode_assign(key: StoredKey) -> tuple[str, str, object]:
    """`assign/<name>/map`, `assign/<name>/entities/<entity>`, `assign/<name>/rebalance`."""
    parts = key.name.split("/")
    if len(parts) < 3 or not is_valid_name(parts[1]):
        raise _Bad("not an assignment key (assign/NAME/map|entities/ENTITY|rebalance)")
    name, what = parts[1], parts[2:]
    try:
        if what == ["map"]:
            return "assign-map", name, decode_assignment(key.value, key.mod_revision)
        if what == ["rebalance"]:
            return "assign-rebalance", name, decode_rebalance_request(key.value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None
    if len(what) == 2 and what[0] == "entities" and is_valid_name(what[1]):
        return "assign-entity", name, what[1]
    raise _Bad("not an assignment key (assign/NAME/map|entities/ENTITY|rebalance)")


def _decode_one(key: StoredKey) -> tuple[str, str, object]:
    """(section, name, decoded value) of one key; _Bad when it does not decode."""
    if key.name.startswith("assign/"):
        return _decode_assign(key)
    if key.name in ("dc", "config"):
        return key.name, key.name, _decode_dc(key) if key.name == "dc" else _decode_config(key)
    section, _, rest = key.name.partition("/")
    if section not in _SECTIONS:
        return "other", key.name, key
    if section == "status" and "/" in rest:  # status/<node>/<part>: model/status.py
        node, _, part = rest.partition("/")
        if not is_valid_name(node) or not is_valid_name(part):
            raise _Bad("not a report's part (status/NODE/PART)")
        try:
            return "status-part", node, (part, decode_status_part(key.value))
        except ValueError as exc:
            raise _Bad(str(exc)) from None
    if not is_valid_name(rest):
        raise _Bad(f"{rest!r} is not a valid node name")
    if section == "members":
        return section, rest, _decode_member(rest, key)
    if section == "nodes":
        return section, rest, _decode_node(rest, key)
    if section == "status":
        return section, rest, _decode_with(decode_status, rest, key)
    if section == "fencing":
        return section, rest, _decode_fencing(key)
    return section, rest, _decode_target(key)


class SnapshotDecoder:
    """Decodes the keys of a cluster into snapshots, decoding a key again only when its
    revision changed: an agent that follows the store's changes pays for what changed, not
    for the whole cluster at every cycle (docs/control-plane.md)."""

    def __init__(self) -> None:
        # key name -> (mod_revision, decoded or the problem text)
        self._cache: dict[str, tuple[int, tuple[str, str, object] | str]] = {}
        # node -> (the revisions of its head and parts, their assembled report or problem)
        self._reports: dict[str, tuple[tuple[object, ...], NodeReport | str]] = {}

    def decode(self, revision: int, keys: Iterable[StoredKey]) -> ClusterSnapshot:
        dc: DcRecord | None = None
        members: dict[str, MemberRecord] = {}
        nodes: dict[str, NodeRecord] = {}
        other: dict[str, StoredKey] = {}
        statuses: dict[str, NodeReport] = {}
        targets: dict[str, NodeTarget] = {}
        target_revisions: dict[str, int] = {}
        fencing: dict[str, list[FenceRecord]] = {}
        fencing_revisions: dict[str, int] = {}
        status_revisions: dict[str, int] = {}
        config: ClusterConfig | None = None
        config_revision = 0
        assignments: dict[str, AssignmentRecord] = {}
        assign_entities: dict[str, set[str]] = {}
        rebalance_requests: dict[str, RebalanceRequest] = {}
        problems: list[str] = []
        seen: set[str] = set()
        # Reports in parts (model/status.py): assembled once every key is decoded.
        parts: dict[str, dict[str, tuple[int, StatusPart]]] = {}
        broken: set[str] = set()  # nodes with a part that does not decode
        heads: set[str] = set()  # nodes whose head does not decode
        for key in keys:
            seen.add(key.name)
            cached = self._cache.get(key.name)
            if cached is not None and cached[0] == key.mod_revision:
                result = cached[1]
            else:
                try:
                    result = _decode_one(key)
                except _Bad as exc:
                    result = f"{key.name}: {exc}; ignored"
                self._cache[key.name] = (key.mod_revision, result)
            if key.name == "config":
                config_revision = key.mod_revision
            if isinstance(result, str):
                problems.append(result)
                if key.name.startswith("status/"):
                    (broken if key.name.count("/") >= 2 else heads).add(key.name.split("/")[1])
                continue
            section, name, value = result
            if section == "dc":
                assert isinstance(value, DcRecord)
                dc = value
            elif section == "config":
                assert isinstance(value, ClusterConfig)
                config = value
            elif section == "members":
                assert isinstance(value, MemberRecord)
                members[name] = value
            elif section == "nodes":
                assert isinstance(value, NodeRecord)
                nodes[name] = value
            elif section == "status":
                assert isinstance(value, NodeReport)
                statuses[name] = value
                status_revisions[name] = key.mod_revision
            elif section == "status-part":
                assert isinstance(value, tuple)
                parts.setdefault(name, {})[value[0]] = (key.mod_revision, value[1])
            elif section == "fencing":
                assert isinstance(value, list)
                fencing[name] = value
                fencing_revisions[name] = key.mod_revision
            elif section == "target":
                assert isinstance(value, NodeTarget)
                targets[name] = value
                target_revisions[name] = key.mod_revision
            elif section == "assign-map":
                assert isinstance(value, AssignmentRecord)
                assignments[name] = value
            elif section == "assign-entity":
                assert isinstance(value, str)
                assign_entities.setdefault(name, set()).add(value)
            elif section == "assign-rebalance":
                assert isinstance(value, RebalanceRequest)
                rebalance_requests[name] = value
            else:
                assert isinstance(value, StoredKey)
                other[name] = value
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        self._assemble(statuses, status_revisions, parts, broken | heads, problems)
        return ClusterSnapshot(
            revision=revision,
            dc=dc,
            members=members,
            nodes=nodes,
            other=other,
            problems=tuple(problems),
            config=config,
            config_revision=config_revision,
            statuses=statuses,
            targets=targets,
            target_revisions=target_revisions,
            fencing=fencing,
            fencing_revisions=fencing_revisions,
            assignments=assignments,
            assign_entities={k: frozenset(v) for k, v in assign_entities.items()},
            rebalance_requests=rebalance_requests,
            status_revisions=status_revisions,
        )

    def _assemble(
        self,
        statuses: dict[str, NodeReport],
        revisions: dict[str, int],
        parts: Mapping[str, Mapping[str, tuple[int, StatusPart]]],
        broken: set[str],
        problems: list[str],
    ) -> None:
        """Each head in `statuses` with its parts; a report with a part that does not decode,
        or that does not assemble, is no report (as a head that does not decode): taken
        without a part, it could say that something running there does not run."""
        for node in sorted(set(parts) - set(statuses) - broken):
            problems.append(f"status/{node}/: parts without a report status/{node}; ignored")
        assembled: dict[str, tuple[tuple[object, ...], NodeReport | str]] = {}
        for node in sorted(statuses):
            if node in broken:
                problems.append(f"status/{node}: a part does not decode; the report is ignored")
                del statuses[node], revisions[node]
                continue
            own = parts.get(node, {})
            if not own:
                continue
            signature = (revisions[node], *sorted((p, r) for p, (r, _) in own.items()))
            cached = self._reports.get(node)
            if cached is not None and cached[0] == signature:
                result = cached[1]
            else:
                try:
                    result = assemble_status(statuses[node], {p: v for p, (_, v) in own.items()})
                except ValueError as exc:
                    result = f"status/{node}: {exc}; ignored"
            assembled[node] = (signature, result)
            if isinstance(result, str):
                problems.append(result)
                del statuses[node], revisions[node]
            else:
                statuses[node] = result
        self._reports = assembled


def decode_snapshot(revision: int, keys: Iterable[StoredKey]) -> ClusterSnapshot:
    """Interpret every key under the cluster prefix; undecodable ones become problems."""
    return SnapshotDecoder().decode(revision, keys)


def _decode_fencing(key: StoredKey) -> list[FenceRecord]:
    try:
        return decode_history(key.value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _decode_config(key: StoredKey) -> ClusterConfig:
    try:
        return config_from_json(key.value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _decode_with(
    decode: Callable[[str, bytes], NodeReport], node: str, key: StoredKey
) -> NodeReport:
    try:
        return decode(node, key.value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _decode_target(key: StoredKey) -> NodeTarget:
    try:
        return decode_target(key.value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None
