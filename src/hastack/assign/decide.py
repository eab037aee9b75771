"""The DC's assignment step: from one snapshot and the scheduler's view of it, the maps to
write and each node's grants. Pure (docs/assign.md).

Which nodes count as what comes from `controller.build_state`, the same view the scheduler
gets — never a second notion of a lost node:

* live: online, with an instance of the clone reported active and not failed;
* held: unclean (lost, not yet fenced nor past its self-fencing margin), or a member that
  has not reported in its current life — its copies stay, it takes nothing new;
* safe: not online, not unclean, not a member (fenced, or lease expired past the margin) —
  known to serve nothing, so its last report does not block a grant elsewhere;
* anything else (online without a running instance) loses its copies in the map, and the
  grants wait for its report to show them released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hastack.assign.grants import GrantView, grants
from hastack.assign.placement import Move, Rules, place, rebalance
from hastack.model.assign import AssignmentRecord, AssignRole, RebalanceProgress
from hastack.model.config import Assignment, Clone, ClusterConfig, Group, Role
from hastack.model.members import ClusterSnapshot
from hastack.model.state import ClusterState, base_id

__all__ = ["AssignDecision", "AssignView", "decide_assignments", "nodes_view", "rules_of"]


@dataclass(frozen=True, slots=True)
class AssignView:
    """One assignment's nodes, as the DC sees them this cycle."""

    live: frozenset[str]
    held: frozenset[str]
    safe: frozenset[str]
    online: frozenset[str]


@dataclass(frozen=True, slots=True)
class AssignDecision:
    # Maps to write, each with `revision` = the mod_revision it replaces (0: none stored).
    records: Mapping[str, AssignmentRecord] = field(default_factory=dict)
    # node -> assignment -> entity -> role, for every online node.
    grants: Mapping[str, Mapping[str, Mapping[str, AssignRole]]] = field(default_factory=dict)
    # assignment -> entity -> nodes whose release its active copy waits for.
    waiting: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # assignment -> entities short of replicas (no live node with room).
    short: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # one line per change, for the log


def rules_of(a: Assignment) -> Rules:
    return Rules(replicas=a.replicas, weights=dict(a.weights), capacity=dict(a.capacity))


def _primitives(config: ClusterConfig, clone_id: str) -> set[str]:
    found = config.find(clone_id)
    if not isinstance(found, Clone):
        return set()
    inner = found.resource
    members = inner.resources if isinstance(inner, Group) else []
    return {inner.id} | {r.id for r in members}


def nodes_view(
    snapshot: ClusterSnapshot, config: ClusterConfig, state: ClusterState, a: Assignment
) -> AssignView:
    primitives = _primitives(config, a.clone)
    online = frozenset(n for n, s in state.nodes.items() if s.online)
    live = frozenset(
        r.node
        for r in state.resources
        if r.node in online
        and base_id(r.resource) in primitives
        and r.role is not Role.STOPPED
        and not r.failed
    )
    held = frozenset(
        n
        for n, s in state.nodes.items()
        if s.unclean or (not s.online and n in snapshot.members and n not in state.fenced)
    )
    safe = frozenset(
        n
        for n, s in state.nodes.items()
        if not s.online and not s.unclean and (n in state.fenced or n not in snapshot.members)
    )
    return AssignView(live, held, safe, online)


def _entities(snapshot: ClusterSnapshot, a: Assignment) -> set[str]:
    return set(a.entities) | set(snapshot.assign_entities.get(a.assignment, ()))


def _describe(name: str, moves: tuple[Move, ...]) -> list[str]:
    return [f"{name}: {m.entity} {m.source or '-'} -> {m.target or '-'} ({m.why})" for m in moves]


def decide_assignments(
    snapshot: ClusterSnapshot,
    config: ClusterConfig,
    state: ClusterState,
    *,
    epoch: int,
    now: float,
    starting: frozenset[tuple[str, str]] = frozenset(),
) -> AssignDecision:
    """`starting`: (primitive, node) of instances the DC's plan is still starting. New
    entities wait for them (placed at once, they would all go to the first instance up and
    stay there); orphans of a lost node never wait."""
    records: dict[str, AssignmentRecord] = {}
    node_grants: dict[str, dict[str, dict[str, AssignRole]]] = {
        n: {} for n, s in state.nodes.items() if s.online
    }
    waiting: dict[str, dict[str, tuple[str, ...]]] = {}
    short: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    grant_targets = {n: t.assigned for n, t in snapshot.targets.items()}
    # A report written before the node was last fenced lists nothing that still runs.
    grant_served = {
        n: r.served for n, r in snapshot.statuses.items() if not snapshot.fenced_since_report(n)
    }
    for a in config.assignments:
        name = a.assignment
        rules = rules_of(a)
        view = nodes_view(snapshot, config, state, a)
        stored = snapshot.assignments.get(name) or AssignmentRecord()
        entities_now = _entities(snapshot, a)
        primitives = _primitives(config, a.clone)
        if any(p in primitives for p, _ in starting) or not view.live:
            entities_now = {e for e in entities_now if e in stored.entities}
        placed = place(entities_now, stored.entities, rules, live=view.live, held=view.held)
        entities = dict(placed.entities)
        notes += _describe(name, placed.moves)
        gview = GrantView(view.online, view.safe, grant_targets, grant_served)
        granted = grants(name, entities, rules.replicas, gview, known=state.nodes)
        progress = _rebalance_progress(snapshot, name, stored.rebalance)
        if progress is not None and progress.left > 0 and not granted.waiting:
            # Rate-limited: the next batch only once every earlier move is served again.
            step = rebalance(
                entities, rules, live=view.live, limit=min(a.rebalance_batch, progress.left)
            )
            if step.moves:
                entities = dict(step.entities)
                notes += _describe(name, step.moves)
                progress = RebalanceProgress(progress.id, progress.left - len(step.moves))
                granted = grants(name, entities, rules.replicas, gview, known=state.nodes)
            else:
                progress = RebalanceProgress(progress.id, 0)
                notes.append(f"{name}: balanced (rebalance {progress.id} done)")
        for node, roles in granted.nodes.items():
            if roles:
                node_grants.setdefault(node, {})[name] = dict(roles)
        if granted.waiting:
            waiting[name] = dict(granted.waiting)
        if placed.short:
            short[name] = placed.short
        record = AssignmentRecord(epoch, entities, progress, now, stored.revision)
        if not record.same_map(snapshot.assignments.get(name)):
            records[name] = record
    return AssignDecision(records, node_grants, waiting, short, tuple(notes))


def _rebalance_progress(
    snapshot: ClusterSnapshot, name: str, current: RebalanceProgress | None
) -> RebalanceProgress | None:
    """A new request (an id the map has not seen) starts over; otherwise carry on."""
    request = snapshot.rebalance_requests.get(name)
    if request is not None and (current is None or current.id != request.id):
        return RebalanceProgress(request.id, request.max_moves)
    return current
