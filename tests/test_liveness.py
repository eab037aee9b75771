"""Liveness after faults: the DC never waits for ever on a node (docs/control-plane.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ClusterFactory
from hastack.agent import Agent
from hastack.controller import Controller
from hastack.eventlog import read_events
from hastack.fencing.watchdog import ensure_process_watchdog
from hastack.membership.selfcheck import EXIT_STALLED, SelfCheck, is_stalled, run_queue_wait
from hastack.model.agent_config import parse_agent_config
from hastack.model.config import ClusterConfig, Role, parse_cluster_config
from hastack.model.members import ClusterSnapshot, DcRecord, MemberRecord, NodeKind, NodeRecord
from hastack.model.status import NodeReport, PendingOp, ResourceReport
from hastack.model.targets import NodeTarget

CONFIG = parse_cluster_config(
    """\
properties: {stonith-enabled: false}
nodes: [{node: n1}, {node: n2}]
resources:
  - {primitive: vip, agent: "hastack:vip", params: {ip: 10.9.9.9}}
""",
    "c.yaml",
)


def snapshot(
    config: ClusterConfig,
    *,
    member_revisions: dict[str, int],
    targets: dict[str, tuple[int, NodeTarget]],
    reports: dict[str, NodeReport],
) -> ClusterSnapshot:
    return ClusterSnapshot(
        revision=100,
        dc=DcRecord("n2", epoch=52, lease=2),
        members={
            n: MemberRecord(n, NodeKind.FULL, joined_at=1.0, revision=r)
            for n, r in member_revisions.items()
        },
        nodes={n: NodeRecord(n, NodeKind.FULL, revision=r) for n, r in member_revisions.items()},
        other={},
        problems=(),
        config=config,
        config_revision=7,
        statuses=reports,
        targets={n: t for n, (_, t) in targets.items()},
        target_revisions={n: r for n, (r, _) in targets.items()},
    )


def report(node: str, *, acked: int, running: dict[str, Role] | None = None) -> NodeReport:
    return NodeReport(
        node=node,
        updated=10.0,
        resources={k: ResourceReport(role=v) for k, v in (running or {}).items()},
        probed=frozenset({"vip"}),
        acked=acked,
    )


def test_a_target_from_before_the_nodes_current_life_is_not_waited_for() -> None:
    """The lab's wedge: the new DC wrote n1's target (revision 60) while n1 was cut off; n1
    rejoined (member key at 70) and ignores it; its last acknowledgement is older (40)."""
    stale = NodeTarget(epoch=52, config_revision=7, resources={"vip": Role.STARTED})
    snap = snapshot(
        CONFIG,
        member_revisions={"n1": 70, "n2": 3},
        targets={"n1": (60, stale), "n2": (61, NodeTarget(52, 7))},
        reports={"n1": report("n1", acked=40), "n2": report("n2", acked=61)},
    )
    assert snap.target_is_void("n1")
    assert snap.current_target("n1") is None
    assert not snap.target_is_void("n2")
    decision = Controller().decide(snap, CONFIG, epoch=52, now=20.0)
    assert not decision.hold, decision.reason
    # The negative control: the same target written in n1's current life is waited for.
    live = snapshot(
        CONFIG,
        member_revisions={"n1": 50, "n2": 3},
        targets={"n1": (60, stale), "n2": (61, NodeTarget(52, 7))},
        reports={"n1": report("n1", acked=40), "n2": report("n2", acked=61)},
    )
    waiting = Controller().decide(live, CONFIG, epoch=52, now=20.0)
    assert waiting.hold
    assert waiting.reason == "waiting for n1 to finish"


FENCED = parse_cluster_config(
    """\
properties: {stonith-enabled: true, cluster-delay: 20s}
nodes: [{node: n1}, {node: n2}]
fencing:
  devices: [{device: d, agent: fence_hastack_local, targets: [n1, n2]}]
resources:
  - {primitive: vip, agent: "hastack:vip", params: {ip: 10.9.9.9}}
""",
    "c.yaml",
)


def working(node: str, *, updated: float, pending: dict[str, PendingOp]) -> NodeReport:
    return NodeReport(
        node=node,
        updated=updated,
        resources={"vip": ResourceReport(role=Role.STARTED)},
        probed=frozenset({"vip"}),
        acked=40,
        working=60,
        pending=pending,
    )


def test_a_node_that_never_finishes_is_given_up_on_after_its_timeout_and_cluster_delay() -> None:
    target = NodeTarget(epoch=52, config_revision=7, resources={"vip": Role.STARTED})
    start = {"vip": PendingOp("start", since=9.0, timeout=10.0)}

    def snap(updated: float) -> ClusterSnapshot:
        return snapshot(
            FENCED,
            member_revisions={"n1": 50, "n2": 3},
            targets={"n1": (60, target), "n2": (61, NodeTarget(52, 7))},
            reports={
                "n1": working("n1", updated=updated, pending=start),
                "n2": report("n2", acked=61),
            },
        )

    controller = Controller()
    for mono in (100.0, 120.0, 129.9):  # 20 s of cluster-delay + the start's 10 s
        decision = controller.decide(snap(10.0), FENCED, epoch=52, now=20.0, mono=mono)
        assert decision.hold, mono
        assert not decision.overdue
    given_up = controller.decide(snap(10.0), FENCED, epoch=52, now=20.0, mono=130.5)
    assert not given_up.hold
    assert given_up.overdue == {
        "n1": "n1 has not finished its target (start vip) for 30s (allowed 30s)"
    }
    assert [(a.kind.value, a.node) for a in given_up.ready] == [("fence", "n1")]


def test_progress_starts_the_clock_again() -> None:
    target = NodeTarget(epoch=52, config_revision=7, resources={"vip": Role.STARTED})
    controller = Controller()
    for step, mono in enumerate((100.0, 125.0, 150.0, 175.0)):
        snap = snapshot(
            FENCED,
            member_revisions={"n1": 50, "n2": 3},
            targets={"n1": (60, target), "n2": (61, NodeTarget(52, 7))},
            reports={
                # a new report every 25 s: slow, but moving
                "n1": working("n1", updated=10.0 + step, pending={}),
                "n2": report("n2", acked=61),
            },
        )
        decision = controller.decide(snap, FENCED, epoch=52, now=20.0, mono=mono)
        assert decision.hold
        assert not decision.overdue


def test_a_restarted_node_is_waited_for_while_it_probes() -> None:
    """n1's agent restarted (member key rewritten at 70; its target, 60, is void): while it
    probes, its report lists what it ran before and the probe under way. It is not online
    yet: the DC neither takes that report for what runs there nor plans around it; it waits
    cluster-delay plus the probe's timeout, then gives up on the node."""
    stale = NodeTarget(epoch=52, config_revision=7, resources={"vip": Role.STARTED})
    probe = {"vip": PendingOp("probe", since=9.0, timeout=10.0)}
    probing = dataclasses.replace(
        working("n1", updated=10.0, pending=probe), acked=60, working=60, probing=True
    )

    def snap(n1: NodeReport) -> ClusterSnapshot:
        return snapshot(
            FENCED,
            member_revisions={"n1": 70, "n2": 3},
            targets={"n1": (60, stale), "n2": (61, NodeTarget(52, 7))},
            reports={"n1": n1, "n2": report("n2", acked=61)},
        )

    assert not snap(probing).has_reported("n1")
    controller = Controller()
    for mono in (100.0, 120.0, 129.9):  # 20 s of cluster-delay + the probe's 10 s
        decision = controller.decide(snap(probing), FENCED, epoch=52, now=20.0, mono=mono)
        assert decision.hold, mono
        assert decision.reason == "waiting for n1 to finish"
        assert not decision.overdue
    given_up = controller.decide(snap(probing), FENCED, epoch=52, now=20.0, mono=130.5)
    assert given_up.overdue == {
        "n1": "n1 has not finished probing (probe vip) for 30s (allowed 30s)"
    }
    assert [(a.kind.value, a.node) for a in given_up.ready] == [("fence", "n1")]
    # Probed: online, and what it reports runs there stays there.
    done = dataclasses.replace(probing, pending={}, probing=False)
    assert snap(done).has_reported("n1")
    decision = Controller().decide(snap(done), FENCED, epoch=52, now=20.0, mono=100.0)
    assert not decision.hold, decision.reason
    assert decision.plan.actions == ()
    assert decision.targets["n1"].resources == {"vip": Role.STARTED}


# ---- the self-check and the watchdog: an agent never goes silent -------------------------------


def test_the_self_check_ends_a_process_whose_loop_stopped() -> None:
    now = [0.0]
    exits: list[int] = []
    said: list[str] = []
    check = SelfCheck(
        5.0,
        on_stall=said.append,
        clock=lambda: now[0],
        exit_process=exits.append,
        waited=lambda _tid: None,  # the kernel's figure unknown: the wall clock alone
    )
    check.tick("cycle")
    now[0] = 4.9
    assert check.check()
    check.tick("cycle")  # progress: the clock starts again
    now[0] = 9.0
    assert check.check()
    now[0] = 10.0
    assert not check.check()
    assert exits == [EXIT_STALLED]
    assert said == ["the agent's event loop made no progress for 5.1s (limit 5s; last: cycle)"]


def test_time_spent_waiting_for_a_cpu_is_not_held_against_the_loop_up_to_a_bound() -> None:
    """A DC starved of CPU on a saturated machine is not stuck: restarting it would only add
    a start and an election to the load. Its run-queue wait is forgiven, up to 3 limits."""
    assert not is_stalled(7.2, 2.0, 6.5)  # the scale bench's starved DCs (docs/control-plane.md)
    assert is_stalled(7.2, 0.3, 6.5)  # blocked, not starved
    assert is_stalled(19.6, 19.6, 6.5)  # starved for good: ended all the same
    assert not is_stalled(6.4, -1.0, 6.5)

    now, wait = [0.0], [10.0]
    exits: list[int] = []
    check = SelfCheck(
        5.0, clock=lambda: now[0], exit_process=exits.append, waited=lambda _tid: wait[0]
    )
    check.tick()
    assert check.check()  # the wait counts from here: 10.0
    now[0], wait[0] = 7.0, 13.0  # 7 s without progress, 3 of them runnable and waiting
    assert check.check()
    now[0], wait[0] = 9.0, 13.5  # 9 s, 3.5 waiting: 5.5 of its own
    assert not check.check()
    assert exits == [EXIT_STALLED]


def test_an_agent_whose_event_loop_is_blocked_ends_itself(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """A real agent on a real etcd; its event loop blocked by a call that does not return
    (here: a sleep in a callback). The self-check thread notices and ends the process (the
    exit is recorded instead, so the test's own process survives)."""
    lc = local_cluster(1, agents=False)
    config = parse_agent_config(
        yaml.safe_dump(
            {
                "cluster": lc.name,
                "node": "w1",
                "etcd": {**lc.etcd_spec("n1"), "election-timeout": "500ms"},
                "timings": {"lease-ttl": "4s", "renew-interval": "500ms", "store-timeout": "1s"},
                "heartbeat-port": 0,
            }
        ),
        "agent.yaml",
    )
    exits: list[int] = []
    check = SelfCheck(2.0, exit_process=exits.append)
    events = tmp_path / "w1" / "events.jsonl"

    async def scenario() -> None:
        agent = Agent(config, state_dir=tmp_path / "w1", self_check=check)
        running = asyncio.create_task(agent.run())
        try:
            for _ in range(200):
                if events.exists() and '"joined"' in events.read_text():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            assert exits == []  # a running cycle ticks
            time.sleep(3.5)  # the event loop is blocked: nothing in it runs  # noqa: ASYNC251
            assert exits == [EXIT_STALLED]
        finally:
            agent.stop()
            await asyncio.wait_for(running, 30)

    asyncio.run(scenario())
    assert '"self-check-failed"' in events.read_text()


def test_a_supervised_agent_that_ends_is_started_again(tmp_path: Path) -> None:
    marks = tmp_path / "runs"
    script = f"import sys; open({str(marks)!r}, 'a').write('x'); sys.exit(70)"
    result = subprocess.run(
        [sys.executable, "-m", "hastack.lab.supervise", "--max-restarts", "2", "--",
         sys.executable, "-c", script],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 70
    assert marks.read_text() == "xxx"  # the first run and two restarts
    assert "restart 1" in result.stderr
    assert "giving up" in result.stderr


SPEAKER = """
import socket, sys, time
path, times = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for _ in range(times):
    s.sendto(("alive %f" % (time.monotonic() + 1.0)).encode(), path)
    time.sleep(0.3)
s.sendto(b"safe", path)  # a graceful end: nothing to kill any more
time.sleep(60 if times == 1 else 0)
"""


def test_a_watchdog_that_stops_hearing_from_its_agent_kills_it(tmp_path: Path) -> None:
    """Nothing exclusive held: the agent says `alive` with a deadline; past it without a word
    the watchdog kills the agent (its supervisor then starts a fresh one), and says so. The
    watchdog learns who speaks from the kernel: the speaking process is the one killed."""
    client = ensure_process_watchdog(tmp_path, "w1")
    try:
        # Speaks once, then falls silent for 60 s (its "safe" below comes too late: it is
        # sent only after the sleep, so the watchdog must act first).
        silent = subprocess.Popen(
            [sys.executable, "-c", SPEAKER.replace('s.sendto(b"safe", path)', "pass"),
             str(client.path), "1"],
            start_new_session=True,
        )  # fmt: skip
        assert silent.wait(timeout=15) == -signal.SIGKILL
        assert "no word from the agent" in (tmp_path / "watchdog.log").read_text()
        # The negative control: one that keeps speaking, then says it is safe, is left alone.
        speaking = subprocess.Popen(
            [sys.executable, "-c", SPEAKER, str(client.path), "10"], start_new_session=True
        )
        assert speaking.wait(timeout=15) == 0
        assert (tmp_path / "watchdog.log").read_text().count("no word from the agent") == 1
        # ... and in the node's event log, where the benchmarks count it.
        killed = [e for e in read_events(tmp_path / "events.jsonl") if "watchdog" in e["event"]]
        assert [(e["event"], e["node"]) for e in killed] == [("watchdog-killed-agent", "w1")]
    finally:
        client.safe()
        client.exit()


def test_a_target_the_node_refused_is_not_waited_for() -> None:
    """A new DC (epoch 76) finds n1's target from the DC before it (epoch 69), which n1 has
    refused since it saw epoch 76: waiting for it would be waiting for ever."""
    old = NodeTarget(epoch=69, config_revision=7, resources={"vip": Role.STARTED})
    refused = NodeReport("n1", updated=10.0, probed=frozenset({"vip"}), acked=40, refused=60)
    snap = snapshot(
        CONFIG,
        member_revisions={"n1": 50, "n2": 3},
        targets={"n1": (60, old), "n2": (61, NodeTarget(52, 7))},
        reports={"n1": refused, "n2": report("n2", acked=61)},
    )
    assert not Controller().decide(snap, CONFIG, epoch=76, now=20.0).hold
    # The negative control: not refused (yet), it is waited for.
    taken = NodeReport("n1", updated=10.0, probed=frozenset({"vip"}), acked=40, working=60)
    snap = snapshot(
        CONFIG,
        member_revisions={"n1": 50, "n2": 3},
        targets={"n1": (60, old), "n2": (61, NodeTarget(52, 7))},
        reports={"n1": taken, "n2": report("n2", acked=61)},
    )
    assert Controller().decide(snap, CONFIG, epoch=76, now=20.0).hold


def test_a_life_begins_when_the_member_key_is_written_not_created() -> None:
    """An agent restarted before its old lease expired overwrites its old member key (whose
    create revision stays): the new life still begins at that write, so the old life's
    target is void and its silence is not held against the new one."""
    from hastack.model.members import StoredKey, decode_snapshot

    member = MemberRecord("n1", NodeKind.FULL, joined_at=1.0).encode()
    target = NodeTarget(epoch=5, config_revision=0, resources={"vip": Role.STARTED}).encode()
    snap = decode_snapshot(
        30,
        [
            StoredKey("members/n1", member, create_revision=5, mod_revision=20, lease=7),
            StoredKey("target/n1", target, create_revision=8, mod_revision=10, lease=0),
        ],
    )
    assert snap.members["n1"].revision == 20
    assert snap.target_is_void("n1")


def test_the_run_queue_wait_of_this_thread_is_read_from_the_kernel() -> None:
    import threading

    first = run_queue_wait(threading.get_native_id())
    if first is None:
        pytest.skip("this kernel keeps no schedstat")
    assert first >= 0.0
    assert run_queue_wait(2**22 + 12345) is None  # no such thread
    assert run_queue_wait(None) is None
