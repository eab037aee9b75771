"""The executor's decisions, apart from the loop that carries them out.

What this node knows of an instance is its `ResourceReport`, the very value it publishes;
every result makes a new one:

    after_operation(report, op, result)   start, stop, promote, demote: the target's steps
    after_probe(report, result)           the one-off monitor that adopts what already runs
    after_monitor(report, result)         a recurring monitor: None while there is nothing
                                          to say, and monitoring goes on
    after_notify(report, result)          a clone notification: at most a last operation
    after_cleanup(report)                 `hastack resource cleanup`: failures forgotten

`local_steps` is each instance's next step toward the DC's target; `op_request` is what one
operation asks of its agent (timeout, CRM_meta values, the instance's name); `monitors_for`
and `MonitorSchedule` say which recurring monitors run and when; `unprobed` says which
primitives this node does not probe at all (resource-discovery).

Pure: the clock's reading comes in as `now`, an agent's metadata as an argument. The asyncio
loop that runs agents, holds the locks and publishes is `hastack.executor.lrm`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from hastack.model.config import (
    Clone,
    ClusterConfig,
    Discovery,
    Group,
    Location,
    OnFail,
    Op,
    OpName,
    Primitive,
    Role,
)
from hastack.model.members import NodeKind
from hastack.model.ocf import OcfRc
from hastack.model.operations import AgentMetadata, OpRequest, OpResult
from hastack.model.scores import INFINITY
from hastack.model.state import base_id
from hastack.model.status import LastOp, ResourceReport
from hastack.model.targets import NodeTarget
from hastack.scheduler.rules import location_names, node_attributes

__all__ = [
    "Host",
    "MonitorSchedule",
    "Placement",
    "TargetOp",
    "after_cleanup",
    "after_monitor",
    "after_notify",
    "after_operation",
    "after_probe",
    "cleanup_covers",
    "exclusive_name",
    "exclusive_promoted",
    "is_worth_reporting",
    "local_steps",
    "monitors_for",
    "next_step",
    "op_request",
    "op_timeout",
    "placements",
    "probe_names",
    "rule_attributes",
    "unprobed",
]

# The operations that move an instance toward its target.
TargetOp = Literal["start", "stop", "promote", "demote"]

_ACTIVE = frozenset({Role.STARTED, Role.UNPROMOTED})
# Probe answers that mean the resource cannot run on this node at all.
_CANNOT_RUN_HERE = frozenset({OcfRc.ERR_INSTALLED, OcfRc.ERR_CONFIGURED, OcfRc.ERR_ARGS})


# ---- where a primitive sits ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a primitive sits in the configuration tree: what its agent needs to know."""

    primitive: Primitive
    clone: Clone | None

    @property
    def unique_clone(self) -> bool:
        """As the scheduler reads it: globally-unique, which defaults to true when more
        than one instance may share a node."""
        if self.clone is None:
            return False
        meta = self.clone.meta
        if meta.globally_unique is not None:
            return meta.globally_unique
        return (meta.clone_node_max or 0) > 1

    @property
    def anonymous_clone(self) -> bool:
        return self.clone is not None and not self.unique_clone

    @property
    def promotable(self) -> bool:
        return self.clone is not None and self.clone.promotable


def placements(config: ClusterConfig) -> dict[str, Placement]:
    """Every primitive of the configuration by id, with the clone it belongs to."""
    out: dict[str, Placement] = {}
    for top in config.resources:
        clone = top if isinstance(top, Clone) else None
        inner = top.resource if isinstance(top, Clone) else top
        members = inner.resources if isinstance(inner, Group) else [inner]
        for p in members:
            out[p.id] = Placement(p, clone)
    return out


def probe_names(placement: Placement, config: ClusterConfig, known_nodes: int = 0) -> list[str]:
    """The instance names a probe looks for: a globally-unique clone's every instance, since
    any of them may run here; anything else under its primitive's name."""
    primitive = placement.primitive.id
    if placement.clone is None or placement.anonymous_clone:
        return [primitive]
    count = clone_max(placement.clone, config, known_nodes)
    return [f"{primitive}:{i}" for i in range(count)]


def rule_attributes(
    config: ClusterConfig, node: str, kind: NodeKind, reported: Mapping[str, str]
) -> dict[str, str]:
    """This node's attributes as location rules see them, as the DC's scheduler sees them:
    `reported` is what its agent publishes (its member record's attributes, then its status
    report's)."""
    configured = next((n.attributes for n in config.nodes if n.node == node), {})
    return node_attributes(node, kind, configured, reported)


def unprobed(
    config: ClusterConfig, node: str, attributes: Mapping[str, str]
) -> dict[str, Discovery]:
    """The primitives this node does not probe, each with the resource-discovery that says
    so: NEVER (never probed here, though it may be started here) or EXCLUSIVE (its exclusive
    locations name other nodes only: it is neither probed nor run here). Every primitive not
    listed is probed. `attributes`: `rule_attributes`.

    A location reaches what the scheduler applies it to: a primitive's own, its group's,
    and for anything inside a clone every location of the clone or of what is inside it.
    Locations for the Promoted role only weigh promotion and say nothing about probes. Where
    several locations name this node, the strongest discovery wins (exclusive, never,
    always); a primitive with any exclusive location is probed only where one names it.
    """
    scope: dict[str, str] = {}  # resource id -> whose locations reach it (a clone for its insides)
    chains: dict[str, tuple[str, ...]] = {}  # primitive -> the scopes whose locations apply
    for top in config.resources:
        inner = top.resource if isinstance(top, Clone) else top
        members = inner.resources if isinstance(inner, Group) else [inner]
        if isinstance(top, Clone):
            for r in (top, inner, *members):
                scope[r.id] = top.id
            chains.update((p.id, (top.id,)) for p in members)
        else:
            scope.update((r.id, r.id) for r in (inner, *members))
            group = (inner.id,) if isinstance(inner, Group) else ()
            chains.update((p.id, (p.id, *group)) for p in members)
    reaching: dict[str, list[Location]] = {}
    for c in config.constraints:
        if (
            isinstance(c, Location)
            and c.resource_discovery is not Discovery.ALWAYS
            and c.role is not Role.PROMOTED
        ):
            reaching.setdefault(scope.get(c.resource, c.resource), []).append(c)
    out: dict[str, Discovery] = {}
    for primitive, chain in chains.items():
        locations = [c for key in chain for c in reaching.get(key, ())]
        if not locations:
            continue
        exclusive = False
        here = Discovery.ALWAYS
        for c in locations:
            exclusive = exclusive or c.resource_discovery is Discovery.EXCLUSIVE
            if c.resource_discovery.strength > here.strength and location_names(
                c, node, attributes
            ):
                here = c.resource_discovery
        if exclusive and here is not Discovery.EXCLUSIVE:
            out[primitive] = Discovery.EXCLUSIVE
        elif not exclusive and here is Discovery.NEVER:
            out[primitive] = Discovery.NEVER
    return out


def clone_max(clone: Clone, config: ClusterConfig, known_nodes: int = 0) -> int:
    """clone-max, or as the scheduler counts by default: one per node it knows."""
    if clone.meta.clone_max is not None:
        return clone.meta.clone_max
    return max(1, known_nodes, len(config.nodes))


def exclusive_name(primitive: str, placement: Placement | None) -> str | None:
    """The name under which an instance is exclusive while started, if it is: a primitive
    outside clones; an orphan too, since nothing says otherwise."""
    if placement is None:
        return primitive
    return placement.primitive.id if placement.clone is None else None


def exclusive_promoted(placement: Placement | None) -> str | None:
    """The name under which an instance's promoted role is exclusive: a promotable clone with
    one promoted instance in the whole cluster."""
    if placement is None or placement.clone is None or not placement.clone.promotable:
        return None
    if (placement.clone.meta.promoted_max or 1) != 1:
        return None
    return f"{placement.clone.id}[Promoted]"


def cleanup_covers(resource: str, name: str, primitive: str, placement: Placement | None) -> bool:
    """Whether a cleanup of `resource` (an instance, primitive or clone) covers this instance."""
    if resource in (name, primitive, base_id(name)):
        return True
    return placement is not None and placement.clone is not None and placement.clone.id == resource


# ---- an instance's report after a result ----------------------------------------------------


def effective_rc(rc: int) -> int:
    """OCF 1.1's degraded codes mean running in that role: no recovery to take."""
    if rc == OcfRc.DEGRADED:
        return OcfRc.SUCCESS
    if rc == OcfRc.DEGRADED_PROMOTED:
        return OcfRc.RUNNING_PROMOTED
    return rc


def _started(promotable: bool) -> Role:
    return Role.UNPROMOTED if promotable else Role.STARTED


def _failed(report: ResourceReport, now: float, *, fatal: bool = False) -> ResourceReport:
    """The failure of `report.last_op`: counted once, or banning this node when fatal."""
    return replace(
        report,
        failed=True,
        failed_op=report.last_op,
        last_failure=now,
        fail_count=INFINITY if fatal else min(INFINITY, report.fail_count + 1),
    )


def after_operation(
    report: ResourceReport,
    op: TargetOp,
    result: OpResult,
    *,
    now: float,
    promotable: bool = False,
    start_failure_is_fatal: bool = True,
) -> ResourceReport:
    """The report after a start, stop, promote or demote. A failure is reported, never
    repaired here: the DC reads it and plans the recovery."""
    last = LastOp(op, result.rc, result.reason, now, result.duration)
    report = replace(report, last_op=last)
    ok = result.rc == OcfRc.SUCCESS
    if op == "start":
        # A failed start may have left something behind: it is active (it needs a stop), and
        # with start-failure-is-fatal (the default) this node is banned until a cleanup.
        report = replace(report, role=_started(promotable))
        if ok:
            return replace(report, failed=False)
        return _failed(report, now, fatal=start_failure_is_fatal)
    if op == "stop":
        if ok:
            return replace(report, role=Role.STOPPED, failed=False)
        # It may still run, and nothing here can tell: leave it alone (fencing or a person
        # must act) and never run it on this node again before a cleanup.
        return _failed(replace(report, blocked=True), now, fatal=True)
    if op == "promote":
        report = replace(report, role=Role.PROMOTED)
    elif op == "demote":
        report = replace(report, role=Role.UNPROMOTED)
    return report if ok else _failed(report, now)


def after_probe(
    report: ResourceReport, result: OpResult, *, now: float, promotable: bool = False
) -> ResourceReport:
    """The report after a probe (a monitor with interval 0): what already runs is adopted."""
    rc = effective_rc(result.rc)
    last = LastOp("probe", result.rc, result.reason, now, result.duration)
    if rc == OcfRc.SUCCESS:
        return replace(report, role=_started(promotable), last_op=last)
    if rc == OcfRc.RUNNING_PROMOTED:
        return replace(report, role=Role.PROMOTED, last_op=last)
    if rc == OcfRc.NOT_RUNNING:
        # Nothing to say about a resource that is simply not here.
        return replace(report, role=Role.STOPPED, last_op=None)
    if rc in _CANNOT_RUN_HERE:
        # It cannot run here at all: stopped, and this node banned until cleanup.
        return replace(
            report,
            role=Role.STOPPED,
            last_op=last,
            fail_count=INFINITY,
            last_failure=now,
            failed_op=last,
        )
    # Unknown state (an error, a failed promoted): active and failed, so the DC stops it
    # before starting it anywhere.
    role = Role.PROMOTED if rc == OcfRc.FAILED_PROMOTED else Role.STARTED
    return _failed(replace(report, role=role, last_op=last), now)


def after_monitor(
    report: ResourceReport,
    result: OpResult,
    *,
    now: float,
    interval: float,
    on_fail: OnFail | None = None,
) -> ResourceReport | None:
    """The report after a recurring monitor found the instance not in its role, or None when
    there is nothing to report (all is well, or on-fail is ignore): monitoring goes on.

    After a failure monitoring stops: the DC decides the recovery, and the monitor starts
    again with the role the recovery leaves."""
    expected = OcfRc.RUNNING_PROMOTED if report.role is Role.PROMOTED else OcfRc.SUCCESS
    if effective_rc(result.rc) == expected or on_fail is OnFail.IGNORE:
        return None
    why = result.reason or OcfRc.describe(result.rc)
    last = LastOp("monitor", result.rc, why, now, result.duration, interval)
    return _failed(replace(report, last_op=last), now)


def after_notify(report: ResourceReport, result: OpResult, *, now: float) -> ResourceReport:
    """A failed notification is the instance's last operation, not its failure: its monitor
    judges the resource itself. A successful one leaves no trace in the report."""
    if result.rc == OcfRc.SUCCESS:
        return report
    return replace(report, last_op=LastOp("notify", result.rc, result.reason, now, result.duration))


def after_cleanup(report: ResourceReport) -> ResourceReport:
    """Failures forgotten (fail count, last failure, the failed operation, a block); the role
    stays what it is until the probe that follows every cleanup says otherwise."""
    return replace(
        report, failed=False, blocked=False, fail_count=0, last_failure=None, failed_op=None
    )


def is_worth_reporting(report: ResourceReport) -> bool:
    """An instance that is stopped and has nothing to say is left out of the node's report."""
    return (
        report.role is not Role.STOPPED
        or report.failed
        or report.fail_count > 0
        or report.last_op is not None
    )


# ---- toward the target ----------------------------------------------------------------------


def local_steps(
    target: NodeTarget,
    reports: Mapping[str, ResourceReport],
    busy: Collection[str] = (),
) -> list[tuple[str, TargetOp]]:
    """The next operation for each instance that is not where the target wants it, by name.

    One step at a time per instance: a target of Promoted from Stopped is a start now and a
    promote once the start has succeeded; Stopped from Promoted is a demote, then a stop.
    An instance the target does not list is to be stopped; unmanaged, blocked and busy ones
    get no step.
    """
    steps: list[tuple[str, TargetOp]] = []
    for name in sorted(set(target.resources) | set(reports)):
        if name in target.unmanaged or name in busy:
            continue
        report = reports.get(name)
        if report is not None and report.blocked:
            continue
        current = report.role if report is not None else Role.STOPPED
        op = next_step(current, target.resources.get(name, Role.STOPPED))
        if op is not None:
            steps.append((name, op))
    return steps


def next_step(current: Role, desired: Role) -> TargetOp | None:
    """The one operation that brings `current` a step closer to `desired`, if any."""
    if desired is Role.STOPPED:
        if current is Role.PROMOTED:
            return "demote"
        return "stop" if current in _ACTIVE else None
    if current is Role.STOPPED:
        return "start"
    if desired is Role.PROMOTED and current in _ACTIVE:
        return "promote"
    if desired in _ACTIVE and current is Role.PROMOTED:
        return "demote"
    return None


# ---- what an operation asks of its agent ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Host:
    """This node as its agents see it."""

    node: str
    netns: str | None = None  # every operation runs inside this network namespace
    state_dir: str = "/var/lib/hastack"
    # node, address, name, etcd-endpoints, etcd-root: see OpRequest.cluster.
    cluster: Mapping[str, str] = field(default_factory=dict)
    known_nodes: int = 0  # nodes the cluster knows (a clone's default clone-max)


def _op_config(p: Primitive, name: str, interval: float) -> Op | None:
    for op in p.ops:
        if op.name.value == name and op.interval == interval:
            return op
    return None


def op_timeout(
    p: Primitive,
    op: str,
    interval: float,
    metadata: AgentMetadata | None,
    config: ClusterConfig,
) -> float:
    """Seconds `op` may take: the operation's own configuration (a probe is the monitor with
    interval 0), else the agent's metadata, else op-defaults."""
    configured = _op_config(p, "monitor" if op == "probe" else op, interval)
    if configured is not None and configured.timeout is not None:
        return configured.timeout
    action = "monitor" if op == "probe" else op
    return (metadata.timeouts.get(action) if metadata else None) or config.op_defaults.timeout


def op_request(
    name: str,
    placement: Placement,
    op: str,
    *,
    config: ClusterConfig,
    metadata: AgentMetadata | None,
    host: Host,
    interval: float = 0.0,
    extra: Mapping[str, str] | None = None,
) -> OpRequest | OpResult:
    """Everything the agent needs for `op` on instance `name`, or the result of an operation
    that cannot run (a start missing a parameter its agent requires).

    `op` is start, stop, promote, demote, monitor, notify, or probe (sent as a monitor with
    interval 0). The CRM_meta values are Pacemaker's, so OCF agents run unchanged; `extra`
    adds more (a notification's variables). An anonymous clone's instance is named by its
    primitive: the agent cannot tell it from its peers, and need not.
    """
    p = placement.primitive
    if op == "start" and metadata is not None:
        missing = sorted(metadata.required - set(p.params))
        if missing:
            return OpResult(
                OcfRc.ERR_CONFIGURED, f"required parameter(s) missing: {', '.join(missing)}"
            )
    timeout = op_timeout(p, op, interval, metadata, config)
    action = "monitor" if op == "probe" else op
    meta = {
        "timeout": str(int(timeout * 1000)),
        "interval": str(int(interval * 1000)),
        "name": action,
        "on_node": host.node,  # as Pacemaker passes it (CRM_meta_on_node)
    }
    if placement.clone is not None:
        meta.update(_clone_meta(placement, name, config, host.known_nodes))
    meta.update(extra or {})
    return OpRequest(
        instance=p.id if placement.anonymous_clone else name,
        primitive=p.id,
        op=action,
        params=dict(p.params),
        meta=meta,
        timeout=timeout,
        interval=interval,
        netns=host.netns,
        state_dir=host.state_dir,
        cluster=host.cluster,
        nice=config.properties.resource_nice,
    )


def _clone_meta(
    placement: Placement, name: str, config: ClusterConfig, known_nodes: int
) -> dict[str, str]:
    c = placement.clone
    assert c is not None
    tail = name.rpartition(":")[2]
    meta = {
        "clone": tail if tail.isdigit() else "0",
        "clone_max": str(clone_max(c, config, known_nodes)),
        "clone_node_max": str(c.meta.clone_node_max or 1),
        "globally_unique": "true" if placement.unique_clone else "false",
    }
    if c.promotable:
        meta["promoted_max"] = str(c.meta.promoted_max or 1)
        meta["promoted_node_max"] = str(c.meta.promoted_node_max or 1)
    meta["notify"] = "true" if c.meta.notify else "false"
    return meta


# ---- recurring monitors ---------------------------------------------------------------------


def monitors_for(p: Primitive, role: Role) -> list[Op]:
    """The recurring monitors that run while an instance of `p` is in `role`: those for that
    role, and those for any role unless a promoted instance has a monitor of its own."""
    if role is Role.STOPPED:
        return []
    promoted_has_own = any(o.name is OpName.MONITOR and o.role is Role.PROMOTED for o in p.ops)
    out = []
    for op in p.ops:
        if op.name is not OpName.MONITOR or op.interval <= 0 or not op.enabled:
            continue
        if op.role is not None and not _role_matches(op.role, role):
            continue
        if op.role is None and role is Role.PROMOTED and promoted_has_own:
            continue
        out.append(op)
    return out


def _role_matches(wanted: Role, current: Role) -> bool:
    if wanted in _ACTIVE:
        return current in _ACTIVE
    return wanted is current


@dataclass(frozen=True, slots=True)
class MonitorSchedule:
    """When each of an instance's recurring monitors is next due, on the monotonic clock.

    A monitor is next due one interval after the moment its turn was last taken (before it
    ran, or was skipped because an operation held the resource): a late wake-up or a slow
    monitor pushes that monitor's later turns back, and never makes them run back to back.
    """

    intervals: tuple[float, ...]
    due: tuple[float, ...]

    @classmethod
    def starting(
        cls, intervals: Collection[float], now: float, spread: float = 1.0
    ) -> MonitorSchedule:
        """`spread` in [0.5, 1]: the first turn comes that fraction of an interval after
        `now`, so resources started together do not monitor together for ever."""
        return cls(tuple(intervals), tuple(now + i * spread for i in intervals))

    def next(self) -> tuple[int, float]:
        """The monitor due first (the first listed among equals) and when."""
        index = min(range(len(self.due)), key=self.due.__getitem__)
        return index, self.due[index]

    def ran(self, index: int, now: float) -> MonitorSchedule:
        """The schedule once monitor `index` came due at `now` (whether it ran or was skipped)."""
        due = list(self.due)
        due[index] = now + self.intervals[index]
        return replace(self, due=tuple(due))
