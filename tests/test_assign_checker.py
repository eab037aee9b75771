"""The work-assignment checker on made-up probe histories: what passes, and each way to fail."""

from __future__ import annotations

from typing import Any

from hastack.checkers import check_assignment


def probes(entity: str, answers: list[tuple[float, str | None]]) -> list[dict[str, Any]]:
    """One probe per (time, answering node or None for a failure), 0.1 s each."""
    out: list[dict[str, Any]] = []
    for t, node in answers:
        p = f"assign-probe-{entity}"
        out.append({"process": p, "type": "invoke", "f": "probe", "value": entity, "time": t})
        if node is None:
            out.append({"process": p, "type": "fail", "f": "probe", "value": None,
                        "time": t + 0.1, "error": "timeout"})  # fmt: skip
        else:
            out.append({"process": p, "type": "ok", "f": "probe", "value": {"node": node},
                        "time": t + 0.1})  # fmt: skip
    return out


NEMESIS = [{"f": "crash", "host": "n2", "time": 10.0}, {"f": "start", "host": "n2", "time": 20.0}]
FENCED = {"n2": [11.0]}


def good() -> list[dict[str, Any]]:
    a = probes("a", [(t, "n1") for t in range(0, 30)])
    b = probes("b", [(t, "n2") for t in range(0, 10)] + [(t, "n3") for t in range(12, 30)])
    return a + b


def check(history: list[dict[str, Any]], **kw: Any) -> Any:
    return check_assignment(history, NEMESIS, end_of_run=30.0, fenced=FENCED, **kw)


def test_only_the_orphan_moved_and_it_came_back_in_time() -> None:
    result = check(good(), max_outage=4.0, after_fence=2.0)
    assert result.valid is True, result.details["problems"]
    (fault,) = result.details["faults"]
    assert fault["orphans"] == ["b"]
    assert fault["outages"] == {"b": 3.0}
    assert fault["fence_seconds"] == 1.0
    assert fault["after_fence"] == {"b": 1.1}
    assert result.details["unnecessary_moves"] == 0


def test_an_orphan_back_too_late_fails() -> None:
    history = good()
    result = check(history, after_fence=0.5)
    assert result.valid is False
    assert "b (on n2) answered 1.10s after the fence (> 0.5s)" in result.details["problems"]
    assert check(history, max_outage=2.0).valid is False


def test_a_bystander_that_failed_or_moved_fails() -> None:
    a = probes(
        "a", [(t, "n1") for t in range(0, 12)] + [(12, None)] + [(t, "n3") for t in range(13, 30)]
    )
    result = check(
        a + probes("b", [(t, "n2") for t in range(0, 10)] + [(t, "n3") for t in range(12, 30)])
    )
    assert result.valid is False
    assert "a (not on n2) failed 1 probe(s)" in result.details["problems"]
    assert "a (not on n2) changed node" in result.details["problems"]
    assert result.details["unnecessary_moves"] == 1


def test_a_move_back_after_the_return_fails() -> None:
    b = probes("b", [(t, "n2") for t in range(0, 10)] + [(t, "n3") for t in range(12, 22)]
               + [(t, "n2") for t in range(22, 30)])  # fmt: skip
    result = check(probes("a", [(t, "n1") for t in range(30)]) + b)
    assert result.valid is False
    assert "b moved after n2 came back" in result.details["problems"]


def test_nothing_to_judge_is_unknown() -> None:
    assert check_assignment([], NEMESIS, end_of_run=1.0).valid is None
    quiet = check_assignment(good(), [], end_of_run=30.0)
    assert quiet.valid is None


def test_a_partition_counts_like_a_crash_of_the_smaller_side() -> None:
    nemesis = [
        {"f": "partition", "host": None, "time": 10.0, "groups": [["n2"], ["n1", "n3"]]},
        {"f": "heal", "host": None, "time": 20.0},
    ]
    # n2 keeps answering for b until it self-fences at 12, n3 answers from 14.
    b = probes("b", [(t, "n2") for t in range(0, 12)] + [(t, "n3") for t in range(14, 30)])
    a = probes("a", [(t, "n1") for t in range(30)])
    result = check_assignment(a + b, nemesis, end_of_run=30.0, max_outage=4.0)
    assert result.valid is True, result.details["problems"]
    (fault,) = result.details["faults"]
    assert fault["orphans"] == ["b"]
    assert fault["outages"] == {"b": 3.0}  # 11.1 -> 14.1


def _jobs(final: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j in final:
        out += [
            {
                "process": "heat-jobs-0",
                "type": "invoke",
                "f": "submit",
                "value": j["id"],
                "time": 0.0,
            },
            {"process": "heat-jobs-0", "type": "ok", "f": "submit", "value": j["id"], "time": 0.1},
        ]
    return [
        *out,
        {"process": "heat-jobs-final", "type": "ok", "f": "final", "value": final, "time": 60.0},
    ]


def test_jobs_taken_over_in_time_pass_and_a_stuck_one_fails() -> None:
    from hastack.checkers import check_jobs

    crash = [{"f": "crash", "host": "n2", "time": 10.0}]
    done = {
        "id": "a",
        "state": "DONE",
        "engine": "n3",
        "taken_over_from": "n2",
        "taken_over_at": 15.5,
    }
    failed = {"id": "b", "state": "FAILED", "engine": "n1", "reason": "Engine n2 went down",
              "taken_over_from": "n2", "taken_over_at": 16.0}  # fmt: skip
    ok = check_jobs(_jobs([done, failed]), crash, lock_ttl=5, check_interval=1)
    assert ok.valid is True, ok.details
    assert [t["seconds"] for t in ok.details["takeovers"]] == [5.5, 6.0]
    stuck = {"id": "c", "state": "IN_PROGRESS", "engine": "n2"}
    late = {**done, "taken_over_at": 18.0}
    bad = check_jobs(
        _jobs([late, stuck, {**failed, "reason": ""}]), crash, lock_ttl=5, check_interval=1
    )
    assert bad.valid is False
    assert "c stuck IN_PROGRESS (engine n2)" in bad.details["problems"]
    assert "b FAILED without a reason" in bad.details["problems"]
    assert any(p.startswith("a taken over from n2 8.00s") for p in bad.details["problems"])


def test_a_rebalance_moves_within_its_bound_and_count() -> None:
    nemesis = [
        {"f": "crash", "host": "n2", "time": 10.0},
        {"f": "start", "host": "n2", "time": 20.0},
        {"f": "rebalance", "host": None, "time": 25.0, "max_moves": 1},
    ]
    a = probes("a", [(t, "n1") for t in range(40)])
    # b moved off n2 by the crash, back to n2 by the rebalance with a 1 s gap.
    b = probes("b", [(t, "n2") for t in range(0, 10)] + [(t, "n3") for t in range(12, 26)]
               + [(t, "n2") for t in range(27, 40)])  # fmt: skip
    result = check_assignment(a + b, nemesis, end_of_run=40.0, rebalance_outage=2.0)
    assert result.valid is True, result.details["problems"]
    (r,) = result.details["rebalances"]
    assert r["moved"] == ["b"]
    assert r["outages"] == {"b": 2.0}
    assert result.details["unnecessary_moves"] == 0
    tight = check_assignment(a + b, nemesis, end_of_run=40.0, rebalance_outage=1.5)
    assert "b out for 2.00s while rebalanced (> 1.5s)" in tight.details["problems"]
    c = probes("c", [(t, "n1") for t in range(0, 26)] + [(t, "n3") for t in range(26, 40)])
    over = check_assignment(a + b + c, nemesis, end_of_run=40.0)
    assert "rebalance moved 2 entities, more than the 1 asked" in over.details["problems"]


def test_an_orphan_taken_over_after_the_return_moves_once_and_no_more() -> None:
    # A slow fence: n2 boots again at 20 before its orphan b is taken over at 21.
    b = probes("b", [(t, "n2") for t in range(0, 10)] + [(t, "n3") for t in range(21, 30)])
    a = probes("a", [(t, "n1") for t in range(30)])
    result = check(a + b, max_outage=13.0)
    assert result.valid is True, result.details["problems"]
    (fault,) = result.details["faults"]
    assert fault["moved_on_return"] == []
    # A second move after the takeover is still a move after the return.
    b = probes("b", [(t, "n2") for t in range(0, 10)] + [(t, "n3") for t in range(21, 25)]
               + [(t, "n1") for t in range(25, 30)])  # fmt: skip
    result = check(a + b, max_outage=13.0)
    assert "b moved after n2 came back" in result.details["problems"]


def test_a_cut_too_short_to_lose_the_node_keeps_its_entities() -> None:
    # n2 cut off for 3 s, less than it takes to declare it lost: it answers for b throughout
    # and after the heal; nothing moved, nothing is wrong.
    nemesis = [
        {"f": "partition", "host": None, "time": 10.0, "groups": [["n2"], ["n1", "n3"]]},
        {"f": "heal", "host": None, "time": 13.0},
    ]
    b = probes("b", [(t, "n2") for t in range(0, 30)])
    a = probes("a", [(t, "n1") for t in range(30)])
    result = check_assignment(a + b, nemesis, end_of_run=30.0, max_outage=4.0)
    assert result.valid is True, result.details["problems"]
    # Never answered again at all is still a failure.
    b = probes("b", [(t, "n2") for t in range(0, 10)] + [(t, None) for t in range(10, 30)])
    result = check_assignment(a + b, nemesis, end_of_run=30.0, max_outage=4.0)
    assert "b (on n2) never answered again" in result.details["problems"]
