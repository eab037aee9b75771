"""Every checker finds a violation planted in a synthetic history and passes a clean one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hastack.checkers import (
    check_availability,
    check_exclusive,
    check_set,
    check_total_queue,
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


def test_plot_draws_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from hastack.lab.plot import plot_availability

    crash = [{"f": "crash", "host": "n1", "time": T0 + 5.0}]
    path = plot_availability(_load(5.0, 8.0), crash, tmp_path / "a.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
