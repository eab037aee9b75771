"""The RabbitMQ soak (issue 15): 100 random faults under oslo.messaging load, bounded in time.

The scenario is built by bench/rabbitmq_soak.py (from scenarios/rabbitmq-rpc-crash.yaml); the
lab run is `lab` and `slow` (about 12 minutes; under `flock /tmp/hastack-lab.lock`):

    scripts/test -m 'lab and slow' tests/test_rabbitmq_soak.py -s
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from hastack.lab.scenario import run_scenario
from hastack.model.config import parse_cluster_config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import rabbitmq_soak  # noqa: E402


def test_the_soak_is_a_valid_bounded_scenario_of_110_faults() -> None:
    scenario = rabbitmq_soak.soak_scenario()
    parse_cluster_config(yaml.safe_dump(scenario.cluster), "rabbitmq-soak: cluster")
    faults = [s for s in scenario.nemesis if s.op in rabbitmq_soak.FAULTS]
    assert len(faults) == rabbitmq_soak.SCHEDULED == 110
    assert {s.op for s in faults} == set(rabbitmq_soak.FAULTS)
    assert scenario.workloads[0].duration <= rabbitmq_soak.BOUND
    # One node at a time: every fault is repaired before the next one strikes.
    repairs = {"crash": "start", "partition": "heal", "pause": "resume"}
    steps = sorted(scenario.nemesis, key=lambda s: s.at)
    for i, step in enumerate(steps):
        if step.op in repairs:
            after = [s for s in steps[i + 1 :] if s.op in (*rabbitmq_soak.FAULTS, repairs[step.op])]
            assert after[0].op == repairs[step.op], (step, after[:1])
    with pytest.raises(ValueError, match="660 s bound"):
        rabbitmq_soak.soak_scenario(faults=120)


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_rabbitmq_soak_loses_no_confirmed_notification(tmp_path: Path) -> None:
    scenario = rabbitmq_soak.soak_scenario()
    result = run_scenario(scenario, tmp_path / "results")
    figures = rabbitmq_soak.figures(scenario, result)
    print("\n".join(figures.lines()))
    summary = (result.results / "summary.txt").read_text()
    # Every crash, partition and pause was carried out (a kill finds no broker on a node
    # that is down at that moment: counted only when done).
    scheduled = [s for s in scenario.nemesis if s.op in ("crash", "partition", "pause")]
    assert sum(v for k, v in figures.faults.items() if k != "kill") == len(scheduled), summary
    assert sum(figures.faults.values()) >= rabbitmq_soak.AT_LEAST, figures.lines()
    assert figures.confirmed > 0, summary
    assert figures.lost == 0, figures.lines()  # read back by the bench, whatever the client did
    assert figures.serving, figures.lines()  # the cluster serves at the end


def test_a_blocking_client_call_is_given_up_at_its_bound() -> None:
    """oslo.messaging blocks for ever while no broker answers; the rpc workload's calls run in
    daemon threads and are given up at their bound, so the client ends within its own."""
    import asyncio
    import threading
    import time

    from hastack.lab.workloads import Unanswered, _in_daemon_thread

    release = threading.Event()

    def hangs() -> None:
        release.wait(30)

    def fails() -> None:
        raise RuntimeError("no broker")

    async def run() -> None:
        started = time.monotonic()
        with pytest.raises(Unanswered, match=r"no answer within 0\.2s"):
            await _in_daemon_thread("hangs", 0.2, hangs)
        assert time.monotonic() - started < 20  # not the 30 s the call hangs
        with pytest.raises(RuntimeError, match="no broker"):
            await _in_daemon_thread("fails", 5, fails)
        assert await _in_daemon_thread("adds", 5, lambda a, b: a + b, 2, 3) == 5

    asyncio.run(run())  # returns although a thread still hangs: nothing joins it
    release.set()


def test_the_bench_reads_the_notifications_back_itself(tmp_path: Path) -> None:
    """Confirmed notifications are looked for in what the servers consumed, with or without
    the client's own read-back; one the servers never consumed is lost."""
    import json

    from hastack.lab.scenario import ScenarioResult

    scenario = rabbitmq_soak.soak_scenario()
    lines = []
    for i, (kind, value) in enumerate([("ok", 1), ("ok", 2), ("info", 3), ("ok", 4)]):
        lines.append({"process": "rpc-notify", "type": "invoke", "f": "enqueue", "value": value,
                      "time": 100.0 + i})  # fmt: skip
        lines.append({"process": "rpc-notify", "type": kind, "f": "enqueue", "value": value,
                      "time": 100.5 + i})  # fmt: skip
    lines.append({"process": "rpc-0", "type": "invoke", "f": "call", "value": 0, "time": 100.0})
    lines.append({"process": "rpc-0", "type": "ok", "f": "call", "value": 0, "time": 100.1})
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "consumed").mkdir()
    consumed = [1, 2, 2, 3]  # 4 never consumed: lost; 3 was not confirmed: not counted
    (tmp_path / "consumed" / "n1.jsonl").write_text(
        "".join(json.dumps({"value": v}) + "\n" for v in consumed)
    )
    (tmp_path / "nemesis.jsonl").write_text(json.dumps({"f": "crash", "host": "n1"}) + "\n")
    figures = rabbitmq_soak.figures(scenario, ScenarioResult("soak", tmp_path, [], []))
    assert (figures.confirmed, figures.consumed, figures.lost, figures.twice) == (3, 2, 1, 1)
    assert not figures.drained
    assert not figures.serving  # the only successful call was at the load's start
    assert "did NOT serve at the end" in "\n".join(figures.lines())


def test_a_notification_the_notifier_dropped_is_not_counted_confirmed() -> None:
    """oslo.messaging's Notifier logs a failed send and returns: the lab's client must raise
    (the 09:18 soak counted 374 notifications sent while no broker listened as confirmed)."""
    rpc = pytest.importorskip("hastack.lab.net.rpc")
    client = rpc.Client("rabbit://u:p@127.0.0.1:1/", rpc.RECOMMENDED, 5)  # nothing listens
    try:
        with pytest.raises(rpc.NotificationDropped, match="Connection refused"):
            client.notify(1)
    finally:
        client.close()
