"""Why a resource does not run: one line per reason, for the operator (the dashboard, the
API). Pure: no I/O.

The scheduler decides placement from scores and says why for each action it plans; it does
not keep a reason for a resource it leaves stopped. This reads the same inputs it reads — the
configuration (target-role, is-managed, bans, mandatory colocations and orders, cluster
properties), the observed state (node states, fail counts, blocked resources, quorum) — and
the plan itself (a start already planned, with the scheduler's own reason), and names what
keeps each stopped resource from running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from hastack.model.config import (
    Clone,
    ClusterConfig,
    Colocation,
    Group,
    Location,
    NodeSpec,
    NoQuorumPolicy,
    Order,
    OrderKind,
    Primitive,
    Role,
)
from hastack.model.scores import INFINITY
from hastack.model.state import ClusterState, base_id
from hastack.scheduler.plan import ActionKind, Plan

__all__ = ["why_stopped"]

Resource = Primitive | Group | Clone


def _chains(config: ClusterConfig) -> Iterator[list[Resource]]:
    """For every primitive, the resources from its top-level one down to it."""

    def walk(r: Resource, above: list[Resource]) -> Iterator[list[Resource]]:
        chain = [*above, r]
        if isinstance(r, Primitive):
            yield chain
        elif isinstance(r, Group):
            for member in r.resources:
                yield from walk(member, chain)
        else:
            yield from walk(r.resource, chain)

    for top in config.resources:
        yield from walk(top, [])


def _inside(r: Resource) -> set[str]:
    if isinstance(r, Primitive):
        return {r.id}
    if isinstance(r, Group):
        return {r.id} | {m.id for m in r.resources}
    return {r.id} | _inside(r.resource)


def why_stopped(config: ClusterConfig, state: ClusterState, plan: Plan) -> dict[str, list[str]]:
    """Every configured primitive that runs nowhere, with the reasons it does not."""
    online = {n for n, s in state.nodes.items() if s.online}
    running = {
        base_id(r.resource)
        for r in state.resources
        if r.role is not Role.STOPPED and r.node in online
    }
    by_id = {r.id: r for r in config.walk()}

    def runs(rid: str) -> bool:
        found = by_id.get(rid)
        return found is not None and any(p in running for p in _inside(found))

    specs = {n.node: n for n in config.nodes}
    props = config.properties
    out: dict[str, list[str]] = {}
    for chain in _chains(config):
        primitive = chain[-1]
        if primitive.id in running:
            continue
        ids = {r.id for r in chain}
        reasons: list[str] = []
        planned = [
            a
            for a in plan.actions
            if a.kind is ActionKind.START and a.instance and base_id(a.instance) == primitive.id
        ]
        if planned:
            first = planned[0]
            reasons.append(f"starting on {first.node}: {first.reason}")
            out[primitive.id] = reasons
            continue
        for r in chain:
            role = r.meta.target_role or (
                config.resource_defaults.target_role if r is chain[0] else None
            )
            if role is Role.STOPPED:
                reasons.append(f"disabled: target-role=Stopped on {r.id}")
            if r.meta.is_managed is False:
                reasons.append(f"unmanaged: is-managed=false on {r.id}")
        if props.stonith_enabled and not config.fencing.devices:
            reasons.append(
                "stonith-enabled is true but no fencing device is configured: nothing may "
                "start (configure fencing, or set stonith-enabled: false)"
            )
        if props.stop_all_resources:
            reasons.append("the cluster property stop-all-resources is set")
        if props.maintenance_mode:
            reasons.append("the cluster is in maintenance mode")
        if not state.has_quorum and props.no_quorum_policy is not NoQuorumPolicy.IGNORE:
            reasons.append(f"no quorum (no-quorum-policy={props.no_quorum_policy.value})")
        blocked = sorted(
            r.node for r in state.resources if base_id(r.resource) == primitive.id and r.blocked
        )
        if blocked:
            reasons.append(
                f"blocked: a stop failed on {', '.join(blocked)} and could not be made safe by "
                "fencing; clean it up once it is known to be stopped there"
            )
        reasons += _dependencies(config, ids, runs)
        if not reasons:  # nothing above stops it everywhere: look at each node
            nodes, usable = _node_reasons(config, state, chain, ids, specs)
            if nodes and not usable:
                reasons.append("nowhere to run: " + "; ".join(nodes))
            elif nodes:
                reasons.append("kept off " + "; ".join(nodes))
        if not reasons:
            reasons.append("the scheduler placed it nowhere (hastack simulate shows the scores)")
        out[primitive.id] = reasons
    return out


def _dependencies(config: ClusterConfig, ids: set[str], runs: Callable[[str], bool]) -> list[str]:
    out = []
    for c in config.constraints:
        if isinstance(c, Colocation) and c.resource in ids and c.score >= INFINITY:
            if not runs(c.with_):
                out.append(f"must run with {c.with_} ({c.colocation}), which runs nowhere")
        elif (
            isinstance(c, Order)
            and c.then in ids
            and c.first is not None
            and c.kind is OrderKind.MANDATORY
            and not runs(c.first)
        ):
            out.append(f"starts after {c.first} ({c.order}), which runs nowhere")
    return out


def _node_reasons(
    config: ClusterConfig,
    state: ClusterState,
    chain: list[Resource],
    ids: set[str],
    specs: Mapping[str, NodeSpec],
) -> tuple[list[str], int]:
    """For each node, what keeps this resource off it; and on how many nodes nothing does."""
    threshold = None
    for r in chain:
        if r.meta.migration_threshold is not None:
            threshold = r.meta.migration_threshold
    if threshold is None:
        threshold = config.resource_defaults.migration_threshold
    primitive = chain[-1].id
    out = []
    usable = 0
    for name in sorted(state.nodes):
        node = state.nodes[name]
        spec = specs.get(name)
        why = []
        if node.unclean:
            why.append("unclean (waiting for fencing)")
        elif not node.online:
            why.append("offline")
        if node.standby or (spec is not None and spec.standby):
            why.append("standby")
        if node.maintenance or (spec is not None and spec.maintenance):
            why.append("maintenance")
        for c in config.constraints:
            if (
                isinstance(c, Location)
                and c.resource in ids
                and c.node == name
                and c.score is not None
                and c.score <= -INFINITY
            ):
                why.append(f"banned by {c.location}")
        failures = max(
            (
                r.fail_count
                for r in state.resources
                if r.node == name and base_id(r.resource) == primitive
            ),
            default=0,
        )
        if threshold and failures >= threshold:
            shown = "INFINITY" if failures >= INFINITY else str(failures)
            why.append(f"failed {shown} time(s), migration-threshold {threshold}")
        if why:
            out.append(f"{name}: {', '.join(why)}")
        else:
            usable += 1
    return out, usable
