"""The run-time resource tree of one scheduling run, built from configuration and state.

Everything here lives for one call of `schedule` only: the objects are mutable while the
run decides, and nothing outlives it, so the scheduler as a whole stays a pure function.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from hastack.model.agent_config import NodeKind
from hastack.model.config import (
    Clone,
    ClusterConfig,
    Group,
    Meta,
    MultipleActive,
    NoQuorumPolicy,
    OrderKind,
    Primitive,
    Role,
)
from hastack.model.scores import INFINITY
from hastack.model.state import ClusterState, ResourceStatus, base_id

__all__ = ["Coloc", "Kind", "Node", "Order", "Rsc", "Run", "build"]


class Kind(enum.Enum):
    PRIMITIVE = 1
    GROUP = 2
    CLONE = 3


@dataclass(eq=False)
class Node:
    name: str
    online: bool
    unclean: bool
    standby: bool
    maintenance: bool
    shutdown: bool
    kind: NodeKind
    attributes: dict[str, str]
    fenced: bool = False  # unclean, and its fencing is confirmed or planned in this run
    num_resources: int = 0  # primitives assigned here in this run (Pacemaker's tie-break)

    @property
    def available(self) -> bool:
        """Can new resources run here?"""
        return self.online and not (
            self.unclean or self.standby or self.maintenance or self.shutdown
        )


@dataclass(eq=False)
class Coloc:
    id: str
    dependent: Rsc
    primary: Rsc
    score: int
    dependent_role: Role | None
    primary_role: Role | None
    influence: bool

    @property
    def mandatory(self) -> bool:
        return self.score >= INFINITY or self.score <= -INFINITY


@dataclass(eq=False)
class Order:
    id: str
    first: Rsc
    then: Rsc
    first_action: str
    then_action: str
    kind: OrderKind
    symmetrical: bool


@dataclass(eq=False)
class Rsc:
    """A primitive, group or clone — or an instance of one inside a clone."""

    id: str  # `vip`; instances: `mc:0`, `grp:1`, `member:1`
    base: str  # the id in the configuration
    kind: Kind
    parent: Rsc | None
    config: Primitive | Group | Clone | None  # None for an orphan
    # resolved meta
    priority: int = 0
    stickiness: int = 0
    target_role: Role = Role.STARTED
    managed: bool = True
    migration_threshold: int = INFINITY
    failure_timeout: float = 0.0
    requires: str = "fencing"
    multiple_active: MultipleActive = MultipleActive.STOP_START
    critical: bool = True
    # clone settings (kind CLONE)
    clone_max: int = 0
    clone_node_max: int = 1
    clone_min: int = 0
    promotable: bool = False
    promoted_max: int = 1
    promoted_node_max: int = 1
    unique: bool = False
    interleave: bool = False
    ordered: bool = False
    # tree
    children: list[Rsc] = field(default_factory=list)
    # scores
    allowed: dict[str, int] = field(default_factory=dict)
    promoted_locations: list[tuple[str, int]] = field(default_factory=list)
    this_with: list[Coloc] = field(default_factory=list)  # we are the dependent
    with_this: list[Coloc] = field(default_factory=list)  # we are the primary
    # assignment
    assigning: bool = False
    assigned: bool = False
    node: str | None = None
    next_role: Role | None = None
    promotion_priority: int = 0
    # observed (primitives)
    active: dict[str, Role] = field(default_factory=dict)  # node -> current role, in seen order
    failed: set[str] = field(default_factory=set)  # nodes where it needs recovery
    blocked: bool = False
    orphan: bool = False
    fail_counts: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<{self.kind.name.lower()} {self.id}>"

    # ---- tree -------------------------------------------------------------------------------

    @property
    def top(self) -> Rsc:
        r = self
        while r.parent is not None:
            r = r.parent
        return r

    @property
    def clone(self) -> Rsc | None:
        """The clone this resource is (part of) an instance of."""
        r: Rsc | None = self.parent
        while r is not None:
            if r.kind is Kind.CLONE:
                return r
            r = r.parent
        return None

    def primitives(self) -> Iterator[Rsc]:
        if self.kind is Kind.PRIMITIVE:
            yield self
        for child in self.children:
            yield from child.primitives()

    @property
    def is_instance(self) -> bool:
        return self.parent is not None and self.parent.kind is Kind.CLONE

    @property
    def current_node(self) -> str | None:
        """The first node it is active on (a group: its first active member's)."""
        for prim in self.primitives():
            for node in prim.active:
                return node
        return None

    @property
    def is_active(self) -> bool:
        return any(p.active for p in self.primitives())

    @property
    def is_failed(self) -> bool:
        return any(p.failed for p in self.primitives())

    def active_nodes(self) -> set[str]:
        return {n for p in self.primitives() for n in p.active}


@dataclass(eq=False)
class Run:
    config: ClusterConfig
    state: ClusterState
    nodes: dict[str, Node]
    node_order: list[str]  # sorted by name: Pacemaker breaks ties by strcmp
    tops: list[Rsc]  # in assignment order
    # configuration id -> every run-time object made from it (a clone child: one per instance)
    instances: dict[str, list[Rsc]]
    colocs: list[Coloc]
    orders: list[Order]
    can_fence: bool
    has_quorum: bool
    warnings: list[str] = field(default_factory=list)

    def all_resources(self) -> Iterator[Rsc]:
        def walk(r: Rsc) -> Iterator[Rsc]:
            yield r
            for c in r.children:
                yield from walk(c)

        for top in self.tops:
            yield from walk(top)

    def primitives(self) -> Iterator[Rsc]:
        for top in self.tops:
            yield from top.primitives()

    def available(self, node: str) -> bool:
        n = self.nodes.get(node)
        return n is not None and n.available


# ---- building --------------------------------------------------------------------------------

_IMPLICIT_CLONE_STICKINESS = 1


def _meta_value(name: str, chain: list[Meta], defaults: Meta) -> object:
    """Own meta, else the nearest ancestor's explicit meta, else resource-defaults."""
    for meta in chain:
        value = getattr(meta, name)
        if value is not None:
            return value
    return getattr(defaults, name)


def _resolve_meta(r: Rsc, chain: list[Meta], config: ClusterConfig, in_clone: bool) -> None:
    d = config.resource_defaults

    def get(name: str) -> object:
        return _meta_value(name, chain, d)

    priority = get("priority")
    r.priority = int(priority) if isinstance(priority, int) else 0
    stickiness = get("resource_stickiness")
    if isinstance(stickiness, int):
        r.stickiness = stickiness
    else:
        r.stickiness = _IMPLICIT_CLONE_STICKINESS if in_clone else 0
    role = get("target_role")
    r.target_role = role if isinstance(role, Role) else Role.STARTED
    managed = get("is_managed")
    maintenance = get("maintenance")
    r.managed = (managed is not False) and maintenance is not True
    threshold = get("migration_threshold")
    r.migration_threshold = int(threshold) if isinstance(threshold, int) else INFINITY
    timeout = get("failure_timeout")
    r.failure_timeout = float(timeout) if isinstance(timeout, float | int) else 0.0
    multiple = get("multiple_active")
    if isinstance(multiple, MultipleActive):
        r.multiple_active = multiple
    critical = get("critical")
    r.critical = critical is not False
    requires = get("requires")
    props = config.properties
    if isinstance(requires, str):
        r.requires = requires
    elif (
        r.config is not None and isinstance(r.config, Primitive) and r.config.agent.cls == "stonith"
    ):
        r.requires = "quorum"
    elif props.stonith_enabled:
        r.requires = "fencing"
    elif props.no_quorum_policy is NoQuorumPolicy.IGNORE:
        r.requires = "nothing"
    else:
        r.requires = "quorum"


def _new(
    config_res: Primitive | Group | Clone,
    rid: str,
    parent: Rsc | None,
    chain: list[Meta],
    config: ClusterConfig,
    in_clone: bool,
) -> Rsc:
    kind = (
        Kind.PRIMITIVE
        if isinstance(config_res, Primitive)
        else Kind.GROUP
        if isinstance(config_res, Group)
        else Kind.CLONE
    )
    r = Rsc(id=rid, base=config_res.id, kind=kind, parent=parent, config=config_res)
    chain = [config_res.meta, *chain]
    _resolve_meta(r, chain, config, in_clone)
    return r


def _expand(
    config_res: Primitive | Group | Clone,
    parent: Rsc | None,
    chain: list[Meta],
    config: ClusterConfig,
    suffix: str,
    node_count: int,
    registry: dict[str, list[Rsc]],
) -> Rsc:
    in_clone = suffix != "" or isinstance(config_res, Clone)
    r = _new(config_res, config_res.id + suffix, parent, chain, config, in_clone)
    registry.setdefault(config_res.id, []).append(r)
    inner_chain = [config_res.meta, *chain]
    if isinstance(config_res, Group):
        for member in config_res.resources:
            r.children.append(_expand(member, r, inner_chain, config, suffix, node_count, registry))
    elif isinstance(config_res, Clone):
        meta = config_res.meta
        r.unique = bool(meta.globally_unique)
        r.clone_max = meta.clone_max if meta.clone_max is not None else max(1, node_count)
        r.clone_node_max = 1 if not r.unique else (meta.clone_node_max or 1)
        if meta.clone_node_max is not None and not r.unique:
            r.clone_node_max = 1
        r.clone_min = meta.clone_min or 0
        r.promotable = config_res.promotable
        r.promoted_max = meta.promoted_max if meta.promoted_max is not None else 1
        r.promoted_node_max = meta.promoted_node_max if meta.promoted_node_max is not None else 1
        r.interleave = bool(meta.interleave)
        r.ordered = bool(meta.ordered)
        for i in range(r.clone_max):
            r.children.append(
                _expand(config_res.resource, r, inner_chain, config, f":{i}", node_count, registry)
            )
    return r


def build(config: ClusterConfig, state: ClusterState) -> Run:
    """The run-time tree with observed state attached; constraints and scores come next."""
    nodes = _nodes(config, state)
    registry: dict[str, list[Rsc]] = {}
    tops = [_expand(res, None, [], config, "", len(nodes), registry) for res in config.resources]
    # Priority first, configuration order second (a stable sort keeps it).
    tops.sort(key=lambda r: -r.priority)
    props = config.properties
    has_device = any(p.agent.cls == "stonith" for p in config.primitives())
    has_quorum = state.has_quorum or props.no_quorum_policy is NoQuorumPolicy.IGNORE
    run = Run(
        config=config,
        state=state,
        nodes=nodes,
        node_order=sorted(nodes),
        tops=tops,
        instances=registry,
        colocs=[],
        orders=[],
        can_fence=props.stonith_enabled and has_device and has_quorum,
        has_quorum=state.has_quorum,
    )
    if props.maintenance_mode:
        for r in run.all_resources():
            r.managed = False
    if props.stonith_enabled and not has_device:
        # Pacemaker refuses to manage anything it could not fence for (no device).
        for r in run.all_resources():
            r.managed = False
        run.warnings.append("stonith-enabled is true but no fencing device is configured")
    _apply_state(run, registry)
    return run


def _nodes(config: ClusterConfig, state: ClusterState) -> dict[str, Node]:
    specs = {n.node: n for n in config.nodes}
    out: dict[str, Node] = {}
    for name in [*specs, *(n for n in state.nodes if n not in specs)]:
        spec = specs.get(name)
        status = state.nodes.get(name)
        attributes: dict[str, str] = {"#uname": name}
        if spec is not None:
            attributes.update(spec.attributes)
        if status is not None:
            attributes.update(status.attributes)
        kind = status.kind if status is not None else NodeKind.FULL
        attributes["#kind"] = "cluster" if kind is NodeKind.FULL else "remote"
        fenced = name in state.fenced
        out[name] = Node(
            name=name,
            online=status is not None and status.online and not fenced,
            unclean=status is not None and status.unclean and not fenced,
            standby=(spec is not None and spec.standby) or (status is not None and status.standby),
            maintenance=(spec is not None and spec.maintenance)
            or (status is not None and status.maintenance),
            shutdown=status is not None and status.shutdown,
            kind=kind,
            attributes=attributes,
        )
    return out


def _instance_for(candidates: list[Rsc], status: ResourceStatus, clone: Rsc) -> Rsc | None:
    """Which instance of a clone a history entry belongs to."""
    if clone.unique:
        return next((c for c in candidates if c.id == status.resource), None)

    def instance(c: Rsc) -> Rsc:
        return c if c.parent is clone or c.parent is None else c.parent

    # Anonymous: the instance already active on that node (for a cloned group, the one a
    # sibling member placed there), else the first instance active nowhere.
    for c in candidates:
        if status.node in instance(c).active_nodes():
            return c
    return next((c for c in candidates if not instance(c).active_nodes()), None)


def _apply_state(run: Run, registry: dict[str, list[Rsc]]) -> None:
    for status in run.state.resources:
        node = run.nodes.get(status.node)
        if node is None or (not node.online and not node.unclean):
            # A cleanly offline node runs nothing: with fencing disabled its history is
            # stale, and with fencing a node known to be down has been dealt with.
            continue
        candidates = registry.get(status.resource) or registry.get(base_id(status.resource))
        prims = [c for c in candidates or [] if c.kind is Kind.PRIMITIVE and not c.orphan]
        clone = prims[0].clone if prims else None
        if clone is not None and not clone.unique and status.role is Role.STOPPED:
            # A failure record of an anonymous clone concerns the clone on that node.
            for p in prims:
                _record(run, p, status)
            continue
        target = (
            _instance_for(prims, status, clone)
            if clone is not None
            else (prims[0] if prims else None)
        )
        if target is None:
            if status.role is Role.STOPPED:
                continue
            target = _orphan(run, status, registry)
        _record(run, target, status)


def _orphan(run: Run, status: ResourceStatus, registry: dict[str, list[Rsc]]) -> Rsc:
    existing = [r for r in registry.get(status.resource, []) if r.orphan]
    if existing:
        return existing[0]
    r = Rsc(id=status.resource, base=status.resource, kind=Kind.PRIMITIVE, parent=None, config=None)
    r.orphan = True
    r.target_role = Role.STOPPED
    registry.setdefault(status.resource, []).append(r)
    run.tops.append(r)
    run.warnings.append(f"{status.resource} is running on {status.node} but is not configured")
    return r


def _record(run: Run, r: Rsc, status: ResourceStatus) -> None:
    now = run.state.now
    expired = (
        r.failure_timeout > 0
        and status.last_failure is not None
        and now >= status.last_failure + r.failure_timeout
        and not status.blocked
    )
    if status.fail_count and not expired:
        r.fail_counts[status.node] = max(r.fail_counts.get(status.node, 0), status.fail_count)
    if status.role is not Role.STOPPED:
        if run.nodes[status.node].maintenance:
            r.managed = False  # a node in maintenance: what runs there is left alone
        role = status.role
        clone = r.clone
        if role is Role.STARTED and clone is not None and clone.promotable:
            role = Role.UNPROMOTED
        r.active[status.node] = role
        if status.failed and not expired:
            r.failed.add(status.node)
    if status.blocked:
        r.blocked = True
        r.managed = False
