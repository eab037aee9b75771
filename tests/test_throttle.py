"""Throttling arithmetic (pure): limits, load from /proc/stat, and the steps down."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack.executor.throttle import (
    CpuSample,
    cluster_share,
    cpu_load,
    effective_limit,
    node_limit,
    parse_proc_stat,
    probe_turn,
    ramp_limit,
)

STAT = """\
cpu  100 5 50 800 20 0 5 0 0 0
cpu0 50 2 25 400 10 0 3 0 0 0
cpu1 50 3 25 400 10 0 2 0 0 0
intr 12345
procs_running 3
procs_blocked 0
"""


def test_proc_stat_is_read_as_busy_and_total_jiffies() -> None:
    sample = parse_proc_stat(STAT)
    assert sample == CpuSample(busy=160, total=980, running=3)
    with pytest.raises(ValueError, match="no aggregate 'cpu' line"):
        parse_proc_stat("intr 1\n")


def test_load_is_busy_fraction_or_run_queue_per_core() -> None:
    before = CpuSample(busy=0, total=0, running=1)
    assert cpu_load(before, CpuSample(50, 200, 1), cores=2) == 0.25
    # a queue of 9 runnable tasks on 2 cores: 4x overloaded even if busy reads 100 %
    assert cpu_load(before, CpuSample(200, 200, 9), cores=2) == 4.0
    assert cpu_load(before, before, cores=2) == 0.0


def test_limits_step_down_with_load() -> None:
    assert node_limit(0, cores=2) == 4
    assert node_limit(7, cores=2) == 7
    assert [effective_limit(8, load, 80) for load in (0.5, 0.8, 0.9, 1.1, 1.3)] == [8, 8, 4, 2, 1]


@given(st.integers(1, 64), st.floats(0, 10), st.floats(0, 10), st.integers(10, 200))
def test_more_load_never_allows_more_operations(limit: int, a: float, b: float, t: int) -> None:
    low, high = sorted((a, b))
    assert 1 <= effective_limit(limit, high, t) <= effective_limit(limit, low, t) <= limit


def test_a_burst_of_probes_starts_one_at_a_time_and_doubles_each_period() -> None:
    assert [ramp_limit(t, 1.0, 4) for t in (0, 0.5, 1.0, 1.9, 2.0, 3.5, 100)] == [
        1, 1, 2, 2, 4, 4, 4,
    ]  # fmt: skip
    assert ramp_limit(5.0, 1.0, 1) == 1
    assert ramp_limit(1e9, 1.0, 7) == 7  # no overflow, capped
    assert ramp_limit(0.0, 0.0, 5) == 5  # no period: no ramp


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.integers(1, 64))
def test_the_ramp_never_shrinks_and_never_passes_the_limit(a: float, b: float, limit: int) -> None:
    early, late = sorted((a, b))
    assert 1 <= ramp_limit(early, 1.0, limit) <= ramp_limit(late, 1.0, limit) <= limit


def test_busy_nodes_take_turns_half_then_a_quarter_of_them() -> None:
    # load-threshold 80 %: high above 96 %, extreme above 120 % (runnable tasks per core count).
    assert [cluster_share(x, 80) for x in (0.0, 0.8, 0.96, 0.97, 1.2, 1.21, 50.0)] == [
        1, 1, 1, 2, 2, 4, 4,
    ]  # fmt: skip
    # Golden: c1's and c2's turns among four (CRC-32 of the names), and no turns when not busy.
    assert [probe_turn("c1", t, 1.0, 4) for t in (0.0, 1.5, 2.0, 3.9)] == [
        t == 3.9 for t in (0.0, 1.5, 2.0, 3.9)
    ]
    assert [probe_turn("c2", t, 1.0, 4) for t in (0.0, 1.5, 2.0, 3.9)] == [
        t == 1.5 for t in (0.0, 1.5, 2.0, 3.9)
    ]
    assert all(probe_turn("c1", t / 10, 1.0, 1) for t in range(40))
    assert probe_turn("c1", 0.0, 0.0, 4)  # no period: no turns


@given(st.text(min_size=1, max_size=12), st.integers(1, 8), st.floats(0, 1e6))
def test_each_node_has_exactly_one_turn_in_share_consecutive_periods(
    node: str, share: int, start: float
) -> None:
    first = int(start)
    turns = [probe_turn(node, p + 0.5, 1.0, share) for p in range(first, first + share)]
    assert turns.count(True) == 1


def test_about_one_node_in_share_is_in_its_turn() -> None:
    nodes = [f"c{i}" for i in range(1, 101)]
    for share in (2, 4):
        counts = [sum(probe_turn(n, p + 0.5, 1.0, share) for n in nodes) for p in range(8)]
        assert sum(counts) == 2 * len(nodes) * 4 // share  # each node share-th of the periods
        assert max(counts) <= 2 * len(nodes) // share, counts  # never all at once


# ---- the DC's batch-limit ----------------------------------------------------------------------


def test_the_dc_keeps_at_most_batch_limit_actions_in_flight() -> None:
    from hastack.controller import Controller
    from hastack.model.config import Role, parse_cluster_config
    from hastack.model.members import ClusterSnapshot, DcRecord, MemberRecord, NodeKind
    from hastack.model.status import NodeReport, ResourceReport

    config = parse_cluster_config(
        "properties: {stonith-enabled: false, batch-limit: 2}\n"
        "nodes: [{node: n1}]\n"
        "resources:\n"
        + "".join(f"  - {{primitive: d{i}, agent: 'ocf:heartbeat:Dummy'}}\n" for i in range(5)),
        "c.yaml",
    )
    names = {f"d{i}" for i in range(5)}

    def snap(running: set[str], acked: int) -> ClusterSnapshot:
        report = NodeReport(
            "n1",
            updated=2.0,
            resources={r: ResourceReport(role=Role.STARTED) for r in running},
            probed=frozenset(names),
            acked=acked,
        )
        return ClusterSnapshot(
            revision=10,
            dc=DcRecord("n1", 5, 1),
            members={"n1": MemberRecord("n1", NodeKind.FULL, joined_at=1.0, revision=1)},
            nodes={},
            other={},
            problems=(),
            config=config,
            config_revision=3,
            statuses={"n1": report},
        )

    controller = Controller()
    first = controller.decide(snap(set(), 0), config, epoch=5, now=3.0)
    assert sorted(first.targets["n1"].resources) == ["d0", "d1"]
    # d0 is done: one more goes out, d1 (released) stays
    second = controller.decide(snap({"d0"}, 0), config, epoch=5, now=3.0)
    assert sorted(second.targets["n1"].resources) == ["d0", "d1", "d2"]
    # nothing done yet: nothing new
    third = controller.decide(snap({"d0"}, 0), config, epoch=5, now=3.0)
    assert sorted(third.targets["n1"].resources) == ["d0", "d1", "d2"]
    # without a limit everything goes at once
    unlimited = config.model_copy(
        update={"properties": config.properties.model_copy(update={"batch_limit": 0})}
    )
    everything = Controller().decide(snap(set(), 0), unlimited, epoch=5, now=3.0)
    assert set(everything.targets["n1"].resources) == names
