"""The evacuation's pure decisions (hastack.compute.evacuation): which instances, in what
order, how many at once, the backoff, when a record is done and when its host may be enabled
again. Each rule has a case that would break it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.compute.evacuation import (
    CallResult,
    EvacuationRecord,
    InstanceState,
    RecordState,
    Server,
    apply_results,
    backoff,
    is_evacuable,
    is_later,
    new_record,
    plan_round,
    refenced,
)

T0 = 1000.0


def servers(host: str, n: int, evacuable: int) -> list[Server]:
    return [Server(f"id-{i}", f"vm{i}", host, evacuable=i < evacuable) for i in range(n)]


def disabled_and_listed(record: EvacuationRecord, listed: list[Server]) -> EvacuationRecord:
    first = plan_round(record, None, host_back=False, now=T0)
    assert first.disable_host
    assert first.list_servers
    return apply_results(record, first, now=T0, servers=listed, disabled=True)


def test_record_round_trip_and_refusal() -> None:
    record = disabled_and_listed(new_record("c2", T0, 7, "n1"), servers("c2", 3, 2))
    assert EvacuationRecord.decode(record.encode()) == record
    with pytest.raises(ValueError, match="not an evacuation record"):
        EvacuationRecord.decode(b'{"node": "c2"}')


def test_first_the_host_is_forced_down_and_disabled() -> None:
    # Nova refuses to evacuate from a host it believes up; and nothing else happens before.
    round_ = plan_round(new_record("c2", T0, 7, "n1"), None, host_back=False, now=T0)
    assert round_.disable_host
    assert round_.evacuate == ()


def test_only_evacuable_instances_move_the_others_are_skipped() -> None:
    record = disabled_and_listed(new_record("c2", T0, 7, "n1"), servers("c2", 6, 4))
    states = {i: p.state for i, p in record.instances.items()}
    assert sorted(s.value for s in states.values()) == ["pending"] * 4 + ["skipped"] * 2
    round_ = plan_round(record, servers("c2", 6, 4), host_back=False, now=T0, parallel=10)
    assert round_.evacuate == ("id-0", "id-1", "id-2", "id-3")


def test_parallelism_is_bounded_and_order_is_by_name() -> None:
    listed = [Server(f"id-{n}", n, "c2", evacuable=True) for n in ("e", "a", "d", "c", "b")]
    record = disabled_and_listed(new_record("c2", T0, 7, "n1"), listed)
    round_ = plan_round(record, listed, host_back=False, now=T0, parallel=2)
    assert round_.evacuate == ("id-a", "id-b")
    record = apply_results(
        record, round_, now=T0, results=[CallResult(i, True) for i in round_.evacuate]
    )
    # Both still on the host (Nova has not moved them yet): they count against the bound.
    again = plan_round(record, listed, host_back=False, now=T0 + 1, parallel=2)
    assert again.evacuate == ()
    # One is gone from the host: it is evacuated, and one more may go.
    moved = [s for s in listed if s.id != "id-a"]
    again = plan_round(record, moved, host_back=False, now=T0 + 2, parallel=2)
    assert again.evacuate == ("id-c",)


def test_a_failed_call_is_retried_with_backoff() -> None:
    listed = servers("c2", 1, 1)
    record = disabled_and_listed(new_record("c2", T0, 7, "n1"), listed)
    round_ = plan_round(record, listed, host_back=False, now=T0)
    record = apply_results(record, round_, now=T0, results=[CallResult("id-0", False, "409")])
    assert record.instances["id-0"].state is InstanceState.FAILED
    assert plan_round(record, listed, host_back=False, now=T0 + 0.5).evacuate == ()
    assert plan_round(record, listed, host_back=False, now=T0 + 1.0).evacuate == ("id-0",)
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_nova_unreachable_backs_off_and_never_enables_the_host() -> None:
    record = new_record("c2", T0, 7, "n1")
    now = T0
    waits = []
    for _ in range(6):
        round_ = plan_round(record, None, host_back=True, now=now)
        assert not round_.enable_host
        if round_.wait_until:
            waits.append(round_.wait_until - now)
            now = round_.wait_until
            continue
        record = apply_results(record, round_, now=now, unreachable="connection refused")
    assert record.state is RecordState.PENDING
    assert record.last_error == "connection refused"
    assert record.attempts == 3
    assert waits == [1.0, 2.0, 4.0]  # growing, and nothing happened in between


def test_done_only_when_every_evacuable_instance_moved_then_enabled_only_when_back() -> None:
    listed = servers("c2", 3, 2)
    record = disabled_and_listed(new_record("c2", T0, 7, "n1"), listed)
    round_ = plan_round(record, listed, host_back=True, now=T0)
    record = apply_results(
        record, round_, now=T0, results=[CallResult(i, True) for i in round_.evacuate]
    )
    # Requested is not done: the instances still show on the host.
    round_ = plan_round(record, listed, host_back=True, now=T0 + 1)
    assert not round_.mark_done
    assert not round_.enable_host
    left = [s for s in listed if not s.evacuable]  # only the skipped one stays listed there
    round_ = plan_round(record, left, host_back=True, now=T0 + 2)
    assert round_.mark_done
    record = apply_results(record, round_, now=T0 + 2, servers=left)
    assert record.state is RecordState.DONE
    assert {p.state for p in record.instances.values()} == {
        InstanceState.EVACUATED,
        InstanceState.SKIPPED,
    }
    assert not plan_round(record, None, host_back=False, now=T0 + 3).enable_host
    assert plan_round(record, None, host_back=True, now=T0 + 3).enable_host


def test_the_host_is_enabled_only_once_its_compute_service_reported_since_the_disable() -> None:
    # Nova answered the disable with the service's updated_at: the mark. The host boots, its
    # agent joins, but until its compute service reports (a later updated_at) it stays
    # disabled, so that the service finds itself disabled when it starts.
    mark = "2026-12-06T14:00:01.250000"
    first = plan_round(new_record("c2", T0, 7, "n1"), None, host_back=False, now=T0)
    record = apply_results(
        new_record("c2", T0, 7, "n1"), first, now=T0, servers=[], disabled=True,
        disabled_mark=mark,
    )  # fmt: skip
    record = replace(record, state=RecordState.DONE)
    assert EvacuationRecord.decode(record.encode()) == record
    for seen in (None, "", mark, "2026-12-06T14:00:01.000000", "garbage"):
        round_ = plan_round(record, None, host_back=True, now=T0 + 5, service_updated=seen)
        assert not round_.enable_host, seen
        assert "waiting for its compute service" in round_.reason
    later = "2026-12-06T14:00:09.000000"
    assert plan_round(record, None, host_back=True, now=T0 + 5, service_updated=later).enable_host
    # The agent still away: not even a report enables it.
    assert not plan_round(record, None, host_back=False, now=T0, service_updated=later).enable_host
    # A record without a mark (Nova gave none, or written before marks): the agent suffices.
    unmarked = replace(record, disabled_mark="")
    assert plan_round(unmarked, None, host_back=True, now=T0 + 5).enable_host


def test_nova_timestamps_compare_as_instants() -> None:
    assert is_later("2026-12-06T14:00:02", "2026-12-06T14:00:01.999999")
    assert is_later("2026-12-06T14:00:01.000000+00:00", "2026-12-06T13:00:01.5")
    assert not is_later("2026-12-06T14:00:01Z", "2026-12-06T14:00:01.000000")
    assert not is_later(None, "2026-12-06T14:00:01")


def test_a_record_never_listed_is_not_done() -> None:
    # Negative control: a record whose host was disabled but whose instances were never read
    # has nothing pending only because it knows nothing: it must not be done.
    record = replace(new_record("c2", T0, 7, "n1"), host_disabled=True)
    round_ = plan_round(record, [], host_back=True, now=T0)
    assert not round_.mark_done


def test_a_second_fence_keeps_a_pending_record_and_restarts_a_done_one() -> None:
    listed = servers("c2", 2, 2)
    pending = disabled_and_listed(new_record("c2", T0, 7, "n1"), listed)
    assert refenced(pending, T0 + 5, 8, "n2").instances == pending.instances
    done = replace(pending, state=RecordState.DONE)
    again = refenced(done, T0 + 5, 8, "n2")
    assert again.state is RecordState.PENDING
    assert not again.instances
    assert again.epoch == 8


def test_evacuable_tag() -> None:
    assert is_evacuable({"evacuable": "true"}, {}, "evacuable")
    assert is_evacuable({}, {"evacuable": "True"}, "evacuable")
    assert not is_evacuable({"evacuable": "false"}, {}, "evacuable")
    assert not is_evacuable({}, {}, "evacuable")
    assert is_evacuable({}, {}, "")  # no tag: everything is evacuated


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 12),
    evacuable=st.integers(0, 12),
    parallel=st.integers(1, 5),
    fail=st.sets(st.integers(0, 11)),
    moves=st.lists(st.integers(0, 11), max_size=40),
)
def test_rounds_never_exceed_the_bound_and_converge(
    n: int, evacuable: int, parallel: int, fail: set[int], moves: list[int]
) -> None:
    """Whatever Nova does (some calls fail once, instances leave the host in any order), no
    round asks more than `parallel` at once beyond those in flight, a skipped instance is
    never evacuated, and once every evacuable one has left the host the record ends done."""
    on_host = {s.id: s for s in servers("c2", n, evacuable)}
    record = disabled_and_listed(new_record("c2", T0, 7, "n1"), list(on_host.values()))
    failed_once: set[str] = set()
    now = T0
    for step in range(200):
        now += 1.0
        listed = list(on_host.values())
        round_ = plan_round(record, listed, host_back=True, now=now, parallel=parallel)
        if round_.enable_host:
            break
        requested = {
            i
            for i, p in record.instances.items()
            if p.state is InstanceState.REQUESTED and i in on_host and p.next_try > now
        }
        assert len(round_.evacuate) + len(requested) <= parallel
        for i in round_.evacuate:
            assert on_host[i].evacuable
        results = []
        for i in round_.evacuate:
            index = int(i.split("-")[1])
            if index in fail and i not in failed_once:
                failed_once.add(i)
                results.append(CallResult(i, False, "boom"))
            else:
                results.append(CallResult(i, True))
        record = apply_results(record, round_, now=now, servers=listed, results=results)
        # Nova moves requested instances off the host, in the order the test chose.
        requested_now = [
            i for i, p in record.instances.items() if p.state is InstanceState.REQUESTED
        ]
        order = [f"id-{m}" for m in moves if f"id-{m}" in requested_now] + requested_now
        if order and step % 2 == 0:
            on_host.pop(order[0], None)
    assert record.state is RecordState.DONE
    assert all(not s.evacuable for s in on_host.values())


# ---- the instance checkers: each verdict caught by a history built to break it ------------

from hastack.checkers.instances import LogLine, check_instances  # noqa: E402


def _log(*runs: tuple[str, float, float]) -> list[LogLine]:
    """Lines every 0.1 s for each (host, from, to)."""
    out, seq = [], 0
    for host, start, end in runs:
        t = start
        while t < end:
            out.append(LogLine(host, seq, round(t, 3)))
            seq += 1
            t += 0.1
    return out


def _good() -> dict[str, list[LogLine]]:
    # vm0, vm1 evacuable: c2 until the crash at 10, c1 from 14 (fence at 12); vm2 stays down.
    return {
        "vm0": _log(("c2", 0, 10), ("c1", 14, 20)),
        "vm1": _log(("c2", 0, 10), ("c3", 15, 20)),
        "vm2": _log(("c2", 0, 10)),
        "other": _log(("c1", 0, 20)),
    }


EVENTS = [
    {"t": 14.5, "event": "active", "name": "vm0"},
    {"t": 15.5, "event": "active", "name": "vm1"},
    {"t": 30.0, "event": "enable", "host": "c2"},
]


def _check(logs: dict[str, list[LogLine]], fenced_at: float | None = 12.0, events=EVENTS):  # type: ignore[no-untyped-def]
    return check_instances(
        logs, host="c2", fault_at=10.0, fenced_at=fenced_at, evacuable={"vm0", "vm1"},
        within=10.0, nova_events=events,
    )  # fmt: skip


def test_instance_checker_passes_a_good_run() -> None:
    result = _check(_good())
    assert result.valid is True, result.summary


def test_instance_checker_catches_an_evacuation_before_the_fence() -> None:
    logs = _good()
    logs["vm0"] = _log(("c2", 0, 10), ("c1", 11, 20))  # started elsewhere at 11, fence at 12
    result = _check(logs)
    assert result.valid is False
    assert result.details["problems"]["fenced-first"]


def test_instance_checker_catches_two_copies() -> None:
    logs = _good()
    logs["vm1"] = sorted(_log(("c2", 0, 16)) + _log(("c3", 15, 20)), key=lambda x: x.wall)
    result = _check(logs)
    assert result.details["problems"]["no-interleave"]


def test_instance_checker_catches_late_and_unwanted_evacuations() -> None:
    logs = _good()
    logs["vm0"] = _log(("c2", 0, 10), ("c1", 25, 30))  # 13 s after the fence
    logs["vm2"] = _log(("c2", 0, 10), ("c1", 14, 20))  # not evacuable, yet it came back
    result = _check(logs)
    assert len(result.details["problems"]["in-time"]) == 2


def test_instance_checker_lets_a_cut_off_host_run_its_instances_until_its_fence() -> None:
    # A partition at 10, the fence at 12: vm2 (not evacuable) runs on c2 until the fence.
    logs = _good()
    logs["vm2"] = _log(("c2", 0, 12))
    assert _check(logs).valid is True
    # Negative control: still writing a second after the fence (the power-off failed).
    logs["vm2"] = _log(("c2", 0, 13))
    problems = _check(logs).details["problems"]["in-time"]
    assert problems
    assert "after c2's fence" in problems[0]


def test_instance_checker_catches_an_early_enable_and_a_missing_fence() -> None:
    early = [*EVENTS[:2], {"t": 15.0, "event": "enable", "host": "c2"}]
    assert _check(_good(), events=early).details["problems"]["enabled-after-done"]
    assert _check(_good(), fenced_at=None).details["problems"]["fenced-first"]


# ---- K3: the compute service killed, restarted in place -----------------------------------

from hastack.checkers.instances import check_in_place  # noqa: E402

KILL = [{"f": "kill", "host": "c3", "process": "nova-compute", "pids": [41], "time": 10.0}]
RESTART = [
    {"event": "operation", "op": "start", "rc": 0, "resource": "nova-compute:2", "t": 2.0},
    {"event": "operation", "op": "stop", "rc": 0, "resource": "nova-compute:2", "t": 10.5},
    {"event": "operation", "op": "start", "rc": 0, "resource": "nova-compute:2", "t": 10.6},
]


def _stays(logs=None, killed=KILL, restarts=RESTART, fenced=(), events=()):  # type: ignore[no-untyped-def]
    logs = logs if logs is not None else {"vm0": _log(("c3", 0, 20)), "vm1": _log(("c3", 0, 20))}
    return check_in_place(
        logs, host="c3", service="nova-compute", killed=killed, restarts=restarts,
        fenced=fenced, nova_events=events,
    )  # fmt: skip


def test_in_place_checker_passes_a_restart_in_place() -> None:
    result = _stays()
    assert result.valid is True, result.summary
    assert result.details["restarted_after"] == pytest.approx(0.6)


def test_in_place_checker_catches_each_way_of_not_staying() -> None:
    def problems(**kw):  # type: ignore[no-untyped-def]
        result = _stays(**kw)
        assert result.valid is False, result.summary
        return {k for k, v in result.details["problems"].items() if v}

    # The kill hit nothing: nothing was shown.
    assert "killed" in problems(killed=[{**KILL[0], "pids": []}])
    # Never started again, or only before the kill, or the start failed.
    assert problems(restarts=RESTART[:2]) == {"restarted-in-place"}
    assert problems(restarts=[{**RESTART[2], "rc": 1}]) == {"restarted-in-place"}
    assert problems(restarts=[{**RESTART[2], "resource": "other:2"}]) == {"restarted-in-place"}
    # Fenced, or Nova asked to move anything.
    assert problems(fenced=[11.0]) == {"no-fence"}
    assert problems(events=[{"t": 12.0, "event": "force-down", "host": "c3"}]) == {"no-evacuation"}
    # An instance ran elsewhere, or stopped writing at the kill.
    moved = {"vm0": _log(("c3", 0, 12), ("c1", 13, 20)), "vm1": _log(("c3", 0, 20))}
    assert problems(logs=moved) == {"stayed"}
    died = {"vm0": _log(("c3", 0, 9.5)), "vm1": _log(("c3", 0, 20))}
    assert problems(logs=died) == {"stayed"}
