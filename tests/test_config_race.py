"""A node that sees a newer configuration before the target written for the older one.

The DC writes each node's target for the configuration it planned with; a node takes only a
target made for the configuration it has, and the DC releases nothing new until every node
has finished its target. If a second configuration change reaches a node before the target
made for the first one (a slow cycle, a watch that resumed after a hiccup), the node waits
for a target for the configuration it has while the DC waits for it to finish the target it
will never take: a wedge that only `cluster-delay` ends, by treating a healthy node as
failed (bench/soak.py found healthy computes fenced that way).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import NamedTuple

import pytest

from hastack.agent import Agent
from hastack.model.config import parse_cluster_config
from hastack.model.config_text import config_to_json
from hastack.model.members import ClusterSnapshot
from hastack.model.state import base_id
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.snapshot import read_snapshot
from helpers import MEMORY_TIMINGS, memory_agent, put_config, stop_agents

pytestmark = pytest.mark.timeout(60)

NODES = ("n1", "n2", "n3")
TIMINGS = MEMORY_TIMINGS


def config(*primitives: str, clone: bool = False) -> bytes:
    """The primitives, and with `clone` a clone `k` on every node."""
    lines = [
        "properties: {stonith-enabled: false, cluster-delay: 6s}",
        "op-defaults: {timeout: 10s}",
        "nodes: [{node: n1}, {node: n2}, {node: n3}]",
        "resources:",
        *(f"  - {{primitive: {p}, agent: 'ocf:heartbeat:Dummy'}}" for p in primitives),
    ]
    if clone:
        lines.append("  - {clone: kk, resource: {primitive: k, agent: 'ocf:heartbeat:Dummy'}}")
    return config_to_json(parse_cluster_config("\n".join(lines) + "\n", "race.yaml"))


async def settled(observer: MemoryStore, keys: Keys, names: set[str]) -> bool:
    """A DC, every node a member, every node done with its target, `names` what runs."""
    snap = await read_snapshot(observer, keys)
    if snap.dc is None or set(snap.members) != set(NODES):
        return False
    active = {base_id(i) for r in snap.statuses.values() for i in r.active()}
    acked = all(
        snap.statuses.get(n) is not None
        and snap.statuses[n].acked == snap.target_revisions.get(n, -1)
        for n in NODES
    )
    return acked and active == names


async def wait(observer: MemoryStore, keys: Keys, names: set[str], timeout: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < timeout:
        if await settled(observer, keys, names):
            return loop.time() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sorted(names)} not settled within {timeout}s")


def overdue(events: Path) -> list[str]:
    return [e for e in events.read_text().splitlines() if json.loads(e)["event"] == "node-overdue"]


class Cluster(NamedTuple):
    stores: dict[str, MemoryStore]
    keys: Keys
    agents: dict[str, Agent]
    running: list[asyncio.Task[None]]
    observer: MemoryStore


def start(name: str, tmp_path: Path) -> Cluster:
    """Three in-memory agents (each through its own store client) and an observer."""
    backend = MemoryBackend(min_lease_ttl=2)
    stores = {n: MemoryStore(backend, timeout=TIMINGS.store_timeout) for n in NODES}
    agents = {n: memory_agent(name, n, tmp_path, stores[n]) for n in NODES}
    running = [asyncio.create_task(a.run(), name=n) for n, a in agents.items()]
    return Cluster(stores, Keys(name), agents, running, MemoryStore(backend))


async def test_a_node_that_skips_a_configuration_is_not_waited_for(tmp_path: Path) -> None:
    stores, keys, agents, running, observer = start("race", tmp_path)

    try:
        await put_config(observer, keys, config("a", clone=True))
        await wait(observer, keys, {"a", "k"}, 20.0)
        snap = await read_snapshot(observer, keys)
        assert snap.dc is not None
        victim = next(n for n in NODES if n != snap.dc.node)
        # The victim hears nothing for a moment (well within its lease): meanwhile the
        # configuration changes, the DC writes targets for it (the clone's instance there is
        # to stop: new work, so a new target), and it changes again.
        stores[victim].partition()
        second = await put_config(observer, keys, config("a", "b"))
        for _ in range(100):
            snap = await read_snapshot(observer, keys)
            target = snap.targets.get(victim)
            if target is not None and target.config_revision == second:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the DC wrote no target for the second configuration")
        await put_config(observer, keys, config("a", "b", "c"))
        await asyncio.sleep(0.2)
        stores[victim].heal()
        # Every node runs the newest configuration's plan, well before cluster-delay (6 s)
        # could end a wait: nobody was given up on.
        took = await wait(observer, keys, {"a", "b", "c"}, 20.0)
        assert overdue(tmp_path / snap.dc.node / "events.jsonl") == []
        assert took < 5.0
    finally:
        await stop_agents(agents.values(), running)


async def test_a_configuration_written_around_hastack_reaches_every_node(tmp_path: Path) -> None:
    """Written with a plain put (as etcdctl would: no delta), the configuration reaches the
    DC, which writes its delta for the other nodes (they follow it by its deltas only): the
    new primitive is probed everywhere and runs within 5 s, nobody overdue. The negative
    control is the same test on a tree without `Agent._pair_config` (never runs)."""
    _, keys, agents, running, observer = start("race", tmp_path)
    try:
        await put_config(observer, keys, config("a"))
        await wait(observer, keys, {"a"}, 20.0)
        written = await observer.put(keys.config, config("a", "b"))
        took = await wait(observer, keys, {"a", "b"}, 20.0)
        snap = await read_snapshot(observer, keys)
        assert snap.dc is not None
        assert overdue(tmp_path / snap.dc.node / "events.jsonl") == []
        assert took < 5.0
        paired = [
            json.loads(e)
            for e in (tmp_path / snap.dc.node / "events.jsonl").read_text().splitlines()
            if json.loads(e)["event"] == "config-paired"
        ]
        assert [e["revision"] for e in paired] == [written]
        # The next change through hastack applies on top of it, delta by delta.
        third = await put_config(observer, keys, config("a", "b", "c"))
        await wait(observer, keys, {"a", "b", "c"}, 20.0)
        for node, agent in agents.items():
            mirror = agent._mirror
            assert mirror is not None
            assert mirror.snapshot().config_revision == third, node
    finally:
        await stop_agents(agents.values(), running)


async def test_a_new_configuration_rewrites_only_the_targets_whose_work_changed(
    tmp_path: Path,
) -> None:
    """One primitive added: the DC writes the target of the node that is to start it, and no
    other (before, every node's target was written again for the new revision, and every
    node took it on and reported it: a write and a report per node per change)."""
    _, keys, agents, running, observer = start("stamps", tmp_path)

    async def settled(names: set[str]) -> ClusterSnapshot | None:
        snap = await read_snapshot(observer, keys)
        if snap.dc is None or set(snap.members) != set(NODES):
            return None
        active = {i for r in snap.statuses.values() for i in r.active()}
        if active != names or any(
            snap.statuses.get(n) is None
            or snap.statuses[n].acked != snap.target_revisions.get(n, -1)
            for n in NODES
        ):
            return None
        return snap

    async def wait(names: set[str]) -> ClusterSnapshot:
        for _ in range(400):
            snap = await settled(names)
            if snap is not None:
                return snap
            await asyncio.sleep(0.05)
        raise AssertionError(f"{sorted(names)} not settled")

    try:
        first = await put_config(observer, keys, config("a"))
        before = await wait({"a"})
        second = await put_config(observer, keys, config("a", "b"))
        after = await wait({"a", "b"})
        assert after.config_revision == second
        (host,) = [n for n, r in after.statuses.items() if "b" in r.active()]
        for node in NODES:
            target = after.targets[node]
            if node == host:
                assert after.target_revisions[node] > second
                assert target.config_revision == second
            else:
                # Taken on under the first configuration and still the node's work.
                assert after.target_revisions[node] == before.target_revisions[node]
                assert target.config_revision == first
                assert after.statuses[node].working == before.target_revisions[node]
    finally:
        await stop_agents(agents.values(), running)
