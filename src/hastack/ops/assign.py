"""Work assignment for operators and external systems (docs/assign.md): add and remove
run-time entities, ask for a rebalance, and show who serves what. Every front end (the
`hastack assign` command, the lab, the REST API) calls these.

A refused request changes nothing: every entity is checked before any key is written, and
the assignments in force are the DC's to change, never this module's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hastack.assign.placement import loads
from hastack.model.assign import AssignRole, RebalanceRequest
from hastack.model.base import is_valid_name
from hastack.model.config import Assignment, ClusterConfig
from hastack.model.members import ClusterSnapshot
from hastack.ops.cluster import Cluster
from hastack.ops.edits import EditRefused
from hastack.store import Compare, DeleteOp, PutOp
from hastack.store.snapshot import read_snapshot

__all__ = [
    "AssignmentView",
    "EntityLine",
    "add_entities",
    "assignment_views",
    "remove_entities",
    "render",
    "request_rebalance",
    "show",
]

# A rebalance request that no DC took up in this long is gone by itself.
REBALANCE_TTL = 120


def _find(config: ClusterConfig | None, name: str) -> tuple[int, Assignment]:
    assignments = config.assignments if config is not None else []
    for index, a in enumerate(assignments):
        if a.assignment == name:
            return index, a
    known = ", ".join(a.assignment for a in assignments) or "none"
    raise EditRefused(f"no assignment named {name!r} (assignments: {known})")


async def add_entities(cluster: Cluster, name: str, entities: Sequence[str]) -> str:
    """Add entities at run time (one key each, as an external system would)."""
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    _find(snapshot.config, name)
    bad = [e for e in entities if not is_valid_name(e)]
    if bad:
        raise EditRefused(
            f"not a valid entity name: {', '.join(map(repr, bad))} (letters, digits, '-', '_', "
            "'.'; at most 63)"
        )
    value = json.dumps({"added": time.time()}).encode()
    ops: list[PutOp | DeleteOp] = [
        PutOp(cluster.keys.assign_entity(name, e), value) for e in dict.fromkeys(entities)
    ]
    await cluster.store.txn([], success=ops)
    return f"{name}: added {', '.join(dict.fromkeys(entities))}"


async def remove_entities(cluster: Cluster, name: str, entities: Sequence[str]) -> str:
    """Remove run-time entities. Refused whole, naming the key looked for, if any of them is
    unknown or is listed in the configuration (edit the configuration for those)."""
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    index, a = _find(snapshot.config, name)
    present = snapshot.assign_entities.get(name, frozenset())
    problems = []
    for e in entities:
        if e in a.entities:
            problems.append(
                f"{e!r} is listed in the configuration (assignments[{index}].entities"
                f"[{a.entities.index(e)}]): remove it there"
            )
        elif e not in present:
            problems.append(
                f"no entity {e!r} in assignment {name!r} "
                f"(looked for {cluster.keys.assign_entity(name, e)})"
            )
    if problems:
        raise EditRefused("nothing removed: " + "; ".join(problems))
    keys = [cluster.keys.assign_entity(name, e) for e in dict.fromkeys(entities)]
    result = await cluster.store.txn(
        [_exists(k) for k in keys],
        success=[DeleteOp(k) for k in keys],
    )
    if not result.succeeded:
        raise EditRefused("nothing removed: an entity went away meanwhile; look again")
    return f"{name}: removed {', '.join(dict.fromkeys(entities))}"


def _exists(key: str) -> Compare:
    return Compare(key, Compare.absent(key).target, ">", 0)


async def request_rebalance(cluster: Cluster, name: str, max_moves: int) -> str:
    """Ask the DC to move at most `max_moves` copies toward an even load, a batch at a time
    (the assignment's rebalance-batch), each batch once the last is served again."""
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    _find(snapshot.config, name)
    if max_moves < 1:
        raise EditRefused("--max-moves must be at least 1")
    request = RebalanceRequest(uuid.uuid4().hex[:12], max_moves)
    lease = await cluster.store.grant_lease(REBALANCE_TTL)
    await cluster.store.txn(
        [],
        success=[PutOp(cluster.keys.assign_rebalance(name), request.encode(), lease=lease.id)],
    )
    return f"{name}: rebalance {request.id} requested (at most {max_moves} move(s))"


# ---- showing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityLine:
    entity: str
    nodes: list[str]  # the map: first active, then standbys
    served: dict[str, str]  # node -> role it reports serving
    state: str  # serving | waiting for release on N | unassigned | short

    def to_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "nodes": self.nodes, "served": self.served,
                "state": self.state}  # fmt: skip


@dataclass(frozen=True)
class AssignmentView:
    name: str
    clone: str
    replicas: int
    entities: list[EntityLine] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    rebalance: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "clone": self.clone,
            "replicas": self.replicas,
            "loads": self.loads,
            "rebalance": self.rebalance,
            "entities": [e.to_json() for e in self.entities],
        }

    @property
    def waiting(self) -> list[EntityLine]:
        return [e for e in self.entities if e.state != "serving"]


def _line(snapshot: ClusterSnapshot, name: str, entity: str, nodes: tuple[str, ...],
          replicas: int) -> EntityLine:  # fmt: skip
    # A report written before its node's last fence says nothing about now (as for the DC).
    served = {
        node: report.served[name][entity].value
        for node, report in sorted(snapshot.statuses.items())
        if entity in report.served.get(name, {}) and not snapshot.fenced_since_report(node)
    }
    if not nodes:
        state = "unassigned"
    elif served.get(nodes[0]) != AssignRole.ACTIVE.value:
        others = [n for n, r in served.items() if n != nodes[0] and r == AssignRole.ACTIVE.value]
        state = (
            f"waiting for release on {', '.join(others)}"
            if others
            else f"not yet served by {nodes[0]}"
        )
    elif len(nodes) < replicas:
        state = f"short: {len(nodes)} of {replicas} copies"
    else:
        state = "serving"
    return EntityLine(entity, list(nodes), served, state)


def assignment_views(snapshot: ClusterSnapshot, names: Iterable[str] = ()) -> list[AssignmentView]:
    """Who serves what, from one snapshot (status, `assign show`, the API)."""
    config = snapshot.config
    if config is None:
        return []
    wanted = set(names)
    views = []
    for a in config.assignments:
        if wanted and a.assignment not in wanted:
            continue
        record = snapshot.assignments.get(a.assignment)
        entities = sorted(set(a.entities) | set(snapshot.assign_entities.get(a.assignment, ())))
        mapped = dict(record.entities) if record is not None else {}
        lines = [_line(snapshot, a.assignment, e, mapped.get(e, ()), a.replicas) for e in entities]
        nodes = sorted({n for holders in mapped.values() for n in holders} | set(snapshot.members))
        progress = ""
        if record is not None and record.rebalance is not None:
            r = record.rebalance
            progress = f"rebalance {r.id}: " + (f"{r.left} move(s) left" if r.left else "done")
        views.append(
            AssignmentView(a.assignment, a.clone, a.replicas, lines, loads(mapped, nodes), progress)
        )
    return views


async def show(cluster: Cluster, name: str | None = None) -> list[AssignmentView]:
    snapshot = await read_snapshot(cluster.store, cluster.keys)
    if name is not None:
        _find(snapshot.config, name)
    return assignment_views(snapshot, [name] if name else [])


def render(views: Sequence[AssignmentView]) -> list[str]:
    """`hastack assign show` as text."""
    out: list[str] = []
    for v in views:
        counts = ", ".join(f"{n}: {c}" for n, c in v.loads.items())
        out.append(f"{v.name} (clone {v.clone}, replicas {v.replicas}): {counts or 'no nodes'}")
        if v.rebalance:
            out.append(f"  {v.rebalance}")
        for e in v.entities:
            nodes = (
                " ".join(f"{n}{'' if i == 0 else '(standby)'}" for i, n in enumerate(e.nodes))
                or "-"
            )
            out.append(f"  {e.entity:<16} {nodes:<24} {e.state}")
    return out
