"""Work assignment through three real agents on the in-memory store (real executors running
an OCF test agent that hears its entities in its environment): the DC writes the map with the
targets under its epoch; a node cut off from the store releases its entities itself (its
self-fencing) before the DC moves them (no fence devices: lease expiry + margin); nothing
moves back when it returns; and at no sampled moment do two executors serve one entity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hastack.model.assign import AssignRole
from hastack.model.config import parse_cluster_config
from hastack.model.config_text import config_to_json
from hastack.model.members import ClusterSnapshot
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.snapshot import read_snapshot
from helpers import MEMORY_TIMINGS, memory_agent, put_config, stop_agents

pytestmark = pytest.mark.timeout(120)

NODES = ("n1", "n2", "n3")
TIMINGS = MEMORY_TIMINGS
AGENTS = str(Path(__file__).parent / "ocf" / "resource.d")


def config(log: Path) -> bytes:
    return config_to_json(
        parse_cluster_config(
            f"""\
properties: {{stonith-enabled: false, cluster-delay: 5s}}
op-defaults: {{timeout: 10s}}
resources:
  - clone: dhcp-clone
    resource: {{primitive: dhcp, agent: "ocf:hastack-test:assignee", params: {{log: "{log}"}}}}
assignments:
  - {{assignment: nets, clone: dhcp-clone, entities: [a, b, c, d, e, f]}}
""",
            "t.yaml",
        )
    )


def mapping(snap: ClusterSnapshot) -> dict[str, tuple[str, ...]]:
    record = snap.assignments.get("nets")
    return dict(record.entities) if record else {}


def all_served(snap: ClusterSnapshot) -> bool:
    m = mapping(snap)
    return len(m) == 6 and all(
        n
        and snap.statuses.get(n[0]) is not None
        and snap.statuses[n[0]].served.get("nets", {}).get(e) is AssignRole.ACTIVE
        for e, n in m.items()
    )


async def test_a_cut_off_node_releases_before_its_entities_move(tmp_path: Path) -> None:
    backend = MemoryBackend(min_lease_ttl=2)
    stores = {n: MemoryStore(backend, timeout=TIMINGS.store_timeout) for n in NODES}
    keys = Keys("assign")
    agents = {
        n: memory_agent("assign", n, tmp_path, stores[n], ocf_agent_dirs=[AGENTS]) for n in NODES
    }
    running = [asyncio.create_task(a.run(), name=n) for n, a in agents.items()]
    observer = MemoryStore(backend)
    doubles: list[str] = []

    async def sample() -> None:
        """What each executor's instance was told and has not confirmed releasing."""
        while True:
            holders: dict[str, list[str]] = {}
            for n, a in agents.items():
                for e, role in a.lrm.served().get("nets", {}).items():
                    if role is AssignRole.ACTIVE:
                        holders.setdefault(e, []).append(n)
            doubles.extend(f"{e} on {h}" for e, h in holders.items() if len(h) > 1)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())

    async def snap() -> ClusterSnapshot:
        return await read_snapshot(observer, keys)

    async def until(check: object, timeout: float, what: str) -> ClusterSnapshot:
        for _ in range(int(timeout / 0.1)):
            s = await snap()
            if check(s):  # type: ignore[operator]
                return s
            await asyncio.sleep(0.1)
        raise AssertionError(f"not {what} within {timeout}s: {mapping(await snap())}")

    try:
        await until(lambda s: s.dc is not None and set(s.members) == set(NODES), 20, "joined")
        await put_config(observer, keys, config(tmp_path / "notified.jsonl"))
        s = await until(all_served, 30, "all served")
        before = mapping(s)
        assert sorted(sum(1 for v in before.values() if v == (n,)) for n in NODES) == [2, 2, 2]
        assert s.dc is not None
        victim = next(n for n in NODES if n != s.dc.node)
        orphans = sorted(e for e, v in before.items() if v == (victim,))
        stores[victim].partition()
        s = await until(
            lambda s: all_served(s) and victim not in {v[0] for v in mapping(s).values()},
            20,
            "moved",
        )
        after = mapping(s)
        assert sorted(e for e in before if before[e] != after[e]) == orphans
        events = (tmp_path / victim / "events.jsonl").read_text()
        assert '"self-fenced"' in events, "the cut-off node released its entities itself"
        stores[victim].heal(watches_after=0.5)
        await until(lambda s: victim in s.members and all_served(s), 20, "back")
        await asyncio.sleep(2.0)
        assert mapping(await snap()) == after, "something moved back"
        assert doubles == []
    finally:
        sampler.cancel()
        await stop_agents(agents.values(), running)
