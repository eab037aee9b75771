"""Release before grant: which node may serve which entity *now*. Pure.

The map (hastack.assign.placement) says where each entity should be; a grant says what a
node is told to serve this cycle. The active copy of an entity goes to its first node only
when no other node may still serve it actively: every other node is *safe* (fenced, or its
lease expired past the self-fencing margin — what controller.build_state decides) or shows
no sign of it — neither the target it may be acting on grants it active, nor its report
lists it as served active. Until then the first node gets a standby copy (replicas ≥ 2) or
nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from hastack.model.assign import AssignRole, Grants

__all__ = ["GrantView", "Granted", "grants"]


@dataclass(frozen=True, slots=True)
class GrantView:
    online: frozenset[str]  # nodes that get a target this cycle
    safe: frozenset[str]  # nodes known to serve nothing (fenced, self-fenced)
    targets: Mapping[str, Grants] = field(default_factory=dict)  # the stored targets' grants
    served: Mapping[str, Grants] = field(default_factory=dict)  # the nodes' reports


@dataclass(frozen=True, slots=True)
class Granted:
    nodes: Mapping[str, Mapping[str, AssignRole]]  # node -> entity -> role, for one assignment
    waiting: Mapping[str, tuple[str, ...]]  # entity -> nodes whose release it waits for


def _active_on(view: GrantView, node: str, name: str, entity: str) -> bool:
    for source in (view.targets, view.served):
        if source.get(node, {}).get(name, {}).get(entity) is AssignRole.ACTIVE:
            return True
    return False


def grants(
    name: str,
    entities: Mapping[str, tuple[str, ...]],
    replicas: int,
    view: GrantView,
    *,
    known: Collection[str] = (),
) -> Granted:
    """The grants of assignment `name` for each online node. `known`: every node that may
    have served an entity (defaults to those the view mentions)."""
    everyone = set(known) | set(view.online) | set(view.targets) | set(view.served)
    out: dict[str, dict[str, AssignRole]] = {n: {} for n in sorted(view.online)}
    waiting: dict[str, tuple[str, ...]] = {}
    for entity, holders in sorted(entities.items()):
        for index, node in enumerate(holders):
            if node not in out:
                continue  # lost (held until safe) or not yet back: no target to put it in
            if index > 0:
                out[node][entity] = AssignRole.STANDBY
                continue
            blockers = tuple(
                sorted(
                    m
                    for m in everyone
                    if m != node and m not in view.safe and _active_on(view, m, name, entity)
                )
            )
            if blockers:
                waiting[entity] = blockers
                if replicas >= 2:
                    out[node][entity] = AssignRole.STANDBY
            else:
                out[node][entity] = AssignRole.ACTIVE
    return Granted(out, waiting)
