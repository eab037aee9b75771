"""A node's report in parts (model/status.py, store/status.py): split and assembled it is the
report written whole; a publish writes the head and what changed; every reader assembles the
same report; the fencing rule still compares with the node's last report."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.model.config import Role
from hastack.model.fencing import FenceRecord, encode_history
from hastack.model.members import ClusterSnapshot, StoredKey, decode_snapshot
from hastack.model.status import (
    PARTS,
    LastOp,
    NodeReport,
    PendingOp,
    ResourceReport,
    decode_status,
    decode_status_keys,
    part_count,
    part_of,
    split_status,
)
from hastack.proxy.sources import ClusterSource
from hastack.store import PutOp
from hastack.store.keys import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.mirror import Mirror
from hastack.store.status import StatusWriter, delete_status
from hastack.store.types import Compare, DeleteOp, Op, TxnResult, WatchBatch
from helpers import snapshot_fields

KEYS = Keys("c")


def bench_like(probed: int = 1000, running: int = 85) -> NodeReport:
    """A report like a compute's in bench/scale.py: every primitive probed, some running."""
    names = [f"dummy-{i:04d}" for i in range(probed)]
    return NodeReport(
        node="n1",
        epoch=7,
        updated=1700000000.25,
        acked=40,
        working=40,
        resources={
            name: ResourceReport(
                role=Role.STARTED,
                last_op=LastOp("monitor", 0, at=1700000000.0, duration=0.01, interval=10.0),
            )
            for name in names[:running]
        },
        attributes={"pingd": "100"},
        probed=frozenset(names),
        notified=("7.2.5",),
    )


# ---- pure: split and assemble --------------------------------------------------------------


def test_golden_split() -> None:
    """The exact values written for a small report: a head without the per-name fields, and
    one part per hash bucket holding its names."""
    report = NodeReport(
        node="n1",
        epoch=3,
        updated=5.5,
        resources={
            "vip": ResourceReport(role=Role.STARTED, last_op=LastOp("start", 0, at=5.0)),
            "web:1": ResourceReport(role=Role.STOPPED, failed=True, fail_count=2),
        },
        attributes={"pingd": "1"},
        probed=frozenset({"vip", "web"}),
        unprobed=frozenset({"far"}),
        pending={"vip": PendingOp("monitor", 5.0, 20.0)},
    )
    head, parts = split_status(report)
    assert json.loads(head) == {
        "node": "n1",
        "epoch": 3,
        "acked": 0,
        "working": 0,
        "refused": 0,
        "pending": {"vip": {"op": "monitor", "since": 5.0, "timeout": 20.0}},
        "notified": [],
        "updated": 5.5,
        "attributes": {"pingd": "1"},
    }
    # Three primitives: one part. At 64 parts, `web:1` goes with `web`.
    assert part_count(report) == 1
    assert (part_of("vip"), part_of("web"), part_of("web:1"), part_of("far")) == (
        "22",
        "11",
        "11",
        "36",
    )
    assert parts == {
        "00": b'{"probed":["vip","web"],"resources":{"vip":{"last-op":{"at":5.0,"duration":0.0,'
        b'"op":"start","rc":0},"role":"Started"},"web:1":{"fail-count":2,"failed":true,'
        b'"role":"Stopped"}},"unprobed":["far"]}',
    }
    assert decode_status_keys("n1", head, parts) == report == decode_status("n1", report.encode())


def test_a_whole_document_still_reads_as_before() -> None:
    """A report written whole at `status/<node>` (an older agent, the tests' fixtures) is a
    head with its own names: it assembles to what it always decoded to."""
    report = bench_like(20, 5)
    assert decode_status_keys("n1", report.encode(), {}) == report


def test_the_parts_are_small_and_bounded() -> None:
    """At 1,000 resources the head and any part are a few hundred bytes where the whole
    report is ~15 KiB; never more parts than PARTS; about PER_PART primitives a part."""
    report = bench_like()
    head, parts = split_status(report)
    assert len(report.encode()) > 14_000
    assert len(parts) == part_count(report) == 32
    assert [part_count(bench_like(n, 0)) for n in (0, 32, 33, 64, 65, 2048, 2049, 10_000)] == [
        1,
        1,
        2,
        2,
        4,
        64,
        64,
        64,
    ]
    assert len(head) < 400
    assert max(len(v) for v in parts.values()) < 1_200


def test_a_name_in_two_places_is_an_error_naming_the_key() -> None:
    head, parts = split_status(bench_like(10, 2))
    name, value = next(iter(parts.items()))
    other = "ff" if name != "ff" else "fe"
    with pytest.raises(ValueError, match=rf"status/n1: part '{other}': .* is also elsewhere"):
        decode_status_keys("n1", head, {**parts, other: value})
    with pytest.raises(ValueError, match=rf"status/n1/{name}: 'probed' must be a list"):
        decode_status_keys("n1", head, {**parts, name: b'{"probed": "x"}'})
    with pytest.raises(ValueError, match=r"status/n1/zz: unknown field 'node'"):
        decode_status_keys("n1", head, {"zz": b'{"node": "n1"}'})


names = st.sampled_from(["vip", "web", "web:0", "web:1", "db:0", "db", "x-1", "y", "z:3"])
floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
last_ops = st.builds(
    LastOp,
    op=st.sampled_from(["start", "stop", "monitor", "probe"]),
    rc=st.integers(0, 9),
    reason=st.sampled_from(["", "exited with 1"]),
    at=floats,
    duration=floats,
    interval=st.sampled_from([0.0, 10.0]),
)
resource_reports = st.builds(
    ResourceReport,
    role=st.sampled_from(list(Role)),
    failed=st.booleans(),
    blocked=st.booleans(),
    fail_count=st.integers(0, 5),
    last_failure=st.none() | floats,
    last_op=st.none() | last_ops,
    failed_op=st.none() | last_ops,
)
reports = st.builds(
    NodeReport,
    node=st.just("n1"),
    epoch=st.integers(0, 9),
    updated=floats,
    resources=st.dictionaries(names, resource_reports, max_size=6),
    attributes=st.dictionaries(st.sampled_from(["pingd", "master-db"]), st.sampled_from("01")),
    probed=st.frozensets(names),
    unprobed=st.frozensets(names),
    acked=st.integers(0, 99),
    working=st.integers(0, 99),
    pending=st.dictionaries(names, st.builds(PendingOp, st.just("start"), floats, floats)),
    probing=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(reports)
def test_split_then_assembled_is_the_whole_document(report: NodeReport) -> None:
    head, parts = split_status(report)
    assert decode_status_keys("n1", head, parts) == decode_status("n1", report.encode()) == report
    assert len(parts) <= PARTS
    assert all(json.loads(v) for v in parts.values())  # no empty part is written


# ---- the writer over the in-memory store ---------------------------------------------------


class Recording(MemoryStore):
    """Records what each transaction writes."""

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__(backend)
        self.writes: list[list[PutOp | DeleteOp]] = []

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnResult:
        result = await super().txn(compares, success, failure)
        ops = success if result.succeeded else failure
        self.writes.append([op for op in ops if isinstance(op, PutOp | DeleteOp)])
        return result


def stored(backend: MemoryBackend) -> tuple[int, list[StoredKey]]:
    result = backend.range(KEYS.prefix, prefix=True)
    return result.revision, [
        StoredKey(KEYS.relative(kv.key), kv.value, kv.create_revision, kv.mod_revision, kv.lease)
        for kv in result.kvs
    ]


def fresh(backend: MemoryBackend) -> ClusterSnapshot:
    return decode_snapshot(*stored(backend))


async def test_a_probe_writes_the_head_and_its_part_only() -> None:
    """After the first publish of a life, one more name probed (a primitive added: every
    node probes it) writes the head and that name's part: some hundred bytes, not the
    15 KiB report."""
    backend = MemoryBackend()
    store = Recording(backend)
    writer = StatusWriter(store, KEYS, "n1")
    report = bench_like()
    await writer.publish(report)
    assert fresh(backend).statuses["n1"] == report
    store.writes.clear()
    added = dataclasses.replace(report, probed=report.probed | {"dummy-1000"})
    assert part_count(added) == part_count(report)
    revision = await writer.publish(added)
    (ops,) = [w for w in store.writes if w]  # one transaction, no read before it
    assert [op.key for op in ops] == [
        KEYS.status("n1"),
        KEYS.status_parts("n1") + part_of("dummy-1000", part_count(added)),
    ]
    written = sum(len(op.key) + len(op.value) for op in ops if isinstance(op, PutOp))
    assert written < len(report.encode()) / 10
    snapshot = fresh(backend)
    assert snapshot.statuses["n1"] == added
    assert snapshot.status_revisions["n1"] == revision


async def test_vanished_instances_are_deleted_and_the_rest_kept() -> None:
    """Every name of a part gone (its primitives deleted): that part is deleted, the head
    written, nothing else."""
    backend = MemoryBackend()
    store = Recording(backend)
    writer = StatusWriter(store, KEYS, "n1")
    report = bench_like(200, 60)
    count = part_count(report)
    await writer.publish(report)
    emptied = part_of("dummy-0000", count)
    gone = dataclasses.replace(
        report,
        resources={k: v for k, v in report.resources.items() if part_of(k, count) != emptied},
        probed=frozenset(n for n in report.probed if part_of(n, count) != emptied),
    )
    assert part_count(gone) == count
    assert len(gone.resources) < len(report.resources)
    store.writes.clear()
    await writer.publish(gone)
    (ops,) = store.writes
    assert ops[0].key == KEYS.status("n1")
    assert ops[1:] == [DeleteOp(KEYS.status_parts("n1") + emptied)]
    assert fresh(backend).statuses["n1"] == gone


async def test_a_count_of_parts_that_changes_rewrites_them_all() -> None:
    """Past a power of two of primitives the names hash into more (or fewer) parts: that
    publish writes the new parts and deletes the old, in one transaction within etcd's 128
    operations."""
    backend = MemoryBackend()
    store = Recording(backend)
    writer = StatusWriter(store, KEYS, "n1")
    for probed in (64, 65, 2048, 3000, 1000, 20, 0):
        report = bench_like(probed, min(probed, 10))
        await writer.publish(report)
        assert fresh(backend).statuses["n1"] == report
        held = backend.range(KEYS.status_parts("n1"), prefix=True).kvs
        assert len(held) == len(split_status(report)[1])
        assert len(store.writes[-1]) <= 128


async def test_a_new_life_reads_what_the_store_holds_and_deletes_the_rest() -> None:
    """A new writer (a new life of the agent) does not know what the last one left: it reads
    the head and parts first, so parts of names no longer reported are deleted — and
    `status/n10`'s parts, under the same first letters, are not touched."""
    backend = MemoryBackend()
    store = Recording(backend)
    await StatusWriter(store, KEYS, "n1").publish(bench_like(40, 10))
    other = dataclasses.replace(bench_like(40, 10), node="n10")
    await StatusWriter(store, KEYS, "n10").publish(other)
    smaller = bench_like(3, 1)
    await StatusWriter(store, KEYS, "n1").publish(smaller)
    snapshot = fresh(backend)
    assert snapshot.statuses["n1"] == smaller
    assert snapshot.statuses["n10"] == other
    assert not snapshot.problems
    n1_parts = backend.range(KEYS.status_parts("n1"), prefix=True).kvs
    assert len(n1_parts) == len(split_status(smaller)[1])


async def test_a_head_changed_behind_the_writer_makes_it_read_again() -> None:
    """Whatever wrote or deleted the report meanwhile (a test's fixture, an operator), the
    next publish does not trust what it wrote last: its compare on the head fails, it reads
    and writes the whole difference."""
    backend = MemoryBackend()
    store = Recording(backend)
    writer = StatusWriter(store, KEYS, "n1")
    report = bench_like(40, 10)
    await writer.publish(report)
    await store.txn([], delete_status(KEYS, "n1"))
    assert "n1" not in fresh(backend).statuses
    await writer.publish(report)
    assert fresh(backend).statuses["n1"] == report
    await store.put(KEYS.status("n1"), bench_like(5, 2).encode())  # written whole
    await writer.publish(report)
    assert fresh(backend).statuses["n1"] == report


def _fence(node: str) -> bytes:
    record = FenceRecord(node, "off", "success", 1, ("ipmi",), "lost", 1.0, 2.0, "n2", 5)
    return encode_history([record])


async def test_a_fence_after_the_last_report_is_seen_and_a_report_after_it_counts() -> None:
    """`fenced_since_report` compares the fence's revision with the head's: the head is
    written at every publish, so it is the revision of the node's last report, whatever
    part changed. Negative control: a part written without the head (as a writer that
    skipped an unchanged head would) leaves the fence newer than the report."""
    backend = MemoryBackend()
    store = MemoryStore(backend)
    writer = StatusWriter(store, KEYS, "n1")
    report = bench_like(40, 10)
    await writer.publish(report)
    await store.put(KEYS.fence_history("n1"), _fence("n1"))
    assert fresh(backend).fenced_since_report("n1")
    # Only a part changes (the head's bytes are the same): the report is still newer.
    probed = dataclasses.replace(report, probed=report.probed | {"late"})
    assert split_status(probed)[0] == split_status(report)[0]
    revision = await writer.publish(probed)
    snapshot = fresh(backend)
    assert snapshot.status_revisions["n1"] == revision
    assert not snapshot.fenced_since_report("n1")
    # The negative control.
    await store.put(KEYS.fence_history("n1"), _fence("n1"))
    _, parts = split_status(dataclasses.replace(probed, probed=probed.probed | {"later"}))
    part = part_of("later", part_count(probed))
    await store.put(KEYS.status_parts("n1") + part, parts[part])
    assert fresh(backend).fenced_since_report("n1")


async def test_a_part_that_does_not_decode_is_a_problem_and_no_report() -> None:
    """Taken without one of its parts, a report could say that something running there
    does not run: the node's report is ignored, the key named, no traceback."""
    backend = MemoryBackend()
    store = MemoryStore(backend)
    await StatusWriter(store, KEYS, "n1").publish(bench_like(40, 10))
    await store.put(KEYS.status_parts("n1") + "07", b'{"resources": []}')
    await store.put(KEYS.status_parts("n2") + "07", b'{"probed": ["x"]}')
    snapshot = fresh(backend)
    assert "n1" not in snapshot.statuses
    assert "n1" not in snapshot.status_revisions
    assert snapshot.problems == (
        "status/n1/07: 'resources' must be an object; ignored",
        "status/n2/: parts without a report status/n2; ignored",
        "status/n1: a part does not decode; the report is ignored",
    )


async def test_the_proxy_source_assembles_the_same_reports() -> None:
    backend = MemoryBackend()
    store = MemoryStore(backend)
    writer = StatusWriter(store, KEYS, "n1")
    source = ClusterSource(store, KEYS, {})
    report = bench_like(40, 10)
    await writer.publish(report)
    await source._read()
    assert source.reports == fresh(backend).statuses == {"n1": report}
    smaller = bench_like(30, 3)
    start = backend.revision + 1
    await writer.publish(smaller)
    events, revision = backend._events_since(start, KEYS.prefix)
    for event in events:
        source._apply(event.kind, event.kv)
    source._settle()
    assert source.reports == {"n1": smaller}
    await store.put(KEYS.status_parts("n1") + "07", b"[]")
    events, _ = backend._events_since(revision + 1, KEYS.prefix)
    for event in events:
        source._apply(event.kind, event.kv)
    source._settle()
    assert source.reports == {}


# ---- the watch-fed mirror equals a fresh read at every revision ----------------------------

action = st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(["n1", "n10"]), reports),
    st.tuples(st.just("delete"), st.sampled_from(["n1", "n10"]), st.none()),
    st.tuples(st.just("whole"), st.sampled_from(["n1", "n10"]), reports),
    st.tuples(st.just("new-life"), st.sampled_from(["n1", "n10"]), st.none()),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(action, max_size=25))
def test_the_mirror_assembles_what_a_fresh_read_does(
    actions: list[tuple[str, str, NodeReport | None]],
) -> None:
    """Publishes (each one transaction), reports deleted or written whole behind the writers'
    backs, new lives: after every revision the mirror's snapshot (fed by the watch's events)
    is a fresh decode of the store, and each node's report is the one last published."""
    asyncio.run(_run_mirror(actions))


async def _run_mirror(actions: list[tuple[str, str, NodeReport | None]]) -> None:
    backend = MemoryBackend()
    store = MemoryStore(backend)
    writers = {n: StatusWriter(store, KEYS, n) for n in ("n1", "n10")}
    mirror = Mirror(KEYS, [KEYS.prefix])
    mirror.load(KEYS.prefix, (), backend.revision)
    expected: dict[str, NodeReport] = {}
    for kind, node, drawn in actions:
        start = backend.revision + 1
        report = dataclasses.replace(drawn, node=node) if drawn is not None else None
        if kind == "publish":
            assert report is not None
            await writers[node].publish(report)
            expected[node] = report
        elif kind == "delete":
            await store.txn([], delete_status(KEYS, node))
            expected.pop(node, None)
        elif kind == "whole":
            assert report is not None
            # A report written whole over the parts: it does not assemble with them unless
            # they share no name; either way the mirror must say what a fresh read says.
            await store.put(KEYS.status(node), report.encode())
            expected.pop(node, None)
        else:
            writers[node] = StatusWriter(store, KEYS, node)
            continue
        events, revision = backend._events_since(start, KEYS.prefix)
        mirror.apply(KEYS.prefix, WatchBatch(events, revision))
        snapshot = mirror.snapshot()
        assert snapshot_fields(snapshot) == snapshot_fields(fresh(backend))
        for name, want in expected.items():
            assert snapshot.statuses[name] == want
            assert (
                snapshot.status_revisions[name]
                == backend.range(KEYS.status(name)).kvs[0].mod_revision
            )


def test_reading_keys_of_other_nodes_is_not_confused_by_names() -> None:
    """`status/n1` is also the start of `status/n10`: parts are under `status/n1/`."""
    assert KEYS.status_parts("n1") == KEYS.prefix + "status/n1/"
    assert not (KEYS.status("n10") + "/00").startswith(KEYS.status_parts("n1"))
