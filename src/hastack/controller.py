"""The DC's decisions: from one snapshot to the target of every node. Pure: no I/O.

The DC keeps the transition it is executing (a plan and the state it was computed from), as
Pacemaker does, rather than re-deciding after every completed action: each cycle it checks
the observed state against the state the plan predicts for the actions seen done so far. On
track, it releases the actions whose dependencies are all done; off track (a failure, a node
lost, a configuration change, anything the plan did not foresee), it plans again from what it
observes. A new DC has no transition and simply plans from the present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hastack.assign.decide import AssignDecision, decide_assignments
from hastack.model.config import ClusterConfig, Role
from hastack.model.connectivity import HeldAttributes, ping_windows
from hastack.model.members import ClusterSnapshot, NodeKind
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus, base_id
from hastack.model.targets import NodeTarget, NotifyRequest
from hastack.scheduler import Action, ActionKind, Plan, schedule
from hastack.scheduler.simulate import apply_actions

__all__ = ["Controller", "Decision", "build_state"]


def build_state(
    snapshot: ClusterSnapshot,
    config: ClusterConfig,
    *,
    now: float,
    suspects: frozenset[str] = frozenset(),
    self_fenced: frozenset[str] = frozenset(),
) -> ClusterState:
    """The scheduler's view of the cluster from a snapshot of the store.

    A node that is not online is *unclean* — it may still run what it last reported — until
    one of three things is known: it was fenced (a confirmed success since it last joined),
    its lease expired on the server and the self-fencing margin has passed (`self_fenced`,
    which the DC tracks over time), or it never reported anything active. `suspects` are
    members the DC has stopped hearing heartbeats from: unclean although their lease is
    still alive, so that fencing can act before the lease expires.

    A remote node (a compute), where fencing is configured, is safe only once fenced: its
    lease running out says nothing of what it runs outside the cluster (instances), and its
    fence is what starts their evacuation; so a lost compute that has joined before is
    unclean until fenced, whatever it reported (docs/compute.md). One fenced less than
    `reconnect-interval` ago gets nothing new placed on it even if its agent is back.
    """
    props = config.properties
    fencing_configured = props.stonith_enabled and bool(config.fencing.devices)
    names = set(snapshot.known_nodes) | {n.node for n in config.nodes}
    nodes: dict[str, NodeStatus] = {}
    resources: list[ResourceStatus] = []
    fenced: set[str] = set()
    for name in sorted(names):
        member = snapshot.members.get(name)
        report = snapshot.statuses.get(name)
        record = snapshot.nodes.get(name)
        attributes = dict(member.attributes) if member else {}
        kind = member.kind if member else (record.kind if record else NodeKind.FULL)
        if snapshot.fenced_since_join(name):
            fenced.add(name)
            nodes[name] = NodeStatus(name=name, online=False, attributes=attributes, kind=kind)
            continue  # whatever it reported is gone with it
        # A node counts as online once its agent has probed and reported in this life.
        ready = snapshot.has_reported(name)
        suspect = member is not None and name in suspects
        online = ready and not suspect
        if online and report is not None:
            # Transient attributes count only from a node online in this life: a lost,
            # fenced or restarting node's last report says what may run, not what it wants
            # (docs/attributes.md).
            attributes.update(report.attributes)
        # Back too soon after its fence: a member, but nothing new is placed there yet.
        held = False
        if online and kind is NodeKind.REMOTE and props.reconnect_interval > 0:
            last = snapshot.last_fenced(name)
            held = last is not None and now - last < props.reconnect_interval
        # Entities it served count like resources (docs/assign.md): an instance may be gone
        # from the report while its confirmation of a release never came.
        may_run = report is not None and (bool(report.active()) or report.serves_any())
        remote_needs_fence = kind is NodeKind.REMOTE and fencing_configured and record is not None
        if online:
            unclean = False
        elif member is not None:
            unclean = suspect  # alive by its lease but silent: only fencing can settle it
        elif remote_needs_fence:
            unclean = True  # a lost compute: fenced first, whatever it reported
        else:
            unclean = may_run and name not in self_fenced
        nodes[name] = NodeStatus(
            name=name,
            online=online,
            unclean=unclean,
            shutdown=held,
            attributes=attributes,
            kind=kind,
        )
        if report is None:
            continue
        for instance, r in report.resources.items():
            failure = (r.failed_op or r.last_op) if r.failed else None
            resources.append(
                ResourceStatus(
                    resource=instance,
                    node=name,
                    role=r.role,
                    failed=r.failed,
                    blocked=r.blocked,
                    fail_count=r.fail_count,
                    last_failure=r.last_failure,
                    failed_op=failure.op if failure else None,
                    failed_interval=failure.interval if failure else 0.0,
                )
            )
    return ClusterState(
        nodes=nodes,
        resources=tuple(resources),
        has_quorum=True,
        now=now,
        fenced=frozenset(fenced),
    )


def _shape(state: ClusterState) -> tuple[object, ...]:
    """Every scheduling input the plan's own actions do not change: when the observed state
    and the plan's prediction differ in any of it, the plan is stale. What runs where in
    which role (clone instances by their primitive), failures and fail counts, node states
    and attributes (promotion scores)."""
    online = {n.name for n in state.nodes.values() if n.online}
    running = sorted(
        (base_id(r.resource), r.node, r.role.value, r.failed, r.blocked)
        for r in state.resources
        if r.role is not Role.STOPPED and r.node in online
    )
    counts = sorted(
        (base_id(r.resource), r.node, r.fail_count) for r in state.resources if r.fail_count
    )
    nodes = sorted(
        (
            n.name,
            n.online,
            n.unclean,
            n.shutdown,
            n.standby,
            n.maintenance,
            tuple(sorted(n.attributes.items())),
        )
        for n in state.nodes.values()
    )
    return tuple(running), tuple(counts), tuple(nodes), tuple(sorted(state.fenced))


_OFFLINE = NodeStatus("", online=False)


def _active(state: ClusterState, instance: str, node: str) -> ResourceStatus | None:
    for r in state.resources:
        if (
            r.node == node
            and r.role is not Role.STOPPED
            and (r.resource == instance or base_id(r.resource) == base_id(instance))
        ):
            return r
    return None


def _reflected(action: Action, state: ClusterState) -> bool:
    """Does the observed state show this action done? (Notifications leave no trace in the
    state: their keys in the nodes' reports say when they are done.)"""
    if action.kind is ActionKind.NOTIFY:
        return False
    if action.kind is ActionKind.FENCE:
        return action.node in state.fenced
    found = _active(state, action.instance or "", action.node)
    if action.kind is ActionKind.STOP:
        return found is None
    if action.kind is ActionKind.START:
        return found is not None and not found.failed
    if action.kind is ActionKind.PROMOTE:
        return found is not None and found.role is Role.PROMOTED
    return found is not None and found.role is not Role.PROMOTED  # demote


def _unsettled(
    snapshot: ClusterSnapshot,
    state: ClusterState,
    restamped: Mapping[str, tuple[int, int]] | None = None,
) -> list[str]:
    """Nodes whose word the DC must wait for before it releases anything: online nodes that
    have not finished the work of their current target, and members (alive by their lease,
    not suspected) that have not yet reported what runs on them in this life.

    `restamped` (node -> (R, P), `WrittenTargets.restamps`): this DC wrote the target at R
    with the very work of the older DC's target at P, only to put it under its epoch. A node
    that acknowledged P has finished that work; R asks nothing more of it, so waiting for
    its acknowledgement of R would wait for nothing — a new DC did, for every node, between
    its first decision and its second (0.03-0.08 s of a failover, docs/fencing.md)."""
    out = []
    for node, status in sorted(state.nodes.items()):
        report = snapshot.statuses.get(node)
        revision = snapshot.target_revisions.get(node, 0)
        if status.online:
            # A target from before the node's current life is void: the node will not act on
            # it, and the DC rewrites it (waiting for it would wait for ever).
            # So is one the node refused (an older DC's, once it has seen a newer epoch).
            acked = report.acked if report is not None else 0
            stamp = (restamped or {}).get(node)
            if stamp is not None and stamp[0] == revision and acked >= stamp[1]:
                acked = revision  # its work was done under the older DC's stamp
            if (
                report is not None
                and acked < revision
                and report.refused != revision
                and not snapshot.target_is_void(node)
            ):
                out.append(node)
        elif node in snapshot.members and not status.unclean and node not in state.fenced:
            out.append(node)
    return out


def _with_prerequisites(plan: Plan, done: set[int]) -> set[int]:
    by_id = {a.id: a for a in plan.actions}
    out = set(done)
    todo = list(done)
    while todo:
        for before in by_id[todo.pop()].after:
            if before not in out:
                out.add(before)
                todo.append(before)
    return out


@dataclass
class _Transition:
    plan: Plan
    base: ClusterState
    config_revision: int
    key: str = ""  # `<epoch>.<serial>`: notification keys are `<key>.<action id>`
    done: set[int] = field(default_factory=set)
    released: set[int] = field(default_factory=set)  # put in a target at least once

    def notified(self, snapshot: ClusterSnapshot) -> set[int]:
        """NOTIFY actions whose keys the recipients report as run."""
        out = set()
        for a in self.plan.actions:
            if a.kind is ActionKind.NOTIFY:
                report = snapshot.statuses.get(a.node)
                if report is not None and f"{self.key}.{a.id}" in report.notified:
                    out.add(a.id)
        return out


@dataclass(frozen=True)
class Decision:
    targets: Mapping[str, NodeTarget]
    plan: Plan
    ready: tuple[Action, ...]
    replanned: bool
    reason: str
    hold: bool = False  # write nothing this cycle: a node is still working on its target
    # Nodes that did not finish (or take) their target in time: treated as failed this cycle
    # (docs/control-plane.md), each with the one line saying why.
    overdue: Mapping[str, str] = field(default_factory=dict)
    # Work assignment (docs/assign.md): the maps to write with the targets, and why.
    assignments: AssignDecision = field(default_factory=AssignDecision)


class Controller:
    """The DC's memory between cycles: the transition under way. Deterministic, no I/O."""

    def __init__(self) -> None:
        self._transition: _Transition | None = None
        self._serial = 0  # transitions planned under this DC
        # When this DC first saw each node without a member key (monotonic seconds).
        self._gone_since: dict[str, float] = {}
        # Nodes the DC waits for: what it last saw of their progress, and since when.
        self._waiting: dict[str, tuple[object, float]] = {}
        # Ping attributes as the DC acts on them (docs/connectivity.md).
        self._ping = HeldAttributes()

    def _hold_ping_attributes(
        self, snapshot: ClusterSnapshot, config: ClusterConfig, mono: float
    ) -> ClusterSnapshot:
        """The snapshot with the ping attributes the DC acts on (docs/connectivity.md):
        their changes gathered from every node over one probe round's spread."""
        windows = ping_windows(config)
        if not windows and not self._ping.held:
            return snapshot
        current = {n: r.attributes for n, r in snapshot.statuses.items()}
        held = self._ping.view(windows, current, mono)
        if all(all(r.attributes.get(k) == v for k, v in held[n].items())
               for n, r in snapshot.statuses.items()):  # fmt: skip
            return snapshot
        statuses = {
            n: dataclasses.replace(r, attributes={**r.attributes, **held[n]})
            for n, r in snapshot.statuses.items()
        }
        return dataclasses.replace(snapshot, statuses=statuses)

    def self_fenced(
        self, snapshot: ClusterSnapshot, config: ClusterConfig, mono: float
    ) -> frozenset[str]:
        """Nodes whose lease is gone since at least the self-fencing margin."""
        known = set(snapshot.known_nodes) | {n.node for n in config.nodes}
        for name in list(self._gone_since):
            if name in snapshot.members:
                del self._gone_since[name]
        for name in known - set(snapshot.members):
            self._gone_since.setdefault(name, mono)
        margin = config.properties.self_fence_margin
        return frozenset(n for n, since in self._gone_since.items() if mono - since >= margin)

    def decide(
        self,
        snapshot: ClusterSnapshot,
        config: ClusterConfig,
        *,
        epoch: int,
        now: float,
        mono: float = 0.0,
        suspects: frozenset[str] = frozenset(),
        restamped: Mapping[str, tuple[int, int]] | None = None,
    ) -> Decision:
        self_fenced = self.self_fenced(snapshot, config, mono)
        snapshot = self._hold_ping_attributes(snapshot, config, mono)
        state = build_state(snapshot, config, now=now, suspects=suspects, self_fenced=self_fenced)
        busy = _unsettled(snapshot, state, restamped)
        overdue = self._overdue(snapshot, config, busy, mono)
        if overdue:
            # Given up on: failed like a silent node (fenced where fencing can, its resources
            # blocked until then), so the rest of the cluster moves on.
            suspects = suspects | frozenset(overdue)
            state = build_state(
                snapshot, config, now=now, suspects=suspects, self_fenced=self_fenced
            )
            busy = _unsettled(snapshot, state, restamped)
        if busy:
            # An operation may still be under way there: deciding now could start something
            # the node is about to start (or stop) itself. Wait for its acknowledgement.
            plan = self._transition.plan if self._transition else Plan((), ())
            return Decision(
                {},
                plan,
                (),
                False,
                f"waiting for {', '.join(busy)} to finish",
                hold=True,
                overdue=overdue,
            )
        transition = self._transition
        replanned = False
        reason = "following the plan"
        if transition is None or transition.config_revision != snapshot.config_revision:
            reason = "new configuration" if transition is not None else "no plan yet"
            transition = None
        elif transition.plan.expires_at is not None and state.now >= transition.plan.expires_at:
            # A failure-timeout ran out: nothing observed changes with it (the fail count
            # stays as the node reported it), so only the clock says the plan is stale. A
            # broker banned after a failed start stayed banned while its peers waited for it.
            reason = "a failure expired (failure-timeout)"
            transition = None
        else:
            # Progress only grows: an action seen done stays done (a recovery's stop is undone
            # by its start), and whatever a done action waited for is done too.
            done = set(transition.done)
            done |= {a.id for a in transition.plan.actions if _reflected(a, state)}
            done |= transition.notified(snapshot)
            done = _with_prerequisites(transition.plan, done)
            predicted = apply_actions(
                transition.base,
                transition.plan,
                [a for a in transition.plan.actions if a.id in done],
            )
            if _shape(predicted) != _shape(state):
                reason = "the cluster changed in a way the plan did not foresee"
                transition = None
            else:
                transition.done = done
        if transition is None:
            plan = schedule(config, state)
            self._serial += 1
            transition = _Transition(
                plan, state, snapshot.config_revision, key=f"{epoch}.{self._serial}"
            )
            replanned = True
        self._transition = transition
        ready = tuple(
            a
            for a in transition.plan.actions
            if a.id not in transition.done and set(a.after) <= transition.done
        )
        ready = _withhold_unprobed(ready, snapshot, state)
        ready = _within_batch_limit(ready, transition, config.properties.batch_limit)
        transition.released |= {a.id for a in ready}
        targets = _targets(
            state, transition.plan, ready, epoch, snapshot.config_revision, transition.key
        )
        # Entities go where the map and release-before-grant say, on the same view.
        starting = frozenset(
            (base_id(a.instance), a.node)
            for a in transition.plan.actions
            if a.kind is ActionKind.START and a.instance and a.id not in transition.done
        )
        assigned = decide_assignments(
            snapshot, config, state, epoch=epoch, now=now, starting=starting
        )
        targets = {
            node: dataclasses.replace(target, assigned=assigned.grants.get(node, {}))
            for node, target in targets.items()
        }
        if replanned:
            reason = f"planned {len(transition.plan.actions)} action(s): {reason}"
        return Decision(
            targets,
            transition.plan,
            ready,
            replanned,
            reason,
            overdue=overdue,
            assignments=assigned,
        )

    def _overdue(
        self, snapshot: ClusterSnapshot, config: ClusterConfig, busy: list[str], mono: float
    ) -> dict[str, str]:
        """Nodes that have made no progress for longer than they may: `cluster-delay` to take
        a target (or to report at all, then to probe, in a new life), plus the longest timeout
        of the operations (probes too) they report under way. Progress — a new report, a new
        target taken, an operation started or ended — starts the clock again; the clock is
        the DC's own."""
        delay = config.properties.cluster_delay
        out: dict[str, str] = {}
        waiting: dict[str, tuple[object, float]] = {}
        for node in busy:
            report = snapshot.statuses.get(node)
            seen = (
                snapshot.target_revisions.get(node, 0),
                snapshot.members[node].revision if node in snapshot.members else 0,
                report.updated if report else None,
                report.working if report else None,
                tuple(sorted(report.pending.items())) if report else (),
            )
            previous = self._waiting.get(node)
            since = previous[1] if previous is not None and previous[0] == seen else mono
            waiting[node] = (seen, since)
            longest = (
                max((p.timeout for p in report.pending.values()), default=0.0) if report else 0.0
            )
            allowed = delay + longest
            if mono - since > allowed:
                what = _lagging(snapshot, node)
                out[node] = f"{node} {what} for {mono - since:.0f}s (allowed {allowed:g}s)"
        self._waiting = waiting
        return out

    def forget(self) -> None:
        """Drop the transition (we stopped being DC)."""
        self._transition = None


def _lagging(snapshot: ClusterSnapshot, node: str) -> str:
    """What an overdue node has not done (it is a member, or the DC would not wait)."""
    report = snapshot.statuses.get(node)
    if report is None or report.updated < snapshot.members[node].joined_at:
        return "has not reported since it joined"
    doing = ", ".join(f"{p.op} {i}" for i, p in sorted(report.pending.items()))
    if report.probing:
        return f"has not finished probing ({doing or 'no probe reported under way'})"
    if report.working < snapshot.target_revisions.get(node, 0):
        return "has not taken its target"
    return f"has not finished its target ({doing or 'nothing reported under way'})"


def _within_batch_limit(
    ready: tuple[Action, ...], transition: _Transition, limit: int
) -> tuple[Action, ...]:
    """Pacemaker's batch-limit: at most `limit` actions released and not yet seen done,
    cluster-wide (0: no limit). What was released stays released; new actions go out in plan
    order as room frees up. Fencing is never held back."""
    if limit <= 0:
        return ready
    in_flight = sum(
        1 for a in ready if a.id in transition.released and a.kind is not ActionKind.FENCE
    )
    room = limit - in_flight
    out = []
    for action in ready:
        if action.kind is ActionKind.FENCE or action.id in transition.released:
            out.append(action)
        elif room > 0:
            out.append(action)
            room -= 1
    return tuple(out)


def _withhold_unprobed(
    ready: Iterable[Action], snapshot: ClusterSnapshot, state: ClusterState
) -> tuple[Action, ...]:
    """A start waits until every online node has probed the resource: it might already run.
    A node that does not probe it by rule (resource-discovery: never there, or exclusive to
    other nodes) says so, and is not waited for: the rule is the operator's word that it does
    not run there."""
    online = [
        snapshot.statuses[n] for n, s in state.nodes.items() if s.online and n in snapshot.statuses
    ]
    out = []
    for action in ready:
        if action.kind is ActionKind.START and action.instance is not None:
            primitive = base_id(action.instance)
            if any(
                primitive not in report.probed and primitive not in report.unprobed
                for report in online
            ):
                continue
        out.append(action)
    return tuple(out)


def _targets(
    state: ClusterState,
    plan: Plan,
    ready: Iterable[Action],
    epoch: int,
    config_revision: int,
    key: str = "",
) -> dict[str, NodeTarget]:
    roles: dict[str, dict[str, Role]] = {n: {} for n, s in state.nodes.items() if s.online}
    for r in state.resources:
        if r.node in roles and r.role is not Role.STOPPED:
            roles[r.node][r.resource] = r.role
    planned_role = {a.instance: a.role for a in plan.assignments}
    notify: dict[str, list[NotifyRequest]] = {n: [] for n in roles}
    for action in ready:
        if action.kind is ActionKind.NOTIFY:
            if action.node in notify and action.instance and action.notify is not None:
                variables = dict(action.notify.variables)
                request = NotifyRequest(f"{key}.{action.id}", action.instance, variables)
                notify[action.node].append(request)
            continue
        node_roles = roles.get(action.node)
        if node_roles is None or action.instance is None:
            continue
        instance = action.instance
        existing = next(
            (k for k in node_roles if k == instance or base_id(k) == base_id(instance)), None
        )
        if action.kind is ActionKind.STOP:
            if existing is not None:
                del node_roles[existing]
        elif action.kind is ActionKind.START:
            role = planned_role.get(instance, Role.STARTED)
            node_roles[instance] = Role.UNPROMOTED if role is Role.PROMOTED else role
        elif action.kind is ActionKind.PROMOTE:
            node_roles.pop(existing or instance, None)
            node_roles[instance] = Role.PROMOTED
        elif action.kind is ActionKind.DEMOTE:
            node_roles.pop(existing or instance, None)
            node_roles[instance] = Role.UNPROMOTED
    unmanaged: dict[str, set[str]] = {n: set() for n in roles}
    for a in plan.assignments:
        if not a.managed and a.node in unmanaged:
            unmanaged[a.node].add(a.instance)
            for r in state.resources:
                if r.node == a.node and base_id(r.resource) == a.primitive:
                    unmanaged[a.node].add(r.resource)
    return {
        node: NodeTarget(
            epoch, config_revision, node_roles, frozenset(unmanaged[node]), tuple(notify[node])
        )
        for node, node_roles in roles.items()
    }
