"""What comes after a crash is detected, decided purely (docs/fencing.md, "The confirmation and
the schedule in one write", "A new DC waits for no restamp"):

* the DC decides, the moment the device answers, on its view as it will read once the
  fencing record is in (`assume_recorded`), and writes the record with those targets: the
  targets must be the ones it would write a watch event and a cycle later, from the store;
* a new DC puts every target under its epoch (a node refuses an older DC's); a target that
  only changed its stamp asks nothing of a node that finished the older one, so the new DC
  does not wait for its acknowledgement (`WrittenTargets.restamps`) — but it still waits for
  a node that has not finished the older one.

On the in-memory cluster of tests/cluster_sim.py."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from pathlib import Path

from cluster_sim import SimCluster, action_text
from hastack.agent import Agent
from hastack.model.config import ClusterConfig, Role, parse_cluster_config
from hastack.model.config_text import config_to_json
from hastack.model.fencing import FenceRecord, assume_recorded, decode_history
from hastack.model.members import NodeKind, NodeRecord
from hastack.model.status import NodeReport, ResourceReport
from hastack.model.targets import decode_target
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.snapshot import read_snapshot
from helpers import memory_agent

NODES = ["n1", "n2", "n3"]


def _config() -> ClusterConfig:
    config = ClusterConfig.model_validate(
        {
            "properties": {"stonith-enabled": True},
            "resource-defaults": {"resource-stickiness": 100},
            "fencing": {"devices": [{"device": "power", "agent": "fence_hastack_local"}]},
            "resources": [
                {"primitive": "vip", "agent": "hastack:vip", "params": {"ip": "10.0.0.9"}},
                {"primitive": "web", "agent": "ocf:heartbeat:Dummy"},
            ],
        }
    )
    assert config.reference_problems() == []
    return config


def _settled(holder: str = "n1") -> SimCluster:
    """vip on `holder`, web on n3, every node done with its target."""
    sim = SimCluster(
        _config(), NODES, running={holder: {"vip": Role.STARTED}, "n3": {"web": Role.STARTED}}
    )
    for _ in range(6):
        sim.step()
        for name in NODES:
            sim.execute(name)
    assert sim.step().ready == ()
    return sim


def _record(sim: SimCluster, node: str) -> FenceRecord:
    return FenceRecord(
        node, "off", "success", 1, ("power",), "test", sim.now, sim.now, sim.dc, sim.epoch
    )


def _roles(sim: SimCluster) -> dict[str, dict[str, Role]]:
    return {n: dict(t.resources) for n, t in sorted(sim.targets.items())}


def test_the_targets_written_with_the_record_are_those_the_store_would_give() -> None:
    sim = _settled()
    decision = sim.step(suspects=["n1"])
    assert action_text(decision) == ["fence n1"]
    real = copy.deepcopy(sim)

    # Pipelined: decided on the view with the record assumed, then both written at once.
    record = _record(sim, "n1")
    view = assume_recorded(sim.snapshot(), record)
    assert view is not None
    pipelined = sim.controller.decide(
        view, sim.config, epoch=sim.epoch, now=sim.now, suspects=frozenset({"n1"})
    )
    # As before: the record is written, the DC's next cycle reads it and decides.
    real.fence("n1")
    later = real.step(suspects=["n1"])

    assert sorted(action_text(pipelined)) == sorted(action_text(later))
    assert any(a.startswith("start vip ") for a in action_text(pipelined))
    sim.fence("n1")  # the store after the one write: the record ...
    sim.write(pipelined)  # ... and the targets
    assert _roles(sim) == _roles(real)
    # The view the DC read next shows nothing it did not foresee: it follows its plan.
    assert not sim.step(suspects=["n1"]).replanned


def test_the_assumed_record_counts_after_the_nodes_join_and_report() -> None:
    sim = _settled()
    snapshot = sim.snapshot()
    assert not snapshot.fenced_since_join("n1")
    view = assume_recorded(snapshot, _record(sim, "n1"))
    assert view is not None
    assert view.fenced_since_join("n1")
    assert view.fenced_since_report("n1")
    assert view.fences()["n1"] > snapshot.revision
    # Nothing else of the view changes.
    assert view.statuses == snapshot.statuses
    assert view.targets == snapshot.targets


def test_a_record_that_would_not_be_appended_is_not_assumed() -> None:
    sim = _settled()
    record = _record(sim, "n1")
    sim.fence("n1")
    sim.fencing["n1"] = [record]
    assert assume_recorded(sim.snapshot(), record) is None  # a copy of the same write
    failed = FenceRecord(
        "n1", "off", "failed", 1, ("power",), "", sim.now - 5, sim.now - 4, sim.dc, sim.epoch
    )
    assert assume_recorded(sim.snapshot(), failed) is None  # began before the success


def _dc_crash(*, restamping: bool) -> SimCluster:
    """n1, the DC holding vip, crashes: n2 becomes DC and fences it."""
    sim = _settled()
    sim.dc = "n2"
    sim.new_dc()
    sim.restamping = restamping
    decision = sim.step(suspects=["n1"])
    assert action_text(decision) == ["fence n1"]
    # Every node's target put under the new epoch, the same work as before.
    assert {n for n, t in sim.targets.items() if t.epoch == sim.epoch} == {"n2", "n3"}
    return sim


def test_a_new_dc_does_not_wait_for_the_acknowledgement_of_a_restamp() -> None:
    sim = _dc_crash(restamping=True)
    assert set(sim.written.restamps()) == {"n2", "n3"}
    sim.fence("n1")
    decision = sim.step(suspects=["n1"])  # n2 and n3 have not acknowledged the restamps
    assert not decision.hold, decision.reason
    assert action_text(decision) in (["start vip n2"], ["start vip n3"])


def test_without_restamps_the_new_dc_waits_for_every_acknowledgement() -> None:
    # The negative control: the same story, the new DC as it was.
    sim = _dc_crash(restamping=False)
    sim.fence("n1")
    decision = sim.step(suspects=["n1"])
    assert decision.hold
    assert decision.reason == "waiting for n2, n3 to finish"


def test_a_node_that_refused_the_older_target_is_still_waited_for() -> None:
    sim = _settled()
    # The old DC gives n3 new work (db, which prefers n3) ...
    raw = _config().model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["resources"].append({"primitive": "db", "agent": "ocf:heartbeat:Dummy"})
    raw["constraints"] = [{"location": "db-on-n3", "resource": "db", "node": "n3", "score": 100}]
    sim.set_config(ClusterConfig.model_validate(raw))
    for name in NODES:
        sim.report(name)  # probed
    assert action_text(sim.step()) == ["start db n3"]
    sim.execute("n1")
    sim.execute("n2")
    older = sim.target_revisions["n3"]
    # ... and crashes; n3 sees the new DC before that target, and refuses it.
    sim.dc = "n2"
    sim.new_dc()
    sim.nodes["n3"].refused = older
    decision = sim.step(suspects=["n1"])
    assert "fence n1" in action_text(decision)
    assert sim.written.restamps()["n3"] == (sim.target_revisions["n3"], older)
    sim.fence("n1")
    decision = sim.step(suspects=["n1"])
    assert decision.hold
    assert decision.reason == "waiting for n3 to finish"
    sim.execute("n3")
    assert action_text(sim.step(suspects=["n1"])) in (["start vip n2"], ["start vip n3"])


# ---- the agent's one write, on the in-memory store ----------------------------------------

AGENT_CONFIG = """\
properties: {stonith-enabled: true, self-fence-margin: 60s, cluster-delay: 5s}
nodes: [{node: n1}, {node: n2}]
fencing:
  devices: [{device: power, agent: fence_hastack_local}]
resources:
  - {primitive: solo, agent: "ocf:heartbeat:Dummy"}
"""


async def _dc_waiting_for_n2(tmp_path: Path) -> tuple[Agent, MemoryStore, Keys, asyncio.Task[None]]:
    """n1, the DC, alone: n2 (no member key, its lease gone under 60 s ago) last reported
    solo running, so nothing starts it on n1 until n2 is fenced. The DC's own fencing is
    left out: the test confirms the fence itself."""
    backend = MemoryBackend(min_lease_ttl=2)
    observer = MemoryStore(backend)
    keys = Keys("pipe")
    await observer.put(keys.config, config_to_json(parse_cluster_config(AGENT_CONFIG, "t.yaml")))
    await observer.put(keys.node("n2"), NodeRecord("n2", NodeKind.FULL).encode())
    report = NodeReport("n2", updated=time.time(), resources={"solo": ResourceReport(Role.STARTED)})
    await observer.put(keys.status("n2"), report.encode())
    agent = memory_agent("pipe", "n1", tmp_path, MemoryStore(backend, timeout=0.5))
    agent.fencing.ensure = lambda *_args, **_kw: None  # type: ignore[method-assign]
    task = asyncio.create_task(agent.run())
    for _ in range(100):
        snap = await read_snapshot(observer, keys)
        mine = snap.statuses.get("n1")
        if (
            agent.epoch is not None
            and "n1" in snap.targets
            and mine is not None
            and "solo" in mine.probed
            and mine.acked == snap.target_revisions["n1"]
        ):
            return agent, observer, keys, task
        await asyncio.sleep(0.1)
    raise AssertionError("n1 did not become a settled DC within 10 s")


async def _stop(agent: Agent, task: asyncio.Task[None]) -> None:
    agent.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 30)


async def test_the_agent_writes_the_record_and_the_replacement_at_one_revision(
    tmp_path: Path,
) -> None:
    agent, observer, keys, task = await _dc_waiting_for_n2(tmp_path)
    try:
        assert agent.epoch is not None
        before = await read_snapshot(observer, keys)
        assert "solo" not in before.targets["n1"].resources
        record = _fence_of_n2(agent.epoch)
        assert await agent._confirm_fencing(record, agent.epoch) is True
        history = await observer.get(keys.fence_history("n2"))
        target = await observer.get(keys.target("n1"))
        assert history is not None
        assert target is not None
        assert decode_history(history.value) == [record]
        assert decode_target(target.value).resources == {"solo": Role.STARTED}
        assert target.mod_revision == history.mod_revision  # one write
    finally:
        await _stop(agent, task)


async def test_a_node_that_rejoined_since_the_view_gets_nothing_written(tmp_path: Path) -> None:
    agent, observer, keys, task = await _dc_waiting_for_n2(tmp_path)
    try:
        assert agent.epoch is not None
        assert agent._mirror is not None
        stale = agent._mirror.snapshot()
        # n2 joins again after the view the DC decides on (its new life is not the one the
        # device put off).
        await observer.put(keys.node("n2"), NodeRecord("n2", NodeKind.FULL).encode())
        agent._mirror.snapshot = lambda: stale  # type: ignore[method-assign]
        before = await observer.get(keys.target("n1"))
        assert await agent._confirm_fencing(_fence_of_n2(agent.epoch), agent.epoch) is None
        assert await observer.get(keys.fence_history("n2")) is None
        after = await observer.get(keys.target("n1"))
        assert before is not None
        assert after is not None
        assert after.mod_revision == before.mod_revision  # nothing written
    finally:
        await _stop(agent, task)


def _fence_of_n2(epoch: int) -> FenceRecord:
    now = time.time()
    return FenceRecord("n2", "off", "success", 1, ("power",), "test", now, now, "n1", epoch)
