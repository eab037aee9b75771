"""The pure parts of membership: decoding the store, the election step, quorum arithmetic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hastack.membership.election import StepKind, next_step
from hastack.membership.quorum import majority, quorum_view
from hastack.model.members import (
    ClusterSnapshot,
    DcRecord,
    MemberRecord,
    NodeKind,
    NodeRecord,
    StoredKey,
    decode_snapshot,
)


def key(name: str, value: bytes, *, lease: int = 0, create: int = 5, mod: int = 5) -> StoredKey:
    return StoredKey(name, value, create, mod, lease)


def test_decode_round_trip() -> None:
    member = MemberRecord("n1", NodeKind.FULL, ("127.0.0.11",), {"rack": "a"}, 1.0, 42)
    snap = decode_snapshot(
        9,
        [
            key("members/n1", member.encode(), lease=77),
            key("nodes/n1", NodeRecord("n1", NodeKind.FULL, ("127.0.0.11",)).encode()),
            key("nodes/n2", NodeRecord("n2", NodeKind.REMOTE).encode()),
            key("dc", DcRecord("n1", 0, 77, 3.0).encode(), lease=77, create=8),
        ],
    )
    assert snap.problems == ()
    assert snap.members["n1"].lease == 77
    assert snap.members["n1"].attributes == {"rack": "a"}
    assert snap.dc == DcRecord("n1", 8, 77, 3.0)
    assert snap.known_nodes == ["n1", "n2"]
    assert snap.is_online("n1")
    assert not snap.is_online("n2")


def test_garbage_is_reported_not_fatal() -> None:
    good = MemberRecord("n1", NodeKind.FULL).encode()
    snap = decode_snapshot(
        3,
        [
            key("members/n1", good, lease=1),
            key("members/n2", b"\xff\xfe not json", lease=1),
            key("members/n3", b"[1, 2]", lease=1),
            key("members/n4", b'{"kind": "giant"}', lease=1),
            key("members/bad name", good, lease=1),
            key("members/n5", b'{"name": "n6"}', lease=1),
            key("dc", b'{"node": "n1"}', lease=0),
            key("future/thing", b"anything"),
        ],
    )
    assert list(snap.members) == ["n1"]
    assert snap.dc is None
    assert "future/thing" in snap.other
    problems = "\n".join(snap.problems)
    assert "members/n2: not valid JSON" in problems
    assert "members/n3: expected a JSON object, found list" in problems
    assert "members/n4: unknown node kind 'giant'" in problems
    assert "members/bad name: 'bad name' is not a valid node name" in problems
    assert "members/n5: record names node 'n6' but sits under 'n5'" in problems
    assert "dc: is not attached to a lease" in problems
    assert len(snap.problems) == 6


@given(
    st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [b"{}", b"[]", b'{"resources": 5}', b'{"epoch": 1, "resources": {"a": 1}}']
        ),
    ),
    st.sampled_from(
        ["members/n1", "nodes/n1", "dc", "config", "status/n1", "target/n1", "fencing/n1"]
    ),
)
def test_decoding_never_raises(value: bytes, name: str) -> None:
    snap = decode_snapshot(1, [key(name, value, lease=3)])
    decoded = (
        len(snap.members)
        + len(snap.nodes)
        + len(snap.statuses)
        + len(snap.targets)
        + (snap.dc is not None)
        + (snap.config is not None)
        + len(snap.fencing)
    )
    assert len(snap.problems) + decoded == 1


def snapshot(*, members: dict[str, int], dc: DcRecord | None) -> ClusterSnapshot:
    return ClusterSnapshot(
        revision=10,
        dc=dc,
        members={n: MemberRecord(n, NodeKind.FULL, lease=lease) for n, lease in members.items()},
        nodes={},
        other={},
        problems=(),
    )


def test_campaign_when_no_dc() -> None:
    snap = snapshot(members={"n1": 1, "n2": 2}, dc=None)
    step = next_step(snap, node="n1", kind=NodeKind.FULL, lease=1, held_epoch=None)
    assert step.kind is StepKind.CAMPAIGN


def test_remote_nodes_never_campaign() -> None:
    snap = snapshot(members={"c1": 5}, dc=None)
    step = next_step(snap, node="c1", kind=NodeKind.REMOTE, lease=5, held_epoch=None)
    assert step.kind is StepKind.WAIT


def test_follow_and_lead() -> None:
    snap = snapshot(members={"n1": 1, "n2": 2}, dc=DcRecord("n2", 40, 2))
    assert (
        next_step(snap, node="n1", kind=NodeKind.FULL, lease=1, held_epoch=None).kind
        is StepKind.FOLLOW
    )
    assert (
        next_step(snap, node="n2", kind=NodeKind.FULL, lease=2, held_epoch=40).kind is StepKind.LEAD
    )
    # an unseen win (indeterminate campaign answer) is recognised by our lease on the key
    assert (
        next_step(snap, node="n2", kind=NodeKind.FULL, lease=2, held_epoch=None).kind
        is StepKind.LEAD
    )


def test_step_down_when_key_changed_under_us() -> None:
    newer = snapshot(members={"n1": 1, "n2": 2}, dc=DcRecord("n2", 50, 2))
    step = next_step(newer, node="n1", kind=NodeKind.FULL, lease=1, held_epoch=40)
    assert step.kind is StepKind.STEP_DOWN
    assert "n2 at epoch 50" in step.reason
    # our own key but a different epoch (we re-won after losing it): not the epoch we held
    same_node = snapshot(members={"n1": 1}, dc=DcRecord("n1", 60, 1))
    assert (
        next_step(same_node, node="n1", kind=NodeKind.FULL, lease=1, held_epoch=40).kind
        is StepKind.STEP_DOWN
    )


def test_rejoin_when_member_key_missing_or_stale() -> None:
    snap = snapshot(members={"n2": 2}, dc=None)
    assert (
        next_step(snap, node="n1", kind=NodeKind.FULL, lease=1, held_epoch=None).kind
        is StepKind.REJOIN
    )
    stale = snapshot(members={"n1": 9}, dc=None)
    assert (
        next_step(stale, node="n1", kind=NodeKind.FULL, lease=1, held_epoch=None).kind
        is StepKind.REJOIN
    )


@given(st.integers(min_value=1, max_value=9), st.integers(min_value=0, max_value=9))
def test_quorum_is_a_strict_majority(total: int, healthy: int) -> None:
    if healthy > total:
        return
    view = quorum_view(healthy, total)
    # two disjoint groups can never both be quorate
    assert not (view.is_quorate and quorum_view(total - healthy, total).is_quorate)
    assert view.is_quorate == (2 * healthy > total)
    assert majority(total) == view.needed


def test_quorum_examples() -> None:
    assert quorum_view(3, 3).failures_tolerated == 1
    assert quorum_view(2, 3).is_quorate
    assert not quorum_view(1, 3).is_quorate
    assert quorum_view(3, 5).failures_tolerated == 0
