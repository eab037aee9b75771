"""The RabbitMQ checkers on made-up records: they pass what they should and fail what they
should (each has a case that must fail)."""

from __future__ import annotations

from typing import Any

import pytest

from hastack.checkers import check_publish_resume, check_rabbitmq_rejoin


def ops(
    process: str, times: list[float], *, fail_at: tuple[float, ...] = ()
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, t in enumerate(times):
        out.append({"process": process, "type": "invoke", "f": "enqueue", "value": i, "time": t})
        kind = "info" if t in fail_at else "ok"
        out.append({"process": process, "type": kind, "f": "enqueue", "value": i, "time": t + 0.01})
    return out


CRASH = [{"f": "crash", "host": "n2", "time": 10.0}, {"f": "start", "host": "n2", "time": 20.0}]


def steady(start: float, end: float, step: float = 0.1) -> list[float]:
    return [round(start + i * step, 3) for i in range(int((end - start) / step))]


def test_one_producers_gap_is_seen_although_the_others_went_on() -> None:
    history = ops("amqp-0", steady(0, 30)) + ops(
        "amqp-1", [*steady(0, 10.0), 10.5, *steady(13.5, 30)], fail_at=(10.5,)
    )
    result = check_publish_resume(history, CRASH, end_of_run=30.0, max_outage=2.0)
    assert result.valid is False
    assert "3.60s (amqp-1)" in result.summary  # 9.9 -> 13.5 on amqp-1; amqp-0 went on
    ok = check_publish_resume(history, CRASH, end_of_run=30.0, max_outage=5.0)
    assert ok.valid is True


def test_a_producer_that_never_resumes_fails() -> None:
    history = ops("amqp-0", [*steady(0, 10), 11.0, 12.0], fail_at=(11.0, 12.0))
    result = check_publish_resume(history, CRASH, end_of_run=30.0, max_outage=None)
    assert result.valid is False
    assert "NEVER RESUMED" in result.summary


def status(at: float, n2: dict[str, Any] | None, members: list[str]) -> dict[str, Any]:
    reports: dict[str, Any] = {
        "n1": {"at": at, "health": "running", "status": {},
               "queues": [{"name": "q", "type": "quorum", "members": members}]},
    }  # fmt: skip
    if n2 is not None:
        reports["n2"] = n2
    return {"collected_at": at, "rabbitmq": [{"resource": "rabbit", "reports": reports}]}


def test_rejoin_waits_for_the_node_and_three_members() -> None:
    three = ["rabbit@n1", "rabbit@n2", "rabbit@n3"]
    timeline = [
        status(19.0, {"at": 5.0, "health": "running"}, three),  # before the boot: stale
        status(22.0, None, ["rabbit@n1", "rabbit@n3"]),
        status(26.0, {"at": 25.0, "health": "running"}, ["rabbit@n1", "rabbit@n3"]),
        status(29.0, {"at": 28.5, "health": "running"}, three),
    ]
    result = check_rabbitmq_rejoin(timeline, CRASH, size=3, within=15.0)
    assert result.valid is True
    assert result.details["times"] == {"start n2 at 20.0": 9.0}
    assert check_rabbitmq_rejoin(timeline, CRASH, size=3, within=5.0).valid is False
    assert check_rabbitmq_rejoin(timeline[:3], CRASH, size=3, within=15.0).valid is False
    assert check_rabbitmq_rejoin(timeline, [], size=3).valid is None


# ---- the cache-kv checkers -----------------------------------------------------------------


def kv(
    process: str, t: float, f: str, value: dict[str, Any], result: Any, kind: str = "ok"
) -> list[dict[str, Any]]:
    return [
        {"process": process, "type": "invoke", "f": f, "value": value, "time": t},
        {"process": process, "type": kind, "f": f, "value": result, "time": t + 0.01},
    ]


def test_a_read_older_than_an_acknowledged_write_is_stale() -> None:
    from hastack.checkers import check_stale_reads

    history = (
        kv("c-0", 1.0, "write", {"key": "a", "version": 1}, {"key": "a", "version": 1})
        + kv("c-0", 2.0, "read", {"key": "a"}, {"key": "a", "version": 1, "cache": "miss"})
        + kv("c-0", 3.0, "write", {"key": "a", "version": 2}, {"key": "a", "version": 2})
        + kv("c-0", 4.0, "write", {"key": "a", "version": 3}, {"key": "a", "version": 3}, "info")
        + kv("c-0", 5.0, "read", {"key": "a"}, {"key": "a", "version": 3, "cache": "hit"})
    )
    assert check_stale_reads(history).valid is True  # an unknown write may show
    stale = history + kv(
        "c-0", 6.0, "read", {"key": "a"}, {"key": "a", "version": 1, "cache": "hit"}
    )
    result = check_stale_reads(stale)
    assert result.valid is False
    assert result.details["stale"][0] == {"key": "a", "read": 1, "acknowledged": 2, "time": 6.0}


def test_cache_service_counts_errors_latency_and_hit_ratio() -> None:
    from hastack.checkers import check_cache_service

    history: list[dict[str, Any]] = []
    for i in range(200):  # 20/s for 10 s; misses between 5 s and 6 s
        t = i * 0.05
        cache = "miss" if 5.0 <= t < 6.0 else "hit"
        history += kv("c-0", t, "read", {"key": "a"}, {"key": "a", "version": 1, "cache": cache})
    faults = [{"f": "kill", "host": "n2", "time": 5.0}]
    ok = check_cache_service(history, faults, p99_allowance=0.5, recover_within=2.0)
    assert ok.valid is True, ok.summary
    # the first one-second window with 90 % hits starts at 5.9 s (one miss, nineteen hits)
    assert ok.details["recoveries"] == {"kill n2 at 5.0": pytest.approx(0.9)}
    late = check_cache_service(history, faults, p99_allowance=0.5, recover_within=0.5)
    assert late.valid is False
    failing = history + kv("c-0", 7.0, "read", {"key": "a"}, None, "fail")
    assert check_cache_service(failing, faults, p99_allowance=0.5).valid is False


def test_cache_service_judges_the_hit_ratio_only_after_the_operations_named() -> None:
    """A partitioned server's keys are misses until the heal: only the heal is judged."""
    from hastack.checkers import check_cache_service

    history: list[dict[str, Any]] = []
    for i in range(200):  # a third of the reads miss from 2 s to 7 s (the cut), none after
        t = i * 0.05
        cache = "miss" if 2.0 <= t < 7.0 and i % 3 == 0 else "hit"
        history += kv("c-0", t, "read", {"key": "a"}, {"key": "a", "version": 1, "cache": cache})
    faults = [{"f": "partition", "time": 2.0}, {"f": "heal", "time": 7.0}]
    every = check_cache_service(history, faults, p99_allowance=0.5, recover_within=2.0)
    assert every.valid is False, every.summary  # never back at 90 % during the cut
    heal = check_cache_service(
        history, faults, p99_allowance=0.5, recover_within=2.0, judged=["heal"]
    )
    assert heal.valid is True, heal.summary
    assert heal.details["recoveries"]["partition at 2.0 (not judged)"] is None
    assert heal.details["recoveries"]["heal at 7.0"] == pytest.approx(0.0)
