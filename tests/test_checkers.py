"""Every checker finds a violation planted in a synthetic history and passes a clean one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hastack.checkers import (
    check_availability,
    check_exclusive,
    check_minority,
    check_set,
    check_total_queue,
    check_writer_moved,
    check_writers,
    pair_ops,
    parse_history,
)

T0 = 1_700_000_000.0


def op(process: str, f: str, value: Any, at: float, took: float, kind: str = "ok",
       result: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    done = {"process": process, "type": kind, "f": f, "time": T0 + at + took}
    done["value"] = result if result is not None else value
    return [{"process": process, "type": "invoke", "f": f, "value": value, "time": T0 + at}, done]


# ---- history --------------------------------------------------------------------------------


def test_pairing_and_unfinished_operations_are_unknown() -> None:
    history = [
        *op("a", "add", 1, 0, 0.1),
        {"process": "a", "type": "invoke", "f": "add", "value": 2, "time": T0 + 1},
    ]
    ops = pair_ops(history)
    assert [(o.value, o.type) for o in ops] == [(1, "ok"), (2, "info")]
    assert ops[1].error == "no completion"


def test_parse_history_skips_torn_and_foreign_lines() -> None:
    lines = [json.dumps(e) for e in op("a", "get", None, 0, 0.1)] + ['{"process": "a", "ty', "{}"]
    assert len(parse_history(lines)) == 2


# ---- set ------------------------------------------------------------------------------------


def test_set_finds_a_deleted_acknowledged_row_among_many() -> None:
    # The negative control for the mysql-set runs: one acknowledged row deleted from the read.
    h: list[dict[str, Any]] = []
    for i in range(200):
        h += op(f"c{i % 4}", "add", i, i * 0.05, 0.01)
    h += op("final", "read", None, 20, 0.1, result=[i for i in range(200) if i != 137])
    result = check_set(h)
    assert result.valid is False
    assert result.details["lost"] == [137]


def _set_history(read: list[int]) -> list[dict[str, Any]]:
    h = op("c0", "add", 1, 0, 0.1) + op("c0", "add", 2, 1, 0.1)
    h += op("c1", "add", 3, 0.5, 1.0, kind="info")  # unknown: may or may not be there
    h += op("c1", "add", 4, 2, 0.1, kind="fail")
    h += op("final", "read", None, 5, 0.1, result=read)
    return h


def test_set_clean_history_passes_and_counts_recovered_unknowns() -> None:
    result = check_set(_set_history([1, 2, 3]))
    assert result.valid is True
    assert result.details["recovered"] == [3]
    assert result.details["lost"] == []


def test_set_finds_a_lost_acknowledged_write() -> None:
    result = check_set(_set_history([1, 3]))
    assert result.valid is False
    assert result.details["lost"] == [2]


def test_set_finds_an_unexpected_element() -> None:
    result = check_set(_set_history([1, 2, 99]))
    assert result.valid is False
    assert result.details["unexpected"] == [99]


def test_set_without_a_final_read_cannot_judge() -> None:
    h = _set_history([1, 2])[:-2]
    assert check_set(h).valid is None


# ---- total queue ----------------------------------------------------------------------------


def _queue_history(dequeued: list[int], drained: list[int]) -> list[dict[str, Any]]:
    h = []
    for i in range(1, 5):
        h += op("p", "enqueue", i, i, 0.1)
    h += op("p", "enqueue", 5, 6, 0.5, kind="info")
    for i, v in enumerate(dequeued):
        h += op("c", "dequeue", None, 10 + i, 0.1, result=v)
    h += op("c", "drain", None, 20, 0.1, result=drained)
    return h


def test_total_queue_clean_history_passes_and_allows_duplicates() -> None:
    result = check_total_queue(_queue_history([1, 2, 2], [3, 4, 5]))
    assert result.valid is True
    assert result.details["duplicated"] == [2]
    assert result.details["recovered"] == [5]


def test_total_queue_finds_a_lost_confirmed_message() -> None:
    result = check_total_queue(_queue_history([1, 2], [4]))
    assert result.valid is False
    assert result.details["lost"] == [3]


def test_total_queue_finds_an_unexpected_message() -> None:
    result = check_total_queue(_queue_history([1, 2, 42], [3, 4]))
    assert result.valid is False
    assert result.details["unexpected"] == [42]


# ---- exclusive intervals --------------------------------------------------------------------


def ev(node: str, event: str, at: float, resource: str = "vip") -> dict[str, Any]:
    return {"node": node, "resource": resource, "event": event, "mono": at, "offset": T0,
            "offset_error": 0.001}  # fmt: skip


def test_exclusive_clean_handover_passes() -> None:
    events = [ev("n1", "acquire", 1), ev("n1", "release", 5), ev("n2", "acquire", 5.5)]
    result = check_exclusive(events, [], end_of_run=T0 + 10)
    assert result.valid is True
    assert len(result.details["intervals"]) == 2


def test_exclusive_finds_two_holders_at_once() -> None:
    events = [ev("n1", "acquire", 1), ev("n2", "acquire", 4), ev("n1", "release", 5)]
    result = check_exclusive(events, [], end_of_run=T0 + 10)
    assert result.valid is False
    assert "n1" in result.details["overlaps"][0]
    assert "n2" in result.details["overlaps"][0]


def test_exclusive_a_crash_in_the_nemesis_log_ends_the_dead_nodes_interval() -> None:
    # n1 never released (it crashed at 3); n2 acquired at 4: no overlap thanks to the crash.
    events = [ev("n1", "acquire", 1), ev("n2", "acquire", 4)]
    crash = [{"f": "crash", "host": "n1", "time": T0 + 3}]
    assert check_exclusive(events, crash, end_of_run=T0 + 10).valid is True
    # Without the crash record, n1 would hold it until the end of the run: an overlap.
    assert check_exclusive(events, [], end_of_run=T0 + 10).valid is False
    # A crash *after* the new holder started is no excuse.
    late = [{"f": "crash", "host": "n1", "time": T0 + 6}]
    assert check_exclusive(events, late, end_of_run=T0 + 10).valid is False


def test_exclusive_with_no_records_cannot_judge() -> None:
    assert check_exclusive([], [], end_of_run=T0).valid is None


# ---- availability ---------------------------------------------------------------------------


def _load(outage_from: float, outage_to: float, end: float = 20.0) -> list[dict[str, Any]]:
    """One request every 0.1 s; those sent during the outage fail after a 0.5 s timeout."""
    h: list[dict[str, Any]] = []
    t = 0.0
    while t < end:
        if outage_from <= t < outage_to:
            h += op("http-0", "get", "/", t, 0.5, kind="fail")
            t += 0.5
        else:
            h += op("http-0", "get", "/", t, 0.01, result=200)
            t += 0.1
    return h


def test_availability_measures_the_outage_around_a_crash() -> None:
    crash = [{"f": "crash", "host": "n1", "time": T0 + 5.0}, {"f": "start", "host": "n1",
              "time": T0 + 12.0}]  # fmt: skip
    result = check_availability(_load(5.0, 8.0), crash, max_outage=5.0)
    assert result.valid is True
    (outage,) = result.details["outages"]  # a repair is not a fault
    assert outage["fault"] == "crash n1"
    assert 2.9 < outage["seconds"] < 3.2
    assert outage["failed"] == 6


def test_availability_finds_an_outage_longer_than_allowed() -> None:
    crash = [{"f": "crash", "host": "n1", "time": T0 + 5.0}]
    result = check_availability(_load(5.0, 14.0), crash, max_outage=5.0)
    assert result.valid is False
    assert result.details["outages"][0]["seconds"] > 8.5


def test_availability_finds_a_service_that_never_came_back() -> None:
    crash = [{"f": "crash", "host": "n1", "time": T0 + 5.0}]
    result = check_availability(_load(5.0, 100.0, end=20.0), crash)
    assert result.valid is False
    assert "NOT RECOVERED" in result.summary


def test_availability_an_in_flight_success_does_not_hide_the_outage() -> None:
    # A request sent just before the crash completes just after it; the outage follows.
    h = _load(5.0, 8.0)
    h += op("http-1", "get", "/", 4.95, 0.1, result=200)
    crash = [{"f": "crash", "host": "n1", "time": T0 + 5.0}]
    result = check_availability(h, crash)
    assert result.details["outages"][0]["seconds"] > 2.8


def test_availability_a_failure_after_the_next_fault_is_that_fault_s() -> None:
    # A soak: the service is back 1 s after the first crash; the next crash strikes 4 s
    # after the first, while a request sent just before it is under way: it times out (2 s)
    # after that crash, which it belongs to — not a first fault "never recovered".
    h = [e for e in _load(5.0, 6.0, end=9.0) if e["time"] < T0 + 8.95]
    h += op("http-0", "get", "/", 8.95, 2.0, kind="fail")
    h += op("http-0", "get", "/", 10.95, 0.01, result=200)
    h += op("http-0", "get", "/", 11.0, 0.01, result=200)
    crashes = [{"f": "crash", "host": "n1", "time": T0 + 5.0},
               {"f": "crash", "host": "n2", "time": T0 + 9.0}]  # fmt: skip
    result = check_availability(h, crashes)
    assert result.valid is True, result.summary
    first, second = result.details["outages"]
    assert 0.9 < first["seconds"] < 1.6  # the first fault's own outage, recovered
    assert second["seconds"] > 2.0


def test_plot_draws_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from hastack.lab.plot import plot_availability

    crash = [{"f": "crash", "host": "n1", "time": T0 + 5.0}]
    path = plot_availability(_load(5.0, 8.0), crash, tmp_path / "a.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- writers --------------------------------------------------------------------------------


def _write(value: int, node: str, at: float, took: float = 0.004) -> list[dict[str, Any]]:
    """An acknowledged insert executed on `node` from server time T0+at to T0+at+took."""
    h = op(f"c{value % 4}", "add", value, at - 0.001, took + 0.002)
    h[1] |= {"node": node, "began": T0 + at, "ended": T0 + at + took}
    return h


def test_writers_a_clean_writer_change_is_one_writer_at_a_time() -> None:
    h: list[dict[str, Any]] = []
    for i in range(40):
        h += _write(i, "n1", i * 0.0125)  # 80 writes a second on n1 for 0.5 s
    for i in range(40, 80):
        h += _write(i, "n2", 3.5 + i * 0.0125)  # n1 crashed: n2 after a 3.5 s outage
    result = check_writers(h)
    assert result.valid is True, result.details["overlaps"]
    assert result.details["changes"] == 1
    assert [t["node"] for t in result.details["tenures"]] == ["n1", "n2"]


def test_writers_finds_writes_alternating_between_two_nodes() -> None:
    h: list[dict[str, Any]] = []
    for i in range(20):
        h += _write(i, "n1" if i % 2 else "n2", i * 0.05)  # no overlap between any two writes
    result = check_writers(h)
    assert result.valid is False
    assert (
        "n1 wrote" in result.details["overlaps"][0] or "n2 wrote" in result.details["overlaps"][0]
    )
    # with no merging at all only overlapping windows count: none here
    assert check_writers(h, gap=0.0).valid is True


def test_writers_finds_two_writes_at_the_same_instant() -> None:
    h = _write(1, "n1", 0.0, took=0.2) + _write(2, "n2", 0.1, took=0.01)
    result = check_writers(h, gap=0.0)
    assert result.valid is False


def test_writers_takes_the_node_from_the_final_read_and_never_widens_a_window() -> None:
    # The read-back after the insert failed: the row itself says where it ran and when it
    # began; the end is not known, so the write is a point at its beginning.
    h = _write(1, "n1", 0.0) + op("c1", "add", 2, 0.5, 5.0)  # ack arrived 5 s later
    h += _write(3, "n2", 2.0)
    h += op("final", "read", None, 9, 0.1, result=[1, 2, 3])
    h[-1]["rows"] = {"1": ["n1", T0], "2": ["n1", T0 + 0.5], "3": ["n2", T0 + 2.0]}
    result = check_writers(h)
    assert result.valid is True, result.details
    assert result.details["writes"] == 3
    assert result.details["unattributed"] == 0


def test_writers_without_nodes_cannot_judge() -> None:
    assert check_writers(op("c0", "add", 1, 0, 0.1)).valid is None


PARTITION = [
    {"f": "partition", "host": None, "time": T0 + 1.0, "groups": [["n1"], ["n2", "n3"]]},
    {"f": "heal", "host": None, "time": T0 + 6.0},
]


def test_writer_moved_measures_the_first_write_elsewhere_and_nothing_on_the_old_writer() -> None:
    h: list[dict[str, Any]] = []
    for i in range(10):
        h += _write(i, "n1", i * 0.1)  # the writer until the partition at 1.0
    for i in range(10, 20):
        h += _write(i, "n2", 4.0 + i * 0.1)  # first write elsewhere at 5.0
    result = check_writer_moved(h, PARTITION, limit=10.0)
    assert result.valid is True, result.summary
    (move,) = result.details["moves"]
    assert (move["writer"], move["to"]) == ("n1", "n2")
    assert move["moved_after"] == pytest.approx(4.0)
    assert check_writer_moved(h, PARTITION, limit=3.0).valid is False
    # the cut-off writer acknowledging a write begun after the partition is a violation
    late = h + _write(99, "n1", 2.0)
    assert check_writer_moved(late, PARTITION, limit=10.0).valid is False
    # a fault on another node does not take the writer away: nothing to judge
    other = [{"f": "crash", "host": "n3", "time": T0 + 1.0}]
    assert check_writer_moved(h, other, limit=10.0).valid is None


def test_writer_moved_after_a_kill_or_a_pause_measures_the_move_only() -> None:
    # The soak: the writer's mariadbd killed, restarted by the cluster 3 s later with no
    # nemesis step, then the writer again; a frozen writer whose commits land at its resume.
    h: list[dict[str, Any]] = []
    for i in range(10):
        h += _write(i, "n1", i * 0.1)
    for i in range(10, 20):
        h += _write(i, "n2", 1.5 + (i - 10) * 0.1)
    for i in range(20, 30):
        h += _write(i, "n1", 4.0 + (i - 20) * 0.1)  # the restarted server, the writer again
    killed = [{"f": "kill", "host": "n1", "process": "galera", "time": T0 + 1.0}]
    result = check_writer_moved(h, killed, limit=None)
    assert result.valid is True, result.summary
    assert result.details["moves"][0]["moved_after"] == pytest.approx(0.5)
    paused = [{"f": "pause", "host": "n1", "time": T0 + 1.0},
              {"f": "resume", "host": "n1", "time": T0 + 4.05}]  # fmt: skip
    assert check_writer_moved(h, paused, limit=None).valid is True
    # a power loss: the same writes on n1 before its boot are a violation
    crashed = [{"f": "crash", "host": "n1", "time": T0 + 1.0},
               {"f": "start", "host": "n1", "time": T0 + 6.0}]  # fmt: skip
    assert check_writer_moved(h, crashed, limit=None).valid is False


def test_minority_refuses_writes_while_cut_off() -> None:
    refused = op("d0", "add", 1, 2.0, 0.01, kind="fail")
    refused[1]["error"] = "1047 WSREP has not yet prepared node for application use"
    before = _write(2, "n1", 0.5)  # before the partition: fine
    after = _write(3, "n1", 7.0)  # after the heal: fine
    result = check_minority(before + refused + after, PARTITION)
    assert result.valid is True, result.summary
    assert result.details["refused"] == 1
    accepted = _write(4, "n1", 3.0)  # acknowledged by the cut-off node: a violation
    assert check_minority(before + refused + accepted, PARTITION).valid is False
    assert check_minority(before + after, PARTITION).valid is None  # nothing sent to it


def test_availability_takes_faults_struck_together_as_one_outage() -> None:
    # A power loss of every node: three crashes some milliseconds apart, writes back 6 s later.
    h: list[dict[str, Any]] = []
    for i in range(40):
        at = i * 0.25
        if 2.0 <= at < 8.0:
            h += op(f"c{i % 2}", "add", i, at, 0.5, kind="fail")
        else:
            h += op(f"c{i % 2}", "add", i, at, 0.01)
    crashes = [{"f": "crash", "host": n, "time": T0 + 2.0 + k * 0.05}
               for k, n in enumerate(("n1", "n2", "n3"))]  # fmt: skip
    result = check_availability(h, crashes, end_of_run=T0 + 10.0, max_outage=8.0)
    assert result.valid is True, result.summary
    assert [round(o["seconds"], 2) for o in result.details["outages"]] == [6.25] * 3
    # never back: every one of them says so
    down = [e for e in h if e["time"] < T0 + 2.0 or e["type"] == "invoke"]
    assert check_availability(down, crashes, end_of_run=T0 + 10.0).valid is False


def test_writer_moved_after_every_node_lost_power_is_judged_from_the_boot() -> None:
    # Nobody could take over: the writes resume on the old writer once it is back.
    h: list[dict[str, Any]] = []
    for i in range(10):
        h += _write(i, "n1", i * 0.1)
    for i in range(10, 20):
        h += _write(i, "n1", 5.0 + i * 0.1)
    power_loss = [
        {"f": "crash", "host": "n1", "time": T0 + 1.0},
        {"f": "crash", "host": "n2", "time": T0 + 1.0},
        {"f": "start", "host": "n1", "time": T0 + 3.0},
        {"f": "start", "host": "n2", "time": T0 + 3.0},
    ]
    result = check_writer_moved(h, power_loss, limit=None)
    assert result.valid is True, result.summary
    assert result.details["moves"][0]["to"] == "n1"
    # no write at all after the boot: still a failure
    assert check_writer_moved(h[:20], power_loss, limit=None).valid is False
