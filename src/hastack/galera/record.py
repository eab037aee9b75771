"""The records etcd keeps for the chooser, and the reader that turns a snapshot into its
input. Pure: the agent and `hastack galera` read the snapshot and write the records.

    galera/<rsc>/bootstrap      BootstrapRecord: who bootstrapped; its mod_revision is the
                                generation
    galera/<rsc>/nodes/<node>   NodeRecord: that node's own history (starting, primary,
                                stopped), written only by its agent

`read_cluster(resource, nodes, snapshot)` gives the `ClusterRecord`, the reported positions
and the problems met (a record or attribute that does not decode: the node counts as absent,
or as having no history). docs/galera.md, "The chooser's input", says what each field means.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hastack.galera.chooser import ClusterRecord, Loss, NodeHistory
from hastack.galera.position import Position, parse_uuid, position_from_attributes
from hastack.model.config import Role
from hastack.model.members import ClusterSnapshot, StoredKey
from hastack.model.state import base_id

__all__ = [
    "BootstrapRecord",
    "ClusterView",
    "NodeRecord",
    "NodeState",
    "bootstrap_key",
    "decode_bootstrap",
    "decode_node",
    "node_key",
    "read_cluster",
]


def bootstrap_key(resource: str) -> str:
    """Relative to the cluster prefix (as `ClusterSnapshot.other` names keys)."""
    return f"galera/{resource}/bootstrap"


def node_key(resource: str, node: str) -> str:
    return f"galera/{resource}/nodes/{node}"


class NodeState(enum.StrEnum):
    STARTING = "starting"
    PRIMARY = "primary"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    state: NodeState
    generation: int = 0
    started: int | None = None
    seen: int | None = None
    view: tuple[str, ...] = ()
    uuid: str | None = None
    seqno: int | None = None
    at: float = 0.0

    def encode(self) -> bytes:
        data: dict[str, Any] = {"state": self.state.value, "generation": self.generation}
        for name in ("started", "seen", "uuid", "seqno"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.view:
            data["view"] = list(self.view)
        data["at"] = self.at
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class BootstrapRecord:
    node: str
    uuid: str | None
    seqno: int | None
    forced: bool = False
    may_lose: tuple[Loss, ...] = ()
    at: float = 0.0

    def encode(self) -> bytes:
        data = {
            "node": self.node,
            "uuid": self.uuid,
            "seqno": self.seqno,
            "forced": self.forced,
            "may-lose": [
                {
                    "node": loss.node,
                    "why": loss.why,
                    "uuid": loss.uuid,
                    "seqno": loss.seqno,
                    "confirmed-down": loss.confirmed_down,
                }
                for loss in self.may_lose
            ],
            "at": self.at,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _int_or_none(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name!r} must be an integer")
    return value


def _uuid_or_none(data: Mapping[str, Any]) -> str | None:
    value = data.get("uuid")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("'uuid' must be a string")
    return parse_uuid(value)


def decode_node(raw: bytes) -> NodeRecord:
    data = _object(raw)
    try:
        state = NodeState(str(data.get("state")))
    except ValueError:
        raise ValueError(f"unknown state {data.get('state')!r}") from None
    view = data.get("view", [])
    if not isinstance(view, list) or not all(isinstance(v, str) for v in view):
        raise ValueError("'view' must be a list of node names")
    at = data.get("at", 0.0)
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError("'at' must be a number")
    return NodeRecord(
        state=state,
        generation=_int_or_none(data, "generation") or 0,
        started=_int_or_none(data, "started"),
        seen=_int_or_none(data, "seen"),
        view=tuple(view),
        uuid=_uuid_or_none(data),
        seqno=_int_or_none(data, "seqno"),
        at=float(at),
    )


def decode_bootstrap(raw: bytes) -> BootstrapRecord:
    data = _object(raw)
    node = data.get("node")
    if not isinstance(node, str) or not node:
        raise ValueError("'node' must be a node name")
    losses = []
    for item in data.get("may-lose", []):
        if not isinstance(item, dict) or not isinstance(item.get("node"), str):
            raise ValueError("'may-lose' must list objects with a node")
        losses.append(
            Loss(
                node=item["node"],
                why=str(item.get("why", "")),
                uuid=item.get("uuid") if isinstance(item.get("uuid"), str) else None,
                seqno=_int_or_none(item, "seqno"),
                confirmed_down=bool(item.get("confirmed-down", False)),
            )
        )
    return BootstrapRecord(
        node=node,
        uuid=_uuid_or_none(data),
        seqno=_int_or_none(data, "seqno"),
        forced=bool(data.get("forced", False)),
        may_lose=tuple(losses),
        at=float(data.get("at", 0.0) or 0.0),
    )


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What one snapshot says about a Galera resource: the chooser's input, the decoded
    records with their revisions (for the CAS and the CLI), and what did not decode."""

    record: ClusterRecord
    positions: Mapping[str, Position]
    bootstrap: BootstrapRecord | None
    bootstrap_revision: int  # 0: none
    records: Mapping[str, tuple[NodeRecord, int]]  # node -> (record, mod_revision)
    revisions: Mapping[str, int]  # every galera/<rsc>/ key -> mod_revision (for the CAS)
    online: frozenset[str]
    promoted: frozenset[str]  # online nodes whose report says the instance is Promoted
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _fresh(snapshot: ClusterSnapshot, node: str) -> bool:
    """Online in this life: a member that has reported (and probed) since it joined."""
    return snapshot.has_reported(node)


def _role(snapshot: ClusterSnapshot, node: str, resource: str) -> Role:
    report = snapshot.statuses.get(node)
    if report is None:
        return Role.STOPPED
    roles = [r.role for name, r in report.resources.items() if base_id(name) == resource]
    if Role.PROMOTED in roles:
        return Role.PROMOTED
    return next((r for r in roles if r is not Role.STOPPED), Role.STOPPED)


def _last_fenced(snapshot: ClusterSnapshot, node: str) -> int | None:
    history = snapshot.fencing.get(node, [])
    if history and history[-1].succeeded:
        return snapshot.fencing_revisions.get(node)
    return None


def read_cluster(resource: str, nodes: Sequence[str], snapshot: ClusterSnapshot) -> ClusterView:
    """The chooser's view of Galera resource `resource` over `nodes` from one snapshot."""
    problems: list[str] = []
    prefix = f"galera/{resource}/"
    keys: dict[str, StoredKey] = {
        name: key for name, key in snapshot.other.items() if name.startswith(prefix)
    }
    bootstrap: BootstrapRecord | None = None
    generation = 0
    found = keys.get(bootstrap_key(resource))
    if found is not None:
        generation = found.mod_revision
        try:
            bootstrap = decode_bootstrap(found.value)
        except ValueError as exc:
            problems.append(f"{found.name}: {exc}")
    records: dict[str, tuple[NodeRecord, int]] = {}
    for node in nodes:
        key = keys.get(node_key(resource, node))
        if key is None:
            continue
        try:
            records[node] = (decode_node(key.value), key.mod_revision)
        except ValueError as exc:
            problems.append(f"{key.name}: {exc}")
    online = frozenset(n for n in nodes if _fresh(snapshot, n))
    promoted = frozenset(n for n in online if _role(snapshot, n, resource) is Role.PROMOTED)
    positions: dict[str, Position] = {}
    attributes: dict[str, Mapping[str, str]] = {}
    for node in sorted(online):
        attrs = snapshot.statuses[node].attributes
        attributes[node] = attrs
        try:
            position = position_from_attributes(resource, attrs)
        except ValueError as exc:
            problems.append(f"{node}: galera-{resource}-position: {exc}")
            continue
        if position is not None:
            positions[node] = position
    primary: set[str] = set()
    history: dict[str, NodeHistory] = {}
    for node in nodes:
        rec, revision = records.get(node, (None, 0))
        running_record = rec is not None and rec.state is not NodeState.STOPPED
        if node in online:
            if node in promoted or running_record:
                primary.add(node)
        elif not snapshot.fenced_since_join(node) and (
            _role(snapshot, node, resource) is Role.PROMOTED or running_record
        ):
            # Gone without a fencing: it may still run what it last said it ran (the agent
            # does not stop Galera when it loses its lease: the clone is not exclusive).
            primary.add(node)
        if (
            bootstrap is not None
            and bootstrap.node == node
            and node in online
            and (rec is None or revision < generation)
        ):
            primary.add(node)  # a bootstrap under way
        gen = rec.generation if rec is not None else 0
        if bootstrap is not None and bootstrap.node == node:
            gen = max(gen, generation)
        started = rec.started if rec is not None else None
        if rec is not None and started is None and rec.state is NodeState.STARTING:
            started = revision  # the starting record's own revision is its start
        history[node] = NodeHistory(
            generation=gen,
            started=started,
            primary_seen=rec.seen if rec is not None else None,
            view=frozenset(rec.view) if rec is not None else frozenset(),
            stopped=revision if rec is not None and rec.state is NodeState.STOPPED else None,
            fenced=_last_fenced(snapshot, node),
            last_uuid=rec.uuid if rec is not None else None,
            last_seqno=rec.seqno if rec is not None else None,
        )
    record = ClusterRecord(
        nodes=tuple(nodes),
        primary=frozenset(primary),
        generation=generation,
        history=history,
    )
    return ClusterView(
        record=record,
        positions=positions,
        bootstrap=bootstrap,
        bootstrap_revision=generation,
        records=records,
        revisions={k: v.mod_revision for k, v in keys.items()},
        online=online,
        promoted=promoted,
        attributes=attributes,
        problems=tuple(problems),
    )
