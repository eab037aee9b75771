"""Work assignment records (docs/assign.md): the DC's map of entities to nodes, and the
shapes of the grants a target carries and the `served` set a node reports. Pure.

    assign/<name>/map   {"epoch": 42, "entities": {"r00": ["n2"], "r01": ["n1", "n3"]},
                         "rebalance": {"id": "ab12", "left": 3}, "at": 1700000000.0}

For each entity its nodes in order: the first serves it actively, the others stand by.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from hastack.model.base import is_valid_name
from hastack.model.jsontext import json_object

__all__ = [
    "AssignRole",
    "AssignmentRecord",
    "Grants",
    "RebalanceProgress",
    "RebalanceRequest",
    "decode_assignment",
    "decode_grants",
    "decode_rebalance_request",
    "encode_grants",
    "exclusive_entity",
]


class AssignRole(enum.StrEnum):
    ACTIVE = "active"
    STANDBY = "standby"


# name -> entity -> role: what a target grants a node, and what a node reports it serves.
Grants = Mapping[str, Mapping[str, AssignRole]]


def exclusive_entity(name: str, entity: str) -> str:
    """The name of an entity's active copy in the exclusivity record (`routers/r07`)."""
    return f"{name}/{entity}"


@dataclass(frozen=True, slots=True)
class RebalanceProgress:
    """A `hastack assign rebalance` request being carried out: its id and the moves left."""

    id: str
    left: int


@dataclass(frozen=True, slots=True)
class RebalanceRequest:
    """`hastack assign rebalance`: move at most `max_moves` copies (on a short lease)."""

    id: str
    max_moves: int

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "max-moves": self.max_moves}, sort_keys=True).encode()


def decode_rebalance_request(raw: bytes) -> RebalanceRequest:
    data = json_object(raw)
    rid, moves = data.get("id"), data.get("max-moves")
    if not isinstance(rid, str) or not rid:
        raise ValueError("'id' must be a non-empty string")
    if isinstance(moves, bool) or not isinstance(moves, int) or moves < 0:
        raise ValueError("'max-moves' must be a non-negative integer")
    return RebalanceRequest(rid, moves)


@dataclass(frozen=True, slots=True)
class AssignmentRecord:
    epoch: int = 0
    entities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rebalance: RebalanceProgress | None = None
    at: float = 0.0  # wall clock when written, for display
    revision: int = 0  # the key's mod_revision (filled when decoded; 0: no key)

    def encode(self) -> bytes:
        doc: dict[str, object] = {
            "epoch": self.epoch,
            "entities": {e: list(n) for e, n in sorted(self.entities.items())},
        }
        if self.rebalance is not None:
            doc["rebalance"] = {"id": self.rebalance.id, "left": self.rebalance.left}
        if self.at:
            doc["at"] = self.at
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def same_map(self, other: AssignmentRecord | None) -> bool:
        return (
            other is not None
            and dict(self.entities) == dict(other.entities)
            and self.rebalance == other.rebalance
        )


def decode_assignment(raw: bytes, revision: int = 0) -> AssignmentRecord:
    data = json_object(raw)
    epoch = data.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise ValueError("'epoch' must be an integer")
    entities = data.get("entities", {})
    if not isinstance(entities, dict):
        raise ValueError("'entities' must be an object")
    out: dict[str, tuple[str, ...]] = {}
    for entity, nodes in entities.items():
        if not is_valid_name(str(entity)):
            raise ValueError(f"entity {entity!r} is not a valid name")
        if not isinstance(nodes, list) or not all(
            isinstance(n, str) and is_valid_name(n) for n in nodes
        ):
            raise ValueError(f"entity {entity!r}: nodes must be a list of node names")
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"entity {entity!r}: a node is listed twice")
        out[str(entity)] = tuple(nodes)
    rebalance = None
    raw_rebalance = data.get("rebalance")
    if raw_rebalance is not None:
        if (
            not isinstance(raw_rebalance, dict)
            or not isinstance(raw_rebalance.get("id"), str)
            or isinstance(raw_rebalance.get("left"), bool)
            or not isinstance(raw_rebalance.get("left"), int)
        ):
            raise ValueError("'rebalance' must be {id: string, left: integer}")
        rebalance = RebalanceProgress(raw_rebalance["id"], raw_rebalance["left"])
    at = data.get("at", 0.0)
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError("'at' must be a number")
    return AssignmentRecord(epoch, out, rebalance, float(at), revision)


def encode_grants(grants: Grants) -> dict[str, dict[str, str]]:
    return {
        name: {e: r.value for e, r in sorted(entities.items())}
        for name, entities in sorted(grants.items())
        if entities
    }


def decode_grants(raw: object, field_name: str) -> dict[str, dict[str, AssignRole]]:
    """`{"routers": {"r00": "active"}}`; ValueError names what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"{field_name!r} must be an object")
    out: dict[str, dict[str, AssignRole]] = {}
    for name, entities in raw.items():
        if not isinstance(entities, dict):
            raise ValueError(f"{field_name}.{name} must be an object")
        roles: dict[str, AssignRole] = {}
        for entity, role in entities.items():
            try:
                roles[str(entity)] = AssignRole(role)
            except ValueError:
                raise ValueError(f"{field_name}.{name}.{entity}: unknown role {role!r}") from None
        out[str(name)] = roles
    return out
