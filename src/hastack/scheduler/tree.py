"""The run-time resource tree of one scheduling run, built from configuration and state.

Everything here lives for one call of `schedule` only: the objects are mutable while the
run decides, and nothing outlives it, so the scheduler as a whole stays a pure function.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hastack.model.config import (
    Clone,
    ClusterConfig,
    Discovery,
    Group,
    Meta,
    MultipleActive,
    NoQuorumPolicy,
    OnFail,
    OrderKind,
    Primitive,
    Role,
)
from hastack.model.members import NodeKind
from hastack.model.scores import INFINITY
from hastack.model.state import ClusterState, ResourceStatus, base_id
from hastack.scheduler.rules import node_attributes

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
    # Remaining utilization capacity (placement-strategy other than default): the node's
    # configured capacity minus what the resources assigned here in this run use.
    capacity: dict[str, int] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        """Can new resources run here?"""
        return self.online and not (
            self.unclean or self.standby or self.maintenance or self.shutdown
        )


class LoadIndex:
    """Primitives assigned per node in this run (Pacemaker's `num_resources` tie-break),
    bucketed by count so the least-loaded node among many equal ones is found without
    looking at every node: at ten thousand resources on a hundred nodes that is the
    difference between a scan per resource and a set intersection."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self._nodes = nodes
        self._buckets: dict[int, set[str]] = {0: set(nodes)}
        self._counts = [0]  # counts with a non-empty bucket, ascending
        for node in nodes.values():
            node.num_resources = 0

    def change(self, name: str, delta: int) -> None:
        node = self._nodes[name]
        old = node.num_resources
        bucket = self._buckets[old]
        bucket.discard(name)
        if not bucket:
            del self._buckets[old]
            self._counts.pop(bisect.bisect_left(self._counts, old))
        node.num_resources = new = old + delta
        if new not in self._buckets:
            self._buckets[new] = set()
            bisect.insort(self._counts, new)
        self._buckets[new].add(name)

    def pick(self, ties: list[str], current: str | None) -> str:
        """Fewest assigned, then `current`, then the name (byte order, as strcmp)."""
        everyone = len(ties) == len(self._nodes)  # the common case: every node equal
        wanted = None if everyone else set(ties)
        for count in self._counts:
            bucket = self._buckets[count]
            found = bucket if wanted is None else bucket & wanted
            if found:
                return current if current in found else min(found)
        return min(ties)


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
    # Orders made from a resource set with require-all=false share this key: `then` needs
    # only one of their firsts (Pacemaker's "one-or-more" pseudo-action).
    one_of: str | None = None
    # A plain first/then order honours the first clone's clone-min (sets do not).
    simple: bool = False


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
    utilization: dict[str, int] = field(default_factory=dict)  # primitives
    # What must share its node (utilization placement); computed once, on first use.
    colocated: dict[int, Rsc] | None = None
    primitive_list: list[Rsc] | None = None  # `primitives()`, once worked out
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
    # resource-discovery of the locations that name a node, where it is not `always` (the
    # strongest per node), and whether any location of this resource is `exclusive`.
    discovery: dict[str, Discovery] = field(default_factory=dict)
    exclusive_discovery: bool = False
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
    no_promotion: set[str] = field(default_factory=set)  # on-fail=demote: not here any more
    last_failures: dict[str, float] = field(default_factory=dict)  # node -> wall time
    # A remote node's connection (Pacemaker's ocf:pacemaker:remote): the node it connects.
    connects: str | None = None
    # The name the observed state knows it by (`db:3` for an anonymous clone instance that
    # the scheduler numbers `db:0`): promotion scores are recorded under that name.
    history: str | None = None

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
        # The tree does not change once built, so the list is worked out once.
        if self.primitive_list is None:
            found = [self] if self.kind is Kind.PRIMITIVE else []
            for child in self.children:
                found.extend(child.primitives())
            self.primitive_list = found
        return iter(self.primitive_list)

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
    any_utilization: bool = False  # some primitive declares what it uses
    # Nodes that can take new resources (node states do not change during a run).
    available_nodes: frozenset[str] = frozenset()
    warnings: list[str] = field(default_factory=list)
    # The earliest moment (wall time) a failure counted in this run expires by its
    # failure-timeout: a plan made now is stale then, whatever else happens.
    expires_at: float | None = None
    load: LoadIndex = field(init=False)

    def __post_init__(self) -> None:
        self.load = LoadIndex(self.nodes)

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
        return node in self.available_nodes


# ---- building --------------------------------------------------------------------------------

_IMPLICIT_CLONE_STICKINESS = 1


_MetaValues = tuple[int, int, Role, bool, int, float, MultipleActive | None, bool, str]


class _Expander:
    """Expands configured resources into run-time objects, for one `build` (one run).

    It keeps what it has worked out about meta attributes: resolving the same combination
    twice is common (clone instances, group members without meta), and all of it goes with
    the run, so no two runs share anything."""

    def __init__(self, config: ClusterConfig, node_count: int) -> None:
        self.config = config
        self.node_count = node_count
        # configuration id -> every run-time object made from it
        self.registry: dict[str, list[Rsc]] = {}
        self._resolved: dict[object, _MetaValues] = {}
        # id(meta) -> (meta, what it sets explicitly); the meta object is kept so that its
        # id stays its own for as long as this cache lives.
        self._explicit: dict[int, tuple[Meta, Mapping[str, object]]] = {}

    def expand(
        self,
        config_res: Primitive | Group | Clone,
        parent: Rsc | None,
        chain: list[Meta],
        suffix: str,
    ) -> Rsc:
        in_clone = suffix != "" or isinstance(config_res, Clone)
        r = self._new(config_res, config_res.id + suffix, parent, chain, in_clone)
        self.registry.setdefault(config_res.id, []).append(r)
        inner_chain = [config_res.meta, *chain]
        if isinstance(config_res, Group):
            for member in config_res.resources:
                r.children.append(self.expand(member, r, inner_chain, suffix))
        elif isinstance(config_res, Clone):
            _clone_settings(r, config_res, self.node_count)
            for i in range(r.clone_max):
                r.children.append(self.expand(config_res.resource, r, inner_chain, f":{i}"))
        return r

    def _new(
        self,
        config_res: Primitive | Group | Clone,
        rid: str,
        parent: Rsc | None,
        chain: list[Meta],
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
        if isinstance(config_res, Primitive):
            r.utilization = dict(config_res.utilization)
            if config_res.is_remote_connection and not in_clone:
                r.connects = config_res.id
        self._resolve_meta(r, [config_res.meta, *chain], in_clone)
        return r

    def _resolve_meta(self, r: Rsc, chain: list[Meta], in_clone: bool) -> None:
        # Fencing devices and remote connections need quorum only, never fencing.
        stonith = isinstance(r.config, Primitive) and (
            r.config.agent.cls == "stonith" or r.config.is_remote_connection
        )
        # Only what each meta object sets explicitly counts (most set nothing); the nearest
        # one wins.
        explicit: dict[str, object] = {}
        for meta in reversed(chain):
            explicit.update(self._explicit_values(meta))
        key: object = (tuple(sorted(explicit.items(), key=lambda kv: kv[0])), in_clone, stonith)
        try:
            values = self._resolved.get(key)
        except TypeError:  # an unhashable value: resolve without the cache
            values, key = None, None
        if values is None:
            values = _meta_values(explicit, self.config, in_clone, stonith)
            if key is not None:
                self._resolved[key] = values
        (
            r.priority,
            r.stickiness,
            r.target_role,
            r.managed,
            r.migration_threshold,
            r.failure_timeout,
            multiple,
            r.critical,
            r.requires,
        ) = values
        if multiple is not None:
            r.multiple_active = multiple

    def _explicit_values(self, meta: Meta) -> Mapping[str, object]:
        if not meta.model_fields_set:
            return _NOTHING  # most resources set no meta attribute at all
        found = self._explicit.get(id(meta))
        if found is None:
            values = {f: getattr(meta, f) for f in meta.model_fields_set}
            found = (meta, {k: v for k, v in values.items() if v is not None})
            self._explicit[id(meta)] = found
        return found[1]


_NOTHING: Mapping[str, object] = MappingProxyType({})


def _meta_values(
    explicit: dict[str, object], config: ClusterConfig, in_clone: bool, stonith: bool
) -> _MetaValues:
    d = config.resource_defaults

    def get(name: str) -> object:
        value = explicit.get(name)
        return value if value is not None else getattr(d, name)

    priority = get("priority")
    stickiness = get("resource_stickiness")
    role = get("target_role")
    managed = get("is_managed")
    maintenance = get("maintenance")
    threshold = get("migration_threshold")
    timeout = get("failure_timeout")
    multiple = get("multiple_active")
    critical = get("critical")
    requires = get("requires")
    props = config.properties
    if isinstance(requires, str):
        resolved_requires = requires
    elif stonith:
        resolved_requires = "quorum"
    elif props.stonith_enabled:
        resolved_requires = "fencing"
    elif props.no_quorum_policy is NoQuorumPolicy.IGNORE:
        resolved_requires = "nothing"
    else:
        resolved_requires = "quorum"
    return (
        int(priority) if isinstance(priority, int) else 0,
        stickiness
        if isinstance(stickiness, int)
        else (_IMPLICIT_CLONE_STICKINESS if in_clone else 0),
        role if isinstance(role, Role) else Role.STARTED,
        (managed is not False) and maintenance is not True,
        int(threshold) if isinstance(threshold, int) else INFINITY,
        float(timeout) if isinstance(timeout, float | int) else 0.0,
        multiple if isinstance(multiple, MultipleActive) else None,
        critical is not False,
        resolved_requires,
    )


def _clone_settings(r: Rsc, config_res: Clone, node_count: int) -> None:
    meta = config_res.meta
    # globally-unique defaults to true when more than one instance may share a node.
    r.unique = (
        meta.globally_unique if meta.globally_unique is not None else (meta.clone_node_max or 0) > 1
    )
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


def build(config: ClusterConfig, state: ClusterState) -> Run:
    """The run-time tree with observed state attached; constraints and scores come next."""
    nodes = _nodes(config, state)
    expander = _Expander(config, len(nodes))
    tops = [expander.expand(res, None, [], "") for res in config.resources]
    registry = expander.registry
    # Priority first, configuration order second (a stable sort keeps it).
    tops.sort(key=lambda r: -r.priority)
    props = config.properties
    has_device = bool(config.fencing.devices) or any(
        p.agent.cls == "stonith" for p in config.primitives()
    )
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
        any_utilization=any(p.utilization for p in config.primitives()),
        available_nodes=frozenset(n for n, node in nodes.items() if node.available),
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
    _multiply_active(run)
    # on-fail may have put nodes in standby or made them unclean
    run.available_nodes = frozenset(n for n, node in nodes.items() if node.available)
    return run


def _multiply_active(run: Run) -> None:
    """multiple-active=block: a resource found active on several nodes is left alone, and with
    it its whole group when the group says block too. (stop_only bans it everywhere; that is a
    node score, applied with the others.)"""
    for prim in run.primitives():
        if len(prim.active) < 2 or prim.multiple_active is not MultipleActive.BLOCK:
            continue
        parent = prim.parent
        blocked = [prim]
        if (
            parent is not None
            and parent.kind is Kind.GROUP
            and parent.multiple_active is MultipleActive.BLOCK
        ):
            blocked = parent.children
        for r in blocked:
            r.managed = False
            r.blocked = True


def _nodes(config: ClusterConfig, state: ClusterState) -> dict[str, Node]:
    specs = {n.node: n for n in config.nodes}
    # A connection resource creates its remote node, known to the state or not.
    connected = {p.primitive for p in config.primitives() if p.is_remote_connection}
    out: dict[str, Node] = {}
    names = [*specs, *(n for n in state.nodes if n not in specs)]
    names += sorted(connected - set(names))
    for name in names:
        spec = specs.get(name)
        status = state.nodes.get(name)
        kind = status.kind if status is not None else NodeKind.FULL
        if name in connected:
            kind = NodeKind.REMOTE
        attributes = node_attributes(
            name,
            kind,
            spec.attributes if spec is not None else {},
            status.attributes if status is not None else {},
        )
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
            capacity=dict(spec.utilization) if spec is not None else {},
        )
    return out


def _instance_of(c: Rsc, clone: Rsc) -> Rsc:
    return c if c.parent is clone or c.parent is None else c.parent


class _Matcher:
    """Which instance of an anonymous clone a history entry belongs to: the instance already
    active on that node (for a cloned group, the one a sibling member placed there), else the
    first instance active nowhere. Indexed, so that matching stays linear in the history."""

    def __init__(self) -> None:
        self.where: dict[tuple[int, str], Rsc] = {}  # (clone, node) -> instance active there
        self.cursor: dict[str, int] = {}  # primitive base -> first instance maybe inactive

    def match(self, candidates: list[Rsc], status: ResourceStatus, clone: Rsc) -> Rsc | None:
        if clone.unique:
            return next((c for c in candidates if c.id == status.resource), None)
        here = self.where.get((id(clone), status.node))
        if here is not None:
            base = candidates[0].base
            return next((c for c in here.primitives() if c.base == base), None)
        base = candidates[0].base
        index = self.cursor.get(base, 0)
        while index < len(candidates) and _instance_of(candidates[index], clone).is_active:
            index += 1
        self.cursor[base] = index
        return candidates[index] if index < len(candidates) else None

    def placed(self, r: Rsc, node: str) -> None:
        clone = r.clone
        if clone is not None and not clone.unique:
            self.where[(id(clone), node)] = _instance_of(r, clone)


def _apply_state(run: Run, registry: dict[str, list[Rsc]]) -> None:
    matcher = _Matcher()
    live: dict[int, list[Rsc]] = {}  # candidates list -> its configured primitives
    for status in run.state.resources:
        node = run.nodes.get(status.node)
        if node is None or (not node.online and not node.unclean):
            # A cleanly offline node runs nothing: with fencing disabled its history is
            # stale, and with fencing a node known to be down has been dealt with.
            continue
        candidates = registry.get(status.resource) or registry.get(base_id(status.resource))
        prims = live.get(id(candidates)) if candidates else []
        if prims is None and candidates:
            prims = [c for c in candidates if c.kind is Kind.PRIMITIVE and not c.orphan]
            live[id(candidates)] = prims
        prims = prims or []
        clone = prims[0].clone if prims else None
        if clone is not None and not clone.unique and status.role is Role.STOPPED:
            # A failure record of an anonymous clone concerns the clone on that node.
            for p in prims:
                _record(run, p, status)
            continue
        target = (
            matcher.match(prims, status, clone)
            if clone is not None
            else (prims[0] if prims else None)
        )
        if target is None:
            if status.role is Role.STOPPED:
                continue
            target = _orphan(run, status, registry)
        _record(run, target, status)
        if status.role is not Role.STOPPED:
            matcher.placed(target, status.node)


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


def on_fail_for(run: Run, r: Rsc, op_name: str | None, interval: float) -> OnFail:
    """What to do about a failure of `op_name` (with that interval): the operation's own
    on-fail, else Pacemaker's default — a stop failure fences the node when fencing is on
    and blocks the resource otherwise; anything else restarts it."""
    name = "monitor" if op_name == "probe" else op_name
    if isinstance(r.config, Primitive) and name is not None:
        for op in r.config.ops:
            if op.name.value == name and op.interval == interval and op.on_fail is not None:
                return op.on_fail
    if name == "stop":
        return OnFail.FENCE if run.config.properties.stonith_enabled else OnFail.BLOCK
    return OnFail.RESTART


def _on_fail(run: Run, r: Rsc, status: ResourceStatus) -> None:
    """Apply the failed operation's on-fail to this run (Pacemaker's `unpack_rsc_op` effects)."""
    if status.failed_op is None:
        return  # a failure from an importer that already applied its effects
    node = status.node
    action = on_fail_for(run, r, status.failed_op, status.failed_interval)
    if action is OnFail.IGNORE:
        r.failed.discard(node)
    elif action is OnFail.BLOCK:
        r.blocked = True
        r.managed = False
    elif action is OnFail.STOP:
        r.target_role = Role.STOPPED  # stopped, and not started anywhere else
    elif action is OnFail.FENCE:
        run.nodes[node].unclean = True  # fenced before anything it ran starts elsewhere
    elif action is OnFail.STANDBY:
        run.nodes[node].standby = True  # everything moves off the node
    elif action is OnFail.DEMOTE and status.role is Role.PROMOTED:
        r.failed.discard(node)  # demoted in place, not recovered
        r.no_promotion.add(node)


def _record(run: Run, r: Rsc, status: ResourceStatus) -> None:
    # When this failure stops counting (failure-timeout; never for a blocked resource).
    expires = (
        status.last_failure + r.failure_timeout
        if r.failure_timeout > 0 and status.last_failure is not None and not status.blocked
        else None
    )
    expired = expires is not None and run.state.now >= expires
    if expires is not None and not expired and (status.fail_count or status.failed):
        run.expires_at = expires if run.expires_at is None else min(run.expires_at, expires)
    if status.fail_count and not expired:
        r.fail_counts[status.node] = max(r.fail_counts.get(status.node, 0), status.fail_count)
    if status.last_failure is not None and not expired and (status.fail_count or status.failed):
        r.last_failures[status.node] = status.last_failure
    if status.role is not Role.STOPPED:
        if run.nodes[status.node].maintenance:
            r.managed = False  # a node in maintenance: what runs there is left alone
        role = status.role
        clone = r.clone
        if role is Role.STARTED and clone is not None and clone.promotable:
            role = Role.UNPROMOTED
        r.active[status.node] = role
        r.history = status.resource
        if status.failed and not expired:
            r.failed.add(status.node)
            _on_fail(run, r, status)
    if status.blocked:
        r.blocked = True
        r.managed = False
