"""Liveness after faults: the DC never waits for ever on a node (docs/control-plane.md)."""

from __future__ import annotations

from hastack.controller import Controller
from hastack.model.config import ClusterConfig, Role, parse_cluster_config
from hastack.model.members import ClusterSnapshot, DcRecord, MemberRecord, NodeKind, NodeRecord
from hastack.model.status import NodeReport, PendingOp, ResourceReport
from hastack.model.targets import NodeTarget

CONFIG = parse_cluster_config(
    """\
properties: {stonith-enabled: false}
nodes: [{node: n1}, {node: n2}]
resources:
  - {primitive: vip, agent: "hastack:vip", params: {ip: 10.9.9.9}}
""",
    "c.yaml",
)


def snapshot(
    config: ClusterConfig,
    *,
    member_revisions: dict[str, int],
    targets: dict[str, tuple[int, NodeTarget]],
    reports: dict[str, NodeReport],
) -> ClusterSnapshot:
    return ClusterSnapshot(
        revision=100,
        dc=DcRecord("n2", epoch=52, lease=2),
        members={
            n: MemberRecord(n, NodeKind.FULL, joined_at=1.0, revision=r)
            for n, r in member_revisions.items()
        },
        nodes={n: NodeRecord(n, NodeKind.FULL, revision=r) for n, r in member_revisions.items()},
        other={},
        problems=(),
        config=config,
        config_revision=7,
        statuses=reports,
        targets={n: t for n, (_, t) in targets.items()},
        target_revisions={n: r for n, (r, _) in targets.items()},
    )


def report(node: str, *, acked: int, running: dict[str, Role] | None = None) -> NodeReport:
    return NodeReport(
        node=node,
        updated=10.0,
        resources={k: ResourceReport(role=v) for k, v in (running or {}).items()},
        probed=frozenset({"vip"}),
        acked=acked,
    )


def test_a_target_from_before_the_nodes_current_life_is_not_waited_for() -> None:
    """The lab's wedge: the new DC wrote n1's target (revision 60) while n1 was cut off; n1
    rejoined (member key at 70) and ignores it; its last acknowledgement is older (40)."""
    stale = NodeTarget(epoch=52, config_revision=7, resources={"vip": Role.STARTED})
    snap = snapshot(
        CONFIG,
        member_revisions={"n1": 70, "n2": 3},
        targets={"n1": (60, stale), "n2": (61, NodeTarget(52, 7))},
        reports={"n1": report("n1", acked=40), "n2": report("n2", acked=61)},
    )
    assert snap.target_is_void("n1")
    assert snap.current_target("n1") is None
    assert not snap.target_is_void("n2")
    decision = Controller().decide(snap, CONFIG, epoch=52, now=20.0)
    assert not decision.hold, decision.reason
    # The negative control: the same target written in n1's current life is waited for.
    live = snapshot(
        CONFIG,
        member_revisions={"n1": 50, "n2": 3},
        targets={"n1": (60, stale), "n2": (61, NodeTarget(52, 7))},
        reports={"n1": report("n1", acked=40), "n2": report("n2", acked=61)},
    )
    waiting = Controller().decide(live, CONFIG, epoch=52, now=20.0)
    assert waiting.hold
    assert waiting.reason == "waiting for n1 to finish"


FENCED = parse_cluster_config(
    """\
properties: {stonith-enabled: true, cluster-delay: 20s}
nodes: [{node: n1}, {node: n2}]
fencing:
  devices: [{device: d, agent: fence_hastack_local, targets: [n1, n2]}]
resources:
  - {primitive: vip, agent: "hastack:vip", params: {ip: 10.9.9.9}}
""",
    "c.yaml",
)


def working(node: str, *, updated: float, pending: dict[str, PendingOp]) -> NodeReport:
    return NodeReport(
        node=node,
        updated=updated,
        resources={"vip": ResourceReport(role=Role.STARTED)},
        probed=frozenset({"vip"}),
        acked=40,
        working=60,
        pending=pending,
    )


def test_a_node_that_never_finishes_is_given_up_on_after_its_timeout_and_cluster_delay() -> None:
    target = NodeTarget(epoch=52, config_revision=7, resources={"vip": Role.STARTED})
    start = {"vip": PendingOp("start", since=9.0, timeout=10.0)}

    def snap(updated: float) -> ClusterSnapshot:
        return snapshot(
            FENCED,
            member_revisions={"n1": 50, "n2": 3},
            targets={"n1": (60, target), "n2": (61, NodeTarget(52, 7))},
            reports={
                "n1": working("n1", updated=updated, pending=start),
                "n2": report("n2", acked=61),
            },
        )

    controller = Controller()
    for mono in (100.0, 120.0, 129.9):  # 20 s of cluster-delay + the start's 10 s
        decision = controller.decide(snap(10.0), FENCED, epoch=52, now=20.0, mono=mono)
        assert decision.hold, mono
        assert not decision.overdue
    given_up = controller.decide(snap(10.0), FENCED, epoch=52, now=20.0, mono=130.5)
    assert not given_up.hold
    assert given_up.overdue == {
        "n1": "n1 has not finished its target (start vip) for 30s (allowed 30s)"
    }
    assert [(a.kind.value, a.node) for a in given_up.ready] == [("fence", "n1")]


def test_progress_starts_the_clock_again() -> None:
    target = NodeTarget(epoch=52, config_revision=7, resources={"vip": Role.STARTED})
    controller = Controller()
    for step, mono in enumerate((100.0, 125.0, 150.0, 175.0)):
        snap = snapshot(
            FENCED,
            member_revisions={"n1": 50, "n2": 3},
            targets={"n1": (60, target), "n2": (61, NodeTarget(52, 7))},
            reports={
                # a new report every 25 s: slow, but moving
                "n1": working("n1", updated=10.0 + step, pending={}),
                "n2": report("n2", acked=61),
            },
        )
        decision = controller.decide(snap, FENCED, epoch=52, now=20.0, mono=mono)
        assert decision.hold
        assert not decision.overdue
