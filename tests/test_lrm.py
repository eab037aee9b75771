"""The local resource manager's loop with a scripted agent: no processes, no namespaces, no
store. The wall clock is fake; the loop waits on events, never on a timer of the test's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from hastack.executor import lrm
from hastack.executor.agents import AgentMetadata, Driver, OcfRc, OpRequest, OpResult
from hastack.executor.lrm import LocalResourceManager
from hastack.model.config import AgentRef, ClusterConfig, Role, parse_cluster_config
from hastack.model.status import LastOp, NodeReport, ResourceReport, decode_status
from hastack.model.targets import NodeTarget

pytestmark = pytest.mark.timeout(20)

TWO = parse_cluster_config(
    """\
resources:
  - {primitive: keep, agent: "ocf:test:scripted"}
  - {primitive: gone, agent: "ocf:test:scripted"}
""",
    "test.yaml",
)
ONE = parse_cluster_config(
    'resources:\n  - {primitive: keep, agent: "ocf:test:scripted"}\n', "test.yaml"
)


class Scripted(Driver):
    """Answers every operation from `answers` (op -> rc; not running by default). Metadata
    waits for `metadata_ready`, so a test can change things while an operation asks for it."""

    def __init__(self) -> None:
        self.answers: dict[str, int] = {}
        self.calls: list[OpRequest] = []
        self.metadata_ready = asyncio.Event()
        self.metadata_ready.set()
        self.asking = asyncio.Event()

    async def execute(self, request: OpRequest) -> OpResult:
        self.calls.append(request)
        return OpResult(self.answers.get(request.op, OcfRc.NOT_RUNNING), duration=0.25)

    async def metadata(self) -> AgentMetadata:
        self.asking.set()
        await self.metadata_ready.wait()
        return AgentMetadata("scripted")


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.driver = Scripted()
        monkeypatch.setattr(lrm, "driver_for", self._driver_for)
        self.reports: list[NodeReport] = []
        self.published = asyncio.Event()
        self.now = 1000.0
        self.lrm = LocalResourceManager(
            "n1", state_dir="/nonexistent", publish=self._publish, clock=lambda: self.now
        )

    def _driver_for(self, ref: AgentRef, **_: object) -> Driver:
        return self.driver

    async def _publish(self, report: NodeReport) -> None:
        self.reports.append(report)
        self.published.set()

    async def until(self, check: Callable[[NodeReport], bool]) -> NodeReport:
        while True:
            if self.reports and check(self.reports[-1]):
                return self.reports[-1]
            self.published.clear()
            await self.published.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        """The executor's loop, run for the block, then cancelled and awaited. What it raises
        as it is cancelled is dropped; an exception it ended with by itself before then is
        raised here, so that a crashed executor is not hidden."""
        loop = asyncio.create_task(self.lrm.run())
        try:
            yield loop
        finally:
            crashed = loop.exception() if loop.done() and not loop.cancelled() else None
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            if crashed is not None:
                raise crashed


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)


async def test_probe_then_start_stamped_with_the_lrms_clock(harness: Harness) -> None:
    h = harness
    h.driver.answers = {"start": OcfRc.SUCCESS}
    h.lrm.set_config(ONE, revision=3)
    async with h.running():
        await h.until(lambda r: "keep" in r.probed)
        h.now = 1042.5
        h.lrm.set_target(NodeTarget(1, 3, {"keep": Role.STARTED}), dc_epoch=1, revision=9)
        done = await h.until(lambda r: r.acked == 9)
        assert done.resources["keep"].role is Role.STARTED
        assert done.resources["keep"].last_op == LastOp("start", 0, "", 1042.5, 0.25)
        assert done.updated == 1042.5
        assert [c.op for c in h.driver.calls] == ["monitor", "start"]


class HeldProbe(Scripted):
    """A scripted agent whose probes (monitors at interval 0) wait for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def execute(self, request: OpRequest) -> OpResult:
        if request.op == "monitor" and request.interval == 0:
            await self.release.wait()
        return await super().execute(request)


async def test_a_node_reports_probing_until_it_has_probed_the_configuration(
    harness: Harness,
) -> None:
    """An agent starts its executor before it has read the store, and announces the node
    once it has joined. Until its probes have answered, its report says `probing` (the DC
    does not count the node online: one saying "nothing runs here" had it start again, and
    the node stop, what a restarted agent was about to adopt), lists the probes under way
    (the DC's deadline), and carries what the last report listed (may still run)."""
    h = harness
    h.driver = HeldProbe()
    h.driver.answers = {"monitor": OcfRc.SUCCESS}  # it runs already
    earlier = NodeReport(
        "n1",
        updated=900.0,
        resources={"keep": ResourceReport(Role.STARTED, last_op=LastOp("start", 0, at=800.0))},
        probed=frozenset({"keep"}),
        acked=7,
    )
    async with h.running():
        h.lrm.announce()  # joined, the store not read yet
        await asyncio.sleep(0.05)  # time for a report to go out (10 ms), were one due
        assert h.reports == []
        h.lrm.set_previous(earlier)
        h.lrm.set_config(ONE, revision=3)
        probing = await h.until(lambda r: "keep" in r.pending)
        assert probing.probing
        assert probing.pending["keep"].op == "probe"
        assert probing.resources == earlier.resources
        assert decode_status("n1", probing.encode()) == probing
        h.driver.release.set()
        done = await h.until(lambda r: not r.probing)
        assert all(r.probing for r in h.reports[: h.reports.index(done)])
        assert done.probed == {"keep"}
        assert done.pending == {}
        assert done.resources["keep"].role is Role.STARTED
        assert done.resources["keep"].last_op is not None
        assert done.resources["keep"].last_op.op == "probe"
        assert "probing" not in done.encode().decode()


async def test_a_cluster_without_configuration_is_reported_at_once(harness: Harness) -> None:
    """Nothing to probe: the node reports as soon as it knows there is no configuration (the
    DC counts it online from that report)."""
    h = harness
    async with h.running():
        h.lrm.set_config(None)
        first = await h.until(lambda r: not r.probing)
        assert first.resources == {}
        assert first.probed == frozenset()
        assert h.driver.calls == []


def without(config: ClusterConfig, primitive: str) -> ClusterConfig:
    kept = [r for r in config.resources if r.id != primitive]
    return config.model_copy(update={"resources": kept})


async def test_a_resource_removed_while_its_probe_asks_for_metadata(harness: Harness) -> None:
    h = harness
    h.driver.metadata_ready.clear()
    h.lrm.set_config(TWO, revision=1)
    async with h.running() as loop:
        await h.driver.asking.wait()
        h.lrm.set_config(ONE, revision=2)
        h.driver.metadata_ready.set()
        probed = asyncio.create_task(h.until(lambda r: "keep" in r.probed))
        await asyncio.wait([loop, probed], return_when=asyncio.FIRST_COMPLETED)
        probed.cancel()
        assert not loop.done(), loop.exception()


async def test_probes_of_a_resource_added_later_are_reported_under_way(harness: Harness) -> None:
    """A resource added to the configuration is probed here too, and that probe is listed
    under way like the first ones: the DC's deadline for the node is the probe's timeout,
    not cluster-delay alone (untracked, a node probing a hundred new resources on a
    saturated CPU reported nothing under way and was given up on as failed, then fenced)."""
    h = harness
    h.driver = HeldProbe()
    h.driver.release.set()  # the first probes answer at once
    async with h.running():
        await _keep_probed(h)
        h.driver.release.clear()
        h.lrm.set_config(TWO, revision=4)
        held = await h.until(lambda r: "gone" in r.pending)
        assert held.pending["gone"].op == "probe"
        assert not held.probing  # the node stays online: only the new resource is looked at
        h.driver.release.set()
        done = await h.until(lambda r: "gone" in r.probed)
        assert done.pending == {}


async def _keep_probed(h: Harness) -> None:
    """A fresh life given ONE, until its one primitive is probed."""
    h.lrm.set_previous(NodeReport("n1"))
    h.lrm.set_config(ONE, revision=3)
    await h.until(lambda r: not r.probing and r.probed == {"keep"})


# ONE and forty more primitives, added at once.
FORTY_MORE = parse_cluster_config(
    'resources:\n  - {primitive: keep, agent: "ocf:test:scripted"}\n'
    + "".join(f'  - {{primitive: p{i}, agent: "ocf:test:scripted"}}\n' for i in range(40)),
    "test.yaml",
)


class SlowProbe(Scripted):
    """Probes (monitors at interval 0) that take 0.1 s."""

    async def execute(self, request: OpRequest) -> OpResult:
        if request.op == "monitor" and request.interval == 0:
            await asyncio.sleep(0.1)
        return await super().execute(request)


async def test_probes_of_many_resources_added_later_do_not_publish_a_report_each(
    harness: Harness,
) -> None:
    """Forty resources added at once are probed one after another (0.1 s each): their
    listing under way goes out lazily — a few reports, not two per probe. The negative
    control is the same on a tree that lists them at once (81 reports and more)."""
    h = harness
    h.driver = SlowProbe()
    async with h.running():
        await _keep_probed(h)
        await h.lrm.throttle.set_limit(1)
        before = len(h.reports)
        h.lrm.set_config(FORTY_MORE, revision=4)
        await h.until(lambda r: len(r.probed) == 41)
        published = len(h.reports) - before
        assert published <= 12, published
        assert any(r.pending for r in h.reports[before:])  # listed, all the same


class CountingProbe(Scripted):
    """Probes that take 0.1 s, counting how many run at once and when each began."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.starts: list[tuple[float, int]] = []  # (monotonic time, running with it)

    async def execute(self, request: OpRequest) -> OpResult:
        if request.op == "monitor" and request.interval == 0:
            self.running += 1
            self.starts.append((time.monotonic(), self.running))
            try:
                await asyncio.sleep(0.1)
            finally:
                self.running -= 1
        return await super().execute(request)


async def test_a_burst_of_probes_starts_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forty resources added at once are probed one at a time during the first load period
    (the node's limit is 4), more at once after it: a hundred nodes given the same
    configuration do not each start four probes in the same instant. The negative control
    is the same on a tree without the ramp (four at once from the start). The machine's
    own load is kept out (it would lower the limit to one)."""
    starts = await _forty_probed(monkeypatch, share=1)
    first = starts[0][0]
    early = [n for t, n in starts if t - first < 0.9]
    later = [n for t, n in starts if t - first >= 1.1]
    assert max(early, default=0) == 1, starts
    assert max(later, default=0) > 1, starts


async def _forty_probed(monkeypatch: pytest.MonkeyPatch, share: int) -> list[tuple[float, int]]:
    """Forty primitives added at once to a node whose limit is 4 (the machine's own load
    kept out) and where one node in `share` probes at a time: when each probe began, and
    how many ran with it."""
    monkeypatch.setattr(lrm, "effective_limit", lambda limit, _load, _threshold: limit)
    monkeypatch.setattr(lrm, "cluster_share", lambda _load, _threshold: share)
    h = Harness(monkeypatch)
    h.driver = CountingProbe()
    async with h.running():
        await _keep_probed(h)
        await h.lrm.throttle.set_limit(4)
        h.driver.starts.clear()
        h.lrm.set_config(FORTY_MORE, revision=4)
        async with asyncio.timeout(30):
            await h.until(lambda r: len(r.probed) == 41)
    return list(h.driver.starts)


class CountingThrottle(lrm.Throttle):
    """Counts how often a waiter looks at the limit (each look is a waiter woken)."""

    recheck = 0.01
    looks = 0

    def allowed(self) -> int:
        self.looks += 1
        return super().allowed()


async def test_waiting_for_a_slot_wakes_one_waiter_not_every_one() -> None:
    """A hundred operations queued behind one slot, each holding it a moment: the waiters
    look at the limit about once per slot released and per recheck of the one at the head,
    and get the slot in the order they came. With every waiter on the condition (the
    negative control, the tree before) each release and each recheck woke all of them:
    thousands of looks."""
    throttle = CountingThrottle(1)
    order: list[int] = []

    async def work(n: int) -> None:
        async with throttle.slot():
            order.append(n)
            await asyncio.sleep(0.002)

    tasks = []
    for n in range(100):
        tasks.append(asyncio.create_task(work(n)))
        await asyncio.sleep(0)  # each queued before the next comes
    await asyncio.gather(*tasks)
    assert throttle.looks < 400, throttle.looks
    assert order == list(range(100))
    assert throttle.waiting == 0
    assert throttle.running == 0


async def test_a_waiter_cancelled_in_the_queue_leaves_it() -> None:
    throttle = lrm.Throttle(1)
    got: list[str] = []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with throttle.slot():
            got.append(name)
            await release.wait()

    first = asyncio.create_task(hold("first"))
    await asyncio.sleep(0)
    head = asyncio.create_task(hold("head"))  # waits on the slot
    behind = asyncio.create_task(hold("behind"))  # waits in the queue behind it
    await asyncio.sleep(0.01)
    head.cancel()
    await asyncio.gather(head, return_exceptions=True)
    assert throttle.waiting == 1
    release.set()
    await asyncio.gather(first, behind)
    assert got == ["first", "behind"]
    assert throttle.waiting == 0
    assert throttle.running == 0


@pytest.mark.parametrize("busy", [True, False])
async def test_a_busy_node_starts_probes_in_its_turns_alone(
    monkeypatch: pytest.MonkeyPatch, busy: bool
) -> None:
    """While the load is extreme a node starts probes only in its one load period of four
    (throttle.probe_turn): a hundred busy nodes do not all probe at once. The negative control
    (not busy) starts them outside those periods too."""
    from hastack.executor.throttle import probe_turn

    starts = await _forty_probed(monkeypatch, share=4 if busy else 1)
    # Decided in its turn, begun a moment later (perhaps just past the turn's end).
    outside = [
        t
        for t, _ in starts
        if not probe_turn("n1", t, 1.0, 4) and not probe_turn("n1", t - 0.05, 1.0, 4)
    ]
    assert len(starts) == 40
    if busy:
        assert outside == [], starts
    else:
        assert outside, starts


# A clone: not exclusive, so self-fencing leaves it running unless its agent says otherwise.
CLONED = parse_cluster_config(
    """\
resources:
  - clone: keep-clone
    resource: {primitive: keep, agent: "ocf:test:scripted"}
""",
    "test.yaml",
)


class Isolating(Scripted):
    """A scripted agent that asks to be stopped when its node loses its membership."""

    def stop_when_isolated(self, params: object) -> bool:
        return True


async def test_what_must_not_outlive_an_isolation_is_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness(monkeypatch)
    h.driver = Isolating()
    h.driver.answers = {"start": OcfRc.SUCCESS, "stop": OcfRc.SUCCESS}
    h.lrm.set_config(CLONED, revision=3)
    async with h.running():
        await h.until(lambda r: "keep" in r.probed)
        h.lrm.set_target(NodeTarget(1, 3, {"keep:0": Role.STARTED}), dc_epoch=1, revision=9)
        await h.until(
            lambda r: "keep:0" in r.resources and r.resources["keep:0"].role is Role.STARTED
        )
        assert await h.lrm.stop_isolated() == ["keep:0"]
        stopped = await h.until(
            lambda r: "keep:0" in r.resources and r.resources["keep:0"].role is Role.STOPPED
        )
        assert stopped.resources["keep:0"].last_op is not None
        assert stopped.resources["keep:0"].last_op.op == "stop"
        assert h.lrm.target is None  # no DC's word counts until the node rejoins
        assert await h.lrm.stop_isolated() == []  # nothing left to stop


async def test_an_ordinary_resource_outlives_an_isolation(harness: Harness) -> None:
    h = harness
    h.driver.answers = {"start": OcfRc.SUCCESS}
    h.lrm.set_config(CLONED, revision=3)
    async with h.running():
        await h.until(lambda r: "keep" in r.probed)
        h.lrm.set_target(NodeTarget(1, 3, {"keep:0": Role.STARTED}), dc_epoch=1, revision=9)
        await h.until(
            lambda r: "keep:0" in r.resources and r.resources["keep:0"].role is Role.STARTED
        )
        assert await h.lrm.stop_isolated() == []
        assert [c.op for c in h.driver.calls] == ["monitor", "start"]


class HearsFencing(Scripted):
    """A scripted agent that must hear of a peer's fence at once."""

    hears_fencing = True

    def __init__(self) -> None:
        super().__init__()
        self.told = asyncio.Event()

    async def execute(self, request: OpRequest) -> OpResult:
        result = await super().execute(request)
        if request.op == "peer-fenced":
            self.told.set()
        return result


async def _started_clone(h: Harness) -> None:
    """Within h.running(): the clone's instance started on this node."""
    h.driver.answers = {"start": OcfRc.SUCCESS, "peer-fenced": OcfRc.SUCCESS}
    h.lrm.set_config(CLONED, revision=3)
    await h.until(lambda r: "keep" in r.probed)
    h.lrm.set_target(NodeTarget(1, 3, {"keep:0": Role.STARTED}), dc_epoch=1, revision=9)
    await h.until(lambda r: "keep:0" in r.resources and r.resources["keep:0"].role is Role.STARTED)


async def test_a_peers_new_fence_is_told_at_once_even_while_a_monitor_holds_the_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness(monkeypatch)
    driver = h.driver = HearsFencing()
    async with h.running():
        await _started_clone(h)
        h.lrm.peers_fenced({"n2": 5})  # what was there before: not news
        async with h.lrm.instances["keep:0"].lock:  # a monitor stuck on the dead peer
            h.lrm.peers_fenced({"n2": 5, "n3": 7, "n1": 8})  # n1 is this node
            await asyncio.wait_for(driver.told.wait(), 5)
        told = [c for c in driver.calls if c.op == "peer-fenced"]
        assert [c.meta["fenced_node"] for c in told] == ["n3"]
        h.lrm.peers_fenced({"n2": 5, "n3": 7, "n1": 8})  # the same fences again: nothing
        driver.told.clear()
        h.lrm.peers_fenced({"n2": 12, "n3": 7})  # n2 fenced once more
        await asyncio.wait_for(driver.told.wait(), 5)
        told = [c for c in driver.calls if c.op == "peer-fenced"]
        assert [c.meta["fenced_node"] for c in told] == ["n3", "n2"]


async def test_an_agent_that_does_not_hear_fencing_is_not_told(harness: Harness) -> None:
    h = harness
    async with h.running():
        await _started_clone(h)
        h.lrm.peers_fenced({})
        h.lrm.peers_fenced({"n2": 5})
        await asyncio.sleep(0.1)
        assert "peer-fenced" not in [c.op for c in h.driver.calls]


DISCOVERY = """\
nodes: [{node: n1}, {node: n2}]
resources:
  - {primitive: keep, agent: "ocf:test:scripted"}
  - {primitive: far, agent: "ocf:test:scripted"}
  - {primitive: tool, agent: "ocf:test:scripted"}
constraints:
  - {location: far-on-n2, resource: far, node: n2, score: 0, resource-discovery: exclusive}
  - location: no-tool-probes-on-computes
    resource: tool
    resource-discovery: never
    rules: [{score: 0, expressions: [{attribute: role, op: eq, value: compute}]}]
"""


async def test_resource_discovery_keeps_probes_off_this_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness(monkeypatch)
    # The rule reads the attributes of this node's member record.
    h.lrm = LocalResourceManager(
        "n1",
        state_dir="/nonexistent",
        publish=h._publish,
        clock=lambda: h.now,
        node_attributes={"role": "compute"},
    )
    h.driver.answers = {"start": OcfRc.SUCCESS}
    h.lrm.set_config(parse_cluster_config(DISCOVERY, "test.yaml"), revision=1)
    async with h.running():
        first = await h.until(lambda r: "keep" in r.probed)
        assert first.probed == {"keep"}
        assert first.unprobed == {"far", "tool"}
        assert [c.instance for c in h.driver.calls] == ["keep"]
        assert decode_status("n1", first.encode()).unprobed == {"far", "tool"}
        # never does not forbid the node: the DC may start it here, unprobed.
        h.lrm.set_target(NodeTarget(1, 1, {"tool": Role.STARTED}), dc_epoch=1, revision=5)
        done = await h.until(lambda r: r.acked == 5)
        assert done.resources["tool"].role is Role.STARTED
        # Without its exclusive location, far is probed here like anything else.
        h.driver.calls.clear()
        config = DISCOVERY.replace(", resource-discovery: exclusive", "")
        h.lrm.set_config(parse_cluster_config(config, "test.yaml"), revision=2)
        again = await h.until(lambda r: "far" in r.probed)
        assert again.unprobed == {"tool"}
        assert [(c.instance, c.op) for c in h.driver.calls] == [("far", "monitor")]


async def test_a_resource_removed_from_the_configuration_is_stopped_by_its_last_definition(
    harness: Harness,
) -> None:
    """The DC stops an orphan (running, no longer configured): the stop must run the agent
    it was started with. It used to fail 'not in the configuration' — a failed stop, which
    fences the node."""
    h = harness
    h.driver.answers = {"start": OcfRc.SUCCESS, "stop": OcfRc.SUCCESS}
    h.lrm.set_config(TWO, revision=1)
    async with h.running():
        await h.until(lambda r: {"keep", "gone"} <= r.probed)
        both = {"keep": Role.STARTED, "gone": Role.STARTED}
        h.lrm.set_target(NodeTarget(1, 1, both), dc_epoch=1, revision=5)
        await h.until(lambda r: r.acked == 5)
        h.lrm.set_config(ONE, revision=2)
        h.lrm.set_target(NodeTarget(1, 2, {"keep": Role.STARTED}), dc_epoch=1, revision=6)
        done = await h.until(lambda r: r.acked == 6)
        assert "gone" not in done.active()
        assert not any(r.failed for r in done.resources.values())
        stop = [c for c in h.driver.calls if c.op == "stop"]
        assert [c.instance for c in stop] == ["gone"]
        # Once stopped, the next configuration forgets it.
        h.lrm.set_config(ONE.model_copy(), revision=3)
        assert "gone" not in h.lrm._placements


async def test_a_target_made_for_a_replaced_configuration_is_answered_for_not_done(
    harness: Harness,
) -> None:
    """The node already has configuration 3 when the DC's target for configuration 2 comes:
    it does none of it, and acknowledges it once nothing is under way, so that the DC plans
    for configuration 3 (tests/test_config_race.py has the wedge this prevents)."""
    h = harness
    h.driver.answers = {"start": OcfRc.SUCCESS, "stop": OcfRc.SUCCESS}
    h.lrm.set_config(ONE, revision=1)
    async with h.running():
        await h.until(lambda r: "keep" in r.probed)
        h.lrm.set_target(NodeTarget(1, 1, {"keep": Role.STARTED}), dc_epoch=1, revision=5)
        await h.until(lambda r: r.acked == 5)
        h.lrm.set_config(TWO, revision=3)
        stale = NodeTarget(1, 2, {"keep": Role.STARTED, "gone": Role.STARTED})
        assert h.lrm.set_target(stale, dc_epoch=1, revision=7) is None
        done = await h.until(lambda r: r.acked == 7)
        assert done.working == 5  # never taken
        assert "gone" not in done.active()
        assert [c.op for c in h.driver.calls if c.instance == "gone"] == ["monitor"]  # probed
        # A target for an older configuration than the node has is not waited for; one for a
        # newer configuration is (the node waits until it has that configuration).
        ahead = NodeTarget(1, 4, {"keep": Role.STARTED})
        h.lrm.set_target(ahead, dc_epoch=1, revision=9)
        await asyncio.sleep(0.05)
        assert h.lrm.acked == 7


async def test_a_target_taken_on_stays_the_nodes_work_through_a_newer_configuration(
    harness: Harness,
) -> None:
    """The DC does not write a target again when its plan for a newer configuration asks the
    same work of a node that took it on (NodeTarget.same_work, `taken`): the node keeps it
    — it is neither dropped nor answered for again — and its report keeps saying it works on
    it (`working`), which is what the DC looks at."""
    h = harness
    h.driver.answers = {"start": OcfRc.SUCCESS}
    h.lrm.set_config(ONE, revision=1)
    async with h.running():
        await h.until(lambda r: "keep" in r.probed)
        taken = NodeTarget(1, 1, {"keep": Role.STARTED})
        h.lrm.set_target(taken, dc_epoch=1, revision=5)
        await h.until(lambda r: r.acked == 5)
        h.lrm.set_config(TWO, revision=3)
        for _ in range(3):  # each cycle of the agent gives it the target the store holds
            assert h.lrm.set_target(taken, dc_epoch=1, revision=5) is None
        after = await h.until(lambda r: "gone" in r.probed)
        assert h.lrm.target is taken
        assert (after.working, after.acked) == (5, 5)
        assert after.active() == {"keep": Role.STARTED}
        assert [c.op for c in h.driver.calls] == ["monitor", "start", "monitor"]


def test_a_reports_operations_leave_out_what_the_decoder_assumes() -> None:
    """An empty reason and a zero interval are not written (a node's report lists the last
    operation of every instance it runs, and is written whole at each change): the same
    report back, fewer bytes."""
    start = LastOp("start", 0, "", 1765100000.25, 0.5)
    monitor = LastOp("monitor", 7, "not running", 1765100001.5, 0.25, interval=10.0)
    report = NodeReport(
        "n1",
        updated=1765100002.0,
        resources={
            "a": ResourceReport(Role.STARTED, last_op=start),
            "b": ResourceReport(
                Role.STOPPED, failed=True, fail_count=1, last_op=monitor, failed_op=monitor
            ),
        },
        probed=frozenset({"a", "b"}),
    )
    raw = report.encode()
    assert decode_status("n1", raw) == report
    assert b'"reason":""' not in raw
    assert b'"interval":0' not in raw
    assert b'"reason":"not running"' in raw
    assert b'"interval":10.0' in raw


class ProbesHeldFor(Scripted):
    """A scripted agent whose probes of the primitives in `held` wait for `release`, saying
    when one has begun."""

    def __init__(self, held: set[str]) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()
        self.probing = asyncio.Event()

    async def execute(self, request: OpRequest) -> OpResult:
        if request.op == "monitor" and request.interval == 0 and request.primitive in self.held:
            self.probing.set()
            await self.release.wait()
        return await super().execute(request)


THREE = parse_cluster_config(
    """\
resources:
  - {primitive: keep, agent: "ocf:test:scripted"}
  - {primitive: gone, agent: "ocf:test:scripted"}
  - {primitive: third, agent: "ocf:test:scripted"}
""",
    "test.yaml",
)


async def test_a_burst_of_probes_holds_back_no_target_of_other_resources(
    harness: Harness,
) -> None:
    """Probes of primitives just added run beside the executor's passes: a stop of another
    resource asked meanwhile is done at once, not after the burst (at 1,000 primitives a
    burst lasted 20 s; docs/control-plane.md, section 5). The target is answered for only
    once the probes are done."""
    h = harness
    h.driver = ProbesHeldFor({"gone", "third"})
    h.driver.answers = {"start": OcfRc.SUCCESS, "stop": OcfRc.SUCCESS}
    h.lrm.set_config(ONE, revision=3)
    async with h.running():
        await h.until(lambda r: "keep" in r.probed)
        h.lrm.set_target(NodeTarget(1, 3, {"keep": Role.STARTED}), dc_epoch=1, revision=9)
        await h.until(lambda r: r.acked == 9)
        h.lrm.set_config(THREE, revision=4)
        await asyncio.wait_for(h.driver.probing.wait(), 5)
        h.lrm.set_target(NodeTarget(1, 4, {}), dc_epoch=1, revision=10)
        stopped = await asyncio.wait_for(
            h.until(lambda r: r.resources["keep"].role is Role.STOPPED), 5
        )
        assert "stop" in [c.op for c in h.driver.calls if c.primitive == "keep"]
        assert stopped.acked == 9  # not answered for: the probes still run
        h.driver.release.set()
        done = await h.until(lambda r: r.acked == 10)
        assert {"gone", "third"} <= done.probed


async def test_a_start_waits_for_its_resources_probe(harness: Harness) -> None:
    """A target arriving while a resource's probe runs starts it only once the probe has
    said it is not running: never an operation racing the probe of the same resource."""
    h = harness
    h.driver = ProbesHeldFor({"gone"})
    h.driver.answers = {"start": OcfRc.SUCCESS}
    h.lrm.set_config(ONE, revision=3)
    async with h.running():
        await h.until(lambda r: "keep" in r.probed)
        h.lrm.set_config(TWO, revision=4)
        await asyncio.wait_for(h.driver.probing.wait(), 5)
        h.lrm.set_target(NodeTarget(1, 4, {"gone": Role.STARTED}), dc_epoch=1, revision=9)
        for _ in range(20):
            await asyncio.sleep(0)
        assert [c.op for c in h.driver.calls if c.primitive == "gone"] == []
        h.driver.release.set()
        done = await h.until(lambda r: r.acked == 9)
        assert done.resources["gone"].role is Role.STARTED
        assert [c.op for c in h.driver.calls if c.primitive == "gone"][:2] == ["monitor", "start"]
