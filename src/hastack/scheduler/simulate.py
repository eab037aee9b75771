"""Applying a plan's actions to a state, as if they all succeeded: for `hastack simulate`,
and for tests that interrupt a plan half-way and schedule again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from hastack.model.config import Role
from hastack.model.state import ClusterState, ResourceStatus, base_id
from hastack.scheduler.plan import Action, ActionKind, Plan

__all__ = ["apply_actions"]


def apply_actions(state: ClusterState, plan: Plan, actions: Iterable[Action]) -> ClusterState:
    """The state after `actions` (a prefix of `plan.actions`, in order) have succeeded."""
    roles = {a.instance: a.role for a in plan.assignments}
    running: dict[tuple[str, str], ResourceStatus] = {}
    kept: list[ResourceStatus] = []
    for r in state.resources:
        if r.role is Role.STOPPED:
            kept.append(r)
        else:
            running[(r.resource, r.node)] = r
    nodes = dict(state.nodes)
    fenced = set(state.fenced)
    for action in actions:
        key = (action.instance or "", action.node)
        if action.kind is ActionKind.FENCE:
            fenced.add(action.node)
            node = nodes[action.node]
            nodes[action.node] = replace(node, online=False, unclean=False)
            running = {k: v for k, v in running.items() if k[1] != action.node}
            continue
        instance = action.instance or ""
        existing = _find(running, instance, action.node)
        if action.kind is ActionKind.STOP:
            if existing is not None:
                del running[(existing.resource, action.node)]
                if existing.fail_count:
                    # The node keeps counting failures of a stopped resource.
                    kept.append(replace(existing, role=Role.STOPPED, failed=False, blocked=False))
        elif action.kind is ActionKind.START:
            role = roles.get(instance, Role.STARTED)
            base_role = (
                Role.UNPROMOTED if role in (Role.PROMOTED, Role.UNPROMOTED) else Role.STARTED
            )
            old = running.get(key)
            running[key] = ResourceStatus(
                instance, action.node, base_role, fail_count=old.fail_count if old else 0
            )
        elif action.kind is ActionKind.PROMOTE and existing is not None:
            running[(existing.resource, action.node)] = replace(
                existing, role=Role.PROMOTED, failed=False
            )
        elif action.kind is ActionKind.DEMOTE and existing is not None:
            running[(existing.resource, action.node)] = replace(existing, role=Role.UNPROMOTED)
    return ClusterState(
        nodes=nodes,
        resources=(*kept, *running.values()),
        has_quorum=state.has_quorum,
        now=state.now,
        fenced=frozenset(fenced),
    )


def _find(
    running: dict[tuple[str, str], ResourceStatus], instance: str, node: str
) -> ResourceStatus | None:
    """The entry an action on `instance` refers to. Anonymous clone instances are numbered
    afresh by every scheduling run, so any instance of the same primitive on that node is it
    (there is at most one per node)."""
    found = running.get((instance, node))
    if found is not None:
        return found
    base = base_id(instance)
    return next(
        (r for (name, where), r in running.items() if where == node and base_id(name) == base), None
    )
