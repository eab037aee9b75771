"""The `hastack:rabbitmq` agent's decisions (hastack.rabbitmq.decide), replayed from golden
tables: tests/golden/rabbitmq/<kind>.yaml holds the inputs, <kind>.expected one line per case
(what was decided and why). The expected files were written by hand from docs/rabbitmq.md and
reviewed line by line; set HASTACK_UPDATE_GOLDEN=1 to rewrite them after a deliberate change,
then read the diff. Property tests check the safety rules on every input."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import yaml
from hypothesis import given

from hastack.rabbitmq import (
    BOOT_ATTEMPTS,
    BrokerReport,
    BrokerStatus,
    Health,
    MemberState,
    NodeFacts,
    QueueInfo,
    Start,
    decide_boot_exit,
    decide_force_boot,
    decide_forget,
    decide_grow,
    decide_start,
    monitor_verdict,
    tables_wait_since,
)

GOLDEN = Path(__file__).parent / "golden" / "rabbitmq"


def facts(data: dict[str, Any]) -> NodeFacts:
    return NodeFacts(
        record=MemberState(data.get("record", "none")),
        record_revision=int(data.get("record_revision", 0)),
        online=bool(data.get("online", False)),
        running=bool(data.get("running", False)),
        serving=bool(data.get("serving", False)),
        fenced_revision=data.get("fenced_revision"),
        fenced_at=data.get("fenced_at"),
        removed_revision=data.get("removed_revision"),
    )


def render_start(case: dict[str, Any]) -> str:
    d = decide_start(
        case["me"],
        has_data=case["has_data"],
        nodes={n: facts(f) for n, f in (case.get("nodes") or {}).items()},
        founder=case.get("founder"),
        now=float(case.get("now", 1000)),
        forget_after=case.get("forget_after"),
        force=case.get("force"),
    )
    extra = (f" {d.peer}" if d.peer else "") + (" (set aside)" if d.set_aside else "")
    return f"{d.action.value}{extra} — {d.reason}"


def render_forget(case: dict[str, Any]) -> str:
    out = decide_forget(
        {n: facts(f) for n, f in (case.get("nodes") or {}).items()},
        me=case["broker"]["node"],
        listed=case["broker"]["disc"],
        now=float(case.get("now", 1000)),
        forget_after=case.get("forget_after"),
    )
    return "; ".join(f"{n}: {why}" for n, why in out) or "nothing"


def _broker(data: dict[str, Any] | None) -> BrokerStatus | None:
    if data is None:
        return None
    return BrokerStatus(
        node=data["node"],
        app_running=data["app"],
        disc_nodes=tuple(data.get("disc", ())),
        running_nodes=tuple(data.get("running", ())),
        partitions=tuple(data.get("partitions", ())),
    )


def render_monitor(case: dict[str, Any]) -> str:
    v = monitor_verdict(
        process_alive=case["alive"],
        probe_error=case.get("probe_error"),
        broker=_broker(case.get("broker")),
        status_error=case.get("status_error"),
        vm_answers=case.get("vm_answers", True),
        booting=case.get("booting", False),
    )
    return f"{v.health.value}" + (f" — {v.reason}" if v.reason else "")


def render_force_boot(case: dict[str, Any]) -> str:
    reports = {
        n: BrokerReport(
            n,
            float(r["at"]),
            r["health"],
            served_at=r.get("served_at"),
            waiting_since=r.get("waiting_since"),
        )
        for n, r in case["reports"].items()
    }
    d = decide_force_boot(
        case["me"],
        members=case.get("members", ["n1", "n2", "n3"]),
        reports=reports,
        waiting_since=float(case["waiting_since"]),
        now=float(case.get("now", 1000)),
        patience=float(case.get("patience", 60)),
        fresh=float(case.get("fresh", 30)),
    )
    return ("force-boot" if d.force else "wait") + f" — {d.reason}"


def render_boot_exit(case: dict[str, Any]) -> str:
    d = decide_boot_exit(
        case["cause"], case["last"], case["boots"], config_error=case["config_error"]
    )
    return ("boot again" if d.again else "fail") + f" — {d.reason}"


RENDER = {
    "start": render_start,
    "forget": render_forget,
    "monitor": render_monitor,
    "force_boot": render_force_boot,
    "boot_exit": render_boot_exit,
}


@pytest.mark.parametrize("kind", sorted(RENDER))
def test_golden(kind: str) -> None:
    cases = yaml.safe_load((GOLDEN / f"{kind}.yaml").read_text())
    got = "".join(f"{c['name']}\n    {RENDER[kind](c)}\n" for c in cases)
    expected = GOLDEN / f"{kind}.expected"
    if os.environ.get("HASTACK_UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_grow_onto_running_members_missing_from_short_queues() -> None:
    queues = [
        QueueInfo("a", "/", "quorum", members=("rabbit@n1", "rabbit@n2")),
        QueueInfo("b", "/", "quorum", members=("rabbit@n1", "rabbit@n2", "rabbit@n3")),
        QueueInfo("c", "/", "classic", members=()),
    ]
    running = ["rabbit@n1", "rabbit@n2", "rabbit@n4"]
    assert decide_grow(queues, running, 3) == ["rabbit@n4"]
    assert decide_grow(queues, running, 2) == []
    assert decide_grow(queues[1:], running, 3) == []


# ---- properties --------------------------------------------------------------------------------

RECORDS = st.sampled_from(list(MemberState))
FACTS = st.builds(
    NodeFacts,
    record=RECORDS,
    record_revision=st.integers(0, 100),
    online=st.booleans(),
    running=st.booleans(),
    fenced_revision=st.none() | st.integers(0, 100),
    fenced_at=st.none() | st.floats(0, 2000),
    removed_revision=st.none() | st.integers(0, 100),
)
NODES = st.dictionaries(st.sampled_from(["n1", "n2", "n3", "n4"]), FACTS, max_size=4)


@given(
    NODES, st.booleans(), st.none() | st.sampled_from(["n1", "n2"]), st.none() | st.floats(1, 500)
)
def test_start_never_discards_data_it_may_need(
    nodes: dict[str, NodeFacts], has_data: bool, founder: str | None, forget_after: float | None
) -> None:
    """A node with data that the cluster has not forgotten always boots from it (restart or
    force-boot): never a join (which resets), never a new cluster. Data is set aside only
    when the cluster forgot the node, and a join names a running, joined peer."""
    d = decide_start(
        "n1", has_data=has_data, nodes=nodes, founder=founder, now=1000.0,
        forget_after=forget_after,
    )  # fmt: skip
    mine = nodes.get("n1", NodeFacts())
    if has_data and mine.record is not MemberState.FORGOTTEN:
        assert d.action in (Start.RESTART, Start.FORCE_BOOT)
    if d.set_aside:
        assert has_data
        assert mine.record is MemberState.FORGOTTEN
    if d.action is Start.JOIN:
        peer = nodes[d.peer or ""]
        assert d.peer != "n1"
        assert peer.running
        assert peer.record is MemberState.JOINED
    if d.action is Start.FOUND:
        assert not has_data
        assert not any(f.record is MemberState.JOINED for n, f in nodes.items() if n != "n1")
    if d.action is Start.FORCE_BOOT:
        # only when no other joined member may come back
        assert not any(
            f.record is MemberState.JOINED and f.online for n, f in nodes.items() if n != "n1"
        )


@given(NODES, st.none() | st.floats(1, 500))
def test_forget_only_fenced_offline_nodes_or_retries(
    nodes: dict[str, NodeFacts], forget_after: float | None
) -> None:
    listed = [*sorted(nodes), "n1"]
    for node, _ in decide_forget(
        nodes, me="n1", listed=listed, now=1000.0, forget_after=forget_after
    ):
        f = nodes[node]
        assert node != "n1"
        if f.record is MemberState.JOINED:
            assert not f.online
            assert f.fenced_revision is not None


def test_monitor_never_restarts_a_paused_minority() -> None:
    broker = BrokerStatus(
        "rabbit@n1", False, ("rabbit@n1", "rabbit@n2", "rabbit@n3"), ("rabbit@n1",)
    )
    assert (
        monitor_verdict(process_alive=True, probe_error="refused", broker=broker).health
        is Health.PAUSED
    )


def test_parsers_on_real_output() -> None:
    """Output captured from rabbitmq-server 3.10 by tests/test_rabbitmq_agent.py."""
    from hastack.rabbitmq import parse_cluster_status, parse_queues

    text = (GOLDEN / "cluster_status.json").read_text()
    status = parse_cluster_status(text, "hn1@localhost", app_running=True)
    assert status.disc_nodes == ("hn1@localhost", "hn2@localhost", "hn3@localhost")
    assert status.running_nodes == status.disc_nodes
    assert status.partitions == ()
    # Lines around the document (seen while a peer was dying) do not hide it.
    assert (
        parse_cluster_status("\nwarning\n" + text + "\n{}", "hn1@localhost", app_running=True)
        == status
    )
    with pytest.raises(ValueError, match="not JSON"):
        parse_cluster_status("Error: usage", "hn1@localhost", app_running=True)
    (queue,) = parse_queues((GOLDEN / "list_queues.json").read_text())
    assert queue.name == "os-q1"
    assert queue.type == "quorum"
    assert queue.leader == "hn1@localhost"
    assert queue.members == ("hn1@localhost", "hn2@localhost", "hn3@localhost")


def test_the_brokers_own_status_document() -> None:
    """What STATUS_ERL and QUEUES_ERL print through erl_call, byte for byte as a broker of
    this machine printed them (rabbitmq-server 3.10.8, one node with a quorum and a classic
    queue: running, then after `stop_app`; the queues while running)."""
    from hastack.rabbitmq import parse_node_status, parse_queues

    running, stopped, queues = (GOLDEN / "node_status.txt").read_text().split("\n---\n")
    node = "rmqexp@localhost"
    status = parse_node_status(running, node, serves=False)
    assert status.app_running
    assert status.disc_nodes == (node,)
    assert status.running_nodes == (node,)
    assert status.partitions == ()
    paused = parse_node_status(stopped, node, serves=False)
    assert not paused.app_running
    # An AMQP handshake says the application runs, whatever the document says.
    assert parse_node_status(stopped, node, serves=True).app_running
    # A paused node sees no majority: paused, never failed.
    three = replace(paused, disc_nodes=(node, "rabbit@n2", "rabbit@n3"))
    verdict = monitor_verdict(process_alive=True, probe_error="refused", broker=three)
    assert verdict.health is Health.PAUSED
    with pytest.raises(ValueError, match="not 'rabbit@n1'"):
        parse_node_status(running, "rabbit@n1", serves=True)
    with pytest.raises(ValueError, match="not JSON"):
        parse_node_status("hastack status failed: exit:noproc", node, serves=True)
    with pytest.raises(ValueError, match="app_running"):
        parse_node_status(running.replace('"app_running":true', '"app_running":1'), node,
                          serves=True)  # fmt: skip
    by_name = {q.name: q for q in parse_queues(queues)}
    assert by_name["qq1"].type == "quorum"
    assert by_name["qq1"].members == (node,)
    assert by_name["qq1"].leader == node
    assert by_name["cq1"].type == "classic"
    assert by_name["cq1"].members == ()
    assert by_name["cq1"].leader is None


def test_a_vhost_is_quoted_for_erlang() -> None:
    from hastack.executor.agents.rabbitmq import _erl_binary

    assert _erl_binary("/") == '<<"/"/utf8>>'
    assert _erl_binary('a"b\\c') == '<<"a\\"b\\\\c"/utf8>>'


def test_a_boot_is_told_from_the_brokers_own_output() -> None:
    """Lines as rabbitmq-server 3.10 prints them on its console (seen on this machine)."""
    from hastack.executor.agents.rabbitmq import _booting

    start = "  Starting broker...2026-12-07 01:05:54.365005+00:00 [info] <0.223.0>\n"
    wait = "2026-12-07 01:05:59.864601+00:00 [info] Waiting for Mnesia tables for 30000 ms\n"
    synced = "2026-12-07 01:05:59.864983+00:00 [info] Successfully synced tables from a peer\n"
    done = " completed with 0 plugins.\n[info] Server startup complete; 0 plugins started.\n"
    assert _booting(start + wait)  # waits for its peers' tables
    assert _booting(start + wait + synced)  # boot steps still running
    assert not _booting(start + wait + synced + done)
    assert _booting(start + wait + synced + done + start)  # booting again (a new life)
    assert not _booting("")  # nothing known: not called booting


def test_the_wait_for_tables_is_dated_from_the_brokers_own_console() -> None:
    """Lines as rabbitmq-server 3.10 printed them in the soak of 2026-12-07 (colours kept)."""
    banner = "  Starting broker...\x1b[0m2026-12-07 07:00:08.336889+00:00 [info] <0.223.0>\n"
    wait1 = "2026-12-07 07:00:08.469828+00:00 [info] <0.223.0> Waiting for Mnesia tables for "
    wait1 += "30000 ms, 9 retries left\n"
    wait2 = wait1.replace("07:00:08.469828", "07:00:38.470729").replace("9 retries", "8 retries")
    synced = "2026-12-07 07:00:09.0+00:00 [info] <0.223.0> Successfully synced tables from a peer\n"
    done = "2026-12-07 07:00:10.0+00:00 [info] <0.223.0> Server startup complete; 0 plugins\n"
    first = 1796626808.469828  # 2026-12-07 07:00:08.469828 UTC
    assert tables_wait_since(banner + wait1 + wait2) == pytest.approx(first)
    assert tables_wait_since(banner + wait1 + synced) is None  # synced: not waiting
    later = wait2.replace("07:00:38.470729", "07:00:39.5")
    assert tables_wait_since(banner + wait1 + synced + later) == pytest.approx(first + 31.030172)
    assert tables_wait_since(banner + wait1 + synced + done) is None  # booted
    assert tables_wait_since(wait1 + banner) is None  # a new boot, not waiting yet
    assert tables_wait_since("") is None


REPORT = st.builds(
    BrokerReport,
    node=st.just("x"),
    at=st.floats(900, 1000),
    health=st.sampled_from(["running", "paused", "failed"]),
    served_at=st.none() | st.floats(0, 1000),
    waiting_since=st.none() | st.floats(0, 1000),
)


@given(st.dictionaries(st.sampled_from(["n1", "n2", "n3"]), REPORT, min_size=1))
def test_at_most_one_waiting_member_force_boots(reports: dict[str, BrokerReport]) -> None:
    """Every member that waits decides on the same reports: at most one of them force-boots,
    and none while a member serves."""
    waiting = {n: r for n, r in reports.items() if r.waiting_since is not None and r.at >= 970}
    chosen = [
        n
        for n, r in waiting.items()
        if decide_force_boot(
            n,
            members=["n1", "n2", "n3"],
            reports=reports,
            waiting_since=0.0,
            now=1000.0,
            patience=60.0,
            fresh=30.0,
        ).force
    ]
    assert len(chosen) <= 1
    for c in chosen:
        assert not any(r.health == "running" and r.at >= 970 for n, r in reports.items() if n != c)


def test_a_start_boots_a_killed_broker_at_most_boot_attempts_times() -> None:
    again = [decide_boot_exit("", "", n, config_error=False).again for n in range(1, 6)]
    assert again == [n < BOOT_ATTEMPTS for n in range(1, 6)]
    assert not decide_boot_exit("the AMQP port is taken", "", 1, config_error=True).again
