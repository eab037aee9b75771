"""The agent's cycle through lost memberships and rejoins, on the in-memory store.

Three real agents (real executors running Debian's Dummy agent) share one in-memory store;
a node is cut off from the store (its calls stay silent until their timeout, its watches stay
open and silent — a member on the minority side) at a chosen moment of the transition that
follows a configuration change, for long enough to lose its membership or not, and healed.
Whatever the order of election, loss and rejoin, the cluster must end settled: one DC, every
node a member executing the DC's current target (acknowledged, not void), the singleton on
exactly one node and the clone on all three (docs/control-plane.md, the wedge this replaces).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from hastack.agent import Agent
from hastack.model.config import Location, Role, parse_cluster_config
from hastack.model.config_text import config_to_json
from hastack.model.members import ClusterSnapshot
from hastack.model.state import base_id
from hastack.model.status import NodeReport
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.snapshot import read_snapshot
from helpers import MEMORY_TIMINGS, memory_agent, put_config, stop_agents

NODES = ("n1", "n2", "n3")
# lease 2 s; lost after 0.3 + 2 × 0.5 = 1.3 s without a renewal.
TIMINGS = MEMORY_TIMINGS
CONFIG = parse_cluster_config(
    """\
properties: {stonith-enabled: false, cluster-delay: 5s}
op-defaults: {timeout: 10s}
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - {primitive: solo, agent: "ocf:heartbeat:Dummy", ops: [{name: monitor, interval: 1s}]}
  - clone: c
    resource: {primitive: d, agent: "ocf:heartbeat:Dummy"}
""",
    "replay.yaml",
)


def agent(node: str, tmp_path: Path, store: MemoryStore) -> Agent:
    """A real agent of cluster `replay` on the in-memory store (renewals in its loop)."""
    return memory_agent("replay", node, tmp_path, store)


async def formed(observer: MemoryStore, keys: Keys) -> ClusterSnapshot:
    """The first snapshot with a DC and every node a member (10 s at most)."""
    for _ in range(100):
        snap = await read_snapshot(observer, keys)
        if snap.dc is not None and set(snap.members) == set(NODES):
            return snap
        await asyncio.sleep(0.1)
    raise AssertionError(f"no DC with every node a member within 10s: {set(snap.members)}")


def settled(snap: ClusterSnapshot) -> str | None:
    """Why the cluster is not settled yet, or None."""
    if snap.dc is None:
        return "no DC"
    if set(snap.members) != set(NODES):
        return f"members {sorted(snap.members)}"
    solo, clones = [], []
    for node in NODES:
        report = snap.statuses.get(node)
        target = snap.current_target(node)
        if report is None or target is None:
            return f"{node}: no report or no current target"
        if target.epoch != snap.dc.epoch:
            return f"{node}: target from epoch {target.epoch}, DC at {snap.dc.epoch}"
        if report.acked != snap.target_revisions[node]:
            return f"{node}: acked {report.acked} of {snap.target_revisions[node]}"
        for instance, role in report.active().items():
            if base_id(instance) == "solo":
                solo.append(node)
            elif base_id(instance) == "d" and role is Role.STARTED:
                clones.append(node)
    if len(solo) != 1:
        return f"solo active on {solo}"
    if sorted(clones) != list(NODES):
        return f"clone on {clones}"
    return None


@pytest.mark.parametrize(
    ("victim", "after", "cut_for"),
    [
        ("dc", 0.0, 3.0),  # the DC lost as the plan is made
        ("dc", 0.6, 3.0),  # ... while its targets are being executed
        ("holder", 1.5, 3.0),  # the singleton's node lost once it runs there
        ("holder", 1.5, 6.0),  # ... and back long after the singleton moved elsewhere
        ("follower", 0.3, 3.0),  # a node lost while its target is written
        ("follower", 0.3, 0.8),  # cut off, back before its membership is lost
        ("dc+follower", 0.3, 3.0),  # two nodes lost, one after the other
    ],
)
async def test_the_cluster_settles_after_any_loss_and_rejoin(
    tmp_path: Path, victim: str, after: float, cut_for: float
) -> None:
    backend = MemoryBackend(min_lease_ttl=2)
    stores = {n: MemoryStore(backend, timeout=TIMINGS.store_timeout) for n in NODES}
    keys = Keys("replay")
    agents = {n: agent(n, tmp_path, stores[n]) for n in NODES}
    running = [asyncio.create_task(a.run(), name=n) for n, a in agents.items()]
    observer = MemoryStore(backend)
    overlaps: list[tuple[str, ...]] = []

    async def watch_exclusive() -> None:
        """The singleton, as the executors themselves hold it: never on two nodes at once."""
        while True:
            holding = tuple(
                n
                for n, a in agents.items()
                if "solo" in a.lrm.instances
                and a.lrm.instances["solo"].report.role is not Role.STOPPED
            )
            if len(holding) > 1:
                overlaps.append(holding)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(watch_exclusive())

    async def snapshot() -> ClusterSnapshot:
        return await read_snapshot(observer, keys)

    async def wait_settled(timeout: float) -> None:
        why: str | None = "not looked yet"
        for _ in range(int(timeout / 0.1)):
            why = settled(await snapshot())
            if why is None:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"not settled within {timeout}s: {why}")

    try:
        for _ in range(100):
            snap = await snapshot()
            if snap.dc is not None and set(snap.members) == set(NODES):
                break
            await asyncio.sleep(0.1)
        # The singleton prefers a node that is not the DC: losing its holder then leaves
        # the holder a follower, with a follower's view of the store to come back to.
        dc_now = (await snapshot()).dc
        assert dc_now is not None
        elsewhere = next(n for n in NODES if n != dc_now.node)
        prefer = Location(location="solo-prefers", resource="solo", node=elsewhere, score=100)
        config = CONFIG.model_copy(update={"constraints": [prefer]})
        await put_config(observer, keys, config_to_json(config))
        await asyncio.sleep(after)
        snap = await snapshot()
        assert snap.dc is not None
        dc = snap.dc.node
        holders = [n for n, r in snap.statuses.items() if "solo" in r.active()]
        victims = {
            "dc": [dc],
            "follower": [next(n for n in NODES if n != dc)],
            "holder": holders[:1] or [dc],
            "dc+follower": [dc, next(n for n in NODES if n != dc)],
        }[victim]
        for node in victims:
            stores[node].partition()
            await asyncio.sleep(cut_for / 2)
        await asyncio.sleep(cut_for / 2)
        for node in victims:
            # Its broken watch streams come back later than its first requests, as etcd's do.
            stores[node].heal(watches_after=1.0)
        await wait_settled(40.0)
        # Settled means settled: a while later it still is, with the same DC epoch.
        first = (await snapshot()).dc
        await asyncio.sleep(2.0)
        assert settled(await snapshot()) is None
        assert (await snapshot()).dc == first
        if cut_for > TIMINGS.lease_ttl:
            lost = [
                n
                for n in victims
                if '"membership-lost"' in (tmp_path / n / "events.jsonl").read_text()
            ]
            assert lost == victims  # the fault did what the case says
        assert overlaps == []
    finally:
        sampler.cancel()
        await stop_agents(agents.values(), running)


async def test_the_dc_gives_up_on_a_node_that_never_answers(tmp_path: Path) -> None:
    """n3's executor takes no target at all (wedged), while its lease lives on: the DC waits
    cluster-delay (5 s here), then treats n3 as failed, says so, and the rest moves on."""
    backend = MemoryBackend(min_lease_ttl=2)
    stores = {n: MemoryStore(backend, timeout=TIMINGS.store_timeout) for n in NODES}
    keys = Keys("replay")
    agents = {n: agent(n, tmp_path, stores[n]) for n in NODES}

    def never(*_args: object, **_kwargs: object) -> None:
        return None

    running = [asyncio.create_task(a.run(), name=n) for n, a in agents.items()]
    observer = MemoryStore(backend)
    try:
        snap = await formed(observer, keys)
        assert snap.dc is not None
        wedged = next(n for n in NODES if n != snap.dc.node)
        agents[wedged].lrm.set_target = never  # type: ignore[method-assign]
        await put_config(observer, keys, config_to_json(CONFIG))
        events = tmp_path / snap.dc.node / "events.jsonl"
        for _ in range(150):
            if '"node-overdue"' in events.read_text():
                break
            await asyncio.sleep(0.1)
        assert f'"peer": "{wedged}"' in events.read_text()  # the overdue node, as the DC logs it
        # The others carry on: the clone runs on the two healthy nodes, the singleton too.
        healthy = [n for n in NODES if n != wedged]
        for _ in range(100):
            snap = await read_snapshot(observer, keys)
            runs = {
                n: set(snap.statuses[n].active()) if n in snap.statuses else set() for n in healthy
            }
            if all(any(i.startswith("d") for i in r) for r in runs.values()) and any(
                "solo" in r for r in runs.values()
            ):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the healthy nodes did not carry on: {runs}")
    finally:
        await stop_agents(agents.values(), running)


TEST_AGENTS = str(Path(__file__).parent / "ocf" / "resource.d")


def restart_config(log: Path) -> str:
    """The replay's resources on an agent whose probe takes half a second: the restarted
    agent's first report is due long before its probes have answered."""
    return f"""\
properties: {{stonith-enabled: false, cluster-delay: 5s}}
op-defaults: {{timeout: 10s}}
nodes: [{{node: n1}}, {{node: n2}}, {{node: n3}}]
resources:
  - primitive: solo
    agent: "ocf:hastack-test:slow-probe"
    params: {{log: "{log}"}}
    ops: [{{name: monitor, interval: 1s}}]
  - clone: c
    resource:
      primitive: d
      agent: "ocf:hastack-test:slow-probe"
      params: {{log: "{log}"}}
"""


@pytest.mark.parametrize("when", ["settled", "before its ack"])
async def test_a_restarted_agent_adopts_what_runs_on_its_node(tmp_path: Path, when: str) -> None:
    """The agent of the singleton's node dies (no goodbye: its lease lives on) and a new one
    starts on the same node: once the cluster has settled, or right after its starts, before
    the DC has heard of them. The new agent must adopt what runs there by its probes, as
    Pacemaker's node daemons do after a restart: no stop and no start anywhere. Its report
    must not go out before its probes have answered (the DC would take "nothing runs here"
    for the truth, plan the singleton's start again, and give the node a target that stops
    what runs)."""
    backend = MemoryBackend(min_lease_ttl=2)
    stores = {n: MemoryStore(backend, timeout=TIMINGS.store_timeout) for n in NODES}
    keys = Keys("replay")

    def start(node: str) -> tuple[Agent, asyncio.Task[None]]:
        a = memory_agent("replay", node, tmp_path, stores[node], ocf_agent_dirs=[TEST_AGENTS])
        return a, asyncio.create_task(a.run(), name=node)

    lives = {n: start(n) for n in NODES}
    observer = MemoryStore(backend)
    log = tmp_path / "operations.log"
    log.touch()

    async def wait_settled(timeout: float) -> ClusterSnapshot:
        why: str | None = "not looked yet"
        for _ in range(int(timeout / 0.1)):
            snap = await read_snapshot(observer, keys)
            why = settled(snap)
            if why is None:
                return snap
            await asyncio.sleep(0.1)
        raise AssertionError(f"not settled within {timeout}s: {why}")

    try:
        snap = await formed(observer, keys)
        assert snap.dc is not None
        holder = next(n for n in NODES if n != snap.dc.node)
        old, task = lives[holder]
        started = asyncio.Event()
        if when == "before its ack":
            publish = old.lrm._publish

            async def cut_before_the_ack(report: NodeReport) -> None:
                # The report saying both run here (and the target done) never arrives.
                if {base_id(i) for i in report.active()} >= {"solo", "d"}:
                    stores[holder].partition()
                    started.set()
                await publish(report)

            old.lrm._publish = cut_before_the_ack
        config = parse_cluster_config(restart_config(log), "restart.yaml")
        prefer = Location(location="solo-prefers", resource="solo", node=holder, score=100)
        config = config.model_copy(update={"constraints": [prefer]})
        await put_config(observer, keys, config_to_json(config))
        if when == "settled":
            snap = await wait_settled(30.0)
            assert "solo" in snap.statuses[holder].active()
        else:
            await asyncio.wait_for(started.wait(), 30)
            snap = await read_snapshot(observer, keys)
            assert "solo" not in snap.statuses[holder].active()  # the DC has not heard

        # Killed: no goodbye (nothing stopped, the DC key and lease not given up) and its
        # store calls go nowhere from now on, so its lease and member key stay until the
        # lease expires; what it started runs on, as after a SIGKILL.
        stores[holder].partition()

        async def no_goodbye() -> None:
            return None

        old._leave = no_goodbye  # type: ignore[method-assign]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        stores[holder] = MemoryStore(backend, timeout=TIMINGS.store_timeout)
        lives[holder] = start(holder)
        new = lives[holder][0]

        await wait_settled(30.0)
        await asyncio.sleep(2.0)
        assert settled(await read_snapshot(observer, keys)) is None
        # Each started once, where it runs now; nothing stopped.
        assert sorted(log.read_text().splitlines()) == sorted(
            ["start n1 d", "start n2 d", "start n3 d", f"start {holder} solo"]
        )
        for primitive in ("solo", "d"):
            (report,) = [
                i.report for name, i in new.lrm.instances.items() if base_id(name) == primitive
            ]
            assert report.role is Role.STARTED
            assert report.last_op is not None
            assert report.last_op.op == "probe"
    finally:
        for a, _ in lives.values():
            a.stop()
        for _, task in lives.values():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 30)


async def test_a_lost_lease_the_keeper_never_reports_still_ends_the_membership(
    tmp_path: Path,
) -> None:
    """The keeper stops renewing and never says so (its report lost on the way, as once at
    30 computes while etcd stalled): the cycle itself ends the membership a store timeout and
    a renew interval after the deadline, and the node joins again, instead of going on for
    ever without a membership."""
    backend = MemoryBackend(min_lease_ttl=2)
    store = MemoryStore(backend, timeout=TIMINGS.store_timeout)
    node = agent("n1", tmp_path, store)

    async def silent() -> None:
        await asyncio.Event().wait()  # renews nothing, reports nothing

    node._keeper.run = silent  # type: ignore[method-assign]
    running = asyncio.create_task(node.run())
    events = tmp_path / "n1" / "events.jsonl"
    try:
        for _ in range(100):
            text = events.read_text() if events.exists() else ""
            if text.count('"joined"') >= 2:
                break
            await asyncio.sleep(0.1)
        assert '"membership-lost"' in text, "the membership was never ended"
        assert text.count('"joined"') >= 2, "the node did not join again"
    finally:
        node.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 30)


async def test_sigusr1_says_where_every_thread_and_task_is() -> None:
    from hastack.agent import task_stacks

    async def parked() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(parked(), name="parked-task")
    await asyncio.sleep(0)
    try:
        text = task_stacks()
        assert "thread MainThread:" in text
        assert "task parked-task:" in text
        assert "in parked" in text
    finally:
        task.cancel()


def test_only_an_agent_that_may_be_dc_makes_the_dcs_parts(tmp_path: Path) -> None:
    """A compute (remote) node is never DC: its agent makes no controller and no fencing
    service (nor imports them); a full node's agent makes both at its start, not while it
    takes over after a failover."""
    store = MemoryStore(MemoryBackend())
    remote = memory_agent("c", "cmp1", tmp_path, store, kind="remote")
    assert remote._controller is None
    assert remote._fencing is None
    full = memory_agent("c", "ctl1", tmp_path, store)
    assert full._controller is not None
    assert full._fencing is not None
