"""`hastack node remove` (hastack.ops.nodes) and `hastack rabbitmq status` (hastack.ops.rabbitmq)
on the in-memory store: removal only of an offline node fenced since it last joined, written
once, and what the RabbitMQ agents' records look like to an operator."""

from __future__ import annotations

import json

import pytest

from hastack.errors import HastackError
from hastack.fencing.service import record_fencing
from hastack.model.fencing import FenceRecord
from hastack.model.members import NodeKind, NodeRecord
from hastack.ops.cluster import Cluster
from hastack.ops.nodes import remove_node
from hastack.ops.rabbitmq import rabbitmq_status, render_rabbitmq_status
from hastack.rabbitmq import BrokerReport, BrokerStatus, MemberRecord, QueueInfo
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore


def cluster() -> Cluster:
    return Cluster("c1", MemoryStore(MemoryBackend()), Keys("c1"))


async def join(c: Cluster, node: str) -> None:
    await c.store.put(c.keys.node(node), NodeRecord(node, NodeKind.FULL).encode())


async def fence(c: Cluster, node: str, result: str = "success") -> None:
    record = FenceRecord(node, "off", result, 1, ("power",), "lost", 10.0, 11.0, "n1", 5)
    assert await record_fencing(c.store, c.keys, record, epoch=None)


async def test_a_fenced_offline_node_is_removed_once() -> None:
    c = cluster()
    await join(c, "n3")
    await fence(c, "n3")
    removed = await remove_node(c, "n3")
    assert removed.node == "n3"
    assert await c.store.get(c.keys.node("n3")) is None  # no longer shown as OFFLINE
    value = await c.store.get(c.keys.removed("n3"))
    assert value is not None
    assert json.loads(value.value)["fenced"] == 11.0
    assert value.mod_revision == removed.revision


async def test_removal_refuses_a_node_that_was_not_fenced_since_it_joined() -> None:
    c = cluster()
    await fence(c, "n3")
    await join(c, "n3")  # joined again after that fencing: a new life
    with pytest.raises(HastackError, match="not fenced since it last joined"):
        await remove_node(c, "n3")
    await fence(c, "n3", "failed")
    with pytest.raises(HastackError, match="not fenced since it last joined"):
        await remove_node(c, "n3")
    assert await c.store.get(c.keys.removed("n3")) is None


async def test_removal_refuses_an_online_or_unknown_node() -> None:
    c = cluster()
    await join(c, "n2")
    await fence(c, "n2")
    await c.store.put(c.keys.member("n2"), b"{}")
    with pytest.raises(HastackError, match="online"):
        await remove_node(c, "n2")
    with pytest.raises(HastackError, match="no node 'n9'"):
        await remove_node(c, "n9")


async def test_rabbitmq_status_shows_members_partitions_and_queue_leaders() -> None:
    c = cluster()
    base = c.keys.rabbitmq("rabbit")
    await c.store.put(base + "cluster", json.dumps({"founder": "n1", "at": 1.0}).encode())
    await c.store.put(base + "nodes/n1", MemberRecord("joined", 1.0, "n1").encode())
    await c.store.put(base + "nodes/n3", MemberRecord("forgotten", 9.0, "n1").encode())
    status = BrokerStatus(
        "rabbit@n1", True, ("rabbit@n1", "rabbit@n2"), ("rabbit@n1",), ("rabbit@n2",)
    )
    queue = QueueInfo("q1", "/", "quorum", ("rabbit@n1", "rabbit@n2"), "rabbit@n1")
    report = BrokerReport("n1", 100.0, "running", "", status, (queue,))
    await c.store.put(base + "report/n1", report.encode())
    await c.store.put(base + "report/n2", b"not json")
    (entry,) = await rabbitmq_status(c)
    assert entry.founder == "n1"
    assert entry.members["n3"].state == "forgotten"
    assert entry.queues() == [queue]
    assert entry.problems
    assert "report/n2" in entry.problems[0]
    text = render_rabbitmq_status([entry], now=110.0)
    assert "n3: forgotten by n1" in text
    assert "PARTITIONED from: rabbit@n2" in text
    assert "/q1 [quorum] leader rabbit@n1; members rabbit@n1, rabbit@n2" in text
    assert json.loads(json.dumps(entry.to_json()))["queues"][0]["leader"] == "rabbit@n1"


def test_the_rabbitmq_agent_reads_its_facts_from_one_snapshot() -> None:
    """What `hastack:rabbitmq` knows about each node, from the keys the cluster holds:
    its own records, hastack's membership and status, fencing and removals."""
    from hastack.executor.agents.base import OpRequest
    from hastack.executor.agents.rabbitmq import Params, RabbitmqAgent
    from hastack.model.config import Role
    from hastack.model.fencing import encode_history
    from hastack.model.members import MemberRecord as Member
    from hastack.model.members import StoredKey, decode_snapshot
    from hastack.model.status import NodeReport, ResourceReport
    from hastack.rabbitmq import MemberState

    keys = Keys("c1")
    fence = FenceRecord("n3", "off", "success", 1, ("power",), "lost", 10.0, 11.0, "n1", 5)
    running = NodeReport("n1", resources={"rabbit": ResourceReport(role=Role.STARTED)})
    stored = [
        ("members/n1", Member("n1", NodeKind.FULL).encode(), 20),
        ("nodes/n1", NodeRecord("n1", NodeKind.FULL).encode(), 3),
        ("status/n1", running.encode(), 21),
        ("nodes/n3", NodeRecord("n3", NodeKind.FULL).encode(), 4),
        ("fencing/n3", encode_history([fence]), 30),
        ("removed/n3", b'{"at": 12}', 31),
        ("rabbitmq/rabbit/cluster", b'{"founder": "n1", "at": 1}', 5),
        ("rabbitmq/rabbit/nodes/n1", MemberRecord("joined", 1.0, "n1").encode(), 6),
        ("rabbitmq/rabbit/nodes/n3", MemberRecord("joined", 2.0, "n3").encode(), 7),
        ("rabbitmq/other/nodes/n2", MemberRecord("joined", 2.0, "n2").encode(), 8),
    ]
    snapshot = decode_snapshot(
        40, [StoredKey(name, value, rev, rev, 0) for name, value, rev in stored]
    )
    request = OpRequest("rabbit", "rabbit", "monitor", {"cookie": "c"}, {}, 10.0,
                        cluster={"node": "n1"})  # fmt: skip
    facts, founder, revisions = RabbitmqAgent._facts(snapshot, keys, Params.parse(request))
    assert founder == "n1"
    assert facts["n1"].running
    assert facts["n1"].record is MemberState.JOINED
    assert facts["n3"].record is MemberState.JOINED
    assert not facts["n3"].online
    assert facts["n3"].fenced_revision == 30
    assert facts["n3"].removed_revision == 31
    assert revisions == {"n1": 6, "n3": 7}
    assert "n2" not in revisions  # another resource's records
