"""The cluster configuration: resources, constraints, properties — Pacemaker's concepts and
names, written as YAML, validated before anything is stored.

    properties:          cluster options (stonith-enabled, no-quorum-policy, ...)
    resource-defaults:   meta attributes every resource inherits
    op-defaults:         operation defaults (timeout)
    nodes:               the nodes it names (computes too), with their settings:
                         attributes, utilization, standby, maintenance
    resources:           - primitive: ID | group: ID | clone: ID   (the key names the kind)
    constraints:         - location: ID | colocation: ID | order: ID
    assignments:         - assignment: NAME, clone: ID, replicas, entities (docs/assign.md)

Every reference (a resource, a node) must exist; ids are unique across all resources,
including group members and clone children; unknown keys are refused. Errors name the path
(`resources[3].ops[0].timeout`) and, through hastack.model.document, the line.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

import pydantic

from hastack.model.base import Duration, Name, Spec
from hastack.model.document import Loc, load_yaml, validate
from hastack.model.scores import INFINITY, Score

__all__ = [
    "AgentRef",
    "Assignment",
    "Clone",
    "ClusterConfig",
    "Colocation",
    "Constraint",
    "Discovery",
    "Expression",
    "FenceDevice",
    "FencingSpec",
    "Group",
    "Location",
    "Meta",
    "NoQuorumPolicy",
    "NodeSpec",
    "OnFail",
    "Op",
    "Order",
    "OrderKind",
    "PlacementStrategy",
    "Primitive",
    "Properties",
    "Resource",
    "ResourceSet",
    "Role",
    "Rule",
    "constraint_references",
    "parse_cluster_config",
]


class Role(enum.StrEnum):
    STOPPED = "Stopped"
    STARTED = "Started"
    UNPROMOTED = "Unpromoted"
    PROMOTED = "Promoted"


def _role(value: object) -> object:
    # Pacemaker's pre-2.1 names still fill old configurations.
    legacy = {"Master": "Promoted", "Slave": "Unpromoted"}
    if isinstance(value, str):
        for role in Role:
            if value.lower() == role.value.lower():
                return role.value
        return legacy.get(value, value)
    return value


RoleName = Annotated[Role, pydantic.BeforeValidator(_role)]


class OnFail(enum.StrEnum):
    IGNORE = "ignore"
    BLOCK = "block"
    STOP = "stop"
    RESTART = "restart"
    FENCE = "fence"
    STANDBY = "standby"
    DEMOTE = "demote"


class OpName(enum.StrEnum):
    MONITOR = "monitor"
    START = "start"
    STOP = "stop"
    PROMOTE = "promote"
    DEMOTE = "demote"
    NOTIFY = "notify"
    MIGRATE_TO = "migrate_to"
    MIGRATE_FROM = "migrate_from"
    RELOAD = "reload"
    RELOAD_AGENT = "reload-agent"


AGENT_CLASSES = ("ocf", "hastack", "stonith", "systemd", "lsb", "service")
_AGENT_PART = re.compile(r"^[A-Za-z0-9_.+@-]+$")


class AgentRef(Spec):
    """`ocf:heartbeat:IPaddr2`, `hastack:vip`, `stonith:fence_ipmilan`, `systemd:httpd`."""

    cls: str
    provider: str | None
    type: str

    def __str__(self) -> str:
        if self.provider:
            return f"{self.cls}:{self.provider}:{self.type}"
        return f"{self.cls}:{self.type}"

    @staticmethod
    def parse(text: str) -> AgentRef:
        parts = text.split(":", 2)
        cls = parts[0]
        if cls not in AGENT_CLASSES:
            raise ValueError(
                f"unknown agent class {cls!r} in {text!r} (one of {', '.join(AGENT_CLASSES)})"
            )
        if cls == "ocf":
            if len(parts) != 3 or not all(_AGENT_PART.match(p) for p in parts[1:]):
                raise ValueError(f"an OCF agent is ocf:PROVIDER:TYPE, got {text!r}")
            return AgentRef(cls=cls, provider=parts[1], type=parts[2])
        rest = text[len(cls) + 1 :]
        if len(parts) < 2 or not rest or (cls != "lsb" and not _AGENT_PART.match(rest)):
            raise ValueError(f"an agent is CLASS:TYPE (e.g. hastack:vip), got {text!r}")
        return AgentRef(cls=cls, provider=None, type=rest)


def _agent(value: object) -> object:
    if isinstance(value, str):
        return AgentRef.parse(value)
    return value


def _param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"a parameter value is a string or number, not {type(value).__name__}")


ParamValue = Annotated[str, pydantic.BeforeValidator(_param)]


def _count(value: object) -> object:
    # migration-threshold and friends accept INFINITY like scores do.
    if isinstance(value, str) and value.strip().upper() in ("INFINITY", "+INFINITY"):
        return INFINITY
    return value


Count = Annotated[int, pydantic.BeforeValidator(_count), pydantic.Field(ge=0)]


class Op(Spec):
    name: OpName
    interval: Duration = 0.0
    timeout: Duration | None = None
    on_fail: OnFail | None = None
    role: RoleName | None = None
    enabled: bool = True


class MultipleActive(enum.StrEnum):
    STOP_START = "stop_start"
    STOP_ONLY = "stop_only"
    BLOCK = "block"
    STOP_UNEXPECTED = "stop_unexpected"


CLONE_META = (
    "clone_max",
    "clone_node_max",
    "clone_min",
    "notify",
    "globally_unique",
    "ordered",
    "interleave",
    "promoted_max",
    "promoted_node_max",
)


class Meta(Spec):
    """Meta attributes (Pacemaker's names). Unset keys inherit from resource-defaults."""

    priority: int | None = None
    target_role: RoleName | None = None
    is_managed: bool | None = None
    maintenance: bool | None = None
    resource_stickiness: Score | None = None
    migration_threshold: Count | None = None
    failure_timeout: Duration | None = None
    multiple_active: MultipleActive | None = None
    allow_migrate: bool | None = None
    critical: bool | None = None
    requires: Literal["nothing", "quorum", "fencing", "unfencing"] | None = None
    # clones only
    clone_max: Count | None = None
    clone_node_max: Count | None = None
    clone_min: Count | None = None
    notify: bool | None = None
    globally_unique: bool | None = None
    ordered: bool | None = None
    interleave: bool | None = None
    promoted_max: Count | None = None
    promoted_node_max: Count | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            renames = {"master-max": "promoted-max", "master-node-max": "promoted-node-max"}
            data = {renames.get(k, k): v for k, v in data.items()}
        return data

    def clone_keys_set(self) -> list[str]:
        return [k.replace("_", "-") for k in CLONE_META if getattr(self, k) is not None]


_EMPTY_META = Meta()


class Primitive(Spec):
    primitive: Name
    agent: Annotated[AgentRef, pydantic.BeforeValidator(_agent)]
    params: dict[str, ParamValue] = pydantic.Field(default_factory=dict)
    meta: Meta = _EMPTY_META
    ops: list[Op] = pydantic.Field(default_factory=list)
    utilization: dict[str, Annotated[int, pydantic.Field(ge=0)]] = pydantic.Field(
        default_factory=dict
    )

    @property
    def id(self) -> str:
        return self.primitive

    @property
    def is_remote_connection(self) -> bool:
        """Pacemaker's connection to a remote node (`ocf:pacemaker:remote`), whose id names
        the node it creates (docs/compute.md)."""
        a = self.agent
        return a.cls == "ocf" and a.provider == "pacemaker" and a.type == "remote"

    @pydantic.field_serializer("agent")
    def _agent_text(self, agent: AgentRef) -> str:
        return str(agent)

    @pydantic.model_validator(mode="after")
    def _check(self) -> Primitive:
        seen: set[tuple[str, float, str | None]] = set()
        for op in self.ops:
            key = (op.name.value, op.interval, op.role.value if op.role else None)
            if key in seen:
                raise ValueError(
                    f"operation {op.name} with interval {op.interval:g}s is defined twice"
                )
            seen.add(key)
        return self


class Group(Spec):
    """Members start in order, on one node, and stop in reverse order."""

    group: Name
    resources: Annotated[list[Primitive], pydantic.Field(min_length=1)]
    meta: Meta = _EMPTY_META

    @property
    def id(self) -> str:
        return self.group


class Clone(Spec):
    """Instances of one resource (a primitive or a group) on several nodes; `promotable: true`
    makes some of them Promoted (active/passive, e.g. Galera's writer)."""

    clone: Name
    resource: Annotated[
        Annotated[Primitive, pydantic.Tag("<primitive>")]
        | Annotated[Group, pydantic.Tag("<group>")],
        pydantic.Discriminator(lambda v: _kind_of(v, ("primitive", "group"))),
    ]
    promotable: bool = False
    meta: Meta = _EMPTY_META

    @property
    def id(self) -> str:
        return self.clone


Resource = Annotated[
    Annotated[Primitive, pydantic.Tag("<primitive>")]
    | Annotated[Group, pydantic.Tag("<group>")]
    | Annotated[Clone, pydantic.Tag("<clone>")],
    pydantic.Discriminator(lambda v: _kind_of(v, ("primitive", "group", "clone"))),
]


def _kind_of(value: Any, kinds: tuple[str, ...]) -> str | None:
    """Which kind a resource or constraint entry is: the one kind key it has."""
    if isinstance(value, dict):
        found = [k for k in kinds if k in value]
    else:
        found = [k for k in kinds if hasattr(value, k) and isinstance(getattr(value, k), str)]
    if len(found) == 1:
        return f"<{found[0]}>"
    return None


# ---- rules ---------------------------------------------------------------------------------


class ExprOp(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    GT = "gt"
    LTE = "lte"
    GTE = "gte"
    DEFINED = "defined"
    NOT_DEFINED = "not_defined"


class ExprType(enum.StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    VERSION = "version"


class Expression(Spec):
    """`attribute op value`: node attributes, plus #uname and #kind as Pacemaker has them."""

    attribute: str
    op: ExprOp
    value: ParamValue | None = None
    type: ExprType | None = None

    @pydantic.model_validator(mode="after")
    def _value_needed(self) -> Expression:
        unary = self.op in (ExprOp.DEFINED, ExprOp.NOT_DEFINED)
        if unary and self.value is not None:
            raise ValueError(f"op {self.op} takes no value")
        if not unary and self.value is None:
            raise ValueError(f"op {self.op} needs a value")
        return self


class Rule(Spec):
    """Applies `score` (or the node's value of `score-attribute`) where the expressions hold."""

    score: Score | None = None
    score_attribute: str | None = None
    boolean_op: Literal["and", "or"] = "and"
    expressions: Annotated[list[Expression], pydantic.Field(min_length=1)]

    @pydantic.model_validator(mode="after")
    def _one_score(self) -> Rule:
        if (self.score is None) == (self.score_attribute is None):
            raise ValueError("a rule needs exactly one of score or score-attribute")
        return self


# ---- constraints ---------------------------------------------------------------------------


class Discovery(enum.StrEnum):
    """Pacemaker's `resource-discovery` of a location constraint, for the nodes it names:
    whether those nodes probe the resource (look for it already running).

    * always: probe it there (the default).
    * never: never probe it there; the cluster assumes it is not running there unless it
      started it itself. It may still run there.
    * exclusive: probe it, and run it, only on the nodes that the resource's exclusive
      locations name; every other node neither probes nor runs it.

    Where several locations of a resource name one node, the strongest wins: exclusive over
    never over always.
    """

    ALWAYS = "always"
    NEVER = "never"
    EXCLUSIVE = "exclusive"

    @property
    def strength(self) -> int:
        return _DISCOVERY_STRENGTH[self]


_DISCOVERY_STRENGTH = {Discovery.ALWAYS: 0, Discovery.NEVER: 1, Discovery.EXCLUSIVE: 2}


class Location(Spec):
    """Prefer (score > 0) or avoid (score < 0) a node, directly or by rules; and whether the
    nodes it names probe the resource (`resource-discovery`)."""

    location: Name
    resource: Name
    node: Name | None = None
    score: Score | None = None
    rules: list[Rule] = pydantic.Field(default_factory=list)
    role: RoleName | None = None
    resource_discovery: Discovery = Discovery.ALWAYS

    @pydantic.model_validator(mode="after")
    def _node_or_rules(self) -> Location:
        if self.rules and (self.node is not None or self.score is not None):
            raise ValueError("give either node and score, or rules, not both")
        if not self.rules and (self.node is None or self.score is None):
            raise ValueError("needs node and score (or rules)")
        if self.role is Role.PROMOTED and self.resource_discovery is not Discovery.ALWAYS:
            # Pacemaker ignores it there: a promoted-role location only weighs promotion.
            raise ValueError(
                f"resource-discovery {self.resource_discovery} needs a location for every "
                "role: one for the Promoted role only weighs promotion, and probes concern "
                "the resource in any role"
            )
        return self


class Colocation(Spec):
    """Place `resource` relative to `with`: INFINITY together, -INFINITY apart, else prefer."""

    colocation: Name
    resource: Name
    with_: Name = pydantic.Field(alias="with")
    score: Score = INFINITY
    role: RoleName | None = None
    with_role: RoleName | None = None
    influence: bool = True


class OrderKind(enum.StrEnum):
    MANDATORY = "Mandatory"
    OPTIONAL = "Optional"
    SERIALIZE = "Serialize"


ActionName = Literal["start", "stop", "promote", "demote"]


class ResourceSet(Spec):
    resources: Annotated[list[Name], pydantic.Field(min_length=1)]
    sequential: bool = True
    require_all: bool = True
    action: ActionName | None = None
    role: RoleName | None = None


class Order(Spec):
    """`then` may not start (or promote) until `first` has; stops run in reverse."""

    order: Name
    first: Name | None = None
    then: Name | None = None
    first_action: ActionName = "start"
    then_action: ActionName | None = None
    kind: OrderKind = OrderKind.MANDATORY
    symmetrical: bool | None = None
    sets: list[ResourceSet] = pydantic.Field(default_factory=list)

    @pydantic.model_validator(mode="after")
    def _pair_or_sets(self) -> Order:
        if self.sets and (self.first or self.then):
            raise ValueError("give either first and then, or sets, not both")
        if not self.sets and not (self.first and self.then):
            raise ValueError("needs first and then (or sets)")
        return self

    @property
    def is_symmetrical(self) -> bool:
        if self.symmetrical is not None:
            return self.symmetrical
        return self.kind is not OrderKind.SERIALIZE

    @property
    def effective_then_action(self) -> str:
        return self.then_action or self.first_action


Constraint = Annotated[
    Annotated[Location, pydantic.Tag("<location>")]
    | Annotated[Colocation, pydantic.Tag("<colocation>")]
    | Annotated[Order, pydantic.Tag("<order>")],
    pydantic.Discriminator(lambda v: _kind_of(v, ("location", "colocation", "order"))),
]


# ---- cluster-wide --------------------------------------------------------------------------


class NoQuorumPolicy(enum.StrEnum):
    STOP = "stop"
    FREEZE = "freeze"
    IGNORE = "ignore"
    DEMOTE = "demote"


class PlacementStrategy(enum.StrEnum):
    DEFAULT = "default"
    UTILIZATION = "utilization"
    MINIMAL = "minimal"
    BALANCED = "balanced"


class Properties(Spec):
    stonith_enabled: bool = True
    no_quorum_policy: NoQuorumPolicy = NoQuorumPolicy.STOP
    symmetric_cluster: bool = True
    placement_strategy: PlacementStrategy = PlacementStrategy.DEFAULT
    maintenance_mode: bool = False
    stop_all_resources: bool = False
    start_failure_is_fatal: bool = True
    stop_orphan_resources: bool = True
    # Fencing (see docs/fencing.md).
    stonith_action: Literal["reboot", "off"] = "reboot"
    stonith_timeout: Duration = 60.0
    # Fast detection: agents send each other heartbeats every heartbeat-interval; the DC
    # suspects (and, with fencing, fences) a member silent for suspect-after.
    heartbeat_interval: Duration = 0.2
    suspect_after: Duration = 1.0
    # Computes (remote nodes) are suspected after this long instead: fencing one evacuates
    # its instances, and one starved of CPU for a second is alive (docs/compute.md, 6).
    remote_suspect_after: Duration = 3.0
    # After a lost node's lease expired on the server, how long the DC still waits before it
    # counts the node as having stopped its resources itself (watchdog reset latency, clock
    # rate differences).
    self_fence_margin: Duration = 0.5
    # Throttling (docs/control-plane.md), Pacemaker's names. node-action-limit: operations at
    # once on one node (0: 2 × its cores); load-threshold: CPU load (%) above which a node
    # lowers that limit; batch-limit: actions the DC has released and not yet seen done,
    # cluster-wide (0: no limit; fencing is never held back).
    node_action_limit: Annotated[int, pydantic.Field(ge=0)] = 0
    load_threshold: Annotated[int, pydantic.Field(gt=0, le=1000)] = 80
    batch_limit: Annotated[int, pydantic.Field(ge=0)] = 30
    # Resource agents run this much nicer than the agent (0: the same CPU priority).
    resource_nice: Annotated[int, pydantic.Field(ge=0, le=19)] = 10
    # How long the DC waits beyond an operation's own timeout for a node to finish it (and
    # for a node to take a new target at all) before it treats the node as failed.
    cluster_delay: Duration = 20.0
    # A remote node fenced less than this long ago is not given resources even if its agent
    # joined again: Pacemaker's reconnect_interval for hastack's own remote nodes.
    reconnect_interval: Duration = 0.0

    @pydantic.model_validator(mode="after")
    def _detection(self) -> Properties:
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat-interval must be positive")
        # Compared in whole microseconds: 3 × 0.2 is 0.6000000000000001 in floating point,
        # which refused suspect-after 600ms at a 200ms interval.
        if round(self.suspect_after * 1e6) < round(3 * self.heartbeat_interval * 1e6):
            raise ValueError(
                "suspect-after must be at least 3 × heartbeat-interval, or one lost datagram "
                f"gets a node fenced: got {self.suspect_after:g}s < "
                f"3 × {self.heartbeat_interval:g}s"
            )
        if round(self.remote_suspect_after * 1e6) < round(self.suspect_after * 1e6):
            raise ValueError(
                "remote-suspect-after must be at least suspect-after (a compute is never "
                f"judged on a shorter silence than a controller): got "
                f"{self.remote_suspect_after:g}s < {self.suspect_after:g}s"
            )
        return self


_FENCE_AGENT = re.compile(r"^fence_[A-Za-z0-9_-]+$")


# The fencing step that records a fenced compute for evacuation (docs/compute.md): not a
# program but a step the fencer runs itself, the last device of a level after a power device.
EVACUATE_STEP = "hastack:evacuate"


def _fence_agent(value: object) -> object:
    if isinstance(value, str) and value != EVACUATE_STEP and not _FENCE_AGENT.match(value):
        raise ValueError(
            f"not a fence agent name (fence_*, e.g. fence_ipmilan, or {EVACUATE_STEP}): {value!r}"
        )
    return value


class FenceDevice(Spec):
    """One fencing device, run by the fence-agents protocol (key=value lines on stdin)."""

    device: Name
    agent: Annotated[str, pydantic.BeforeValidator(_fence_agent)]
    params: dict[str, ParamValue] = pydantic.Field(default_factory=dict)
    targets: list[Name] = pydantic.Field(default_factory=list)  # empty: every node
    port_map: dict[Name, str] = pydantic.Field(default_factory=dict)  # node -> plug name
    timeout: Duration = 20.0

    def can_fence(self, node: str) -> bool:
        return not self.targets or node in self.targets

    @property
    def is_evacuate_step(self) -> bool:
        return self.agent == EVACUATE_STEP

    def port(self, node: str) -> str:
        return self.port_map.get(node, node)


class FencingSpec(Spec):
    devices: list[FenceDevice] = pydantic.Field(default_factory=list)
    # node -> levels, tried in order; a level succeeds when every device in it succeeds.
    levels: dict[Name, list[list[Name]]] = pydantic.Field(default_factory=dict)

    def levels_for(self, node: str) -> list[list[FenceDevice]]:
        by_id = {d.device: d for d in self.devices}
        if node in self.levels:
            return [[by_id[d] for d in level if d in by_id] for level in self.levels[node]]
        # Without explicit levels: each device that can fence the node is a level of its own
        # (an evacuate step powers nothing off: it only ever follows a power device).
        return [[d] for d in self.devices if d.can_fence(node) and not d.is_evacuate_step]

    def evacuates(self, node: str) -> bool:
        """Is the node marked for evacuation (a level of it ends with an evacuate step)?"""
        return any(level and level[-1].is_evacuate_step for level in self.levels_for(node))


class OpDefaults(Spec):
    timeout: Duration = 20.0


class NodeSpec(Spec):
    node: Name
    attributes: dict[str, ParamValue] = pydantic.Field(default_factory=dict)
    utilization: dict[str, Annotated[int, pydantic.Field(ge=0)]] = pydantic.Field(
        default_factory=dict
    )
    standby: bool = False
    maintenance: bool = False


def _weight(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"a weight is a positive number, got {value!r}")
    return float(value)


class Assignment(Spec):
    """Entities served by the running instances of a clone (docs/assign.md)."""

    assignment: Name
    clone: Name
    replicas: Annotated[int, pydantic.Field(ge=1, le=3)] = 1
    entities: list[Name] = pydantic.Field(default_factory=list)
    weights: dict[Name, Annotated[float, pydantic.BeforeValidator(_weight)]] = pydantic.Field(
        default_factory=dict
    )
    capacity: dict[Name, Annotated[int, pydantic.Field(ge=0)]] = pydantic.Field(
        default_factory=dict
    )
    # Moves in flight at once while `hastack assign rebalance` runs: each is an outage of
    # its entity (release, then grant), so few at a time.
    rebalance_batch: Annotated[int, pydantic.Field(ge=1, le=100)] = 1


class ClusterConfig(Spec):
    properties: Properties = Properties()
    resource_defaults: Meta = _EMPTY_META
    op_defaults: OpDefaults = OpDefaults()
    nodes: list[NodeSpec] = pydantic.Field(default_factory=list)
    resources: list[Resource] = pydantic.Field(default_factory=list)
    constraints: list[Constraint] = pydantic.Field(default_factory=list)
    fencing: FencingSpec = FencingSpec()
    assignments: list[Assignment] = pydantic.Field(default_factory=list)

    # ---- walking the tree --------------------------------------------------------------------

    def walk(self) -> Iterator[Primitive | Group | Clone]:
        """Every resource, top-level ones and everything inside groups and clones."""
        for top in self.resources:
            yield from _walk(top)

    def primitives(self) -> Iterator[Primitive]:
        for r in self.walk():
            if isinstance(r, Primitive):
                yield r

    def find(self, rid: str) -> Primitive | Group | Clone | None:
        for r in self.walk():
            if r.id == rid:
                return r
        return None

    # ---- cross-references ----------------------------------------------------------------

    def reference_problems(self) -> list[tuple[Loc, str]]:
        """What single fields cannot show: duplicate ids, references to nothing, role misuse."""
        problems: list[tuple[Loc, str]] = []
        ids: dict[str, int] = {}
        for index, top in enumerate(self.resources):
            for r in _walk(top):
                if r.id in ids:
                    problems.append(
                        (
                            ("resources", index),
                            f"id {r.id!r} is already used by resources[{ids[r.id]}]",
                        )
                    )
                ids[r.id] = index
            problems.extend(_resource_problems(top, ("resources", index)))
        nodes: set[str] = set()
        for index, n in enumerate(self.nodes):
            if n.node in nodes:
                problems.append((("nodes", index, "node"), f"node {n.node!r} is listed twice"))
            nodes.add(n.node)
        # A remote node's connection resource creates the node it names.
        nodes |= {p.primitive for p in self.primitives() if p.is_remote_connection}
        seen: set[str] = set()
        for index, c in enumerate(self.constraints):
            where: Loc = ("constraints", index)
            cid = _constraint_id(c)
            if cid in seen or cid in ids:
                problems.append((where, f"id {cid!r} is already used"))
            seen.add(cid)
            for field, ref in _constraint_refs(c):
                if ref not in ids:
                    problems.append(((*where, *field), f"no resource named {ref!r}"))
            if isinstance(c, Location) and c.node is not None and c.node not in nodes:
                problems.append(
                    ((*where, "node"), f"no node named {c.node!r} (list it under nodes)")
                )
            if isinstance(c, Colocation):
                if c.resource == c.with_:
                    problems.append((where, "a resource cannot be colocated with itself"))
                for key, role, rid in (
                    ("role", c.role, c.resource),
                    ("with-role", c.with_role, c.with_),
                ):
                    if role in (Role.PROMOTED, Role.UNPROMOTED) and not self._is_promotable(rid):
                        problems.append(
                            (
                                (*where, key),
                                f"role {role} needs a promotable clone; {rid!r} is not one",
                            )
                        )
        problems.extend(self._fencing_problems(nodes))
        problems.extend(self._assignment_problems(nodes))
        return problems

    def _assignment_problems(self, nodes: set[str]) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        names: set[str] = set()
        for index, a in enumerate(self.assignments):
            where: Loc = ("assignments", index)
            if a.assignment in names:
                problems.append(((*where, "assignment"), f"{a.assignment!r} is defined twice"))
            names.add(a.assignment)
            seen: set[str] = set()
            for j, entity in enumerate(a.entities):
                if entity in seen:
                    problems.append(((*where, "entities", j), f"entity {entity!r} is listed twice"))
                seen.add(entity)
            for key, table in (("weights", a.weights), ("capacity", a.capacity)):
                for node in table:
                    if node not in nodes:
                        problems.append(
                            ((*where, key, node), f"no node named {node!r} (list it under nodes)")
                        )
            found = self.find(a.clone)
            if found is None:
                problems.append(((*where, "clone"), f"no resource named {a.clone!r}"))
                continue
            if not isinstance(found, Clone):
                kind = "a group" if isinstance(found, Group) else "a primitive"
                problems.append(
                    (
                        (*where, "clone"),
                        f"{a.clone!r} is {kind}, not a clone: entities are assigned to the "
                        "instances of a clone",
                    )
                )
                continue
            room = self._nodes_for(found, nodes)
            if room is not None and a.replicas > room[0]:
                problems.append(((*where, "replicas"), f"replicas {a.replicas} > {room[1]}"))
            problems.extend(_assign_agent_problems(found, where))
        return problems

    def _nodes_for(self, clone: Clone, nodes: set[str]) -> tuple[int, str] | None:
        """How many nodes can run the clone, as far as the configuration says, and why."""
        ids = {clone.id, *(r.id for r in _walk(clone.resource))}
        if clone.meta.clone_max is not None:
            limit: tuple[int, str] | None = (
                clone.meta.clone_max,
                f"clone-max {clone.meta.clone_max} of {clone.id!r}",
            )
        else:
            limit = None
        if nodes:
            banned = {
                c.node
                for c in self.constraints
                if isinstance(c, Location)
                and c.resource in ids
                and c.node is not None
                and c.score is not None
                and c.score <= -INFINITY
            }
            usable = len(nodes - banned)
            if limit is None or usable < limit[0]:
                why = f"{usable} node(s) that can run {clone.id!r}" + (
                    f" ({len(banned)} banned)" if banned else ""
                )
                limit = (usable, why)
        return limit

    def _fencing_problems(self, nodes: set[str]) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        devices: set[str] = set()
        for index, d in enumerate(self.fencing.devices):
            where: Loc = ("fencing", "devices", index)
            if d.device in devices:
                problems.append(((*where, "device"), f"device {d.device!r} is defined twice"))
            devices.add(d.device)
            for j, target in enumerate(d.targets):
                if target not in nodes:
                    problems.append(
                        ((*where, "targets", j), f"no node named {target!r} (list it under nodes)")
                    )
        for node, levels in self.fencing.levels.items():
            if node not in nodes:
                problems.append(
                    (("fencing", "levels", node), f"no node named {node!r} (list it under nodes)")
                )
            for i, level in enumerate(levels):
                if not level:
                    problems.append(
                        (("fencing", "levels", node, i), "a level needs at least one device")
                    )
                for j, device in enumerate(level):
                    if device not in devices:
                        problems.append(
                            (
                                ("fencing", "levels", node, i, j),
                                f"no fencing device named {device!r}",
                            )
                        )
                problems.extend(self._evacuate_problems(node, i, level))
        problems.extend(self._unevacuated_targets())
        return problems

    def _unevacuated_targets(self) -> list[tuple[Loc, str]]:
        """A compute an evacuate step names that no level of its own evacuates: without a
        level the step never runs (it only ever follows a power device), so the compute would
        be fenced and silently never evacuated (docs/compute.md)."""
        problems: list[tuple[Loc, str]] = []
        for index, d in enumerate(self.fencing.devices):
            if not d.is_evacuate_step:
                continue
            for j, node in enumerate(d.targets):
                if any(d.device in level for level in self.fencing.levels.get(node, [])):
                    continue
                power = [
                    p.device
                    for p in self.fencing.devices
                    if not p.is_evacuate_step and p.can_fence(node)
                ]
                fix = (
                    f"add a level after a device that powers it off, e.g. levels: {node}: "
                    f"[[{power[0]}, {d.device}]]"
                    if power
                    else "no fence device can power it off: add one, and a level "
                    f"{node}: [[POWER-DEVICE, {d.device}]]"
                )
                problems.append(
                    (
                        ("fencing", "devices", index, "targets", j),
                        f"compute {node} cannot be evacuated: the {EVACUATE_STEP} device "
                        f"{d.device!r} names it but no fencing level of {node} runs it; {fix}",
                    )
                )
        return problems

    def _evacuate_problems(self, node: str, index: int, level: list[str]) -> list[tuple[Loc, str]]:
        """A level that evacuates must power the node off first: the evacuate step is its last
        device, after at least one device that is not a step (docs/compute.md)."""
        by_id = {d.device: d for d in self.fencing.devices}
        steps = [
            j for j, name in enumerate(level) if name in by_id and by_id[name].is_evacuate_step
        ]
        if not steps:
            return []
        where: Loc = ("fencing", "levels", node, index)
        if steps != [len(level) - 1]:
            return [
                (
                    where,
                    f"{node}: the {EVACUATE_STEP} step must be the last device of the level, once",
                )
            ]
        power = [n for n in level[:-1] if n in by_id and not by_id[n].is_evacuate_step]
        if not power:
            return [
                (
                    where,
                    f"compute {node} cannot be evacuated: no fence device in this level powers "
                    f"it off before the {EVACUATE_STEP} step (evacuating a host that may still "
                    "run its instances would run them twice)",
                )
            ]
        return []

    def _is_promotable(self, rid: str) -> bool:
        for r in self.walk():
            if (
                isinstance(r, Clone)
                and r.promotable
                and (r.id == rid or any(x.id == rid for x in _walk(r.resource)))
            ):
                return True
        return False


def _walk(r: Primitive | Group | Clone) -> Iterator[Primitive | Group | Clone]:
    yield r
    if isinstance(r, Group):
        yield from r.resources
    elif isinstance(r, Clone):
        yield from _walk(r.resource)


def _resource_problems(r: Primitive | Group | Clone, where: Loc) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if isinstance(r, Primitive | Group) and r.meta.clone_keys_set():
        keys = ", ".join(r.meta.clone_keys_set())
        problems.append(((*where, "meta"), f"{keys} only apply to clones"))
    if isinstance(r, Group):
        for i, member in enumerate(r.resources):
            problems.extend(_resource_problems(member, (*where, "resources", i)))
    if isinstance(r, Clone):
        inner = r.resource
        if inner.meta.clone_keys_set():
            keys = ", ".join(inner.meta.clone_keys_set())
            problems.append(
                ((*where, "resource", "meta"), f"put {keys} on the clone, not inside it")
            )
        if isinstance(inner, Group):
            for i, member in enumerate(inner.resources):
                problems.extend(_resource_problems(member, (*where, "resource", "resources", i)))
        if not r.promotable and (
            r.meta.promoted_max is not None or r.meta.promoted_node_max is not None
        ):
            problems.append(((*where, "meta"), "promoted-max needs promotable: true"))
    return problems


def _assign_agent_problems(clone: Clone, where: Loc) -> list[tuple[Loc, str]]:
    """An instance must be able to confirm that it took or dropped an entity, or release
    before grant would rest on a guess (docs/assign.md)."""
    inner = clone.resource
    primitive = inner if isinstance(inner, Primitive) else inner.resources[0]
    if str(primitive.agent) != "hastack:service":
        return []
    if "assign-cmd" in primitive.params or primitive.params.get("assign-ack") == "true":
        return []
    return [
        (
            (*where, "clone"),
            f"{clone.id!r} runs hastack:service without assign-cmd or assign-ack: true, so its "
            "instances could never confirm that they took or released an entity",
        )
    ]


def _constraint_id(c: Location | Colocation | Order) -> str:
    if isinstance(c, Location):
        return c.location
    if isinstance(c, Colocation):
        return c.colocation
    return c.order


def constraint_references(c: Location | Colocation | Order) -> set[str]:
    """The resources a constraint names."""
    return {name for _, name in _constraint_refs(c)}


def _constraint_refs(c: Location | Colocation | Order) -> list[tuple[Loc, str]]:
    if isinstance(c, Location):
        return [(("resource",), c.resource)]
    if isinstance(c, Colocation):
        return [(("resource",), c.resource), (("with",), c.with_)]
    refs: list[tuple[Loc, str]] = [
        ((name,), r) for name, r in (("first", c.first), ("then", c.then)) if r
    ]
    for i, s in enumerate(c.sets):
        refs.extend((("sets", i, "resources", j), r) for j, r in enumerate(s.resources))
    return refs


def parse_cluster_config(
    text: str,
    source: str,
    *,
    extra_checks: Callable[[ClusterConfig], list[tuple[Loc, str]]] | None = None,
) -> ClusterConfig:
    """Validate a cluster configuration; ConfigError lists every problem with its line.

    `extra_checks` adds checks the pure model cannot make (fence agents installed here).
    """

    def checks(config: ClusterConfig) -> list[tuple[Loc, str]]:
        found = config.reference_problems()
        if extra_checks is not None and not found:
            found += extra_checks(config)
        return found

    return validate(load_yaml(text, source), ClusterConfig, checks=checks)
