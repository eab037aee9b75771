"""A cluster in memory around the DC's `Controller`, for tests of its decisions.

It keeps what the store would hold (member keys, node records, status reports, targets,
fencing history, one revision counter) and plays the other parts: the DC agent writes the
targets of each decision as `agent._write_targets` does (only what changed, nothing while it
holds), and each node's executor carries out its whole target when told to, step by step with
the executor's own `local_steps`, then acknowledges it. Every operation succeeds unless a test
makes one fail. Pure and deterministic: time is whatever the test says it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from hastack.controller import Controller, Decision, build_state
from hastack.executor.transitions import (
    after_operation,
    is_worth_reporting,
    local_steps,
    placements,
    rule_attributes,
    unprobed,
)
from hastack.model.assign import AssignmentRecord, AssignRole, RebalanceRequest
from hastack.model.config import ClusterConfig, Role
from hastack.model.fencing import FenceRecord
from hastack.model.members import (
    ClusterSnapshot,
    DcRecord,
    MemberRecord,
    NodeKind,
    NodeRecord,
)
from hastack.model.operations import OpResult
from hastack.model.state import base_id
from hastack.model.status import LastOp, NodeReport, ResourceReport
from hastack.model.targets import NodeTarget, WrittenTargets
from hastack.scheduler import Plan, schedule

__all__ = ["SimCluster", "action_text"]

ACTIVE = (Role.STARTED, Role.UNPROMOTED, Role.PROMOTED)


def action_text(decision: Decision) -> list[str]:
    """The released actions as `start vip n1`, `fence n2`."""
    return [
        f"{a.kind.value} {a.instance} {a.node}" if a.instance else f"{a.kind.value} {a.node}"
        for a in decision.ready
    ]


@dataclass
class _Node:
    name: str
    member: bool = True  # its member key exists (its lease is alive)
    record_revision: int = 0  # nodes/<name> mod_revision: when it last joined
    member_revision: int = 0  # members/<name> create_revision
    joined_at: float = 0.0  # when this life of its agent joined (wall clock)
    attributes: dict[str, str] = field(default_factory=dict)
    # What runs there as its executor knows it, and what its status key says (the same,
    # except while operations are under way: `begin`).
    resources: dict[str, ResourceReport] = field(default_factory=dict)
    reported: dict[str, ResourceReport] = field(default_factory=dict)
    in_flight: list[tuple[str, str]] = field(default_factory=list)
    probed: frozenset[str] = frozenset()
    unprobed: frozenset[str] = frozenset()
    acked: int = 0
    working: int = 0  # the revision of the target it took on in this life
    refused: int = 0  # the revision of the last target it refused (an older DC's)
    notified: tuple[str, ...] = ()
    updated: float = 0.0
    # Work assignment: what its instances serve (the truth) and what its report says.
    serving: dict[str, dict[str, AssignRole]] = field(default_factory=dict)
    served: dict[str, dict[str, AssignRole]] = field(default_factory=dict)
    status_revision: int = 0  # when its status key was last written


class SimCluster:
    def __init__(
        self,
        config: ClusterConfig,
        nodes: Iterable[str],
        *,
        running: Mapping[str, Mapping[str, Role]] | None = None,
        attributes: Mapping[str, Mapping[str, str]] | None = None,
        now: float = 1000.0,
        remote: Iterable[str] = (),
    ) -> None:
        self.remote = frozenset(remote)  # nodes of kind remote (computes)
        self.revision = 0
        self.now = now
        self.mono = 0.0
        self.config = config
        self.config_revision = self._bump()
        self.nodes: dict[str, _Node] = {}
        self.targets: dict[str, NodeTarget] = {}
        self.target_revisions: dict[str, int] = {}
        self.fencing: dict[str, list[FenceRecord]] = {}
        self.fencing_revisions: dict[str, int] = {}
        self.assignments: dict[str, AssignmentRecord] = {}
        self.assign_entities: dict[str, frozenset[str]] = {}
        self.rebalance_requests: dict[str, RebalanceRequest] = {}
        for name in nodes:
            node = _Node(name, attributes=dict((attributes or {}).get(name, {})))
            self.nodes[name] = node
            self._join(node)
            for instance, role in (running or {}).get(name, {}).items():
                node.resources[instance] = ResourceReport(role=role)
            node.reported = dict(node.resources)
        self.controller = Controller()
        self.epoch = 0
        self.dc = next(iter(self.nodes))
        # What the DC agent remembers of its writes (`WrittenTargets`): its restamps. A test
        # may turn them off (the DC waits for every acknowledgement, as before).
        self.written = WrittenTargets()
        self.restamping = True
        self.written_now: list[str] = []  # the nodes whose targets the last `write` wrote
        self.new_dc()

    # ---- the store --------------------------------------------------------------------------

    def _bump(self) -> int:
        self.revision += 1
        return self.revision

    def snapshot(self) -> ClusterSnapshot:
        members = {
            n.name: MemberRecord(
                n.name,
                self.kind(n.name),
                attributes=dict(n.attributes),
                joined_at=n.joined_at,
                revision=n.member_revision,
            )
            for n in self.nodes.values()
            if n.member
        }
        records = {
            n.name: NodeRecord(n.name, self.kind(n.name), revision=n.record_revision)
            for n in self.nodes.values()
        }
        statuses = {
            n.name: NodeReport(
                n.name,
                epoch=self.epoch,
                updated=n.updated,
                resources=dict(n.reported),
                probed=n.probed,
                unprobed=n.unprobed,
                acked=n.acked,
                working=n.working,
                refused=n.refused,
                notified=n.notified,
                served={k: dict(v) for k, v in n.served.items()},
            )
            for n in self.nodes.values()
        }
        return ClusterSnapshot(
            revision=self.revision,
            dc=DcRecord(self.dc, self.epoch, lease=1),
            members=members,
            nodes=records,
            other={},
            problems=(),
            config=self.config,
            config_revision=self.config_revision,
            statuses=statuses,
            targets=dict(self.targets),
            target_revisions=dict(self.target_revisions),
            fencing={k: list(v) for k, v in self.fencing.items()},
            fencing_revisions=dict(self.fencing_revisions),
            assignments=dict(self.assignments),
            assign_entities=dict(self.assign_entities),
            rebalance_requests=dict(self.rebalance_requests),
            status_revisions={n.name: n.status_revision for n in self.nodes.values()},
        )

    def kind(self, name: str) -> NodeKind:
        return NodeKind.REMOTE if name in self.remote else NodeKind.FULL

    # ---- the DC -----------------------------------------------------------------------------

    def new_dc(self) -> None:
        """The DC is replaced: a fresh controller under a new epoch (it remembers nothing)."""
        self.controller = Controller()
        self.epoch = self._bump()
        self.written = WrittenTargets()

    def decide(self, suspects: Iterable[str] = ()) -> Decision:
        return self.controller.decide(
            self.snapshot(),
            self.config,
            epoch=self.epoch,
            now=self.now,
            mono=self.mono,
            suspects=frozenset(suspects),
            restamped=self.written.restamps() if self.restamping else None,
        )

    def write(self, decision: Decision) -> None:
        """Write the decision's targets as the DC agent does."""
        self.written_now = []
        if decision.hold:
            return
        for node, target in sorted(decision.targets.items()):
            current = self.targets.get(node)
            revision = self.target_revisions.get(node, 0)
            taken = self.nodes[node].working == revision > 0
            if (
                current is None
                or current.epoch != self.epoch
                or not target.stands_in(current, taken=taken)
            ):
                # As the agent: the same work as an older DC's target for this life of the
                # node, only put under this epoch, is a restamp.
                older = self.target_revisions.get(node, 0)
                restamp = (
                    current is not None
                    and current.epoch != self.epoch
                    and target.same_work(current, taken=taken)
                    and older > self.nodes[node].member_revision
                )
                self.targets[node] = target
                self.target_revisions[node] = self._bump()
                self.written_now.append(node)
                self.written.record(
                    self.epoch,
                    self.target_revisions[node],
                    {node: target},
                    {node: older} if restamp else None,
                )
        for node in sorted(set(self.targets) - set(decision.targets)):
            del self.targets[node]
            del self.target_revisions[node]
        for name, record in decision.assignments.records.items():
            stored = self.assignments.get(name)
            assert record.revision == (stored.revision if stored else 0), "map written blind"
            self.assignments[name] = replace(record, revision=self._bump())

    def step(self, suspects: Iterable[str] = ()) -> Decision:
        decision = self.decide(suspects)
        self.write(decision)
        return decision

    def state_plan(self) -> Plan:
        """What a scheduler run on the current state would do (nothing, once converged)."""
        return schedule(self.config, build_state(self.snapshot(), self.config, now=self.now))

    # ---- the nodes --------------------------------------------------------------------------

    def _join(self, node: _Node, *, reported: bool = True) -> None:
        node.member = True
        node.record_revision = self._bump()
        node.member_revision = node.record_revision
        node.joined_at = self.now
        node.acked = 0
        node.working = 0
        node.notified = ()
        if reported:
            self.report(node.name)

    def report(self, name: str) -> None:
        """The node's agent has probed everything (but what resource-discovery keeps it from
        looking for) and reports in this life."""
        node = self.nodes[name]
        attributes = rule_attributes(self.config, name, NodeKind.FULL, node.attributes)
        node.unprobed = frozenset(unprobed(self.config, name, attributes))
        node.probed = frozenset(placements(self.config)) - node.unprobed
        node.reported = dict(node.resources)
        node.updated = self.now
        node.status_revision = self._bump()

    def begin(self, name: str) -> None:
        """The node starts the steps of its current target but finishes none of them yet: its
        report does not change, while what it starts or promotes may already be active."""
        node = self.nodes[name]
        target = self.targets.get(name)
        if node.in_flight or not node.member or target is None or self.fenced(name):
            return
        instances = self._instances(node, target)
        node.working = self.target_revisions[name]
        node.in_flight = local_steps(target, instances)
        self._operate(
            instances, [(i, op) for i, op in node.in_flight if op in ("start", "promote")]
        )
        node.resources = {k: v for k, v in instances.items() if is_worth_reporting(v)}
        # Entities newly granted may be served already; those taken away not yet released.
        for assignment, roles in target.assigned.items():
            serving = node.serving.setdefault(assignment, {})
            for entity, role in roles.items():
                if serving.get(entity) is not AssignRole.ACTIVE:
                    serving[entity] = role

    def execute(self, name: str) -> None:
        """The node finishes what it had begun, then carries out its current target, every
        step succeeding, and reports it done."""
        node = self.nodes[name]
        target = self.targets.get(name)
        if not node.member or target is None or self.fenced(name):
            return
        instances = self._instances(node, target)
        self._operate(instances, node.in_flight)
        node.in_flight = []
        while steps := local_steps(target, instances):
            self._operate(instances, steps)
        node.resources = {k: v for k, v in instances.items() if is_worth_reporting(v)}
        node.reported = dict(node.resources)
        node.serving = {k: dict(v) for k, v in target.assigned.items() if v}
        node.served = {k: dict(v) for k, v in node.serving.items()}
        node.notified = (*node.notified, *(n.key for n in target.notify))
        node.acked = node.working = self.target_revisions[name]
        node.updated = self.now
        node.status_revision = self._bump()

    def answer(self, name: str) -> None:
        """The node answers for its current target without taking it on, as an executor does
        for a target made for a configuration it has already replaced: acknowledged, nothing
        of it done (`working` stays)."""
        node = self.nodes[name]
        if not node.member or name not in self.targets:
            return
        node.acked = self.target_revisions[name]
        node.updated = self.now
        node.status_revision = self._bump()

    def _instances(self, node: _Node, target: NodeTarget) -> dict[str, ResourceReport]:
        """The node's reports, named as the executor names them for this target."""
        reports = dict(node.resources)
        _adopt_clone_names(target, reports, self.config)
        return reports

    def _operate(
        self, reports: dict[str, ResourceReport], steps: Iterable[tuple[str, str]]
    ) -> None:
        """Each step succeeds, as the executor's own transitions record a success."""
        where = placements(self.config)
        for instance, op in steps:
            placement = where.get(base_id(instance))
            reports[instance] = after_operation(
                reports.get(instance, ResourceReport()),
                op,  # type: ignore[arg-type]
                OpResult(0),
                now=self.now,
                promotable=placement is not None and placement.promotable,
            )

    def lose(self, name: str) -> None:
        """Its lease expires: the member key goes, its last report stays. It self-fenced
        before that (the agent's promise): it serves no entity any more."""
        self.nodes[name].member = False
        self.nodes[name].serving = {}
        self._bump()

    def join(self, name: str, *, reported: bool = True) -> None:
        """A new life of the node's agent: it rejoins and, unless `reported` is false,
        reports after probing (after a fencing, nothing runs there any more)."""
        node = self.nodes[name]
        if self.fenced(name):
            node.resources, node.reported, node.in_flight = {}, {}, []
            node.serving, node.served = {}, {}
        if not reported:
            node.updated = self.now - 1  # what it reported in its previous life
        self._join(node, reported=reported)

    def fenced(self, name: str) -> bool:
        """Fenced since it last joined (as `ClusterSnapshot.fenced_since_join`)."""
        history = self.fencing.get(name)
        return (
            bool(history)
            and history[-1].succeeded
            and self.fencing_revisions[name] > self.nodes[name].record_revision
        )

    def fence(self, name: str) -> None:
        """A fencing device confirms the node is off (its member key stays until its lease
        expires: `lose`)."""
        record = FenceRecord(
            name, "off", "success", 1, ("dev",), "test", self.now, self.now, self.dc, self.epoch
        )
        self.fencing.setdefault(name, []).append(record)
        self.fencing_revisions[name] = self._bump()

    def fail(self, name: str, instance: str) -> None:
        """A recurring monitor finds the instance failed (it still counts as active)."""
        node = self.nodes[name]
        r = node.resources[instance]
        op = LastOp("monitor", 1, "failed", self.now, interval=10.0)
        node.resources[instance] = replace(
            r,
            failed=True,
            fail_count=r.fail_count + 1,
            last_failure=self.now,
            last_op=op,
            failed_op=op,
        )
        node.reported[instance] = node.resources[instance]
        node.updated = self.now
        node.status_revision = self._bump()

    def unprobe(self, name: str, primitives: Iterable[str]) -> None:
        node = self.nodes[name]
        node.probed = node.probed - set(primitives)
        self._bump()

    def set_config(self, config: ClusterConfig) -> None:
        self.config = config
        self.config_revision = self._bump()

    # ---- what runs where --------------------------------------------------------------------

    def serving_active(self) -> dict[str, list[str]]:
        """`assignment/entity` -> nodes whose instances may serve it actively now (every node
        not fenced since)."""
        out: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if self.fenced(node.name):
                continue
            for name, roles in node.serving.items():
                for entity, role in roles.items():
                    if role is AssignRole.ACTIVE:
                        out.setdefault(f"{name}/{entity}", []).append(node.name)
        return out

    def active(self) -> dict[str, list[tuple[str, Role]]]:
        """instance -> (node, role) wherever it may be active (operations under way
        included), on every node not fenced since."""
        out: dict[str, list[tuple[str, Role]]] = {}
        for node in self.nodes.values():
            if self.fenced(node.name):
                continue
            for instance, r in node.resources.items():
                if r.role in ACTIVE:
                    out.setdefault(instance, []).append((node.name, r.role))
        return out


def _adopt_clone_names(
    target: NodeTarget, reports: dict[str, ResourceReport], config: ClusterConfig
) -> None:
    """As the executor does: an anonymous clone's instance here answers to whatever number
    the DC gives it."""
    where = placements(config)
    for name in target.resources:
        placement = where.get(base_id(name))
        if placement is None or not placement.anonymous_clone or name in reports:
            continue
        other = next((k for k in reports if base_id(k) == base_id(name)), None)
        if other is not None:
            reports[name] = reports.pop(other)
